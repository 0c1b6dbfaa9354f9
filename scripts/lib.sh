# shellcheck shell=bash
# Functions shared by the scripts that stay in shell (the demo, ops-test,
# deb-test; the suites are in the pytest harness, tests/lab). Source it; it
# defines functions only. Each script defines its own log() and die()
# (their lines name the script).

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

# wait_running: waits (at most 5 s) until the `ftpct run` of $FTPCT_PID logs
# to $FTPCT_LOG that it has bound its queues. Dies, with its last lines, if
# it exited or said nothing.
wait_running() {
    local i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$FTPCT_PID" 2>/dev/null || break
        grep -qs 'running: queues' "$FTPCT_LOG" && return 0
        sleep 0.1
    done
    tail -n 20 "$FTPCT_LOG" >&2
    if ! kill -0 "$FTPCT_PID" 2>/dev/null; then
        FTPCT_PID=''
        die "ftpct run exited at start-up"
    fi
    die "no start-up line from ftpct run within 5 s"
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
