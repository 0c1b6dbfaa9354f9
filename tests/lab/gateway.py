"""The gateway's FTP helper, one mode at a time:

  none             no helper: every data connection must fail (the filter
                   drops what is neither RELATED nor a control connection);
  kernel           the kernel's own helper, attached by hand (raw PREROUTING
                   -p tcp --dport 21 -j CT --helper ftp, first; with --zone
                   N on a zoned topology): automatic helper assignment does
                   not exist on current kernels;
  ftpct            `ftpct rules --apply` and `ftpct run` (selective queueing;
                   with --conntrack-zone N on a zoned topology);
  ftpct-queue-all  the same with --queue-all on both.
"""

import os
import re
import subprocess
import time
from dataclasses import dataclass

from .proc import Daemon, LabError, wait_until

KERNEL_HELPER = ("PREROUTING", "-p", "tcp", "--dport", "21", "-j", "CT", "--helper", "ftp")  # table raw
READY_LINE = "running: queues"  # ftpct's start-up line: its queues are bound
READY_SECS = 5
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the text log has colours even in a file


@dataclass(frozen=True)
class Mode:
    """A gateway mode and the extra arguments of `ftpct run`."""
    kind: str
    ftpct_args: tuple = ()

    KINDS = ("none", "kernel", "ftpct", "ftpct-queue-all")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise LabError(f"unknown gateway mode {self.kind!r} (one of: {', '.join(self.KINDS)})")

    @property
    def runs_ftpct(self):
        return self.kind.startswith("ftpct")

    @property
    def queue_args(self):
        return ("--queue-all",) if self.kind == "ftpct-queue-all" else ()

    def __str__(self):
        return " ".join((self.kind, *self.ftpct_args))


