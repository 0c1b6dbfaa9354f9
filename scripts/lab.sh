#!/usr/bin/env bash
# ftpct namespace lab: a client, a gateway and FTP servers in network
# namespaces, with addresses from the documentation ranges only.
# The pytest harness builds snat, dnat, plain and fxp (tests/lab/topology.py)
# and ha (tests/lab/ha.py, conntrackd.py) the same way for its suites: change
# both together until this script is a wrapper over it (the abuse and
# bench suites, the demo and ops-test use this script).
#
# Usage:
#   scripts/lab.sh up [snat|dnat|fxp|plain] [vsftpd|pure-ftpd]   (default: snat vsftpd)
#   scripts/lab.sh down                 remove everything the lab made
#   scripts/lab.sh status               what is up
#   scripts/lab.sh env                  shell assignments describing the lab (eval-able)
#   scripts/lab.sh helper on|off|status attach the kernel's FTP helper on the gateway
#   scripts/lab.sh server vsftpd|pure-ftpd|none   choose the server on port 21
#   scripts/lab.sh ha up [vsftpd|pure-ftpd]   the failover lab (below); `ha CMD` runs
#                                       any command above on it (namespaces ftpct-ha-*)
#   scripts/lab.sh ha failover a|b      move the virtual addresses to gateway A or B,
#                                       and commit conntrackd's external cache there
#   scripts/lab.sh ha conntrackd a|b ARGS...  a conntrackd client command on that gateway
#
# Topologies (gw = namespace ftpct-gw; interface names are 3+ characters,
# since `ip link` reads short names as abbreviated keywords):
#
#   snat   ftpct-cli  cli0 192.0.2.10/24     2001:db8:1::10/64  via 192.0.2.1 / 2001:db8:1::1
#          ftpct-gw   gwin 192.0.2.1/24      2001:db8:1::1/64
#                     gwout 198.51.100.1/24  2001:db8:2::1/64   MASQUERADE (v4 + v6) out of gwout
#          ftpct-srv  srv0 198.51.100.20/24  2001:db8:2::20/64  via 198.51.100.1 / 2001:db8:2::1
#   plain  as snat, without any NAT (a routing firewall)
#   dnat   ftpct-cli  cli0 198.51.100.10/24  2001:db8:2::10/64  (outside, on gwout)
#          ftpct-gw   gwin 192.0.2.1/24 2001:db8:1::1/64, gwout 198.51.100.1/24 2001:db8:2::1/64
#          ftpct-srv  srv0 192.0.2.20/24     2001:db8:1::20/64  (inside, on gwin)
#          DNAT tcp 198.51.100.1:21 -> 192.0.2.20:21, [2001:db8:2::1]:21 -> [2001:db8:1::20]:21
#          (no static DNAT for data ports: a helper must handle them)
#   fxp    as plain, plus a second server behind a third gateway interface, so
#          that a server-to-server data connection really crosses the firewall:
#          ftpct-gw   gwout2 203.0.113.1/24  2001:db8:3::1/64
#          ftpct-srv2 srv0 203.0.113.30/24   2001:db8:3::30/64  via 203.0.113.1 / 2001:db8:3::1
#          Servers run with FXP allowed (vsftpd pasv/port_promiscuous, pure-ftpd -W).
#   ha     two gateways, A (ns gw) and B (ns gw2), one active at a time, on two
#          bridges (brin, brout) in a switch namespace (sw). The active one holds
#          the virtual addresses 192.0.2.1/24 2001:db8:1::1/64 (gwin) and
#          198.51.100.1/24 2001:db8:2::1/64 (gwout); the gateways have no other
#          address there. Sync link gwsync: A 203.0.113.1/24, B 203.0.113.2/24.
#          Inside:  cli   192.0.2.10    2001:db8:1::10  (a client, SNAT to the VIP)
#                   srvin 192.0.2.20    2001:db8:1::20  (a server, DNAT from the VIP)
#          Outside: srv    198.51.100.20 2001:db8:2::20 (a server)
#                   cliout 198.51.100.10 2001:db8:2::10 (a client of the DNAT server)
#          Both gateways: the same filter; SNAT --to-source the outside VIP out
#          of gwout (MASQUERADE with FTPCT_LAB_HA_NAT=masquerade: it deletes
#          its connections when the address leaves the gateway, and conntrackd
#          then deletes them on the peer too); DNAT as in dnat. conntrackd on
#          each (FTFW over UDP on gwsync, expectations synced; config, lock,
#          socket and log under the lab's root). A starts active.
#
# Gateway filter, iptables and ip6tables: FORWARD policy DROP, accept
# ESTABLISHED,RELATED, accept NEW tcp dport 21. No helper is attached unless
# `helper on` (raw PREROUTING -p tcp --dport 21 -j CT --helper ftp): automatic
# helper assignment does not exist on current kernels.
#
# Servers listen on port 21 in every server namespace, IPv4 and IPv6, one at a
# time (vsftpd: one instance with listen_ipv6=YES, which accepts IPv4 as mapped
# addresses; pure-ftpd: its own two sockets). Anonymous login, no password;
# the anonymous root is $FTPCT_LAB_ROOT/ftp (see `env`), with empty.bin (0 B),
# 1k.bin (1 KiB), 50m.bin (50 MiB), SHA256SUMS (deterministic SHAKE-256
# streams) and a writable upload/. No pasv_address / forced passive IP.
#
# Environment: FTPCT_LAB_PREFIX (default ftpct-, must start with ftpct-) lets
# two labs live side by side; FTPCT_LAB_OFFLOAD=off turns off checksum and
# segmentation offloads on every veth (captures then carry real checksums);
# FTPCT_PURE_FTPD overrides the pure-ftpd binary; FTPCT_LAB_VSFTPD_OPTS
# (words KEY=VALUE, added to vsftpd's configuration, e.g. "max_per_ip=0")
# and FTPCT_LAB_PURE_FTPD_OPTS (more pure-ftpd arguments, e.g. "-c 500")
# tune the servers, read when a server starts (load tests need more than one
# address's worth of sessions).
set -euo pipefail

