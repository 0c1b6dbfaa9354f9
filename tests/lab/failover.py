"""The gateway failover suite as data, and one mode's run of it.

FTP sessions keep their control connection open while the virtual addresses
move from gateway A to gateway B of the failover lab (ha.py), in two gateway
modes: kernel (the kernel's FTP helper on both gateways, the control) and
ftpct (`ftpct rules --apply` and `ftpct run` on both). Each session
(tests/ha/ftpsess.py, vsftpd, 1 KiB file) transfers once before the
failover and once after it; both copies must have the served file's
SHA-256. A session that failed before the failover is "broken": the lab,
not the failover, failed, and that is never an expected result.

Expected results, per mode:
kernel: the helper's sequence adjustment reaches B because conntrackd polls
  the kernel's table (PollSecs): the kernel raises no event when a helper
  records one. Pending expectations do not survive: polled, conntrackd does
  not sync expectations; following events (PollSecs 0) it syncs them, but
  gateway B's conntrackd (1.4.7) creates them without their NAT binding and
  expect function (CTA_EXPECT_NAT, CTA_EXPECT_FN), so the data connection
  reaches the gateway itself and is refused.
ftpct: each NATed session's fix-ups are in its conntrack entry (made through
  ctnetlink: it carries seqadj) and its state in the entry's labels;
  conntrackd copies both. At the failover B's ftpct gets SIGHUP (the notify
  script's last step, as `systemctl reload ftpct`) and takes the sessions
  up: fix-up offsets, expectations and their ipset entries. So the pending
  cases pass too.
"""

import os
import re
import subprocess
import time
from dataclasses import dataclass, field

from .gateway import ANSI, READY_LINE, READY_SECS, kernel_helper
from .ha import VIP_OUT, HOSTS
from .proc import Daemon, LabError, run, tail, wait_until
from .servers import sha256

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SESS = os.path.join(REPO, "tests", "ha", "ftpsess.py")
CTSTATE = os.path.join(REPO, "tests", "ha", "ctstate.py")
FILE = "1k.bin"
READY_SECS_SESSIONS = 20  # sessions ready before the failover
SYNC_SECS = 5  # B's external cache holds every control connection
CLIENT_SECS = 60  # a client's whole life, failover included
# ftpct's line when SIGHUP made it take up sessions from conntrack (daemon/resume.rs)
TOOK_UP = re.compile(r"took up (\d+) session\(s\) kept in conntrack, (\d+) with a pending data connection")
MODES = ("kernel", "ftpct")


@dataclass(frozen=True)
class Case:
    """name, the client's namespace role, the address it dials, the kind of
    session (ftpsess.py), the expected result per mode, and whether the
    session starts before the failover (else: after it)."""
    name: str
    client: str
    host: str
    kind: str
    expect: dict = field(hash=False)
    before: bool = True

    def expected(self, mode):
        return self.expect[mode]


SRV = HOSTS["srv"][0]
BOTH_PASS = {"kernel": "pass", "ftpct": "pass"}
PENDING = {"kernel": "fail", "ftpct": "pass"}  # the kernel's helper loses its expectations' NAT in conntrackd

CASES = (
    # client inside, PORT rewritten by SNAT, a transfer before; after: NOOP, a new PORT + RETR
    Case("active-port-snat", "cli", SRV.addr4, "port", BOTH_PASS),
    Case("active-eprt-snat-v6", "cli", SRV.addr6, "port", BOTH_PASS),
    # client outside, server inside behind DNAT, 227 rewritten; after: NOOP, a new PASV + RETR
    Case("passive-pasv-dnat", "cliout", VIP_OUT.addr4, "pasv", BOTH_PASS),
    # PORT (200) before the failover, RETR after: the data connection needs the expectation
    Case("pending-port-snat", "cli", SRV.addr4, "port-pending", PENDING),
    # PASV (227) before, connect + RETR after
    Case("pending-pasv-dnat", "cliout", VIP_OUT.addr4, "pasv-pending", PENDING),
    Case("passive-epsv-dnat-v6", "cliout", VIP_OUT.addr6, "pasv", BOTH_PASS),
    Case("pending-eprt-snat-v6", "cli", SRV.addr6, "port-pending", PENDING),
    Case("pending-epsv-dnat-v6", "cliout", VIP_OUT.addr6, "pasv-pending", PENDING),
    # a new active session through gateway B
    Case("new-after-failover", "cli", SRV.addr4, "port", BOTH_PASS, before=False),
)


