#!/usr/bin/env bash
# Gateway benchmarks: ftpct against the kernel's FTP helper and against no
# helper at all, in the same run, on the snat lab (scripts/lab.sh).
#
# Usage: sudo scripts/bench.sh [--quick] [--rounds N] [--no-vsftpd] [--no-nfq]
#                              [--queue-all-too] [--ftpct-queues SPEC]
#                              [--ftpct-busy-poll USEC] [--only LIST] [--out DIR]
#
#   --quick       ~3 minutes: 2 rounds, shorter tests (the NOOP session keeps
#                 its 10,000 commands)
#   --rounds N    rounds (default 5); each round runs every test once per
#                 gateway, the gateways in a rotating order
#   --no-vsftpd   skip the vsftpd tests (sessions and bulk)
#   --no-nfq      skip gateway (d)
#   --queue-all-too  add gateway (e) ftpctall
#   --ftpct-queues SPEC  ftpct's queues for (c) and (e) (`ftpct rules` and
#                 `ftpct run --queues SPEC`, e.g. 0:1: one per CPU); default 0
#   --ftpct-busy-poll USEC  `ftpct run --busy-poll USEC` for (c) and (e)
#                 (default 0: the queue threads sleep at once)
#   --only LIST   run only these tests (comma-separated: rtt,sessions,bulk,stream)
#   --out DIR     keep the raw results (results.jsonl), logs and table there
#                 (default: a fresh /tmp/ftpct-bench.XXXXXX, kept)
#
# Gateways, alternated within each round:
#   none    (a) no helper, permissive forwarding (FORWARD -j ACCEPT first): the floor
#   kernel  (b) nf_conntrack_ftp + nf_nat_ftp (`lab.sh helper on`), RELATED accepted
#   ftpct   (c) `ftpct rules --apply --selective`, `ftpct run --selective`
#   nfq     (d) ftpct's rules with --queue-all (every control packet queued),
#           but a do-nothing queue program (`ftpload nfq-null`: recv, accept)
#           and permissive forwarding: the cost of crossing to userspace
#           alone, for rtt, sessions (ftpload) and stream
#   ftpctall (e, with --queue-all-too) as (c), with `--queue-all` added to both
#           `ftpct rules --apply` and `ftpct run` (fails if ftpct rejects it)
#
# Tests (client in ${PREFIX}cli, servers in ${PREFIX}srv, NAT gateway between):
#   rtt       NOOP, PASV+227 and PORT+200 round trips in one session, client,
#             server and queue program on CPU 0; NOOP again with the queue
#             program on CPU 1
#   sessions  K = 1, 16, 128 clients (vsftpd: 1, 16): login, PASV/EPSV/PORT/EPRT in turn,
#             RETR 1k.bin (SHA-256 checked), QUIT; sessions per second, with
#             the CPU of server, ftpct and client (cpuacct cgroups); then one
#             client, sessions one after the other for a second or two (at
#             least 20), passive (PASV/EPSV) then active (PORT/EPRT): packets
#             queued per session
#   bulk      RETR of 1 GiB, SHA-256 checked
#   stream    one control connection streams "NOOP\r\n" lines in small
#             segments to a sink; packets per second through the gateway,
#             packets ftpct saw against packets that reached its queue rule,
#             ftpct's CPU per packet
# Servers: ftpload's own (tools/ftpload, fast) for every test, vsftpd
# (forks per session, realistic) for sessions and bulk.
# Packets queued: every test reads the packet counters of all the NFQUEUE
# rules of the gateway's raw table (any chain, iptables and ip6tables)
# before and after; a gateway without such rules counts 0. Per NOOP round
# trip: the NOOP session's count less that of a 1-NOOP session (the same
# login, warm-up and QUIT), over the NOOPs between them.
#
# Scale (RSS per tracked connection and expectation, lookup time) is the
# engine benchmark's job: `cargo bench -p ftpct-engine --bench engine`, see BENCHMARKS.md.
#
# Environment: FTPCT_BENCH_PREFIX (default ftpct-bench-, must start with
# ftpct-: the lab's namespaces, apart from any other lab), FTPCT_BENCH_BUSY_WAIT
# (seconds to wait for a busy machine to calm down, default 300).
#
# Every wait is bounded; an EXIT trap stops everything started here and takes
# the lab down, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
TOP=$PWD

