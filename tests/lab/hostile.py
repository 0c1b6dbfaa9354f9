"""The hostile-input suite as data, and one run of a case.

53 attacks on the control channel (14 of them over IPv6) and 7 legitimate
transfers shaped back to back, each under ftpct and under the kernel's own
FTP helper (the control). tests/abuse/hostile.py does the hostile part in
the client's namespace; beside each case a legitimate ftplib session
(hostile.py legit) downloads 1k.bin again and again (SHA-256 checked; PORT
through snat, so that ftpct rewrites beside the attack, PASV elsewhere) and
must stay intact. Listeners (hostile.py listen) on every port that must stay
closed answer ABUSE-LISTENER-HIT and log each connection: a hit fails the run.

The cases (what each proves):
  listing-{227,229}-{dnat,snat}-{vsftpd,pure-ftpd}[-v6]
      a file whose NAME holds "\\r\\n227 Entering Passive Mode (server,47227)"
      (or "\\r\\n229 ... (|||47229|)"); STAT on its directory (pure-ftpd:
      STAT DIR/*) puts it inside a multi-line 213 reply on the CONTROL
      channel; the client connects to the port as the line names it.
  fake-reply-cmd-dnat-vsftpd
      the CLIENT sends "227 ..." and "229 ..." lines as commands.
  unsolicited-{227,229}-dnat-fake[-v6]
      the fake server answers SITE with a 227/229 no PASV/EPSV asked for.
  multiline-{227,229}-segs-dnat-fake[-v6]
      the listing trick from the fake server, each line of the 213 reply in
      a TCP segment of its own (a helper reading segments sees the 227/229
      at the start of one).
  bounce-port25-{port,eprt}-snat-vsftpd[-v6], bounce-3rd-{port,eprt}-fxp-vsftpd
      PORT/EPRT naming port 25 of the client itself (probed from the server
      at the gateway's public address) or a third party (203.0.113.30; the
      fxp topology's vsftpd is port_promiscuous).
  portflood-{burst,seq}-snat-vsftpd
      10,000 PORTs in one burst or one by one, then NOOP and a real active
      RETR on the same session; ftpct's RSS may grow by RSS_MAX_GROWTH_KB.
  longline-*, garbage-*, logflood-*
      a 100 KB line, 64 KiB of binary garbage, 1,000 malformed PORT/EPRT
      (227/229 from the server) and 100 overlong lines, from the client or
      the fake server; a NOOP must get its 200, and ftpct may log at most
      LOG_MAX lines for the session (rate-limited). vsftpd and pure-ftpd
      close the session on a 100 KB line: the long-line cases use the fake.
  b2b-*   legitimate transfers whose control traffic leaves in segments
      sent back to back (hostile.py b2b: one send() each, TCP_INFO checks
      each write left as a segment of its own, else the run is `broken`).
  echo-{dnat,snat}-{vsftpd,pure-ftpd,pyftpdlib,proftpd}[-v6]
      pinholes through text the server echoes (hostile.py echo): each
      command whose reply echoes its argument (ECHO_CMDS) with a separator
      and a forged 227/229, PASV/EPSV pipelined behind; then PASV/EPSV
      alone must work (RETR, SHA-256).
  listend-227-dnat-{vsftpd,pure-ftpd,pyftpdlib,proftpd}, listend-229-dnat-vsftpd-v6
      a file NAME that forges the end of the STAT block ("213 End", proftpd
      "212 End") and a 227/229 after it, PASV/EPSV pipelined behind.
  longopen-227-dnat-fake, longopen-229-dnat-fake-v6
      a multi-line reply whose opener is 1,100 bytes (over ftpct's line
      limit), a 227/229 inside the block, PASV/EPSV pipelined behind.

Results: closed (nothing forged opened, the session still works), usable
(the flood and garbage cases: NOOP 200), file-ok (b2b: the transfer worked),
OPEN(n) (n probes passed the gateway), failed, broken (the case could not be
set up). ftpct's expected result is the secure one, with its log showing
what NEED asks (no expectation, a refusal, an expectation, at most one
expectation per real announcement); the kernel's expected result is what it
did on this traffic (RELIABILITY.md), information: only ftpct's runs fail.
"""

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field

from . import clients, e2e
from .proc import in_ns, tail
from .servers import HOSTILE, PYTHON
from .topology import GW_OUT

