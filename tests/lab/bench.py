"""Gateway benchmarks: ftpct against the kernel's FTP helper, a userspace
FTP proxy (Debian's ftp-proxy) and no helper at all, in the same run, on
the lab's snat topology (client 192.0.2.10 behind a MASQUERADE gateway,
servers at 198.51.100.20).

  python3 -m lab bench [--quick] [--rounds N] [--only LIST] [--no-vsftpd] [--no-nfq]
                       [--no-ftp-proxy] [--queue-all-too] [--ftpct-queues SPEC] [--ftpct-busy-poll USEC]
                       [--out DIR] [--ftpct PATH] [--ftpload PATH] [--no-build]
  python3 -m lab bench --table results.jsonl     the table of a kept run (no root)

The gateways (COLUMNS, one entry each, alternated within each round in a
rotating order) and the tests (plan(), per server) are data; what a column
or a test needs from the lab is in Bench. The table (Table, table()) is the
medians over rounds of every figure per gateway, ratios of ftpct's against
the kernel's helper, no helper, the do-nothing queue program and the proxy
measured in the same run, the targets of issue 10, and what a gateway
cannot run.

Tests (client in PREFIX+cli, servers in PREFIX+srv, the NAT gateway between):
  rtt       NOOP, PASV+227 and PORT+200 round trips in one session, client,
            server and queue program on CPU 0; NOOP again with the queue
            program on CPU 1
  sessions  K = 1, 16, 128 clients (vsftpd: 1, 16): login, PASV/EPSV/PORT/EPRT
            in turn, RETR 1k.bin (SHA-256 checked), QUIT; sessions per second,
            with the CPU of server, queue program and client (cpuacct cgroups);
            then one client, sessions one after the other for a second or two
            (at least 20), passive (PASV/EPSV) then active (PORT/EPRT): packets
            queued per session
  bulk      RETR of 1 GiB, SHA-256 checked
  stream    one control connection streams "NOOP\\r\\n" lines in small segments
            to a sink; packets per second through the gateway, packets the
            queue program saw against packets that reached the raw table,
            its CPU per packet
  syscalls  one client, sessions one after the other for a second or two,
            PASV/EPSV/PORT/EPRT in turn, the gateway's program (every thread
            and child) under `strace -c -f`: its system calls per session
Servers: ftpload's own (tools/ftpload, fast) for every test, vsftpd (forks
per session, realistic) for sessions and bulk. The machine's CPU comes from
/proc/stat. Packets queued: the packet counters of every NFQUEUE rule of the
gateway's raw table (any chain, both families) before and after each test.

Environment: FTPCT_BENCH_PREFIX (default ftpct-bench-: the namespaces),
FTPCT_BENCH_BUSY_WAIT (seconds to wait for a busy machine, default 300),
FTPCT_BENCH_STRACE_CALLS (set: syscalls keeps every call, strace -f -yy, in
strace-*.calls beside the threads' names, and counts from it),
FTPCT_BIN and FTPLOAD_BIN (the binaries; default target/release/ of this
checkout, built first unless --no-build), FTPCT_FTP_PROXY (default: where
scripts/install-deps.sh unpacks Debian's ftp-proxy). Every wait is
bounded; the lab is taken down at the end, also on an error, Ctrl-C or
SIGTERM.
"""

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass

from .gateway import kernel_helper
from .proc import Daemon, LabError, run, wait_until
from .servers import LAB_OPT, FtpRoot, FtpServer, Vsftpd, wait_listening
from .topology import Topology, ns_pids

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CG_ROOT = "/sys/fs/cgroup/cpuacct"
CG_GROUPS = ("srv", "gw", "cli")  # server, queue program, client
TAG = "ftpctb"  # comment of the rules the benchmark adds, name of its cgroup
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TESTS = ("rtt", "sessions", "bulk", "stream", "syscalls")  # --only
MODES = ("pasv", "epsv", "port", "eprt")  # ftpload's data connection modes
# Heavy neighbours a run waits for: a build, a capture, a live test matrix.
HEAVY_COMMANDS = ("cargo", "cargo-fuzz", "rustc", "tcpdump")
HEAVY_ARGS = re.compile(r"pytest.*tests/lab")


# --- the gateways -------------------------------------------------------------

def queue_bound(bench):
    """Queue 0 has a program bound (the netfilter queue's own table)."""
    return any(f[0] == "0" and f[1] != "0" for f in bench.queue_table())


FTP_PROXY = os.environ.get("FTPCT_FTP_PROXY", os.path.join(LAB_OPT, "ftp-proxy/usr/sbin/ftp-proxy"))
FTP_PROXY_PORT = "2121"


def proxy_listening(bench):
    """The proxy listens on its port in the gateway."""
    return f"0.0.0.0:{FTP_PROXY_PORT}" in bench.gw("ss", "-ltnH", f"sport = :{FTP_PROXY_PORT}", check=False).stdout


def ftp_proxy_conf(path, server):
    """ftp-proxy's configuration (ftp-proxy.conf(5)), written to path:
    standalone, transparent (the client's destination is the server), as
    Debian's own file runs it (nobody, nogroup), with the limits raised
    that would refuse a benchmark's sessions (ForkLimit: 40 a minute,
    MaxClients: 64, by default)."""
    # Its log in a folder of its own: it replaces the file as nobody.
    logs = os.path.join(os.path.dirname(path), "ftp-proxy")
    os.makedirs(logs, exist_ok=True)
    os.chown(logs, pwd.getpwnam("nobody").pw_uid, -1)
    log = os.path.join(logs, "sessions.log")
    settings = ("ServerType standalone", "Listen 0.0.0.0", f"Port {FTP_PROXY_PORT}",
                f"DestinationAddress {server}", "AllowTransProxy yes", "MaxClients 512", "ForkLimit 1000000",
                "TimeOut 60", f"LogDestination {log}", "LogLevel WRN", "User nobody", "Group nogroup")
    with open(path, "w") as f:
        f.write("# generated by the lab harness's benchmark (tests/lab/bench.py)\n[-Global-]\n"
                + "\n".join(settings) + "\n")
    return path


@dataclass(frozen=True)
class Column:
    """One gateway of the table. Its pieces, set up in this order and taken
    down in the reverse one: rules inserted first in chains (insert: table,
    chain, rule; in the families' tables, tagged), the kernel's helper,
    `ftpct rules --apply RULES`, a program in the gateway (PROGRAM, its CPU
    accounted as the queue program's, ready when ready(bench) is true;
    queues: it reads the queue, else it is a proxy). Placeholders in RULES
    and PROGRAM: {ftpct}, {ftpload}, {queues}, {busy_poll}, {ftp_proxy},
    {ftp_proxy_conf}.

    engine_count: the program logs the packets its engine saw when it stops
    (ftpct); otherwise a queue program saw what its queue received. servers,
    tests and modes (ftpload's data connection modes): what it is measured
    with; cannot: what it cannot run and why, printed under the table.
    option: the command-line switch that leaves it out (no_*) or adds it;
    optional: printed only when the results have it; ratio: a c/LETTER
    column of ftpct against it."""
    key: str
    letter: str
    what: str
    insert: tuple = ()
    families: tuple = ("iptables", "ip6tables")
    kernel_helper: bool = False
    rules: tuple = None
    program: tuple = None
    ready: object = queue_bound
    queues: bool = True
    engine_count: bool = False
    servers: tuple = ("ftpload", "vsftpd")
    tests: tuple = TESTS
    modes: tuple = MODES
    cannot: str = ""
    option: str = None
    optional: bool = False
    ratio: bool = False

    @property
    def heading(self):
        return f"({self.letter}) {self.key}"

    @property
    def queue_program(self):
        return self.program is not None and self.queues

    def enabled(self, opts):
        if self.option is None:
            return True
        value = getattr(opts, self.option)
        return not value if self.option.startswith("no_") else value


PERMISSIVE = (("filter", "FORWARD", "-j", "ACCEPT"),)
# Its metrics in the gateway's namespace: the netlink requests per test.
METRICS = "127.0.0.1:9641"
FTPCT_RUN = ("{ftpct}", "run", "--queues", "{queues}", "--busy-poll", "{busy_poll}", "--metrics", METRICS)
SETTLE_S = 1.5  # ftpct's conntrack watch believes a destroy event after 1 s
NETLINK_REQUESTS = re.compile(r'^ftpct_netlink_requests_total\{operation="(\w+)",waited="(yes|no)"\} (\d+)', re.M)