ROUNDS=5
QUICK=0
VSFTPD=1
NFQ=1
QUEUE_ALL=0
FTPCT_QUEUES=0
FTPCT_BUSY_POLL=0
ONLY=,rtt,sessions,bulk,stream,
OUT=''
while (($#)); do
    case $1 in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS=${2:?--rounds N}; shift ;;
        --no-vsftpd) VSFTPD=0 ;;
        --no-nfq) NFQ=0 ;;
        --queue-all-too) QUEUE_ALL=1 ;;
        --ftpct-queues) FTPCT_QUEUES=${2:?--ftpct-queues SPEC}; shift ;;
        --ftpct-busy-poll) FTPCT_BUSY_POLL=${2:?--ftpct-busy-poll USEC}; shift ;;
        --only) ONLY=,${2:?--only LIST},; shift ;;
        --out) OUT=${2:?--out DIR}; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $ROUNDS =~ ^[1-9][0-9]?$ ]] || { echo "bench: --rounds 1..99" >&2; exit 2; }

# Test sizes.
NOOP_COUNT=10000
CMD_COUNT=3000
SESS_SECS=4
VS_SESS_SECS=3
# Sequential sessions (one client) for the packets queued per session.
QSESS_SECS=2
CLIENTS=(1 16 128)
# vsftpd listens with a backlog of 32: 128 clients at once lose connections.
VS_CLIENTS=(1 16)
BULK_SIZE=$((1 << 30))
STREAM_SECS=4
STREAM_MSS=120
if ((QUICK)); then
    [[ $ROUNDS == 5 ]] && ROUNDS=2
    CMD_COUNT=1000
    SESS_SECS=2
    VS_SESS_SECS=1.5
    QSESS_SECS=1
    STREAM_SECS=2
fi

PREFIX=${FTPCT_BENCH_PREFIX:-ftpct-bench-}
[[ $PREFIX == ftpct-* ]] || { echo "bench: FTPCT_BENCH_PREFIX must start with ftpct-" >&2; exit 2; }
export FTPCT_LAB_PREFIX=$PREFIX
LAB=$TOP/scripts/lab.sh
FTPCT=$TOP/target/release/ftpct
FTPLOAD=$TOP/target/release/ftpload
CG_ROOT=/sys/fs/cgroup/cpuacct
CG=$CG_ROOT/ftpctb-$$
BUSY_WAIT=${FTPCT_BENCH_BUSY_WAIT:-300}
ALL_CPUS=0-$(($(nproc) - 1))
CLIENT_CPUS=$ALL_CPUS

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (network namespaces, NFQUEUE, conntrack)"

# --- state and cleanup --------------------------------------------------------

LAB_UP=0
QPROG_PID=''
QPROG=''
SERVER_PID=''
GW_MODE=''
WORK=''

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    server_stop
    qprog_stop
    if ((LAB_UP)); then
        gw "$FTPCT" rules --delete >/dev/null 2>&1 || true
        "$LAB" down >/dev/null 2>&1 || log "warning: lab.sh down failed"
    fi
    cg_remove
    [[ -n $WORK ]] && log "results and logs kept in $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers ----------------------------------------------------------------------

gw() { ip netns exec "$NS_GW" "$@"; }
cli() { ip netns exec "$NS_CLI" "$@"; }
srv() { ip netns exec "$NS_SRV" "$@"; }