LOG_MAX = 100  # ftpct log lines one hostile session may cause
RSS_MAX_GROWTH_KB = 65536  # ftpct's RSS growth allowed over a 10,000-PORT flood
P227, P229, PFAKE, PUNSOL, P3RD = 47227, 47229, 47300, 47401, 47360  # listened-on ports
PEND227, PEND229 = 47240, 47241  # the forged end of a listing: its 227 / 229
PLONG = 47410  # the overlong opener's forged 227/229
PECHO, NECHO = 47500, 64  # the echo cases' forged ports: PECHO .. PECHO+NECHO-1
CASE_SECS = 120  # hard limit on one hostile action
LEGIT_SECS = 90  # the legitimate session's own limit (hostile.py legit --max-secs)
FILE = "1k.bin"
MODES = ("ftpct", "ftpct-queue-all", "kernel")  # the gateway modes this suite runs in

# The commands whose reply echoes the client's argument, per server, and the
# separators tried with each (measured: RELIABILITY.md, "Echoed client text").
ECHO_CMDS = {
    "pyftpdlib": "SIZE:lf,cr MDTM:lf,cr TYPE:lf,cr,nul",
    "vsftpd": "MKD:lf,cr,nul PWD:cr,nul",
    "pure-ftpd": "CWD:lf,cr,nul RETR:cr,nul MKD:cr,nul TYPE:nul",
    "proftpd": "SIZE:lf,cr MDTM:lf,nul CWD:cr RETR:lf DELE:cr RNFR:lf STAT:lf,cr MKD:lf,cr",
}
# How each server lists a directory on the control channel (STAT), and the
# code of that multi-line reply (the forged end must carry it).
STAT_FMT = {"vsftpd": "STAT {}", "pure-ftpd": "STAT {}/*", "pyftpdlib": "STAT {}", "proftpd": "STAT {}"}
STAT_CODE = {"vsftpd": 213, "pure-ftpd": 213, "pyftpdlib": 213, "proftpd": 212}
# What ftpct's log must show for the hostile session, per runner.
NEED = {"listing": "refused", "fakecmd": "noexpect", "unsolicited": "refused", "multiline": "refused",
        "bounce": "refused", "portflood": "bounded", "send": "bounded", "srvsend": "bounded", "b2b": "expect",
        "echo": "real", "listend": "real", "longopen": "real"}
# The secure outcome, per NEED, as the table says it.
SECURE = {"refused": "closed", "noexpect": "closed", "bounded": "usable", "expect": "file-ok", "real": "closed"}


@dataclass(frozen=True)
class Case:
    """name, topology, server kind, runner (a run_* below) and its
    arguments, and the kernel's expected result when it is not the secure
    one (what it did on this traffic)."""
    name: str
    topology: str
    server: str
    runner: str
    args: tuple = ()
    kernel: str = None

    @property
    def need(self):
        return NEED[self.runner]

    def expected(self, mode):
        if mode == "kernel" and self.kernel:
            return self.kernel
        return SECURE[self.need]


def c(name, topology, server, runner, *args, kernel=None):
    return Case(name, topology, server, runner, tuple(str(a) for a in args), kernel)


