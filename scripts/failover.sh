#!/usr/bin/env bash
# Failover matrix: FTP sessions that keep their control connection open while
# the gateway's virtual addresses move from gateway A to gateway B of the
# failover lab (`scripts/lab.sh ha`: conntrackd on both, FTFW over a sync
# link), in two gateway modes:
#   kernel  the kernel's FTP helper on both gateways (the control);
#   ftpct   `ftpct rules --apply` and `ftpct run` (release build) on both.
# Cases (vsftpd, 1 KiB file, SHA-256 checked):
#   active-port-snat   client inside, PORT rewritten by SNAT, a transfer before;
#                      after the failover: NOOP gets its 200, a new PORT + RETR
#   active-eprt-snat-v6  the same over IPv6 (EPRT, one byte shorter)
#   passive-pasv-dnat  client outside, server inside behind DNAT, 227 rewritten,
#                      a transfer before; after: NOOP, a new PASV + RETR
#   pending-port-snat  as active, then PORT sent (200) before the failover and
#                      RETR after: the data connection needs the expectation
#   pending-pasv-dnat  as passive, then PASV (227) before, connect + RETR after
#   passive-epsv-dnat-v6, pending-eprt-snat-v6, pending-epsv-dnat-v6
#                      the same over IPv6 (EPSV to the outside virtual address,
#                      EPRT rewritten by SNAT)
#   new-after-failover a new active session through gateway B (lab check)
# The failover does what keepalived's notify scripts would: `scripts/lab.sh ha
# failover b` (addresses off A, onto B, gratuitous ARP; on B `conntrackd -c ct`,
# `-c expect`, `-f`, `-R`, `-B`; on A `-t`, `-n`).
#
# Expected results are the arrays EXPECT_KERNEL and EXPECT_FTPCT below; the
# exit status is non-zero when a result differs from them. A result is
# "broken" when the session failed before the failover (the lab, not the
# failover, failed). Column "B seqadj": the sequence adjustment gateway B's
# conntrack holds for that control connection after the commit ("-" none).
#
# Usage: scripts/failover.sh [--modes kernel,ftpct] [--keep] [--verbose]
#   --modes LIST  gateway modes to run, comma-separated (default: both)
#   --keep        keep the work directory: per mode, each session's transcript
#                 and files, ftpct's log on each gateway, state-before.txt and
#                 state-after.txt (sequence adjustments and expectations on A
#                 and B, B's external cache)
#   --verbose     print every session's transcript, not only unexpected ones
# Needs root, conntrackd (scripts/install-deps.sh) and, for mode ftpct, the
# release build. Namespaces ftpct-ha-* (FTPCT_LAB_PREFIX overrides).
set -euo pipefail

# kernel: the helper's sequence adjustment reaches B because conntrackd polls
# the kernel's table (PollSecs, see scripts/lab.sh): the kernel raises no event
# when a helper records one. Pending expectations do not survive: polled,
# conntrackd does not sync expectations; following events (PollSecs 0) it
# syncs them, but gateway B's conntrackd (1.4.7) creates them without their
# NAT binding and expect function (CTA_EXPECT_NAT, CTA_EXPECT_FN; the
# "nat-follow-master" name does cross the sync link), so the data connection
# reaches the gateway itself and is refused.
declare -A EXPECT_KERNEL=(
    [active-port-snat]=pass [active-eprt-snat-v6]=pass [passive-pasv-dnat]=pass
    [pending-port-snat]=fail [pending-pasv-dnat]=fail [new-after-failover]=pass
    [passive-epsv-dnat-v6]=pass [pending-eprt-snat-v6]=fail [pending-epsv-dnat-v6]=fail
)
# ftpct: each NATed session's sequence fix-ups are in its conntrack entry
# (an entry ftpct made through ctnetlink: it carries seqadj) and its state in
# the entry's labels (fix-ups in the kernel, the pending expectation);
# conntrackd copies both (B keeps labels: its `ftpct rules` add a rule that
# uses them). At the failover B's ftpct gets SIGHUP (the notify script's last
# step) and takes the sessions up: fix-up offsets, expectations and their
# ipset entries. So the pending cases pass too, where the kernel's helper
# loses its expectations' NAT in conntrackd.
declare -A EXPECT_FTPCT=(
    [active-port-snat]=pass [active-eprt-snat-v6]=pass [passive-pasv-dnat]=pass
    [pending-port-snat]=pass [pending-pasv-dnat]=pass [new-after-failover]=pass
    [passive-epsv-dnat-v6]=pass [pending-eprt-snat-v6]=pass [pending-epsv-dnat-v6]=pass
)
BEFORE=(active-port-snat active-eprt-snat-v6 passive-pasv-dnat pending-port-snat pending-pasv-dnat
    passive-epsv-dnat-v6 pending-eprt-snat-v6 pending-epsv-dnat-v6)