if [[ ${1:-} == ha ]]; then PREFIX=${FTPCT_LAB_PREFIX:-ftpct-ha-}; else PREFIX=${FTPCT_LAB_PREFIX:-ftpct-}; fi
[[ $PREFIX == ftpct-* ]] || { echo "lab: FTPCT_LAB_PREFIX must start with ftpct-" >&2; exit 2; }
NS_CLI=${PREFIX}cli
NS_GW=${PREFIX}gw
NS_SRV=${PREFIX}srv
NS_SRV2=${PREFIX}srv2
NS_GW2=${PREFIX}gw2     # ha: gateway B
NS_SW=${PREFIX}sw       # ha: the switch (two bridges)
NS_SRVIN=${PREFIX}srvin # ha: the server inside
NS_CLIOUT=${PREFIX}cliout # ha: the client outside
STATE_DIR=/run/ftpct-lab/${PREFIX%-}
PURE_FTPD=${FTPCT_PURE_FTPD:-${FTPCT_LAB_OPT:-/opt/ftpct-lab}/pure-ftpd/usr/sbin/pure-ftpd}
TOPOLOGIES="snat dnat fxp plain ha"
WAIT_TENTHS=50 # bounded waits: 5 s

log() { printf 'lab: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ns_exists() { [[ -e /run/netns/$1 ]]; }
state_get() { cat "$STATE_DIR/$1" 2>/dev/null || true; }
state_set() { printf '%s\n' "$2" >"$STATE_DIR/$1"; }

# Bounded poll: wait_for TENTHS CMD... ; true when CMD succeeded in time.
wait_for() {
    local n=$1; shift
    local i
    for ((i = 0; i < n; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

all_ns() { printf '%s\n' "$NS_CLI" "$NS_GW" "$NS_SRV" "$NS_SRV2" "$NS_GW2" "$NS_SW" "$NS_SRVIN" "$NS_CLIOUT"; }
# The gateways of the topology (two in ha).
gw_ns_list() {
    printf '%s\n' "$NS_GW"
    if [[ $(state_get topo) == ha ]]; then printf '%s\n' "$NS_GW2"; fi
}
server_ns_list() {
    case $(state_get topo) in
        fxp) printf '%s\n' "$NS_SRV" "$NS_SRV2" ;;
        ha) printf '%s\n' "$NS_SRV" "$NS_SRVIN" ;;
        '') ;;
        *) printf '%s\n' "$NS_SRV" ;;
    esac
}

# --- addresses -----------------------------------------------------------

# Sets the addresses a client uses to reach the (first) server, and the
# server's own addresses, for the current topology.
topo_addrs() {
    case $1 in
        snat | plain | fxp | ha)
            CLI4=192.0.2.10 CLI6=2001:db8:1::10
            SRV4=198.51.100.20 SRV6=2001:db8:2::20
            TARGET4=$SRV4 TARGET6=$SRV6
            ;;
        dnat)
            CLI4=198.51.100.10 CLI6=2001:db8:2::10
            SRV4=192.0.2.20 SRV6=2001:db8:1::20
            TARGET4=198.51.100.1 TARGET6=2001:db8:2::1
            ;;
        *) die "unknown topology '$1' (one of: $TOPOLOGIES)" ;;
    esac
    SRV2_4='' SRV2_6=''
    if [[ $1 == fxp ]]; then SRV2_4=203.0.113.30 SRV2_6=2001:db8:3::30; fi
}

# --- building blocks -----------------------------------------------------

mk_ns() {
    local ns=$1
    ip netns add "$ns"
    nsx "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    nsx "$ns" sysctl -qw net.ipv6.conf.all.dad_transmits=0 net.ipv6.conf.default.dad_transmits=0
    ip -n "$ns" link set lo up
}

# veth NS_A IF_A NS_B IF_B
veth() {
    ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
}

