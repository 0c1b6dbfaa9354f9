"""The fault-and-abuse suite as data, and one case's run (topology snat,
vsftpd): floods, NAT port reuse, an overflowing queue, a full conntrack
table, ftpct killed or stopped, a second instance, its sets and rules removed
under it. Each case runs under ftpct (`ftpct rules --apply`, a fresh
`ftpct run --state-interval 1` per case) and, where it applies, under the
kernel's helper, the control. Beside most cases a legitimate active (PORT)
and passive (PASV) download of 50m.bin runs through the gateway, paced so
that it lasts the whole case, SHA-256 checked: it must stay intact.

The cases (CASES below, each with what it proves per mode):
  1-synflood        120,000 spoofed SYNs in ~4 s: 45,000 from the client side
                    (sources 192.0.2.100-254) to the server's port 21, 75,000
                    from the server side (198.51.100.100-254, port 21) to
                    random ports of the client. New PORT and PASV sessions
                    during and right after the flood work; when ftpct's flow
                    table fills, it says so in a warning. Reported: queued
                    packets ftpct never saw (fail-open), flows held, evicted.
  2-nat-reuse       a control connection from 192.0.2.12, SNATed to
                    198.51.100.1:40000, with a PORT rewrite, vanishes (no FIN,
                    no RST); its conntrack entry is deleted. A session from
                    192.0.2.11 SNATed to the same address and port: greeting
                    < 2 s, a PASV and a PORT transfer work.
  3-queue-overflow  ftpct SIGSTOPped for 2 s while a session pipelines a NOOP
                    every 10 ms and spoofed SYNs overflow the NFQUEUE
                    (fail-open). All NOOPs answered < 2 s after ftpct
                    continues, the next NOOP too; once ftpct emptied its
                    queue a PASV and a PORT transfer work (ftpct -v: its log
                    shows each segment it drops). Kernel: same traffic.
  4-ct-full         the gateway's conntrack table filled while a PASV and a
                    PORT data connection are pending; room made after 1.5 s:
                    the retried SYNs are helped; ftpct logs the failed
                    creation and never "matched, RELATED" while full.
  5a-kill9 5b-sigterm  ftpct killed under four transferring sessions (two
                    PORT, two PASV), restarted 2 s later: no session hangs,
                    each makes its second transfer, new sessions work.
  5c-kill9-rewrite  (5c6 over IPv6, EPRT) ftpct killed right after a PORT
                    rewrite; NOOPs during the outage answered 200 (the
                    kernel keeps the fix-ups), the next and a new transfer ok.
  5d-kill9-pending  (5d6 over IPv6, EPRT and EPSV) data connections announced
                    before a SIGKILL, made after the restart: the restarted
                    ftpct took them up from their conntrack entries.
  6-second-instance `ftpct run --queue 1` beside the first: it refuses with a
                    message or uses its own sets; the first's ipset entries
                    stay; the pending transfers work.
  7a-ipset-flush    `ipset flush ftpct` with transfers pending: ftpct logs it,
                    the transfers work. Kernel analog: conntrack -F expect.
  7b-rules-delete   `ftpct rules --delete` with transfers pending: refused
                    while ftpct runs (it would put the rules back); with
                    --force the rules and sets go, and ftpct warns and puts
                    them back within 5 s; the pending transfers are
                    reported, not judged. Kernel analog: helper off, then
                    on (judged).
  8-ct-destroyed    the control connection's conntrack entry deleted with a
                    PORT pending: within 5 s ftpct holds no flow, expectation
                    or ipset entry for it. Kernel: the expectation goes.

conntrack table full: nf_conntrack_max is global (read-only outside the
initial namespace) but the count it limits is per namespace, so case 4
fills the gateway namespace's own table up to the global maximum with
ASSURED fillers over ctnetlink (tests/abuse/faults_ctfill.py) and deletes
them again: no global setting changes (global_settings() is checked
before and after the suite, and put back if anything changed it).

A result is pass, fail, or broken (the case could not set up what it tests:
a problem starting "setup:"); n/a where the kernel has no analog. Every
ftpct run is expected to pass; the kernel's expected results are data too
(Case.kernel_result): its analog of 7a, `conntrack -F expect`, loses the
pending expectations for good, so its pending transfers fail.
"""

import os
import re
import signal
import subprocess
import textwrap
import time
from dataclasses import dataclass, field

from .gateway import ANSI, kernel_helper
from .proc import Daemon, LabError, in_ns, run, tail

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ABUSE = os.path.join(REPO, "tests", "abuse")
FTP = os.path.join(ABUSE, "faults_ftp.py")
SYNFLOOD = os.path.join(ABUSE, "faults_synflood.py")
CTFILL = os.path.join(ABUSE, "faults_ctfill.py")
PY = "/usr/bin/python3"

SRV4, SRV6 = "198.51.100.20", "2001:db8:2::20"
PUB4 = "198.51.100.1"
CLI4 = "192.0.2.10"
CLI_NEW, CLI_OLD = "192.0.2.11", "192.0.2.12"  # case 2: the new inside client, the vanished one
REUSED_PORT = 40000
BG_RATE = 3_000_000  # bytes/s of the background downloads (50 MiB: ~17 s at most)
FLOOD_CLI, FLOOD_SRV, FLOOD_SECS = 45_000, 75_000, 4
STATE_ARGS = ("--state-interval", "1")  # ftpct's `state:` line every second: the figures of the cases
MODES = ("ftpct", "kernel")


@dataclass(frozen=True)
class Case:
    """name; the case function's name and arguments; what it proves under
    ftpct (always expected to pass) and under the kernel's helper (None: no
    analog there, n/a) with the kernel's expected result; ftpct -v."""
    name: str
    fn: str
    args: tuple = ()
    ftpct: str = ""
    kernel: str = None
    kernel_result: str = "pass"
    verbose: bool = False

    def expected(self, mode):
        """'pass' or 'fail' where the case applies, 'n/a' where it does not."""
        if mode == "ftpct":
            return "pass"
        return self.kernel_result if self.kernel else "n/a"

    def what(self, mode):
        if mode == "ftpct":
            return self.ftpct
        return self.kernel or "no ftpct process in the kernel's helper: nothing to kill or start twice"


