#!/usr/bin/env bash
# Soak: sustained mixed FTP load through the namespace lab's gateway
# (scripts/lab.sh), under ftpct and, as the control, under the kernel's own
# FTP helper, on the same load in the same run.
#
# Usage: scripts/soak.sh [--minutes N | --seconds S] [--modes ftpct,kernel]
#                        [--topologies snat,dnat] [--servers vsftpd,pure-ftpd]
#                        [--rotate-servers] [--clients K] [--curl K] [--out DIR]
#   --minutes N     minutes of load per row (gateway mode x topology), default 10
#   --seconds S     the same in seconds (the short version, ~90 s in all:
#                   --seconds 6 --rotate-servers)
#   --modes LIST    gateway modes, in this order: ftpct (`ftpct rules --apply`,
#                   `ftpct run --state-interval 5`), kernel (`lab.sh helper on`)
#   --topologies L  lab topologies, default snat,dnat
#   --servers LIST  servers, default vsftpd,pure-ftpd: a row's load time is split
#                   evenly between them (the server is switched, the gateway
#                   and ftpct keep running)
#   --rotate-servers  one server per topology instead, in turn (the first
#                   topology the first server, the next one the next): each
#                   server switch costs a tail of sessions stuck in their 5 s
#                   timeouts, too much for the short version
#   --clients K     ftpload client threads per row, default 200 (half IPv4, half
#                   IPv6), plus the curl clients
#   --pause S       seconds each ftpload client waits between its sessions,
#                   default 2 (see "The rate" below); 0 runs them flat out
#   --curl K        curl clients, default 8 (several transfers per session)
#   --out DIR       work directory, kept (default: a fresh /tmp/ftpct-soak.XXXXXX,
#                   removed when the run passes): soak.log, table.txt, samples.csv, and per row
#                   ftpct.log, clients.txt, failures.txt, nstat-*.txt, the
#                   clients' results
#
# Rows: for each topology, for each mode, a fresh lab (scripts/lab.sh up, so
# that no socket or conntrack entry of one row meets the next), the gateway
# mode set up, the load, the checks, the lab down. A row of N minutes takes
# N minutes plus about a minute; the default run has four rows.
#
# The load, the same in every row: ftpload sessions (target/release/ftpload:
# login, one RETR, SHA-256 and size checked, QUIT, again at once) over IPv4
# (PASV, EPSV, PORT, EPRT in turn) and IPv6 (EPSV, EPRT) on files of 0 B,
# 1 KiB, 64 KiB, 1 MiB and 10 MiB (most clients on the small ones; the
# soak-*.bin files are written into the lab's anonymous root), plus curl
# clients fetching 0 B, 1 KiB, 64 KiB and 1 MiB in one session each (PORT,
# EPRT, PASV with the 227 address, EPSV), every file's SHA-256 checked.
# vsftpd runs with the lab's settings (connect_from_port_20=YES, its default:
# active data connections come from port 20, so tuples repeat) plus
# max_clients=0 and max_per_ip=0 (all clients share one address, and vsftpd
# 3.0.3 refuses the 51st: its built-in max_per_ip is 50, whatever its manual
# says), through FTPCT_LAB_VSFTPD_OPTS; pure-ftpd with -c raised above the
# client count (its default is 50), through FTPCT_LAB_PURE_FTPD_OPTS.
#
# The rate: 200 clients with 2 s between a client's sessions keep ~200
# sessions open at once at ~70-100 new sessions a second, which leaves this
# 2-CPU machine some headroom. Flat out (--pause 0) the clients, the servers
# and the gateway saturate both CPUs: vsftpd's master process then stops
# accepting for seconds (its accept queue overflows; the server retransmits
# SYN-ACKs at 1 s and 3 s and greets after more than ftpload's 5 s), in both
# gateway modes, more often with ftpct, whose user-space work takes CPU from
# the servers (measured: all of ftpct's failures were such late greetings,
# ftpct dropping nothing). That measures the machine, not the gateway;
# capacity is the benchmarks' subject (python3 -m lab bench, tests/lab/bench.py).
#
# The gateway's conntrack settings stay at the kernel's defaults: nothing here
# writes a sysctl in the gateway (a shortened TIME_WAIT once hid a bug that
# failed 23% of transfers); nf_conntrack_tcp_timeout_time_wait is printed
# and must be the kernel's 120 s.
#
# Every 2 s a sample goes to samples.csv: ftpct's RSS (VmRSS) and CPU time,
# its flows, expectations and ipset entries (its latest `state:` line), the
# entries of the ipsets ftpct and ftpct6 (`ipset list -t`), the gateway's
# conntrack entries (`conntrack -C`) and kernel expectations
# (/proc/net/nf_conntrack_expect), and what tells a drop from a delay: the
# packets waiting in ftpct's queue and the queue's drops, the packets the
# gateway's FORWARD policy dropped, conntrack's invalid and insert_failed.
#
# Back at baseline, checked for ftpct once the load of a row is over (bounded
# waits): a `state:` line logged after the load shows expectations=0,
# ipset_entries=0 and flows <= max(2, 1% of the row's peak), and both ipsets
# are empty; within 10 s (ftpct's close linger) + 30 s (a server still
# waiting on a failed session's data connection closes it by then) + 2 state
# intervals, or, when expectations were still pending after the load, within
# ftpct's expectation timeout (300 s) + 2 state intervals + 10 s. ftpct must
# still run, and its RSS then be within max(16 MiB, half of its growth to the
# peak) of its RSS before the load: generous on purpose (allocators keep
# freed memory, tables keep their capacity); a leak shows over a long soak,
# not in the short one.
#
# Exit status non-zero when: ftpct failed a transfer where the kernel helper,
# on the same topology, failed none; or the kernel failed some and ftpct's
# failure rate is more than twice the kernel's plus half a percentage point
# (the kernel's failures measure the load itself: vsftpd's accept queue of
# 32 overflows with 200 clients, a busy machine); or (without a kernel row) ftpct
# failed any; or a row completed no transfer; or a baseline check failed.
#
# Needs root, the release build (cargo build --release --workspace) and the lab's
# packages (scripts/install-deps.sh). The binaries (target/release/ftpct and
# ftpload, or FTPCT_BIN and FTPLOAD_BIN) are copied to the work directory at
# the start (a rebuild meanwhile changes nothing). The lab's
# namespaces are ftpct-soak-* (FTPCT_SOAK_PREFIX overrides; it must start
# with ftpct-). Every wait and loop is bounded; an EXIT trap stops ftpct and
# the clients, deletes ftpct's rules and takes the lab down, on Ctrl-C too.
# Works with no standard input.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"
REPO=$(cd "$HERE/.." && pwd)
LAB=$HERE/lab.sh
PREFIX=${FTPCT_SOAK_PREFIX:-ftpct-soak-}
[[ $PREFIX == ftpct-* ]] || { echo "soak: FTPCT_SOAK_PREFIX must start with ftpct-" >&2; exit 2; }
# Our own lab, whatever the caller's FTPCT_LAB_PREFIX: other labs run beside it.
export FTPCT_LAB_PREFIX=$PREFIX
NS_CLI=${PREFIX}cli
NS_GW=${PREFIX}gw