COLUMNS = (
    Column("none", "a", "no helper, permissive forwarding (FORWARD -j ACCEPT first): the floor; "
           "PORT/EPRT work only because the lab routes the client's address",
           insert=PERMISSIVE, ratio=True),
    Column("kernel", "b", "nf_conntrack_ftp + nf_nat_ftp (raw -j CT --helper ftp), RELATED accepted",
           kernel_helper=True, ratio=True),
    Column("ftpct", "c", "`ftpct rules --apply --selective`, `ftpct run --selective`: the lab's strict filter",
           rules=("--selective", "--queues", "{queues}"), program=FTPCT_RUN + ("--selective",),
           engine_count=True),
    Column("nfq", "d", "ftpct's rules with --queue-all (every control packet queued), a do-nothing queue "
           "program (`ftpload nfq-null`: recv, accept) and permissive forwarding: crossing alone",
           insert=PERMISSIVE, rules=("--queue-all",), program=("{ftpload}", "nfq-null"),
           servers=("ftpload",), tests=("rtt", "sessions", "stream", "syscalls"), option="no_nfq", ratio=True),
    Column("ftpctall", "e", "as (c) with --queue-all for `ftpct rules` and `ftpct run`",
           rules=("--queue-all", "--queues", "{queues}"), program=FTPCT_RUN + ("--queue-all",),
           engine_count=True, option="queue_all_too", optional=True),
    Column("ftp-proxy", "f", "Debian's ftp-proxy, transparent: nat PREROUTING -p tcp --dport 21 -j REDIRECT "
           f"--to-ports {FTP_PROXY_PORT} (IPv4), `ftp-proxy -d -n` forking per session, AllowTransProxy; "
           "its processes' CPU is counted as the queue program's",
           insert=(("nat", "PREROUTING", "-p", "tcp", "--dport", "21", "-j", "REDIRECT", "--to-ports",
                    FTP_PROXY_PORT),),
           families=("iptables",), program=("{ftp_proxy}", "-d", "-n", "-f", "{ftp_proxy_conf}"),
           ready=proxy_listening, queues=False, tests=("rtt", "sessions", "bulk", "syscalls"),
           modes=("pasv", "port"),
           cannot="EPSV and EPRT (it answers 500 'command unrecognized': its sessions use PASV and PORT "
                  "only); the stream test (ftpload's sink command XSINK: 500 'command unrecognized'); "
                  "IPv6 (it listens and connects on IPv4 only)",
           option="no_ftp_proxy", optional=True, ratio=True),
)
SUBJECT = "ftpct"  # the column every ratio is of
COLUMN = {c.key: c for c in COLUMNS}


# --- the tests ------------------------------------------------------------------

@dataclass(frozen=True)
class Sizes:
    noop: int = 10000  # the NOOP session keeps its count in --quick
    cmds: int = 3000
    sess_secs: float = 4
    vs_sess_secs: float = 3
    qsess_secs: float = 2  # sequential sessions: packets queued per session
    clients: tuple = (1, 16, 128)
    vs_clients: tuple = (1, 16)  # vsftpd's listen backlog of 32 loses connections at 128
    bulk: int = 1 << 30
    stream_secs: float = 4
    stream_mss: int = 120
    trace_secs: float = 2  # sequential sessions under strace


QUICK = Sizes(cmds=1000, sess_secs=2, vs_sess_secs=1.5, qsess_secs=1, stream_secs=2, trace_secs=1)

ALL_CPUS = None
ONE_CPU = {"client": {0}, "server": {0}, "program": {0}}  # a wake-up on the other CPU costs ~25 us
OTHER_CPU = {"client": {0}, "server": {0}, "program": {1}}


@dataclass(frozen=True)
class Test:
    """One measurement: `ftpload ARGV` in the client's namespace (stream:
    the stream test's own steps), recorded as TEST and PARAM in
    results.jsonl. Placeholders in argv: {target}, {sha_1k}, {bulk_name},
    {bulk_size}, {sha_bulk}. group: its name for --only; cpus: where client,
    server and queue program run (None: anywhere); program_only: only where
    a queue program runs; flush: the gateway's conntrack table emptied after
    it."""
    test: str
    param: str
    group: str
    server: str
    argv: tuple
    timeout: float
    cpus: dict = None
    program_only: bool = False
    flush: bool = False


def plan(sizes):
    """Every test of one gateway, in order, for both servers."""
    tests = []
    for server in ("ftpload", "vsftpd"):
        if server == "ftpload":
            rtt = ("rtt", "--target", "{target}", "--cmd")
            tests += [
                Test("rtt", "NOOP", "rtt", server, rtt + ("noop", "--count", str(sizes.noop)), 120, ONE_CPU),
                # The same session with 1 NOOP: what the NOOP session queues
                # besides its NOOPs (handshake, login, warm-up, QUIT, close).
                Test("rtt", "NOOP-base", "rtt", server, rtt + ("noop", "--count", "1"), 60, ONE_CPU),
                Test("rtt", "PASV", "rtt", server, rtt + ("pasv", "--count", str(sizes.cmds)), 120, ONE_CPU),
                Test("rtt", "PORT", "rtt", server, rtt + ("port", "--count", str(sizes.cmds)), 120, ONE_CPU),
                Test("rtt", "NOOP-other-cpu", "rtt", server, rtt + ("noop", "--count", str(sizes.noop)), 120,
                     OTHER_CPU, program_only=True),
            ]
        secs = sizes.sess_secs if server == "ftpload" else sizes.vs_sess_secs
        for k in sizes.clients if server == "ftpload" else sizes.vs_clients:
            tests.append(Test("sessions", f"{server}-K{k}", "sessions", server, sessions_argv(k, secs, MODES),
                              int(secs) + 60, flush=True))
        for kind, modes in (("passive", ("pasv", "epsv")), ("active", ("port", "eprt"))):
            tests.append(Test("queued-sessions", f"{server}-{kind}", "sessions", server,
                              sessions_argv(1, sizes.qsess_secs, modes), int(sizes.qsess_secs) + 60, flush=True))
        if server == "ftpload":
            tests.append(Test("syscalls", f"{server}-sequential", "syscalls", server,
                              sessions_argv(1, sizes.trace_secs, MODES), int(sizes.trace_secs) + 60,
                              program_only=True, flush=True))
        tests.append(Test("bulk", server, "bulk", server,
                          ("bulk", "--target", "{target}", "--file", "{bulk_name}", "--size", "{bulk_size}",
                           "--sha256", "{sha_bulk}"), 300))
        if server == "ftpload":
            tests.append(Test("stream", f"mss{sizes.stream_mss}", "stream", server,
                              ("stream", "--target", "{target}", "--duration", f"{sizes.stream_secs:g}",
                               "--mss", str(sizes.stream_mss)), int(sizes.stream_secs) + 30))
    return tests


def sessions_argv(clients, secs, modes):
    return ("sessions", "--target", "{target}", "--clients", str(clients), "--duration", f"{secs:g}",
            "--modes", ",".join(modes), "--file", "1k.bin", "--size", "1024", "--sha256", "{sha_1k}")


def modes_of(test, column):
    """The data connection modes of test that column can do (None: the
    test names none)."""
    if "--modes" not in test.argv:
        return None
    return tuple(m for m in test.argv[test.argv.index("--modes") + 1].split(",") if m in column.modes)


def argv_for(test, column):
    """test's argv with only the modes column can do."""
    modes = modes_of(test, column)
    if modes is None:
        return test.argv
    at = test.argv.index("--modes") + 1
    return test.argv[:at] + (",".join(modes),) + test.argv[at + 1:]


def selected(column, tests, opts):
    """The tests a gateway runs, given the options."""
    only = opts.only.split(",")
    return [t for t in tests
            if t.group in only and t.group in column.tests and t.server in column.servers
            and (t.server != "vsftpd" or not opts.no_vsftpd)
            and (column.program is not None or not t.program_only) and modes_of(t, column) != ()]


