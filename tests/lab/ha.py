"""The failover lab (topology ha): two
gateways, A (namespace PREFIX gw) and B (PREFIX gw2), one active at a time,
on two bridges (brin, brout) in a switch namespace (PREFIX sw).

The active gateway holds the virtual addresses 192.0.2.1/24 2001:db8:1::1/64
(gwin) and 198.51.100.1/24 2001:db8:2::1/64 (gwout); the gateways have no
other address there. Sync link gwsync: A 203.0.113.1/24, B 203.0.113.2/24.
  inside   cli    192.0.2.10     2001:db8:1::10  a client, SNAT to the VIP
           srvin  192.0.2.20     2001:db8:1::20  a server, DNAT from the VIP
  outside  srv    198.51.100.20  2001:db8:2::20  a server
           cliout 198.51.100.10  2001:db8:2::10  a client of the DNAT server
Both gateways: the filter of topology.py, SNAT --to-source the outside VIP
out of gwout (nat="masquerade": MASQUERADE, which deletes its connections
when the address leaves the gateway, and conntrackd then deletes them on
the peer too), DNAT of port 21 on the outside VIP to srvin, the sync link
untracked, conntrackd on each (conntrackd.py). A starts active.

failover(to) does what keepalived's notify scripts would: the addresses
leave the other gateway and come to `to` (gratuitous ARP; IPv6 has no
arping, so the hosts' neighbour entries for them are flushed), then `to`
commits conntrackd's external cache (connections, then expectations),
flushes, resyncs and sends a bulk update, and the other gateway purges
and asks for a resync. Every step must succeed.
"""

import os

from .conntrackd import Conntrackd
from .proc import LabError, run
from .topology import IPTABLES, Side, make_ns, remove_ns, set_addresses

VIPS = (Side("gwin", "192.0.2.1/24", "2001:db8:1::1/64"), Side("gwout", "198.51.100.1/24", "2001:db8:2::1/64"))
VIP_IN, VIP_OUT = VIPS
SYNC = {"a": Side("gwsync", "203.0.113.1/24", "2001:db8:3::1/64"),
        "b": Side("gwsync", "203.0.113.2/24", "2001:db8:3::2/64")}
# host role -> (its side, the bridge it hangs on, its port's name in the switch)
HOSTS = {
    "cli": (Side("cli0", "192.0.2.10/24", "2001:db8:1::10/64"), "brin", "pcli"),
    "srvin": (Side("srv0", "192.0.2.20/24", "2001:db8:1::20/64"), "brin", "psrvin"),
    "srv": (Side("srv0", "198.51.100.20/24", "2001:db8:2::20/64"), "brout", "psrv"),
    "cliout": (Side("cli0", "198.51.100.10/24", "2001:db8:2::10/64"), "brout", "pcliout"),
}
GATEWAYS = {"a": "gw", "b": "gw2"}  # gateway -> namespace role
PEER = {"a": "b", "b": "a"}