# addr NS IF V4/LEN V6/LEN
addr() {
    local ns=$1 dev=$2
    ip -n "$ns" addr add "$3" dev "$dev"
    ip -n "$ns" -6 addr add "$4" dev "$dev" nodad
    ip -n "$ns" link set "$dev" up
    if [[ ${FTPCT_LAB_OFFLOAD:-on} == off ]] && command -v ethtool >/dev/null; then
        nsx "$ns" ethtool -K "$dev" tx off tso off gso off gro off >/dev/null 2>&1 || true
    fi
}

# routes NS GW4 GW6
routes() {
    ip -n "$1" route add default via "$2"
    ip -n "$1" -6 route add default via "$3"
}

gw_firewall() { # [NS] (default: the gateway)
    local ipt ns=${1:-$NS_GW}
    nsx "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    for ipt in iptables ip6tables; do
        nsx "$ns" "$ipt" -P FORWARD DROP
        nsx "$ns" "$ipt" -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
        nsx "$ns" "$ipt" -A FORWARD -p tcp --dport 21 -m conntrack --ctstate NEW -j ACCEPT
    done
}

build_topology() {
    local topo=$1 ns
    if [[ $topo == ha ]]; then build_ha; return; fi
    for ns in "$NS_CLI" "$NS_GW" "$NS_SRV"; do mk_ns "$ns"; done
    case $topo in
        snat | plain | fxp)
            veth "$NS_GW" gwin "$NS_CLI" cli0
            veth "$NS_GW" gwout "$NS_SRV" srv0
            addr "$NS_GW" gwin 192.0.2.1/24 2001:db8:1::1/64
            addr "$NS_GW" gwout 198.51.100.1/24 2001:db8:2::1/64
            addr "$NS_CLI" cli0 192.0.2.10/24 2001:db8:1::10/64
            addr "$NS_SRV" srv0 198.51.100.20/24 2001:db8:2::20/64
            routes "$NS_CLI" 192.0.2.1 2001:db8:1::1
            routes "$NS_SRV" 198.51.100.1 2001:db8:2::1
            if [[ $topo == fxp ]]; then
                mk_ns "$NS_SRV2"
                veth "$NS_GW" gwout2 "$NS_SRV2" srv0
                addr "$NS_GW" gwout2 203.0.113.1/24 2001:db8:3::1/64
                addr "$NS_SRV2" srv0 203.0.113.30/24 2001:db8:3::30/64
                routes "$NS_SRV2" 203.0.113.1 2001:db8:3::1
            fi
            ;;
        dnat)
            veth "$NS_GW" gwin "$NS_SRV" srv0
            veth "$NS_GW" gwout "$NS_CLI" cli0
            addr "$NS_GW" gwin 192.0.2.1/24 2001:db8:1::1/64
            addr "$NS_GW" gwout 198.51.100.1/24 2001:db8:2::1/64
            addr "$NS_CLI" cli0 198.51.100.10/24 2001:db8:2::10/64
            addr "$NS_SRV" srv0 192.0.2.20/24 2001:db8:1::20/64
            routes "$NS_CLI" 198.51.100.1 2001:db8:2::1
            routes "$NS_SRV" 192.0.2.1 2001:db8:1::1
            ;;
    esac
    gw_firewall
    case $topo in
        snat)
            nsx "$NS_GW" iptables -t nat -A POSTROUTING -o gwout -j MASQUERADE
            nsx "$NS_GW" ip6tables -t nat -A POSTROUTING -o gwout -j MASQUERADE
            ;;
        dnat)
            nsx "$NS_GW" iptables -t nat -A PREROUTING -i gwout -d 198.51.100.1 -p tcp --dport 21 \
                -j DNAT --to-destination 192.0.2.20:21
            nsx "$NS_GW" ip6tables -t nat -A PREROUTING -i gwout -d 2001:db8:2::1 -p tcp --dport 21 \
                -j DNAT --to-destination '[2001:db8:1::20]:21'
            ;;
    esac
}