KILLED = "no hang; PORT+PASV sessions carry on; new ok"
REWRITE = "NOOPs 200 during the outage; next+new transfers ok"
PENDING = "announced before the kill, transfers after it ok"
CASES = (
    Case("1-synflood", "synflood", ftpct="new sessions ok during+after flood; full table warned",
         kernel="new sessions ok during+after flood"),
    Case("2-nat-reuse", "nat_reuse", verbose=True, ftpct="greeting <2s on the reused port; PASV+PORT ok",
         kernel="greeting <2s on the reused port; PASV+PORT ok"),
    Case("3-queue-overflow", "queue_overflow", verbose=True, ftpct="NOOPs <2s after resume; PASV+PORT after ok",
         kernel="same traffic, no stop: NOOPs <2s; PASV+PORT ok"),
    Case("4-ct-full", "ct_full", ftpct="retried SYNs helped; failure logged, no RELATED",
         kernel="retried SYNs helped"),
    Case("5a-kill9", "kill", ("KILL",), ftpct=KILLED),
    Case("5b-sigterm", "kill", ("TERM",), ftpct=KILLED),
    Case("5c-kill9-rewrite", "kill_after_rewrite", ("port",), ftpct=REWRITE, kernel=REWRITE + " (nothing killed)"),
    Case("5c6-kill9-rewrite-v6", "kill_after_rewrite", ("eprt",), ftpct=REWRITE,
         kernel=REWRITE + " (nothing killed)"),
    Case("5d-kill9-pending", "kill_with_pending", ("v4",), ftpct=PENDING, kernel=PENDING + " (nothing killed)"),
    Case("5d6-kill9-pending-v6", "kill_with_pending", ("v6",), ftpct=PENDING, kernel=PENDING + " (nothing killed)"),
    Case("6-second-instance", "second_instance", ftpct="1st's ipset entries kept; 2nd refuses/own sets"),
    # The kernel's analog of the flush loses its expectations for good:
    # nothing puts them back, the pending data connections are dropped.
    Case("7a-ipset-flush", "ipset_flush", ftpct="flush noticed in the log; pending PASV+PORT ok",
         kernel="conntrack -F expect: pending PASV+PORT fail", kernel_result="fail"),
    Case("7b-rules-delete", "rules_delete", ftpct="refused; with --force put back in 5 s, warning logged",
         kernel="helper off, on: pending PASV+PORT ok"),
    Case("8-ct-destroyed", "ct_destroyed", ftpct="flow, expectation, ipset entry gone in 5 s",
         kernel="the expectation gone with its master in 5 s"),
)


@dataclass
class Outcome:
    case: Case
    mode: str
    result: str = "fail"  # pass, fail, broken, n/a
    secs: float = 0.0
    problems: list = field(default_factory=list)
    details: list = field(default_factory=list)
    context: str = ""  # transcripts, ftpct's log, counters: for a failing run

    @property
    def expected(self):
        return self.case.expected(self.mode)

    @property
    def as_expected(self):
        return self.result == self.expected

    def report(self):
        return (f"{self.case.name} under {self.mode} ({self.case.what(self.mode)}): expected {self.expected}, "
                f"got {self.result}\nproblems: {'; '.join(self.problems) or 'none'}\n"
                f"details: {'; '.join(self.details)}\n{self.context}")


# --- global kernel state ------------------------------------------------------

GLOBAL_FILES = ("/proc/sys/net/netfilter/nf_conntrack_max", "/proc/sys/net/netfilter/nf_conntrack_buckets",
                "/proc/sys/net/nf_conntrack_max")
MODULE_PARAMS = ("/sys/module/nf_conntrack/parameters", "/sys/module/nf_conntrack_ftp/parameters",
                 "/sys/module/nfnetlink_queue/parameters")


def global_settings():
    """{path: value} of the settings that are global, not per namespace
    (read in the initial namespace): what no case may leave changed."""
    paths = list(GLOBAL_FILES)
    for d in MODULE_PARAMS:
        if os.path.isdir(d):
            paths += [os.path.join(d, n) for n in sorted(os.listdir(d))]
    out = {}
    for p in paths:
        try:
            with open(p) as f:
                out[p] = f.read().strip()
        except OSError:
            pass
    return out


def restore_settings(before):
    """Writes back what changed since before; the changes, as text."""
    changed = []
    for path, value in global_settings().items():
        if path in before and before[path] != value:
            changed.append(f"{path}: {before[path]} -> {value}")
            try:
                with open(path, "w") as f:
                    f.write(before[path])
            except OSError as e:
                changed[-1] += f" (could not put it back: {e})"
    return changed


# --- the pieces of a case -------------------------------------------------------

