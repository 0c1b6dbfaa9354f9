"""The oracle captures of pcaps/lab/: real FTP sessions (curl, lftp,
tests/e2e/ftpc.py on Python's ftplib, against vsftpd and pure-ftpd) through
the lab gateway with the KERNEL's FTP helper (nf_conntrack_ftp + nf_nat_ftp)
attached, captured on both sides of the gateway inside its namespace:

  NAME.inside.pcap    tcpdump -i gwin   (clients in snat/plain/fxp, server in dnat)
  NAME.outside.pcap   tcpdump -i gwout
  NAME.outside2.pcap  tcpdump -i gwout2 (fxp only: the second server)

Full snaplen, -U --immediate-mode (without it packets wait in the TPACKET_V3
ring and a stop can lose them), filter `tcp`; the veths' offloads are off, so
every captured checksum is a real one.

Every transfer must succeed with the helper on (SHA-256 checked), except the
FXP scenarios, which the kernel's helper is expected to refuse: they are
recorded with whatever outcome they have, for ftpct's policy engine.

Then MANIFEST is written: one line per scenario, tab-separated, lines
starting with '#' are comments:
  name topology family mode client server op nat_args ports_kept outcome
nat_args are the arguments the replay tool is given to emulate the gateway
(empty field for plain and fxp); ports_kept says whether the gateway's NAT
kept every source and destination port (yes, no: details, or n/a without
NAT), read from the gateway's conntrack table after the session.

REWRITES is then derived from the captures (the oracle's answers, no root
needed): every PORT, EPRT, 227 and 229 line, as seen on the inside and on the
outside, tab-separated (travel: in->out or out->in, which way the line
crossed):
  name kind travel inside_text outside_text length_delta
paired in order of appearance (outside2 merged into outside for fxp).

Run as root: python3 -m lab record-pcaps [--only REGEX] [--keep] [--out DIR]
             python3 -m lab record-pcaps --analyse [--out DIR]   (REWRITES only)
"""

import glob
import ipaddress
import os
import re
import shutil
import signal
import struct
import sys
import tempfile
import time
from dataclasses import dataclass

from . import clients, servers
from .cases import CHOICES
from .clients import Step
from .gateway import Gateway, Mode
from .proc import Daemon, LabError, wait_until
from .servers import FtpRoot, stream
from .topology import GW_OUT, SPECS, Topology

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO, "pcaps", "lab")
COMMAND = "python3 -m lab record-pcaps"
CLIENT_SECS = 60  # a client run, at most (FXP waits for both servers to time out)
CURL_SECS = 20  # curl's own -m
SETTLE_SECS = 3  # the last FIN/ACKs crossing the gateway, at most
CAPTURE_START_SECS = 5
UPLOAD_LABEL = b"ftpct-lab upload"  # the upload source: 1 KiB, unlike any served file
OPS = ("download", "upload", "list", "multi", "fxp")
TOOLS = ("tcpdump", "conntrack", "ethtool", "curl", "lftp")

# topology family mode client server op; recorded topology by topology,
# server by server, and listed in MANIFEST in this order.
SCENARIO_TABLE = """
snat v4 port curl vsftpd download
snat v4 pasv curl vsftpd download
snat v4 eprt curl vsftpd download
snat v4 epsv curl vsftpd download
snat v4 port curl pure-ftpd upload
snat v4 pasv curl pure-ftpd list
snat v4 eprt curl pure-ftpd upload
snat v4 epsv curl pure-ftpd download
snat v4 port lftp vsftpd list
snat v4 pasv lftp vsftpd download
snat v4 port lftp pure-ftpd upload
snat v4 pasv lftp pure-ftpd list
snat v4 port python vsftpd upload
snat v4 pasv python pure-ftpd download
snat v4 eprt python vsftpd download
snat v4 epsv python pure-ftpd upload
snat v4 port lftp vsftpd multi
snat v4 pasv python vsftpd multi
snat v6 eprt curl vsftpd download
snat v6 epsv curl pure-ftpd download
snat v6 eprt lftp pure-ftpd upload
snat v6 epsv lftp vsftpd list
snat v6 eprt python vsftpd list
snat v6 eprt python pure-ftpd multi
dnat v4 pasv curl vsftpd download
dnat v4 epsv curl vsftpd download
dnat v4 port curl vsftpd download
dnat v4 pasv lftp pure-ftpd upload
dnat v4 port python pure-ftpd list
dnat v4 pasv python vsftpd multi
dnat v6 epsv curl vsftpd download
dnat v6 eprt curl pure-ftpd download
dnat v6 eprt python vsftpd upload
plain v4 port curl vsftpd download
plain v4 pasv python pure-ftpd download
fxp v4 fxp python vsftpd fxp
fxp v4 fxp python pure-ftpd fxp
fxp v6 fxp python vsftpd fxp
"""