# Bounded poll: wait_for TENTHS CMD...
wait_for() {
    local n=$1 i
    shift
    for ((i = 0; i < n; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

cg_setup() {
    [[ -d $CG_ROOT ]] || die "no cpuacct cgroup hierarchy at $CG_ROOT"
    local g
    for g in srv gw cli; do mkdir -p "$CG/$g"; done
}

cg_remove() {
    [[ -d $CG ]] || return 0
    local g pid
    for g in srv gw cli; do
        [[ -f $CG/$g/cgroup.procs ]] || continue
        # Anything left is ours: by id.
        while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$CG/$g/cgroup.procs"
        wait_for 30 test ! -s "$CG/$g/cgroup.procs" || true
        rmdir "$CG/$g" 2>/dev/null || true
    done
    rmdir "$CG" 2>/dev/null || true
}

cg_usage() { cat "$CG/$1/cpuacct.usage"; } # nanoseconds

# Machine CPU counters: "busy total" in USER_HZ ticks.
sys_ticks() {
    awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# `"${IN_CG[@]}" $CG/GROUP/cgroup.procs ip netns exec NS CMD...` runs CMD in
# NS, accounted to GROUP, as one process (each step execs the next, so $!
# and timeout see CMD itself). The cgroup is joined first: `ip netns exec`
# mounts a sysfs of its own, without the cgroups.
# shellcheck disable=SC2016 # $$ and "$@" are for the inner shell
IN_CG=(sh -c 'echo $$ >"$1" && shift && exec "$@"' sh)

# --- busy machine -------------------------------------------------------------------

BUSY_NOTE=''
others_running() {
    # Heavy neighbours: another test matrix, a build, a capture.
    ps -eo pid=,comm=,args= | awk -v me=$$ '$1 != me && ($2 ~ /^(cargo|cargo-fuzz|rustc|tcpdump)$/ || $0 ~ /e2e\.sh/) { print }'
}

wait_quiet() {
    local waited=0 busy
    while busy=$(others_running) && [[ -n $busy ]]; do
        if ((waited >= BUSY_WAIT)); then
            BUSY_NOTE="machine busy after waiting ${BUSY_WAIT}s: $(echo "$busy" | head -n 3 | cut -c1-100 | tr '\n' ';')"
            log "warning: $BUSY_NOTE"
            return 0
        fi
        ((waited == 0)) && log "other heavy processes are running, waiting (at most ${BUSY_WAIT}s):" && echo "$busy" | head -n 5 | cut -c1-120 >&2
        sleep 10
        waited=$((waited + 10))
    done
    ((waited)) && BUSY_NOTE="waited ${waited}s for other heavy processes to finish"
    return 0
}

# --- servers ---------------------------------------------------------------------------

vsftpd_conf() {
    cat <<EOF
# generated by scripts/bench.sh
listen=YES
listen_ipv6=NO
background=NO
anonymous_enable=YES
local_enable=NO
no_anon_password=YES
anon_root=$ANON
write_enable=NO
secure_chroot_dir=$WORK/empty
seccomp_sandbox=NO
# The no-helper gateway only routes: PORT must announce the client's own
# address, which vsftpd refuses unless promiscuous (then not from port 20).
port_promiscuous=YES
connect_from_port_20=NO
pasv_enable=YES
port_enable=YES
dirmessage_enable=NO
xferlog_enable=NO
max_clients=0
max_per_ip=0
idle_session_timeout=60
data_connection_timeout=30
connect_timeout=10
accept_timeout=10
EOF
}

listening21() { [[ -n $(srv ss -ltnH 'sport = :21') ]]; }

server_start() { # ftpload|vsftpd
    server_stop
    case $1 in
        ftpload)
            "${IN_CG[@]}" "$CG/srv/cgroup.procs" ip netns exec "$NS_SRV" "$FTPLOAD" server --listen 0.0.0.0:21 --root "$ANON" \
                </dev/null >>"$WORK/server-ftpload.log" 2>&1 &
            ;;
        vsftpd)
            "${IN_CG[@]}" "$CG/srv/cgroup.procs" ip netns exec "$NS_SRV" vsftpd "$WORK/vsftpd.conf" \
                </dev/null >>"$WORK/server-vsftpd.log" 2>&1 &
            ;;
    esac
    SERVER_PID=$!
    wait_for 50 listening21 || die "$1 does not listen on port 21 (see $WORK/server-$1.log)"
}

server_stop() {
    [[ -n $SERVER_PID ]] || return 0
    local kids
    kids=$(pgrep -P "$SERVER_PID" 2>/dev/null || true)
    # shellcheck disable=SC2086 # word splitting of the pid list
    kill "$SERVER_PID" $kids 2>/dev/null || true
    wait_for 50 bash -c "! kill -0 $SERVER_PID 2>/dev/null" || kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=''
    # vsftpd's session processes go with their control connection.
    wait_for 50 bash -c "! ip netns pids $NS_SRV | grep -q ." || true
}

# --- gateway modes -------------------------------------------------------------------------

queue_bound() { gw cat /proc/net/netfilter/nfnetlink_queue | awk '$1 == 0 && $2 != 0 { f = 1 } END { exit !f }'; }

# qprog_start ftpct|ftpctall|null: the queue program, in the gw cgroup.
qprog_start() {
    QPROG=$1
    QPROG_LOG=$WORK/$1-r$ROUND-$(date +%H%M%S%N).log
    local cmd
    case $1 in
        ftpct) cmd=("$FTPCT" run --selective --queues "$FTPCT_QUEUES" --busy-poll "$FTPCT_BUSY_POLL") ;;
        ftpctall) cmd=("$FTPCT" run --queue-all --queues "$FTPCT_QUEUES" --busy-poll "$FTPCT_BUSY_POLL") ;;
        null) cmd=("$FTPLOAD" nfq-null) ;;
    esac
    "${IN_CG[@]}" "$CG/gw/cgroup.procs" ip netns exec "$NS_GW" "${cmd[@]}" </dev/null >"$QPROG_LOG" 2>&1 &
    QPROG_PID=$!
    if ! wait_for 50 queue_bound; then
        tail -n 20 "$QPROG_LOG" >&2
        kill -0 "$QPROG_PID" 2>/dev/null || QPROG_PID=''
        die "gateway $GW_MODE: \`${cmd[*]#"$TOP/"}\` did not bind queue 0 (log above, $QPROG_LOG)"
    fi
}