# The kernel's results where they are not the secure one (measured with the
# suite's shell version, 2026-12-07): it reads a reply only at the start of
# a segment (multiline), takes any 227/229 (unsolicited), accepts port 25
# (bounce-port25); the session stalls on the flood of malformed lines
# (logflood); it does not follow a PORT, EPRT or 227 cut across segments
# (b2b-split-*: no transfer). On a loaded machine its session may also
# stall on the burst of PORTs (portflood-burst: its rewrites grow
# full-sized segments past the MTU, IpFragFails): info-differs.
KOPEN = "OPEN"
CASES = (
    c("listing-227-dnat-vsftpd", "dnat", "vsftpd", "listing", 227),
    c("listing-229-dnat-vsftpd", "dnat", "vsftpd", "listing", 229),
    c("listing-229-dnat-vsftpd-v6", "dnat", "vsftpd", "listing", 229, 6),
    c("fake-reply-cmd-dnat-vsftpd", "dnat", "vsftpd", "fakecmd"),
    c("listing-227-dnat-pure-ftpd", "dnat", "pure-ftpd", "listing", 227),
    c("listing-229-dnat-pure-ftpd", "dnat", "pure-ftpd", "listing", 229),
    c("unsolicited-227-dnat-fake", "dnat", "fake", "unsolicited", 227, kernel=KOPEN),
    c("unsolicited-229-dnat-fake", "dnat", "fake", "unsolicited", 229, kernel=KOPEN),
    c("unsolicited-229-dnat-fake-v6", "dnat", "fake", "unsolicited", 229, 6, kernel=KOPEN),
    c("multiline-227-segs-dnat-fake", "dnat", "fake", "multiline", 227, kernel=KOPEN),
    c("multiline-229-segs-dnat-fake", "dnat", "fake", "multiline", 229, kernel=KOPEN),
    c("multiline-229-segs-dnat-fake-v6", "dnat", "fake", "multiline", 229, 6, kernel=KOPEN),
    c("longline-client-dnat-fake", "dnat", "fake", "send", "longline", 100000),
    c("longline-server-dnat-fake", "dnat", "fake", "srvsend", "LONGLINE", 100000),
    c("garbage-server-dnat-fake", "dnat", "fake", "srvsend", "GARBAGE", 65536),
    c("logflood-server-dnat-fake", "dnat", "fake", "srvsend", "FLOOD", 1000, kernel="failed"),
    c("b2b-227-more-dnat-fake", "dnat", "fake", "b2b", "pasv-more"),
    c("b2b-split-227-dnat-fake", "dnat", "fake", "b2b", "split-227", kernel="failed"),
    c("longopen-227-dnat-fake", "dnat", "fake", "longopen", 227),
    c("longopen-229-dnat-fake-v6", "dnat", "fake", "longopen", 229, 6),
    c("echo-dnat-vsftpd", "dnat", "vsftpd", "echo", 4),
    c("echo-dnat-vsftpd-v6", "dnat", "vsftpd", "echo", 6),
    c("listend-227-dnat-vsftpd", "dnat", "vsftpd", "listend", 227),
    c("listend-229-dnat-vsftpd-v6", "dnat", "vsftpd", "listend", 229, 6),
    c("echo-dnat-pure-ftpd", "dnat", "pure-ftpd", "echo", 4),
    c("echo-dnat-pure-ftpd-v6", "dnat", "pure-ftpd", "echo", 6),
    c("listend-227-dnat-pure-ftpd", "dnat", "pure-ftpd", "listend", 227),
    c("echo-dnat-pyftpdlib", "dnat", "pyftpdlib", "echo", 4),
    c("echo-dnat-pyftpdlib-v6", "dnat", "pyftpdlib", "echo", 6),
    c("listend-227-dnat-pyftpdlib", "dnat", "pyftpdlib", "listend", 227),
    c("echo-dnat-proftpd", "dnat", "proftpd", "echo", 4),
    c("echo-dnat-proftpd-v6", "dnat", "proftpd", "echo", 6),
    c("listend-227-dnat-proftpd", "dnat", "proftpd", "listend", 227),
    c("listing-227-snat-vsftpd", "snat", "vsftpd", "listing", 227),
    c("listing-229-snat-vsftpd", "snat", "vsftpd", "listing", 229),
    c("bounce-port25-port-snat-vsftpd", "snat", "vsftpd", "bounce", "port25", "PORT", kernel=KOPEN),
    c("bounce-port25-eprt-snat-vsftpd", "snat", "vsftpd", "bounce", "port25", "EPRT", kernel=KOPEN),
    c("bounce-port25-eprt-snat-vsftpd-v6", "snat", "vsftpd", "bounce", "port25", "EPRT", 6, kernel=KOPEN),
    c("portflood-burst-snat-vsftpd", "snat", "vsftpd", "portflood", "pipelined"),
    c("portflood-seq-snat-vsftpd", "snat", "vsftpd", "portflood", "sequential"),
    c("garbage-client-snat-vsftpd", "snat", "vsftpd", "send", "binary", 65536),
    c("logflood-client-snat-vsftpd", "snat", "vsftpd", "send", "flood", 1000, kernel="failed"),
    c("b2b-split-port-snat-vsftpd", "snat", "vsftpd", "b2b", "split-port-verb", kernel="failed"),
    c("b2b-split-port-addr-snat-vsftpd", "snat", "vsftpd", "b2b", "split-port-addr", kernel="failed"),
    c("b2b-port-retr-one-snat-vsftpd", "snat", "vsftpd", "b2b", "port-retr-one"),
    c("b2b-port-retr-two-snat-vsftpd", "snat", "vsftpd", "b2b", "port-retr-two"),
    c("b2b-split-eprt-snat-vsftpd", "snat", "vsftpd", "b2b", "split-eprt", 6, kernel="failed"),
    c("listing-227-snat-pure-ftpd", "snat", "pure-ftpd", "listing", 227),
    c("listing-229-snat-pure-ftpd", "snat", "pure-ftpd", "listing", 229),
    c("garbage-client-snat-pure-ftpd", "snat", "pure-ftpd", "send", "binary", 65536),
    c("echo-snat-vsftpd", "snat", "vsftpd", "echo", 4),
    c("echo-snat-vsftpd-v6", "snat", "vsftpd", "echo", 6),
    c("echo-snat-pure-ftpd", "snat", "pure-ftpd", "echo", 4),
    c("echo-snat-pure-ftpd-v6", "snat", "pure-ftpd", "echo", 6),
    c("echo-snat-pyftpdlib", "snat", "pyftpdlib", "echo", 4),
    c("echo-snat-pyftpdlib-v6", "snat", "pyftpdlib", "echo", 6),
    c("echo-snat-proftpd", "snat", "proftpd", "echo", 4),
    c("echo-snat-proftpd-v6", "snat", "proftpd", "echo", 6),
    c("bounce-3rd-port-fxp-vsftpd", "fxp", "vsftpd", "bounce", "third", "PORT"),
    c("bounce-3rd-eprt-fxp-vsftpd", "fxp", "vsftpd", "bounce", "third", "EPRT"),
)


