"""The lab's topologies: a client, a gateway and FTP servers in network
namespaces, addresses from the documentation ranges only (the failover
pair, `ha`, is ha.py).

  snat   cli  cli0 192.0.2.10/24     2001:db8:1::10/64   via the gateway's gwin
         gw   gwin 192.0.2.1/24 2001:db8:1::1/64, gwout 198.51.100.1/24 2001:db8:2::1/64
              MASQUERADE (v4 and v6) out of gwout
         srv  srv0 198.51.100.20/24  2001:db8:2::20/64   via the gateway's gwout
  plain  as snat, without NAT (a routing firewall)
  fxp    as plain, and a second server behind a third gateway interface, so
         that a server-to-server data connection crosses the gateway:
         gw gwout2 203.0.113.1/24 2001:db8:3::1/64; srv2 srv0 203.0.113.30/24 2001:db8:3::30/64
  dnat   the client outside (198.51.100.10, on gwout), the server inside
         (192.0.2.20, on gwin), published on the gateway's outside address
         for port 21 only: the data ports need a helper.
  dnatport  as dnat, port-translating: public 21 forwarded to the server
         on 2121 (DNAT --to-destination 192.0.2.20:2121; the server's
         namespace redirects 2121 to its daemon's 21, so the gateway sees
         a server on 2121); the filter accepts new connections by their
         original port, 21.
  zone   as snat, every packet of the gateway's interfaces in conntrack
         zone 1 (raw PREROUTING -i IF -j CT --zone 1, as an operator
         would); ftpct runs with --conntrack-zone 1, the kernel's helper is
         attached by the same rule (`zone_args`).

The gateway's filter, both families: FORWARD policy DROP, ESTABLISHED and
RELATED accepted, NEW accepted only to port 21. So every data connection,
active or passive, needs a helper to become RELATED.

Interface names have three letters or more: `ip link` reads short ones as
abbreviated keywords. FTPCT_LAB_OFFLOAD=off turns off checksum and
segmentation offloads on every interface with an address.
"""

import os
from dataclasses import dataclass

from .proc import LabError, run, wait_until


@dataclass(frozen=True)
class Side:
    """One end of a link: an interface and its two addresses (with length)."""
    iface: str
    v4: str
    v6: str

    @property
    def addr4(self):
        return self.v4.split("/")[0]

    @property
    def addr6(self):
        return self.v6.split("/")[0]


@dataclass(frozen=True)
class Link:
    """A veth from the gateway to a host (a role: cli, srv, srv2)."""
    gw: Side
    role: str
    host: Side


GW_IN = Side("gwin", "192.0.2.1/24", "2001:db8:1::1/64")
GW_OUT = Side("gwout", "198.51.100.1/24", "2001:db8:2::1/64")
GW_OUT2 = Side("gwout2", "203.0.113.1/24", "2001:db8:3::1/64")

CLIENT_INSIDE = Link(GW_IN, "cli", Side("cli0", "192.0.2.10/24", "2001:db8:1::10/64"))
SERVER_OUTSIDE = Link(GW_OUT, "srv", Side("srv0", "198.51.100.20/24", "2001:db8:2::20/64"))
SERVER2_OUTSIDE = Link(GW_OUT2, "srv2", Side("srv0", "203.0.113.30/24", "2001:db8:3::30/64"))
CLIENT_OUTSIDE = Link(GW_OUT, "cli", Side("cli0", "198.51.100.10/24", "2001:db8:2::10/64"))
SERVER_INSIDE = Link(GW_IN, "srv", Side("srv0", "192.0.2.20/24", "2001:db8:1::20/64"))


@dataclass(frozen=True)
class Spec:
    """A topology: its links and its NAT (None, masquerade or dnat)."""
    name: str
    links: tuple
    nat: str = None
    zone: int = 0  # the conntrack zone of the gateway's traffic (0: the default)