MANIFEST_HEADER = (
    f"# ftpct lab captures, recorded by `{COMMAND}` with the kernel's FTP helper on.\n"
    "# Files: NAME.inside.pcap (gw interface gwin), NAME.outside.pcap (gwout), NAME.outside2.pcap (gwout2, fxp only).\n"
    "# Columns (tab-separated): name topology family mode client server op nat_args ports_kept outcome\n"
    "# nat_args: replay tool arguments emulating the gateway (empty: no NAT). ports_kept: NAT kept every port.\n")
REWRITES_HEADER = (
    f"# Derived from the captures by `{COMMAND} --analyse`: what the kernel's\n"
    "# nf_nat_ftp did to each PORT/EPRT/227/229 line crossing the gateway.\n"
    "# Columns (tab-separated): name kind travel inside_text outside_text length_delta\n"
    "# travel: in->out (seen on gwin first) or out->in; length_delta: len(outside) - len(inside).\n")


@dataclass(frozen=True)
class Scenario:
    """One recorded session; its attributes are what clients.client_argv
    reads from a case (family, mode, client)."""
    topology: str
    family: str
    mode: str
    client: str
    server: str
    op: str

    def __post_init__(self):
        for column, allowed in {**CHOICES, "op": OPS}.items():
            if getattr(self, column) not in allowed:
                raise LabError(f"scenario {self}: bad {column} (one of: {', '.join(allowed)})")

    @property
    def name(self):
        return "-".join((self.topology, self.family, self.mode, self.client,
                         self.server.replace("-", ""), self.op))

    @property
    def nat_args(self):
        """The replay tool's NAT arguments for what the lab's gateway does
        (read off topology.py): '' without NAT."""
        spec = SPECS[self.topology]
        pick = (lambda side: side.v4) if self.family == "v4" else (lambda side: side.v6)
        if spec.nat == "masquerade":
            inside = ipaddress.ip_interface(pick(spec_link(spec, "cli").host)).network
            return f"--snat {inside}={ipaddress.ip_interface(pick(GW_OUT)).ip}"
        if spec.nat == "dnat":
            private = ipaddress.ip_interface(pick(spec_link(spec, "srv").host)).ip
            return f"--dnat {ipaddress.ip_interface(pick(GW_OUT)).ip}={private}"
        return ""

    @property
    def captures(self):
        """(interface on the gateway, file suffix)."""
        sides = [("gwin", "inside"), ("gwout", "outside")]
        return sides + ([("gwout2", "outside2")] if self.topology == "fxp" else [])

    def steps(self, case_dir, upload_src):
        """The client's session (clients.Step), its files in case_dir."""
        dest = f"upload/up-{self.name}.bin"
        get = lambda name, local: Step("get", local=os.path.join(case_dir, local), remote=name)  # noqa: E731
        return {
            "download": [get("1k.bin", "1k.bin")],
            "upload": [Step("put", local=upload_src, remote=dest)],
            "list": [Step("ls", local=os.path.join(case_dir, "list"))],
            "multi": [get("1k.bin", "1k.bin"), get("empty.bin", "empty.bin"), get("1k.bin", "1k-again.bin")],
            "fxp": [Step("fxp", local="1k.bin", remote=dest)],
        }[self.op]


def spec_link(spec, role):
    return next(link for link in spec.links if link.role == role)


SCENARIOS = tuple(Scenario(*line.split()) for line in SCENARIO_TABLE.strip().splitlines())


# --- the gateway's conntrack table -------------------------------------------