def check_cases(cases=CASES):
    """Every name once, every runner known: a case silently dropped or
    shadowed proves nothing."""
    names = [case.name for case in cases]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"cases named twice: {sorted(dup)}"
    for case in cases:
        assert case.runner in NEED, f"{case.name}: unknown runner {case.runner}"
        assert case.server in STAT_FMT or case.server == "fake", f"{case.name}: unknown server {case.server}"


def groups(cases=CASES):
    """(topology, server) in the order they first appear: the lab is built
    once per topology, a server started once per group."""
    return list(dict.fromkeys((case.topology, case.server) for case in cases))


# --- the lab around the cases -------------------------------------------------------


def make_tricks(anon, srv4):
    """The trick files: names with a CR LF and a 227/229 line naming the
    server (srv4, the server's own IPv4 address); and a forged end of the
    STAT block (its code: 213, proftpd 212), then a 227/229."""
    h = srv4.replace(".", ",")

    def f227(port):
        return f"227 Entering Passive Mode ({h},{port >> 8},{port & 255})"

    def f229(port):
        return f"229 Entering Extended Passive Mode (|||{port}|)"

    files = {"trick227": f227(P227), "trick229": f229(P229)}
    for code in (212, 213):
        files[f"trickend{code}-227"] = f"{code} End\r\n{f227(PEND227)}"
        files[f"trickend{code}-229"] = f"{code} End\r\n{f229(PEND229)}"
    for d, forged in files.items():
        path = os.path.join(anon, d)
        shutil.rmtree(path, ignore_errors=True)  # another topology's server address
        os.makedirs(path, mode=0o755)
        os.chmod(path, 0o755)
        open(os.path.join(path, "abuse\r\n" + forged), "w").close()


class Listeners:
    """hostile.py listen on every port that must stay closed: in the
    server's namespace (the forged ports), the client's (its port 25, the
    fake reply's port), and srv2's (the third party of the fxp topology)."""

    def __init__(self, topology, workdir):
        self.topology = topology
        self.workdir = workdir
        self.procs = []
        self.logs = []

    def start(self):
        ports = {"srv": [P227, P229, PFAKE, PUNSOL, PEND227, PEND229, PLONG, *range(PECHO, PECHO + NECHO)],
                 "cli": [25, PFAKE], "srv2": [P3RD]}
        for role, plist in ports.items():
            if role != "cli" and role not in self.topology.server_roles:
                continue
            ns = self.topology.ns(role)
            log = os.path.join(self.workdir, f"listen-{ns}.log")
            argv = [PYTHON, HOSTILE, "listen", "--log", log, "--secs", "3600"]
            for p in plist:
                argv += ["--port", str(p)]
            with open(os.path.join(self.workdir, f"listen-{ns}.out"), "ab") as out:
                self.procs.append(subprocess.Popen(in_ns(ns, argv), stdin=subprocess.DEVNULL, stdout=out,
                                                   stderr=subprocess.STDOUT, start_new_session=True))
            self.logs.append(log)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(os.path.exists(p) for p in self.logs):
            time.sleep(0.1)
        return self

    def hits(self):
        """Connections the listeners accepted so far (all namespaces)."""
        n = 0
        for path in self.logs:
            try:
                with open(path) as f:
                    n += sum(1 for line in f if line.startswith("hit "))
            except FileNotFoundError:
                pass
        return n

    def stop(self):
        for proc in self.procs:
            clients.stop_group(proc)
        self.procs = []


