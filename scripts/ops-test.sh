#!/usr/bin/env bash
# Operating ftpct, tested against the kernel in a namespace lab (prefix
# ftpct-ops-): the configuration file, exit codes, running without root,
# systemd's notify protocol, SIGHUP, the kernel-helper warning, journald.
#
#   1. one file for `rules` and `run`: queues 3:4 and ipset ftpops in
#      $WORK/ftpct.toml reach both (`rules` prints --queue-balance 3:4,
#      `run` binds queues [3, 4]); a malformed file exits 78 with its line
#      and column; no CAP_NET_ADMIN exits 77; a queue already bound exits 69;
#   2. `ftpct run` as the user nobody with only CAP_NET_ADMIN and CAP_NET_RAW
#      (setpriv, ambient), and without /proc (a tmpfs over it): READY=1 reaches the
#      NOTIFY_SOCKET after the queues are bound, the 16 MiB queue buffer is
#      set (SO_RCVBUFFORCE), an active download through the SNAT gateway
#      works; SIGHUP with min_data_port = 65535 in the file reloads the
#      policy (ftpct keeps running, the next active download is refused by
#      the new policy); SIGTERM sends STOPPING=1;
#   3. with the kernel's FTP helper attached (lab.sh helper on), `ftpct run`
#      warns at start;
#   4. with JOURNAL_STREAM naming its stderr, log lines go to the journal's
#      socket (a listener in a mount namespace) with their priority (info 6,
#      warning 4).
#
# Usage: scripts/ops-test.sh [--keep]   (root; builds the debug binary, or
# tests FTPCT_BIN=PATH without a build)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"
export FTPCT_LAB_PREFIX=ftpct-ops-
LAB=$HERE/lab.sh
KEEP=0
[[ ${1:-} == --keep ]] && KEEP=1
FTPCT_PID=''
LISTEN_PID=''