SPECS = {
    spec.name: spec
    for spec in (
        Spec("snat", (CLIENT_INSIDE, SERVER_OUTSIDE), nat="masquerade"),
        Spec("plain", (CLIENT_INSIDE, SERVER_OUTSIDE)),
        Spec("fxp", (CLIENT_INSIDE, SERVER_OUTSIDE, SERVER2_OUTSIDE)),
        Spec("dnat", (SERVER_INSIDE, CLIENT_OUTSIDE), nat="dnat"),
        Spec("dnatport", (SERVER_INSIDE, CLIENT_OUTSIDE), nat="dnatport"),
        Spec("zone", (CLIENT_INSIDE, SERVER_OUTSIDE), nat="masquerade", zone=1),
    )
}

IPTABLES = ("iptables", "ip6tables")
INSIDE_PORT = 2121  # dnatport: the server's port behind the gateway


class Topology:
    """One topology built in namespaces PREFIX + role (cli, gw, srv, srv2)."""

    def __init__(self, name, prefix):
        if name not in SPECS:
            raise LabError(f"unknown topology {name!r} (one of: {', '.join(SPECS)})")
        if not prefix.startswith("ftpct-"):
            raise LabError(f"namespace prefix {prefix!r} must start with ftpct-")
        self.spec = SPECS[name]
        self.name = name
        self.prefix = prefix
        self.links = {link.role: link for link in self.spec.links}

    # --- what the cases need to know ------------------------------------

    def ns(self, role):
        return self.prefix + role

    @property
    def gw_ns(self):
        return self.ns("gw")

    @property
    def cli_ns(self):
        return self.ns("cli")

    @property
    def server_roles(self):
        return [role for role in self.links if role.startswith("srv")]

    def namespaces(self):
        return [self.ns("gw")] + [self.ns(role) for role in self.links]

    def server_addr(self, family, role="srv"):
        host = self.links[role].host
        return host.addr4 if family == "v4" else host.addr6

    def target(self, family):
        """The address the client dials: the server's own, or under DNAT
        the gateway's outside address."""
        if self.spec.nat in ("dnat", "dnatport"):
            return GW_OUT.addr4 if family == "v4" else GW_OUT.addr6
        return self.server_addr(family)

    @property
    def zone_args(self):
        """What a CT rule of this gateway adds (its zone), and what
        `ftpct run` needs to find the connections there."""
        return ("--zone", str(self.spec.zone)) if self.spec.zone else ()

    def gw(self, *argv, check=True, timeout=30):
        return run(argv, ns=self.gw_ns, check=check, timeout=timeout)

    # --- building and taking down ---------------------------------------

    def build(self):
        """Builds the topology; a half-built one is taken down again."""
        self.destroy()  # what a killed run may have left under our names
        try:
            for ns in self.namespaces():
                make_ns(ns)
            for link in self.spec.links:
                self._connect(link)
            self._filter()
            self._nat()
            self._zone()
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self):
        """Stops what still runs in the namespaces (by id) and removes them."""
        for ns in self.namespaces():
            remove_ns(ns)

    def flush_conntrack(self):
        """The gateway's connections and expectations, both families, gone:
        each case starts from an empty table."""
        for family in ("ipv4", "ipv6"):
            self.gw("conntrack", "-F", "-f", family, check=False)
            self.gw("conntrack", "-F", "expect", "-f", family, check=False)

    def offloads_off(self):
        """Checksum and segmentation offloads off on both ends of every
        veth: a capture then carries real checksums and the segments as
        sent (the recorded captures, tests/lab/record.py)."""
        for link in self.spec.links:
            for ns, side in ((self.gw_ns, link.gw), (self.ns(link.role), link.host)):
                run(["ethtool", "-K", side.iface, "tx", "off", "tso", "off", "gso", "off", "gro", "off"], ns=ns)

    def zero_counters(self):
        """The gateway filter's packet counters from zero: a run's own."""
        for ipt in IPTABLES:
            self.gw(ipt, "-Z", "FORWARD", check=False)

    def _connect(self, link):
        host_ns = self.ns(link.role)
        run(["ip", "link", "add", link.gw.iface, "netns", self.gw_ns, "type", "veth",
             "peer", "name", link.host.iface, "netns", host_ns])
        set_addresses(self.gw_ns, link.gw)
        set_addresses(host_ns, link.host)
        run(["ip", "-n", host_ns, "route", "add", "default", "via", link.gw.addr4])
        run(["ip", "-n", host_ns, "-6", "route", "add", "default", "via", link.gw.addr6])

    def _filter(self):
        run(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"], ns=self.gw_ns)
        for ipt in IPTABLES:
            self.gw(ipt, "-P", "FORWARD", "DROP")
            self.gw(ipt, "-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
            self.gw(ipt, "-A", "FORWARD", "-p", "tcp", "--dport", "21", "-m", "conntrack", "--ctstate", "NEW",
                    "-j", "ACCEPT")

    def _nat(self):
        if self.spec.nat == "masquerade":
            for ipt in IPTABLES:
                self.gw(ipt, "-t", "nat", "-A", "POSTROUTING", "-o", GW_OUT.iface, "-j", "MASQUERADE")
        elif self.spec.nat in ("dnat", "dnatport"):
            inside = self.links["srv"].host
            port = INSIDE_PORT if self.spec.nat == "dnatport" else 21
            for ipt, public, private in (("iptables", GW_OUT.addr4, f"{inside.addr4}:{port}"),
                                         ("ip6tables", GW_OUT.addr6, f"[{inside.addr6}]:{port}")):
                self.gw(ipt, "-t", "nat", "-A", "PREROUTING", "-i", GW_OUT.iface, "-d", public, "-p", "tcp",
                        "--dport", "21", "-j", "DNAT", "--to-destination", private)
                if port != 21:
                    # New control connections by their original port; the
                    # server's namespace hands port 2121 to its daemon's 21.
                    self.gw(ipt, "-A", "FORWARD", "-p", "tcp", "-m", "conntrack", "--ctstate", "NEW",
                            "--ctorigdstport", "21", "-j", "ACCEPT")
                    run([ipt, "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", str(port), "-j", "REDIRECT",
                         "--to-ports", "21"], ns=self.ns("srv"))

    def _zone(self):
        """Every packet the gateway receives in the topology's zone, before
        anything else of the raw table sees it (both directions of a
        connection must be in one zone)."""
        if not self.spec.zone:
            return
        for ipt in IPTABLES:
            for link in self.spec.links:
                self.gw(ipt, "-t", "raw", "-A", "PREROUTING", "-i", link.gw.iface, "-j", "CT", *self.zone_args)


def ns_exists(ns):
    return os.path.exists(f"/run/netns/{ns}")


def make_ns(ns):
    run(["ip", "netns", "add", ns])
    # No duplicate address detection: addresses are usable at once.
    run(["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
         "net.ipv6.conf.all.dad_transmits=0", "net.ipv6.conf.default.dad_transmits=0"], ns=ns)
    run(["ip", "-n", ns, "link", "set", "lo", "up"])


def set_addresses(ns, side):
    run(["ip", "-n", ns, "addr", "add", side.v4, "dev", side.iface])
    run(["ip", "-n", ns, "-6", "addr", "add", side.v6, "dev", side.iface, "nodad"])
    run(["ip", "-n", ns, "link", "set", side.iface, "up"])
    if os.environ.get("FTPCT_LAB_OFFLOAD") == "off":  # captures then carry real checksums
        run(["ethtool", "-K", side.iface, "tx", "off", "tso", "off", "gso", "off", "gro", "off"], ns=ns,
            check=False)


def ns_pids(ns):
    done = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def remove_ns(ns):
    """Removes namespace ns, first stopping the processes still in it (ours:
    the namespace's name is the lab's), SIGTERM then SIGKILL after 3 s."""
    if not ns_exists(ns):
        return
    for sig in ("TERM", "KILL"):
        pids = ns_pids(ns)
        if not pids:
            break
        run(["kill", f"-{sig}", *map(str, pids)], check=False)
        try:
            wait_until(f"processes of {ns} gone", lambda: not ns_pids(ns), timeout=3)
        except LabError:
            continue
    run(["ip", "netns", "del", ns])