class Lab(e2e.Lab):
    """What a run needs: e2e's (topology, server, gateway, files, work
    directory; no uploads) and the listeners."""

    def __init__(self, topology, server, gateway, files, listeners, workdir):
        super().__init__(topology, server, gateway, files, workdir, uploads=None)
        self.listeners = listeners

    def addrs(self, fam):
        """TARGET (where the client connects), SRV, CLI, PUBLIC (the
        gateway's outside address) of family 4 or 6."""
        family = "v6" if fam == 6 else "v4"
        cli = self.topology.links["cli"].host
        return (self.topology.target(family), self.topology.server_addr(family),
                cli.addr6 if fam == 6 else cli.addr4, GW_OUT.addr6 if fam == 6 else GW_OUT.addr4)

    def frag_fails(self):
        """Packets the gateway could not forward for their size (IpFragFails)."""
        lines = [ln.split() for ln in self.topology.gw("cat", "/proc/net/snmp", check=False).stdout.splitlines()
                 if ln.startswith("Ip:")]
        if len(lines) < 2 or "FragFails" not in lines[0]:
            return 0
        return int(lines[1][lines[0].index("FragFails")])

    def ipset_entries(self):
        out = self.topology.gw("ipset", "list", "ftpct", check=False).stdout
        m = re.search(r"^Number of entries: (\d+)", out, re.M)
        return m.group(1) if m else "?"


def hp(host, port):
    """A probe's HOST:PORT ([v6]:PORT)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- the hostile actions ------------------------------------------------------------
# Each returns the argv of hostile.py's part, in the client's namespace.


def run_listing(lab, outcome, kind, fam="4"):
    target, srv, _, _ = lab.addrs(int(fam))
    cmd = STAT_FMT[lab.server.kind].format(f"trick{kind}")
    port = P227 if kind == "227" else P229
    return ["session", target, "--cmd", cmd, "--want", f"^{kind} Entering", "--probe-announced",
            "--probe", hp(target, port), "--probe", hp(srv, port), "--noop"]


def run_fakecmd(lab, outcome):
    target, srv, cli, _ = lab.addrs(4)
    h = srv.replace(".", ",")
    return ["session", target, "--cmd", f"227 Entering Passive Mode ({h},{PFAKE >> 8},{PFAKE & 255})",
            "--cmd", f"229 Entering Extended Passive Mode (|||{PFAKE}|)",
            "--probe", f"{target}:{PFAKE}", "--probe", f"{srv}:{PFAKE}",
            "--probe", f"{lab.topology.ns('srv')}@{cli}:{PFAKE}", "--noop"]


def run_unsolicited(lab, outcome, kind, fam="4", site="UNSOL"):
    target = lab.addrs(int(fam))[0]
    return ["session", target, "--cmd", f"SITE {site}{kind} {PUNSOL}", "--want", f"^{kind} Entering",
            "--probe-announced", "--probe", hp(target, PUNSOL), "--noop"]


def run_multiline(lab, outcome, kind, fam="4"):
    """The listing trick from the fake server: each line of the 213 reply
    in a TCP segment of its own (what a helper reading segments sees)."""
    return run_unsolicited(lab, outcome, kind, fam, site="MULTI")


def run_bounce(lab, outcome, where, verb, fam="4"):
    fam = int(fam)
    target, _, cli, public = lab.addrs(fam)
    srv_ns = lab.topology.ns("srv")
    if where == "port25":
        # The data connection would come from the server to the gateway's
        # public address (SNAT), mapped to the client's port 25.
        host, port = cli, 25
        probe = f"{srv_ns}@{hp(public, 25)}"
    else:
        host, port = lab.topology.server_addr("v4", "srv2"), P3RD
        probe = f"{srv_ns}@{host}:{port}"
    if verb == "PORT":
        cmd = f"PORT {host.replace('.', ',')},{port >> 8},{port & 255}"
    else:
        cmd = f"EPRT |{2 if fam == 6 else 1}|{host}|{port}|"
    return ["session", target, "--cmd", cmd, "--probe", probe, "--probe", f"{srv_ns}@{hp(host, port)}", "--noop"]


def run_portflood(lab, outcome, how):
    target, _, cli, _ = lab.addrs(4)
    base = 10000 if how == "sequential" else 20000  # distinct ports: no state shared with the burst
    outcome.rss_before = rss_kb(lab.gateway)
    return ["portflood", target, "--addr", cli, "--count", "10000", f"--{how}", "--port-base", str(base),
            "--file", FILE, "--sha", lab.files.served_sha(FILE), "--timeout", "10"]


def run_send(lab, outcome, payload, size):
    return ["send", lab.addrs(4)[0], "--payload", payload, "--size", size, "--timeout", "10"]


def run_srvsend(lab, outcome, what, n):
    return ["session", lab.addrs(4)[0], "--cmd", f"SITE {what} {n}", "--until", "^200 abuse-done", "--noop",
            "--timeout", "10"]


def run_b2b(lab, outcome, shape, fam="4"):
    """A legitimate transfer, its control traffic in segments back to back."""
    return ["b2b", lab.addrs(int(fam))[0], "--shape", shape, "--file", FILE, "--sha",
            lab.files.served_sha(FILE), "--timeout", "10"]


def echo_session(lab, fam, *args):
    """Pinholes through text the server echoes: one session, each attempt
    with a forged port of its own, PASV/EPSV pipelined behind."""
    target, srv, _, _ = lab.addrs(fam)
    return ["echo", target, "--server-addr", srv, "--port-base", str(PECHO), "--max-attempts", str(NECHO),
            "--probe-host", target, "--probe-host", srv, "--file", FILE, "--sha", lab.files.served_sha(FILE),
            *args]


def run_echo(lab, outcome, fam="4"):
    """Every echoing command of the server (ECHO_CMDS) with each of its separators."""
    kinds = "229" if fam == "6" else "227,229"  # PASV is IPv4's
    args = ["--kinds", kinds]
    for spec in ECHO_CMDS[lab.server.kind].split():
        args += ["--echo", spec]
    return echo_session(lab, int(fam), *args)


def run_listend(lab, outcome, kind, fam="4"):
    """STAT on the directory whose file name forges the end of the
    listing's block, then a 227/229 (make_tricks)."""
    port = PEND227 if kind == "227" else PEND229
    what = STAT_FMT[lab.server.kind].format(f"trickend{STAT_CODE[lab.server.kind]}-{kind}")
    return echo_session(lab, int(fam), "--raw", f"{kind}:{port}:{what}")