def summary(result):
    """One line about a client's result, for the progress log."""
    t = result.get("test")
    if t == "rtt":
        return f"median {result['median_us']:.1f} us, p99 {result['p99_us']:.1f} us"
    if t == "sessions":
        return (f"{result['per_s']:.0f} sessions/s ({result['ok']} ok, {result['failed']} failed) "
                + "; ".join(result.get("errors", [])[:1]))
    if t == "bulk":
        return f"{result['mib_s']:.0f} MiB/s, sha256 {'ok' if result['sha256_ok'] else 'MISMATCH'}"
    if t == "stream":
        return f"{result['lines_sent']} lines in {result['secs']:.1f} s, {'none lost' if result['ok'] else 'LOST'}"
    return json.dumps(result)[:100]


# --- what the lab gives a test --------------------------------------------------

def log(text):
    print(f"bench: {text}", file=sys.stderr, flush=True)


class CpuGroups:
    """cpuacct cgroups of the server, the gateway's program and the client:
    CPU time per group in nanoseconds."""

    def __init__(self):
        self.path = os.path.join(CG_ROOT, f"{TAG}-{os.getpid()}")

    def setup(self):
        if not os.path.isdir(CG_ROOT):
            raise LabError(f"no cpuacct cgroup hierarchy at {CG_ROOT}")
        for g in CG_GROUPS:
            os.makedirs(os.path.join(self.path, g), exist_ok=True)

    def joiner(self, group, cpus=None):
        """A preexec function: the child joins group (before `ip netns
        exec`, which mounts a sysfs without the cgroups) and runs on cpus."""
        procs = os.path.join(self.path, group, "cgroup.procs")

        def join():
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
            if cpus:
                os.sched_setaffinity(0, cpus)
        return join

    def usage(self):
        out = {}
        for g in CG_GROUPS:
            with open(os.path.join(self.path, g, "cpuacct.usage")) as f:
                out[g] = int(f.read())
        return out

    def remove(self):
        """Anything left in the groups is ours: killed by id; the groups go."""
        for g in CG_GROUPS:
            path = os.path.join(self.path, g)
            procs = os.path.join(path, "cgroup.procs")
            if not os.path.exists(procs):
                continue
            for pid in self.pids(procs):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                wait_until(f"cgroup {path} empty", lambda: not self.pids(procs), timeout=3)
                os.rmdir(path)
            except (LabError, OSError) as e:
                log(f"warning: {e}")
        try:
            os.rmdir(self.path)
        except OSError:
            pass

    @staticmethod
    def pids(procs):
        with open(procs) as f:
            return [int(p) for p in f.read().split()]


def machine_ticks():
    """(busy, total) USER_HZ ticks of every CPU (busy: not idle, not iowait)."""
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields[0] == "cpu":
                ticks = [int(x) for x in fields[1:]]
                return sum(ticks) - ticks[3] - ticks[4], sum(ticks)
    raise LabError("/proc/stat has no cpu line")


def pin(pid, cpus):
    """Every thread of pid on cpus (None: every CPU)."""
    cpus = cpus or set(range(os.cpu_count()))
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, OSError):
            pass


def heavy_neighbours():
    """Processes of another build, capture or live test matrix."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) in (os.getpid(), os.getppid()):
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if comm in HEAVY_COMMANDS or HEAVY_ARGS.search(args):
            found.append(f"{pid} {args[:100]}")
    return found


VSFTPD_SETTINGS = [
    "listen=YES", "listen_ipv6=NO", "background=NO", "anonymous_enable=YES", "local_enable=NO",
    "no_anon_password=YES", "write_enable=NO", "seccomp_sandbox=NO",
    # The no-helper gateway only routes: PORT must announce the client's own
    # address, which vsftpd refuses unless promiscuous (then not from port 20).
    "port_promiscuous=YES", "connect_from_port_20=NO", "pasv_enable=YES", "port_enable=YES",
    "dirmessage_enable=NO", "xferlog_enable=NO", "max_clients=0", "max_per_ip=0",
    "idle_session_timeout=60", "data_connection_timeout=30", "connect_timeout=10", "accept_timeout=10",
]


class BenchServer:
    """A server of the benchmark: IPv4 on port 21 in the server's namespace,
    its CPU accounted to the server's cgroup (preexec), its output and
    configuration in the run's directory (work)."""

    preexec = None
    work = None

    def start(self, namespaces):
        self.check_installed()
        for ns in namespaces:
            log_path = os.path.join(self.work, f"server-{self.kind}.log")
            daemon = Daemon(f"{self.kind} in {ns}", self.argv(ns), ns, log_path, preexec=self.preexec).start()
            self.daemons.append(daemon)
            wait_listening(daemon, ns, listening4)
        return self


def listening4(ns):
    return "0.0.0.0:21" in run(["ss", "-ltnH", "sport = :21"], ns=ns, check=False).stdout


class BenchVsftpd(BenchServer, Vsftpd):
    """vsftpd (fork per session) as a benchmark wants it: IPv4, no
    logging, no client limit."""

    def argv(self, ns):
        path = os.path.join(self.work, "vsftpd.conf")
        with open(path, "w") as f:
            f.write("\n".join([f"# generated by the lab harness's benchmark (tests/lab/bench.py) for {ns}",
                               f"anon_root={self.files.anon}", f"secure_chroot_dir={self.files.root}/empty",
                               *VSFTPD_SETTINGS]) + "\n")
        return ["vsftpd", path]


class FtploadServer(BenchServer, FtpServer):
    """ftpload's own server (thread per connection, RETR with sendfile)."""
    kind = "ftpload"
    ftpload = None

    def check_installed(self):
        if not os.access(self.ftpload, os.X_OK):
            raise LabError(f"{self.ftpload} missing: cargo build --release -p ftpload (or --ftpload PATH)")

    def argv(self, ns):
        return [self.ftpload, "server", "--listen", "0.0.0.0:21", "--root", self.files.anon]


# --- the run ---------------------------------------------------------------------------

