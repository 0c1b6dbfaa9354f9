# shellcheck shell=bash
# Functions shared by scripts/demo.sh, scripts/e2e.sh and scripts/bench.sh.
# Source it; it defines functions only.

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