class HaTopology:
    """The failover lab in namespaces prefix + role; conntrackd's files
    under workdir."""

    name = "ha"

    def __init__(self, prefix, workdir, poll_secs=1, nat="snat"):
        if not prefix.startswith("ftpct-"):
            raise LabError(f"namespace prefix {prefix!r} must start with ftpct-")
        if nat not in ("snat", "masquerade"):
            raise LabError(f"NAT of the failover pair: snat or masquerade, not {nat!r}")
        self.nat = nat
        self.prefix = prefix
        self.workdir = workdir
        self.active = None
        self.conntrackd = {g: Conntrackd(g, self.gw_ns(g), SYNC[g].addr4, SYNC[PEER[g]].addr4,
                                         os.path.join(workdir, "conntrackd"), poll_secs)
                           for g in GATEWAYS}

    def ns(self, role):
        return self.prefix + role

    def gw_ns(self, g):
        return self.ns(GATEWAYS[g])

    def namespaces(self):
        return [self.ns(r) for r in ("sw", "gw", "gw2", *HOSTS)]

    def gw(self, g, *argv, check=True, timeout=30):
        return run(argv, ns=self.gw_ns(g), check=check, timeout=timeout)

    # --- building and taking down ---------------------------------------

    def build(self):
        self.destroy()
        try:
            for ns in self.namespaces():
                make_ns(ns)
            sw = self.ns("sw")
            for br in ("brin", "brout"):
                run(["ip", "-n", sw, "link", "add", br, "type", "bridge"])
                run(["ip", "-n", sw, "link", "set", br, "up"])
            for g, letter in (("a", "a"), ("b", "b")):
                self._port(self.gw_ns(g), "gwin", f"{letter}in", "brin")
                self._port(self.gw_ns(g), "gwout", f"{letter}out", "brout")
            for role, (side, bridge, port) in HOSTS.items():
                self._port(self.ns(role), side.iface, port, bridge)
            run(["ip", "link", "add", "gwsync", "netns", self.gw_ns("a"), "type", "veth",
                 "peer", "name", "gwsync", "netns", self.gw_ns("b")])
            for g in GATEWAYS:
                self._gateway(g)
            for role, (side, _, _) in HOSTS.items():
                vip = VIP_IN if side.addr4.startswith("192.0.2.") else VIP_OUT
                set_addresses(self.ns(role), side)
                run(["ip", "-n", self.ns(role), "route", "add", "default", "via", vip.addr4])
                run(["ip", "-n", self.ns(role), "-6", "route", "add", "default", "via", vip.addr6])
            self._vips("add", "a")
            self.active = "a"
            for g in GATEWAYS:
                self.conntrackd[g].start()
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self):
        for ctd in self.conntrackd.values():
            ctd.stop()
        for ns in self.namespaces():
            remove_ns(ns)

    def _port(self, ns, iface, port, bridge):
        sw = self.ns("sw")
        run(["ip", "link", "add", iface, "netns", ns, "type", "veth", "peer", "name", port, "netns", sw])
        run(["ip", "-n", sw, "link", "set", port, "master", bridge, "up"])

    def _gateway(self, g):
        ns = self.gw_ns(g)
        for iface in ("gwin", "gwout"):
            run(["ip", "-n", ns, "link", "set", iface, "up"])
        set_addresses(ns, SYNC[g])
        run(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"], ns=ns)
        for ipt in IPTABLES:
            self.gw(g, ipt, "-P", "FORWARD", "DROP")
            self.gw(g, ipt, "-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
            self.gw(g, ipt, "-A", "FORWARD", "-p", "tcp", "--dport", "21", "-m", "conntrack", "--ctstate", "NEW",
                    "-j", "ACCEPT")
        srvin = HOSTS["srvin"][0]
        for ipt, public, private in (("iptables", VIP_OUT.addr4, f"{srvin.addr4}:21"),
                                     ("ip6tables", VIP_OUT.addr6, f"[{srvin.addr6}]:21")):
            snat = ("SNAT", "--to-source", public) if self.nat == "snat" else ("MASQUERADE",)
            self.gw(g, ipt, "-t", "nat", "-A", "POSTROUTING", "-o", "gwout", "-j", *snat)
            self.gw(g, ipt, "-t", "nat", "-A", "PREROUTING", "-i", "gwout", "-d", public, "-p", "tcp",
                    "--dport", "21", "-j", "DNAT", "--to-destination", private)
            # The conntrackd peers talk over the sync link: conntrack has no business with it.
            self.gw(g, ipt, "-t", "raw", "-A", "PREROUTING", "-i", "gwsync", "-j", "NOTRACK")
            self.gw(g, ipt, "-t", "raw", "-A", "OUTPUT", "-o", "gwsync", "-j", "NOTRACK")

    # --- the failover ----------------------------------------------------

    def _vips(self, op, g):
        ns = self.gw_ns(g)
        for vip in VIPS:
            run(["ip", "-n", ns, "addr", op, vip.v4, "dev", vip.iface], check=op == "add")
            run(["ip", "-n", ns, "-6", "addr", op, vip.v6, "dev", vip.iface, *(["nodad"] if op == "add" else [])],
                check=op == "add")

    def _announce(self, g):
        for vip in VIPS:
            self.gw(g, "arping", "-q", "-U", "-c", "1", "-I", vip.iface, vip.addr4, check=False)
            for role in HOSTS:
                run(["ip", "-n", self.ns(role), "-6", "neigh", "flush", "to", vip.addr6], check=False)

    def failover(self, to):
        """The addresses to gateway `to`; conntrackd's commit there. Raises
        LabError naming the step that failed, with both conntrackd logs."""
        if to == self.active:
            raise LabError(f"gateway {to} is already active")
        frm = PEER[to]
        self._vips("del", frm)
        self._vips("add", to)
        self.active = to
        self._announce(to)
        primary, backup = self.conntrackd[to], self.conntrackd[frm]
        for ctd, args in ((primary, ("-c", "ct")), (primary, ("-c", "expect")), (primary, ("-f",)),
                          (primary, ("-R",)), (primary, ("-B",)), (backup, ("-t",)), (backup, ("-n",))):
            done = ctd.ctl(*args)
            if done.returncode != 0:
                raise LabError(f"failover: conntrackd {' '.join(args)} on gateway {ctd.gateway}: exit status "
                               f"{done.returncode}: {(done.stderr or done.stdout).strip()}\n" + self.logs())

    def logs(self, lines=20):
        return "\n".join(ctd.output(lines) for ctd in self.conntrackd.values())
