"""The end-to-end cases: tests/e2e/matrix, one line a case (its header
says what each column means), read and checked here.

A case runs under ftpct always; under the kernel's helper and with no
helper (the controls) when tagged ctl, or always with --lab-all-controls.
Its expected result per gateway mode is data too (expected()).
"""

import os
import re
import sys
from dataclasses import dataclass

from .proc import LabError

MATRIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e", "matrix")
NAME_TAGS = ("multi", "idle", "big", "deny", "allowfxp", "long")  # tags that end a case's name
FXP_ALLOW = ("--allow-fxp", "198.51.100.0/24", "--allow-fxp", "2001:db8:2::/64")  # server A's networks
OPERATION = re.compile(r"^(ls|fxp|(get|put):(0|1k|50m)|(idle|chat):[0-9]+)$")
CHOICES = {
    "topology": ("snat", "dnat", "dnatport", "zone", "plain", "fxp"),
    "family": ("v4", "v6"),
    "mode": ("port", "eprt", "pasv", "epsv", "fxp"),
    "client": ("curl", "lftp", "python"),
    "server": ("vsftpd", "pure-ftpd"),
}


@dataclass(frozen=True)
class Case:
    topology: str
    family: str
    mode: str
    client: str
    server: str
    tags: tuple
    ops: tuple
    line: int = 0

    @property
    def name(self):
        """TOPO-FAM-MODE-CLIENT-SERVER[-TAG...]: what scripts/e2e.sh called it."""
        parts = [self.topology, self.family, self.mode, self.client, self.server]
        return "-".join(parts + [t for t in NAME_TAGS if t in self.tags])

    def expected(self, gateway_kind):
        """'pass' or 'fail' under a gateway mode."""
        if gateway_kind == "none":
            return "fail"  # the filter lets no data connection through without a helper
        if gateway_kind == "kernel":
            return "fail" if self.topology == "fxp" else "pass"  # the kernel refuses FXP
        return "fail" if "deny" in self.tags else "pass"  # ftpct: FXP only where allowed

    def runs_under(self, gateway_kind, all_controls=False):
        return gateway_kind.startswith("ftpct") or all_controls or "ctl" in self.tags

    @property
    def ftpct_args(self):
        return FXP_ALLOW if "allowfxp" in self.tags else ()

    @property
    def needs_rewrite(self):
        """NAT changes the announced address: active modes out through
        SNAT, PASV in through DNAT (EPSV carries no address)."""
        return (self.topology, self.mode) in {("snat", "port"), ("snat", "eprt"), ("dnat", "pasv"),
                                              ("dnatport", "pasv"), ("zone", "port"), ("zone", "eprt")}

    @property
    def quick(self):
        return "ctl" in self.tags or "quick" in self.tags


def check(case):
    """Raises LabError for a line that cannot make a meaningful case."""
    for column, allowed in CHOICES.items():
        if getattr(case, column) not in allowed:
            raise LabError(f"bad {column} {getattr(case, column)!r} (one of: {', '.join(allowed)})")
    rules = [
        (case.family == "v6" and case.mode in ("port", "pasv"), f"{case.mode} is IPv4 only"),
        (case.client == "curl" and any(op.startswith("idle") for op in case.ops), "curl cannot stay idle"),
        (case.client != "python" and any(op.startswith("chat") for op in case.ops), "only python chats"),
        ((case.client, case.family, case.mode) == ("lftp", "v4", "eprt"), "lftp never sends EPRT over IPv4"),
        ((case.topology == "fxp" or case.mode == "fxp")
         and (case.topology, case.mode, case.client) != ("fxp", "fxp", "python"),
         "FXP is python's mode fxp, in the fxp topology"),
    ]
    for broken, why in rules:
        if broken:
            raise LabError(why)
    for op in case.ops:
        if not OPERATION.match(op):
            raise LabError(f"bad operation {op!r}")


def parse_line(text, number):
    words = text.split()
    if len(words) != 7:
        raise LabError(f"{len(words)} columns, 7 expected")
    # Interned: pytest reuses a session fixture only for the very same
    # parameter object (`is`), so equal names must be one object.
    topology, family, mode, client, server, tags, ops = map(sys.intern, words)
    tags = () if tags == "-" else tuple(tags.split(","))
    return Case(topology, family, mode, client, server, tags, tuple(ops.split(",")), number)


def load(path=MATRIX):
    """The cases of the matrix file, in its order; a bad line or a name
    given twice stops everything (a case silently dropped proves nothing)."""
    cases, seen = [], {}
    with open(path) as f:
        for number, text in enumerate(f, 1):
            text = text.strip()
            if not text or text.startswith("#"):
                continue
            try:
                case = parse_line(text, number)
                check(case)
            except LabError as e:
                raise LabError(f"{path}:{number}: {e}") from None
            if case.name in seen:
                raise LabError(f"{path}:{number}: case {case.name} already on line {seen[case.name]}")
            seen[case.name] = number
            cases.append(case)
    return cases