# Deterministic test files: SHAKE-256 of a fixed label, any length.
make_files() {
    local anon=$1
    install -d -m 0755 -o root -g root "$anon"
    install -d -m 0755 -o ftp -g ftp "$anon/upload"
    python3 - "$anon" <<'EOF'
import hashlib, os, sys
d = sys.argv[1]
for name, size in (("empty.bin", 0), ("1k.bin", 1024), ("50m.bin", 50 << 20)):
    data = hashlib.shake_256(b"ftpct-lab " + name.encode()).digest(size) if size else b""
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
EOF
    (cd "$anon" && sha256sum empty.bin 1k.bin 50m.bin >SHA256SUMS)
    chmod 0644 "$anon"/*.bin "$anon/SHA256SUMS"
}

# --- servers -------------------------------------------------------------

vsftpd_conf() {
    local ns=$1 root=$2 fxp=$3 from20=YES
    # With port_promiscuous (FXP) the unprivileged process binds the data
    # socket itself: port 20 would fail with EACCES (500 OOPS: vsf_sysutil_bind).
    [[ $fxp == yes ]] && from20=NO
    cat <<EOF
# generated by scripts/lab.sh for $ns
listen=NO
listen_ipv6=YES
background=NO
anonymous_enable=YES
local_enable=NO
no_anon_password=YES
anon_root=$root/ftp
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=YES
anon_umask=022
secure_chroot_dir=$root/empty
seccomp_sandbox=NO
connect_from_port_20=$from20
pasv_enable=YES
port_enable=YES
dirmessage_enable=NO
xferlog_enable=YES
xferlog_std_format=NO
log_ftp_protocol=YES
vsftpd_log_file=$root/log/vsftpd-$ns.log
idle_session_timeout=120
data_connection_timeout=30
connect_timeout=10
accept_timeout=10
EOF
    if [[ $fxp == yes ]]; then
        printf 'pasv_promiscuous=YES\nport_promiscuous=YES\n'
    fi
    local opt
    for opt in ${FTPCT_LAB_VSFTPD_OPTS:-}; do
        [[ $opt == [a-z]*=* ]] || die "FTPCT_LAB_VSFTPD_OPTS: '$opt' is not KEY=VALUE"
        printf '%s\n' "$opt"
    done
}

listening21() { # NS: port 21 open for IPv4 and IPv6
    local out
    out=$(nsx "$1" ss -ltnH 'sport = :21')
    [[ $out == *'[::]:21'* || $out == *' *:21'* ]] || return 1
    # vsftpd's single :: socket takes IPv4 too (bindv6only=0); pure-ftpd opens two.
    [[ $out == *'0.0.0.0:21'* ]] || [[ $(nsx "$1" sysctl -n net.ipv6.bindv6only) == 0 ]]
}

server_pid21() { # NS: pid of the listener on port 21
    nsx "$1" ss -ltnpH 'sport = :21' | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1
}

start_server() {
    local kind=$1 ns=$2 root fxp=no pid ftp_home
    root=$(state_get root)
    [[ $(state_get topo) == fxp ]] && fxp=yes
    mkdir -p "$root/etc" "$root/log"
    case $kind in
        vsftpd)
            command -v vsftpd >/dev/null || die "vsftpd missing: run scripts/install-deps.sh"
            vsftpd_conf "$ns" "$root" "$fxp" >"$root/etc/vsftpd-$ns.conf"
            setsid ip netns exec "$ns" vsftpd "$root/etc/vsftpd-$ns.conf" \
                </dev/null >>"$root/log/vsftpd-$ns.out" 2>&1 9<&- &
            ;;
        pure-ftpd)
            [[ -x $PURE_FTPD ]] || die "pure-ftpd missing at $PURE_FTPD: run scripts/install-deps.sh"
            # pure-ftpd serves anonymous users from the home of user ftp: bind our
            # anonymous root there, in a mount namespace private to the server.
            ftp_home=$(getent passwd ftp | cut -d: -f6)
            [[ -d $ftp_home ]] || die "home of user ftp ($ftp_home) missing: run scripts/install-deps.sh"
            local -a opts=(-e -M -H -A -I 120 -U 133:022 -O "clf:$root/log/pure-ftpd-$ns.xfer")
            [[ $fxp == yes ]] && opts+=(-W)
            # shellcheck disable=SC2206 # words, by design
            opts+=(${FTPCT_LAB_PURE_FTPD_OPTS:-})
            setsid ip netns exec "$ns" unshare -m --propagation private \
                sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh \
                "$root/ftp" "$ftp_home" "$PURE_FTPD" "${opts[@]}" \
                </dev/null >>"$root/log/pure-ftpd-$ns.out" 2>&1 9<&- &
            ;;
        none) return 0 ;;
        *) die "unknown server '$kind' (vsftpd or pure-ftpd)" ;;
    esac
    wait_for "$WAIT_TENTHS" listening21 "$ns" || {
        tail -n 5 "$root/log/"*"$ns"* >&2 2>/dev/null || true
        die "$kind did not start listening on port 21 in $ns"
    }
    pid=$(server_pid21 "$ns")
    [[ -n $pid ]] || die "no pid for the port 21 listener in $ns"
    state_set "server-$ns.pid" "$pid"
}

# Kill a process and its children, by id; bounded wait for them to go.
kill_tree() {
    local pid=$1 kids
    kids=$(pgrep -P "$pid" 2>/dev/null || true)
    kill "$pid" $kids 2>/dev/null || true
    wait_for 30 bash -c "! kill -0 $pid $kids 2>/dev/null" \
        || kill -KILL "$pid" $kids 2>/dev/null || true
}

stop_servers() {
    local ns pid
    for ns in $(all_ns); do
        pid=$(state_get "server-$ns.pid")
        if [[ -n $pid ]]; then
            kill_tree "$pid"
            rm -f "$STATE_DIR/server-$ns.pid"
        fi
        # A listener we did not record (should not happen): stop it too.
        if ns_exists "$ns"; then
            pid=$(server_pid21 "$ns" || true)
            [[ -n $pid ]] && kill_tree "$pid"
        fi
    done
    return 0
}

# Control connection check from the client: read the 220 greeting.
greeting() { # ADDR [CLIENT_NS]
    nsx "${2:-$NS_CLI}" timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/21" && head -c 3 <&3' sh "$1"
}

set_server() {
    local kind=$1 ns
    stop_servers
    for ns in $(server_ns_list); do start_server "$kind" "$ns"; done
    state_set server "$kind"
    [[ $kind == none ]] && return 0
    topo_addrs "$(state_get topo)"
    local a
    for a in "$TARGET4" "$TARGET6"; do
        [[ $(greeting "$a") == 220 ]] || die "no 220 greeting from $a through the gateway"
    done
    if [[ $(state_get topo) == ha ]]; then # the server inside, through DNAT
        for a in 198.51.100.1 2001:db8:2::1; do
            [[ $(greeting "$a" "$NS_CLIOUT") == 220 ]] || die "no 220 greeting from $a (DNAT) through the gateway"
        done
    fi
}

# --- the failover lab (topology ha) ---------------------------------------

# Virtual addresses: interface, IPv4/len, IPv6/len.
HA_VIPS=("gwin 192.0.2.1/24 2001:db8:1::1/64" "gwout 198.51.100.1/24 2001:db8:2::1/64")
HA_OUT4=198.51.100.1 HA_OUT6=2001:db8:2::1
# conntrackd polls the kernel's table (a dump) every HA_POLL_SECS seconds
# instead of following its events: the kernel raises no event when a helper
# records a sequence adjustment, only a dump carries it. 0: follow events
# (expectations are then synced too, see tests/lab/failover.py).
HA_POLL_SECS=${FTPCT_LAB_HA_POLL_SECS:-1}

ha_ns() { # a|b -> gateway namespace
    case $1 in a) echo "$NS_GW" ;; b) echo "$NS_GW2" ;; *) die "gateway a or b, not '$1'" ;; esac
}
ha_sync_addr() { case $1 in a) echo 203.0.113.1 ;; b) echo 203.0.113.2 ;; esac; }
ha_peer() { case $1 in a) echo b ;; b) echo a ;; esac; }

# port NS IF BRIDGE_PORT BRIDGE: a veth from NS into the switch's bridge.
ha_port() {
    veth "$1" "$2" "$NS_SW" "$3"
    ip -n "$NS_SW" link set "$3" master "$4" up
}

# The conntrackd configuration of gateway a|b (see README, "High
# availability with conntrackd").
conntrackd_conf() {
    local g=$1 root
    root=$(state_get root)
    cat <<EOF
# generated by scripts/lab.sh for gateway $g ($(ha_ns "$g"))
Sync {
    Mode FTFW {
        DisableExternalCache Off
        PurgeTimeout 5
    }
    UDP {
        IPv4_address $(ha_sync_addr "$g")
        IPv4_Destination_Address $(ha_sync_addr "$(ha_peer "$g")")
        Port 3780
        Interface gwsync
        Checksum on
    }
    Options {
        ExpectationSync On
    }
}
General {
    Systemd off
    HashSize 8192
    HashLimit 65536
    LogFile $root/log/conntrackd-$g.log
    Syslog off
    LockFile $root/run/conntrackd-$g.lock
    UNIX {
        Path $root/run/conntrackd-$g.ctl
    }
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    NetlinkEventsReliable On
$( ((HA_POLL_SECS > 0)) && printf '    PollSecs %s\n' "$HA_POLL_SECS")
    Filter From Userspace {
        Protocol Accept {
            TCP
        }
        Address Ignore {
            IPv4_address 127.0.0.1
            IPv6_address ::1
            IPv4_address 203.0.113.1
            IPv4_address 203.0.113.2
        }
    }
}
EOF
}

# ctd a|b ARGS...: a conntrackd client command for that gateway's daemon
# (10 s at most).
ctd() {
    local g=$1; shift
    nsx "$(ha_ns "$g")" timeout 10 conntrackd -C "$(state_get root)/etc/conntrackd-$g.conf" "$@"
}

start_conntrackd() { # a|b
    local g=$1 root
    root=$(state_get root)
    command -v conntrackd >/dev/null || die "conntrackd missing: run scripts/install-deps.sh"
    mkdir -p "$root/run"
    conntrackd_conf "$g" >"$root/etc/conntrackd-$g.conf"
    setsid ip netns exec "$(ha_ns "$g")" conntrackd -C "$root/etc/conntrackd-$g.conf" \
        </dev/null >>"$root/log/conntrackd-$g.out" 2>&1 9<&- &
    state_set "conntrackd-$g.pid" "$!"
    wait_for "$WAIT_TENTHS" ctd "$g" -s || {
        tail -n 5 "$root/log/conntrackd-$g".* >&2 2>/dev/null || true
        die "conntrackd on gateway $g did not start"
    }
}

# vips add|del a|b
ha_vips() {
    local op=$1 ns vip dev v4 v6
    ns=$(ha_ns "$2")
    for vip in "${HA_VIPS[@]}"; do
        read -r dev v4 v6 <<<"$vip"
        if [[ $op == add ]]; then
            ip -n "$ns" addr add "$v4" dev "$dev"
            ip -n "$ns" -6 addr add "$v6" dev "$dev" nodad
        else
            ip -n "$ns" addr del "$v4" dev "$dev" 2>/dev/null || true
            ip -n "$ns" -6 addr del "$v6" dev "$dev" 2>/dev/null || true
        fi
    done
}

# The hosts learn where the addresses are now: a gratuitous ARP from the
# gateway that took them, and (IPv6 has no arping) their neighbour entries
# for the addresses flushed.
ha_announce() { # a|b
    local ns vip dev v4 v6 host
    ns=$(ha_ns "$1")
    for vip in "${HA_VIPS[@]}"; do
        read -r dev v4 v6 <<<"$vip"
        nsx "$ns" arping -q -U -c 1 -I "$dev" "${v4%/*}" || true
        for host in "$NS_CLI" "$NS_SRVIN" "$NS_SRV" "$NS_CLIOUT"; do
            ip -n "$host" -6 neigh flush to "${v6%/*}" 2>/dev/null || true
        done
    done
}

build_ha() {
    local ns g nat=${FTPCT_LAB_HA_NAT:-snat} ipt
    [[ $nat == snat || $nat == masquerade ]] || die "FTPCT_LAB_HA_NAT: snat or masquerade, not '$nat'"
    state_set ha-nat "$nat"
    for ns in "$NS_SW" "$NS_GW" "$NS_GW2" "$NS_CLI" "$NS_SRVIN" "$NS_SRV" "$NS_CLIOUT"; do mk_ns "$ns"; done
    ip -n "$NS_SW" link add brin type bridge
    ip -n "$NS_SW" link add brout type bridge
    ip -n "$NS_SW" link set brin up
    ip -n "$NS_SW" link set brout up
    ha_port "$NS_GW" gwin ain brin
    ha_port "$NS_GW" gwout aout brout
    ha_port "$NS_GW2" gwin bin brin
    ha_port "$NS_GW2" gwout bout brout
    ha_port "$NS_CLI" cli0 pcli brin
    ha_port "$NS_SRVIN" srv0 psrvin brin
    ha_port "$NS_SRV" srv0 psrv brout
    ha_port "$NS_CLIOUT" cli0 pcliout brout
    veth "$NS_GW" gwsync "$NS_GW2" gwsync
    for g in a b; do
        ns=$(ha_ns "$g")
        ip -n "$ns" link set gwin up
        ip -n "$ns" link set gwout up
        addr "$ns" gwsync "$(ha_sync_addr "$g")/24" "2001:db8:3::$([[ $g == a ]] && echo 1 || echo 2)/64"
        gw_firewall "$ns"
        if [[ $nat == snat ]]; then
            nsx "$ns" iptables -t nat -A POSTROUTING -o gwout -j SNAT --to-source "$HA_OUT4"
            nsx "$ns" ip6tables -t nat -A POSTROUTING -o gwout -j SNAT --to-source "$HA_OUT6"
        else
            nsx "$ns" iptables -t nat -A POSTROUTING -o gwout -j MASQUERADE
            nsx "$ns" ip6tables -t nat -A POSTROUTING -o gwout -j MASQUERADE
        fi
        nsx "$ns" iptables -t nat -A PREROUTING -i gwout -d "$HA_OUT4" -p tcp --dport 21 \
            -j DNAT --to-destination 192.0.2.20:21
        nsx "$ns" ip6tables -t nat -A PREROUTING -i gwout -d "$HA_OUT6" -p tcp --dport 21 \
            -j DNAT --to-destination '[2001:db8:1::20]:21'
        # The conntrackd peers talk over the sync link (UDP 3780): conntrack
        # has no business with it.
        for ipt in iptables ip6tables; do
            nsx "$ns" "$ipt" -t raw -A PREROUTING -i gwsync -j NOTRACK
            nsx "$ns" "$ipt" -t raw -A OUTPUT -o gwsync -j NOTRACK
        done
    done
    addr "$NS_CLI" cli0 192.0.2.10/24 2001:db8:1::10/64
    addr "$NS_SRVIN" srv0 192.0.2.20/24 2001:db8:1::20/64
    addr "$NS_SRV" srv0 198.51.100.20/24 2001:db8:2::20/64
    addr "$NS_CLIOUT" cli0 198.51.100.10/24 2001:db8:2::10/64
    routes "$NS_CLI" 192.0.2.1 2001:db8:1::1
    routes "$NS_SRVIN" 192.0.2.1 2001:db8:1::1
    routes "$NS_SRV" 198.51.100.1 2001:db8:2::1
    routes "$NS_CLIOUT" 198.51.100.1 2001:db8:2::1
    ha_vips add a
    state_set active a
    start_conntrackd a
    start_conntrackd b
}

# Failover to gateway TO: the addresses leave the other gateway and come to
# TO, then TO does what keepalived's notify_master would do with Debian's
# primary-backup.sh (commit the external cache, flush the caches, resync
# with the kernel, send a bulk update), and the other gateway what its
# notify_backup would do (purge its table soon, ask for a resync).
# Connections are committed before expectations (these need their master).
# conntrackd 1.4.7 then logs "ignoring flush command, commit still in
# progress" for -f (the expectation commit never marks itself done); the
# commit itself is complete, and later commits still work.
cmd_failover() {
    [[ $(state_get topo) == ha ]] || die "failover: the lab is not ha (scripts/lab.sh ha up)"
    local to=$1 from
    ha_ns "$to" >/dev/null
    from=$(ha_peer "$to")
    [[ $(state_get active) != "$to" ]] || die "gateway $to is already active"
    ha_vips del "$from"
    ha_vips add "$to"
    state_set active "$to"
    ha_announce "$to"
    # primary
    ctd "$to" -c ct || die "conntrackd -c ct failed on gateway $to"
    ctd "$to" -c expect || die "conntrackd -c expect failed on gateway $to"
    ctd "$to" -f || log "warning: conntrackd -f failed on gateway $to"
    ctd "$to" -R || log "warning: conntrackd -R failed on gateway $to"
    ctd "$to" -B || log "warning: conntrackd -B failed on gateway $to"
    # backup
    ctd "$from" -t || log "warning: conntrackd -t failed on gateway $from"
    ctd "$from" -n || log "warning: conntrackd -n failed on gateway $from"
    log "failover: gateway $to ($(ha_ns "$to")) is active"
}

# --- commands ------------------------------------------------------------

cmd_up() {
    local topo=${1:-snat} server=${2:-${FTPCT_LAB_SERVER:-vsftpd}}
    [[ " $TOPOLOGIES " == *" $topo "* ]] || die "unknown topology '$topo' (one of: $TOPOLOGIES)"
    [[ $(id -u) -eq 0 ]] || die "run as root"
    if [[ -e $STATE_DIR/topo ]] || ns_exists "$NS_GW"; then
        log "a lab is up ($(state_get topo)): taking it down first"
        cmd_down
    fi
    mkdir -p "$STATE_DIR"
    local root
    root=$(mktemp -d /tmp/ftpct-lab.XXXXXX)
    chmod 0755 "$root"
    state_set root "$root"
    state_set topo "$topo"
    # From here on, any failure takes the half-built lab down again.
    # shellcheck disable=SC2154 # rc is set inside the trap
    trap 'rc=$?; if ((rc)); then log "up failed, cleaning up"; cmd_down || true; fi; exit $rc' EXIT
    trap 'exit 130' INT TERM
    install -d -m 0755 -o root -g root "$root/empty"
    mkdir -p "$root/etc" "$root/log" "$root/cli"
    make_files "$root/ftp"
    build_topology "$topo"
    set_server "$server"
    trap - EXIT INT TERM
    log "up: $topo, server $server, root $root"
    cmd_status
}

cmd_down() {
    local ns pid root
    stop_servers
    # Anything still running inside our namespaces (tcpdump, clients): by id.
    for ns in $(all_ns); do
        ns_exists "$ns" || continue
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    done
    for ns in $(all_ns); do
        ns_exists "$ns" || continue
        wait_for 30 test -z "$(ip netns pids "$ns" 2>/dev/null)" || \
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns"
    done
    root=$(state_get root)
    if [[ -n $root && $root == /tmp/ftpct-lab.* && -d $root ]]; then
        rm -rf -- "$root"
    fi
    rm -rf -- "$STATE_DIR"
    rmdir /run/ftpct-lab 2>/dev/null || true
    log "down"
}

cmd_status() {
    local topo ns
    topo=$(state_get topo)
    if [[ -z $topo ]]; then
        echo "lab: down"
        for ns in $(all_ns); do ns_exists "$ns" && echo "  stray namespace: $ns (run: $0 down)"; done
        return 0
    fi
    topo_addrs "$topo"
    echo "lab: up, topology $topo"
    echo "  root:    $(state_get root) (anonymous root: $(state_get root)/ftp)"
    echo "  server:  $(state_get server) on port 21, reach it at $TARGET4 and [$TARGET6]"
    echo "  helper:  $(helper_state)"
    if [[ $topo == ha ]]; then
        echo "  active:  gateway $(state_get active) ($(ha_ns "$(state_get active)")), NAT $(state_get ha-nat), conntrackd on both"
    fi
    for ns in $(all_ns); do
        ns_exists "$ns" || continue
        printf '  %-11s' "$ns"
        ip -n "$ns" -br addr show | awk '$1 != "lo" { sub(/@.*/, "", $1); printf " %s", $1; for (i = 3; i <= NF; i++) if ($i !~ /^fe80/) printf " %s", $i } END { print "" }'
        local pid
        pid=$(state_get "server-$ns.pid")
        if [[ -n $pid ]]; then
            if [[ $(ps -o stat= -p "$pid" 2>/dev/null) == [^Z]* ]]; then
                echo "              server pid $pid ($(cat "/proc/$pid/comm"))"
            else
                echo "              server pid $pid (gone)"
            fi
        fi
    done
    return 0
}