def conntrack_tcp(topology):
    """The gateway's TCP connections, both families: conntrack -L lines."""
    lines = []
    for family in ("ipv4", "ipv6"):
        lines += topology.gw("conntrack", "-L", "-f", family, "-p", "tcp", check=False).stdout.splitlines()
    return [line for line in lines if line.strip()]


def busy(topology):
    """A connection through the gateway not yet closed (TIME_WAIT, CLOSE)."""
    return any(not re.search(r" (TIME_WAIT|CLOSE) ", line) for line in conntrack_tcp(topology))


def settle(topology):
    """Lets the last FIN/ACKs cross the gateway (bounded): a connection
    still open afterwards is recorded as it is."""
    try:
        wait_until("connections closed in the gateway", lambda: not busy(topology), timeout=SETTLE_SECS)
    except LabError:
        pass
    time.sleep(0.2)


def ports_kept(topology):
    """'yes' when the NAT kept every source and destination port (the
    reply tuple mirrors the original), 'no: ...' with those it changed,
    'unknown' without connections, 'n/a' without NAT."""
    if topology.spec.nat is None:
        return "n/a"
    entries = conntrack_tcp(topology)
    changed = []
    for line in entries:
        ports = re.findall(r"\b[sd]port=(\d+)", line)  # orig sport dport, reply sport dport
        if len(ports) >= 4 and (ports[0] != ports[3] or ports[1] != ports[2]):
            changed.append(f"{ports[0]}->{ports[3]}/{ports[1]}->{ports[2]}")
    if not entries:
        return "unknown"
    return "no: " + " ".join(changed) if changed else "yes"


# --- capture ------------------------------------------------------------------

class Capture:
    """tcpdump on one interface of the gateway, in its namespace."""

    def __init__(self, topology, iface, path, log):
        argv = ["tcpdump", "-i", iface, "-s", "0", "-U", "--immediate-mode", "-n", "-w", path, "tcp"]
        self.daemon = Daemon(f"tcpdump on {iface}", argv, topology.gw_ns, log)

    def start(self):
        self.daemon.start().await_output("listening on", CAPTURE_START_SECS)
        return self

    def stop(self):
        self.daemon.stop()  # SIGTERM: tcpdump closes its file


# --- the recording ------------------------------------------------------------

class Recorder:
    """The lab (one topology, one server, the kernel's helper) and the
    scenarios recorded in it, into out."""

    def __init__(self, prefix, out, workdir):
        self.prefix = prefix
        self.out = out
        self.workdir = workdir
        self.files = FtpRoot(os.path.join(workdir, "root")).build()
        self.upload_src = os.path.join(workdir, "up-1k.bin")
        with open(self.upload_src, "wb") as f:
            f.write(stream(UPLOAD_LABEL, 1024))
        os.chmod(self.upload_src, 0o644)
        self.topology = self.gateway = self.server = None

    def enter(self, scenario):
        """The lab scenario needs: its topology (offloads off, the kernel's
        helper on) and its server."""
        if self.topology is None or self.topology.name != scenario.topology:
            self.leave()
            self.topology = Topology(scenario.topology, self.prefix).build()
            self.topology.offloads_off()
            self.gateway = Gateway(self.topology, None, self.workdir).enter(Mode("kernel"))
        if self.server is None or self.server.kind != scenario.server:
            if self.server is not None:
                self.server.stop()
            self.server = servers.server(scenario.server, self.files, fxp=scenario.topology == "fxp")
            self.server.start([self.topology.ns(role) for role in self.topology.server_roles])
            servers.check_reachable(self.server, self.topology)

    def leave(self):
        if self.server is not None:
            self.server.stop()
        if self.gateway is not None:
            self.gateway.leave()
        if self.topology is not None:
            self.topology.destroy()
        self.topology = self.gateway = self.server = None

    def record(self, scenario):
        """Records one scenario; its MANIFEST line and its outcome."""
        self.enter(scenario)
        case_dir = os.path.join(self.workdir, scenario.name)
        os.makedirs(case_dir, mode=0o755, exist_ok=True)
        os.chmod(case_dir, 0o755)
        for old in glob.glob(os.path.join(self.out, glob.escape(scenario.name) + ".*.pcap")):
            os.unlink(old)
        self.topology.flush_conntrack()
        steps = scenario.steps(case_dir, self.upload_src)
        transcript = os.path.join(self.workdir, f"{scenario.name}.log")
        captures = []
        try:
            for iface, suffix in scenario.captures:
                path = os.path.join(self.out, f"{scenario.name}.{suffix}.pcap")
                log = os.path.join(self.workdir, f"{scenario.name}.{suffix}.tcpdump")
                captures.append(Capture(self.topology, iface, path, log).start())
            argv = clients.client_argv(scenario, self.topology, steps, CURL_SECS)
            status = clients.run_client(self.topology.cli_ns, argv, CLIENT_SECS, transcript)
            settle(self.topology)
        finally:
            for capture in captures:
                capture.stop()
        kept = ports_kept(self.topology)
        result = outcome(scenario, steps, status, self.files, transcript)
        print(f"record: {scenario.name}: {result} (ports kept: {kept})", file=sys.stderr)
        if result.startswith("FAILED"):
            problems = clients.step_problems(steps, self.files)
            print(f"    problems: {'; '.join(problems) or 'none'}\n" + indent(read(transcript))
                  + "\n" + indent(self.server.output()), file=sys.stderr)
        fields = [scenario.name, scenario.topology, scenario.family, scenario.mode, scenario.client,
                  scenario.server, scenario.op, scenario.nat_args, kept, result]
        return "\t".join(fields), result