CASES=("${BEFORE[@]}" new-after-failover)

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"
REPO=$(cd "$HERE/.." && pwd)
LAB=$HERE/lab.sh
FTPCT=${FTPCT_BIN:-$REPO/target/release/ftpct}
SESS=$REPO/tests/ha/ftpsess.py
CTSTATE=$REPO/tests/ha/ctstate.py
export FTPCT_LAB_PREFIX=${FTPCT_LAB_PREFIX:-ftpct-ha-}
FILE=1k.bin
READY_TENTHS=200 # sessions ready before the failover: 20 s at most
CLIENT_SECS=60   # a client's whole life, failover included

MODES=kernel,ftpct
# shellcheck disable=SC2034 # read by drop_work (lib.sh)
KEEP=0
VERBOSE=0

log() { printf 'failover: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

parse_args() {
    while (($#)); do
        case $1 in
            --modes) [[ $# -ge 2 ]] || usage; MODES=$2; shift 2 ;;
            --keep) KEEP=1; shift ;;
            --verbose) VERBOSE=1; shift ;;
            -h | --help) usage ;;
            *) log "unknown argument '$1'"; usage ;;
        esac
    done
    check_modes kernel ftpct
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# --- state and clean-up -----------------------------------------------------

WORK=''
LAB_UP=0
FTPCT_PIDS=()
CLIENT_PIDS=()

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${CLIENT_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    ftpct_stop_all
    ((LAB_UP)) && "$LAB" ha down >/dev/null 2>&1
    drop_work
    exit "$rc"
}

# --- gateway modes ----------------------------------------------------------

# ftpct_start NS: rules and `ftpct run` in one gateway namespace.
ftpct_start() {
    local ns=$1
    ip netns exec "$ns" "$FTPCT" rules --apply >>"$WORK/rules-$ns.log" 2>&1 \
        || { tail -n 20 "$WORK/rules-$ns.log" >&2; die "ftpct rules --apply failed in $ns"; }
    FTPCT_LOG=$WORK/$MODE/ftpct-$ns.log
    ip netns exec "$ns" "$FTPCT" run </dev/null >"$FTPCT_LOG" 2>&1 &
    FTPCT_PID=$!
    FTPCT_PIDS+=("$FTPCT_PID")
    wait_running
}

ftpct_stop_all() {
    local pid
    for pid in "${FTPCT_PIDS[@]}"; do
        stop_pid "$pid" || log "warning: ftpct $pid did not stop in 5 s: killed"
    done
    FTPCT_PIDS=()
}

mode_up() { # MODE
    log "mode $1: lab up"
    LAB_UP=1
    "$LAB" ha up vsftpd >"$WORK/$1/lab.log" 2>&1 || { cat "$WORK/$1/lab.log" >&2; die "lab up failed"; }
    eval "$("$LAB" ha env)"
    case $1 in
        kernel) "$LAB" ha helper on >/dev/null ;;
        ftpct)
            ftpct_start "$FTPCT_LAB_NS_GW"
            ftpct_start "$FTPCT_LAB_NS_GW2"
            FTPCT_PID_B=$FTPCT_PID
            ;;
    esac
}

mode_down() {
    ftpct_stop_all
    "$LAB" ha down >/dev/null 2>&1
    LAB_UP=0
}

# --- sessions -----------------------------------------------------------------

# case_client CASE -> "NS HOST KIND"
case_client() {
    case $1 in
        active-port-snat) echo "$FTPCT_LAB_NS_CLI $FTPCT_LAB_SRV4 port" ;;
        active-eprt-snat-v6) echo "$FTPCT_LAB_NS_CLI $FTPCT_LAB_SRV6 port" ;;
        passive-pasv-dnat) echo "$FTPCT_LAB_NS_CLIOUT $FTPCT_LAB_VIP_OUT4 pasv" ;;
        pending-port-snat) echo "$FTPCT_LAB_NS_CLI $FTPCT_LAB_SRV4 port-pending" ;;
        pending-pasv-dnat) echo "$FTPCT_LAB_NS_CLIOUT $FTPCT_LAB_VIP_OUT4 pasv-pending" ;;
        passive-epsv-dnat-v6) echo "$FTPCT_LAB_NS_CLIOUT $FTPCT_LAB_VIP_OUT6 pasv" ;;
        pending-eprt-snat-v6) echo "$FTPCT_LAB_NS_CLI $FTPCT_LAB_SRV6 port-pending" ;;
        pending-epsv-dnat-v6) echo "$FTPCT_LAB_NS_CLIOUT $FTPCT_LAB_VIP_OUT6 pasv-pending" ;;
        new-after-failover) echo "$FTPCT_LAB_NS_CLI $FTPCT_LAB_SRV4 port" ;;
    esac
}