cmd_env() {
    local topo
    topo=$(state_get topo)
    [[ -n $topo ]] || die "lab is down"
    topo_addrs "$topo"
    cat <<EOF
FTPCT_LAB_TOPO=$topo
FTPCT_LAB_SERVER=$(state_get server)
FTPCT_LAB_ROOT=$(state_get root)
FTPCT_LAB_ANON=$(state_get root)/ftp
FTPCT_LAB_NS_CLI=$NS_CLI
FTPCT_LAB_NS_GW=$NS_GW
FTPCT_LAB_NS_SRV=$NS_SRV
FTPCT_LAB_NS_SRV2=$NS_SRV2
FTPCT_LAB_CLI4=$CLI4
FTPCT_LAB_CLI6=$CLI6
FTPCT_LAB_SRV4=$SRV4
FTPCT_LAB_SRV6=$SRV6
FTPCT_LAB_SRV2_4=$SRV2_4
FTPCT_LAB_SRV2_6=$SRV2_6
FTPCT_LAB_TARGET4=$TARGET4
FTPCT_LAB_TARGET6=$TARGET6
EOF
    [[ $topo == ha ]] || return 0
    cat <<EOF
FTPCT_LAB_NS_GW2=$NS_GW2
FTPCT_LAB_NS_SW=$NS_SW
FTPCT_LAB_NS_SRVIN=$NS_SRVIN
FTPCT_LAB_NS_CLIOUT=$NS_CLIOUT
FTPCT_LAB_SRVIN4=192.0.2.20
FTPCT_LAB_SRVIN6=2001:db8:1::20
FTPCT_LAB_CLIOUT4=198.51.100.10
FTPCT_LAB_CLIOUT6=2001:db8:2::10
FTPCT_LAB_VIP_IN4=192.0.2.1
FTPCT_LAB_VIP_IN6=2001:db8:1::1
FTPCT_LAB_VIP_OUT4=198.51.100.1
FTPCT_LAB_VIP_OUT6=2001:db8:2::1
FTPCT_LAB_HA_ACTIVE=$(state_get active)
FTPCT_LAB_HA_NAT=$(state_get ha-nat)
EOF
}