def outcome(scenario, steps, status, files, transcript):
    """ok, FAILED (rc N); for FXP transferred, or refused: what each server
    answered last."""
    problems = clients.step_problems(steps, files)
    if scenario.op == "fxp":
        if not problems:
            return "transferred"
        said = re.findall(r"^([AB]: .*?)\s*$", read(transcript), re.M)
        return "refused: " + ("; ".join(said) or f"client exit status {status}")
    return f"FAILED (rc {status})" if status != 0 or problems else "ok"


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def indent(text):
    return "\n".join("    " + line for line in text.splitlines())


def write_manifest(out, lines):
    """MANIFEST in scenario order: the lines recorded now, and for the
    scenarios not recorded now (--only) their line of the old MANIFEST."""
    path = os.path.join(out, "MANIFEST")
    old = {}
    if os.path.exists(path):
        for line in read(path).splitlines():
            if line and not line.startswith("#"):
                old[line.split("\t")[0]] = line
    with open(path + ".new", "w") as f:
        f.write(MANIFEST_HEADER)
        for scenario in SCENARIOS:
            line = lines.get(scenario.name, old.get(scenario.name))
            if line is not None:
                f.write(line + "\n")
    os.replace(path + ".new", path)


def check_tools():
    missing = [tool for tool in TOOLS if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")]
    if missing:
        raise LabError(f"missing: {', '.join(missing)}: run scripts/install-deps.sh")


def record(prefix, out=OUT, only=None, keep=False):
    """Records the scenarios (those whose name matches only), writes
    MANIFEST and REWRITES; the number of failures."""
    selected = [s for s in SCENARIOS if not only or re.search(only, s.name)]
    if not selected:
        raise LabError(f"no scenario matches {only!r}")
    check_tools()
    os.makedirs(out, exist_ok=True)
    if not only:
        for old in glob.glob(os.path.join(out, "*.pcap")):
            os.unlink(old)
    order = {(t, s): i for i, (t, s) in enumerate((t, s) for t in ("snat", "dnat", "plain", "fxp")
                                                    for s in servers.KINDS)}
    selected.sort(key=lambda s: order[s.topology, s.server])  # stable: table order within
    workdir = tempfile.mkdtemp(prefix="ftpct-rec.", dir="/tmp")
    os.chmod(workdir, 0o755)  # the servers' unprivileged processes walk through it
    recorder = Recorder(prefix, out, workdir)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, interrupt)  # as Ctrl-C: the lab is taken down
    lines, failures = {}, 0
    try:
        for scenario in selected:
            lines[scenario.name], result = recorder.record(scenario)
            failures += result.startswith("FAILED")
    finally:
        for sig in handlers:
            signal.signal(sig, signal.SIG_IGN)  # the clean-up runs to its end
        try:
            recorder.leave()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if keep:
                print(f"record: work directory kept: {workdir}", file=sys.stderr)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    write_manifest(out, lines)
    failures += analyse(out)
    size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(out, "*")))
    print(f"record: captures in {out}: {size >> 10} KiB, {failures} failure(s)", file=sys.stderr)
    return failures


