"""The soak: sustained mixed FTP load through the lab's gateway, under ftpct
and, as the control, under the kernel's own FTP helper, on the same load in
the same run (test_soak.py runs it; the statistics and the verdict are here).

Rows: for each topology (snat, dnat), for each gateway mode (ftpct: `ftpct
rules --apply`, `ftpct run --state-interval 5`; kernel: the kernel's helper
attached), a fresh lab (so that no socket or conntrack entry of one row
meets the next), the gateway mode set up, the load, the checks, the lab
down. A row of N minutes takes N minutes plus about a minute.

The load, the same in every row: ftpload sessions (login, one RETR, SHA-256
and size checked, QUIT, again after --soak-pause seconds) over IPv4 (PASV,
EPSV, PORT, EPRT in turn) and IPv6 (EPSV, EPRT) on files of 0 B, 1 KiB,
64 KiB, 1 MiB and 10 MiB (most clients on the small ones; the soak-*.bin
files are written into the lab's anonymous root), half the client threads
per family, plus curl clients fetching 0 B, 1 KiB, 64 KiB and 1 MiB in one
session each (PORT, EPRT, PASV with the 227 address, EPSV), every file's
SHA-256 checked. The servers (vsftpd, pure-ftpd) share a row's load time,
switched while the gateway and ftpct keep running; --soak-rotate-servers
gives each topology one server in turn instead (a switch costs a tail of
sessions stuck in their 5 s timeouts, too much for the short soak). vsftpd
runs with the lab's settings (connect_from_port_20=YES: active data
connections come from port 20, so tuples repeat) plus max_clients=0 and
max_per_ip=0 (all clients share one address, and vsftpd 3.0.3 refuses the
51st whatever its manual says); pure-ftpd with -c raised above the client
count (its default is 50).

The rate: 200 clients with 2 s between a client's sessions keep ~200
sessions open at once at ~70-100 new sessions a second, which leaves a
2-CPU machine some headroom. Flat out (--soak-pause 0) the clients, the
servers and the gateway saturate both CPUs and vsftpd stops accepting for
seconds, in both modes, more often with ftpct, whose user-space work takes
CPU from the servers: that measures the machine, not the gateway (capacity
is the benchmarks' subject).

The gateway's conntrack settings stay at the kernel's defaults: nothing
here writes a sysctl in the gateway (a shortened TIME_WAIT once hid a bug
that failed 23% of transfers); nf_conntrack_tcp_timeout_time_wait is
logged and must be the kernel's 120 s.

Every 2 s a sample goes to samples.csv: ftpct's RSS and CPU time, its
flows, expectations and ipset entries (its latest `state:` line), the
entries of the ipsets ftpct and ftpct6, the gateway's conntrack entries and
kernel expectations, and what tells a drop from a delay: the packets waiting
in ftpct's queue and the queue's drops, the packets the gateway's FORWARD
policy dropped, conntrack's invalid and insert_failed.

Back at baseline, checked for ftpct once the load of a row is over (bounded
waits, settle()): a `state:` line logged after the load shows
expectations=0, ipset_entries=0 and flows <= max(2, 1% of the row's peak),
and both ipsets are empty; within 10 s (ftpct's close linger) + 30 s (a
server still waiting on a failed session's data connection closes it by
then) + 2 state intervals, or, when expectations were still pending after
the load, within ftpct's expectation timeout (300 s) + 2 state intervals +
10 s. ftpct must still run, and its RSS then be within max(16 MiB, half of
its growth to the peak) of its RSS before the load: generous on purpose
(allocators keep freed memory, tables keep their capacity); a leak shows
over a long soak, not in the short one.

The verdict (verdict()): a row fails when it completed no transfer, or its
baseline check failed; an ftpct row fails when it failed a transfer where
the kernel's helper, on the same topology, failed none; or the kernel
failed some and ftpct's failure rate is more than twice the kernel's plus
half a percentage point (the kernel's failures measure the load itself:
vsftpd's accept queue of 32 overflows with 200 clients, a busy machine);
or, without a kernel row, ftpct failed any.
"""

import collections
import json
import os
import re
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import servers
from .gateway import ANSI, Gateway, Mode
from .proc import LabError, in_ns, run, tail
from .servers import sha256, stream
from .topology import Topology

MODES = ("ftpct", "kernel")
TOPOLOGIES = ("snat", "dnat")
SERVERS = ("vsftpd", "pure-ftpd")
SAMPLE_SECS = 2
STATE_INTERVAL = 5
# ftpct's defaults (src/engine.rs): a flow stays this long after FIN both
# ways; a pending expectation this long (the kernel helper's too).
CLOSE_LINGER = 10
SERVER_TIMEOUT = 30  # vsftpd's data_connection_timeout in the lab
EXPECT_TIMEOUT = 300
RSS_TOL_MIN_KB = 16384
TIME_WAIT_DEFAULT = 120
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# The files of the load: name, size, ftpload client threads per family in percent.
SOAK_FILES = (("empty.bin", 0, 20), ("1k.bin", 1024, 30), ("soak-64k.bin", 65536, 20),
              ("soak-1m.bin", 1 << 20, 20), ("soak-10m.bin", 10 << 20, 10))
CURL_FILES = ("empty.bin", "1k.bin", "soak-64k.bin", "soak-1m.bin")
CURL_KINDS = ("v4-pasv", "v4-port", "v6-epsv", "v6-eprt", "v4-epsv", "v4-eprt")
CURL_FLAGS = {"port": ["-P", "-", "--disable-eprt"], "eprt": ["-P", "-"],
              "pasv": ["--disable-epsv", "--no-ftp-skip-pasv-ip"], "epsv": []}