# qprog_stop: stops it; QPROG_PACKETS = packets ftpct's engine saw (ftpct only).
qprog_stop() {
    QPROG_PACKETS=0
    [[ -n $QPROG_PID ]] || return 0
    stop_pid "$QPROG_PID" 100 || log "warning: $QPROG did not stop in 10 s: killed"
    QPROG_PID=''
    if [[ $QPROG == ftpct* ]]; then
        QPROG_PACKETS=$(sed -n 's/.*stopped:.* packets=\([0-9]*\).*/\1/p' "$QPROG_LOG" | tail -n 1)
        QPROG_PACKETS=${QPROG_PACKETS:-0}
    fi
}

# Packets the kernel could not deliver to queue 0's socket (its receive
# buffer was full): with fail-open they passed uninspected.
queue_socket_drops() {
    local portid
    portid=$(gw cat /proc/net/netfilter/nfnetlink_queue | awk '$1 == 0 { print $2 }')
    gw cat /proc/net/netlink | awk -v p="${portid:-x}" '$2 == 12 && $3 == p { print $9; f = 1 } END { if (!f) print 0 }'
}

permissive() { # -I|-D
    local ipt
    for ipt in iptables ip6tables; do
        if [[ $1 == -I ]]; then
            gw "$ipt" -I FORWARD 1 -m comment --comment ftpctb-permissive -j ACCEPT
        else
            while gw "$ipt" -D FORWARD -m comment --comment ftpctb-permissive -j ACCEPT 2>/dev/null; do :; done
        fi
    done
}

rules() { # --apply|--delete [FLAG...]
    echo "# ftpct rules $*" >>"$WORK/rules.log"
    gw "$FTPCT" rules "$@" >>"$WORK/rules.log" 2>&1 ||
        die "gateway ${GW_MODE:-?}: \`ftpct rules $*\` failed: $(grep -v '^ *$' "$WORK/rules.log" | tail -n 4 | tr '\n' ' ')(see $WORK/rules.log)"
}

# queue_counters: "PACKETS RULES" of the NFQUEUE rules of the gateway's raw
# table, every chain (built-in or not), iptables and ip6tables summed:
# packets those rules sent to a queue since they were added, and how many
# rules there are. Fails if a table cannot be listed.
queue_counters() {
    local ipt out p=0 n=0 dp dn
    for ipt in iptables ip6tables; do
        # (iptables-nft prints a NUL byte in the description of a bpf match.)
        out=$(gw "$ipt" -t raw -n -v -x -L 2>/dev/null | tr -d '\0') || return 1
        # Rule lines: pkts bytes target prot ...; chain and column headers
        # have "(policy", "(N" or "target" there.
        read -r dp dn < <(awk '$3 == "NFQUEUE" && $1 ~ /^[0-9]+$/ { p += $1; n++ } END { print p + 0, n + 0 }' <<<"$out")
        p=$((p + dp)) n=$((n + dn))
    done
    echo "$p $n"
}

queued_packets() { # PACKETS of queue_counters, or "null"
    local c
    c=$(queue_counters) && echo "${c% *}" || echo null
}

mode_on() {
    GW_MODE=$1
    case $1 in
        none) permissive -I ;;
        kernel) "$LAB" helper on >/dev/null ;;
        ftpct) rules --apply --selective --queues "$FTPCT_QUEUES" && qprog_start ftpct ;;
        ftpctall) rules --apply --queue-all --queues "$FTPCT_QUEUES" && qprog_start ftpctall ;;
        # Every control packet crosses (a do-nothing program never takes a
        # connection out of the guard set): the cost of queueing it all.
        nfq) permissive -I && rules --apply --queue-all && qprog_start null ;;
    esac
    flush_conntrack
}

