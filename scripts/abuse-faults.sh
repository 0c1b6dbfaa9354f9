#!/usr/bin/env bash
# Live fault-and-abuse suite against the ftpct gateway (the namespace lab of
# scripts/lab.sh, topology snat: client 192.0.2.10 behind a MASQUERADE
# gateway with a strict FORWARD policy, vsftpd at 198.51.100.20).
#
# Every case runs under ftpct (`ftpct rules --apply`, a fresh `ftpct run
# --state-interval 1` per case, log in the work directory) and, where it
# applies, under the kernel's own FTP helper (`scripts/lab.sh helper on`) as
# the control. Beside each case a legitimate active (PORT) and passive (PASV)
# download of 50m.bin runs through the gateway, paced so that it lasts the
# whole case, SHA-256 checked: it must stay intact unless the case says
# otherwise.
#
#   1-synflood         120,000 spoofed SYNs in ~4 s: 45,000 from the client
#                      side (sources 192.0.2.100-254, random ports) to the
#                      server's port 21, 75,000 from the server side (sources
#                      198.51.100.100-254, port 21) to random ports of the
#                      client, as if replies (spoofed within the gateway's
#                      on-link /24s: they pass its routing, their answers die
#                      unanswered). Expected: new sessions (PORT and PASV)
#                      started during and right after the flood work; when
#                      ftpct's flow table fills, ftpct says so in a warning
#                      (not only a counter). Reported: how many queued packets
#                      ftpct never saw (fail-open), flows held and evicted.
#   2-nat-reuse        a control connection from 192.0.2.12, SNATed to
#                      198.51.100.1:40000, with a PORT rewrite, vanishes with no
#                      FIN or RST (client and server drop their own packets and
#                      destroy their sockets); its conntrack entry is deleted,
#                      standing for its timeout (5 days for ESTABLISHED, not
#                      shortened). Then a session from 192.0.2.11 is SNATed to
#                      the same 198.51.100.1:40000. Expected: its greeting in
#                      < 2 s, a PASV and then a PORT transfer work.
#   3-queue-overflow   ftpct is SIGSTOPped for 2 s while a session pipelines a
#                      NOOP every 10 ms and spoofed SYNs fill the NFQUEUE until
#                      it overflows (fail-open: the session's segments pass
#                      unseen). Expected: all NOOPs answered < 2 s after ftpct
#                      continues, and the next NOOP too; once ftpct has
#                      emptied its queue (a PASV or PORT that passes unseen
#                      cannot be helped by a fail-open design), a PASV and a
#                      PORT transfer in that session work. ftpct runs with -v
#                      here: its log shows each segment it drops and why.
#                      (Kernel: the same traffic, nothing stopped.)
#   4-ct-full          the gateway's conntrack table is filled (see below)
#                      while a PASV and a PORT data connection are pending;
#                      their first SYNs meet a full table; after 1.5 s room is
#                      made. Expected: the retried SYNs are helped and both
#                      transfers complete; ftpct logs the failed creation and
#                      never "matched, RELATED" while the table was full.
#   5a-kill9 5b-sigterm  ftpct killed (SIGKILL, SIGTERM) while four sessions
#                      (two PORT, two PASV) transfer; restarted 2 s later;
#                      each session then makes a second transfer. Expected:
#                      no session hangs (each ends by itself, clients have 10 s
#                      timeouts), every session finishes both transfers (the
#                      PORT sessions' fix-ups are in the kernel: 5c), new
#                      sessions work after the restart. ftpct only.
#   5c-kill9-rewrite   a PORT session whose PORT was rewritten (its lengths
#                      changed); ftpct killed (SIGKILL) right after; three
#                      NOOPs during the outage; ftpct restarted; the same
#                      session's next PORT transfer, and a new session.
#                      Expected: every NOOP answered 200 (the kernel keeps the
#                      session's sequence fix-ups: ftpct adopted its conntrack
#                      entry and set its seqadj), both transfers SHA-256 ok.
#                      With fix-ups kept in ftpct's memory the NOOPs reach the
#                      server 2 bytes off and fail. (Kernel: the same session,
#                      nothing killed.)
#   5c6-kill9-rewrite-v6  the same over IPv6: an EPRT rewritten by SNAT
#                      (one byte shorter), ftpct killed, NOOPs, restart.
#   5d-kill9-pending   a PORT and a PASV session each announce their data
#                      connection (PORT rewritten, expectation pending); ftpct
#                      killed (SIGKILL); restarted 1 s later; then both
#                      transfer. Expected: both SHA-256 ok: the restarted
#                      ftpct took the sessions up from their conntrack labels
#                      (pending expectations and ipset entries rebuilt). With
#                      expectations only in memory the data connections are
#                      not RELATED and the strict gateway drops them.
#   5d6-kill9-pending-v6  the same over IPv6: an EPRT (rewritten by SNAT)
#                      and an EPSV session, expectations pending, ftpct killed
#                      and restarted; the restarted ftpct takes them up from
#                      their IPv6 conntrack entries and the ipset6 entries.
#   6-second-instance  `ftpct run --queue 1` started while the first instance
#                      has pending expectations. Expected: the second refuses
#                      with a clear error or uses its own sets; `ipset list
#                      ftpct` keeps the first's entries (before, during, after
#                      the second); the pending transfers work. ftpct only.
#   7a-ipset-flush     `ipset flush ftpct` with a PASV and a PORT data
#                      connection pending. Expected: ftpct notices (a log line
#                      about its set) and the pending transfers still work.
#                      Kernel analog: `conntrack -F expect`.
#   7b-rules-delete    `ftpct rules --delete` with pending data connections,
#                      then `--apply` again. Expected: ftpct warns (WARN or
#                      ERROR line within 5 s). The pending transfers after the
#                      re-apply are reported, not judged. Kernel analog:
#                      `helper off`, then on.
#   8-ct-destroyed     a session with a pending PORT expectation; its control
#                      connection's conntrack entry is deleted (`conntrack -D`,
#                      as a timeout or a flush would remove it), no FIN or RST
#                      ever seen. Expected: within 5 s ftpct holds no flow,
#                      no expectation and no ipset entry for it (its `state:`
#                      line and `ipset list`). Kernel: the expectation goes
#                      with its master (`conntrack -L expect`).
#
# conntrack table full: nf_conntrack_max is global on this kernel (read-only
# outside the initial namespace) but the count it limits is per namespace, so
# the case fills the gateway namespace's own table up to the global maximum
# with ASSURED filler entries over ctnetlink (tests/abuse/faults_ctfill.py)
# and deletes them afterwards: no global setting is changed.
#
# Results: a table (case, mode, expected, result, details) and a TSV
# (results.tsv in the work directory). Exit status non-zero when an ftpct
# case's result differs from its expectation ("fail", or "broken" when the
# case could not set up what it tests); kernel results are the comparison.
#
# Usage: scripts/abuse-faults.sh [--only REGEX] [--modes ftpct,kernel] [--keep]
#                                [--tsv FILE]
#   --only REGEX   cases whose name matches (names above)
#   --modes LIST   gateway modes, comma-separated (default ftpct,kernel)
#   --keep         keep the work directory (client transcripts, ftpct logs)
#   --tsv FILE     also write the results to FILE
# Needs root, the release build (cargo build --release) and the lab's
# packages (scripts/install-deps.sh). Namespaces ftpct-abf-*; lasts 2-3 min.
# Changes no global setting; works with no standard input (CI=true).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"
REPO=$(cd "$HERE/.." && pwd)
LAB=$HERE/lab.sh
FTPCT=${FTPCT_BIN:-$REPO/target/release/ftpct}
ABUSE=$REPO/tests/abuse
# A lab of our own: other suites run theirs beside it (ftpct-e2e-, ...).
export FTPCT_LAB_PREFIX=ftpct-abf-
NS_CLI=${FTPCT_LAB_PREFIX}cli
NS_GW=${FTPCT_LAB_PREFIX}gw
NS_SRV=${FTPCT_LAB_PREFIX}srv
SRV4=198.51.100.20
SRV6=2001:db8:2::20
PUB4=198.51.100.1
CLI4=192.0.2.10
CLI_NEW=192.0.2.11 # case 2: the new inside client
CLI_OLD=192.0.2.12 # case 2: the vanished one
REUSED_PORT=40000
BG_RATE=3000000 # bytes/s of the background downloads (50 MiB: ~17 s at most)
FLOOD_CLI=45000
FLOOD_SRV=75000
FLOOD_SECS=4
ALL_CASES="1-synflood 2-nat-reuse 3-queue-overflow 4-ct-full 5a-kill9 5b-sigterm 5c-kill9-rewrite 5c6-kill9-rewrite-v6 5d-kill9-pending 5d6-kill9-pending-v6 6-second-instance 7a-ipset-flush 7b-rules-delete 8-ct-destroyed"