log() { printf 'ops-test: %s\n' "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
ok() { log "ok: $*"; }

cleanup() {
    stop_pid "$FTPCT_PID" 30 || true
    stop_pid "$LISTEN_PID" 10 || true
    "$LAB" down >/dev/null 2>&1 || true
    drop_work
}

[[ $(id -u) -eq 0 ]] || die "run as root (namespaces, NFQUEUE)"
command -v setpriv >/dev/null || die "setpriv missing (util-linux): run scripts/install-deps.sh"
[[ -n ${FTPCT_BIN:-} ]] || (cd "$REPO" && cargo build --quiet --locked)
trap cleanup EXIT
trap 'exit 130' INT TERM
WORK=$(mktemp -d /tmp/ftpct-ops.XXXXXX)
chmod 755 "$WORK"
# A copy that the user nobody may run.
install -m 0755 "${FTPCT_BIN:-$REPO/target/debug/ftpct}" "$WORK/ftpct"
FTPCT=$WORK/ftpct
CONF=$WORK/ftpct.toml

write_conf() { # MIN_DATA_PORT
    cat >"$CONF" <<EOF
queues = "3:4"
ipset = "ftpops"
control_ports = [21]

[policy]
min_data_port = $1
expect_timeout = 60
EOF
}

# expect_rc WANT CMD...: runs CMD, dies unless it exits WANT; its stderr in $WORK/rc.err.
expect_rc() {
    local want=$1 rc=0
    shift
    "$@" >"$WORK/rc.out" 2>"$WORK/rc.err" || rc=$?
    ((rc == want)) || { cat "$WORK/rc.err" >&2; die "$* exited $rc, not $want"; }
}


# --- 1. one configuration, exit codes -------------------------------------
write_conf 1024
"$FTPCT" config check --config "$CONF" >"$WORK/check.out"
grep -q '^queues = "3:4"' "$WORK/check.out" || die "config check: $(cat "$WORK/check.out")"
"$FTPCT" rules --config "$CONF" >"$WORK/rules.out"
grep -q -- '--queue-balance 3:4' "$WORK/rules.out" || die "rules did not read the queues from the file"
grep -q -- 'ftpops' "$WORK/rules.out" || die "rules did not read the ipset from the file"
ok "config check and rules read $CONF (queues 3:4, ipset ftpops)"
printf '[policy]\nmin_data_port = "low"\n' >"$WORK/bad.toml"
expect_rc 78 "$FTPCT" rules --config "$WORK/bad.toml"
grep -q 'line 2, column 17' "$WORK/rc.err" || die "no line/column: $(cat "$WORK/rc.err")"
expect_rc 78 "$FTPCT" run --config "$WORK/bad.toml"
ok "a malformed file: exit 78, $(cat "$WORK/rc.err")"
expect_rc 77 setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all "$FTPCT" run --config "$CONF"
ok "no CAP_NET_ADMIN: exit 77"

"$LAB" up snat vsftpd >"$WORK/lab.log" 2>&1 || { cat "$WORK/lab.log" >&2; die "lab up"; }
eval "$("$LAB" env)"
gw() { ip netns exec "$FTPCT_LAB_NS_GW" "$@"; }
gw "$FTPCT" rules --apply --config "$CONF" >"$WORK/apply.log" 2>&1 || { cat "$WORK/apply.log" >&2; die "rules --apply"; }

# --- 2. non-root, no /proc, notify, SIGHUP --------------------------------
# CAP_NET_RAW too, as the unit gives: iptables-save opens a raw socket for
# the ipset match of ftpct's rules (the rule watch reads them).
timeout 60 python3 "$HERE/dgram-listen.py" "$WORK/notify.sock" 50 >"$WORK/notify.log" &
LISTEN_PID=$!
for ((i = 0; i < 30; i++)); do [[ -S $WORK/notify.sock ]] && break; sleep 0.1; done
FTPCT_LOG=$WORK/run.log
# A tmpfs over /proc (its own mount namespace): the capability check and
# the socket buffer must not need /proc.
NO_COLOR=1 NOTIFY_SOCKET=$WORK/notify.sock ip netns exec "$FTPCT_LAB_NS_GW" unshare -m sh -c \
    'mount -t tmpfs none /proc && exec setpriv --reuid=nobody --regid=nogroup --clear-groups \
        --inh-caps=+net_admin,+net_raw --ambient-caps=+net_admin,+net_raw "$0" run -v --config "$1"' \
    "$FTPCT" "$CONF" </dev/null >"$FTPCT_LOG" 2>&1 &
FTPCT_PID=$!
wait_running
grep -q 'running: queues \[3, 4\]' "$FTPCT_LOG" || die "run did not read the queues from the file"
ok "run read $CONF: $(grep -o 'running: queues.*' "$FTPCT_LOG")"
wait_log "$WORK/notify.log" 'READY=1' 30 || die "no READY=1 on NOTIFY_SOCKET"
ok "READY=1 after the queues are bound: $(head -n1 "$WORK/notify.log")"
grep -q 'not enlarged' "$FTPCT_LOG" && die "queue buffer not set: $(grep 'not enlarged' "$FTPCT_LOG")"
grep -q 'socket receive buffer: [0-9]\{8,\} bytes' "$FTPCT_LOG" || die "no buffer size in the log"
grep -q 'cannot read the raw table' "$FTPCT_LOG" && die "rule watch as nobody: $(grep 'raw table' "$FTPCT_LOG")"
ok "as nobody with CAP_NET_ADMIN and CAP_NET_RAW, no /proc: $(grep -o 'socket receive buffer.*' "$FTPCT_LOG" | head -n1); rules readable"

download() { # LABEL: an active download of 1k.bin; true when it arrives whole
    local out=$WORK/$1.bin
    rm -f "$out"
    ip netns exec "$FTPCT_LAB_NS_CLI" timeout -k 2 10 curl -gsS -m 8 -P - --disable-eprt -o "$out" \
        "ftp://$FTPCT_LAB_TARGET4/1k.bin" >"$WORK/$1.curl" 2>&1 || return 1
    [[ $(stat -c %s "$out") -eq 1024 ]]
}
download active1 || { cat "$WORK/active1.curl" "$FTPCT_LOG" >&2; die "active download through a non-root ftpct"; }
ok "active download through the gateway, ftpct as nobody"

write_conf 65535
kill -HUP "$FTPCT_PID"
wait_log "$FTPCT_LOG" 'policy reloaded' 30 || { cat "$FTPCT_LOG" >&2; die "SIGHUP did not reload"; }
kill -0 "$FTPCT_PID" || die "SIGHUP stopped ftpct"
ok "$(grep -o 'SIGHUP: policy reloaded.*' "$FTPCT_LOG")"
if download active2; then die "active download passed despite min_data_port = 65535"; fi
wait_log "$FTPCT_LOG" 'WARN.*refused' 30 || { cat "$FTPCT_LOG" >&2; die "no refusal (at warning) after the reload"; }
ok "the new policy refuses: $(grep -m1 -o 'refused.*' "$FTPCT_LOG")"
printf 'queues = [\n' >"$CONF"
kill -HUP "$FTPCT_PID"
wait_log "$FTPCT_LOG" 'policy in force is kept' 30 || die "a broken file at SIGHUP was not reported"
kill -0 "$FTPCT_PID" || die "a broken file at SIGHUP stopped ftpct"
ok "a broken file at SIGHUP keeps the policy: $(grep -o 'SIGHUP: configuration.*' "$FTPCT_LOG")"
stop_pid "$FTPCT_PID" 50 || die "ftpct did not stop on SIGTERM"
FTPCT_PID=''
wait_log "$WORK/notify.log" 'STOPPING=1' 20 || die "no STOPPING=1"
ok "SIGTERM: STOPPING=1"
stop_pid "$LISTEN_PID" 10 || true
LISTEN_PID=''

# --- 3. the kernel's helper ------------------------------------------------
write_conf 1024
"$LAB" helper on >/dev/null
NO_COLOR=1 ip netns exec "$FTPCT_LAB_NS_GW" "$FTPCT" run --config "$CONF" </dev/null >"$WORK/helper.log" 2>&1 &
FTPCT_PID=$!
FTPCT_LOG=$WORK/helper.log
wait_running
wait_log "$WORK/helper.log" "kernel's FTP helper is attached" 30 || { cat "$WORK/helper.log" >&2; die "no warning about the kernel helper"; }
ok "$(grep -o "the kernel's FTP helper is attached.*" "$WORK/helper.log" | cut -c1-140)..."
expect_rc 69 ip netns exec "$FTPCT_LAB_NS_GW" "$FTPCT" run --config "$CONF" --ipset ftpops2
ok "queue already bound: exit 69, $(cat "$WORK/rc.err")"
stop_pid "$FTPCT_PID" 50 || true
FTPCT_PID=''
"$LAB" helper off >/dev/null

# --- 4. journald -----------------------------------------------------------
# stderr is a file; JOURNAL_STREAM names it; the journal's socket is a
# listener on a tmpfs in a mount namespace of our own.
: >"$WORK/journal.err"
stream=$(stat -c '%d:%i' "$WORK/journal.err")
ip netns exec "$FTPCT_LAB_NS_GW" unshare -m sh -c '
    # Over /run/systemd, or over all of /run where it is missing (nothing
    # is created on the host either way).
    if [ -d /run/systemd ]; then mount -t tmpfs none /run/systemd; else mount -t tmpfs none /run; fi || exit 1
    mkdir -p /run/systemd/journal
    timeout 20 python3 "$1" /run/systemd/journal/socket 6 journal >"$2/journal.log" &
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
    JOURNAL_STREAM=$3 timeout -s TERM 3 "$4" run --config "$5" --queues 7 2>"$2/journal.err" || true
    wait' \
    sh "$HERE/dgram-listen.py" "$WORK" "$stream" "$FTPCT" "$CONF"
grep -q 'PRIORITY=6 .*MESSAGE=running: queues \[7\]' "$WORK/journal.log" \
    || { cat "$WORK/journal.log" "$WORK/journal.err" >&2; die "no info line in the journal"; }
grep -q 'PRIORITY=4 .*MESSAGE=no iptables' "$WORK/journal.log" \
    || { cat "$WORK/journal.log" >&2; die "no warning (priority 4) in the journal"; }
[[ ! -s $WORK/journal.err ]] || { cat "$WORK/journal.err" >&2; die "lines went to stderr too"; }
ok "journal: $(grep -c PRIORITY= "$WORK/journal.log") lines, info at priority 6, warnings at 4, none on stderr"

log "all passed"
