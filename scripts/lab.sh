#!/usr/bin/env bash
# ftpct namespace lab: a client, a gateway and FTP servers in network
# namespaces, addresses from the documentation ranges only. A wrapper over
# the harness's library (tests/lab: `python3 -m lab`, topology.py, ha.py),
# with this script's namespace names: ftpct-cli, ftpct-gw, ftpct-srv,
# ftpct-srv2 (ftpct-ha-* for ha), or FTPCT_LAB_PREFIX + role.
#
# Usage (as root):
#   scripts/lab.sh up [snat|dnat|fxp|plain] [vsftpd|pure-ftpd|none]  (default: snat vsftpd)
#   scripts/lab.sh down                 remove everything the lab made
#   scripts/lab.sh status               what is up
#   scripts/lab.sh env                  shell assignments describing the lab (eval-able)
#   scripts/lab.sh helper on|off|status the kernel's FTP helper on the gateway
#   scripts/lab.sh server vsftpd|pure-ftpd|none   the server on port 21
#   scripts/lab.sh ha up [vsftpd|pure-ftpd]   the failover pair: gateways A (ftpct-ha-gw)
#                                       and B (ftpct-ha-gw2) on two bridges, conntrackd
#                                       on both; `ha CMD` runs any command above on it
#   scripts/lab.sh ha failover a|b      move the virtual addresses to gateway A or B,
#                                       and commit conntrackd's external cache there
#   scripts/lab.sh ha conntrackd a|b ARGS...  a conntrackd client command on that gateway
#
# Topologies: snat (client 192.0.2.10 inside, server 198.51.100.20 outside,
# MASQUERADE to 198.51.100.1), plain (the same without NAT), fxp (plain and a
# second server 203.0.113.30), dnat (server 192.0.2.20 inside, published on
# 198.51.100.1:21), ha: see tests/lab/topology.py and tests/lab/ha.py. The
# gateway forwards only ESTABLISHED,RELATED and new connections to port 21.
# Servers: anonymous, files in $FTPCT_LAB_ANON (see `env`): empty.bin,
# 1k.bin, 50m.bin, SHA256SUMS, a writable upload/.
#
# Environment: FTPCT_LAB_PREFIX (must start with ftpct-), FTPCT_LAB_SERVER,
# FTPCT_LAB_OFFLOAD=off, FTPCT_LAB_VSFTPD_OPTS, FTPCT_LAB_PURE_FTPD_OPTS,
# FTPCT_LAB_HA_NAT=snat|masquerade, FTPCT_LAB_HA_POLL_SECS: see
# `cd tests && python3 -m lab --help`.
set -euo pipefail

TESTS=$(cd "$(dirname "$0")/../tests" && pwd)
case ${1:-} in
    up | down | status | env | helper | server) prefix=${FTPCT_LAB_PREFIX:-ftpct-} ;;
    ha) prefix=${FTPCT_LAB_PREFIX:-ftpct-ha-} ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
        exit 2
        ;;
esac
# Debian's python3: the one the harness is tested with.
PYTHONPATH=$TESTS${PYTHONPATH:+:$PYTHONPATH} exec /usr/bin/python3 -m lab --prefix "$prefix" "$@"