mode_off() {
    case $GW_MODE in
        none) permissive -D ;;
        kernel) "$LAB" helper off >/dev/null ;;
        ftpct | ftpctall) qprog_stop && rules --delete ;;
        nfq) qprog_stop && rules --delete && permissive -D ;;
    esac
    # A queue rule left behind would queue the next gateways' packets.
    local c
    c=$(queue_counters) || die "cannot list the gateway's raw table (iptables -t raw -nvxL)"
    [[ ${c#* } == 0 ]] || die "gateway $GW_MODE: ${c#* } NFQUEUE rule(s) left in the gateway's raw table after \`ftpct rules --delete\`"
    GW_MODE=''
    flush_conntrack
}

# --- measurements ------------------------------------------------------------------------------

# record TEST PARAM CPU_JSON RESULT_JSON: one line of results.jsonl.
record() {
    printf '{"round":%d,"mode":"%s","test":"%s","param":"%s","cpu":%s,"result":%s}\n' \
        "$ROUND" "$GW_MODE" "$1" "$2" "$3" "${4:-null}" >>"$WORK/results.jsonl"
}

# measure TEST PARAM TIMEOUT CMD...: runs the client, records its JSON with
# the CPU used meanwhile by server, ftpct, client and the whole machine, and
# the packets queued meanwhile ("queued", null if the rules could not be read).
measure() {
    local test=$1 param=$2 tmo=$3
    shift 3
    local s0 g0 c0 s1 g1 c1 b0 t0 b1 t1 w0 w1 out rc=0 cpu q0 q1 queued=null
    q0=$(queued_packets)
    s0=$(cg_usage srv) g0=$(cg_usage gw) c0=$(cg_usage cli)
    read -r b0 t0 < <(sys_ticks)
    w0=$(date +%s%N)
    out=$(timeout -k 5 "$tmo" taskset -c "$CLIENT_CPUS" "${IN_CG[@]}" "$CG/cli/cgroup.procs" \
        ip netns exec "$NS_CLI" "$FTPLOAD" "$@" 2>>"$WORK/client.log") || rc=$?
    w1=$(date +%s%N)
    read -r b1 t1 < <(sys_ticks)
    s1=$(cg_usage srv) g1=$(cg_usage gw) c1=$(cg_usage cli)
    # CPU in % of one core over the wall time; machine busy in % of all cores.
    cpu=$(awk -v w=$((w1 - w0)) -v s=$((s1 - s0)) -v g=$((g1 - g0)) -v c=$((c1 - c0)) \
        -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN {
            printf "{\"wall_s\":%.3f,\"srv_pct\":%.1f,\"ftpct_pct\":%.1f,\"cli_pct\":%.1f,\"ftpct_cpu_s\":%.4f,\"machine_busy_pct\":%.1f}",
                w / 1e9, 100 * s / w, 100 * g / w, 100 * c / w, g / 1e9, (t ? 100 * b / t : 0) }')
    # The client's last FIN and its ACK may cross after the client exits.
    sleep 0.1
    q1=$(queued_packets)
    [[ $q0 != null && $q1 != null ]] && queued=$((q1 - q0))
    cpu="${cpu%\}},\"queued\":$queued}"
    if ((rc)) || [[ -z $out ]]; then
        log "  $GW_MODE $test $param: FAILED (exit $rc): $(tail -n 2 "$WORK/client.log" | tr '\n' ' ')"
        record "$test" "$param" "$cpu" "{\"failed\":true,\"exit\":$rc}"
        return 0
    fi
    record "$test" "$param" "$cpu" "$out"
    log "  $GW_MODE $test $param: $(summary "$out"); $queued packets queued"
}

summary() {
    python3 -c '
import json, sys
r = json.loads(sys.argv[1])
t = r["test"]
if t == "rtt": print("median %.1f us, p99 %.1f us" % (r["median_us"], r["p99_us"]))
elif t == "sessions": print("%.0f sessions/s (%d ok, %d failed) %s" % (r["per_s"], r["ok"], r["failed"], "; ".join(r["errors"][:1])))
elif t == "bulk": print("%.0f MiB/s, sha256 %s" % (r["mib_s"], "ok" if r["sha256_ok"] else "MISMATCH"))
elif t == "stream": print("%d lines in %.1f s, %s" % (r["lines_sent"], r["secs"], "none lost" if r["ok"] else "LOST"))
' "$1"
}

# Counters of the stream test: packets that reached the raw table (a
# counting rule first in raw PREROUTING) and the queue's own numbers.
count_rule() {
    gw iptables -t raw "$1" PREROUTING ${2:+"$2"} -p tcp -m multiport --ports 21 \
        -m comment --comment ftpctb-count
}
counted_packets() {
    # awk reads to the end: leaving early would kill iptables with SIGPIPE
    # (the selective rules make the listing long), and pipefail the run.
    gw iptables -t raw -L PREROUTING -v -x -n | awk '/ftpctb-count/ && !f { print $1; f = 1 }'
}
# queue 0: "total dropped user_dropped id_sequence" (0s when unbound)
queue_stats() {
    gw cat /proc/net/netfilter/nfnetlink_queue |
        awk '$1 == 0 { print $3, $6, $7, $8; f = 1 } END { if (!f) print 0, 0, 0, 0 }'
}

offloads() { # on|off: segmentation offloads of the two end hosts
    cli ethtool -K cli0 tso "$1" gso "$1" >/dev/null 2>&1 || true
    srv ethtool -K srv0 tso "$1" gso "$1" >/dev/null 2>&1 || true
}

stream_test() {
    # One packet per segment everywhere, so rule counters count segments.
    offloads off
    count_rule -I 1
    local q0 q1 seen=0 drops=0 counted out rc=0 s0 s1 g0 g1 b0 t0 b1 t1 w0 w1 prog=''
    if [[ -n $QPROG_PID ]]; then
        # A fresh queue program: its counts are the stream's alone.
        prog=$QPROG
        qprog_stop
        qprog_start "$prog"
    fi
    read -r -a q0 < <(queue_stats)
    s0=$(cg_usage srv) g0=$(cg_usage gw)
    read -r b0 t0 < <(sys_ticks)
    w0=$(date +%s%N)
    out=$(timeout -k 5 $((${STREAM_SECS%.*} + 30)) "${IN_CG[@]}" "$CG/cli/cgroup.procs" ip netns exec "$NS_CLI" "$FTPLOAD" stream \
        --target "$TARGET:21" --duration "$STREAM_SECS" --mss "$STREAM_MSS" 2>>"$WORK/client.log") || rc=$?
    w1=$(date +%s%N)
    read -r b1 t1 < <(sys_ticks)
    s1=$(cg_usage srv) g1=$(cg_usage gw)
    read -r -a q1 < <(queue_stats)
    counted=$(counted_packets)
    if [[ -n $prog ]]; then
        drops=$(queue_socket_drops)
        qprog_stop
        seen=$QPROG_PACKETS
        # ftpct counts what its engine saw; for the null program, what reached it.
        [[ $prog == null ]] && seen=$((q1[3] - q0[3] - drops))
        qprog_start "$prog"
    fi
    count_rule -D
    offloads on
    local extra
    extra=$(printf '{"counted":%d,"seen":%d,"socket_drops":%d,"queued":%d,"queue_dropped":%d,"queue_user_dropped":%d,"wall_s":%.3f,"srv_pct":%.1f,"ftpct_pct":%.1f,"ftpct_cpu_s":%.4f,"machine_busy_pct":%.1f}' \
        "${counted:-0}" "$seen" "$drops" $((q1[3] - q0[3])) $((q1[1] - q0[1])) $((q1[2] - q0[2])) \
        "$(awk -v w=$((w1 - w0)) 'BEGIN { print w / 1e9 }')" \
        "$(awk -v w=$((w1 - w0)) -v s=$((s1 - s0)) 'BEGIN { print 100 * s / w }')" \
        "$(awk -v w=$((w1 - w0)) -v g=$((g1 - g0)) 'BEGIN { print 100 * g / w }')" \
        "$(awk -v g=$((g1 - g0)) 'BEGIN { print g / 1e9 }')" \
        "$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN { print (t ? 100 * b / t : 0) }')")
    if ((rc)) || [[ -z $out ]]; then
        log "  $GW_MODE stream: FAILED (exit $rc): $(tail -n 2 "$WORK/client.log" | tr '\n' ' ')"
        record stream "mss$STREAM_MSS" "$extra" "{\"failed\":true,\"exit\":$rc}"
        return 0
    fi
    record stream "mss$STREAM_MSS" "$extra" "$out"
    log "  $GW_MODE stream: $(summary "$out"), $counted packets at the gateway${prog:+, $prog saw $seen}"
}

want() { [[ $ONLY == *",$1,"* ]]; }

# pin CPUS PID...: every thread of each PID on CPUS.
pin() {
    local cpus=$1 pid
    shift
    for pid in "$@"; do
        if [[ -n $pid ]]; then taskset -a -p -c "$cpus" "$pid" >/dev/null 2>&1 || true; fi
    done
}

# queued_sessions SERVER: one client, sessions one after the other, passive
# (PASV, EPSV in turn) then active (PORT, EPRT): the packets queued per
# session.
queued_sessions() {
    local kind modes
    for kind in passive active; do
        [[ $kind == passive ]] && modes=pasv,epsv || modes=port,eprt
        measure queued-sessions "$1-$kind" $((${QSESS_SECS%.*} + 60)) sessions --target "$TARGET:21" \
            --clients 1 --duration "$QSESS_SECS" --modes "$modes" --file 1k.bin --size 1024 --sha256 "$SHA_1K"
        flush_conntrack
    done
}

# Round trips: where the processes run decides more than anything else on
# a VM (a wake-up on the other CPU costs ~25 us here). Client, server and
# queue program all on CPU 0 measures what crossing to userspace costs in
# itself; the queue program is then moved to CPU 1, the other CPU, where the
# scheduler often puts it, for one more NOOP session.
rtt_tests() {
    CLIENT_CPUS=0
    pin 0 "$SERVER_PID" "$QPROG_PID"
    measure rtt NOOP 120 rtt --target "$TARGET:21" --cmd noop --count "$NOOP_COUNT"
    # The same session with 1 NOOP instead: what the NOOP session queues
    # besides its NOOPs (handshake, login, warm-up, QUIT, close).
    measure rtt NOOP-base 60 rtt --target "$TARGET:21" --cmd noop --count 1
    measure rtt PASV 120 rtt --target "$TARGET:21" --cmd pasv --count "$CMD_COUNT"
    measure rtt PORT 120 rtt --target "$TARGET:21" --cmd port --count "$CMD_COUNT"
    if [[ -n $QPROG_PID ]]; then
        pin 1 "$QPROG_PID"
        measure rtt NOOP-other-cpu 120 rtt --target "$TARGET:21" --cmd noop --count "$NOOP_COUNT"
    fi
    CLIENT_CPUS=$ALL_CPUS
    pin "$ALL_CPUS" "$SERVER_PID" "$QPROG_PID"
}

run_mode() {
    local k
    mode_on "$1"
    log "round $ROUND, gateway $1"
    server_start ftpload
    want rtt && rtt_tests
    if want sessions; then
        for k in "${CLIENTS[@]}"; do
            measure sessions "ftpload-K$k" $((${SESS_SECS%.*} + 60)) sessions --target "$TARGET:21" \
                --clients "$k" --duration "$SESS_SECS" --file 1k.bin --size 1024 --sha256 "$SHA_1K"
            flush_conntrack
        done
        queued_sessions ftpload
    fi
    if want bulk && [[ $1 != nfq ]]; then
        measure bulk ftpload 300 bulk --target "$TARGET:21" --file "$BULK_NAME" --size "$BULK_SIZE" --sha256 "$SHA_BULK"
    fi
    want stream && stream_test
    if ((VSFTPD)) && [[ $1 != nfq ]] && { want sessions || want bulk; }; then
        server_start vsftpd
        if want sessions; then
            for k in "${VS_CLIENTS[@]}"; do
                measure sessions "vsftpd-K$k" $((${VS_SESS_SECS%.*} + 60)) sessions --target "$TARGET:21" \
                    --clients "$k" --duration "$VS_SESS_SECS" --file 1k.bin --size 1024 --sha256 "$SHA_1K"
                flush_conntrack
            done
            queued_sessions vsftpd
        fi
        if want bulk; then
            measure bulk vsftpd 300 bulk --target "$TARGET:21" --file "$BULK_NAME" --size "$BULK_SIZE" --sha256 "$SHA_BULK"
        fi
    fi
    server_stop
    mode_off
}

# --- main ------------------------------------------------------------------------------------------

START=$(date +%s)
if [[ -z $OUT ]]; then
    WORK=$(mktemp -d /tmp/ftpct-bench.XXXXXX)
else
    mkdir -p "$OUT"
    WORK=$(cd "$OUT" && pwd)
fi
: >"$WORK/results.jsonl"

log "dependencies"
"$TOP/scripts/install-deps.sh"
command -v python3 >/dev/null || die "python3 missing"
log "build (release)"
cargo build --release --locked -p ftpct -p ftpload >"$WORK/build.log" 2>&1 ||
    { tail -n 20 "$WORK/build.log" >&2; die "cargo build failed"; }
if ((QUEUE_ALL)); then
    # Fail now, not after the first rounds, if this ftpct has no --queue-all.
    for sub in rules run; do
        [[ $("$FTPCT" "$sub" --help 2>&1) == *--queue-all* ]] ||
            die "--queue-all-too: this ftpct does not know \`ftpct $sub --queue-all\` (not in \`ftpct $sub --help\`)"
    done
fi

cg_setup
log "lab up (snat, namespaces ${PREFIX}cli/gw/srv)"
LAB_UP=1
"$LAB" up snat none >"$WORK/lab.log" 2>&1 || { tail -n 20 "$WORK/lab.log" >&2; die "lab.sh up failed"; }
eval "$("$LAB" env)"
NS_CLI=$FTPCT_LAB_NS_CLI NS_GW=$FTPCT_LAB_NS_GW NS_SRV=$FTPCT_LAB_NS_SRV
ANON=$FTPCT_LAB_ANON
TARGET=$FTPCT_LAB_TARGET4
mkdir -p "$WORK/empty"

# Thousands of sessions per second, the same settings for every gateway:
# the kernel's default conntrack timeouts in the gateway (TIME_WAIT 120 s:
# new sessions reuse tuples conntrack still holds, as on a busy gateway;
# the table is flushed between measurements); at the ends, wide port
# ranges and at most 2048 TIME_WAIT sockets (the servers close first: 60 s
# of TIME_WAIT would pile up 100,000 sockets, slow every connect() and
# bind() down and penalise whichever gateway comes later in a round).
for ns in "$NS_CLI" "$NS_SRV"; do
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1 \
        net.ipv4.tcp_max_tw_buckets=2048 net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096
done

log "test files"
SHA_1K=$(awk '$2 == "1k.bin" { print $1 }' "$ANON/SHA256SUMS")
BULK_NAME=bulk-$BULK_SIZE.bin
SHA_BULK=''
if want bulk; then
    "$FTPLOAD" gen --size "$BULK_SIZE" >"$ANON/$BULK_NAME"
    chmod 0644 "$ANON/$BULK_NAME"
    SHA_BULK=$(sha256sum "$ANON/$BULK_NAME" | cut -d' ' -f1)
fi
vsftpd_conf >"$WORK/vsftpd.conf"

wait_quiet

MODES=(none kernel ftpct)
((NFQ)) && MODES+=(nfq)
((QUEUE_ALL)) && MODES+=(ftpctall)
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    for ((i = 0; i < ${#MODES[@]}; i++)); do
        run_mode "${MODES[(i + ROUND - 1) % ${#MODES[@]}]}"
    done
done
ROUND=0

# --- the table -----------------------------------------------------------------------------------

{
    echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
    echo "command: scripts/bench.sh$( ((QUICK)) && echo ' --quick') --rounds $ROUNDS$( ((VSFTPD)) || echo ' --no-vsftpd')$( ((NFQ)) || echo ' --no-nfq')$( ((QUEUE_ALL)) && echo ' --queue-all-too')$([[ $FTPCT_QUEUES == 0 ]] || echo " --ftpct-queues $FTPCT_QUEUES")$([[ $FTPCT_BUSY_POLL == 0 ]] || echo " --ftpct-busy-poll $FTPCT_BUSY_POLL")$([[ $ONLY == ,rtt,sessions,bulk,stream, ]] || echo " --only ${ONLY:1:-1}")"
    echo "code: $(git -C "$TOP" log -1 --format='%h %s' | cut -c1-72)$(git -C "$TOP" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' (+ uncommitted changes)')"
    echo "run: $(date -u +%Y-%m-%dT%H:%MZ), $(($(date +%s) - START)) s; ${BUSY_NOTE:-no other heavy process seen at the start}"
    python3 "$TOP/scripts/bench/table.py" "$WORK/results.jsonl"
} | tee "$WORK/table.txt"