class Bench:
    def __init__(self, opts):
        self.opts = opts
        self.sizes = QUICK if opts.quick else Sizes()
        self.columns = [c for c in COLUMNS if c.enabled(opts)]
        self.topo = Topology("snat", opts.prefix)
        self.cg = CpuGroups()
        self.work = opts.out
        self.files = None
        self.values = {}  # the tests' placeholders
        self.round = 0
        self.column = None  # the gateway set up now
        self.inserted = []  # (ipt, table, chain, rule) inserted by the column
        self.rules_applied = None
        self.program = None
        self.program_name = ""
        self.server = None
        self.server_kind = None
        self.busy_note = ""

    # --- set-up and teardown --------------------------------------------------

    def setup(self):
        self.cg.setup()
        log(f"lab up (snat, namespaces {self.opts.prefix}cli/gw/srv)")
        self.topo.build()
        # Thousands of sessions per second, the same settings for every
        # gateway: the kernel's default conntrack timeouts in the gateway
        # (TIME_WAIT 120 s: new sessions reuse tuples conntrack still holds,
        # as on a busy gateway; the table is flushed between measurements);
        # at the ends, wide port ranges and at most 2048 TIME_WAIT sockets
        # (the servers close first: 60 s of TIME_WAIT would pile up 100,000
        # sockets, slow every connect() and bind() down and penalise
        # whichever gateway comes later in a round).
        for ns in (self.topo.cli_ns, self.topo.ns("srv")):
            run(["sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000", "net.ipv4.tcp_tw_reuse=1",
                 "net.ipv4.tcp_max_tw_buckets=2048", "net.core.somaxconn=4096",
                 "net.ipv4.tcp_max_syn_backlog=4096"], ns=ns)
        log("test files")
        self.files = FtpRoot(os.path.join(self.work, "root")).build()
        bulk_name = f"bulk-{self.sizes.bulk}.bin"
        self.values = {"target": f"{self.topo.target('v4')}:21", "sha_1k": self.files.served_sha("1k.bin"),
                       "bulk_name": bulk_name, "bulk_size": str(self.sizes.bulk), "sha_bulk": "",
                       "ftpct": self.opts.ftpct, "ftpload": self.opts.ftpload,
                       "queues": self.opts.ftpct_queues, "busy_poll": str(self.opts.ftpct_busy_poll),
                       "ftp_proxy": FTP_PROXY,
                       "ftp_proxy_conf": ftp_proxy_conf(os.path.join(self.work, "ftp-proxy.conf"),
                                                        self.topo.target("v4"))}
        if "bulk" in self.opts.only.split(","):
            path = os.path.join(self.files.anon, bulk_name)
            with open(path, "wb") as f:
                subprocess.run([self.opts.ftpload, "gen", "--size", str(self.sizes.bulk)], stdout=f, check=True,
                               timeout=300)
            os.chmod(path, 0o644)
            self.values["sha_bulk"] = self.files.served_sha(bulk_name)

    def teardown(self):
        for what in (self.server_stop, self.program_stop):
            try:
                what()
            except LabError as e:
                log(f"warning: {e}")
        if self.rules_applied is not None or self.column is not None:
            run(in_gw_argv(self.topo, self.opts.ftpct, "rules", "--delete"), check=False)
        self.topo.destroy()
        self.cg.remove()
        if self.files is not None:  # the served files (1 GiB): not kept with the results
            shutil.rmtree(self.files.root, ignore_errors=True)

    def wait_quiet(self):
        waited = 0
        limit = int(os.environ.get("FTPCT_BENCH_BUSY_WAIT", "300"))
        while busy := heavy_neighbours():
            if waited >= limit:
                self.busy_note = f"machine busy after waiting {limit}s: " + "; ".join(busy[:3])
                log(f"warning: {self.busy_note}")
                return
            if waited == 0:
                log(f"other heavy processes are running, waiting (at most {limit}s):\n  " + "\n  ".join(busy[:5]))
            time.sleep(10)
            waited += 10
        if waited:
            self.busy_note = f"waited {waited}s for other heavy processes to finish"

    # --- the gateway's pieces ---------------------------------------------------

    def gw(self, *argv, check=True):
        return run(argv, ns=self.topo.gw_ns, check=check)

    def fill(self, args):
        return [a.format(**self.values) for a in args]

    def enter(self, column):
        self.column = column
        for table, chain, *rule in column.insert:
            for ipt in column.families:
                self.gw(ipt, "-t", table, "-I", chain, "1", "-m", "comment", "--comment", f"{TAG}-{column.key}",
                        *rule)
                self.inserted.append((ipt, table, chain, rule))
        if column.kernel_helper:
            kernel_helper(self.topo, True)
        if column.rules is not None:
            self.rules_applied = column.rules
            self.ftpct_rules("--apply", *self.fill(column.rules))
        if column.program is not None:
            self.program_start()
        self.topo.flush_conntrack()

    def leave(self):
        column, self.column = self.column, None
        self.program_stop()
        if self.rules_applied is not None:
            self.rules_applied = None
            self.ftpct_rules("--delete")
        if column.kernel_helper:
            kernel_helper(self.topo, False)
        while self.inserted:
            ipt, table, chain, rule = self.inserted.pop()
            self.gw(ipt, "-t", table, "-D", chain, "-m", "comment", "--comment", f"{TAG}-{column.key}", *rule)
        # A queue rule left behind would queue the next gateways' packets.
        counted = self.queue_counters()
        if counted is None:
            raise LabError("cannot list the gateway's raw table (iptables -t raw -nvxL)")
        if counted[1]:
            raise LabError(f"gateway {column.key}: {counted[1]} NFQUEUE rule(s) left in the gateway's raw table "
                           "after `ftpct rules --delete`")
        self.topo.flush_conntrack()

    def ftpct_rules(self, *args):
        argv = in_gw_argv(self.topo, self.opts.ftpct, "rules", *args)
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        with open(os.path.join(self.work, "rules.log"), "a") as f:
            f.write(f"# ftpct rules {shlex.join(args)}\n{done.stdout}{done.stderr}")
        if done.returncode:
            last = " ".join(line for line in (done.stdout + done.stderr).splitlines() if line.strip())[-300:]
            raise LabError(f"gateway {getattr(self.column, 'key', '?')}: `ftpct rules {shlex.join(args)}` failed: "
                           f"{last} (see {self.work}/rules.log)")

    def program_start(self):
        column = self.column
        argv = self.fill(column.program)
        self.program_name = column.key
        path = os.path.join(self.work, f"{column.key}-r{self.round}-{time.strftime('%H%M%S')}"
                                       f"-{time.monotonic_ns() % 10**9}.log")
        self.program = Daemon(f"gateway {column.key}: {os.path.basename(argv[0])}",
                              argv, self.topo.gw_ns, path, preexec=self.cg.joiner("gw")).start()
        try:
            wait_until(f"{self.program.name} ready", lambda: not self.program.alive() or column.ready(self),
                       timeout=5)
        except LabError:
            raise self.program.fail("was not ready (queue 0 not bound) within 5 s") from None
        if not self.program.alive():
            raise self.program.fail("exited at start-up")

    def program_stop(self):
        """Stops the program; the packets its engine saw (engine_count: from
        its last log line), else None."""
        program, self.program = self.program, None
        if program is None:
            return None
        if not program.stop(timeout=10):
            log(f"warning: {program.name} did not stop in 10 s: killed")
        if not COLUMN[self.program_name].engine_count:
            return None
        with open(program.log_path, "rb") as f:
            text = ANSI.sub("", f.read().decode(errors="replace"))
        found = re.findall(r"stopped:.* packets=(\d+)", text)
        return int(found[-1]) if found else 0

    def server_start(self, kind):
        self.server_stop()
        if kind == "ftpload":
            srv = FtploadServer(self.files, fxp=False)
            srv.ftpload = self.opts.ftpload
        else:
            srv = BenchVsftpd(self.files, fxp=False)
        srv.preexec, srv.work = self.cg.joiner("srv"), self.work
        self.server, self.server_kind = srv, kind
        srv.start([self.topo.ns("srv")])

    def server_stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = self.server_kind = None
            # vsftpd's session processes go with their control connection.
            try:
                wait_until("the server's processes gone", lambda: not ns_pids(self.topo.ns("srv")), timeout=5)
            except LabError as e:
                log(f"warning: {e}")

    # --- counters ---------------------------------------------------------------------

    def queue_table(self):
        """/proc/net/netfilter/nfnetlink_queue of the gateway, split."""
        out = self.gw("cat", "/proc/net/netfilter/nfnetlink_queue", check=False).stdout
        return [line.split() for line in out.splitlines() if line.split()]

    def queue_stats(self):
        """Queue 0: total, dropped, user_dropped, id_sequence (0s when unbound)."""
        for f in self.queue_table():
            if f[0] == "0":
                return [int(f[2]), int(f[5]), int(f[6]), int(f[7])]
        return [0, 0, 0, 0]

    def queue_socket_drops(self):
        """Packets the kernel could not deliver to queue 0's socket (its
        receive buffer was full): with fail-open they passed uninspected."""
        portid = next((f[1] for f in self.queue_table() if f[0] == "0"), None)
        for f in (line.split() for line in self.gw("cat", "/proc/net/netlink").stdout.splitlines()[1:]):
            if len(f) > 8 and f[1] == "12" and f[2] == portid:
                return int(f[8])
        return 0

    def queue_counters(self):
        """(packets, rules) of the NFQUEUE rules of the gateway's raw table,
        every chain, both families summed; None when a table cannot be listed."""
        packets = rules = 0
        for ipt in ("iptables", "ip6tables"):
            done = subprocess.run(in_gw_argv(self.topo, ipt, "-t", "raw", "-n", "-v", "-x", "-L"),
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            if done.returncode:
                return None
            # iptables-nft prints a NUL byte in the description of a bpf match.
            for line in done.stdout.replace(b"\0", b"").decode(errors="replace").splitlines():
                f = line.split()
                if len(f) > 2 and f[2] == "NFQUEUE" and f[0].isdigit():
                    packets += int(f[0])
                    rules += 1
        return packets, rules

    def queued_packets(self):
        counted = self.queue_counters()
        return None if counted is None else counted[0]

    def count_rule(self, op):
        rule = ["-p", "tcp", "-m", "multiport", "--ports", "21", "-m", "comment", "--comment", f"{TAG}-count"]
        self.gw("iptables", "-t", "raw", op, "PREROUTING", *(["1"] if op == "-I" else []), *rule)

    def netlink_requests(self):
        """ftpct's netlink requests so far, {(operation, waited): n} from its
        metrics (None: no program with them, e.g. a binary without the metric)."""
        if self.program is None or not COLUMN[self.program_name].engine_count:
            return None
        url = f"http://{METRICS}/metrics"
        done = self.gw("python3", "-c", f"import urllib.request; print(urllib.request.urlopen('{url}', "
                       "timeout=5).read().decode())", check=False)
        found = NETLINK_REQUESTS.findall(done.stdout or "")
        return {(op, waited): int(n) for op, waited, n in found} or None

    def counted_packets(self):
        for line in self.gw("iptables", "-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n").stdout.splitlines():
            if f"{TAG}-count" in line:
                return int(line.split()[0])
        return 0

    def offloads(self, on):
        """Segmentation offloads of the two end hosts."""
        for ns, iface in ((self.topo.cli_ns, "cli0"), (self.topo.ns("srv"), "srv0")):
            run(["ethtool", "-K", iface, "tso", on, "gso", on], ns=ns, check=False)

    # --- measurements ---------------------------------------------------------------

    def record(self, test, cpu, result):
        row = {"round": self.round, "mode": self.column.key, "test": test.test, "param": test.param,
               "cpu": cpu, "result": result}
        with open(os.path.join(self.work, "results.jsonl"), "a") as f:
            f.write(json.dumps(row) + "\n")

    def client(self, test, cpus):
        """Runs ftpload's client; (exit status, its JSON result or None)."""
        argv = ["ip", "netns", "exec", self.topo.cli_ns, self.opts.ftpload, *self.fill(argv_for(test, self.column))]
        with open(os.path.join(self.work, "client.log"), "ab") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                    start_new_session=True, preexec_fn=self.cg.joiner("cli", cpus))
            try:
                out, _ = proc.communicate(timeout=test.timeout)
                status = proc.returncode
            except subprocess.TimeoutExpired:
                out, status = b"", 124
                for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                    try:
                        os.killpg(proc.pid, sig)
                        proc.communicate(timeout=wait)
                        break
                    except ProcessLookupError:
                        break
                    except subprocess.TimeoutExpired:
                        continue
        try:
            result = json.loads(out) if out.strip() else None
        except ValueError:
            result = None
        return status, result

    def failed(self, test, status, cpu):
        log(f"  {self.column.key} {test.test} {test.param}: FAILED (exit {status}): "
            + " ".join(tail_lines(os.path.join(self.work, "client.log"), 2)))
        self.record(test, cpu, {"failed": True, "exit": status})

    def measure(self, test):
        cpus = test.cpus or {}
        if self.server:
            for daemon in self.server.daemons:
                pin(daemon.pid, cpus.get("server"))
        if self.program:
            pin(self.program.pid, cpus.get("program"))
        if test.test == "stream":
            self.stream(test)
            return
        q0, n0 = self.queued_packets(), self.netlink_requests()
        tracer = self.trace_start() if test.test == "syscalls" else None
        u0, (b0, t0), w0 = self.cg.usage(), machine_ticks(), time.monotonic()
        status, result = self.client(test, cpus.get("client"))
        w1, (b1, t1), u1 = time.monotonic(), machine_ticks(), self.cg.usage()
        wall = w1 - w0
        # CPU in % of one core over the wall time; the machine's busy share of all.
        cpu = {"wall_s": round(wall, 3), "srv_pct": pct(u1["srv"] - u0["srv"], wall),
               "ftpct_pct": pct(u1["gw"] - u0["gw"], wall), "cli_pct": pct(u1["cli"] - u0["cli"], wall),
               "ftpct_cpu_s": round((u1["gw"] - u0["gw"]) / 1e9, 4),
               "machine_busy_pct": round(100 * (b1 - b0) / (t1 - t0), 1) if t1 > t0 else 0,
               "cpus": os.cpu_count()}
        # The client's last FIN and its ACK may cross after the client exits.
        time.sleep(0.1)
        q1 = self.queued_packets()
        cpu["queued"] = q1 - q0 if q0 is not None and q1 is not None else None
        if tracer is not None:
            cpu["syscalls"] = self.trace_stop(*tracer)
        n1 = self.netlink_requests()
        if n0 is not None and n1 is not None:
            cpu["netlink"] = {f"{op} {w}": n1[(op, w)] - n0.get((op, w), 0) for op, w in n1
                              if n1[(op, w)] != n0.get((op, w), 0)}
        if status or result is None:
            self.failed(test, status, cpu)
        else:
            self.record(test, cpu, result)
            log(f"  {self.column.key} {test.test} {test.param}: {summary(result)}; {cpu['queued']} packets queued")
        if test.flush:
            self.topo.flush_conntrack()
            # ftpct believes a destroy event a second after it came (and
            # may ask conntrack then): its requests stay out of the next
            # test's netlink figures.
            if self.netlink_requests() is not None:
                time.sleep(SETTLE_S)

    def trace_start(self):
        """`strace -c -f` attached to the gateway's program, every thread
        (and, -f, every child it forks from now on); (process, summary
        file) once every thread is attached, None (a warning) when strace
        cannot attach: the run goes on without the figure."""
        path = os.path.join(self.work, f"strace-{self.column.key}-r{self.round}")
        # FTPCT_BENCH_STRACE_CALLS: every call kept (descriptors named), counted from that.
        mode = ["-yy", "-o", path + ".calls"] if os.environ.get("FTPCT_BENCH_STRACE_CALLS") else ["-c", "-o", path + ".txt"]
        with open(path + ".log", "wb") as err:
            proc = subprocess.Popen(["strace", "-f", *mode, "-p", str(self.program.pid)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                    start_new_session=True)

        def attached():  # "Process PID attached [with N threads]", once all are
            with open(path + ".log", errors="replace") as f:
                return proc.poll() is None and " attached" in f.read()
        try:
            wait_until("strace attached to every thread", attached, timeout=10)
        except LabError:
            self.trace_stop(proc, path)
            log(f"warning: strace did not attach to {self.program.name}: " + " ".join(tail_lines(path + ".log", 3)))
            return None
        return proc, path

    def trace_stop(self, proc, path):
        """Detaches strace; {system call: calls} from its summary (or
        its calls, beside which the threads' names are kept)."""
        keep_thread_names(self.program.pid, path + ".threads")
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
                log(f"warning: strace on {self.program_name} did not stop in 10 s: killed")
        try:
            if os.path.exists(path + ".calls"):
                with open(path + ".calls", errors="replace") as f:
                    return strace_call_counts(f.read())
            with open(path + ".txt") as f:
                return strace_counts(f.read())
        except FileNotFoundError:
            return None

    def stream(self, test):
        """Packets through the gateway (a counting rule first in raw
        PREROUTING) and what the queue program saw of them; one packet per
        segment everywhere, so that rule counters count segments."""
        self.offloads("off")
        self.count_rule("-I")
        restart = self.column.queue_program
        if restart:  # a fresh queue program: its counts are the stream's alone
            self.program_stop()
            self.program_start()
        q0 = self.queue_stats()
        u0, (b0, t0), w0 = self.cg.usage(), machine_ticks(), time.monotonic()
        status, result = self.client(test, None)
        w1, (b1, t1), u1 = time.monotonic(), machine_ticks(), self.cg.usage()
        q1 = self.queue_stats()
        counted = self.counted_packets()
        seen = drops = 0
        if restart:
            drops = self.queue_socket_drops()
            engine_seen = self.program_stop()
            # ftpct counts what its engine saw; another program, what reached it.
            seen = engine_seen if engine_seen is not None else q1[3] - q0[3] - drops
            self.program_start()
        self.count_rule("-D")
        self.offloads("on")
        wall = w1 - w0
        cpu = {"counted": counted, "seen": seen, "socket_drops": drops, "queued": q1[3] - q0[3],
               "queue_dropped": q1[1] - q0[1], "queue_user_dropped": q1[2] - q0[2], "wall_s": round(wall, 3),
               "srv_pct": pct(u1["srv"] - u0["srv"], wall), "ftpct_pct": pct(u1["gw"] - u0["gw"], wall),
               "ftpct_cpu_s": round((u1["gw"] - u0["gw"]) / 1e9, 4),
               "machine_busy_pct": round(100 * (b1 - b0) / (t1 - t0), 1) if t1 > t0 else 0,
               "cpus": os.cpu_count()}
        if status or result is None:
            self.failed(test, status, cpu)
            return
        self.record(test, cpu, result)
        log(f"  {self.column.key} stream: {summary(result)}, {counted} packets at the gateway"
            + (f", {self.program_name} saw {seen}" if restart else ""))

    def run_column(self, column, tests):
        log(f"round {self.round}, gateway {column.key}")
        self.enter(column)
        try:
            for test in tests:
                if test.server != self.server_kind:
                    self.server_start(test.server)
                self.measure(test)
        finally:
            self.server_stop()
            self.leave()

    def run(self):
        tests = plan(self.sizes)
        runs = {c.key: selected(c, tests, self.opts) for c in self.columns}
        for c in self.columns:
            if not runs[c.key]:
                log(f"gateway {c.key}: none of the tests asked for" + (f" (it cannot run: {c.cannot})" if c.cannot
                                                                       else ""))
        columns = [c for c in self.columns if runs[c.key]]
        self.wait_quiet()
        for self.round in range(1, self.opts.rounds + 1):
            for i in range(len(columns)):
                column = columns[(i + self.round - 1) % len(columns)]
                self.run_column(column, runs[column.key])
        self.round = 0


def strace_counts(text):
    """{system call: calls} of an `strace -c` summary."""
    counts = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            counts[f[-1]] = int(f[3])
    return counts


STRACE_CALL = re.compile(r"^\d+\s+(\w+)\(")


def strace_call_counts(text):
    """{system call: calls} of an `strace -f` log (a call interrupted and
    resumed counts once)."""
    counts = {}
    for line in text.splitlines():
        m = STRACE_CALL.match(line)
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return counts


def keep_thread_names(pid, path):
    """The names of pid's threads, "TID NAME" a line, into path."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
        names = []
        for tid in tids:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names.append(f"{tid} {f.read().strip()}")
        with open(path, "w") as f:
            f.write("\n".join(names) + "\n")
    except OSError:
        pass


def in_gw_argv(topo, *argv):
    return ["ip", "netns", "exec", topo.gw_ns, *argv]


def pct(ns, wall):
    return round(100 * ns / 1e9 / wall, 1) if wall > 0 else 0


def tail_lines(path, n):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()[-n:]
    except FileNotFoundError:
        return []


# --- the table ---------------------------------------------------------------------

# Sequential sessions of the packets-queued rows: at least this many where
# a queue program runs (a gateway without one queues nothing, however few).
MIN_QUEUED_SESSIONS = 20


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def failed_run(row):
    """The client failed (exit status, no result): {"failed": true}. A
    sessions result's "failed" is its count of failed sessions."""
    return (row.get("result") or {}).get("failed") is True


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Table:
    """Medians over rounds per gateway, ratios of ftpct's against the
    columns with ratio, verdicts against the targets; the problems seen."""

    def __init__(self, rows, columns=None):
        columns = columns or COLUMNS
        self.rows = rows
        present = {r["mode"] for r in rows}
        self.all = columns
        self.columns = [c for c in columns if not c.optional or c.key in present]
        # The kernel's helper first: the reference of every target.
        self.ratios = sorted((c for c in self.columns if c.ratio), key=lambda c: c.key != "kernel")
        self.queued = {c.key for c in columns if c.queue_program}
        self.programs = {c.key for c in columns if c.program is not None}
        self.lines = []
        self.misses = []
        self.problems = []

    def problem(self, text):
        if text not in self.problems:
            self.problems.append(text)

    def values(self, test, param, fn):
        """Per gateway: the list of fn(row) over rounds (None when failed)."""
        out = {c.key: [] for c in self.all}
        for r in self.rows:
            if r["test"] == test and r["param"] == param and r["mode"] in out:
                if failed_run(r):
                    out[r["mode"]].append(None)
                    self.problem(f"{r['mode']} {test} {param} round {r['round']}: failed")
                    continue
                out[r["mode"]].append(fn(r))
        return out

    def add(self, label, unit, vals, fmt="{:.0f}", target=None):
        """target: (kind, limit) with kind 'min_cb' (c/b >= limit), 'max_cb'
        (c/b <= limit), 'min_c' (c >= limit) or 'max_c' (c <= limit, c as
        printed: fmt's rounding is the tolerance)."""
        med = {c.key: median(vals[c.key]) for c in self.all}
        if all(med[c.key] is None for c in self.columns):
            return
        c = med[SUBJECT]
        ratio = {o.key: c / med[o.key] if c is not None and med[o.key] else None for o in self.ratios}
        cb = ratio.get("kernel")
        verdict = ""
        if target:
            kind, limit = target
            ok = True
            if kind == "min_cb" and cb is not None:
                ok = cb >= limit
                verdict = f"c/b >= {limit}: " + ("ok" if ok else "MISS")
            elif kind == "max_cb" and cb is not None:
                ok = cb <= limit
                verdict = f"c/b <= {limit}: " + ("ok" if ok else "MISS")
            elif kind == "min_c" and c is not None:
                ok = c >= limit
                verdict = f">= {limit:,.0f}: " + ("ok" if ok else "MISS")
            elif kind == "max_c" and c is not None:
                ok = float(fmt.format(c)) <= limit
                verdict = f"<= {limit:,.0f}: " + ("ok" if ok else "MISS")
            if not ok:
                self.misses.append(label)
        n = max(len([v for v in vals[col.key] if v is not None]) for col in self.columns)
        self.lines.append((label, unit, *("-" if med[col.key] is None else fmt.format(med[col.key])
                                          for col in self.columns),
                           *("-" if ratio[o.key] is None else f"{ratio[o.key]:.2f}" for o in self.ratios),
                           verdict, n))

    def render(self):
        subject = COLUMN[SUBJECT].letter
        head = ("figure (median over rounds)", "unit", *(c.heading for c in self.columns),
                *(f"{subject}/{o.letter}" for o in self.ratios), "target", "n")
        rows = [head] + [tuple(str(x) for x in line) for line in self.lines]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        out = []
        for i, r in enumerate(rows):
            left = (0, 1, len(head) - 2)
            out.append("  ".join(cell.ljust(widths[j]) if j in left else cell.rjust(widths[j])
                                 for j, cell in enumerate(r)).rstrip())
            if i == 0:
                out.append("  ".join("-" * w for w in widths))
        return "\n".join(out)


def table(rows):
    """The table of results.jsonl's rows, its targets missed and problems:
    the text the run prints after its header."""
    t = Table(rows)
    res = lambda k: (lambda r: r["result"][k])  # noqa: E731
    cpu = lambda k: (lambda r: r["cpu"][k])  # noqa: E731
    rtt_rows(t, res)
    queued_rows(t)
    session_rows(t, res, cpu)
    bulk_rows(t, res, cpu)
    stream_rows(t, cpu)
    syscall_rows(t)
    lines = [t.render(), "", "targets missed: " + (", ".join(t.misses) if t.misses else "none")]
    cannot = [f"  {c.heading}: {c.cannot}" for c in t.columns if c.cannot and c.key in {r["mode"] for r in rows}]
    if cannot:
        lines += ["cannot run:"] + cannot
    if t.problems:
        lines += ["problems:"] + ["  " + p for p in t.problems]
    return "\n".join(lines)


def rtt_rows(t, res):
    for cmd, what in (("NOOP", "NOOP"), ("PASV", "PASV+227"), ("PORT", "PORT+200")):
        label = f"{what} round trip, median" + (", all on one CPU" if cmd == "NOOP" else "")
        t.add(label, "us", t.values("rtt", cmd, res("median_us")), "{:.1f}",
              ("max_cb", 1.05) if cmd == "NOOP" else None)
        t.add(f"{what} round trip, p99", "us", t.values("rtt", cmd, res("p99_us")), "{:.1f}")
        if cmd == "NOOP":
            # The queue program on the other CPU; a gateway without one repeats
            # its figure of the row above.
            same = t.values("rtt", "NOOP", res("median_us"))
            other = t.values("rtt", "NOOP-other-cpu", res("median_us"))
            for c in t.all:
                if c.key not in t.programs:
                    other[c.key] = same[c.key]
            t.add("NOOP round trip, median, queue program on the other CPU", "us", other, "{:.1f}",
                  ("max_cb", 1.05))


def queued_of(r):
    return (r.get("cpu") or {}).get("queued")


def queued_rows(t):
    """Packets queued: the NFQUEUE rules' counters (a gateway without queue
    rules counts 0). Per NOOP: the NOOP session less the 1-NOOP session of
    the same round and gateway, over the NOOPs between them."""
    base = {(r["mode"], r["round"]): r for r in t.rows if r["test"] == "rtt" and r["param"] == "NOOP-base"}

    def per_noop(r):
        b = base.get((r["mode"], r["round"]))
        if b is None or failed_run(b):
            t.problem(f"{r['mode']} rtt NOOP round {r['round']}: no 1-NOOP session to subtract")
            return None
        n = r["result"]["count"] - b["result"]["count"]
        if queued_of(r) is None or queued_of(b) is None or n <= 0:
            return None
        return (queued_of(r) - queued_of(b)) / n

    t.add("packets queued per NOOP round trip", "pkt", t.values("rtt", "NOOP", per_noop), "{:.2f}", ("max_c", 0))

    def per_session(r):
        res = r["result"]
        few = r["mode"] in t.queued and res["ok"] + res["failed"] < MIN_QUEUED_SESSIONS
        if res["failed"] or few or not res["ok"]:
            t.problem(f"{r['mode']} queued-sessions {r['param']} round {r['round']}: {res['ok']} sessions ok, "
                      f"{res['failed']} failed (the figure needs >= {MIN_QUEUED_SESSIONS}, none failed)")
            return None
        return queued_of(r) / res["ok"] if queued_of(r) is not None else None

    qparams = {r["param"] for r in t.rows if r["test"] == "queued-sessions"}
    for srv in sorted({p.rsplit("-", 1)[0] for p in qparams}, key=lambda s: (s != "ftpload", s)):
        for kind, what, limit in (("passive", "PASV/EPSV", 4), ("active", "PORT/EPRT", 5)):
            t.add(f"packets queued per {kind} session ({what}), {srv}", "pkt",
                  t.values("queued-sessions", f"{srv}-{kind}", per_session), "{:.1f}", ("max_c", limit))
        for kind in ("passive", "active"):
            t.add(f"one {kind} session after another: its time, median, {srv}", "ms",
                  t.values("queued-sessions", f"{srv}-{kind}", session_ms), "{:.2f}")
        for kind in ("passive", "active"):
            for label, waited in (("netlink requests", None), ("  of them waited for (round trips)", "yes")):
                t.add(f"{label} per {kind} session, {srv}", "req",
                      t.values("queued-sessions", f"{srv}-{kind}", netlink_per_session(waited)), "{:.1f}")


def session_ms(r):
    """The client's median session time (ms; None from a client without it)."""
    us = r["result"].get("latency_median_us")
    return None if us is None else us / 1000


def netlink_per_session(waited):
    """fn(row): ftpct's netlink requests per session done (waited: "yes"
    counts only those waited for; None: all), from its metrics."""
    def per_session(r):
        counted, ok = (r.get("cpu") or {}).get("netlink"), r["result"]["ok"]
        if counted is None or not ok:
            return None
        return sum(n for key, n in counted.items() if waited is None or key.endswith(" " + waited)) / ok
    return per_session


def session_rows(t, res, cpu):
    """Sessions per second, and per session done the steadiest figures of a
    run (CPU time, not rates). The machine's: busy share of all its CPUs
    over the wall time."""
    def queue_cpu_per_session(r):
        ok = r["result"]["ok"]
        return 1e6 * r["cpu"]["ftpct_cpu_s"] / ok if ok and r["mode"] in t.programs else None

    def machine_cpu_per_session(r):
        ok, c = r["result"]["ok"], r["cpu"]
        cpus = c.get("cpus") or os.cpu_count()  # older results: the table is made where the run was
        return 1e6 * c["machine_busy_pct"] / 100 * cpus * c["wall_s"] / ok if ok else None

    sessions = [r for r in t.rows if r["test"] == "sessions"]
    servers = sorted({r["param"].split("-K")[0] for r in sessions}, key=lambda s: (s != "ftpload", s))
    ks = sorted({int(r["param"].split("-K")[1]) for r in sessions})
    for srv in servers:
        for k in ks:
            t.add(f"sessions/s, {srv}, K={k}", "1/s", t.values("sessions", f"{srv}-K{k}", res("per_s")),
                  target=("min_cb", 0.95))
        for k in ks:
            p = f"{srv}-K{k}"
            t.add(f"  server CPU, {srv}, K={k}", "% core", t.values("sessions", p, cpu("srv_pct")))
            t.add(f"  queue program CPU, {srv}, K={k}", "% core", t.values("sessions", p, cpu("ftpct_pct")))
            t.add(f"  client CPU, {srv}, K={k}", "% core", t.values("sessions", p, cpu("cli_pct")))
            t.add(f"  machine busy, {srv}, K={k}", "% all", t.values("sessions", p, cpu("machine_busy_pct")))
            t.add(f"  queue program CPU per session, {srv}, K={k}", "us",
                  t.values("sessions", p, queue_cpu_per_session))
            t.add(f"  machine CPU per session, {srv}, K={k}", "us", t.values("sessions", p, machine_cpu_per_session))
        for k in ks:
            p = f"{srv}-K{k}"
            fails = t.values("sessions", p, res("failed"))
            if any(v for c in t.columns for v in fails[c.key] if v):
                t.problem(f"sessions {p}: failed sessions per round "
                          + ", ".join(f"{c.key} {fails[c.key]}" for c in t.columns))


def bulk_rows(t, res, cpu):
    for srv in ("ftpload", "vsftpd"):
        t.add(f"bulk 1 GiB RETR, {srv}", "MiB/s", t.values("bulk", srv, res("mib_s")), target=("min_cb", 0.98))
        t.add(f"  server CPU, bulk, {srv}", "% core", t.values("bulk", srv, cpu("srv_pct")))
        t.add(f"  client CPU (SHA-256 included), bulk, {srv}", "% core", t.values("bulk", srv, cpu("cli_pct")))
        t.add(f"  machine busy, bulk, {srv}", "% all", t.values("bulk", srv, cpu("machine_busy_pct")))
        ok = t.values("bulk", srv, res("sha256_ok"))
        if any(x is False for c in t.all for x in ok[c.key]):
            t.problem(f"bulk {srv}: SHA-256 mismatch")


def stream_rows(t, cpu):
    queued = t.queued

    def per_pkt(r):
        n = r["cpu"]["seen"]
        return 1e6 * r["cpu"]["ftpct_cpu_s"] / n if n and r["mode"] in queued else None

    def capacity(r):
        n, s = r["cpu"]["seen"], r["cpu"]["ftpct_cpu_s"]
        return n / s if n and s and r["mode"] in queued else None

    def missed(r):
        return r["cpu"]["counted"] - r["cpu"]["seen"] if r["mode"] in queued else None

    for p in sorted({r["param"] for r in t.rows if r["test"] == "stream"}):
        t.add("stream: packets/s through the gateway", "pkt/s",
              t.values("stream", p, lambda r: r["cpu"]["counted"] / r["result"]["secs"]))
        t.add("stream: lines/s delivered", "lines/s",
              t.values("stream", p, lambda r: r["result"]["lines_received"] / r["result"]["secs"]))
        t.add("stream: queue program CPU per packet", "us", t.values("stream", p, per_pkt), "{:.2f}")
        t.add("stream: queue capacity (packets per CPU-second)", "pkt/s", t.values("stream", p, capacity),
              target=("min_c", 250_000))
        t.add("stream: queue program busy", "% core", t.values("stream", p, cpu("ftpct_pct")))
        t.add("stream: machine busy", "% all", t.values("stream", p, cpu("machine_busy_pct")))
        t.add("stream: packets not inspected", "pkt", t.values("stream", p, missed))
        for r in t.rows:
            if r["test"] != "stream" or r["param"] != p or failed_run(r):
                continue
            if not r["result"]["ok"]:
                t.problem(f"stream {r['mode']} round {r['round']}: lines lost or altered")
            if r["mode"] in queued and r["cpu"]["counted"] != r["cpu"]["seen"]:
                t.problem(f"stream {r['mode']} round {r['round']}: {r['cpu']['counted']} packets at the rule, "
                          f"{r['cpu']['seen']} inspected (socket drops {r['cpu']['socket_drops']})")


SENDS_RECEIVES = re.compile(r"^(send|recv)")


def syscalls_per_session(calls):
    """fn(row): the program's system calls per session done, those whose
    name calls matches (None: all)."""
    def per_session(r):
        counted, ok = (r.get("cpu") or {}).get("syscalls"), r["result"]["ok"]
        if counted is None or not ok:
            return None
        return sum(n for name, n in counted.items() if calls is None or calls.match(name)) / ok
    return per_session


def syscall_rows(t):
    for p in sorted({r["param"] for r in t.rows if r["test"] == "syscalls"}):
        srv = p.rsplit("-", 1)[0]
        t.add(f"system calls of the gateway's program per sequential session, {srv}", "calls",
              t.values("syscalls", p, syscalls_per_session(None)), "{:.1f}", ("max_c", 16))
        t.add(f"  of them sends and receives, {srv}", "calls",
              t.values("syscalls", p, syscalls_per_session(SENDS_RECEIVES)), "{:.1f}")


# --- the command ---------------------------------------------------------------------

def add_arguments(p):
    """The options of `python3 -m lab bench`."""
    p.add_argument("--quick", action="store_true",
                   help="~4 minutes: 2 rounds, shorter tests (the NOOP session keeps its 10,000 commands)")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds (default 5, --quick 2); each runs every test once per gateway, "
                        "the gateways in a rotating order")
    p.add_argument("--no-vsftpd", action="store_true", help="skip the vsftpd tests (sessions and bulk)")
    p.add_argument("--no-nfq", action="store_true", help="skip gateway (d), the do-nothing queue program")
    p.add_argument("--no-ftp-proxy", action="store_true", help="skip gateway (f), Debian's ftp-proxy")
    p.add_argument("--queue-all-too", action="store_true", help="add gateway (e) ftpctall")
    p.add_argument("--ftpct-queues", default="0", metavar="SPEC",
                   help="ftpct's queues for (c) and (e) (`ftpct rules|run --queues SPEC`, e.g. 0:1); default 0")
    p.add_argument("--ftpct-busy-poll", type=int, default=0, metavar="USEC",
                   help="`ftpct run --busy-poll USEC` for (c) and (e) (default 0)")
    p.add_argument("--only", default=",".join(TESTS), metavar="LIST",
                   help=f"run only these tests (comma-separated: {','.join(TESTS)})")
    p.add_argument("--out", metavar="DIR",
                   help="keep results.jsonl, logs and the table there (default: a fresh /tmp/ftpct-bench.*, kept)")
    p.add_argument("--ftpct", default=os.environ.get("FTPCT_BIN"),
                   help="the ftpct binary (default: FTPCT_BIN, else target/release/ftpct, built first)")
    p.add_argument("--ftpload", default=os.environ.get("FTPLOAD_BIN"),
                   help="the ftpload binary, client, server and `nfq-null` (default: FTPLOAD_BIN, "
                        "else target/release/ftpload, built first)")
    p.add_argument("--no-build", action="store_true",
                   help="neither scripts/install-deps.sh nor cargo build: use the binaries as they are")
    p.add_argument("--table", metavar="RESULTS",
                   help="print the table of a results.jsonl and exit (no root, nothing run)")