@dataclass
class Outcome:
    case: Case
    mode: str
    result: str  # pass, fail, broken
    why: str
    seqadj_b: str  # the sequence adjustment B holds for the control connection after the commit
    secs: float
    transcript: str
    context: str  # what the mode's run saw: conntrackd's logs, ftpct's, state, counters
    problems: tuple = ()  # checks of the mode's run itself that failed (they fail every case)

    @property
    def expected(self):
        return self.case.expected(self.mode)

    @property
    def as_expected(self):
        return self.result == self.expected and not self.problems

    def report(self):
        problems = "".join(f"\nthe run itself: {p}" for p in self.problems)
        return (f"{self.case.name} under {self.mode}: expected {self.expected}, got {self.result}"
                f"{': ' + self.why if self.why else ''}{problems}\n"
                f"--- client transcript:\n{self.transcript or '(nothing)'}\n{self.context}")


class Session:
    """One ftpsess.py client, running in the background."""

    def __init__(self, case, lab, workdir, go):
        self.case = case
        self.dir = os.path.join(workdir, case.name)
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "client.log")
        argv = ["ip", "netns", "exec", lab.ns(case.client), "timeout", "-k", "2", str(CLIENT_SECS),
                "/usr/bin/python3", "-u", SESS, case.kind, case.host, FILE, self.dir, go]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def transcript(self, lines=20):
        return tail(self.log, lines)

    def ready(self):
        return "READY" in self.transcript(100).splitlines() or self.proc.poll() is not None

    def control_port(self):
        m = re.search(r"^control from port (\d+)$", self.transcript(100), re.M)
        return m and m.group(1)

    def wait(self):
        try:
            return self.proc.wait(CLIENT_SECS + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def result(self, rc, served):
        """(result, why) from the exit status and the two copies' SHA-256."""
        first = re.search(r"^FAILED.*$", self.transcript(100), re.M)
        why = first.group(0) if first else ""
        if rc == 0:
            sums = {name: sha256(os.path.join(self.dir, name)) if os.path.exists(os.path.join(self.dir, name))
                    else "missing" for name in ("before.bin", "after.bin")}
            bad = [f"{name} {s[:16]}" for name, s in sums.items() if s != served]
            if bad:
                return "fail", f"SHA-256 differs from the served file's {served[:16]}: {', '.join(bad)}"
            return "pass", ""
        if rc == 2 and self.case.before:
            return "broken", why or "failed before the failover"
        return "fail", why or f"client exit status {rc}"


class FailoverRun:
    """One gateway mode's run: the lab (ha.py, its servers started by the
    caller), the gateways' helpers, every session, one failover, results."""

    def __init__(self, lab, mode, ftpct_bin, workdir, served_sha):
        self.lab = lab
        self.mode = mode
        self.ftpct_bin = ftpct_bin
        self.workdir = os.path.join(workdir, f"failover-{mode}")
        os.makedirs(self.workdir, exist_ok=True)
        self.served = served_sha
        self.ftpct = {}
        self.rules = []
        self.problems = []  # checks of the run itself that failed: every case reports them

    # --- helpers on both gateways ----------------------------------------

    def enter(self):
        if self.mode == "kernel":
            for g in ("a", "b"):
                kernel_helper(_GwView(self.lab, g), True)
        else:
            if not os.access(self.ftpct_bin, os.X_OK):
                raise LabError(f"{self.ftpct_bin} missing: cargo build --release (or --ftpct PATH)")
            for g in ("a", "b"):
                self.rules.append(g)
                self.lab.gw(g, self.ftpct_bin, "rules", "--apply")
                log = os.path.join(self.workdir, f"ftpct-{g}.log")
                d = Daemon(f"ftpct run on gateway {g}", [self.ftpct_bin, "run"], self.lab.gw_ns(g), log).start()
                self.ftpct[g] = d
                try:
                    wait_until(f"ftpct's start-up line on gateway {g}",
                               lambda: not d.alive() or READY_LINE in d.output(50), timeout=READY_SECS)
                except LabError:
                    raise d.fail(f"logged no start-up line within {READY_SECS} s") from None
                if not d.alive():
                    raise d.fail("exited at start-up")
        return self

    def leave(self):
        problems = []
        for g, d in self.ftpct.items():
            if not d.stop():
                problems.append(f"ftpct on gateway {g} did not stop on SIGTERM within 5 s: killed")
        self.ftpct = {}
        for g in self.rules:
            self.lab.gw(g, self.ftpct_bin, "rules", "--delete", check=False)
        self.rules = []
        if self.mode == "kernel":
            for g in ("a", "b"):
                kernel_helper(_GwView(self.lab, g), False)
        if problems:
            raise LabError("; ".join(problems))

    # --- the run ------------------------------------------------------------

    def run(self):
        """{case name: Outcome} for every case."""
        t0 = time.monotonic()
        go = os.path.join(self.workdir, "go")
        before = [c for c in CASES if c.before]
        sessions = {c.name: Session(c, self.lab, self.workdir, go) for c in before}
        try:
            try:
                wait_until("every session ready (READY, or exited) before the failover",
                           lambda: all(s.ready() for s in sessions.values()), timeout=READY_SECS_SESSIONS)
            except LabError as e:
                self.problems.append(f"{e}: {', '.join(n for n, s in sessions.items() if not s.ready())}")
            # conntrackd polls every PollSecs (1 s): let it see the last rewrites.
            time.sleep(2)
            try:
                wait_until(f"gateway B's external cache holding the {len(before)} control connections",
                           lambda: self._synced() >= len(before), timeout=SYNC_SECS)
            except LabError as e:
                self.problems.append(f"{e} (it holds {self._synced()})")
            self._state("state-before.txt", "a")
            self.lab.failover("b")
            if self.mode == "ftpct":
                self._take_up()
            self._state("state-after.txt", "b")
            seqadj = {name: self._seqadj_b(s) for name, s in sessions.items()}
            open(go, "w").close()
            for c in CASES:
                if not c.before:
                    sessions[c.name] = Session(c, self.lab, self.workdir, go)
            results = {}
            for c in CASES:
                s = sessions[c.name]
                results[c.name] = (*s.result(s.wait(), self.served), time.monotonic() - t0)
            context = self.context()  # after the sessions: the counters hold their packets
            return {c.name: Outcome(c, self.mode, result, why, seqadj.get(c.name, "-"), secs,
                                    sessions[c.name].transcript(), context, tuple(self.problems))
                    for c in CASES for result, why, secs in [results[c.name]]}
        finally:
            for s in sessions.values():
                if s.proc.poll() is None:
                    s.proc.kill()
                    s.proc.wait()

    def _synced(self):
        out = self.lab.conntrackd["b"].ctl("-e", "ct").stdout
        return len(re.findall(r"ESTABLISHED.* dport=21 ", out))

    def _take_up(self):
        """SIGHUP to B's ftpct: it must say it took up sessions, at least
        one pending data connection per pending case."""
        d = self.ftpct["b"]
        offset = os.path.getsize(d.log_path)
        d.proc.send_signal(1)  # SIGHUP: `ip netns exec` execs ftpct, so the pid is its own
        try:
            wait_until("gateway B's ftpct saying it took up the sessions ('took up N session(s)')",
                       lambda: TOOK_UP.search(self._log_since(d, offset)), timeout=5)
        except LabError as e:
            self.problems.append(f"{e}; its log since SIGHUP:\n{self._log_since(d, offset)[-2000:]}")
            return
        m = TOOK_UP.search(self._log_since(d, offset))
        pending = sum(1 for c in CASES if c.before and c.kind.endswith("-pending"))
        if int(m.group(2)) < pending:
            self.problems.append(f"gateway B's ftpct took up {m.group(2)} pending data connection(s), "
                                 f"not the {pending} of the pending cases: {m.group(0)!r}")

    @staticmethod
    def _log_since(d, offset):
        with open(d.log_path, "rb") as f:
            f.seek(offset)
            return ANSI.sub("", f.read().decode(errors="replace"))

    def _seqadj_b(self, session):
        port = session.control_port()
        if not port:
            return "-"
        done = run(["/usr/bin/python3", CTSTATE, "--summary", port], ns=self.lab.gw_ns("b"), check=False)
        return done.stdout.strip() or "?"

    def _state(self, name, g):
        ns = self.lab.gw_ns(g)
        parts = []
        for args in (("--port", "21"), ("--expect",)):
            done = run(["/usr/bin/python3", CTSTATE, *args], ns=ns, check=False)
            parts.append(f"$ ctstate.py {' '.join(args)} (gateway {g})\n{(done.stdout + done.stderr).rstrip()}")
        if g == "a":
            for what in ("ct", "expect"):
                done = self.lab.conntrackd["b"].ctl("-e", what)
                parts.append(f"$ conntrackd -e {what} (gateway B's external cache)\n"
                             f"{(done.stdout + done.stderr).rstrip()}")
        text = "\n".join(parts)
        with open(os.path.join(self.workdir, name), "w") as f:
            f.write(text + "\n")
        setattr(self, name.split(".")[0].replace("-", "_"), text)

    def context(self):
        """What a failing case's message shows besides its transcript."""
        parts = [f"--- {t}:\n{getattr(self, t.replace('-', '_'), '(not taken)')}"
                 for t in ("state-before", "state-after")]
        parts.append(self.lab.logs(15))
        for g, d in self.ftpct.items():
            parts.append(f"--- ftpct's log on gateway {g} ({d.log_path}), last 15 lines:\n"
                         + ANSI.sub("", d.output(15)))
        for g in ("a", "b"):
            for ipt in ("iptables", "ip6tables"):
                done = self.lab.gw(g, ipt, "-L", "FORWARD", "-nvx", check=False)
                parts.append(f"--- gateway {g}: {ipt} -L FORWARD -nvx\n{(done.stdout or done.stderr).rstrip()}")
        return "\n".join(parts)


class _GwView:
    """What gateway.kernel_helper needs of a topology: gw(...) on one gateway."""

    def __init__(self, lab, g):
        self.lab, self.g = lab, g

    def gw(self, *argv, check=True, timeout=30):
        return self.lab.gw(self.g, *argv, check=check, timeout=timeout)


def table(outcomes, secs):
    """The suite's closing table, as scripts/failover.sh printed it."""
    rule = "-" * 100
    lines = [f"{'case':<21} {'gateway':<7} {'expected':<9} {'result':<7} {'B seqadj':<11} {'secs':>6}  first failure",
             rule]
    bad = 0
    for o in outcomes:
        mark = ""
        if not o.as_expected:
            mark, bad = "<-- MISMATCH ", bad + 1
        why = "; ".join(x for x in (o.why.removeprefix("FAILED "), *o.problems) if x)
        lines.append(f"{o.case.name:<21} {o.mode:<7} {o.expected:<9} {o.result:<7} {o.seqadj_b:<11} "
                     f"{o.secs:6.0f}  {mark}{why}")
    lines += [rule, f"failover: {len(outcomes)} run(s), {len(outcomes) - bad} as expected, {bad} mismatch(es), "
                    f"{secs:.0f} s"]
    return lines