declare -A PID_OF=()

start_session() { # CASE
    local ns host kind dir
    read -r ns host kind <<<"$(case_client "$1")"
    dir=$WORK/$MODE/$1
    mkdir -p "$dir"
    ip netns exec "$ns" timeout -k 2 "$CLIENT_SECS" python3 -u "$SESS" "$kind" "$host" "$FILE" \
        "$dir" "$WORK/$MODE/go" </dev/null >"$dir/client.log" 2>&1 &
    PID_OF[$1]=$!
    CLIENT_PIDS+=("$!")
}

ready() { # CASE: printed READY, or gave up
    grep -qs '^READY' "$WORK/$MODE/$1/client.log" || ! kill -0 "${PID_OF[$1]}" 2>/dev/null
}

all_ready() {
    local c
    for c in "$@"; do ready "$c" || return 1; done
}

# B's external cache holds the sessions' control connections (FTFW delivered).
synced() {
    local n
    n=$("$LAB" ha conntrackd b -e ct 2>/dev/null | grep -c 'ESTABLISHED.* dport=21 ' || true)
    ((n >= ${#BEFORE[@]}))
}

# seqadj_of GATEWAY_NS CASE: the shifts (orig+N, reply+N) that gateway's
# conntrack holds for the case's control connection, "-" for none.
seqadj_of() {
    local port
    port=$(sed -n 's/^control from port \([0-9]*\)$/\1/p' "$WORK/$MODE/$2/client.log" | head -n1)
    [[ -n $port ]] || { echo '-'; return; }
    ip netns exec "$1" python3 "$CTSTATE" --summary "$port" 2>/dev/null || echo '?'
}

# --- results --------------------------------------------------------------------

R_CASE=() R_MODE=() R_EXPECT=() R_RESULT=() R_SEQADJ=() R_SECS=() R_WHY=()

result_of() { # CASE RC -> sets RESULT and WHY
    local dir=$WORK/$MODE/$1 served
    served=$FTPCT_LAB_ANON/$FILE
    WHY=$(grep -m1 '^FAILED' "$dir/client.log" || true)
    if (($2 == 0)); then
        if [[ -f $dir/after.bin && $(sha "$dir/after.bin") == "$(sha "$served")" &&
            $(sha "$dir/before.bin") == "$(sha "$served")" ]]; then
            RESULT=pass
        else
            RESULT=fail WHY="SHA-256 differs"
        fi
    elif (($2 == 2)) && [[ $1 != new-after-failover ]]; then
        RESULT=broken
    else
        RESULT=fail
        [[ -n $WHY ]] || WHY="client exit status $2"
    fi
}

run_mode() { # MODE
    MODE=$1
    local c rc t0 expect seqadj
    mkdir -p "$WORK/$MODE"
    mode_up "$MODE"
    t0=$(now)
    for c in "${BEFORE[@]}"; do start_session "$c"; done
    local i
    for ((i = 0; i < READY_TENTHS; i++)); do all_ready "${BEFORE[@]}" && break; sleep 0.1; done
    all_ready "${BEFORE[@]}" || log "warning: sessions not ready after $((READY_TENTHS / 10)) s, failing over anyway"
    # conntrackd polls every PollSecs (1 s): let it see the last rewrites.
    sleep 2
    for ((i = 0; i < 50; i++)); do synced && break; sleep 0.1; done
    synced || log "warning: gateway B's external cache lacks some control connections"
    {
        echo "# gateway A before the failover"
        ip netns exec "$FTPCT_LAB_NS_GW" python3 "$CTSTATE" --port 21
        ip netns exec "$FTPCT_LAB_NS_GW" python3 "$CTSTATE" --expect
        echo "# gateway B's external cache"
        "$LAB" ha conntrackd b -e ct
        "$LAB" ha conntrackd b -e expect
    } >"$WORK/$MODE/state-before.txt" 2>&1
    log "mode $MODE: failover to gateway B"
    "$LAB" ha failover b >>"$WORK/$MODE/lab.log" 2>&1 || { tail -n 5 "$WORK/$MODE/lab.log" >&2; die "failover failed"; }
    if [[ $MODE == ftpct ]]; then
        # The notify script's last step: gateway B's ftpct takes up the
        # sessions conntrackd committed (their labels: fix-ups in the
        # kernel, pending expectations), as `systemctl reload ftpct` does.
        kill -HUP "$FTPCT_PID_B"
        wait_log "$WORK/$MODE/ftpct-$FTPCT_LAB_NS_GW2.log" 'took up|policy reloaded' 50 ||
            log "warning: gateway B's ftpct said nothing of the sessions it took up"
    fi
    {
        echo "# gateway B after the commit"
        ip netns exec "$FTPCT_LAB_NS_GW2" python3 "$CTSTATE" --port 21
        ip netns exec "$FTPCT_LAB_NS_GW2" python3 "$CTSTATE" --expect
    } >"$WORK/$MODE/state-after.txt" 2>&1
    declare -A SEQ_B=()
    for c in "${BEFORE[@]}"; do SEQ_B[$c]=$(seqadj_of "$FTPCT_LAB_NS_GW2" "$c"); done
    touch "$WORK/$MODE/go"
    start_session new-after-failover
    for c in "${CASES[@]}"; do
        rc=0
        wait "${PID_OF[$c]}" || rc=$?
        result_of "$c" "$rc"
        if [[ $MODE == kernel ]]; then expect=${EXPECT_KERNEL[$c]}; else expect=${EXPECT_FTPCT[$c]}; fi
        seqadj=${SEQ_B[$c]:--}
        R_CASE+=("$c") R_MODE+=("$MODE") R_EXPECT+=("$expect") R_RESULT+=("$RESULT")
        R_SEQADJ+=("$seqadj") R_SECS+=("$(elapsed "$t0")") R_WHY+=("$WHY")
        report_case "$c" "$expect" "$RESULT" "$WHY"
    done
    CLIENT_PIDS=()
    mode_down
}

report_case() { # CASE EXPECT RESULT WHY
    local verdict=ok
    [[ $2 == "$3" ]] || verdict=MISMATCH
    log "$(printf '%-21s %-6s expected %-4s got %-6s %s' "$1" "$MODE" "$2" "$3" "$verdict")"
    if [[ $verdict != ok || $VERBOSE == 1 ]]; then
        [[ -n $4 ]] && log "    $4"
        log "    client transcript (end):"
        sed 's/^/      | /' "$WORK/$MODE/$1/client.log" | tail -n 15 >&2
    fi
    return 0
}

print_table() {
    local i bad=0 mark
    printf '\n%-21s %-7s %-9s %-7s %-11s %6s  %s\n' case gateway expected result 'B seqadj' secs 'first failure'
    printf '%s\n' "$(printf '%.0s-' {1..100})"
    for i in "${!R_CASE[@]}"; do
        mark=''
        if [[ ${R_EXPECT[$i]} != "${R_RESULT[$i]}" ]]; then mark='<-- MISMATCH '; bad=$((bad + 1)); fi
        printf '%-21s %-7s %-9s %-7s %-11s %6s  %s%s\n' "${R_CASE[$i]}" "${R_MODE[$i]}" "${R_EXPECT[$i]}" \
            "${R_RESULT[$i]}" "${R_SEQADJ[$i]}" "${R_SECS[$i]}" "$mark" "${R_WHY[$i]#FAILED }"
    done
    printf '%s\n' "$(printf '%.0s-' {1..100})"
    printf '%d run(s), %d as expected, %d mismatch(es), %d s\n' "${#R_CASE[@]}" \
        $((${#R_CASE[@]} - bad)) "$bad" "$SECONDS"
    ((bad == 0))
}

main() {
    parse_args "$@"
    lab_prerequisites
    trap cleanup EXIT
    trap 'log "interrupted"; exit 130' INT TERM
    WORK=$(mktemp -d /tmp/ftpct-failover.XXXXXX)
    chmod 0755 "$WORK"
    log "gateway modes $MODES, work directory $WORK"
    local m
    for m in ${MODES//,/ }; do run_mode "$m"; done
    print_table
}

main "$@"