def help_text():
    """`bench --help`'s epilog: the module's documentation and the gateways."""
    lines = ["Gateways (COLUMNS), alternated within each round:"]
    for c in COLUMNS:
        switch = f" [--{c.option.replace('_', '-')}]" if c.option else ""
        lines.append(textwrap.fill(f"{c.heading}: {c.what}{switch}", width=78, initial_indent="  ",
                                   subsequent_indent="      ", break_on_hyphens=False))
    return __doc__.split("\n\n", 2)[2] + "\n" + "\n".join(lines)


def check_options(opts):
    opts.rounds = opts.rounds or (2 if opts.quick else 5)
    if not 1 <= opts.rounds <= 99:
        raise LabError("--rounds 1..99")
    unknown = [t for t in opts.only.split(",") if t not in TESTS]
    if unknown or not opts.only:
        raise LabError(f"--only: unknown test(s) {', '.join(unknown)} (of: {', '.join(TESTS)})")
    if not opts.prefix.startswith("ftpct-"):
        raise LabError("the namespace prefix must start with ftpct-")


def command_line(opts):
    """The options of this run, for the table's header."""
    parts = ["python3 -m lab bench"] + (["--quick"] if opts.quick else []) + ["--rounds", str(opts.rounds)]
    parts += [flag for flag, on in (("--no-vsftpd", opts.no_vsftpd), ("--no-nfq", opts.no_nfq),
                                    ("--no-ftp-proxy", opts.no_ftp_proxy), ("--queue-all-too", opts.queue_all_too))
              if on]
    if opts.ftpct_queues != "0":
        parts += ["--ftpct-queues", opts.ftpct_queues]
    if opts.ftpct_busy_poll:
        parts += ["--ftpct-busy-poll", str(opts.ftpct_busy_poll)]
    if opts.only != ",".join(TESTS):
        parts += ["--only", opts.only]
    return " ".join(parts)