class Client:
    """One tests/abuse/faults_ftp.py session in the client namespace, in the
    background; its transcript in the case's directory."""

    def __init__(self, fr, name, mode, *ops, host=SRV4, opts=()):
        self.name = name
        self.log = os.path.join(fr.dir, f"{name}.log")
        argv = ["timeout", "-k", "2", "90", PY, "-u", FTP, host, mode, "--sums", fr.sums, "--timeout", "10",
                *opts, *ops]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(in_ns(fr.topology.cli_ns, argv), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.rc = None

    def text(self):
        return tail(self.log, 10_000)

    def kv(self, prefix, key):
        """KEY's value on the last line of the transcript starting with prefix."""
        lines = [line for line in self.text().splitlines() if line.startswith(prefix)]
        if not lines:
            return ""
        m = re.search(rf"(?:^| ){re.escape(key)}=(\S*)", lines[-1])
        return m.group(1) if m else ""

    def wait(self, secs):
        """Its exit status; 124 when it was still running after secs (then stopped)."""
        try:
            self.rc = self.proc.wait(secs)
        except subprocess.TimeoutExpired:
            self.stop()
            self.rc = 124
        return self.rc

    def stop(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(2)
                return
            except subprocess.TimeoutExpired:
                pass

    def summary(self, rc):
        """ok, fail at STEP after S s (error), or hung."""
        if rc == 124:
            return "hung (killed at our bound)"
        text = self.text()
        if re.search(r"^result=ok", text, re.M):
            return "ok"
        if re.search(r"^result=fail", text, re.M):
            return (f"fail at {self.kv('result=', 'step')} after {self.kv('result=', 'secs')}s "
                    f"({self.kv('result=', 'error').replace(chr(39), '')[:60]})")
        last = text.splitlines()[-1][:60] if text.strip() else ""
        return f"fail (exit {rc}, {last})"

    def local_port(self):
        return self.kv("step=greeting", "local").rpartition(":")[2]


def within(secs, predicate):
    """Whether predicate() holds within secs (polled every 0.1 s, a
    bounded number of times)."""
    deadline = time.monotonic() + secs
    for _ in range(int(secs * 10) + 1):
        if predicate():
            return True
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return predicate()


class FaultRun:
    """One case under one mode: its directory, its processes and the undo
    stack of what it changed (close() undoes it all, in reverse, and stops
    every process: the fixture's finalizer calls it even when the case
    failed)."""

    def __init__(self, topology, gateway, workdir, sums, mode, case, server=None):
        self.topology = topology
        self.server = server
        self.gateway = gateway
        self.mode = mode
        self.case = case
        self.sums = sums
        self.dir = os.path.join(workdir, "faults", f"{case.name}.{mode.kind}")
        os.makedirs(self.dir, exist_ok=True)
        self.clients = {}
        self.procs = []  # other background processes (floods)
        self.daemons = []  # a second ftpct
        self.undo = []  # (what, callable), undone in reverse
        self.stopped = None  # ftpct's process while SIGSTOPped
        self.ftpct_logs = []  # every ftpct log of the case (restarts make new ones)
        self.p = []  # problems
        self.d = []  # details
        self.all_ok = True
        self.summary = ""

    @property
    def ftpct(self):
        return self.mode.kind == "ftpct"

    # --- undo ---------------------------------------------------------------

    def push(self, what, fn):
        self.undo.append((what, fn))

    def undo_all(self):
        errors = []
        while self.undo:
            what, fn = self.undo.pop()
            try:
                fn()
            except Exception as e:  # every step runs, each failure is said
                errors.append(f"undo {what}: {e}")
        return errors

    def close(self):
        """Everything the case started or changed, gone; a list of what
        could not be undone."""
        if self.stopped is not None:
            self.cont_ftpct()
        for c in self.clients.values():
            c.stop()
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(5)
        for d in self.daemons:
            d.stop()
        return self.undo_all()

    # --- files the clients coordinate by ---------------------------------

    def path(self, name):
        return os.path.join(self.dir, name)

    def touch(self, *names):
        for name in names:
            open(self.path(name), "a").close()

    def wait_file(self, name, secs):
        return within(secs, lambda: os.path.exists(self.path(name)))

    # --- the gateway ---------------------------------------------------------

    def gw(self, *argv, check=False, timeout=30):
        return self.topology.gw(*argv, check=check, timeout=timeout)

    def gw_rule(self, ns_role, ipt, table, chain, *spec):
        """Inserts a rule in namespace role (cli, gw, srv), undone at the end."""
        ns = self.topology.ns(ns_role)
        run([ipt, "-t", table, "-I", chain, "1", *spec], ns=ns)
        self.push(f"{ipt} -t {table} {chain} {' '.join(spec)} in {ns}",
                  lambda: run([ipt, "-t", table, "-D", chain, *spec], ns=ns, check=False))

    def wait_logged(self, text, secs):
        """Whether ftpct's log holds text (any case) within secs."""
        return within(secs, lambda: text.lower() in self.log_text().lower())

    def log_text(self, offset=0):
        """The current ftpct log from offset, without colours."""
        return self.gateway.log_since(offset) if self.gateway.ftpct else ""

    def restart_ftpct(self):
        self.gateway.restart_ftpct()
        self.ftpct_logs.append(self.gateway.ftpct.log_path)

    def kill_ftpct(self, sig, secs):
        """Signal sig to ftpct, wait at most secs (then SIGKILL); its exit
        status (124: had to be killed) and seconds until it was gone."""
        t0 = time.monotonic()
        rc = self.gateway.kill_ftpct(sig, secs)
        return (128 - rc if rc < 0 else rc), time.monotonic() - t0  # as a shell says it: 137 for SIGKILL

    def stop_ftpct(self):
        self.stopped = self.gateway.ftpct.proc
        os.kill(self.stopped.pid, signal.SIGSTOP)

    def cont_ftpct(self):
        try:
            os.kill(self.stopped.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        self.stopped = None

    def ipset_members(self, name="ftpct"):
        out = self.gw("ipset", "list", name).stdout
        members = out.split("Members:", 1)[1] if "Members:" in out else ""
        return sorted(line.split()[0] for line in members.splitlines() if line.strip())

    def expectations(self):
        return len([x for x in self.gw("conntrack", "-L", "expect").stdout.splitlines() if x.strip()])

    def conntrack_line(self, *filters):
        lines = self.gw("conntrack", "-L", *filters).stdout.splitlines()
        return lines[0] if lines else ""

    def queue_numbers(self):
        """(queue_total, id_sequence) of NFQUEUE 0 in the gateway."""
        out = self.gw("cat", "/proc/net/netfilter/nfnetlink_queue").stdout
        for line in out.splitlines():
            f = line.split()
            if f and f[0] == "0":
                return int(f[2]), int(f[7])
        return None, None

    def queue_unseen(self):
        """(text, unseen): packets the queue rules sent to NFQUEUE since the
        case began, and how many of them ftpct never saw (NFQUEUE counts only
        what it queued; fail-open passes the rest unseen and uncounted)."""
        hits = 0
        for line in self.gw("iptables", "-t", "raw", "-L", "-v", "-x", "-n").stdout.splitlines():
            if "NFQUEUE" in line:
                hits += int(line.split()[0])
        _, queued = self.queue_numbers()
        unseen = hits - (queued or 0)
        return (f"queue rules matched {hits} packets, ftpct was handed {'?' if queued is None else queued}, "
                f"unseen (fail-open) {unseen}"), unseen

    # --- clients ---------------------------------------------------------------

    def client(self, name, mode, *ops, host=SRV4, opts=()):
        self.clients[name] = Client(self, name, mode, *ops, host=host, opts=opts)
        return self.clients[name]

    def run_wait(self, secs, *names):
        """Waits for each; sets all_ok and summary."""
        parts, self.all_ok = [], True
        for name in names:
            c = self.clients[name]
            s = c.summary(c.wait(secs))
            self.all_ok &= s == "ok"
            parts.append(f"{name}: {s}")
        self.summary = "; ".join(parts)

    def bg_start(self):
        """The legitimate downloads beside the case: PORT and PASV, paced;
        the case starts once both data connections carry data."""
        for m in ("port", "pasv"):
            self.client(f"bg-{m}", m, "slowget", "50m.bin", "quit",
                        opts=("--rate", str(BG_RATE), "--hurry", self.path("hurry"),
                              "--started", self.path(f"bg-{m}.started")))
        for m in ("port", "pasv"):
            if not self.wait_file(f"bg-{m}.started", 10):
                self.p.append(f"setup: background {m} download not started after 10 s")

    def release(self, signal_file, secs, names, failed, label):
        """Creates signal_file (unless None), waits for the clients names
        (secs each): a problem failed if one did not end ok, their summary
        as label."""
        if signal_file:
            self.touch(signal_file)
        self.run_wait(secs, *names)
        if not self.all_ok:
            self.p.append(failed)
        self.d.append(f"{label}: {self.summary}")

    def bg_finish(self):
        self.release("hurry", 40, ("bg-port", "bg-pasv"), "background transfer broken", "bg")

    def pending_start(self, opts=("--max-wait", "30"), settle=0.3):
        """bg_start, and a PASV and a PORT session that announce their data
        connection and wait for 'go' to use it."""
        self.bg_start()
        for m in ("pasv", "port"):
            self.client(f"pend-{m}", m, "announce", "touch", self.path(f"{m}-ready"), "wait", self.path("go"),
                        "get", "1k.bin", "quit", opts=opts)
        if not (self.wait_file("pasv-ready", 10) and self.wait_file("port-ready", 10)):
            self.p.append("setup: sessions did not get going")
        time.sleep(settle)

    def pending_finish(self):
        self.release("go", 30, ("pend-pasv", "pend-port"), "a pending transfer failed", "pending transfers")

    # --- ftpct's log ---------------------------------------------------------------

    def flow_log(self, name):
        """ftpct's decisions (INFO and up) on client name's control connection."""
        port = self.clients[name].local_port()
        if not port:
            return "(no connection)"
        pat = re.compile(rf"flow=[0-9.]+:{port} -> ")
        out = []
        for line in self.log_text().splitlines():
            if pat.search(line) and re.search(r" (INFO|WARN|ERROR) ", line):
                line = re.sub(r"^\S* *", "", line)
                line = re.sub(r" flow=.*", "", line)
                out.append(re.sub(r" event=.*", "", line)[:110])
        return "|".join(out)[:500]

    def flow_drops(self, name):
        """Segments of client name's control connection that ftpct dropped (-v)."""
        port = self.clients[name].local_port()
        pat = re.compile(rf"dropped: .*flow=[0-9.]+:{port} -> ")
        lines = [re.sub(r" event=.*", "", x) for x in self.log_text().splitlines() if port and pat.search(x)]
        if not lines:
            return "none"
        return f"{len(lines)} (first: {lines[0].replace(' DEBUG', '')}; last at {lines[-1].split(' ')[0]})"

    def state_counter(self, key, text=None):
        found = re.findall(rf" {key}=(\d+)", text if text is not None else self.log_text())
        return found[-1] if found else ""

    def state_max_flows(self):
        found = [int(x) for x in re.findall(r"state: flows=(\d+)", self.log_text())]
        return max(found) if found else None

    def conclude(self):
        result = "fail" if self.p else "pass"
        if any(x.startswith("setup:") for x in self.p):
            result = "broken"
        return result

    def context(self):
        """What a failing run's message shows: transcripts, ftpct's log, counters."""
        parts = []
        for c in self.clients.values():
            parts.append(f"--- client {c.name} ({c.log}), last 8 lines:\n" +
                         "\n".join("  | " + x for x in tail(c.log, 8).splitlines()))
        for path in self.ftpct_logs:
            parts.append(f"--- ftpct's log {path}, last 30 lines:\n" +
                         "\n".join("  | " + x for x in ANSI.sub("", tail(path, 30)).splitlines()))
        if self.server is not None:
            parts.append("--- the server's output:\n" + self.server.output())
        parts.append("--- the gateway's counters:\n" + self.gateway.counters())
        return "\n".join(parts)


def warn_lines(text):
    return [x for x in text.splitlines() if re.match(r"^\S+ +(WARN|ERROR) ", x)]


def subset(a, b):
    return set(a) <= set(b)


def oneline(items):
    return " ".join(items)


# --- the cases -----------------------------------------------------------------------

def synflood(fr):
    fr.bg_start()
    floods = []
    for role, src, dst, extra, count, seed in (
            ("cli", "192.0.2.100-192.0.2.254", SRV4, ("--dport", "21"), FLOOD_CLI, 1),
            ("srv", "198.51.100.100-198.51.100.254", CLI4, ("--sport", "21", "--dport", "0"), FLOOD_SRV, 2)):
        log = open(fr.path(f"flood-{role}.log"), "wb")
        argv = [PY, SYNFLOOD, "--src", src, "--dst", dst, *extra, "--count", str(count),
                "--rate", str(count // FLOOD_SECS), "--seed", str(seed)]
        proc = subprocess.Popen(in_ns(fr.topology.ns(role), argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        fr.procs.append(proc)
        floods.append((role, proc))
    time.sleep(FLOOD_SECS / 2)
    fr.client("during-port", "port", "get", "1k.bin", "quit")
    fr.client("during-pasv", "pasv", "get", "1k.bin", "quit")
    for role, proc in floods:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            fr.p.append(f"{'client' if role == 'cli' else 'server'}-side flood did not finish")
    fr.d.append(f"flood: client side {tail(fr.path('flood-cli.log'), 1)}, "
                f"server side {tail(fr.path('flood-srv.log'), 1)}")
    fr.release(None, 25, ("during-port", "during-pasv"), "a session started during the flood failed", "during")
    if fr.ftpct:
        fr.d.append(f"ftpct on during-port: {fr.flow_log('during-port')}; on during-pasv: "
                    f"{fr.flow_log('during-pasv')}")
    fr.client("after-port", "port", "get", "1k.bin", "quit")
    fr.client("after-pasv", "pasv", "get", "1k.bin", "quit")
    fr.release(None, 25, ("after-port", "after-pasv"), "a session started after the flood failed", "after")
    fr.d.append(f"gw conntrack count {fr.gw('cat', '/proc/sys/net/netfilter/nf_conntrack_count').stdout.strip()}")
    if fr.ftpct:
        fr.d.append(fr.queue_unseen()[0])
    fr.bg_finish()
    if fr.ftpct:
        time.sleep(1.1)  # one more state line
        log = fr.log_text()
        maxf, untr = fr.state_max_flows(), fr.state_counter("untracked", log)
        warn = [x for x in warn_lines(log) if re.search(r"flow", x, re.I)
                and re.search(r"full|limit|evict|untracked", x, re.I)]
        warn = warn[0][:160] if warn else ""
        fr.d.append(f"ftpct: handled {fr.state_counter('packets', log)} packets, most flows held "
                    f"{'?' if maxf is None else maxf}, untracked {untr or '?'}, evicted "
                    f"{fr.state_counter('evicted', log)}, resyncs {fr.state_counter('resyncs', log)} "
                    f"('passed uninspected' lines: {log.count('passed uninspected')}); "
                    f"table-full warning: {warn or 'none'}")
        if (int(untr or 0) > 0 or (maxf or 0) >= 100_000) and not warn:
            fr.p.append(f"flow table full (untracked={untr or 0}, flows={maxf or 0}) and no warning in the log")


def nat_reuse(fr):
    cli_ns = fr.topology.cli_ns
    for addr in (CLI_NEW, CLI_OLD):  # two more inside clients, same veth and /24
        run(["ip", "addr", "add", f"{addr}/24", "dev", "cli0"], ns=cli_ns)
        fr.push(f"address {addr}", lambda a=addr: run(["ip", "addr", "del", f"{a}/24", "dev", "cli0"], ns=cli_ns,
                                                       check=False))
    for src in (CLI_NEW, CLI_OLD):
        fr.gw_rule("gw", "iptables", "nat", "POSTROUTING", "-o", "gwout", "-s", src, "-p", "tcp", "--dport", "21",
                   "-j", "SNAT", "--to-source", f"{PUB4}:{REUSED_PORT}")
    fr.bg_start()
    # The old session: logged in, PORT sent (rewritten: a shift of +2), then silence.
    old = fr.client("old", "port", "announce", "touch", fr.path("old-ready"), "hold", "60", opts=("--src", CLI_OLD))
    if not fr.wait_file("old-ready", 10):
        fr.p.append(f"setup: old session did not get going ({old.summary(1)})")
    ct = fr.conntrack_line("-p", "tcp", "-s", CLI_OLD, "--dport", "21")
    if f"dport={REUSED_PORT}" not in ct:
        fr.p.append(f"setup: old session not SNATed to port {REUSED_PORT} ({ct})")
    # It vanishes: nothing more leaves the client or the server for it.
    fr.gw_rule("cli", "iptables", "filter", "OUTPUT", "-s", CLI_OLD, "-p", "tcp", "--dport", "21", "-j", "DROP")
    srv_drop = ("-p", "tcp", "--sport", "21", "-d", PUB4, "--dport", str(REUSED_PORT), "-j", "DROP")
    fr.gw_rule("srv", "iptables", "filter", "OUTPUT", *srv_drop)
    run(["ss", "-K", "-tn", "src", CLI_OLD, "dport", "=", ":21"], ns=cli_ns, check=False)
    run(["ss", "-K", "-tn", "dst", PUB4, "dport", "=", f":{REUSED_PORT}"], ns=fr.topology.ns("srv"), check=False)
    old.stop()
    time.sleep(0.3)
    run(["iptables", "-D", "OUTPUT", *srv_drop], ns=fr.topology.ns("srv"))  # the server may answer again
    # Its conntrack entry goes (standing for its timeout, which is not shortened).
    if fr.gw("conntrack", "-D", "-p", "tcp", "-s", CLI_OLD, "--dport", "21").returncode != 0:
        fr.p.append("setup: no conntrack entry of the old session to delete")
    # The new session, mapped to the same public address and port.
    new = fr.client("new", "pasv", "get", "1k.bin", "mode", "port", "get", "1k.bin", "quit", opts=("--src", CLI_NEW))
    fr.run_wait(30, "new")
    if not fr.all_ok:
        fr.p.append("new session failed")
    greet = new.kv("step=greeting", "secs")
    if not greet or float(greet) >= 2:
        fr.p.append(f"greeting after {greet or 'never'} s")
    ct = fr.conntrack_line("-p", "tcp", "-s", CLI_NEW, "--dport", "21")
    reused = f"dport={REUSED_PORT}" in ct
    if not reused:
        fr.p.append(f"setup: the new session was not mapped to port {REUSED_PORT} ({ct})")
    fr.d.append(f"new session from {CLI_NEW} (public port {REUSED_PORT} reused: {'yes' if reused else 'no'}): "
                f"greeting {greet or 'never'} s, {fr.summary}")
    fr.p += fr.undo_all()
    fr.bg_finish()
    if fr.ftpct:
        tracked = [re.sub(r" event=\S*", "", re.sub(r"^\S* *DEBUG ", "", x)) for x in fr.log_text().splitlines()
                   if re.search(r"new forwarded control connection.*flow=192\.0\.2\.1[12]:", x)]
        fr.d.append(f"ftpct on the new session: {fr.flow_log('new')}; its segments dropped: {fr.flow_drops('new')}")
        fr.d.append(f"flows ftpct tracked for the two sessions: {'|'.join(tracked)}")


def queue_overflow(fr):
    fr.bg_start()
    fr.client("pipe", "pasv", "get", "1k.bin", "touch", fr.path("ready"), "wait", fr.path("go"),
              "pipeline", fr.path("resumed"), "noop", "wait", fr.path("drained"), "get", "1k.bin", "mode", "port",
              "get", "1k.bin", "quit", opts=("--max-wait", "20"))
    if not fr.wait_file("ready", 10):
        fr.p.append("setup: session did not get going")
    t_stop = time.monotonic()
    if fr.ftpct:
        fr.stop_ftpct()
    fr.touch("go")
    time.sleep(0.2)
    # Spoofed SYNs to port 21 in chunks until some pass unseen (the queue is
    # full: fail-open), within 1.5 s of the stop.
    sent, qmax, full = 0, 0, False
    with open(fr.path("burst.log"), "a") as burst:
        for i in range(20):
            done = run([PY, SYNFLOOD, "--src", "192.0.2.100-192.0.2.254", "--dst", SRV4, "--dport", "21",
                        "--count", "3000", "--seed", str(100 + i)], ns=fr.topology.cli_ns, check=False)
            burst.write(done.stdout + done.stderr)
            sent += 3000
            q, _ = fr.queue_numbers()
            qmax = max(qmax, q or 0)
            if fr.ftpct and fr.queue_unseen()[1] > 0:
                full = True
                break
            if not fr.ftpct and sent >= 6000:
                break
            if time.monotonic() - t_stop >= 1.5:
                break
    while time.monotonic() - t_stop < 2:
        time.sleep(0.05)
    t_cont = time.monotonic()
    if fr.ftpct:
        fr.cont_ftpct()
    fr.touch("resumed")
    # The transfers wait until ftpct has caught up with its queue: a PASV
    # or PORT that passes unseen while it is still full cannot be helped.
    drained = None
    if fr.ftpct:
        for _ in range(50):
            if (fr.queue_numbers()[0] or 0) == 0:
                drained = time.monotonic() - t_cont
                break
            time.sleep(0.1)
    else:
        drained = 0.0
    fr.touch("drained")
    fr.run_wait(40, "pipe")
    if not fr.all_ok:
        fr.p.append("session failed")
    pipe = fr.clients["pipe"]
    ans, noop = pipe.kv("step=pipeline", "answered"), pipe.kv("step=noop", "secs")
    if not ans or float(ans) >= 2:
        fr.p.append(f"NOOPs answered {ans or 'never'} s after resume")
    if not noop or float(noop) >= 2:
        fr.p.append(f"next NOOP answered in {noop or 'never'} s")
    fr.d.append(f"burst {sent} SYNs; pipelined {pipe.kv('step=pipeline', 'noops') or '?'} NOOPs, all answered "
                f"{ans or 'never'} s after resume, next NOOP in {noop or 'never'} s; queue drained "
                f"{'not within 5' if drained is None else f'{drained:.1f}'} s after resume; session: {fr.summary}")
    if fr.ftpct:
        fr.d.append(f"queue peak {qmax} packets, overflowed: {'yes' if full else 'no'}, {fr.queue_unseen()[0]}")
        if not full:
            fr.p.append(f"setup: the queue did not overflow (peak {qmax})")
    fr.bg_finish()
    if fr.ftpct:
        counters = re.findall(r"dropped=\d+ held_given_up=\d+ resyncs=\d+", fr.log_text())
        fr.d.append(f"ftpct: {counters[-1] if counters else ''}; on the session: {fr.flow_log('pipe')}; "
                    f"its segments dropped by ftpct: {fr.flow_drops('pipe')}")


def ctfill(fr, *args):
    return run([PY, CTFILL, *args], ns=fr.topology.gw_ns, check=False, timeout=180)


def ct_full(fr):
    fr.pending_start(opts=("--max-wait", "20", "--timeout", "15"), settle=0.5)

    def flush():
        done = ctfill(fr, "flush")
        if done.returncode != 0:
            raise LabError(f"faults_ctfill.py flush: {(done.stdout + done.stderr).strip()}")
    fr.push("the conntrack fillers", flush)
    done = ctfill(fr, "fill")
    fill = (done.stdout + done.stderr).strip()
    if "full=yes" not in fill:
        fr.p.append(f"setup: the table did not fill ({fill})")
    fr.d.append(f"fill: {fill}")
    off_full = fr.gateway.log_offset()
    fr.touch("go")
    time.sleep(1.5)
    off_free = fr.gateway.log_offset()
    done = ctfill(fr, "free", "2000")
    fr.d.append(f"room made: {(done.stdout + done.stderr).strip()}")
    fr.run_wait(30, "pend-pasv", "pend-port")
    if not fr.all_ok:
        fr.p.append("a pending transfer failed")
    fr.d.append(f"data connection established after: pasv {fr.clients['pend-pasv'].kv('step=get', 'connect')}s, "
                f"port {fr.clients['pend-port'].kv('step=get', 'connect')}s; {fr.summary}")
    fr.p += fr.undo_all()
    fr.bg_finish()
    if fr.ftpct:
        during = fr.log_text(off_full)[:max(0, off_free - off_full)]
        related = during.count("matched, RELATED")
        fails = [x for x in warn_lines(during) if re.search(r"data connection|conntrack|creat", x, re.I)]
        failline = fails[0][:200] if fails else ""
        fr.d.append(f"ftpct while full: 'matched, RELATED' x{related}, failure line: {failline or 'none'}")
        if related:
            fr.p.append(f"ftpct logged 'matched, RELATED' {related} time(s) while the table was full")
        if not failline:
            fr.p.append("no failure logged while the table was full")


def kill(fr, sig):
    sessions = ("s1-port", "s2-pasv", "s3-port", "s4-pasv")
    for name in sessions:
        fr.client(name, name.split("-")[1], "slowget", "50m.bin", "wait", fr.path("restarted"), "get", "1k.bin",
                  "quit", opts=("--rate", "4000000", "--hurry", fr.path("hurry"),
                                "--started", fr.path(f"{name}.started"), "--max-wait", "40"))
    # Under load: every session's data connection carries data.
    for name in sessions:
        if not fr.wait_file(f"{name}.started", 10):
            fr.p.append(f"setup: {name} not transferring after 10 s")
    time.sleep(1)
    log = fr.gateway.ftpct.log_path
    rc, gone = fr.kill_ftpct(getattr(signal, f"SIG{sig}"), 8)
    fr.d.append(f"ftpct {sig}: exit status {rc} after {gone:.1f}s")
    if sig == "TERM":
        last = re.sub(r"^\S* *", "", ANSI.sub("", tail(log, 1)))
        fr.d.append(f"its last line: {last[:120]}")
    time.sleep(2)
    fr.restart_ftpct()
    fr.touch("restarted", "hurry")
    for name in sessions:
        c = fr.clients[name]
        s = c.summary(c.wait(60))
        fr.d.append(f"{name}: {s}")
        if s.startswith("hung"):
            fr.p.append(f"{name} hung")
        # PORT sessions too: their fix-ups are in the kernel (5c).
        if s != "ok":
            fr.p.append(f"{name} did not carry on")
            if "reply=none" in c.text():
                fr.d.append(f"  ({name}: data {c.kv('step=get', 'bytes')} bytes, SHA-256 {c.kv('step=get', 'sha')}, "
                            "then no 226)")
    fr.client("new-port", "port", "get", "1k.bin", "quit")
    fr.client("new-pasv", "pasv", "get", "1k.bin", "quit")
    fr.release(None, 25, ("new-port", "new-pasv"), "a new session after the restart failed",
               "new sessions after restart")


def kill_after_rewrite(fr, kind):
    host = SRV6 if kind == "eprt" else SRV4
    rw = fr.client("rw", kind, "get", "1k.bin", "touch", fr.path("rewritten"), "wait", fr.path("killed"),
                   "noop", "noop", "noop", "touch", fr.path("nooped"), "wait", fr.path("restarted"),
                   "get", "1k.bin", "quit", host=host)
    if not fr.wait_file("rewritten", 15):
        fr.p.append("setup: the first transfer did not end in 15 s")
    if fr.ftpct:
        # ftpct writes its info lines in batches, within 100 ms.
        if not fr.wait_logged(f"rewrite '{kind}", 1):
            fr.p.append(f"setup: ftpct logged no {kind} rewrite")
        fr.kill_ftpct(signal.SIGKILL, 5)
    fr.touch("killed")
    if not fr.wait_file("nooped", 20):
        fr.p.append("the NOOPs during the outage were not all answered in 20 s")
    noops = re.findall(r"^step=noop .*secs=(\S+)", rw.text(), re.M)
    fr.d.append(f"NOOPs during the outage: {' '.join(noops)}s")
    if fr.ftpct:
        fr.restart_ftpct()
    fr.touch("restarted")
    s = rw.summary(rw.wait(30))
    fr.d.append(f"the session: {s}")
    if s != "ok":
        fr.p.append(f"the rewritten session did not carry on: {s}")
    fr.client("new-port", kind, "get", "1k.bin", "quit", host=host)
    fr.release(None, 25, ("new-port",), "a new session after the restart failed", "new session")


TOOK_UP = re.compile(r"took up [^,]*, [0-9]* with a pending data connection")


def kill_with_pending(fr, family):
    host, active, passive = (SRV6, "eprt", "epsv") if family == "v6" else (SRV4, "port", "pasv")
    for name in (active, passive):
        fr.client(f"pend-{name}", name, "announce", "touch", fr.path(f"{name}.announced"),
                  "wait", fr.path("restarted"), "get", "1k.bin", "quit", host=host)
    if not (fr.wait_file(f"{active}.announced", 15) and fr.wait_file(f"{passive}.announced", 15)):
        fr.p.append("setup: the announcements did not happen in 15 s")
    if fr.ftpct:
        fr.kill_ftpct(signal.SIGKILL, 5)
        time.sleep(1)
        fr.restart_ftpct()
        m = TOOK_UP.search(fr.log_text())
        fr.d.append(f"restarted: {m.group(0) if m else 'took up nothing'}")
    fr.touch("restarted")
    fr.run_wait(25, f"pend-{active}", f"pend-{passive}")
    if not fr.all_ok:
        fr.p.append("a transfer announced before the kill failed")
    fr.d.append(fr.summary)


def ct_destroyed(fr):
    fr.client("gone", "port", "announce", "touch", fr.path("announced"), "hold", "20")
    if not fr.wait_file("announced", 15):
        fr.p.append("setup: no announcement in 15 s")
    time.sleep(0.5)
    if fr.ftpct and not fr.ipset_members():
        fr.p.append("setup: no ipset entry for the pending PORT")
    if fr.gw("conntrack", "-D", "-p", "tcp", "--dport", "21").returncode != 0:
        fr.p.append("setup: conntrack -D deleted nothing")
    held, t0, gone = "", time.monotonic(), False
    for _ in range(50):
        if fr.ftpct:
            # The held figures, not the counters later on the same line.
            found = re.findall(r"state: flows=\d+ expectations=\d+", "\n".join(fr.log_text().splitlines()[-5:]))
            held = found[-1] if found else ""
            gone = held == "state: flows=0 expectations=0" and not fr.ipset_members()
        else:
            held = str(fr.expectations())
            gone = held == "0"
        if gone:
            break
        time.sleep(0.1)
    fr.d.append(f"after {time.monotonic() - t0:.1f} s: {held or '?'}; ipset: {oneline(fr.ipset_members())}")
    if not gone:
        fr.p.append("still held 5 s after the entry went")


def second_instance(fr):
    fr.pending_start()
    before = fr.ipset_members()

    def save(name):
        with open(fr.path(name), "w") as f:
            f.write(fr.gw("ipset", "list", "ftpct").stdout)
    save("ipset-before.txt")
    if len(before) < 2:
        fr.p.append(f"setup: fewer than 2 pending entries in ipset ftpct ({oneline(before)})")
    second = Daemon("second ftpct run", [fr.gateway.ftpct_bin, "run", "--queue", "1", *STATE_ARGS],
                    fr.topology.gw_ns, fr.path("ftpct-second.log")).start()
    fr.daemons.append(second)
    for _ in range(30):
        if not second.alive() or "running: queues" in second.output(50):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    during = fr.ipset_members()
    save("ipset-during.txt")
    if second.alive():
        ran = re.search(r"running:.*", ANSI.sub("", second.output(50)))
        fr.d.append(f"second instance ran ({ran.group(0) if ran else ''})")
        if not second.stop():
            fr.d.append("(killed)")
    else:
        rc = second.proc.returncode
        msg = ANSI.sub("", second.output(1)).strip()[:160]
        fr.d.append(f"second instance exited {rc}: '{msg}'")
        if rc == 0:
            fr.p.append("second instance exited 0 without running")
        if not msg:
            fr.p.append("second instance exited without a message")
    after = fr.ipset_members()
    save("ipset-after.txt")
    fr.d.append(f"ipset ftpct: before [{oneline(before)}], during [{oneline(during)}], after [{oneline(after)}]")
    if not subset(before, during):
        fr.p.append("the first instance's ipset entries were removed while the second ran")
    if not subset(before, after):
        fr.p.append("the first instance's ipset entries were gone after the second stopped")
    fr.pending_finish()
    fr.bg_finish()


def ipset_flush(fr):
    fr.pending_start()
    if fr.ftpct:
        before = fr.ipset_members()
        if not before:
            fr.p.append("setup: no pending entry in ipset ftpct")
        off = fr.gateway.log_offset()
        fr.gw("ipset", "flush", "ftpct", check=True)
        noticed, restored, now = "", False, []
        for _ in range(50):
            time.sleep(0.1)
            lines = [x for x in fr.log_text(off).splitlines()
                     if re.search(r"ipset|set ftpct|flush", x, re.I) and "state:" not in x]
            noticed = lines[0][:200] if lines else ""
            now = fr.ipset_members()
            restored = restored or (bool(before) and subset(before, now))
            if noticed and restored:
                break
        fr.d.append(f"ipset ftpct before [{oneline(before)}], 5 s after the flush [{oneline(now)}], restored: "
                    f"{'yes' if restored else 'no'}; noticed: {noticed or 'no log line'}")
        if not noticed:
            fr.p.append("ftpct logged nothing about the flushed set")
    else:
        fr.d.append(f"expectations before: {fr.expectations()}")
        fr.gw("conntrack", "-F", "expect")
        time.sleep(1)
    fr.pending_finish()
    fr.bg_finish()


def rules_delete(fr):
    fr.pending_start()
    if fr.ftpct:
        refused = fr.gw(fr.gateway.ftpct_bin, "rules", "--delete")
        fr.d.append(f"rules --delete while ftpct runs: exit {refused.returncode}, {refused.stderr.strip()[:160]}")
        if refused.returncode == 0 or "stop it first" not in refused.stderr:
            fr.p.append("ftpct rules --delete was not refused while ftpct runs")
        off = fr.gateway.log_offset()
        done = fr.gw(fr.gateway.ftpct_bin, "rules", "--delete", "--force")
        if done.returncode != 0:
            fr.p.append(f"setup: ftpct rules --delete --force failed: {done.stderr.strip()}")

        def apply():
            done = fr.gw(fr.gateway.ftpct_bin, "rules", "--apply")
            if done.returncode != 0:
                raise LabError(f"ftpct rules --apply failed: {done.stderr.strip()}")
        fr.push("ftpct's rules applied again", apply)
        warned, back = "", False
        for _ in range(50):
            time.sleep(0.1)
            lines = warn_lines(fr.log_text(off))
            warned = warned or (lines[0][:200] if lines else "")
            back = "-j ftpct-pre" in fr.gw("iptables", "-t", "raw", "-S").stdout
            if warned and back:
                break
        fr.d.append(f"warning after rules --delete --force: {warned or 'none in 5 s'}; "
                    f"rules back: {'yes' if back else 'no'}")
        if not warned:
            fr.p.append("ftpct did not warn after its rules and sets were deleted")
        if not back:
            fr.p.append("ftpct did not put its rules back within 5 s")
        fr.p += fr.undo_all()
        fr.d.append(f"ipset ftpct after re-apply [{oneline(fr.ipset_members())}]")
    else:
        kernel_helper(fr.topology, False)
        fr.push("the kernel's helper on again", lambda: kernel_helper(fr.topology, True))
        time.sleep(2)
        fr.p += fr.undo_all()
    time.sleep(0.5)
    fr.touch("go")
    fr.run_wait(30, "pend-pasv", "pend-port")
    if fr.ftpct:
        fr.d.append(f"pending transfers after re-apply (not judged): {fr.summary}")
    else:
        if not fr.all_ok:
            fr.p.append("a pending transfer failed")
        fr.d.append(f"pending transfers after helper off/on: {fr.summary}")
    fr.bg_finish()


def run_case(fr):
    """Runs the case; its Outcome (the run's close() is the caller's)."""
    outcome = Outcome(fr.case, fr.mode.kind)
    t0 = time.monotonic()
    try:
        if fr.gateway.ftpct:
            fr.ftpct_logs.append(fr.gateway.ftpct.log_path)
        fr.topology.gw("iptables", "-t", "raw", "-Z", check=False)  # queue rule counters, for queue_unseen
        globals()[fr.case.fn](fr, *fr.case.args)
    except (LabError, OSError, ValueError, subprocess.SubprocessError) as e:
        fr.p.append(f"setup: the lab failed: {e}")  # the case could not run: broken, never a pass
    outcome.secs = time.monotonic() - t0
    outcome.result = fr.conclude()
    outcome.problems, outcome.details = fr.p, fr.d
    if not outcome.as_expected:
        outcome.context = fr.context()
    return outcome


def table(outcomes, secs):
    """The closing table, as the shell suite printed it: case, mode,
    what it proves, result, seconds, then its details folded."""
    rule = "-" * 100
    lines = [f"{'case':<21} {'mode':<6} {'expected':<52} {'result':<7} {'secs':>6}", rule]
    bad = 0
    for o in outcomes:
        mark = ""
        if not o.as_expected:
            mark, bad = "  <-- MISMATCH", bad + 1
        lines.append(f"{o.case.name:<21} {o.mode:<6} {o.case.what(o.mode)[:52]:<52} {o.result:<7} "
                     f"{o.secs:6.1f}{mark}")
        text = ("PROBLEMS: " + "; ".join(o.problems) + " | " if o.problems else "") + "; ".join(o.details)
        lines += ["      " + x for x in textwrap.wrap(text, 124)]
    lines += [rule, f"faults: {len(outcomes)} row(s), {len(outcomes) - bad} as expected, {bad} mismatch(es), "
                    f"{secs:.0f} s"]
    return lines