ONLY=''
MODES=ftpct,kernel
KEEP=0
TSV_COPY=''

log() { printf 'abuse-faults: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

parse_args() {
    while (($#)); do
        case $1 in
            --only) [[ $# -ge 2 ]] || usage; ONLY=$2; shift 2 ;;
            --modes) [[ $# -ge 2 ]] || usage; MODES=$2; shift 2 ;;
            --keep) KEEP=1; shift ;;
            --tsv) [[ $# -ge 2 ]] || usage; TSV_COPY=$2; shift 2 ;;
            -h | --help) usage ;;
            *) log "unknown argument '$1'"; usage ;;
        esac
    done
    check_modes ftpct kernel
}
gw() { ip netns exec "$NS_GW" "$@"; }
cli() { ip netns exec "$NS_CLI" "$@"; }
srv() { ip netns exec "$NS_SRV" "$@"; }
gw_up() { [[ -e /run/netns/$NS_GW ]]; }
size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }
# slice FILE FROM [TO]: the bytes of FILE written between two sizes.
slice() {
    local to=${3:-$(size_of "$1")}
    tail -c +$(($2 + 1)) "$1" 2>/dev/null | head -c $((to - $2)) | sed 's/\x1b\[[0-9;]*m//g'
}
# kv LINE_PREFIX KEY FILE: value of KEY= on the last line of FILE starting so.
kv() { { grep -E "^$1" "$3" 2>/dev/null || true; } | tail -n1 | tr ' ' '\n' | sed -n "s/^$2=//p"; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 < b + 0) }'; }

# --- state and clean-up -------------------------------------------------------

WORK=''
LAB_UP=0
FTPCT_PID=''
FTPCT_LOG=''
STOPPED=0      # ftpct SIGSTOPped (cleanup continues it before stopping it)
SECOND_PID=''  # case 6's second instance
GW_MODE=''
PIDS=()        # every background process started by a case
UNDO=()        # commands that undo a case's changes, run at its end or on exit

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    undo_all
    if ((STOPPED)) && [[ -n $FTPCT_PID ]]; then kill -CONT "$FTPCT_PID" 2>/dev/null || true; fi
    stop_pid "$SECOND_PID" 30 || true
    ftpct_stop
    rules_delete
    ((LAB_UP)) && "$LAB" down >/dev/null 2>&1
    drop_work
    exit "$rc"
}

