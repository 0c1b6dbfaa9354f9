#!/usr/bin/env bash
# ftpct in action, on a fresh machine, as root:
#   1. installs what the demo's lab needs, those missing (`scripts/install-deps.sh
#      --demo`: a few Debian packages, vsftpd unpacked beside the system; not
#      the test suite's), and builds ftpct (cargo build --release; with
#      FTPCT_BIN=PATH that binary instead, no build);
#   2. brings up the snat lab (scripts/lab.sh): a client 192.0.2.10 behind a
#      gateway that masquerades as 198.51.100.1, vsftpd at 198.51.100.20; the
#      gateway forwards only ESTABLISHED,RELATED and new control connections;
#   3. applies ftpct's rules (summarised; --verbose prints them all), runs
#      `ftpct doctor` and starts `ftpct run` in the gateway;
#   4. downloads a file with curl in active mode (PORT) and one in passive
#      mode (PASV), SHA-256 checked;
#   5. prints ftpct's decisions (its log) and the checks, then the control:
#      with ftpct stopped, the same active download fails;
#   6. takes everything down (also on error or Ctrl-C).
# Usage: sudo scripts/demo.sh [--verbose]   (exit status 0 when the demo worked;
# no question asked, no standard input read)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"
REPO=$(cd "$HERE/.." && pwd)
LAB=$HERE/lab.sh
FTPCT=${FTPCT_BIN:-$REPO/target/release/ftpct}
NS_CLI=ftpct-cli
NS_GW=ftpct-gw
SERVER=198.51.100.20

WORK=''
FTPCT_PID=''
LAB_UP=0
VERBOSE=0
[[ ${1:-} == --verbose ]] && VERBOSE=1

step() { printf '\n== %s\n' "$*"; }
say() { printf '   %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    step "tearing down"
    stop_ftpct
    if ((LAB_UP)); then
        ip netns exec "$NS_GW" "$FTPCT" rules --delete >/dev/null 2>&1 || true
        "$LAB" down >/dev/null 2>&1 || true
    fi
    [[ -n $WORK ]] && rm -rf -- "$WORK"
    say "lab down, ftpct stopped, rules removed"
    exit "$rc"
}

stop_ftpct() {
    stop_pid "$FTPCT_PID" || true
    FTPCT_PID=''
}

prepare() {
    [[ $(id -u) -eq 0 ]] || die "run as root: sudo scripts/demo.sh"
    step "dependencies (scripts/install-deps.sh --demo: those missing)"
    "$HERE/install-deps.sh" --demo </dev/null 2>&1 | sed 's/^/   /'
    if [[ -n ${FTPCT_BIN:-} ]]; then
        [[ -x $FTPCT ]] || die "FTPCT_BIN=$FTPCT is not an executable"
        step "ftpct: $FTPCT (FTPCT_BIN, no build)"
        return
    fi
    step "build (cargo build --release)"
    command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup), then run again"
    (cd "$REPO" && cargo build --release --quiet)
    say "$FTPCT"
}

lab_up() {
    step "lab: snat topology, vsftpd"
    LAB_UP=1
    "$LAB" up snat vsftpd | sed 's/^/   /'
    eval "$("$LAB" env)"
}

start_ftpct() {
    local i
    step "ftpct rules --apply (in the gateway's namespace)"
    ip netns exec "$NS_GW" "$FTPCT" rules --apply >"$WORK/rules.log" 2>&1 \
        || { cat "$WORK/rules.log" >&2; die "ftpct rules --apply failed"; }
    show_rules
    step "ftpct doctor (what the gateway has and lacks for ftpct)"
    ip netns exec "$NS_GW" "$FTPCT" doctor | grep -v '^ok ' | sed 's/^/   /' || true
    say "(lines marked ok left out; a queue nobody reads yet is expected before the start)"
    step "ftpct run"
    # $! is ftpct itself: ip netns exec execs it.
    NO_COLOR=1 ip netns exec "$NS_GW" "$FTPCT" run </dev/null >"$WORK/ftpct.log" 2>&1 &
    FTPCT_PID=$!
    for ((i = 0; i < 50; i++)); do
        grep -q 'running: queues' "$WORK/ftpct.log" && break
        kill -0 "$FTPCT_PID" 2>/dev/null || { cat "$WORK/ftpct.log" >&2; FTPCT_PID=''; die "ftpct run exited"; }
        sleep 0.1
    done
    say "ftpct running, pid $FTPCT_PID"
}