helper_state() {
    ns_exists "$NS_GW" || { echo "n/a"; return; }
    local v4 v6 ns out=''
    for ns in $(gw_ns_list); do
        v4=off v6=off
        nsx "$ns" iptables -t raw -C PREROUTING -p tcp --dport 21 -j CT --helper ftp 2>/dev/null && v4=on
        nsx "$ns" ip6tables -t raw -C PREROUTING -p tcp --dport 21 -j CT --helper ftp 2>/dev/null && v6=on
        [[ $ns == "$NS_GW" ]] || out+="; $ns: "
        if [[ $v4 == "$v6" ]]; then out+="kernel ftp helper $v4"; else out+="kernel ftp helper v4 $v4, v6 $v6"; fi
    done
    echo "$out"
}

cmd_helper() {
    ns_exists "$NS_GW" || die "lab is down"
    local ipt ns
    case ${1:-status} in
        on)
            for ns in $(gw_ns_list); do
                for ipt in iptables ip6tables; do
                    nsx "$ns" "$ipt" -t raw -C PREROUTING -p tcp --dport 21 -j CT --helper ftp 2>/dev/null ||
                        nsx "$ns" "$ipt" -t raw -A PREROUTING -p tcp --dport 21 -j CT --helper ftp
                done
            done
            ;;
        off)
            for ns in $(gw_ns_list); do
                for ipt in iptables ip6tables; do
                    while nsx "$ns" "$ipt" -t raw -D PREROUTING -p tcp --dport 21 -j CT --helper ftp 2>/dev/null; do :; done
                done
            done
            ;;
        status) ;;
        *) die "helper on|off|status" ;;
    esac
    helper_state
}