CURL_MAX_SESSIONS = 100000
FTPLOAD_GRACE = 120  # a session started before the end may take its time (10 MiB under load)
CSV_HEADER = ("time,elapsed_s,mode,topology,server,rss_kb,flows,expectations,ipset_entries,ipset_v4,ipset_v6,"
              "conntrack,kernel_expectations,nfq_waiting,nfq_dropped,nfq_user_dropped,forward_dropped,"
              "ct_invalid,ct_insert_failed,ftpct_cpu_ticks")
STATE = re.compile(r"state: flows=(\d+) expectations=(\d+) ipset_entries=(\d+)")
# ftpct's ordinary lines: expectations, rewrites, data connections matched,
# its own start, state and stop lines.
ORDINARY = re.compile(r'event="(expect|rewrite|data-matched)"| INFO (state|running|stopped|signal)')
TCP_COUNTERS = (("retransmitted", "TcpRetransSegs"), ("timeouts", "TcpExtTCPTimeouts"),
                ("checksum errors", "TcpInCsumErrors"), ("ofo drops", "TcpExtTCPOFODrop"))


@dataclass(frozen=True)
class Settings:
    """What a soak run does (test_soak.py reads them from the --soak-* options)."""
    seconds: int = 600
    modes: tuple = MODES
    topologies: tuple = TOPOLOGIES
    servers: tuple = SERVERS
    rotate: bool = False
    clients: int = 200
    curls: int = 8
    pause: float = 2.0

    def __post_init__(self):
        for what, got, known in (("mode", self.modes, MODES), ("topology", self.topologies, TOPOLOGIES),
                                 ("server", self.servers, SERVERS)):
            if not got:
                raise LabError(f"no {what} given")
            for word in got:
                if word not in known:
                    raise LabError(f"unknown {what} {word!r} ({', '.join(known)})")
        checks = ((1 <= self.seconds <= 999999, "seconds of load: 1 to 999999"),
                  (10 <= self.clients <= 9999, "clients: 10 (one per family and file) to 9999"),
                  (0 <= self.curls <= 99, "curl clients: 0 to 99"),
                  (0 <= self.pause < 100, "pause: 0 to 99 s"))
        for ok, why in checks:
            if not ok:
                raise LabError(why)

    def row_servers(self, topology_index):
        """The servers of a topology's rows, in order."""
        if self.rotate:
            return (self.servers[topology_index % len(self.servers)],)
        return self.servers