def run_longopen(lab, outcome, kind, fam="4"):
    """The fake server's overlong multi-line opener with a 227/229 inside."""
    return echo_session(lab, int(fam), "--raw", f"{kind}:{PLONG}:SITE LONGOPEN{kind} {PLONG}")


RUNNERS = {name[4:]: fn for name, fn in globals().items() if name.startswith("run_")}


def rss_kb(gateway):
    """ftpct's resident memory in kB (0 without ftpct): `ip netns exec`
    execs it, so the daemon's pid is ftpct's."""
    if gateway.ftpct is None or not gateway.ftpct.alive():
        return 0
    try:
        with open(f"/proc/{gateway.ftpct.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


# --- the legitimate session beside each case -----------------------------------------


class Legit:
    """hostile.py legit: RETR 1k.bin again and again until told to stop,
    then once more; each copy's SHA-256 checked."""

    def __init__(self, lab, case_dir):
        self.lab = lab
        self.ready = os.path.join(case_dir, "legit.ready")
        self.stop_file = os.path.join(case_dir, "legit.stop")
        self.log = os.path.join(case_dir, "legit.log")
        self.proc = None

    def start(self):
        """True once the first transfer worked (within 10 s)."""
        mode = "port" if self.lab.topology.name == "snat" else "pasv"
        argv = [PYTHON, HOSTILE, "legit", self.lab.addrs(4)[0], "--mode", mode, "--file", FILE,
                "--sha", self.lab.files.served_sha(FILE), "--ready", self.ready, "--stop", self.stop_file,
                "--max-secs", str(LEGIT_SECS)]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(in_ns(self.lab.topology.cli_ns, argv), stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(100):
            if os.path.exists(self.ready):
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        return False

    def finish(self):
        """(ok, what it said)."""
        open(self.stop_file, "w").close()
        try:
            rc = self.proc.wait(LEGIT_SECS + 10)
        except subprocess.TimeoutExpired:
            rc = 124
        clients.stop_group(self.proc)
        text = tail(self.log, 50)
        said = [ln for ln in text.splitlines() if ln.startswith("legit:")]
        if rc == 0 and said and "SHA-256 ok" in said[-1]:
            return True, said[-1][len("legit: "):]
        return False, f"legit session failed (exit {rc}): " + " ".join(text.splitlines()[-2:])


# --- one run ------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    mode: str
    expected: str
    result: str = "failed"
    secs: float = 0.0
    problems: list = field(default_factory=list)
    details: list = field(default_factory=list)
    transcript: str = ""
    ftpct_log: str = ""  # ftpct's first lines for the hostile session
    ftpct_tail: str = ""  # the end of ftpct's whole log during the run
    legit_log: str = ""
    server_output: str = ""
    counters: str = ""
    rss_before: int = 0

    @property
    def name(self):
        return self.case.name

    @property
    def is_control(self):
        return not self.mode.startswith("ftpct")

    @property
    def as_expected(self):
        """The result expected of the mode; when that is the secure one, no
        problem either (a listener hit, the legitimate session broken,
        ftpct's log)."""
        kind = self.result.split("(")[0]
        if kind != self.expected:
            return False
        return not self.problems or self.expected not in SECURE.values()

    @property
    def verdict(self):
        if self.is_control:
            return "info-ok" if self.as_expected else "info-differs"
        return "ok" if self.as_expected else "MISMATCH"

    def report(self):
        parts = [f"{self.name} under {self.mode}: expected {self.expected}, got {self.result}",
                 "problems: " + ("; ".join(self.problems) or "none"),
                 "details: " + "; ".join(self.details),
                 "--- hostile.py's transcript (last 40 lines):", indent(self.transcript, 40)]
        if self.ftpct_log:
            parts += ["--- ftpct's log for the hostile session (first 10 lines):",
                      indent(self.ftpct_log, 10)]
        if self.ftpct_tail:
            parts += ["--- ftpct's log during the run (last 15 lines):", indent(self.ftpct_tail, 15)]
        parts += ["--- the legitimate session (last 5 lines):", indent(self.legit_log, 5),
                  "--- the server's output:", self.server_output]
        if self.counters:
            parts += ["--- the gateway's counters:", self.counters]
        return "\n".join(parts)


def indent(text, lines):
    return "\n".join("  | " + line[:300] for line in text.splitlines()[-lines:])


def kv(key, text):
    """The last value of KEY=VALUE in text ('' when none)."""
    found = re.findall(r"[: ]" + re.escape(key) + r"=(\S*)", text)
    return found[-1] if found else ""


def flow_of(text):
    """The hostile session's client address:port, as in ftpct's flow= field."""
    m = re.search(r"^control (\S+) -> ", text, re.M)
    return m.group(1) if m else ""


def forged_expects(lines, text):
    """ftpct's expectations (lines: for the session) on a port that the
    transcript's `forged ports:` line lists."""
    m = re.search(r"^forged ports: (\S+)", text, re.M)
    if not m:
        return 0
    ports = set(m.group(1).split(","))
    n = 0
    for line in lines:
        if 'event="expect"' in line:
            p = re.search(r" expect \S+ -> \S+:(\d+) ", line)
            n += bool(p and p.group(1) in ports)
    return n


def run(lab, case):
    mode = lab.gateway.mode.kind
    outcome = Outcome(case, mode, case.expected("kernel" if mode == "kernel" else "ftpct"))
    case_dir = os.path.join(lab.workdir, "cases", f"{case.name}.{mode}")
    os.makedirs(case_dir, exist_ok=True)
    lab.topology.flush_conntrack()
    lab.topology.zero_counters()
    offset = lab.gateway.log_offset()
    hits0, frag0 = lab.listeners.hits(), lab.frag_fails()
    problems, details = outcome.problems, outcome.details
    legit = Legit(lab, case_dir)
    if not legit.start():
        problems.append("legit session did not start")
    started = time.monotonic()
    argv = [PYTHON, "-u", HOSTILE, *RUNNERS[case.runner](lab, outcome, *case.args)]
    transcript = os.path.join(case_dir, "hostile.log")
    rc = clients.run_client(lab.topology.cli_ns, argv, CASE_SECS, transcript)
    legit_ok, legit_why = legit.finish()
    outcome.secs = time.monotonic() - started
    outcome.legit_log = tail(legit.log, 20)
    if not legit_ok:
        problems.append(legit_why)
    with open(transcript, errors="replace") as f:
        text = outcome.transcript = f.read()
    flow = flow_of(text)
    hits, frag = lab.listeners.hits() - hits0, lab.frag_fails() - frag0
    if frag:
        details.append(f"the gateway dropped {frag} packet(s) too big for the next hop (IpFragFails, gateway-wide)")
    if hits:
        problems.append(f"the listeners behind the gateway were reached {hits} time(s)")
    if case.runner == "portflood" and lab.gateway.ftpct is not None:
        after = rss_kb(lab.gateway)
        details.append(f"ftpct RSS {outcome.rss_before} kB -> {after} kB; ipset entries {lab.ipset_entries()}")
        if after - outcome.rss_before > RSS_MAX_GROWTH_KB:
            problems.append(f"RSS grew by {after - outcome.rss_before} kB")
    opened = kv("opened", text)
    if rc == 3:
        outcome.result = "broken"
        detail = [ln for ln in text.splitlines() if ln.startswith("detail")]
        problems.append("set-up failed: " + (detail[-1] if detail else ""))
    elif opened and opened != "0":
        outcome.result = f"OPEN({opened})"
    elif rc != 0:
        outcome.result = "failed"
        said = [ln for ln in text.splitlines() if re.match(r"^(detail|noop|summary)", ln)]
        problems.append(f"hostile.py exit {rc}" + (" (timed out)" if rc == 124 else "") + ": "
                        + " ".join(said[-3:]))
    else:
        outcome.result = SECURE[case.need]
    if lab.gateway.mode.runs_ftpct:
        check_ftpct(outcome, case, lab.gateway, offset, flow, text)
    probes = " ".join(f"{m.group(1)}={m.group(2)}" for m in re.finditer(r"^probe (\S+) (\S+)", text, re.M))
    if probes:
        details.insert(0, f"probes: {probes}")
    details += [ln.replace("\t", " ") for ln in text.splitlines() if re.match(r"^(noop|detail|received)", ln)][:4]
    if case.runner in ("echo", "listend", "longopen"):
        details += [ln[:300] for ln in text.splitlines()
                    if ln.startswith("attempt ") and ("RETR ok" not in ln or "open(" in ln)][:3]
    details.append(f"legit: {legit_why}")
    outcome.server_output = lab.server.output(5)
    if not outcome.as_expected:
        outcome.counters = lab.gateway.counters()
    return outcome


def check_ftpct(outcome, case, gateway, offset, flow, text):
    """ftpct's log lines for the hostile session (flow) show what the
    case's NEED asks; at most LOG_MAX of them for the flood cases; ftpct
    still runs."""
    problems, details = outcome.problems, outcome.details
    time.sleep(0.2)  # the last decisions reach the log
    log = gateway.log_since(offset)
    outcome.ftpct_tail = "\n".join(log.splitlines()[-15:])
    mine = [ln for ln in log.splitlines() if flow and f"flow={flow} ->" in ln]
    outcome.ftpct_log = "\n".join(mine[:10])
    count = {ev: sum(1 for ln in mine if f'event="{ev}"' in ln) for ev in ("expect", "refused", "rewrite")}
    held = sum(1 for ln in log.splitlines() if "held back" in ln)
    details.append(f"ftpct log for the session: {len(mine)} line(s), expect={count['expect']} "
                   f"refused={count['refused']} rewrite={count['rewrite']} ({held} 'held back' line(s) in the "
                   "case's log)")
    why = {}
    for ln in mine:
        m = re.search(r" refused \[([a-z0-9-]*)\]", ln)
        if m:
            why[m.group(1)] = why.get(m.group(1), 0) + 1
    if why:
        details.append("refusals: " + ", ".join(f"{k} x{v}" for k, v in sorted(why.items())))
    need = case.need
    if need == "noexpect" and count["expect"]:
        problems.append(f"ftpct logged {count['expect']} expectation(s) for it")
    elif need == "refused":
        if not count["refused"]:
            problems.append("ftpct logged no refusal")
        if count["expect"]:
            problems.append(f"ftpct logged {count['expect']} expectation(s)")
    elif need == "expect":
        if not count["expect"]:
            problems.append("ftpct logged no expectation for it")
        if count["refused"]:
            problems.append(f"ftpct logged {count['refused']} refusal(s) for it")
    elif need == "real":  # one expectation per real announcement at most, none for a forged port
        reals = int(kv("real", text) or 0) + int(kv("alone", text) or 0)
        if count["expect"] > reals:
            problems.append(f"ftpct logged {count['expect']} expectation(s) for {reals} real announcement(s)")
        forged = forged_expects(mine, text)
        if forged:
            problems.append(f"ftpct logged {forged} expectation(s) for a forged port")
    if case.runner in ("send", "srvsend") and len(mine) > LOG_MAX:
        problems.append(f"ftpct logged {len(mine)} lines for one session (max {LOG_MAX}: not rate-limited)")
    if not gateway.ftpct.alive():
        problems.append("ftpct is no longer running (crash?): " + " ".join(gateway.ftpct.output(3).splitlines()))


def table(outcomes, secs):
    """The summary: one line a run, and the counts."""
    rule = "-" * 130
    w = max(len(o.mode) for o in outcomes)  # ftpct-queue-all
    lines = [f"{'case':<34} {'mode':<{w}} {'expected':<9} {'result':<9} {'verdict':<12} {'secs':>5}  details", rule]
    for o in outcomes:
        lines.append(f"{o.name:<34} {o.mode:<{w}} {o.expected:<9} {o.result:<9} {o.verdict:<12} {o.secs:5.1f}  "
                     + ("PROBLEMS: " + "; ".join(o.problems) + "; " if o.problems else "") + "; ".join(o.details))
    bad = sum(1 for o in outcomes if o.verdict == "MISMATCH")
    differs = sum(1 for o in outcomes if o.verdict == "info-differs")
    lines += [rule, f"hostile: {len(outcomes)} run(s), {bad} ftpct mismatch(es), {differs} control run(s) "
                    f"differing from the kernel's expected result, {secs:.0f} s"]
    return lines