# undo_push CMD...: remember how to undo a change (run in reverse order).
undo_push() { UNDO+=("$(printf '%q ' "$@")"); }
undo_all() {
    local i
    for ((i = ${#UNDO[@]} - 1; i >= 0; i--)); do eval "${UNDO[$i]}" >/dev/null 2>&1 || true; done
    UNDO=()
}

# --- gateway modes --------------------------------------------------------------

rules_apply() {
    gw "$FTPCT" rules --apply >>"$WORK/rules.log" 2>&1 </dev/null \
        || { tail -n 20 "$WORK/rules.log" >&2; die "ftpct rules --apply failed"; }
}

rules_delete() {
    gw_up || return 0
    [[ -x $FTPCT ]] || return 0
    gw "$FTPCT" rules --delete >>"${WORK:-/tmp}/rules.log" 2>&1 </dev/null || log "warning: ftpct rules --delete failed"
    return 0
}

# ftpct_start LOG [ARGS...]: `ftpct run` in the gateway, ready when it says so.
ftpct_start() {
    FTPCT_LOG=$1; shift
    # Not through gw(): $! must be ftpct itself (ip netns exec execs it).
    ip netns exec "$NS_GW" "$FTPCT" run --state-interval 1 "$@" </dev/null >>"$FTPCT_LOG" 2>&1 &
    FTPCT_PID=$!
    wait_running
}

ftpct_stop() {
    [[ -n $FTPCT_PID ]] || return 0
    if ((STOPPED)); then kill -CONT "$FTPCT_PID" 2>/dev/null || true; STOPPED=0; fi
    stop_pid "$FTPCT_PID" || log "warning: ftpct did not stop in 5 s: killed"
    FTPCT_PID=''
}

gw_mode() {
    [[ $1 == "$GW_MODE" ]] && return 0
    ftpct_stop
    rules_delete
    "$LAB" helper off >/dev/null
    case $1 in
        kernel) "$LAB" helper on >/dev/null ;;
        ftpct) rules_apply ;;
    esac
    GW_MODE=$1
}

lab_up() {
    log "lab up snat vsftpd"
    LAB_UP=1
    "$LAB" up snat vsftpd >/dev/null </dev/null
    eval "$("$LAB" env)"
    # Two more inside clients for case 2 (same veth, same /24).
    ip -n "$NS_CLI" addr add "$CLI_NEW/24" dev cli0
    ip -n "$NS_CLI" addr add "$CLI_OLD/24" dev cli0
}

# --- processes ------------------------------------------------------------------

# wait_bounded PID SECS: its exit status, or 124 after killing it at SECS.
wait_bounded() {
    local pid=$1 n=$(($2 * 10)) i rc=0
    for ((i = 0; i < n; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        sleep 1
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 124
    fi
    wait "$pid" || rc=$?
    return "$rc"
}

wait_file() { # PATH SECS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        [[ -e $1 ]] && return 0
        sleep 0.1
    done
    return 1
}

# client NAME MODE [faults_ftp options] OPS...: a session in the client
# namespace, in the background; transcript $CDIR/NAME.log, pid in CPID[NAME].
declare -A CPID=()
client() {
    local name=$1 mode=$2; shift 2
    ip netns exec "$NS_CLI" timeout -k 2 90 python3 -u "$ABUSE/faults_ftp.py" "${CLIENT_SRV:-$SRV4}" "$mode" \
        --sums "$FTPCT_LAB_ANON/SHA256SUMS" --timeout 10 "$@" </dev/null >"$CDIR/$name.log" 2>&1 &
    CPID[$name]=$!
    PIDS+=("$!")
}

# client_wait NAME SECS: its status; the transcript says why.
client_wait() {
    local rc=0
    wait_bounded "${CPID[$1]}" "$2" || rc=$?
    return "$rc"
}

# ftpct's decisions (INFO and up) on the control connection of client NAME.
flow_log() { # NAME
    local port
    port=$(kv step=greeting local "$CDIR/$1.log" | sed 's/.*://')
    [[ -n $port ]] || { echo "(no connection)"; return; }
    { grep -E "flow=[0-9.]+:$port -> " "$FTPCT_LOG" || true; } | { grep -E ' (INFO|WARN|ERROR) ' || true; } \
        | sed -e 's/^[^ ]* *//' -e 's/ flow=.*//' -e 's/ event=.*//' | cut -c1-110 | paste -sd '|' | cut -c1-500
}

# Segments of client NAME's control connection that ftpct dropped (-v logs them).
flow_drops() { # NAME
    local port lines
    port=$(kv step=greeting local "$CDIR/$1.log" | sed 's/.*://')
    lines=$({ grep -E "dropped: .*flow=[0-9.]+:$port -> " "$FTPCT_LOG" || true; } | sed -e 's/ event=.*//')
    if [[ -z $lines ]]; then echo none; return; fi
    echo "$(wc -l <<<"$lines") (first: $(head -n1 <<<"$lines" | sed 's/ DEBUG//'); last at $(tail -n1 <<<"$lines" | cut -d' ' -f1))"
}

# Short account of a finished client: "ok" or "fail at STEP (error)" or "hung".
client_summary() { # NAME RC
    local f=$CDIR/$1.log
    if (($2 == 124)); then echo "hung (killed at our bound)"; return; fi
    if grep -q '^result=ok' "$f"; then echo ok; return; fi
    local line
    line=$(grep '^result=fail' "$f" | tail -n1 || true)
    if [[ -n $line ]]; then
        echo "fail at $(kv result= step "$f") after $(kv result= secs "$f")s ($(kv result= error "$f" | tr -d "'" | cut -c1-60))"
    else
        echo "fail (exit $2, $(tail -n1 "$f" | cut -c1-60))"
    fi
}

# run_clients SECS NAME...: waits for each; sets OKS (names that passed) and SUMMARY.
run_wait() {
    local secs=$1 name rc s
    shift
    SUMMARY='' ALL_OK=1
    for name in "$@"; do
        rc=0
        client_wait "$name" "$secs" || rc=$?
        s=$(client_summary "$name" "$rc")
        [[ $s == ok ]] || ALL_OK=0
        SUMMARY+="$name: $s; "
    done
}

# Background downloads beside the case: one PORT, one PASV, paced; the case
# starts once both data connections carry data.
bg_start() {
    local m
    for m in port pasv; do
        client "bg-$m" "$m" --rate "$BG_RATE" --hurry "$CDIR/hurry" --started "$CDIR/bg-$m.started" slowget 50m.bin quit
    done
    for m in port pasv; do
        wait_file "$CDIR/bg-$m.started" 10 || log "warning: background $m download not started after 10 s"
    done
}

bg_finish() { # adds to the calling case's p (problems) and d (details)
    touch "$CDIR/hurry"
    run_wait 40 bg-port bg-pasv
    ((ALL_OK)) || p+="background transfer broken; "
    d+="bg: ${SUMMARY%; }; "
}

# pending_start: the background download, and a PASV and a PORT session
# that announce their data connection and wait for $CDIR/go to use it;
# adds to the calling case's p.
pending_start() {
    bg_start
    client pend-pasv pasv --max-wait 30 announce touch "$CDIR/pasv-ready" wait "$CDIR/go" get 1k.bin quit
    client pend-port port --max-wait 30 announce touch "$CDIR/port-ready" wait "$CDIR/go" get 1k.bin quit
    wait_file "$CDIR/pasv-ready" 10 && wait_file "$CDIR/port-ready" 10 || p+="setup: sessions did not get going; "
    sleep 0.3
}

# pending_finish: lets the pending sessions transfer; adds to p and d.
pending_finish() {
    touch "$CDIR/go"
    run_wait 30 pend-pasv pend-port
    ((ALL_OK)) || p+="a pending transfer failed; "
    d+="pending transfers: ${SUMMARY%; }; "
}

conclude() { # RESULT and DETAILS from the calling case's p and d
    RESULT=$(verdict "$p") DETAILS="${p:+PROBLEMS: $p| }$d"
    if [[ $p == *setup:* ]]; then RESULT=broken; fi
}

# A list on one line.
oneline() { sed '/^$/d' | paste -sd ' ' -; }

ipset_members() { # SET
    { gw ipset list "$1" 2>/dev/null || true; } | sed -n '/^Members:/,$p' | tail -n +2 | awk 'NF { print $1 }' | sort
}

# Every line of $1 is in $2 (sets as sorted lines).
subset() { [[ -z $(comm -23 <(printf '%s\n' "$1" | sed '/^$/d') <(printf '%s\n' "$2" | sed '/^$/d')) ]]; }

# --- results ----------------------------------------------------------------------

R_CASE=() R_MODE=() R_EXP=() R_RES=() R_SECS=() R_DET=()

record() { # CASE MODE EXPECTED RESULT DETAILS
    R_CASE+=("$1") R_MODE+=("$2") R_EXP+=("$3") R_RES+=("$4") R_SECS+=("$(elapsed "$CASE_T0")") R_DET+=("$5")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${R_SECS[-1]}" "$5" >>"$WORK/results.tsv"
    log "$(printf '%-18s %-6s %-6s %s' "$1" "$2" "$4" "$5")"
}

# --- cases ------------------------------------------------------------------------

# What each case expects (every case also: the background PORT and PASV
# downloads stay intact, except 5a/5b whose sessions are the load).
declare -A EXPECT=(
    [1-synflood]="new sessions ok during+after flood; full table warned"
    [2-nat-reuse]="greeting <2s on the reused port; PASV+PORT ok"
    [3-queue-overflow]="NOOPs <2s after resume; PASV+PORT after ok"
    [4-ct-full]="retried SYNs helped; failure logged, no RELATED"
    [5a-kill9]="no hang; PORT+PASV sessions carry on; new ok"
    [5b-sigterm]="no hang; PORT+PASV sessions carry on; new ok"
    [5c-kill9-rewrite]="NOOPs 200 during the outage; next+new transfers ok"
    [5c6-kill9-rewrite-v6]="NOOPs 200 during the outage; next+new transfers ok"
    [5d-kill9-pending]="announced before the kill, transfers after it ok"
    [5d6-kill9-pending-v6]="announced before the kill, transfers after it ok"
    [6-second-instance]="1st's ipset entries kept; 2nd refuses/own sets"
    [7a-ipset-flush]="flush noticed in the log; pending PASV+PORT ok"
    [7b-rules-delete]="warning logged"
    [8-ct-destroyed]="flow, expectation, ipset entry gone in 5 s"
)

# The kernel's helper where it differs (its analog of the fault, or no log).
declare -A EXPECT_KERNEL=(
    [1-synflood]="new sessions ok during+after flood"
    [3-queue-overflow]="same traffic, no stop: NOOPs <2s; PASV+PORT ok"
    [4-ct-full]="retried SYNs helped"
    [7a-ipset-flush]="conntrack -F expect: pending PASV+PORT ok"
    [7b-rules-delete]="helper off, on: pending PASV+PORT ok"
)
expect_of() { # CASE MODE
    if [[ $2 == kernel && -n ${EXPECT_KERNEL[$1]:-} ]]; then echo "${EXPECT_KERNEL[$1]}"; else echo "${EXPECT[$1]}"; fi
}

# The verdict of a case from its list of problems ('' = as expected).
verdict() { if [[ -z $1 ]]; then echo pass; else echo fail; fi; }

# Figures from ftpct's periodic `state:` lines: the most flows held at once,
# and the last untracked counter.
state_max_flows() { { grep -o 'state: flows=[0-9]*' "$1" || true; } | cut -d= -f2 | sort -n | tail -n1; }
# The last value of a counter of the `state:` lines.
state_counter() { { grep -o " $2=[0-9]*" "$1" || true; } | tail -n1 | cut -d= -f2; }
warn_lines() { sed 's/\x1b\[[0-9;]*m//g' | grep -E '^[^ ]+ +(WARN|ERROR) ' || true; }

# Packets the queue rules sent to NFQUEUE since the case began, and how many
# of them ftpct never saw: NFQUEUE counts only what it queued (id_sequence of
# queue 0), fail-open passes the rest unseen and uncounted.
queue_unseen() {
    local hits queued
    hits=$({ gw iptables -t raw -L -v -x -n 2>/dev/null || true; } | awk '/NFQUEUE/ { n += $1 } END { print n + 0 }')
    queued=$({ gw cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null || true; } | awk '$1 == 0 { print $8 }')
    echo "queue rules matched $hits packets, ftpct was handed ${queued:-?}, unseen (fail-open) $((hits - ${queued:-0}))"
}

case_synflood() { # MODE
    local mode=$1 p='' d='' fc fs maxf=0 untr=0 warn
    bg_start
    ip netns exec "$NS_CLI" python3 "$ABUSE/faults_synflood.py" --src 192.0.2.100-192.0.2.254 --dst "$SRV4" \
        --dport 21 --count "$FLOOD_CLI" --rate $((FLOOD_CLI / FLOOD_SECS)) --seed 1 </dev/null >"$CDIR/flood-cli.log" 2>&1 &
    fc=$!; PIDS+=("$fc")
    ip netns exec "$NS_SRV" python3 "$ABUSE/faults_synflood.py" --src 198.51.100.100-198.51.100.254 --sport 21 \
        --dst "$CLI4" --dport 0 --count "$FLOOD_SRV" --rate $((FLOOD_SRV / FLOOD_SECS)) --seed 2 </dev/null >"$CDIR/flood-srv.log" 2>&1 &
    fs=$!; PIDS+=("$fs")
    sleep $((FLOOD_SECS / 2))
    client during-port port get 1k.bin quit
    client during-pasv pasv get 1k.bin quit
    wait_bounded "$fc" 30 || p+="client-side flood did not finish; "
    wait_bounded "$fs" 30 || p+="server-side flood did not finish; "
    d+="flood: client side $(cat "$CDIR/flood-cli.log"), server side $(cat "$CDIR/flood-srv.log"); "
    run_wait 25 during-port during-pasv
    ((ALL_OK)) || p+="a session started during the flood failed; "
    d+="during: ${SUMMARY%; }; "
    if [[ $mode == ftpct ]]; then
        d+="ftpct on during-port: $(flow_log during-port); on during-pasv: $(flow_log during-pasv); "
    fi
    client after-port port get 1k.bin quit
    client after-pasv pasv get 1k.bin quit
    run_wait 25 after-port after-pasv
    ((ALL_OK)) || p+="a session started after the flood failed; "
    d+="after: ${SUMMARY%; }; "
    d+="gw conntrack count $(gw cat /proc/sys/net/netfilter/nf_conntrack_count); "
    [[ $mode == ftpct ]] && d+="$(queue_unseen); "
    bg_finish
    if [[ $mode == ftpct ]]; then
        sleep 1.1 # one more state line
        maxf=$(state_max_flows "$FTPCT_LOG"); untr=$(state_counter "$FTPCT_LOG" untracked)
        warn=$(warn_lines <"$FTPCT_LOG" | grep -iE 'flow' | grep -iE 'full|limit|evict|untracked' | head -n1 | cut -c1-160 || true)
        d+="ftpct: handled $(state_counter "$FTPCT_LOG" packets) packets, most flows held ${maxf:-?}, untracked ${untr:-?}, evicted $(state_counter "$FTPCT_LOG" evicted), resyncs $(state_counter "$FTPCT_LOG" resyncs) ('passed uninspected' lines: $(grep -c 'passed uninspected' "$FTPCT_LOG" || true)); table-full warning: ${warn:-none}; "
        if ((${untr:-0} > 0 || ${maxf:-0} >= 100000)) && [[ -z $warn ]]; then
            p+="flow table full (untracked=${untr:-0}, flows=${maxf:-0}) and no warning in the log; "
        fi
    fi
    RESULT=$(verdict "$p") DETAILS="${p:+PROBLEMS: $p| }$d"
}

case_nat_reuse() { # MODE
    local mode=$1 p='' d='' ct greet reused
    gw iptables -t nat -I POSTROUTING 1 -o gwout -s "$CLI_NEW" -p tcp --dport 21 -j SNAT --to-source "$PUB4:$REUSED_PORT"
    undo_push ip netns exec "$NS_GW" iptables -t nat -D POSTROUTING -o gwout -s "$CLI_NEW" -p tcp --dport 21 -j SNAT --to-source "$PUB4:$REUSED_PORT"
    gw iptables -t nat -I POSTROUTING 1 -o gwout -s "$CLI_OLD" -p tcp --dport 21 -j SNAT --to-source "$PUB4:$REUSED_PORT"
    undo_push ip netns exec "$NS_GW" iptables -t nat -D POSTROUTING -o gwout -s "$CLI_OLD" -p tcp --dport 21 -j SNAT --to-source "$PUB4:$REUSED_PORT"
    bg_start
    # The old session: logged in, PORT sent (rewritten: a shift of +2), then silence.
    client old port --src "$CLI_OLD" announce touch "$CDIR/old-ready" hold 60
    wait_file "$CDIR/old-ready" 10 || p+="setup: old session did not get going ($(client_summary old 1)); "
    ct=$(gw conntrack -L -p tcp -s "$CLI_OLD" --dport 21 2>/dev/null | head -n1 || true)
    [[ $ct == *"dport=$REUSED_PORT"* ]] || p+="setup: old session not SNATed to port $REUSED_PORT ($ct); "
    # It vanishes: nothing more leaves the client or the server for it.
    cli iptables -I OUTPUT -s "$CLI_OLD" -p tcp --dport 21 -j DROP
    undo_push ip netns exec "$NS_CLI" iptables -D OUTPUT -s "$CLI_OLD" -p tcp --dport 21 -j DROP
    srv iptables -I OUTPUT -p tcp --sport 21 -d "$PUB4" --dport "$REUSED_PORT" -j DROP
    cli ss -K -tn src "$CLI_OLD" dport = :21 >/dev/null 2>&1 || true
    srv ss -K -tn dst "$PUB4" dport = ":$REUSED_PORT" >/dev/null 2>&1 || true
    kill "${CPID[old]}" 2>/dev/null || true
    wait_bounded "${CPID[old]}" 5 || true
    sleep 0.3
    srv iptables -D OUTPUT -p tcp --sport 21 -d "$PUB4" --dport "$REUSED_PORT" -j DROP
    # Its conntrack entry goes (standing for its timeout, which is not shortened).
    gw conntrack -D -p tcp -s "$CLI_OLD" --dport 21 >/dev/null 2>&1 || p+="setup: no conntrack entry of the old session to delete; "
    # The new session, mapped to the same public address and port.
    client new pasv --src "$CLI_NEW" get 1k.bin mode port get 1k.bin quit
    run_wait 30 new
    ((ALL_OK)) || p+="new session failed; "
    greet=$(kv step=greeting secs "$CDIR/new.log")
    if [[ -z $greet ]] || ! lt "$greet" 2; then p+="greeting after ${greet:-never} s; "; fi
    ct=$(gw conntrack -L -p tcp -s "$CLI_NEW" --dport 21 2>/dev/null | head -n1 || true)
    reused=no
    [[ $ct == *"dport=$REUSED_PORT"* ]] && reused=yes
    [[ $reused == yes ]] || p+="setup: the new session was not mapped to port $REUSED_PORT ($ct); "
    d+="new session from $CLI_NEW (public port $REUSED_PORT reused: $reused): greeting ${greet:-never} s, ${SUMMARY%; }; "
    undo_all
    bg_finish
    if [[ $mode == ftpct ]]; then
        d+="ftpct on the new session: $(flow_log new); its segments dropped: $(flow_drops new); "
        d+="flows ftpct tracked for the two sessions: $({ grep -E 'new forwarded control connection.*flow=192\.0\.2\.1[12]:' "$FTPCT_LOG" || true; } | sed -e 's/^[^ ]* *DEBUG //' -e 's/ event=[^ ]*//' | paste -sd '|'); "
    fi
    conclude
}

# The NFQUEUE's packets waiting for a verdict (queue 0, in the gateway).
queue_total() { { gw cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null || true; } | awk '$1 == 0 { print $3 }'; }

case_queue_overflow() { # MODE
    local mode=$1 p='' d='' t_stop t_cont i q qmax=0 unseen full=no sent=0 ans noop drained=''
    bg_start
    client pipe pasv --max-wait 20 get 1k.bin touch "$CDIR/ready" wait "$CDIR/go" pipeline "$CDIR/resumed" \
        noop wait "$CDIR/drained" get 1k.bin mode port get 1k.bin quit
    wait_file "$CDIR/ready" 10 || p+="setup: session did not get going; "
    t_stop=$(now)
    if [[ $mode == ftpct ]]; then kill -STOP "$FTPCT_PID"; STOPPED=1; fi
    touch "$CDIR/go"
    sleep 0.2
    # Spoofed SYNs to port 21 in chunks until some pass unseen (the queue is
    # full: fail-open), within 1.5 s of the stop.
    for ((i = 0; i < 20; i++)); do
        ip netns exec "$NS_CLI" python3 "$ABUSE/faults_synflood.py" --src 192.0.2.100-192.0.2.254 --dst "$SRV4" \
            --dport 21 --count 3000 --seed $((100 + i)) </dev/null >>"$CDIR/burst.log" 2>&1 || true
        sent=$((sent + 3000))
        q=$(queue_total); q=${q:-0}
        ((q > qmax)) && qmax=$q
        if [[ $mode == ftpct ]]; then
            unseen=$(queue_unseen | sed -n 's/.*unseen (fail-open) \(-\{0,1\}[0-9]*\).*/\1/p')
            ((${unseen:-0} > 0)) && { full=yes; break; }
        fi
        [[ $mode == kernel && $sent -ge 6000 ]] && break
        lt "$(elapsed "$t_stop")" 1.5 || break
    done
    while lt "$(elapsed "$t_stop")" 2; do sleep 0.05; done
    t_cont=$(now)
    if [[ $mode == ftpct ]]; then kill -CONT "$FTPCT_PID"; STOPPED=0; fi
    touch "$CDIR/resumed"
    # The transfers wait until ftpct has caught up with its queue: a PASV
    # or PORT that passes unseen while it is still full cannot be helped.
    if [[ $mode == ftpct ]]; then
        for ((i = 0; i < 50; i++)); do
            q=$(queue_total)
            [[ ${q:-0} == 0 ]] && { drained=$(elapsed "$t_cont"); break; }
            sleep 0.1
        done
    else
        drained=0
    fi
    touch "$CDIR/drained"
    run_wait 40 pipe
    ((ALL_OK)) || p+="session failed; "
    ans=$(kv step=pipeline answered "$CDIR/pipe.log")
    noop=$(kv step=noop secs "$CDIR/pipe.log")
    if [[ -z $ans ]] || ! lt "$ans" 2; then p+="NOOPs answered ${ans:-never} s after resume; "; fi
    if [[ -z $noop ]] || ! lt "$noop" 2; then p+="next NOOP answered in ${noop:-never} s; "; fi
    d+="burst $sent SYNs; pipelined $(kv step=pipeline noops "$CDIR/pipe.log" | grep . || echo '?') NOOPs, all answered ${ans:-never} s after resume, next NOOP in ${noop:-never} s; queue drained ${drained:-not within 5} s after resume; session: ${SUMMARY%; }; "
    if [[ $mode == ftpct ]]; then
        d+="queue peak $qmax packets, overflowed: $full, $(queue_unseen); "
        [[ $full == yes ]] || p+="setup: the queue did not overflow (peak $qmax); "
    fi
    bg_finish
    if [[ $mode == ftpct ]]; then
        d+="ftpct: $(grep -o 'dropped=[0-9]* held_given_up=[0-9]* resyncs=[0-9]*' "$FTPCT_LOG" | tail -n1 || true); on the session: $(flow_log pipe); its segments dropped by ftpct: $(flow_drops pipe); "
    fi
    conclude
}

case_ct_full() { # MODE
    local mode=$1 p='' d='' fill off_full=0 off_free=0 during related failline
    bg_start
    client pend-pasv pasv --max-wait 20 --timeout 15 announce touch "$CDIR/pasv-ready" wait "$CDIR/go" get 1k.bin quit
    client pend-port port --max-wait 20 --timeout 15 announce touch "$CDIR/port-ready" wait "$CDIR/go" get 1k.bin quit
    wait_file "$CDIR/pasv-ready" 10 && wait_file "$CDIR/port-ready" 10 || p+="setup: sessions did not get going; "
    sleep 0.5
    undo_push ip netns exec "$NS_GW" python3 "$ABUSE/faults_ctfill.py" flush
    fill=$(gw python3 "$ABUSE/faults_ctfill.py" fill </dev/null 2>&1) || true
    [[ $fill == *full=yes* ]] || p+="setup: the table did not fill ($fill); "
    d+="fill: $fill; "
    [[ $mode == ftpct ]] && off_full=$(size_of "$FTPCT_LOG")
    touch "$CDIR/go"
    sleep 1.5
    [[ $mode == ftpct ]] && off_free=$(size_of "$FTPCT_LOG")
    d+="room made: $(gw python3 "$ABUSE/faults_ctfill.py" free 2000 </dev/null 2>&1); "
    run_wait 30 pend-pasv pend-port
    ((ALL_OK)) || p+="a pending transfer failed; "
    d+="data connection established after: pasv $(kv step=get connect "$CDIR/pend-pasv.log")s, port $(kv step=get connect "$CDIR/pend-port.log")s; ${SUMMARY%; }; "
    undo_all
    bg_finish
    if [[ $mode == ftpct ]]; then
        during=$(slice "$FTPCT_LOG" "$off_full" "$off_free")
        related=$(grep -c 'matched, RELATED' <<<"$during" || true)
        failline=$(warn_lines <<<"$during" | grep -iE 'data connection|conntrack|creat' | head -n1 | cut -c1-200 || true)
        d+="ftpct while full: 'matched, RELATED' x$related, failure line: ${failline:-none}; "
        ((related == 0)) || p+="ftpct logged 'matched, RELATED' $related time(s) while the table was full; "
        [[ -n $failline ]] || p+="no failure logged while the table was full; "
    fi
    conclude
}

case_kill() { # MODE SIGNAL
    local mode=$1 sig=$2 p='' d='' i t0 rc gone s name
    local -a sessions=(s1-port s2-pasv s3-port s4-pasv)
    for name in "${sessions[@]}"; do
        client "$name" "${name#*-}" --rate 4000000 --hurry "$CDIR/hurry" --started "$CDIR/$name.started" \
            --max-wait 40 slowget 50m.bin wait "$CDIR/restarted" get 1k.bin quit
    done
    # Under load: every session's data connection carries data.
    for name in "${sessions[@]}"; do
        wait_file "$CDIR/$name.started" 10 || p+="setup: $name not transferring after 10 s; "
    done
    sleep 1
    t0=$(now)
    kill "-$sig" "$FTPCT_PID"
    rc=0
    wait_bounded "$FTPCT_PID" 8 || rc=$?
    gone=$(elapsed "$t0")
    d+="ftpct $sig: exit status $rc after ${gone}s; "
    [[ $sig == TERM ]] && d+="its last line: $(tail -n1 "$FTPCT_LOG" | sed 's/^[^ ]* *//' | cut -c1-120); "
    FTPCT_PID=''
    sleep 2
    ftpct_start "$CDIR/ftpct-restarted.log"
    touch "$CDIR/restarted" "$CDIR/hurry"
    for name in "${sessions[@]}"; do
        rc=0
        client_wait "$name" 60 || rc=$?
        s=$(client_summary "$name" "$rc")
        d+="$name: $s; "
        [[ $s == hung* ]] && p+="$name hung; "
        # PORT sessions too: their fix-ups are in the kernel (5c).
        [[ $s == ok ]] || p+="$name did not carry on; "
        if [[ $s != ok ]] && grep -q 'reply=none' "$CDIR/$name.log"; then
            d+="  ($name: data $(kv step=get bytes "$CDIR/$name.log") bytes, SHA-256 $(kv step=get sha "$CDIR/$name.log"), then no 226); "
        fi
    done
    client new-port port get 1k.bin quit
    client new-pasv pasv get 1k.bin quit
    run_wait 25 new-port new-pasv
    ((ALL_OK)) || p+="a new session after the restart failed; "
    d+="new sessions after restart: ${SUMMARY%; }; "
    FTPCT_LOG=$CDIR/ftpct-restarted.log
    conclude
}

case_kill_after_rewrite() { # MODE [port|eprt (IPv6)]
    local mode=$1 kind=${2:-port} p='' d='' s rc=0
    local CLIENT_SRV=$SRV4
    [[ $kind == eprt ]] && CLIENT_SRV=$SRV6
    client rw "$kind" get 1k.bin touch "$CDIR/rewritten" wait "$CDIR/killed" \
        noop noop noop touch "$CDIR/nooped" wait "$CDIR/restarted" get 1k.bin quit
    wait_file "$CDIR/rewritten" 15 || p+="setup: the first transfer did not end in 15 s; "
    if [[ $mode == ftpct ]]; then
        grep -qi "rewrite '$kind" "$FTPCT_LOG" || p+="setup: ftpct logged no $kind rewrite; "
        kill -KILL "$FTPCT_PID"
        wait_bounded "$FTPCT_PID" 5 || true
        FTPCT_PID=''
    fi
    touch "$CDIR/killed"
    wait_file "$CDIR/nooped" 20 || p+="the NOOPs during the outage were not all answered in 20 s; "
    d+="NOOPs during the outage: $({ grep '^step=noop' "$CDIR/rw.log" || true; } | sed 's/.*secs=/ /' | oneline)s; "
    [[ $mode == ftpct ]] && ftpct_start "$CDIR/ftpct-restarted.log"
    touch "$CDIR/restarted"
    client_wait rw 30 || rc=$?
    s=$(client_summary rw "$rc")
    d+="the session: $s; "
    [[ $s == ok ]] || p+="the rewritten session did not carry on: $s; "
    client new-port "$kind" get 1k.bin quit
    run_wait 25 new-port
    ((ALL_OK)) || p+="a new session after the restart failed; "
    d+="new session: ${SUMMARY%; }; "
    [[ $mode == ftpct ]] && FTPCT_LOG=$CDIR/ftpct-restarted.log
    conclude
}

case_kill_with_pending() { # MODE [6 (IPv6: EPRT and EPSV)]
    local mode=$1 p='' d='' name active=port passive=pasv
    local CLIENT_SRV=$SRV4
    if [[ ${2:-} == 6 ]]; then CLIENT_SRV=$SRV6 active=eprt passive=epsv; fi
    for name in "$active" "$passive"; do
        client "pend-$name" "$name" announce touch "$CDIR/$name.announced" wait "$CDIR/restarted" \
            get 1k.bin quit
    done
    wait_file "$CDIR/$active.announced" 15 && wait_file "$CDIR/$passive.announced" 15 ||
        p+="setup: the announcements did not happen in 15 s; "
    if [[ $mode == ftpct ]]; then
        kill -KILL "$FTPCT_PID"
        wait_bounded "$FTPCT_PID" 5 || true
        FTPCT_PID=''
        sleep 1
        ftpct_start "$CDIR/ftpct-restarted.log"
        d+="restarted: $({ grep -o 'took up [^,]*, [0-9]* with a pending data connection' "$CDIR/ftpct-restarted.log" || echo 'took up nothing'; } | head -n1); "
    fi
    touch "$CDIR/restarted"
    run_wait 25 "pend-$active" "pend-$passive"
    ((ALL_OK)) || p+="a transfer announced before the kill failed; "
    d+="${SUMMARY%; }; "
    [[ $mode == ftpct ]] && FTPCT_LOG=$CDIR/ftpct-restarted.log
    conclude
}

case_ct_destroyed() { # MODE
    local mode=$1 p='' d='' i held=''
    client gone port announce touch "$CDIR/announced" hold 20
    wait_file "$CDIR/announced" 15 || p+="setup: no announcement in 15 s; "
    sleep 0.5
    if [[ $mode == ftpct ]]; then
        [[ -n $(ipset_members ftpct) ]] || p+="setup: no ipset entry for the pending PORT; "
    fi
    gw conntrack -D -p tcp --dport 21 >/dev/null 2>&1 || p+="setup: conntrack -D deleted nothing; "
    for ((i = 0; i < 50; i++)); do
        if [[ $mode == ftpct ]]; then
            # The held figures, not the counters later on the same line.
            held=$(tail -n 5 "$FTPCT_LOG" | grep -o 'state: flows=[0-9]* expectations=[0-9]*' | tail -n1 || true)
            [[ $held == 'state: flows=0 expectations=0' && -z $(ipset_members ftpct) ]] && break
        else
            held=$(gw conntrack -L expect 2>/dev/null | grep -c . || true)
            [[ $held == 0 ]] && break
        fi
        sleep 0.1
    done
    d+="after $((i / 10)).$((i % 10)) s: ${held:-?}; ipset: $(ipset_members ftpct | oneline); "
    ((i < 50)) || p+="still held 5 s after the entry went; "
    conclude
}

case_second_instance() { # MODE
    local mode=$1 p='' d='' before during after rc=running i msg
    pending_start
    before=$(ipset_members ftpct)
    gw ipset list ftpct >"$CDIR/ipset-before.txt" 2>&1 || true
    [[ $(wc -l <<<"$before") -ge 2 && -n $before ]] || p+="setup: fewer than 2 pending entries in ipset ftpct ($before); "
    ip netns exec "$NS_GW" "$FTPCT" run --queue 1 --state-interval 1 </dev/null >"$CDIR/ftpct-second.log" 2>&1 &
    SECOND_PID=$!
    for ((i = 0; i < 30; i++)); do
        if ! kill -0 "$SECOND_PID" 2>/dev/null; then
            rc=0; wait "$SECOND_PID" || rc=$?; SECOND_PID=''
            break
        fi
        grep -q 'running: queues' "$CDIR/ftpct-second.log" && break
        sleep 0.1
    done
    sleep 0.5
    during=$(ipset_members ftpct)
    gw ipset list ftpct >"$CDIR/ipset-during.txt" 2>&1 || true
    if [[ -n $SECOND_PID ]]; then
        d+="second instance ran ($(grep -o 'running:.*' "$CDIR/ftpct-second.log" | head -n1)); "
        stop_pid "$SECOND_PID" 50 || d+="(killed) "
        SECOND_PID=''
    else
        msg=$(sed 's/\x1b\[[0-9;]*m//g' "$CDIR/ftpct-second.log" | tail -n1 | cut -c1-160)
        d+="second instance exited $rc: '$msg'; "
        ((rc != 0)) || p+="second instance exited 0 without running; "
        [[ -n $msg ]] || p+="second instance exited without a message; "
    fi
    after=$(ipset_members ftpct)
    gw ipset list ftpct >"$CDIR/ipset-after.txt" 2>&1 || true
    d+="ipset ftpct: before [$(oneline <<<"$before")], during [$(oneline <<<"$during")], after [$(oneline <<<"$after")]; "
    subset "$before" "$during" || p+="the first instance's ipset entries were removed while the second ran; "
    subset "$before" "$after" || p+="the first instance's ipset entries were gone after the second stopped; "
    pending_finish
    bg_finish
    conclude
}

case_ipset_flush() { # MODE
    local mode=$1 p='' d='' before now_ off=0 i noticed='' restored=no
    pending_start
    if [[ $mode == ftpct ]]; then
        before=$(ipset_members ftpct)
        [[ -n $before ]] || p+="setup: no pending entry in ipset ftpct; "
        off=$(size_of "$FTPCT_LOG")
        gw ipset flush ftpct
        for ((i = 0; i < 50; i++)); do
            sleep 0.1
            noticed=$(slice "$FTPCT_LOG" "$off" | grep -iE 'ipset|set ftpct|flush' | grep -v 'state:' | head -n1 | cut -c1-200 || true)
            now_=$(ipset_members ftpct)
            if [[ -n $before ]] && subset "$before" "$now_"; then restored=yes; fi
            [[ -n $noticed && $restored == yes ]] && break
        done
        d+="ipset ftpct before [$(oneline <<<"$before")], 5 s after the flush [$(oneline <<<"$now_")], restored: $restored; noticed: ${noticed:-no log line}; "
        [[ -n $noticed ]] || p+="ftpct logged nothing about the flushed set; "
    else
        d+="expectations before: $(gw conntrack -L expect 2>/dev/null | grep -c . || true); "
        gw conntrack -F expect >/dev/null 2>&1 || true
        sleep 1
    fi
    pending_finish
    bg_finish
    conclude
}

case_rules_delete() { # MODE
    local mode=$1 p='' d='' off=0 i warned=''
    pending_start
    if [[ $mode == ftpct ]]; then
        off=$(size_of "$FTPCT_LOG")
        gw "$FTPCT" rules --delete >>"$CDIR/rules.log" 2>&1 </dev/null || p+="setup: ftpct rules --delete failed; "
        for ((i = 0; i < 50; i++)); do
            sleep 0.1
            warned=$(slice "$FTPCT_LOG" "$off" | warn_lines | head -n1 | cut -c1-200)
            [[ -n $warned ]] && break
        done
        d+="warning after rules --delete: ${warned:-none in 5 s}; "
        [[ -n $warned ]] || p+="ftpct did not warn after its rules and sets were deleted; "
        gw "$FTPCT" rules --apply >>"$CDIR/rules.log" 2>&1 </dev/null || p+="ftpct rules --apply failed; "
        d+="ipset ftpct after re-apply [$(ipset_members ftpct | oneline)]; "
    else
        "$LAB" helper off >/dev/null
        sleep 2
        "$LAB" helper on >/dev/null
    fi
    sleep 0.5
    touch "$CDIR/go"
    run_wait 30 pend-pasv pend-port
    if [[ $mode == ftpct ]]; then
        d+="pending transfers after re-apply (not judged): ${SUMMARY%; }; "
    else
        ((ALL_OK)) || p+="a pending transfer failed; "
        d+="pending transfers after helper off/on: ${SUMMARY%; }; "
    fi
    bg_finish
    conclude
}

# run_case NAME MODE: a fresh gateway state, the case, its row.
run_case() {
    local name=$1 mode=$2
    CDIR=$WORK/$name.$mode
    mkdir -p "$CDIR"
    CPID=() RESULT='' DETAILS=''
    CASE_T0=$(now)
    case $name in
        5a-* | 5b-* | 6-*)
            if [[ $mode == kernel ]]; then
                record "$name" "$mode" "$(expect_of "$name" "$mode")" n/a "no ftpct process in the kernel's helper: nothing to kill or start twice"
                return 0
            fi
            ;;
    esac
    gw_mode "$mode"
    flush_conntrack
    gw iptables -t raw -Z 2>/dev/null || true # queue rule counters, for queue_unseen
    if [[ $mode == ftpct ]]; then
        # Cases 2 and 3 log every packet and decision (-v): the evidence.
        if [[ $name == [23]-* ]]; then ftpct_start "$CDIR/ftpct.log" -v; else ftpct_start "$CDIR/ftpct.log"; fi
    fi
    log "case $name ($mode)"
    case $name in
        1-synflood) case_synflood "$mode" ;;
        2-nat-reuse) case_nat_reuse "$mode" ;;
        3-queue-overflow) case_queue_overflow "$mode" ;;
        4-ct-full) case_ct_full "$mode" ;;
        5a-kill9) case_kill "$mode" KILL ;;
        5b-sigterm) case_kill "$mode" TERM ;;
        5c-kill9-rewrite) case_kill_after_rewrite "$mode" ;;
        5c6-kill9-rewrite-v6) case_kill_after_rewrite "$mode" eprt ;;
        5d-kill9-pending) case_kill_with_pending "$mode" ;;
        5d6-kill9-pending-v6) case_kill_with_pending "$mode" 6 ;;
        6-second-instance) case_second_instance "$mode" ;;
        7a-ipset-flush) case_ipset_flush "$mode" ;;
        7b-rules-delete) case_rules_delete "$mode" ;;
        8-ct-destroyed) case_ct_destroyed "$mode" ;;
    esac
    undo_all
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    PIDS=()
    ftpct_stop
    record "$name" "$mode" "$(expect_of "$name" "$mode")" "$RESULT" "$DETAILS"
}