@contextmanager
def server_options(settings):
    """vsftpd and pure-ftpd with room for every client (all share one
    address), through the environment servers.py reads."""
    want = {"FTPCT_LAB_VSFTPD_OPTS": "max_clients=0 max_per_ip=0",
            "FTPCT_LAB_PURE_FTPD_OPTS": f"-c {2 * (settings.clients + settings.curls) + 50}"}
    saved = {k: os.environ.get(k) for k in want}
    os.environ.update(want)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_files(files):
    """The load's files beside the lab's own; {name: SHA-256}."""
    sums = {}
    for name, size, _ in SOAK_FILES:
        path = os.path.join(files.anon, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(stream(b"ftpct-soak " + name.encode(), size))
            os.chmod(path, 0o644)
        sums[name] = files.served_sha(name)
    return sums


# --- reading ftpct and the gateway ---------------------------------------------

def states(text):
    """(flows, expectations, ipset_entries) of every `state:` line of text."""
    return [tuple(map(int, m.groups())) for m in STATE.finditer(ANSI.sub("", text))]


def read_from(path, offset):
    """The text of path from offset to its last complete line, and the
    offset after it."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return "", offset
    end = data.rfind(b"\n") + 1
    return data[:end].decode(errors="replace"), offset + end


def proc_field(pid, name):
    """A value of /proc/PID/status (VmRSS: KiB) or, for 'cpu', user +
    system time in clock ticks; None when the process is gone."""
    try:
        if name == "cpu":
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return None


# The gateway's figures in one visit (entering a namespace is slow under
# load), each section after a marker line; parsed by gw_counts().
GW_SCRIPT = """
for s in ftpct ftpct6; do echo "@ipset"; ipset list "$s" -t 2>/dev/null; done
echo "@count"; conntrack -C 2>/dev/null
echo "@expect"; cat /proc/net/nf_conntrack_expect 2>/dev/null
echo "@queue"; cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null
for t in iptables ip6tables; do echo "@policy"; "$t" -L FORWARD -v -x -n 2>/dev/null | head -n 1; done
echo "@stats"; conntrack -S 2>/dev/null
"""
GW_FIELDS = ("ipset_v4", "ipset_v6", "conntrack", "kernel_expectations", "nfq_waiting", "nfq_dropped",
             "nfq_user_dropped", "forward_dropped", "ct_invalid", "ct_insert_failed")


def sections(text):
    """[(marker, [lines])] of GW_SCRIPT's output."""
    out = []
    for line in text.splitlines():
        if line.startswith("@"):
            out.append((line[1:], []))
        elif out:
            out[-1][1].append(line)
    return out


def ipset_entries(lines):
    """The entries of `ipset list -t` output, None without the set."""
    for line in lines:
        if line.startswith("Number of entries:"):
            return int(line.split(":")[1])
    return None


def gw_counts(topology):
    """{field of GW_FIELDS: value or None}: the ipsets' entries, conntrack's
    entries and the kernel's expectations; queue 0's packets waiting for
    ftpct, dropped because the queue was full, dropped because ftpct's
    socket buffer was; the packets the FORWARD policy dropped, v4 + v6
    (neither ESTABLISHED nor RELATED nor a new control connection);
    conntrack's invalid and insert_failed, summed over CPUs."""
    done = topology.gw("sh", "-c", GW_SCRIPT, check=False)
    got = dict.fromkeys(GW_FIELDS)
    sets, policy = [], []
    for marker, lines in sections(done.stdout):
        if marker == "ipset":
            sets.append(ipset_entries(lines))
        elif marker == "count" and lines and lines[0].strip().isdigit():
            got["conntrack"] = int(lines[0])
        elif marker == "expect":
            got["kernel_expectations"] = len([x for x in lines if x.strip()])
        elif marker == "queue":
            for line in lines:
                f = line.split()
                if len(f) >= 7 and f[0] == "0":
                    got["nfq_waiting"], got["nfq_dropped"], got["nfq_user_dropped"] = int(f[2]), int(f[5]), int(f[6])
        elif marker == "policy":
            m = re.search(r"policy \w+ (\d+) packets", "".join(lines))
            policy.append(int(m.group(1)) if m else 0)
        elif marker == "stats":
            totals = collections.Counter()
            for word in " ".join(lines).split():
                key, _, value = word.partition("=")
                if value.isdigit():
                    totals[key] += int(value)
            got["ct_invalid"], got["ct_insert_failed"] = totals["invalid"], totals["insert_failed"]
    got["ipset_v4"], got["ipset_v6"] = (sets + [None, None])[:2]
    got["forward_dropped"] = sum(policy) if policy else None
    return got


def ipset_count(topology, name):
    return ipset_entries(topology.gw("ipset", "list", name, "-t", check=False).stdout.splitlines())


def ct_control_open(topology):
    """Control connections (port 21) conntrack still has open (not
    TIME_WAIT or CLOSE), both families: what ftpct's flows come down to."""
    n = 0
    for family in ("ipv4", "ipv6"):
        out = topology.gw("conntrack", "-L", "-f", family, "-p", "tcp", "--dport", "21", check=False).stdout
        n += sum(1 for line in out.splitlines()
                 if len(line.split()) > 3 and line.split()[3] not in ("TIME_WAIT", "CLOSE"))
    return n


def nstat(ns):
    """{counter: value}, absolute, zeros too (nstat's history not updated)."""
    out = run(["nstat", "-asz"], ns=ns, check=False).stdout
    counts = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and f[1].isdigit():
            counts[f[0]] = int(f[1])
    return out, counts


def tcp_counters(counts):
    return ", ".join(f"{label} {counts.get(name, 0)}" for label, name in TCP_COUNTERS)


# --- the sampler ----------------------------------------------------------------

class Sampler:
    """A line of samples.csv every SAMPLE_SECS (at most max_lines), in a
    thread; the row's samples are kept for its peaks."""

    def __init__(self, csv_path, row, topology, gateway, max_lines):
        self.csv_path = csv_path
        self.row = row
        self.topology = topology
        self.gateway = gateway
        self.max_lines = max_lines
        self.server = ""  # the server now up, set by the row
        self.samples = []
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak sampler", daemon=True)
        self._t0 = time.time()
        self._offset = 0
        self._last = (None, None, None)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(60)

    def _run(self):
        try:
            for _ in range(self.max_lines):
                self._sample()
                if self._stop.wait(SAMPLE_SECS):
                    break
        except Exception as e:  # noqa: BLE001 -- reported by the row, not lost in a thread
            self.error = e

    def _sample(self):
        ftpct = self.gateway.ftpct
        rss = cpu = None
        if ftpct is not None:
            text, self._offset = read_from(ftpct.log_path, self._offset)
            found = states(text)
            if found:
                self._last = found[-1]
            rss, cpu = proc_field(ftpct.pid, "VmRSS"), proc_field(ftpct.pid, "cpu")
        t = time.time()
        sample = {"time": int(t), "elapsed_s": int(t - self._t0), "mode": self.row.mode,
                  "topology": self.row.topology, "server": self.server, "rss_kb": rss,
                  "flows": self._last[0], "expectations": self._last[1], "ipset_entries": self._last[2],
                  **gw_counts(self.topology), "ftpct_cpu_ticks": cpu}
        self.samples.append(sample)
        with open(self.csv_path, "a") as f:
            f.write(",".join("" if sample[k] is None else str(sample[k]) for k in CSV_HEADER.split(",")) + "\n")

    def peak(self, *names):
        """The largest sum of the named fields over the samples (0 without)."""
        best = 0
        for s in self.samples:
            values = [s[n] for n in names]
            if values[0] is not None:
                best = max(best, sum(v or 0 for v in values))
        return best


# --- the clients ------------------------------------------------------------------

class FtploadGroup:
    """One `ftpload sessions` process: k client threads on one file, one
    family, one server."""

    def __init__(self, ftpload, rowdir, server, family, file, size, sha, k):
        self.name = f"{server}-{family}-{file}"
        self.out = os.path.join(rowdir, f"ftpload-{self.name}.json")
        self.family = family
        self.argv = [ftpload, "sessions", "--clients", str(k), "--file", file, "--size", str(size),
                     "--sha256", sha]
        self.proc = None

    def start(self, topology, secs, pause):
        target = (f"{topology.target('v4')}:21" if self.family == "v4" else f"[{topology.target('v6')}]:21")
        # PASV and PORT carry IPv4 addresses only.
        modes = "pasv,epsv,port,eprt" if self.family == "v4" else "epsv,eprt"
        argv = self.argv + ["--target", target, "--duration", str(secs), "--pause", f"{pause:g}", "--modes", modes]
        with open(self.out, "wb") as out, open(self.out + ".err", "wb") as err:
            self.proc = subprocess.Popen(in_ns(topology.cli_ns, argv), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, start_new_session=True)
        return self

    def wait(self, timeout):
        """Its exit status; stopped (and None) after timeout seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_group(self.proc)
            return None

    def stop(self):
        if self.proc is not None:
            stop_group(self.proc)

    def result(self):
        """Its JSON result, None when it wrote none."""
        try:
            with open(self.out) as f:
                r = json.loads(f.readline())
            return r if isinstance(r.get("ok"), int) and isinstance(r.get("failed"), int) else None
        except (OSError, ValueError, AttributeError):
            return None

    def errors(self):
        r = self.result() or {}
        return [str(e) for e in r.get("errors", [])] + tail(self.out + ".err", 1000).splitlines()


class CurlClient:
    """curl sessions of four transfers each, one after the other until the
    end, in a thread; a line per session in its file: "session ok=N
    failed=N" and, when one failed, curl's exit status and error."""

    def __init__(self, rowdir, server, index, kind, sums):
        self.kind = kind
        self.out = os.path.join(rowdir, f"curl-{server}-{index}-{kind}.txt")
        self.dir = self.out + ".d"
        self.sums = sums
        self.sessions = []  # (ok, failed, reason)
        self.proc = None
        self._stop = threading.Event()
        self._thread = None

    def start(self, topology, secs):
        os.makedirs(self.dir, exist_ok=True)
        family, mode = self.kind.split("-")
        host = topology.target(family)
        url = f"ftp://[{host}]" if family == "v6" else f"ftp://{host}"
        args = []
        for i, name in enumerate(CURL_FILES):
            args += ["-o", os.path.join(self.dir, f"{i}.bin"), f"{url}/{name}"]
        argv = in_ns(topology.cli_ns, ["curl", "-gsS", "--connect-timeout", "10", "-m", "60",
                                       *CURL_FLAGS[mode], *args])
        self._thread = threading.Thread(target=self._run, args=(argv, time.monotonic() + secs),
                                        name=f"curl {self.kind}", daemon=True)
        self._thread.start()
        return self

    def _run(self, argv, end):
        with open(self.out, "a") as log:
            for _ in range(CURL_MAX_SESSIONS):
                if time.monotonic() >= end or self._stop.is_set():
                    break
                for i in range(len(CURL_FILES)):
                    try:
                        os.unlink(os.path.join(self.dir, f"{i}.bin"))
                    except FileNotFoundError:
                        pass
                try:
                    self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.PIPE, start_new_session=True)
                except OSError as e:  # counted as a failed session, not lost with the thread
                    self.sessions.append((0, len(CURL_FILES), f"curl could not run: {e}"))
                    log.write(f"session ok=0 failed={len(CURL_FILES)} curl could not run: {e}\n")
                    break
                try:
                    _, err = self.proc.communicate(timeout=70)
                except subprocess.TimeoutExpired:
                    stop_group(self.proc)
                    err = b"stopped after 70 s"
                ok = sum(1 for i, name in enumerate(CURL_FILES)
                         if os.path.exists(p := os.path.join(self.dir, f"{i}.bin")) and sha256(p) == self.sums[name])
                failed = len(CURL_FILES) - ok
                reason = ""
                if failed:
                    said = err.decode(errors="replace").replace("\n", " ")[:200]
                    reason = f"curl exit {self.proc.returncode}: {said}"
                self.sessions.append((ok, failed, reason))
                log.write(f"session ok={ok} failed={failed}{' ' + reason if reason else ''}\n")
                log.flush()
                if failed:  # do not spin on a refusing server
                    self._stop.wait(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait(self, timeout):
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.stop()
            self._thread.join(10)

    def stop(self):
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            stop_group(self.proc)


def stop_group(proc):
    """SIGTERM, then SIGKILL after 5 s, to a client's process group."""
    for sig in (15, 9):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            pass


def run_load(settings, topology, rowdir, server, secs, ftpload, sums, log):
    """The whole mix against the server now up; returns once every client
    ended (each bounded): (ftpload groups, curl clients)."""
    groups, curls = [], []
    try:
        for family in ("v4", "v6"):
            for name, size, share in SOAK_FILES:
                k = max(1, settings.clients * share // 200)  # half the clients per family
                groups.append(FtploadGroup(ftpload, rowdir, server, family, name, size, sums[name], k)
                              .start(topology, secs, settings.pause))
        for j in range(settings.curls):
            curls.append(CurlClient(rowdir, server, j, CURL_KINDS[j % len(CURL_KINDS)], sums).start(topology, secs))
        deadline = time.monotonic() + secs + FTPLOAD_GRACE + 5
        for g in groups:
            rc = g.wait(max(1.0, deadline - time.monotonic()))
            if rc not in (0, 1):
                log(f"warning: ftpload {g.name} exited with status {rc}" if rc is not None
                    else f"warning: ftpload {g.name} still running {secs + FTPLOAD_GRACE} s after its start: stopped")
        for c in curls:
            c.wait(max(1.0, deadline - time.monotonic()))
    finally:
        for g in groups:
            g.stop()
        for c in curls:
            c.stop()
    return groups, curls


# --- one row: a gateway mode on a topology -------------------------------------------

@dataclass
class Row:
    mode: str
    topology: str
    servers: str
    ok: int = 0
    failed: int = 0
    sessions: int = 0
    overflow: str = "?"
    rss: str = "-"
    flows: str = "-"
    expect: str = "-"
    ipset: str = "-"
    conntrack: str = "-"
    base: bool = True
    why: str = "-"
    details: str = ""  # failed transfers by client, the errors, ftpct's unusual lines
    context: str = ""  # ftpct's last lines and the gateway's counters, for a failing test
    notes: list = field(default_factory=list)

    @property
    def name(self):
        return f"{self.topology}:{self.mode}"

    def rate(self):
        n = self.ok + self.failed
        return self.failed / n if n else 0.0


def fmt_rate(row):
    return f"{100 * row.rate():.2f}%"


class RowRun:
    """One row from lab up to lab down (run()), the Row it fills."""

    def __init__(self, settings, ctx, topology_name, mode, topology_index):
        self.s = settings
        self.ctx = ctx
        self.servers = settings.row_servers(topology_index)
        self.row = Row(mode, topology_name, "+".join(self.servers))
        self.rowdir = os.path.join(ctx.workdir, f"{mode}-{topology_name}")
        os.makedirs(self.rowdir, exist_ok=True)
        self.topology = Topology(topology_name, ctx.prefix)
        self.gateway = Gateway(self.topology, ctx.ftpct, self.rowdir)
        self.server = None
        self.groups, self.curls = [], []

    def run(self):
        log, row = self.ctx.log, self.row
        per = max(1, self.s.seconds // len(self.servers))
        log(f"== {row.mode} on {row.topology}: {len(self.servers)} x {per} s of load ({' '.join(self.servers)})")
        self.ctx.live.append(self.topology)
        sampler = None
        try:
            self.topology.build()
            self._server(self.servers[0])
            self._check_sysctls()
            sums = make_files(self.ctx.files)
            self.gateway.enter(Mode(row.mode, ("--state-interval", str(STATE_INTERVAL))
                                    if row.mode == "ftpct" else ()))
            pid = self.gateway.ftpct.pid if self.gateway.ftpct else None
            rss0 = proc_field(pid, "VmRSS") if pid else None
            t0 = time.monotonic()
            sampler = Sampler(self.ctx.csv, row, self.topology, self.gateway,
                              (self.s.seconds + EXPECT_TIMEOUT + 300) // SAMPLE_SECS)
            sampler.server = self.servers[0]
            sampler.start()
            for i, server in enumerate(self.servers):
                if i:
                    self._server(server)
                    sampler.server = server
                log(f"  load: {server}, {per} s, {self.s.clients} ftpload + {self.s.curls} curl clients")
                groups, curls = run_load(self.s, self.topology, self.rowdir, server, per, self.ctx.ftpload,
                                         sums, log)
                self.groups += groups
                self.curls += curls
            self._after_load(t0)
            if row.mode == "ftpct":
                self._settle_ftpct(sampler, rss0)
            else:
                time.sleep(SAMPLE_SECS)
                sampler.stop()
                row.expect = str(sampler.peak("kernel_expectations"))
            row.conntrack = str(sampler.peak("conntrack"))
            if sampler.error is not None:
                raise LabError(f"the sampler failed: {sampler.error!r}")
            failed = self._tally()
            if failed or not row.base:
                row.context = self._context()
        finally:
            if sampler is not None:
                sampler.stop()
            try:
                self.gateway.leave()
            finally:
                if self.server is not None:
                    self.server.stop()
                self.topology.destroy()
                self.ctx.live.remove(self.topology)
        log(f"  transfers ok {row.ok}, failed {row.failed}, sessions {row.sessions}")
        if row.details:
            log("\n".join("      " + line for line in row.details.splitlines()))
        return row

    def _server(self, kind):
        if self.server is not None:
            self.server.stop()
            self.server = None
        with server_options(self.s):
            srv = servers.server(kind, self.ctx.files, fxp=False)
            self.server = srv
            srv.start([self.topology.ns(role) for role in self.topology.server_roles])
        servers.check_reachable(srv, self.topology)
        with open(os.path.join(self.rowdir, "server"), "w") as f:
            f.write(kind + "\n")

    def _check_sysctls(self):
        """The gateway's conntrack timeouts: logged, and TIME_WAIT must be
        the kernel's default (the lab never changes it; nor does the soak)."""
        def sysctl(key):
            return self.topology.gw("sysctl", "-n", f"net.netfilter.{key}").stdout.strip()
        tw = sysctl("nf_conntrack_tcp_timeout_time_wait")
        self.ctx.log(f"gateway {self.topology.gw_ns}: nf_conntrack_tcp_timeout_time_wait={tw} (kernel default "
                     f"{TIME_WAIT_DEFAULT}), tcp_timeout_close={sysctl('nf_conntrack_tcp_timeout_close')}, "
                     f"nf_conntrack_max={sysctl('nf_conntrack_max')}")
        if tw != str(TIME_WAIT_DEFAULT):
            raise LabError(f"the gateway's TIME_WAIT is {tw} s, not the kernel default: a shortened TIME_WAIT "
                           "hides tuple reuse bugs")

    def _after_load(self, t0):
        """The server's listen overflows (its accept queue overflowed:
        clients then wait for a greeting that may come too late, under any
        gateway) and the ends' TCP counters: what a failure looked like
        from the hosts, to compare with the other mode."""
        texts = {}
        for end in ("client", "server"):
            text, counts = nstat(self.topology.ns("cli" if end == "client" else "srv"))
            with open(os.path.join(self.rowdir, f"nstat-{end}.txt"), "w") as f:
                f.write(text)
            texts[end] = counts
        self.row.overflow = str(texts["server"].get("TcpExtListenOverflows", "?"))
        self.ctx.log(f"  load over after {time.monotonic() - t0:.0f} s; listen queue overflows at the server: "
                     f"{self.row.overflow}")
        self.ctx.log(f"  client TCP: {tcp_counters(texts['client'])}; server TCP: {tcp_counters(texts['server'])}")

    def _settle_ftpct(self, sampler, rss0):
        row, ftpct = self.row, self.gateway.ftpct
        offset = os.path.getsize(ftpct.log_path)  # everything ftpct logs from here on is after the load
        every = states(read_from(ftpct.log_path, 0)[0])
        peak_flows = max((f for f, _, _ in every), default=0)
        row.base, row.why = settle(self.topology, ftpct.log_path, offset, peak_flows, self.ctx.log)
        rss1 = proc_field(ftpct.pid, "VmRSS")
        if not ftpct.alive():
            row.base, row.why = False, f"ftpct exited during the row: {' '.join(ftpct.output(3).splitlines())}"
        sampler.stop()
        # Peaks from every state line (the samples see one in 2 or 3).
        every = states(read_from(ftpct.log_path, 0)[0])
        after = states(read_from(ftpct.log_path, offset)[0])
        maxf, maxe, maxi = (max((s[i] for s in every), default=0) for i in range(3))
        row.flows = f"{maxf}/{after[-1][0] if after else ''}"
        row.expect = str(maxe)
        listed = sampler.peak("ipset_v4", "ipset_v6")
        row.ipset = f"{maxi}/{listed}" if listed > maxi else str(maxi)
        peak = max(sampler.peak("rss_kb"), rss1 or 0)
        if row.base:
            tol = max((peak - (rss0 or 0)) // 2, RSS_TOL_MIN_KB)
            if (rss1 or 0) - (rss0 or 0) > tol:
                row.base, row.why = False, f"RSS {rss1} KiB after, {rss0} KiB before: more than {tol} KiB above"
        row.rss = f"{rss0 or ''}/{peak}/{rss1 or ''}"
        self.ctx.log(f"  baseline: {'ok' if row.base else 'FAILED'}: {row.why}")
        self.ctx.log(f"  ftpct RSS before/peak/after: {row.rss} KiB")

    def _tally(self):
        """Sums every client result of the row; writes clients.txt and,
        when a transfer failed, failures.txt. The count of failed transfers."""
        row = self.row
        for g in self.groups:
            r = g.result()
            ok, failed = (r["ok"], r["failed"]) if r else (0, 1)  # no result: the client itself failed
            row.ok, row.failed, row.sessions = row.ok + ok, row.failed + failed, row.sessions + ok + failed
        for c in self.curls:
            row.ok += sum(ok for ok, _, _ in c.sessions)
            row.failed += sum(failed for _, failed, _ in c.sessions)
            row.sessions += len(c.sessions)
        with open(os.path.join(self.rowdir, "clients.txt"), "w") as f:
            f.write("\n".join(clients_table(self.groups)) + "\n")
        if row.failed:
            parts = ["failed transfers by client:", *indent(failures_by_client(self.groups, self.curls)),
                     "client errors (count, digits as N):", *indent(client_errors(self.groups, self.curls))]
            if self.gateway.ftpct is not None:
                parts += ["ftpct's unusual log lines (count, digits as N):",
                          *indent(ftpct_problems(read_from(self.gateway.ftpct.log_path, 0)[0]))]
            row.details = "\n".join(parts)
            with open(os.path.join(self.rowdir, "failures.txt"), "w") as f:
                f.write(row.details + "\n")
        return row.failed

    def _context(self):
        parts = []
        if self.gateway.ftpct is not None:
            parts.append(f"--- ftpct's log ({self.gateway.ftpct.log_path}), last 20 lines:\n"
                         + ANSI.sub("", self.gateway.ftpct.output(20)))
        if self.server is not None:
            parts.append("--- the server's output:\n" + self.server.output())
        parts.append("--- the gateway's counters after the load:\n" + self.gateway.counters())
        return "\n".join(parts)


def settle(topology, log_path, offset, peak_flows, log):
    """Waits (bounded) for ftpct to be back at baseline; (ok, why). Only
    state lines logged after offset (the end of the load) count."""
    tol = max(2, peak_flows // 100)
    # A session that failed may keep its server busy until the server's own
    # timeout (vsftpd's data_connection_timeout) before its FIN.
    deadline = time.monotonic() + CLOSE_LINGER + SERVER_TIMEOUT + 2 * STATE_INTERVAL
    seen, pending = False, 0
    last, sets = ("?", "?", "?"), ("?", "?")
    limit = CLOSE_LINGER + SERVER_TIMEOUT + EXPECT_TIMEOUT + 4 * STATE_INTERVAL + 20  # tries, at 1 s or more each
    for _ in range(limit):
        if time.monotonic() >= deadline:
            break
        found = states(read_from(log_path, offset)[0])
        if found:
            last = found[-1]
            flows, expectations, entries = last
            if not seen:
                seen = True
                # Expectations left pending by the load go only at their timeout.
                if expectations > 0:
                    pending = expectations
                    deadline = time.monotonic() + EXPECT_TIMEOUT + 2 * STATE_INTERVAL + 10
                    log(f"  {expectations} expectation(s) pending after the load: waiting for ftpct's "
                        f"expectation timeout ({EXPECT_TIMEOUT} s)")
            sets = (ipset_count(topology, "ftpct"), ipset_count(topology, "ftpct6"))
            if flows <= tol and expectations == 0 and entries == 0 and not any(sets):
                why = "flows=%d expectations=0 ipset_entries=0 ipsets empty%s" % (
                    flows, f" (after {pending} pending expired)" if pending else "")
                return True, f"{why}; control connections open in conntrack: {ct_control_open(topology)}"
        time.sleep(1)
    why = (f"not back at baseline in time: last state flows={last[0]} (tolerance {tol}) expectations={last[1]} "
           f"ipset_entries={last[2]}, ipset entries v4={sets[0]} v6={sets[1]}")
    return False, f"{why}; control connections open in conntrack: {ct_control_open(topology)}"


# --- what the clients and ftpct said ----------------------------------------------------

def indent(lines):
    return ["    " + line for line in lines]


def clients_table(groups):
    """Every ftpload client group: transfers ok and failed, session latency."""
    lines = [f"{'client':<34} {'ok':>7} {'failed':>7} {'p50_ms':>9} {'p99_ms':>9}"]
    for g in groups:
        r = g.result()
        if r is None:
            lines.append(f"{g.name:<34} no result")
        else:
            lines.append(f"{g.name:<34} {r['ok']:7d} {r['failed']:7d} {(r.get('latency_median_us') or 0) / 1e3:9.1f} "
                         f"{(r.get('latency_p99_us') or 0) / 1e3:9.1f}")
    return lines


def failures_by_client(groups, curls):
    """Failed transfers per client group (server, family, file or curl mode)."""
    lines = []
    for g in groups:
        r = g.result()
        if r is None:
            lines.append(f"ftpload {g.name}: no result")
        elif r["failed"]:
            lines.append(f"ftpload {g.name}: {r['failed']} of {r['ok'] + r['failed']} failed")
    for c in curls:
        ok, failed = sum(s[0] for s in c.sessions), sum(s[1] for s in c.sessions)
        if failed:
            name = os.path.basename(c.out)[len("curl-"):-len(".txt")]
            lines.append(f"curl {name}: {failed} of {ok + failed} failed")
    return lines


def blurred_counts(lines, limit=12):
    """'COUNT LINE' for the most frequent lines, digits as N (and SHA-256
    sums as <sha>), so that one cause is one line."""
    counts = collections.Counter(re.sub(r"\d+", "N", re.sub(r"[0-9a-f]{64}", "<sha>", line)) for line in lines)
    return [f"{n:7d} {line}" for line, n in counts.most_common(limit)]


def client_errors(groups, curls):
    errors = [e for g in groups for e in g.errors()]
    errors += [reason for c in curls for _, failed, reason in c.sessions if failed]
    return blurred_counts(errors)


def ftpct_problems(log_text):
    """ftpct's lines out of the ordinary (warnings, errors, refusals, data
    connections it could not make RELATED), without their time stamp."""
    lines = [re.sub(r"^\S+ +", "", line) for line in ANSI.sub("", log_text).splitlines()
             if line.strip() and not ORDINARY.search(line)]
    return blurred_counts(lines)


# --- verdict and table ----------------------------------------------------------------

def verdict(row, rows):
    """The reasons row fails (none: it passes), and notes for the log."""
    bad, notes = [], []
    if row.ok == 0:
        bad.append(f"{row.mode} on {row.topology}: no transfer completed (the lab, not the helper?)")
    if not row.base:
        bad.append(f"{row.mode} on {row.topology}: baseline: {row.why}")
    if row.mode != "ftpct":
        return bad, notes
    kernel = [r for r in rows if r.mode == "kernel" and r.topology == row.topology]
    if not kernel:
        if row.failed:
            bad.append(f"ftpct on {row.topology}: {row.failed} failed transfer(s), no kernel control to compare with")
    elif kernel[-1].failed == 0:
        if row.failed:
            bad.append(f"ftpct on {row.topology}: {row.failed} failed transfer(s) ({fmt_rate(row)}), "
                       "the kernel helper none on the same load")
    else:
        k = kernel[-1]
        notes.append(f"note: the kernel helper failed {k.failed} transfer(s) on {row.topology} ({fmt_rate(k)}); "
                     f"ftpct {row.failed} ({fmt_rate(row)})")
        # The kernel's failures measure what the load itself costs (the
        # server's accept queue, timeouts on a busy machine): ftpct's rate
        # may be up to twice the kernel's, plus half a point.
        if row.rate() > 2 * k.rate() + 0.005:
            bad.append(f"ftpct on {row.topology}: failure rate {fmt_rate(row)} more than twice the kernel "
                       f"helper's ({fmt_rate(k)}) plus 0.5 points")
    return bad, notes


TABLE_FMT = "{:<6} {:<4} {:<16} {:>9} {:>6} {:>6} {:>8} {:>8}  {:<23} {:>9} {:>6} {:>9} {:>9} {:<4}"


def table(rows, settings, secs, csv_path):
    rule = "-" * 136
    lines = [TABLE_FMT.format("", "", "", "transfers", "", "", "", "listen", "ftpct RSS KiB", "flows", "max", "max",
                              "max", "base"),
             TABLE_FMT.format("mode", "topo", "servers", "ok", "failed", "fail%", "sessions", "overflow",
                              "before/peak/after", "peak/end", "expect", "ipset", "conntrack", "line"),
             rule]
    for r in rows:
        lines.append(TABLE_FMT.format(r.mode, r.topology, r.servers, r.ok, r.failed, fmt_rate(r), r.sessions,
                                      r.overflow, r.rss, r.flows, r.expect, r.ipset, r.conntrack,
                                      "ok" if r.base else "FAIL"))
    lines += [rule,
              f"load: {settings.seconds} s per row, {settings.clients} ftpload + {settings.curls} curl clients; "
              f"{secs:.0f} s in all; samples: {csv_path}",
              "listen overflow: connections the server's accept queue dropped (TcpExtListenOverflows)",
              "max expect: ftpct expectations (kernel rows: the kernel's); max ipset: from state lines "
              "(/from ipset list, when more)"]
    return lines


# --- the run's context --------------------------------------------------------------------

class Context:
    """What every row shares: the work directory (bin/ holds the binaries'
    snapshot: a rebuild meanwhile changes nothing), samples.csv, soak.log,
    the served files, the namespace prefix, the live topologies (taken down
    by the harness after an interruption) and the log."""

    def __init__(self, workdir, ftpct, ftpload, files, prefix, live, say):
        self.workdir = workdir
        self.files = files
        self.prefix = prefix
        self.live = live
        self._say = say
        bindir = os.path.join(workdir, "bin")
        os.makedirs(bindir, exist_ok=True)
        for path in (ftpct, ftpload):
            if not os.access(path, os.X_OK):
                raise LabError(f"{path} missing: cargo build --release --workspace (or --ftpct/--ftpload PATH)")
        self.ftpct = shutil.copy(ftpct, os.path.join(bindir, "ftpct"))
        self.ftpload = shutil.copy(ftpload, os.path.join(bindir, "ftpload"))
        self.csv = os.path.join(workdir, "samples.csv")
        with open(self.csv, "w") as f:
            f.write(CSV_HEADER + "\n")
        self.log_path = os.path.join(workdir, "soak.log")
        version = run([self.ftpct, "--version"], check=False).stdout.strip()
        tree = run(["git", "-C", REPO, "log", "-1", "--format=%h"], check=False).stdout.strip() or "?"
        if run(["git", "-C", REPO, "diff", "--quiet", "HEAD", "--", "src", "Cargo.toml", "Cargo.lock"],
               check=False).returncode == 1:
            tree += " (+ uncommitted changes in src)"
        self.log(f"ftpct: {version}, {ftpct} of {time.strftime('%F %T', time.localtime(os.path.getmtime(ftpct)))}; "
                 f"ftpload: {ftpload}; tree at {tree}")

    def log(self, text):
        """A line (or lines) of progress: soak.log, and the terminal."""
        text = "\n".join(f"soak: {line}" for line in text.splitlines())
        with open(self.log_path, "a") as f:
            f.write(text + "\n")
        self._say(text)


# --- pytest options (conftest.py adds them to the group "lab") ------------------------------

def add_options(group):
    group.addoption("--soak-seconds", type=int, default=None,
                    help="soak: seconds of load per row (gateway mode x topology); the short soak: "
                         "--soak-seconds 6 --soak-rotate-servers (default: 600)")
    group.addoption("--soak-minutes", type=int, default=None, help="soak: the same in minutes (default: 10)")
    group.addoption("--soak-modes", default=",".join(MODES),
                    help="soak: gateway modes, in this order: ftpct, kernel (the control) (default: ftpct,kernel)")
    group.addoption("--soak-topologies", default=",".join(TOPOLOGIES),
                    help="soak: topologies (default: snat,dnat)")
    group.addoption("--soak-servers", default=",".join(SERVERS),
                    help="soak: servers; a row's load time is split evenly between them, switched while the "
                         "gateway keeps running (default: vsftpd,pure-ftpd)")
    group.addoption("--soak-rotate-servers", action="store_true",
                    help="soak: one server per topology instead, in turn (each switch costs a tail of sessions "
                         "stuck in their 5 s timeouts, too much for the short soak)")
    group.addoption("--soak-clients", type=int, default=200,
                    help="soak: ftpload client threads per row, half IPv4, half IPv6 (default: 200)")
    group.addoption("--soak-curl", type=int, default=8,
                    help="soak: curl clients, several transfers per session (default: 8)")
    group.addoption("--soak-pause", type=float, default=2.0,
                    help="soak: seconds each ftpload client waits between its sessions; 0 runs them flat out "
                         "(default: 2)")
    group.addoption("--soak-out", default=None,
                    help="soak: work directory, kept (default: a fresh /tmp/ftpct-soak.XXXXXX, removed when the "
                         "soak passes): soak.log, table.txt, samples.csv, and per row ftpct's log, clients.txt, "
                         "failures.txt, nstat-*.txt, the clients' results")


def settings_from(config):
    seconds, minutes = config.getoption("--soak-seconds"), config.getoption("--soak-minutes")
    if seconds is not None and minutes is not None:
        raise LabError("--soak-seconds or --soak-minutes, not both")
    if minutes is not None and not 1 <= minutes <= 9999:
        raise LabError("--soak-minutes: 1 to 9999")

    def words(option):
        return tuple(w for w in config.getoption(option).split(",") if w)

    return Settings(seconds=60 * minutes if minutes is not None else seconds if seconds is not None else 600,
                    modes=words("--soak-modes"), topologies=words("--soak-topologies"),
                    servers=words("--soak-servers"), rotate=config.getoption("--soak-rotate-servers"),
                    clients=config.getoption("--soak-clients"), curls=config.getoption("--soak-curl"),
                    pause=config.getoption("--soak-pause"))