cmd_server() {
    [[ -n $(state_get topo) ]] || die "lab is down"
    case ${1:-} in
        vsftpd | pure-ftpd | none) set_server "$1" ;;
        *) die "server vsftpd|pure-ftpd|none" ;;
    esac
    log "server: $1"
}

# Serialise lab commands (lock on this script: nothing left behind).
exec 9<"$0"
flock -w 60 9 || die "another lab.sh is running"

case ${1:-} in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    helper) shift; cmd_helper "$@" ;;
    server) shift; cmd_server "$@" ;;
    ha)
        shift
        case ${1:-} in
            up) shift; cmd_up ha "$@" ;;
            failover) [[ $# -eq 2 ]] || die "ha failover a|b"; cmd_failover "$2" ;;
            conntrackd)
                [[ $# -ge 2 ]] || die "ha conntrackd a|b ARGS..."
                [[ $(state_get topo) == ha ]] || die "the ha lab is down"
                shift; ctd "$@" ;;
            down) cmd_down ;;
            status) cmd_status ;;
            env) cmd_env ;;
            helper) shift; cmd_helper "$@" ;;
            server) shift; cmd_server "$@" ;;
            *) die "ha up|down|status|env|helper|server|failover|conntrackd" ;;
        esac
        ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
        exit 2
        ;;
esac