print_table() {
    local i bad=0 mark
    printf '\n%-18s %-6s %-50s %-7s %6s\n' case mode expected result secs
    printf '%s\n' "$(printf '%.0s-' {1..92})"
    for i in "${!R_CASE[@]}"; do
        mark=''
        if [[ ${R_MODE[$i]} == ftpct && ${R_RES[$i]} != pass ]]; then mark='  <-- MISMATCH'; bad=$((bad + 1)); fi
        printf '%-18s %-6s %-50s %-7s %6s%s\n' "${R_CASE[$i]}" "${R_MODE[$i]}" "${R_EXP[$i]}" "${R_RES[$i]}" \
            "${R_SECS[$i]}" "$mark"
        printf '%s\n' "${R_DET[$i]}" | fold -s -w 130 | sed 's/^/      /'
    done
    printf '%s\n' "$(printf '%.0s-' {1..92})"
    local where="$WORK/results.tsv"
    ((KEEP)) || where="${TSV_COPY:-not kept (--keep or --tsv FILE keeps the TSV)}"
    printf '%d row(s), %d ftpct mismatch(es), %d s; results: %s\n' "${#R_CASE[@]}" "$bad" "$SECONDS" "$where"
    ((bad == 0))
}

main() {
    parse_args "$@"
    lab_prerequisites
    local selected='' c
    for c in $ALL_CASES; do
        [[ -z $ONLY || $c =~ $ONLY ]] && selected+="$c "
    done
    [[ -n $selected ]] || die "no case matches --only \"$ONLY\" (cases: $ALL_CASES)"
    trap cleanup EXIT
    trap 'log "interrupted"; exit 130' INT TERM
    WORK=$(mktemp -d /tmp/ftpct-abf.XXXXXX)
    chmod 0755 "$WORK"
    printf 'case\tmode\texpected\tresult\tsecs\tdetails\n' >"$WORK/results.tsv"
    log "cases: $selected; modes $MODES; work directory $WORK"
    lab_up
    local mode
    for mode in ftpct kernel; do
        has_mode "$mode" || continue
        for c in $selected; do run_case "$c" "$mode"; done
    done
    [[ -n $TSV_COPY ]] && cp "$WORK/results.tsv" "$TSV_COPY"
    print_table
}

main "$@"
