# shellcheck shell=bash
# Functions shared by the scripts (demo, bench, soak, failover, the hostile
# input suite; the end-to-end matrix and the fault suite are in the pytest
# harness, tests/lab).
# Source it; it defines functions only. Each script defines its own log()
# and die() (their lines name the script).

# stop_pid PID [TENTHS]: SIGTERM, wait at most TENTHS tenths of a second
# (default 50), then SIGKILL. Returns 1 when it had to kill.
stop_pid() {
    local pid=$1 tenths=${2:-50} i killed=0
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < tenths; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        killed=1
    fi
    wait "$pid" 2>/dev/null || true
    return "$killed"
}

# flush_conntrack: empties the gateway's connections and expectations, both
# families. The caller defines gw() (run a command in the gateway namespace).
flush_conntrack() {
    local fam
    for fam in ipv4 ipv6; do
        gw conntrack -F -f "$fam" >/dev/null 2>&1 || true
        gw conntrack -F expect -f "$fam" >/dev/null 2>&1 || true
    done
}

# usage: prints the calling script's header comment (line 2 up to its
# `set -euo` line) and exits 2.
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
    exit 2
}

# has_mode MODE: true if MODE is in the comma-separated list $MODES.
has_mode() { [[ ,$MODES, == *,$1,* ]]; }

# check_modes ALLOWED...: dies unless every mode of $MODES is one of ALLOWED.
check_modes() {
    local m
    for m in ${MODES//,/ }; do
        [[ " $* " == *" $m "* ]] || die "unknown gateway mode '$m' ($*)"
    done
}

# wait_running: waits (at most 5 s) until the `ftpct run` of $FTPCT_PID logs
# to $FTPCT_LOG that it has bound its queues. Dies, with its last lines, if
# it exited; goes on with a warning if it says nothing.
wait_running() {
    local i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$FTPCT_PID" 2>/dev/null || break
        grep -qs 'running: queues' "$FTPCT_LOG" && return 0
        sleep 0.1
    done
    if ! kill -0 "$FTPCT_PID" 2>/dev/null; then
        tail -n 20 "$FTPCT_LOG" >&2
        FTPCT_PID=''
        die "ftpct run exited at start-up"
    fi
    log "warning: no start-up line from ftpct after 5 s, going on"
}

# drop_work: removes the work directory $WORK, or says where it is kept
# (KEEP=1).
drop_work() {
    [[ -n ${WORK:-} ]] || return 0
    if ((KEEP)); then log "work directory kept: $WORK"; else rm -rf -- "$WORK"; fi
}

# wait_log FILE REGEX TENTHS: true once REGEX (extended) matches a line of
# FILE, waiting TENTHS tenths of a second at most.
wait_log() {
    local i
    for ((i = 0; i < $3; i++)); do
        grep -Eqs -- "$2" "$1" && return 0
        sleep 0.1
    done
    return 1
}

# Timestamps (seconds, with nanoseconds).
now() { date +%s.%N; }

# lab_prerequisites: root, the lab's packages, and the release build when
# the ftpct mode is asked for (HERE, FTPCT and MODES set by the caller).
lab_prerequisites() {
    [[ $(id -u) -eq 0 ]] || die "run as root (network namespaces)"
    "$HERE/install-deps.sh" --check >/dev/null 2>&1 || die "missing packages: run scripts/install-deps.sh"
    if has_mode ftpct; then [[ -x $FTPCT ]] || die "$FTPCT missing: cargo build --release"; fi
}