class Gateway:
    """The helper of one topology's gateway. enter(mode) sets it up,
    leave() takes it away again (ftpct stopped, its rules deleted, the
    kernel's helper detached)."""

    def __init__(self, topology, ftpct_bin, workdir):
        self.topology = topology
        self.ftpct_bin = ftpct_bin
        self.workdir = workdir
        self.mode = None
        self.ftpct = None
        self.rules_applied = None  # the arguments `ftpct rules --apply` had

    def enter(self, mode):
        self.leave()
        self.mode = mode
        if mode.kind == "kernel":
            kernel_helper(self.topology, True)
        elif mode.runs_ftpct:
            if not os.access(self.ftpct_bin, os.X_OK):
                raise LabError(f"{self.ftpct_bin} missing: cargo build --release (or --ftpct PATH)")
            self.rules_applied = mode.queue_args  # deleted by leave() even if --apply half-failed
            self._ftpct_rules("--apply", *mode.queue_args)
            self._start_ftpct(mode)
        self.topology.flush_conntrack()
        return self

    def leave(self):
        """Idempotent, and safe on a half-entered mode."""
        problems = []
        if self.ftpct is not None:
            if not self.ftpct.stop():
                problems.append("ftpct did not stop on SIGTERM within 5 s: killed")
            self.ftpct = None
        if self.rules_applied is not None:
            self._ftpct_rules("--delete", *self.rules_applied, check=False)
            self.rules_applied = None
        if self.mode is not None and self.mode.kind == "kernel":
            kernel_helper(self.topology, False)
        self.mode = None
        if problems:
            raise LabError("; ".join(problems))

    def kill_ftpct(self, sig, timeout):
        """Signal sig to ftpct itself (a fault under test); waits at most
        timeout seconds, then stops it. Its exit status (124: it had to be
        stopped). The rules stay: restart_ftpct() starts a new one."""
        daemon = self.ftpct
        try:
            daemon.proc.send_signal(sig)
            return daemon.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            daemon.stop()
            return 124
        finally:
            self.ftpct = None

    def restart_ftpct(self, mode=None):
        """A new `ftpct run` in the current mode, with a log of its own; or
        in mode, the same kind with other `ftpct run` arguments (the rules
        stay as they are)."""
        if mode is not None:
            if mode.queue_args != self.mode.queue_args:
                raise LabError(f"restart_ftpct: {mode} needs other rules than {self.mode}")
            self.mode = mode
        if self.ftpct is not None:
            self.ftpct.stop()
        self._start_ftpct(self.mode)
        return self.ftpct

    # --- ftpct's log -----------------------------------------------------

    def log_offset(self):
        """Where ftpct's log ends now (0 without ftpct)."""
        return os.path.getsize(self.ftpct.log_path) if self.ftpct else 0

    def log_since(self, offset):
        """ftpct's log from offset on, without colours ('' without ftpct)."""
        if self.ftpct is None:
            return ""
        with open(self.ftpct.log_path, "rb") as f:
            f.seek(offset)
            return ANSI.sub("", f.read().decode(errors="replace"))

    def counters(self):
        """The gateway filter's packet counters (its policy's count is what
        it dropped: data connections nobody made RELATED) and the
        expectations pending: what a failing run's packets met."""
        out = []
        for ipt in ("iptables", "ip6tables"):
            done = self.topology.gw(ipt, "-L", "FORWARD", "-nvx", check=False)
            out.append(f"$ {ipt} -L FORWARD -nvx\n{(done.stdout or done.stderr).rstrip()}")
        done = self.topology.gw("conntrack", "-L", "expect", check=False)
        out.append(f"$ conntrack -L expect\n{(done.stdout + done.stderr).rstrip()}")
        return "\n".join(out)

    # --- the pieces -------------------------------------------------------

    def _ftpct_rules(self, op, *args, check=True):
        self.topology.gw(self.ftpct_bin, "rules", op, *args, check=check)

    def _start_ftpct(self, mode):
        log = os.path.join(self.workdir, f"ftpct-{self.topology.name}-{time.strftime('%H%M%S')}"
                                         f"-{time.monotonic_ns() % 10**6}.log")
        zone = ("--conntrack-zone", str(self.topology.spec.zone)) if self.topology.spec.zone else ()
        argv = [self.ftpct_bin, "run", *mode.queue_args, *zone, *mode.ftpct_args]
        self.ftpct = Daemon("ftpct run", argv, self.topology.gw_ns, log).start()
        try:
            wait_until("ftpct's start-up line",
                       lambda: not self.ftpct.alive() or READY_LINE in self.ftpct.output(50),
                       timeout=READY_SECS)
        except LabError:
            raise self.ftpct.fail(f"logged no start-up line ({READY_LINE!r}) within {READY_SECS} s") from None
        if not self.ftpct.alive():
            raise self.ftpct.fail("exited at start-up")


def helper_rule(topology):
    """The kernel helper's rule on this topology: in its zone, if it has
    one (views of a gateway without one, as failover's, have none)."""
    return KERNEL_HELPER + getattr(topology, "zone_args", ())


def kernel_helper(topology, on):
    """Attaches (on) or detaches the kernel's FTP helper on the gateway,
    both families; idempotent. In a zone it goes first: a packet takes
    the first CT rule it meets, and the zone's rules would take it."""
    chain, *spec = helper_rule(topology)
    at = ["-I", chain, "1"] if len(spec) > len(KERNEL_HELPER) - 1 else ["-A", chain]
    for ipt in ("iptables", "ip6tables"):
        attached = topology.gw(ipt, "-t", "raw", "-C", chain, *spec, check=False).returncode == 0
        if on and not attached:
            topology.gw(ipt, "-t", "raw", *at, *spec)
        elif not on and attached:
            topology.gw(ipt, "-t", "raw", "-D", chain, *spec)


def kernel_helper_attached(topology):
    """'on', 'off', or per family when they differ."""
    state = {ipt: topology.gw(ipt, "-t", "raw", "-C", *helper_rule(topology), check=False).returncode == 0
             for ipt in ("iptables", "ip6tables")}
    if len(set(state.values())) == 1:
        return "on" if state["iptables"] else "off"
    return ", ".join(f"{ipt} {'on' if on else 'off'}" for ipt, on in state.items())