LOAD_SECS=600
MODES=ftpct,kernel
TOPOS=snat,dnat
SERVERS=vsftpd,pure-ftpd
ROTATE=0
CLIENTS=200
CURLS=8
PAUSE=2
OUT=''
SAMPLE_SECS=2
STATE_INTERVAL=5
# ftpct's defaults (src/engine.rs): a flow stays this long after FIN both
# ways; a pending expectation this long (the kernel helper's too).
CLOSE_LINGER=10
SERVER_TIMEOUT=30
EXPECT_TIMEOUT=300
RSS_TOL_MIN_KB=16384
TIME_WAIT_DEFAULT=120
# The files of the load: name, size. Client threads per family in percent.
SOAK_FILES=(empty.bin:0 1k.bin:1024 soak-64k.bin:65536 soak-1m.bin:1048576 soak-10m.bin:10485760)
SOAK_SHARE=(20 30 20 20 10)
CURL_FILES=(empty.bin 1k.bin soak-64k.bin soak-1m.bin)
CURL_KINDS=(v4-pasv v4-port v6-epsv v6-eprt v4-epsv v4-eprt)

log() { printf 'soak: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

parse_args() {
    while (($#)); do
        case $1 in
            --minutes) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]{0,3}$ ]] || usage; LOAD_SECS=$(($2 * 60)); shift 2 ;;
            --seconds) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]{0,5}$ ]] || usage; LOAD_SECS=$2; shift 2 ;;
            --modes) [[ $# -ge 2 ]] || usage; MODES=$2; shift 2 ;;
            --topologies) [[ $# -ge 2 ]] || usage; TOPOS=$2; shift 2 ;;
            --servers) [[ $# -ge 2 ]] || usage; SERVERS=$2; shift 2 ;;
            --rotate-servers) ROTATE=1; shift ;;
            --clients) [[ $# -ge 2 && $2 =~ ^[1-9][0-9]{0,3}$ ]] || usage; CLIENTS=$2; shift 2 ;;
            --curl) [[ $# -ge 2 && $2 =~ ^[0-9]{1,2}$ ]] || usage; CURLS=$2; shift 2 ;;
            --pause) [[ $# -ge 2 && $2 =~ ^[0-9]{1,2}(\.[0-9]+)?$ ]] || usage; PAUSE=$2; shift 2 ;;
            --out) [[ $# -ge 2 ]] || usage; OUT=$2; shift 2 ;;
            -h | --help) usage ;;
            *) log "unknown argument '$1'"; usage ;;
        esac
    done
    local w
    check_modes ftpct kernel
    for w in ${TOPOS//,/ }; do [[ $w == snat || $w == dnat ]] || die "unknown topology '$w' (snat, dnat)"; done
    for w in ${SERVERS//,/ }; do [[ $w == vsftpd || $w == pure-ftpd ]] || die "unknown server '$w' (vsftpd, pure-ftpd)"; done
    [[ -n ${MODES//,/} && -n ${TOPOS//,/} && -n ${SERVERS//,/} ]] || usage
    ((CLIENTS >= 10)) || die "--clients: at least 10 (one per family and file)"
}

now() { printf '%(%s)T' -1; }
gw() { ip netns exec "$NS_GW" "$@"; }

# --- state and clean-up -----------------------------------------------------

WORK=''
BIN=''
ROWDIR=''
TOPO=''
MODE=''
CSV=''
LAST_ST=''
FTPCT=''
FTPLOAD=''
# Other binaries to test (default: the release build of this tree).
SRC_FTPCT=${FTPCT_BIN:-}
SRC_FTPLOAD=${FTPLOAD_BIN:-}
FTPCT_PID=''
FTPCT_LOG=''
SAMPLER_PID=''
CLIENT_PIDS=()
GW_MODE=''
LAB_UP=0

# kill_tree PID: the process and its direct children, by id (curl loops are
# subshells whose curl is a child).
kill_tree() {
    local kids
    kids=$(pgrep -P "$1" 2>/dev/null || true)
    # shellcheck disable=SC2086 # a list of ids
    kill "$1" $kids 2>/dev/null || true
}

stop_clients() {
    local pid
    for pid in "${CLIENT_PIDS[@]}"; do kill_tree "$pid"; done
    for pid in "${CLIENT_PIDS[@]}"; do stop_pid "$pid" 30 || true; done
    CLIENT_PIDS=()
}

stop_sampler() {
    [[ -n $SAMPLER_PID ]] || return 0
    kill_tree "$SAMPLER_PID"
    stop_pid "$SAMPLER_PID" 30 || true
    SAMPLER_PID=''
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_clients
    stop_sampler
    mode_off
    ((LAB_UP)) && "$LAB" down >/dev/null 2>&1
    # A passing run without --out leaves nothing behind; a failing one, or
    # one given --out, keeps its logs to read.
    if [[ -n $WORK && $rc -eq 0 && -z $OUT ]]; then
        rm -rf -- "$WORK"
        log "passed: work directory $WORK removed (--out DIR keeps one)"
    elif [[ -n $WORK ]]; then
        log "work directory kept: $WORK"
    fi
    exit "$rc"
}

# --- gateway modes ----------------------------------------------------------

ftpct_start() {
    FTPCT_LOG=$ROWDIR/ftpct.log
    # Not through gw(): $! must be ftpct itself (ip netns exec execs it).
    ip netns exec "$NS_GW" "$FTPCT" run --state-interval "$STATE_INTERVAL" </dev/null >"$FTPCT_LOG" 2>&1 &
    FTPCT_PID=$!
    # Ready when it has bound its queue: its start-up line, within 5 s.
    wait_running
}

ftpct_stop() {
    [[ -n $FTPCT_PID ]] || return 0
    stop_pid "$FTPCT_PID" 100 || log "warning: ftpct did not stop in 10 s: killed"
    FTPCT_PID='' FTPCT_LOG=''
}

mode_on() { # MODE
    case $1 in
        kernel) "$LAB" helper on >/dev/null ;;
        ftpct)
            gw "$FTPCT" rules --apply >>"$ROWDIR/rules.log" 2>&1 \
                || { tail -n 20 "$ROWDIR/rules.log" >&2; die "ftpct rules --apply failed"; }
            GW_MODE=ftpct
            ftpct_start
            ;;
    esac
    GW_MODE=$1
    # Every row starts from an empty table, whatever ran before.
    flush_conntrack
}

mode_off() {
    case $GW_MODE in
        kernel) "$LAB" helper off >/dev/null 2>&1 || true ;;
        ftpct)
            ftpct_stop
            gw "$FTPCT" rules --delete >>"${ROWDIR:-${WORK:-/tmp}}/rules.log" 2>&1 || log "warning: ftpct rules --delete failed"
            ;;
    esac
    GW_MODE=''
}

# --- lab ----------------------------------------------------------------------

lab_up() { # TOPO SERVER
    LAB_UP=1
    "$LAB" up "$1" "$2" >>"$ROWDIR/lab.log" 2>&1 || { tail -n 20 "$ROWDIR/lab.log" >&2; die "lab.sh up $1 $2 failed"; }
    eval "$("$LAB" env)"
}

lab_server() { # SERVER
    "$LAB" server "$1" >>"$ROWDIR/lab.log" 2>&1 || { tail -n 20 "$ROWDIR/lab.log" >&2; die "lab.sh server $1 failed"; }
}

# The load's files beside the lab's own, and every file's SHA-256.
declare -A SUM=()
make_files() {
    local entry name size
    for entry in "${SOAK_FILES[@]}"; do
        name=${entry%%:*} size=${entry#*:}
        if [[ ! -f $FTPCT_LAB_ANON/$name ]]; then
            "$FTPLOAD" gen --size "$size" >"$FTPCT_LAB_ANON/$name"
            chmod 0644 "$FTPCT_LAB_ANON/$name"
        fi
        SUM[$name]=$(sha256sum "$FTPCT_LAB_ANON/$name" | cut -d' ' -f1)
    done
}

# The gateway's conntrack timeouts: printed, and TIME_WAIT must be the
# kernel's default (the lab never changes it; nor does this script).
check_sysctls() {
    local tw close
    tw=$(gw sysctl -n net.netfilter.nf_conntrack_tcp_timeout_time_wait)
    close=$(gw sysctl -n net.netfilter.nf_conntrack_tcp_timeout_close)
    log "gateway $NS_GW: nf_conntrack_tcp_timeout_time_wait=$tw (kernel default $TIME_WAIT_DEFAULT), tcp_timeout_close=$close, nf_conntrack_max=$(gw sysctl -n net.netfilter.nf_conntrack_max)"
    [[ $tw == "$TIME_WAIT_DEFAULT" ]] || die "the gateway's TIME_WAIT is $tw s, not the kernel default: a shortened TIME_WAIT hides tuple reuse bugs"
}

# --- sampling -----------------------------------------------------------------

CSV_HEADER=time,elapsed_s,mode,topology,server,rss_kb,flows,expectations,ipset_entries,ipset_v4,ipset_v6,conntrack,kernel_expectations,nfq_waiting,nfq_dropped,nfq_user_dropped,forward_dropped,ct_invalid,ct_insert_failed,ftpct_cpu_ticks

# The three first fields of every `state:` line of a text: "F E I" per line.
state_fields() {
    sed -nE 's/.*state: flows=([0-9]+) expectations=([0-9]+) ipset_entries=([0-9]+).*/\1 \2 \3/p'
}
last_state() { state_fields | tail -n 1; }

ipset_count() { # SET: its entries, '' without it
    gw ipset list "$1" -t 2>/dev/null | awk '/^Number of entries:/ { print $4 }'
}

# The gateway's figures in one visit (entering a namespace is slow under
# load): "ipset_v4,ipset_v6,conntrack,kernel_expectations,nfq_waiting,
# nfq_dropped,nfq_user_dropped,forward_dropped,ct_invalid,ct_insert_failed"
# (queue 0: packets waiting for ftpct, dropped because the queue was full,
# dropped because ftpct's socket buffer was; packets the FORWARD policy
# dropped, v4 + v6: neither ESTABLISHED nor RELATED nor a new control
# connection; conntrack's own counters, summed over CPUs).
gw_counts() {
    # shellcheck disable=SC2016 # for the inner shell
    gw sh -c '
        n() { ipset list "$1" -t 2>/dev/null | awk "/^Number of entries:/ { print \$4 }"; }
        pol() { "$1" -L FORWARD -v -x -n 2>/dev/null | awk "NR == 1 { print \$5 + 0 }"; }
        printf "%s,%s,%s,%s,%s,%s,%s" "$(n ftpct)" "$(n ftpct6)" "$(conntrack -C 2>/dev/null)" \
            "$(awk "END { print NR }" /proc/net/nf_conntrack_expect 2>/dev/null)" \
            "$(awk "\$1 == 0 { print \$3 \",\" \$6 \",\" \$7; f = 1 } END { if (!f) print \",,\" }" /proc/net/netfilter/nfnetlink_queue 2>/dev/null)" \
            "$(($(pol iptables) + $(pol ip6tables)))" \
            "$(conntrack -S 2>/dev/null | awk "{ for (i = 1; i <= NF; i++) { split(\$i, kv, \"=\"); c[kv[1]] += kv[2] } } END { print c[\"invalid\"] + 0 \",\" c[\"insert_failed\"] + 0 }")"'
}

cpu_ticks() { # PID: user + system time, in clock ticks
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || true
}

rss_kb() { # PID
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

# sampler T0 MAX: one CSV line every SAMPLE_SECS, at most MAX lines. Reads
# only what ftpct logged since the previous sample.
sampler() {
    local t0=$1 max=$2 i off=0 size st f e s t
    for ((i = 0; i < max; i++)); do
        f='' e='' s=''
        if [[ -n $FTPCT_LOG && -f $FTPCT_LOG ]]; then
            size=$(stat -c %s "$FTPCT_LOG")
            st=$(tail -c +$((off + 1)) "$FTPCT_LOG" | head -c $((size - off)) | last_state) || st=""
            off=$size
            [[ -n $st ]] && LAST_ST=$st
            read -r f e s <<<"${LAST_ST:-}"
        fi
        t=$(now)
        printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$t" $((t - t0)) "$GW_MODE" "$TOPO" \
            "$(cat "$ROWDIR/server" 2>/dev/null)" "$( [[ -n $FTPCT_PID ]] && rss_kb "$FTPCT_PID")" \
            "$f" "$e" "$s" "$(gw_counts)" "$( [[ -n $FTPCT_PID ]] && cpu_ticks "$FTPCT_PID")" >>"$CSV"
        sleep "$SAMPLE_SECS"
    done
}

# --- clients ----------------------------------------------------------------------

# ftpload_client FAM FILE SIZE K SECS OUT: K threads of sessions.
ftpload_client() {
    local fam=$1 file=$2 size=$3 k=$4 secs=$5 out=$6 target modes
    if [[ $fam == v4 ]]; then
        target=$FTPCT_LAB_TARGET4:21 modes=pasv,epsv,port,eprt
    else
        # PASV and PORT carry IPv4 addresses only.
        target="[$FTPCT_LAB_TARGET6]:21" modes=epsv,eprt
    fi
    # A session started before the end may take its time (10 MiB under load):
    # bounded by ftpload's own 5 s per socket operation, and this.
    ip netns exec "$NS_CLI" timeout -k 5 $((secs + 120)) "$FTPLOAD" sessions --target "$target" \
        --clients "$k" --duration "$secs" --pause "$PAUSE" --modes "$modes" --file "$file" --size "$size" \
        --sha256 "${SUM[$file]}" </dev/null >"$out" 2>"$out.err" &
    CLIENT_PIDS+=($!)
}

# curl_client KIND SECS OUT: sessions of four transfers each, until SECS are
# over; a line per session: "session ok=N failed=N" and the reasons.
curl_client() {
    local kind=$1 end=$(($(now) + $2)) out=$3 dir=$3.d n i ok failed host url rc
    local -a flags args
    mkdir -p "$dir"
    case $kind in
        v4-*) host=$FTPCT_LAB_TARGET4 url=ftp://$host ;;
        v6-*) host=$FTPCT_LAB_TARGET6 url="ftp://[$host]" ;;
    esac
    case $kind in
        *-port) flags=(-P - --disable-eprt) ;;
        *-eprt) flags=(-P -) ;;
        *-pasv) flags=(--disable-epsv --no-ftp-skip-pasv-ip) ;;
        *-epsv) flags=() ;;
    esac
    for ((n = 0; n < 100000 && $(now) < end; n++)); do
        args=()
        for i in "${!CURL_FILES[@]}"; do args+=(-o "$dir/$i.bin" "$url/${CURL_FILES[$i]}"); done
        rm -f "$dir"/*.bin
        rc=0
        ip netns exec "$NS_CLI" curl -gsS --connect-timeout 10 -m 60 "${flags[@]}" "${args[@]}" \
            </dev/null 2>"$dir/err" || rc=$?
        ok=0 failed=0
        for i in "${!CURL_FILES[@]}"; do
            if [[ -f $dir/$i.bin && $(sha256sum "$dir/$i.bin" | cut -d' ' -f1) == "${SUM[${CURL_FILES[$i]}]}" ]]; then
                ok=$((ok + 1))
            else
                failed=$((failed + 1))
            fi
        done
        printf 'session ok=%d failed=%d%s\n' "$ok" "$failed" \
            "$( ((failed)) && printf ' curl exit %d: %s' "$rc" "$(tr '\n' ' ' <"$dir/err" | cut -c1-200)")" >>"$out"
        # Do not spin on a refusing server.
        if ((failed)); then sleep 0.2; fi
    done
    rm -rf "$dir"
}

# run_load SERVER SECS: the whole mix against the server now up, in the
# background; waits for every client (each bounded).
run_load() {
    local server=$1 secs=$2 fam j k pid tag entry rc
    for fam in v4 v6; do
        for j in "${!SOAK_FILES[@]}"; do
            entry=${SOAK_FILES[$j]}
            # Half the clients per family, shared out by SOAK_SHARE, at least one.
            k=$((CLIENTS * SOAK_SHARE[j] / 200))
            ((k >= 1)) || k=1
            tag=$server-$fam-${entry%%:*}
            ftpload_client "$fam" "${entry%%:*}" "${entry#*:}" "$k" "$secs" "$ROWDIR/ftpload-$tag.json"
        done
    done
    for ((j = 0; j < CURLS; j++)); do
        k=${CURL_KINDS[j % ${#CURL_KINDS[@]}]}
        curl_client "$k" "$secs" "$ROWDIR/curl-$server-$j-$k.txt" &
        CLIENT_PIDS+=($!)
    done
    for pid in "${CLIENT_PIDS[@]}"; do
        rc=0
        wait "$pid" || rc=$?
        ((rc == 0 || rc == 1)) || log "warning: a client exited with status $rc"
    done
    CLIENT_PIDS=()
}

# --- one row: a gateway mode on a topology ----------------------------------

tcp_counters() { # NSTAT_FILE
    awk '{ v[$1] = $2 } END { printf "retransmitted %d, timeouts %d, checksum errors %d, ofo drops %d",
        v["TcpRetransSegs"], v["TcpExtTCPTimeouts"], v["TcpInCsumErrors"], v["TcpExtTCPOFODrop"] }' "$1"
}

# Results, one entry per row.
R_MODE=() R_TOPO=() R_SRV=() R_OVF=() R_OK=() R_FAIL=() R_SESS=() R_RSS=() R_MAXF=() R_MAXE=() R_MAXI=() R_MAXC=() R_BASE=() R_WHY=()

# Sums every client result of the row: "ok failed sessions".
tally() {
    local f ok=0 failed=0 sess=0 a b c
    for f in "$ROWDIR"/ftpload-*.json; do
        [[ -f $f ]] || continue
        a=$(sed -nE 's/.*"ok":([0-9]+).*/\1/p' "$f") b=$(sed -nE 's/.*"failed":([0-9]+).*/\1/p' "$f")
        if [[ -z $a ]]; then
            # No result at all: the client itself failed; count it as one failure.
            a=0 b=1
        fi
        ok=$((ok + a)) failed=$((failed + b)) sess=$((sess + a + b))
    done
    for f in "$ROWDIR"/curl-*.txt; do
        [[ -f $f ]] || continue
        read -r a b c < <(awk '{ split($2, o, "="); split($3, x, "="); ok += o[2]; fl += x[2]; n++ }
            END { print ok + 0, fl + 0, n + 0 }' "$f")
        ok=$((ok + a)) failed=$((failed + b)) sess=$((sess + c))
    done
    echo "$ok $failed $sess"
}

# Every ftpload client group: transfers ok and failed, session latency.
clients_table() {
    local f
    printf '%-34s %7s %7s %9s %9s\n' client ok failed p50_ms p99_ms
    for f in "$ROWDIR"/ftpload-*.json; do
        [[ -f $f ]] || continue
        python3 -c '
import json, sys
name = sys.argv[1].rsplit("/ftpload-", 1)[1][:-5]
try:
    r = json.load(open(sys.argv[1]))
    print("%-34s %7d %7d %9.1f %9.1f" % (name, r["ok"], r["failed"], (r["latency_median_us"] or 0) / 1e3, (r["latency_p99_us"] or 0) / 1e3))
except (ValueError, KeyError, TypeError):
    print("%-34s no result" % name)' "$f"
    done
}

# Failed transfers per client group (server, family, file or curl mode).
failures_by_client() {
    local f a b name
    for f in "$ROWDIR"/ftpload-*.json; do
        [[ -f $f ]] || continue
        a=$(sed -nE 's/.*"ok":([0-9]+).*/\1/p' "$f") b=$(sed -nE 's/.*"failed":([0-9]+).*/\1/p' "$f")
        name=${f##*/ftpload-} name=${name%.json}
        if [[ -z $a ]]; then echo "ftpload $name: no result"; elif ((b)); then echo "ftpload $name: $b of $((a + b)) failed"; fi
    done
    for f in "$ROWDIR"/curl-*.txt; do
        [[ -f $f ]] || continue
        name=${f##*/curl-} name=${name%.txt}
        awk -v n="$name" '{ split($2, o, "="); split($3, x, "="); ok += o[2]; fl += x[2] }
            END { if (fl) printf "curl %s: %d of %d failed\n", n, fl, ok + fl }' "$f"
    done
}

# The errors the clients reported, counted, with the address digits
# blurred so that one cause is one line.
client_errors() {
    {
        cat "$ROWDIR"/ftpload-*.json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        for e in json.loads(line).get("errors", []): print(e)
    except ValueError: pass'
        cat "$ROWDIR"/ftpload-*.err 2>/dev/null
        sed -n 's/^session ok=[0-9]* failed=[1-9][0-9]* //p' "$ROWDIR"/curl-*.txt 2>/dev/null || true
    } | sed -E 's/[0-9a-f]{64}/<sha>/g; s/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -n 12
}

# ftpct's lines out of the ordinary (all but expectations, rewrites, data
# connections matched and its own start, state and stop lines: warnings,
# errors, refusals, data connections it could not make RELATED), counted the
# same way.
ftpct_problems() {
    { grep -avE 'event="(expect|rewrite|data-matched)"| INFO (state|running|stopped|signal)' "$ROWDIR/ftpct.log" || true; } |
        sed -E 's/^[^ ]+ +//; s/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -n 12
}

# settle: waits (bounded) for ftpct to be back at baseline; sets BASE_OK and
# BASE_WHY. Only state lines logged after the load count.
settle() {
    local off=$1 maxflows=$2 deadline f e s i4 i6 tol st seen=0 pending=''
    tol=$((maxflows / 100))
    ((tol >= 2)) || tol=2
    # A session that failed may keep its server busy until the server's own
    # timeout (vsftpd's data_connection_timeout: 30 s) before its FIN.
    deadline=$(($(now) + CLOSE_LINGER + SERVER_TIMEOUT + 2 * STATE_INTERVAL))
    BASE_OK=0 BASE_WHY=''
    while (($(now) < deadline)); do
        st=$(tail -c +$((off + 1)) "$FTPCT_LOG" | last_state) || st=""
        if [[ -n $st ]]; then
            read -r f e s <<<"$st"
            if ((!seen)); then
                seen=1
                # Expectations left pending by the load go only at their timeout.
                if ((e > 0)); then
                    pending=$e
                    deadline=$(($(now) + EXPECT_TIMEOUT + 2 * STATE_INTERVAL + 10))
                    log "  $e expectation(s) pending after the load: waiting for ftpct's expectation timeout (${EXPECT_TIMEOUT} s)"
                fi
            fi
            i4=$(ipset_count ftpct) i6=$(ipset_count ftpct6)
            if ((f <= tol && e == 0 && s == 0)) && [[ ${i4:-0} == 0 && ${i6:-0} == 0 ]]; then
                BASE_OK=1
                BASE_WHY="flows=$f expectations=0 ipset_entries=0 ipsets empty${pending:+ (after $pending pending expired)}"
                BASE_WHY+="; control connections open in conntrack: $(ct_control_open)"
                return 0
            fi
        fi
        sleep 1
    done
    BASE_WHY="not back at baseline in time: last state flows=${f:-?} (tolerance $tol) expectations=${e:-?} ipset_entries=${s:-?}, ipset entries v4=${i4:-?} v6=${i6:-?}"
    BASE_WHY+="; control connections open in conntrack: $(ct_control_open)"
}

# Control connections (port 21) conntrack still has open (not TIME_WAIT or
# CLOSE), both families: what ftpct's flow count should come down to.
ct_control_open() {
    local fam n=0 c
    for fam in ipv4 ipv6; do
        c=$(gw conntrack -L -f "$fam" -p tcp --dport 21 2>/dev/null | awk '$4 !~ /^(TIME_WAIT|CLOSE)$/' | wc -l) || c=0
        n=$((n + c))
    done
    echo "$n"
}

# max_col N [M]: the largest value of CSV column N (plus column M) in this
# row's samples.
max_col() {
    awk -F, -v c="$1" -v d="${2:-0}" -v m="$MODE" -v t="$TOPO" \
        'NR > 1 && $3 == m && $4 == t && $c != "" { v = $c + (d ? $d : 0); if (v > x) x = v } END { print x + 0 }' "$CSV"
}

run_row() { # TOPO MODE TOPO_INDEX
    TOPO=$1 MODE=$2
    local -a servers
    read -r -a servers <<<"${SERVERS//,/ }"
    if ((ROTATE)); then servers=("${servers[$3 % ${#servers[@]}]}"); fi
    local per=$((LOAD_SECS / ${#servers[@]})) i t0 off rss0='' rss1='' peak maxf maxe maxi maxc ok failed sess ovf
    ((per >= 1)) || per=1
    ROWDIR=$WORK/$MODE-$TOPO
    mkdir -p "$ROWDIR"
    log "== $MODE on $TOPO: ${#servers[@]} x $per s of load (${servers[*]})"
    printf '%s\n' "${servers[0]}" >"$ROWDIR/server"
    lab_up "$TOPO" "${servers[0]}"
    check_sysctls
    make_files
    mode_on "$MODE"
    [[ -n $FTPCT_PID ]] && rss0=$(rss_kb "$FTPCT_PID")
    t0=$(now)
    LAST_ST=''
    sampler "$t0" $(((LOAD_SECS + EXPECT_TIMEOUT + 300) / SAMPLE_SECS)) &
    SAMPLER_PID=$!
    for i in "${!servers[@]}"; do
        if ((i > 0)); then
            printf '%s\n' "${servers[i]}" >"$ROWDIR/server"
            lab_server "${servers[i]}"
        fi
        log "  load: ${servers[i]}, $per s, $CLIENTS ftpload + $CURLS curl clients"
        run_load "${servers[i]}" "$per"
    done
    # The server's accept queue overflows (vsftpd listens with a backlog of
    # 32): clients then wait for a greeting that may come too late, under
    # any gateway. Counted, to read the failures of both rows by.
    ovf=$(ip netns exec "$FTPCT_LAB_NS_SRV" nstat -az TcpExtListenOverflows 2>/dev/null | awk '$1 == "TcpExtListenOverflows" { print $2 }') || ovf=''
    log "  load over after $(($(now) - t0)) s; listen queue overflows at the server: ${ovf:-?}"
    # The ends' TCP counters (retransmissions, timeouts, checksum errors):
    # what a failure looked like from the hosts, to compare with the other mode.
    ip netns exec "$FTPCT_LAB_NS_CLI" nstat -az >"$ROWDIR/nstat-client.txt" 2>/dev/null || true
    ip netns exec "$FTPCT_LAB_NS_SRV" nstat -az >"$ROWDIR/nstat-server.txt" 2>/dev/null || true
    log "  client TCP: $(tcp_counters "$ROWDIR/nstat-client.txt"); server TCP: $(tcp_counters "$ROWDIR/nstat-server.txt")"
    BASE_OK=1 BASE_WHY='-'
    if [[ $MODE == ftpct ]]; then
        # Everything ftpct logged from here on is after the load.
        off=$(stat -c %s "$FTPCT_LOG")
        settle "$off" "$(state_fields <"$FTPCT_LOG" | awk '$1 > f { f = $1 } END { print f + 0 }')"
        rss1=$(rss_kb "$FTPCT_PID")
        if ! kill -0 "$FTPCT_PID" 2>/dev/null; then
            BASE_OK=0 BASE_WHY="ftpct exited during the row: $(tail -n 3 "$FTPCT_LOG" | tr '\n' ' ')"
        fi
    else
        sleep "$SAMPLE_SECS"
    fi
    stop_sampler
    if [[ $MODE == ftpct ]]; then
        # Peaks from every state line (the samples see one in 2 or 3).
        maxf=$(state_fields <"$FTPCT_LOG" |
            awk '$1 > f { f = $1 } $2 > e { e = $2 } $3 > s { s = $3 } END { print f + 0, e + 0, s + 0 }')
        read -r maxf maxe maxi <<<"$maxf"
        # Flows at the peak and when the baseline was checked.
        maxf+=/$(tail -c +$((off + 1)) "$FTPCT_LOG" | last_state | cut -d' ' -f1)
        i=$(max_col 10 11)
        if ((i > maxi)); then maxi="$maxi/$i"; fi
        peak=$(max_col 6)
        [[ -n $rss1 ]] && ((rss1 > peak)) && peak=$rss1
        if ((BASE_OK)); then
            local tol=$(((peak - rss0) / 2))
            ((tol >= RSS_TOL_MIN_KB)) || tol=$RSS_TOL_MIN_KB
            if ((${rss1:-0} - rss0 > tol)); then
                BASE_OK=0 BASE_WHY="RSS ${rss1} KiB after, ${rss0} KiB before: more than $tol KiB above"
            fi
        fi
        R_RSS+=("$rss0/$peak/$rss1")
        log "  baseline: $( ((BASE_OK)) && echo ok || echo FAILED): $BASE_WHY"
        log "  ftpct RSS before/peak/after: $rss0/$peak/$rss1 KiB"
    else
        maxf='-' maxi='-'
        maxe=$(max_col 13)
        R_RSS+=(-)
    fi
    maxc=$(max_col 12)
    mode_off
    "$LAB" down >>"$ROWDIR/lab.log" 2>&1 || log "warning: lab.sh down failed"
    LAB_UP=0
    read -r ok failed sess < <(tally)
    clients_table >"$ROWDIR/clients.txt"
    log "  transfers ok $ok, failed $failed, sessions $sess"
    if ((failed)); then
        {
            echo "failed transfers by client:"
            failures_by_client | sed 's/^/    /'
            echo "client errors (count, digits as N):"
            client_errors | sed 's/^/    /'
            if [[ $MODE == ftpct ]]; then
                echo "ftpct's unusual log lines (count, digits as N):"
                ftpct_problems | sed 's/^/    /'
            fi
        } >"$ROWDIR/failures.txt"
        sed 's/^/      /' "$ROWDIR/failures.txt" >&2
    fi
    R_MODE+=("$MODE") R_TOPO+=("$TOPO") R_SRV+=("$(IFS=+; echo "${servers[*]}")") R_OK+=("$ok") R_FAIL+=("$failed") R_SESS+=("$sess")
    R_MAXF+=("$maxf") R_MAXE+=("$maxe") R_MAXI+=("$maxi") R_MAXC+=("$maxc") R_OVF+=("${ovf:-?}")
    R_BASE+=("$( ((BASE_OK)) && echo ok || echo FAIL)") R_WHY+=("$BASE_WHY")
    ROWDIR=''
}

# --- verdict and table ----------------------------------------------------------

rate() { awk -v f="$1" -v o="$2" 'BEGIN { n = f + o; printf "%.2f%%", n ? 100 * f / n : 0 }'; }

verdict() {
    local i j bad=0 kfail kok found
    for i in "${!R_MODE[@]}"; do
        if ((R_OK[i] == 0)); then
            log "FAIL: ${R_MODE[i]} on ${R_TOPO[i]}: no transfer completed (the lab, not the helper?)"
            bad=1
        fi
        [[ ${R_BASE[i]} == ok ]] || { log "FAIL: ${R_MODE[i]} on ${R_TOPO[i]}: baseline: ${R_WHY[i]}"; bad=1; }
        [[ ${R_MODE[i]} == ftpct ]] || continue
        found=0
        for j in "${!R_MODE[@]}"; do
            [[ ${R_MODE[j]} == kernel && ${R_TOPO[j]} == "${R_TOPO[i]}" ]] || continue
            found=1 kfail=${R_FAIL[j]} kok=${R_OK[j]}
        done
        if ((!found)); then
            if ((R_FAIL[i])); then
                log "FAIL: ftpct on ${R_TOPO[i]}: ${R_FAIL[i]} failed transfer(s), no kernel control to compare with"
                bad=1
            fi
        elif ((kfail == 0)); then
            if ((R_FAIL[i])); then
                log "FAIL: ftpct on ${R_TOPO[i]}: ${R_FAIL[i]} failed transfer(s) ($(rate "${R_FAIL[i]}" "${R_OK[i]}")), the kernel helper none on the same load"
                bad=1
            fi
        else
            log "note: the kernel helper failed $kfail transfer(s) on ${R_TOPO[i]} ($(rate "$kfail" "$kok")); ftpct ${R_FAIL[i]} ($(rate "${R_FAIL[i]}" "${R_OK[i]}"))"
            # The kernel's failures measure what the load itself costs (the
            # server's accept queue, timeouts on a busy machine): ftpct's rate
            # may be up to twice the kernel's, plus half a point.
            if awk -v f="${R_FAIL[i]}" -v o="${R_OK[i]}" -v kf="$kfail" -v ko="$kok" \
                'BEGIN { exit !(f / (f + o) > 2 * kf / (kf + ko) + 0.005) }'; then
                log "FAIL: ftpct on ${R_TOPO[i]}: failure rate more than twice the kernel helper's plus 0.5 points"
                bad=1
            fi
        fi
    done
    return "$bad"
}

print_table() {
    local i line fmt='%-6s %-4s %-16s %9s %6s %6s %8s %8s  %-23s %9s %6s %9s %9s %-4s\n'
    line=$(printf '%.0s-' {1..136})
    # shellcheck disable=SC2059 # the format is ours
    printf "\n$fmt" '' '' '' transfers '' '' '' listen 'ftpct RSS KiB' flows max max max base
    # shellcheck disable=SC2059
    printf "$fmt" mode topo servers ok failed fail% sessions overflow 'before/peak/after' peak/end expect ipset conntrack line
    printf '%s\n' "$line"
    for i in "${!R_MODE[@]}"; do
        # shellcheck disable=SC2059 # the format is ours
        printf "$fmt" "${R_MODE[i]}" "${R_TOPO[i]}" "${R_SRV[i]}" "${R_OK[i]}" "${R_FAIL[i]}" \
            "$(rate "${R_FAIL[i]}" "${R_OK[i]}")" "${R_SESS[i]}" "${R_OVF[i]}" "${R_RSS[i]}" \
            "${R_MAXF[i]}" "${R_MAXE[i]}" "${R_MAXI[i]}" "${R_MAXC[i]}" "${R_BASE[i]}"
    done
    printf '%s\n' "$line"
    printf 'load: %d s per row, %d ftpload + %d curl clients; %d s in all; samples: %s\n' \
        "$LOAD_SECS" "$CLIENTS" "$CURLS" "$SECONDS" "$CSV"
    printf 'listen overflow: connections the server'"'"'s accept queue dropped (TcpExtListenOverflows)\n'
    printf 'max expect: ftpct expectations (kernel rows: the kernel'"'"'s); max ipset: from state lines (/from ipset list, when more)\n'
}

# --- main -------------------------------------------------------------------------

main() {
    parse_args "$@"
    [[ $(id -u) -eq 0 ]] || die "run as root (network namespaces, NFQUEUE, conntrack)"
    "$HERE/install-deps.sh" --check >/dev/null 2>&1 || die "missing packages: run scripts/install-deps.sh"
    SRC_FTPCT=${SRC_FTPCT:-$REPO/target/release/ftpct} SRC_FTPLOAD=${SRC_FTPLOAD:-$REPO/target/release/ftpload}
    [[ -x $SRC_FTPCT && -x $SRC_FTPLOAD ]] || die "$SRC_FTPCT or $SRC_FTPLOAD missing: cargo build --release --workspace"
    trap cleanup EXIT
    trap 'log "interrupted"; exit 130' INT TERM
    if [[ -z $OUT ]]; then
        WORK=$(mktemp -d /tmp/ftpct-soak.XXXXXX)
    else
        mkdir -p "$OUT"
        WORK=$(cd "$OUT" && pwd)
    fi
    chmod 0755 "$WORK"
    # What is said on the terminal is kept too.
    exec 2> >(tee -a "$WORK/soak.log" >&2)
    BIN=$WORK/bin
    mkdir -p "$BIN"
    # A snapshot: someone may rebuild while this runs.
    cp "$SRC_FTPCT" "$BIN/ftpct"
    cp "$SRC_FTPLOAD" "$BIN/ftpload"
    FTPCT=$BIN/ftpct FTPLOAD=$BIN/ftpload
    CSV=$WORK/samples.csv
    echo "$CSV_HEADER" >"$CSV"
    # vsftpd and pure-ftpd with room for every client (all share one address).
    export FTPCT_LAB_VSFTPD_OPTS="max_clients=0 max_per_ip=0"
    export FTPCT_LAB_PURE_FTPD_OPTS="-c $((2 * (CLIENTS + CURLS) + 50))"
    log "ftpct: $("$FTPCT" --version), $SRC_FTPCT of $(date -r "$SRC_FTPCT" '+%F %T'); tree at $(git -C "$REPO" log -1 --format=%h 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' (+ uncommitted changes in src)')"
    log "modes $MODES, topologies $TOPOS, servers $SERVERS, $LOAD_SECS s of load per row; work directory $WORK"
    local topo mode n=0
    for topo in ${TOPOS//,/ }; do
        for mode in ${MODES//,/ }; do
            run_row "$topo" "$mode" "$n"
        done
        n=$((n + 1))
    done
    print_table | tee "$WORK/table.txt"
    verdict
}

main "$@"
