"""One end-to-end run: a case's client session through the gateway in one
mode, and every check of it.

Checks: the client's exit status; each transfer's SHA-256 (listing named,
downloads, uploads on the server's disk, the FXP copy on server B); the
client used its mode (PORT, EPRT, PASV, EPSV in its transcript) and no
other; under ftpct, its log shows an expectation and a matched data
connection per transfer, a rewrite where NAT needs one, and for a refused
FXP a refusal and no match. A failure counts only when the client logged in:
otherwise the control connection itself failed and the result is "broken".
"""

import glob
import os
import re
import time
from dataclasses import dataclass, field

from . import clients

TIMEOUT_PASS = 20  # seconds a client may take when it should succeed
TIMEOUT_FAIL = 5  # ... and when it should fail (its data connection hangs)
LOG_SETTLE_SECS = 1.0  # the last decisions may reach ftpct's log after the client ends


@dataclass
class Outcome:
    name: str
    gateway: str
    expected: str
    result: str = "fail"
    log: str = "-"  # ok, bad, or - (no ftpct)
    secs: float = 0.0
    problems: list = field(default_factory=list)
    transcript: str = ""
    ftpct_log: str = ""
    server_output: str = ""
    counters: str = ""  # the gateway's filter counters, for a run that went wrong

    @property
    def as_expected(self):
        return self.result == self.expected and self.log != "bad"

    def report(self):
        """What happened, for a failing test."""
        parts = [f"{self.name} under {self.gateway}: expected {self.expected}, got {self.result}, "
                 f"ftpct's log {self.log}",
                 "problems: " + ("; ".join(self.problems) or "none"),
                 "--- client transcript (last 40 lines):", tail_text(self.transcript, 40)]
        if self.ftpct_log:
            parts += ["--- ftpct's log during the case (last 30 lines):", tail_text(self.ftpct_log, 30)]
        parts += ["--- the server's output:", self.server_output]
        if self.counters:
            parts += ["--- the gateway's counters during the run:", self.counters]
        return "\n".join(parts)


def tail_text(text, lines):
    return "\n".join("  | " + line for line in text.splitlines()[-lines:])


def count_events(log_text, kind):
    """Lines of ftpct's log with event KIND (text: event=KIND or
    event="KIND"; JSON: "event":"KIND")."""
    pattern = re.compile(r'event["=:]+"?' + re.escape(kind) + r'"?([^a-z-]|$)')
    return sum(1 for line in log_text.splitlines() if pattern.search(line))


def log_problems(case, log_text, transfers):
    """ftpct's decisions for the case, as its log shows them."""
    data = count_events(log_text, "data-matched")
    refused = count_events(log_text, "refused")
    if "deny" in case.tags:
        return ([] if refused >= 1 else ["log: no refusal"]) + \
               ([] if data == 0 else [f"log: {data} data connection(s) matched, expected none"])
    problems = []
    expectations = count_events(log_text, "expect")
    if expectations < transfers:
        problems.append(f"log: {expectations} expectation(s) for {transfers} transfer(s)")
    if data < transfers:
        problems.append(f"log: {data} data connection(s) matched for {transfers} transfer(s)")
    if refused:
        problems.append(f"log: {refused} refusal(s)")
    rewrites = count_events(log_text, "rewrite")
    if case.needs_rewrite and rewrites < transfers:
        problems.append(f"log: {rewrites} rewrite(s) for {transfers} transfer(s)")
    return problems


class Lab:
    """What a run needs: the topology, its server, its gateway, the files
    and a work directory."""

    def __init__(self, topology, server, gateway, files, workdir, uploads):
        self.topology = topology
        self.server = server
        self.gateway = gateway
        self.files = files
        self.workdir = workdir
        self.uploads = uploads


def run(lab, case):
    mode = lab.gateway.mode
    outcome = Outcome(case.name, mode.kind, case.expected(mode.kind))
    case_dir = os.path.join(lab.workdir, "cases", f"{case.name}.{mode.kind}")
    os.makedirs(case_dir, exist_ok=True)
    steps = clients.plan(case.ops, case_dir, f"e2e-{case.name}-{mode.kind}", lab.uploads)
    timeout = TIMEOUT_PASS if outcome.expected == "pass" else TIMEOUT_FAIL
    lab.topology.flush_conntrack()
    lab.topology.zero_counters()
    offset = lab.gateway.log_offset()
    transcript = os.path.join(case_dir, "client.log")
    started = time.monotonic()
    try:
        status = clients.run_client(lab.topology.cli_ns, clients.client_argv(case, lab.topology, steps, timeout),
                                    timeout, transcript)
        outcome.secs = time.monotonic() - started
        judge(outcome, case, steps, status, lab.files, transcript)
        if mode.runs_ftpct:
            check_ftpct_log(outcome, case, lab.gateway, offset, steps)
        outcome.server_output = lab.server.output()
        if not outcome.as_expected:
            outcome.counters = lab.gateway.counters()
    finally:
        # The big files are checked by now: do not keep 100 MiB per case.
        for path in glob.glob(os.path.join(case_dir, "*50m*")) + glob.glob(os.path.join(lab.files.upload, "*50m*")):
            os.unlink(path)
    return outcome


def judge(outcome, case, steps, status, files, transcript):
    with open(transcript, errors="replace") as f:
        outcome.transcript = f.read()
    if status != 0:
        outcome.problems.append(f"client exit status {status}" + (" (timed out)" if status == 124 else ""))
    outcome.problems += clients.step_problems(steps, files)
    if status == 0:
        outcome.problems += clients.mode_problems(case, outcome.transcript)
    outcome.result = "fail" if outcome.problems else "pass"
    # A failure proves something only if the control connection worked.
    if outcome.result == "fail" and not clients.logged_in(outcome.transcript):
        outcome.result = "broken"
        outcome.problems.append("no login: the control connection itself failed")


def check_ftpct_log(outcome, case, gateway, offset, steps):
    transfers = sum(step.transfers for step in steps)
    deadline = time.monotonic() + LOG_SETTLE_SECS
    for _ in range(int(LOG_SETTLE_SECS / 0.1) + 1):
        outcome.ftpct_log = gateway.log_since(offset)
        problems = log_problems(case, outcome.ftpct_log, transfers)
        if not problems or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    outcome.log = "bad" if problems else "ok"
    outcome.problems += problems


def table(outcomes, secs):
    """The summary: one line a run, and the counts."""
    rule = "-" * 86
    lines = [f"{'case':<46} {'gateway':<7} {'expected':<9} {'result':<7} {'log':<4} {'secs':>6}", rule]
    for o in outcomes:
        mark = "" if o.as_expected else "  <-- MISMATCH"
        lines.append(f"{o.name:<46} {o.gateway:<7} {o.expected:<9} {o.result:<7} {o.log:<4} {o.secs:6.1f}{mark}")
    bad = sum(1 for o in outcomes if not o.as_expected)
    lines += [rule, f"{len(outcomes)} run(s), {len(outcomes) - bad} as expected, {bad} mismatch(es), {secs:.0f} s"]
    return lines