def prepare(opts):
    """Dependencies and the release build (unless --no-build; only for the
    binaries not given), and that ftpct knows every flag the columns use."""
    own = [name for name in ("ftpct", "ftpload") if getattr(opts, name) is None]
    for name in ("ftpct", "ftpload"):
        if getattr(opts, name) is None:
            setattr(opts, name, os.path.join(REPO, "target", "release", name))
    if not opts.no_build:
        log("dependencies")
        if subprocess.run([os.path.join(REPO, "scripts", "install-deps.sh")], stdin=subprocess.DEVNULL).returncode:
            raise LabError("scripts/install-deps.sh failed")
        if own:
            log("build (release)")
            packages = [a for name in own for a in ("-p", name)]
            with open(os.path.join(opts.out, "build.log"), "w") as f:
                done = subprocess.run(["cargo", "build", "--release", "--locked", *packages], cwd=REPO,
                                      stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if done.returncode:
                raise LabError("cargo build failed:\n" + "\n".join(tail_lines(f.name, 20)))
    for name in ("ftpct", "ftpload"):
        if not os.access(getattr(opts, name), os.X_OK):
            raise LabError(f"{getattr(opts, name)} missing (--{name} PATH, or build it)")
    if COLUMN["ftp-proxy"].enabled(opts) and not os.access(FTP_PROXY, os.X_OK):
        raise LabError(f"{FTP_PROXY} missing: scripts/install-deps.sh unpacks it (or --no-ftp-proxy)")
    # Fail now, not after the first rounds, when this ftpct lacks a flag.
    for column in COLUMNS:
        if not column.enabled(opts):
            continue
        for sub, args in (("rules", column.rules), ("run", column.program)):
            if args is None or (sub == "run" and args[0] != "{ftpct}"):
                continue
            helptext = subprocess.run([opts.ftpct, sub, "--help"], capture_output=True, text=True).stdout
            for flag in (a for a in args if a.startswith("--")):
                if flag not in helptext:
                    raise LabError(f"gateway {column.key}: this ftpct does not know `ftpct {sub} {flag}`")


def header(opts, started, busy_note):
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    git = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", REPO, "diff", "--quiet", "HEAD", "--", "src", "Cargo.toml", "Cargo.lock"])
    code = git.stdout.strip()[:72] + (" (+ uncommitted changes)" if dirty.returncode else "")
    binaries = [f"{name} {getattr(opts, name)}" for name in ("ftpct", "ftpload")
                if getattr(opts, name) != os.path.join(REPO, "target", "release", name)]
    lines = [f"machine: {os.cpu_count()} CPUs, {model}, kernel {os.uname().release}",
             f"command: {command_line(opts)}",
             f"code: {code}" + (f"; binaries: {', '.join(binaries)}" if binaries else ""),
             f"run: {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, {time.monotonic() - started:.0f} s; "
             + (busy_note or "no other heavy process seen at the start")]
    return "\n".join(lines)


def interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(opts):
    """`python3 -m lab bench`: its exit status."""
    if opts.table:
        print(table(load(opts.table)))
        return 0
    check_options(opts)
    if os.geteuid() != 0:
        raise LabError("run as root (network namespaces, NFQUEUE, conntrack)")
    started = time.monotonic()
    if opts.out:
        os.makedirs(opts.out, exist_ok=True)
        opts.out = os.path.abspath(opts.out)
    else:
        opts.out = tempfile.mkdtemp(prefix="ftpct-bench.", dir="/tmp")
    os.chmod(opts.out, 0o755)  # vsftpd's unprivileged processes walk through it
    open(os.path.join(opts.out, "results.jsonl"), "w").close()
    signal.signal(signal.SIGTERM, interrupted)
    prepare(opts)
    bench = Bench(opts)
    try:
        bench.setup()
        bench.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        bench.teardown()
        log(f"results and logs kept in {opts.out}")
    text = header(opts, started, bench.busy_note) + "\n" + table(load(os.path.join(opts.out, "results.jsonl")))
    with open(os.path.join(opts.out, "table.txt"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 0