def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --- REWRITES: the analysis (no root) -------------------------------------------

ANNOUNCEMENT = re.compile(rb"(?:^|\n)((PORT|EPRT|227|229)[ -][^\r\n]*)")


def tcp_packets(path):
    """(time, src, sport, dst, dport, seq, payload) of each TCP packet of
    a little-endian Ethernet pcap (micro- or nanosecond)."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        raise LabError(f"{path}: not a little-endian pcap")
    scale = 1e9 if magic == 0xA1B23C4D else 1e6
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(frame) < 14:
            continue
        ethertype, ip = struct.unpack("!H", frame[12:14])[0], frame[14:]
        if ethertype == 0x0800:
            proto, src, dst = ip[9], ip[12:16], ip[16:20]
            l4 = ip[(ip[0] & 15) * 4:struct.unpack("!H", ip[2:4])[0]]
        elif ethertype == 0x86DD:
            proto, src, dst = ip[6], ip[8:24], ip[24:40]
            l4 = ip[40:40 + struct.unpack("!H", ip[4:6])[0]]
        else:
            continue
        if proto != 6:
            continue
        sport, dport, seq = struct.unpack("!HHI", l4[:8])
        yield (sec + frac / scale, ipaddress.ip_address(src), sport, ipaddress.ip_address(dst), dport, seq,
               l4[(l4[12] >> 4) * 4:])


def announcements(paths):
    """(time, kind, line) of every PORT/EPRT/227/229 line in the captures
    (those that exist), a retransmitted segment counted once, by time."""
    seen, found = set(), []
    for path in paths:
        if not os.path.exists(path):
            continue
        for ts, src, sport, dst, dport, seq, payload in tcp_packets(path):
            key = (src, sport, dst, dport, seq)
            if not payload or key in seen:
                continue
            seen.add(key)
            for m in ANNOUNCEMENT.finditer(payload):
                found.append((ts, m.group(2).decode(), m.group(1).decode("latin-1")))
    return sorted(found)


def rewrites(name, topology, base):
    """The REWRITES rows of one scenario (captures base.*.pcap), and how
    many lines were seen inside and outside."""
    inside = announcements([base + ".inside.pcap"])
    outside = announcements([base + ".outside.pcap", base + ".outside2.pcap"])
    missing = (0, "-", "-")
    rows = []
    for i in range(max(len(inside), len(outside))):
        a = inside[i] if i < len(inside) else missing
        b = outside[i] if i < len(outside) else missing
        kind = a[1] if a[1] != "-" else b[1]
        delta = str(len(b[2]) - len(a[2])) if "-" not in (a[1], b[1]) else ""
        # Commands go client -> server, replies server -> client; the
        # client is outside only in dnat.
        client_inside = topology != "dnat"
        travel = "in->out" if client_inside == (kind in ("PORT", "EPRT")) else "out->in"
        rows.append("\t".join([name, kind, travel, a[2], b[2], delta]))
    return rows, len(inside), len(outside)


def analyse(out=OUT):
    """REWRITES from the captures MANIFEST lists; the number of scenarios
    whose two sides do not pair up."""
    rows, problems = [], 0
    for line in read(os.path.join(out, "MANIFEST")).splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, topology = line.split("\t")[:2]
        scenario_rows, n_in, n_out = rewrites(name, topology, os.path.join(out, name))
        rows += scenario_rows
        if n_in != n_out:
            problems += 1
            print(f"analyse: {name}: {n_in} lines inside, {n_out} outside", file=sys.stderr)
    with open(os.path.join(out, "REWRITES"), "w") as f:
        f.write(REWRITES_HEADER + "".join(row + "\n" for row in rows))
    print(f"analyse: {len(rows)} lines in REWRITES, {problems} mismatch(es)", file=sys.stderr)
    return problems
