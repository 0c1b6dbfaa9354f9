"""Running programs for the lab: in a network namespace, bounded in time,
with their output in the error when they fail.

Every wait here is bounded twice, in count and in time, so that a lab that
went wrong fails a test instead of hanging the run.
"""

import os
import shlex
import signal
import subprocess
import time


class LabError(Exception):
    """The lab itself failed (not the case under test): a command, a
    server or a gateway that did not come up."""


def in_ns(ns, argv):
    """argv run inside network namespace ns (None: here). `ip netns exec`
    execs the program, so a pid it reports is the program's own."""
    return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)


def run(argv, ns=None, check=True, timeout=30):
    """Runs argv to its end (at most timeout seconds); its CompletedProcess.
    check: a non-zero exit raises LabError with the program's stderr."""
    argv = in_ns(ns, argv)
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{shlex.join(argv)}: still running after {timeout} s") from e
    if check and done.returncode != 0:
        raise LabError(f"{shlex.join(argv)}: exit status {done.returncode}: "
                       f"{(done.stderr or done.stdout).strip()}")
    return done


def wait_until(what, predicate, timeout=5.0, interval=0.1):
    """Polls predicate() until it is true: at most timeout seconds and
    timeout/interval tries. Raises LabError naming what did not happen."""
    deadline = time.monotonic() + timeout
    for _ in range(max(1, round(timeout / interval))):
        if predicate():
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if not predicate():
        raise LabError(f"{what}: not within {timeout:g} s")


def tail(path, lines=20):
    """The last lines of a text file ('' when it does not exist)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Daemon:
    """A long-running program in a namespace: a process group of its own
    (so that stopping it also stops the children it forked, by id), stdin
    closed, stdout and stderr into a log file. preexec: run in the child
    before `ip netns exec` (e.g. to join a cgroup)."""

    def __init__(self, name, argv, ns, log_path, preexec=None):
        self.name = name
        self.argv = in_ns(ns, argv)
        self.log_path = log_path
        self.preexec = preexec
        self.proc = None

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=self.preexec)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self, lines=20):
        return tail(self.log_path, lines)

    def fail(self, why, lines=20):
        """LabError: why, the command line and the end of its output."""
        status = "running" if self.alive() else f"exited with status {self.proc.returncode}"
        return LabError(f"{self.name} {why} ({status}): {shlex.join(self.argv)}\n"
                        f"--- its output ({self.log_path}), last {lines} lines:\n"
                        f"{self.output(lines) or '(nothing)'}")

    def await_output(self, text, timeout, lines=50):
        """Waits (at most timeout seconds) until text shows in the last
        lines of its output; LabError with that output when it does not,
        or when it exits first."""
        try:
            wait_until(f"{self.name}: {text!r} in its output",
                       lambda: not self.alive() or text in self.output(lines), timeout=timeout)
        except LabError:
            raise self.fail(f"did not say {text!r} within {timeout:g} s") from None
        if not self.alive():
            raise self.fail("exited at start-up")
        return self

    def stop(self, timeout=5.0):
        """SIGTERM to its group, then SIGKILL after timeout seconds. True
        when it stopped on SIGTERM."""
        if not self.alive():
            return True
        clean = True
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            clean = False
        # Children of the group may outlive the leader: they go too.
        self._signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return clean

    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