# The rules ftpct applied: counted by chain and purpose (their comments),
# or all of them with --verbose (most are BPF bytecode).
show_rules() {
    local save
    # The connlabel match makes iptables warn about a missing
    # /etc/xtables/connlabel.conf, which ftpct does not need.
    save=$(ip netns exec "$NS_GW" iptables-save -t raw 2>/dev/null)
    if ((VERBOSE)); then
        grep -i ftpct <<<"$save" | sed 's/^/   /'
        return
    fi
    say "$(grep -c -- '-A ftpct-pre ' <<<"$save") rules in ftpct-pre (one jump from raw PREROUTING), $(grep -c -- '-A ftpct-out ' <<<"$save") in ftpct-out (from OUTPUT) (IPv4; ip6tables the same), by purpose:"
    grep -- '-A ftpct-pre ' <<<"$save" | sed -E -e 's/.*--comment "?([^"]*)"?.*/\1/' -e "s/\\\\'/'/g" |
        sort | uniq -c | sort -rn | sed 's/^/   /'
    say "(--verbose prints every rule; most are BPF bytecode)"
}

# download LABEL FILE TIMEOUT CURL_OPTIONS...: true when the SHA-256 matches.
download() {
    local label=$1 file=$2 tmo=$3 out want got rc=0
    shift 3
    out=$WORK/$label-$file
    ip netns exec "$NS_CLI" timeout -k 2 "$tmo" curl -gsS -m "$tmo" "$@" -o "$out" "ftp://$SERVER/$file" \
        >"$WORK/$label.curl" 2>&1 || rc=$?
    want=$(awk -v f="$file" '$2 == f { print $1 }' "$FTPCT_LAB_ANON/SHA256SUMS")
    got=$(sha256sum "$out" 2>/dev/null | cut -d' ' -f1 || true)
    if ((rc == 0)) && [[ $got == "$want" ]]; then
        say "$(printf '%-16s %-8s SHA-256 ok (%s...)' "$label" "$file" "${got:0:16}")"
        return 0
    fi
    say "$(printf '%-16s %-8s FAILED (curl exit %s)' "$label" "$file" "$rc")"
    sed 's/^/      | /' "$WORK/$label.curl"
    return 1
}

main() {
    prepare
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    WORK=$(mktemp -d /tmp/ftpct-demo.XXXXXX)
    lab_up
    start_ftpct

    step "downloads from the client (192.0.2.10) to $SERVER through the gateway"
    local ok=0
    download "active (PORT)" 1k.bin 20 -P - --disable-eprt && ok=$((ok + 1))
    download "passive (PASV)" 50m.bin 20 --disable-epsv --no-ftp-skip-pasv-ip && ok=$((ok + 1))

    step "ftpct's decisions (its log: expectations, rewrites, data connections)"
    sleep 0.2
    sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^[0-9TZ:.-]* *//' -e 's/^/   /' "$WORK/ftpct.log"
    step "ftpct status (what it holds now)"
    ip netns exec "$NS_GW" "$FTPCT" status | cut -c1-160 | sed 's/^/   /' 

    step "control: the same active download with ftpct stopped"
    stop_ftpct
    local control=failed
    if download "without ftpct" 1k.bin 5 -P - --disable-eprt >/dev/null; then control=passed; fi
    if [[ $control == failed ]]; then
        say "fails, as it must: the PORT names the private 192.0.2.10 (the server refuses it),"
        say "and nothing would make the data connection RELATED for the gateway"
    else
        say "PASSED without ftpct: the lab's firewall is not strict, the demo proves nothing"
    fi

    step "result"
    if ((ok == 2)) && [[ $control == failed ]]; then
        say "2/2 downloads through ftpct, SHA-256 ok; without ftpct the download fails"
        return 0
    fi
    say "$ok/2 downloads ok through ftpct; control $control: something is wrong"
    return 1
}

main "$@"
