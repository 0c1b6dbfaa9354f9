"""The soak (soak.py): sustained mixed FTP load, 200 ftpload client threads
(half IPv4, half IPv6) and 8 curl clients, under ftpct and the kernel's
helper (the control) on the same load in the same run, on snat and dnat,
with vsftpd and pure-ftpd, at the kernel's default conntrack timeouts.

A row is a gateway mode on a topology, named TOPOLOGY:MODE, e.g. snat:ftpct;
it passes by soak.verdict(): a transfer completed, ftpct back at baseline
after the load, and ftpct's failure rate against the kernel's on the same
topology. A topology's rows run when its first row's test starts (the
ftpct row is judged against the kernel's); -k picks rows, and an ftpct row
without its kernel row may fail no transfer at all. The table comes at the
end of the run (and in table.txt of the work directory).

  the short soak (the test command's, about 2 min):
    /usr/bin/python3 -m pytest tests/lab/test_soak.py --soak-seconds 6 --soak-rotate-servers
  the long soak (10 min per row, 4 rows, about 45 min):
    /usr/bin/python3 -m pytest tests/lab/test_soak.py --soak-minutes 10
  options: /usr/bin/python3 -m pytest tests/lab/test_soak.py --help (group "lab", --soak-*)
"""

import os
import shutil
import sys
import tempfile
import time

import pytest

from . import soak
from .conftest import LIVE, SOAK_RUN, require_root


def pytest_generate_tests(metafunc):
    if metafunc.function.__name__ != "test_soak":
        return
    settings = soak.settings_from(metafunc.config)
    params = [pytest.param(topo, mode, id=f"{topo}:{mode}")
              for topo in settings.topologies for mode in settings.modes]
    # scope="session": a topology's rows run once, for all its tests.
    metafunc.parametrize("soak_rows,soak_mode", params, indirect=["soak_rows"], scope="session")


@pytest.fixture(scope="session")
def soak_context(request, lab_files):
    """The run's work directory (--soak-out, or a fresh one removed when
    every test passed), the binaries' snapshot, samples.csv, soak.log."""
    require_root()
    config = request.config
    settings = soak.settings_from(config)
    out = config.getoption("--soak-out")
    if out:
        os.makedirs(out, exist_ok=True)
        workdir = os.path.abspath(out)
    else:
        workdir = tempfile.mkdtemp(prefix="ftpct-soak.", dir="/tmp")
    os.chmod(workdir, 0o755)
    state = config.stash.setdefault(SOAK_RUN, {"rows": [], "table": [], "kept": None, "passed": 0})
    selected = sum(1 for item in request.session.items
                   if hasattr(item, "callspec") and "soak_rows" in item.callspec.params)
    started = time.monotonic()
    capman = config.pluginmanager.getplugin("capturemanager")

    def say(text):
        # Progress, live: a row takes minutes.
        with capman.global_and_fixture_disabled():
            sys.stderr.write("\n" + text)
            sys.stderr.flush()

    ctx = soak.Context(workdir, config.getoption("--ftpct"), config.getoption("--ftpload"), lab_files,
                       config.getoption("--lab-prefix"), config.stash[LIVE]["topologies"], say)
    ctx.log(f"modes {','.join(settings.modes)}, topologies {','.join(settings.topologies)}, servers "
            f"{','.join(settings.servers)}{' (rotated)' if settings.rotate else ''}, {settings.seconds} s of load "
            f"per row; work directory {workdir}")
    yield ctx, settings, state
    if state["rows"]:
        state["table"] = soak.table(state["rows"], settings, time.monotonic() - started, ctx.csv)
        with open(os.path.join(workdir, "table.txt"), "w") as f:
            f.write("\n".join(state["table"]) + "\n")
    # A passing run without --soak-out leaves nothing behind; a failing or
    # interrupted one, or one given --soak-out or --lab-keep, keeps its logs.
    if out or state["passed"] < selected or config.getoption("--lab-keep"):
        state["kept"] = f"kept: {workdir}"
    else:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def soak_rows(request, soak_context):
    """{mode: soak.Row} of the topology of the parameter: every mode of
    --soak-modes whose row is selected, in that order, each in a fresh lab."""
    ctx, settings, state = soak_context
    topo = request.param
    selected = {item.callspec.params["soak_mode"] for item in request.session.items
                if hasattr(item, "callspec") and item.callspec.params.get("soak_rows") == topo}
    rows = {}
    for mode in settings.modes:
        if mode in selected:
            rows[mode] = soak.RowRun(settings, ctx, topo, mode, settings.topologies.index(topo)).run()
            state["rows"].append(rows[mode])
    return rows


def test_soak(soak_rows, soak_mode, soak_context):
    ctx, _, state = soak_context
    row = soak_rows[soak_mode]
    bad, notes = soak.verdict(row, list(soak_rows.values()))
    for line in notes:
        ctx.log(line)
    for line in bad:
        ctx.log(f"FAIL: {line}")
    if bad:
        pytest.fail("\n".join([*bad, f"transfers ok {row.ok}, failed {row.failed} ({soak.fmt_rate(row)}), "
                                     f"sessions {row.sessions}; baseline: {row.why}",
                               row.details, row.context]), pytrace=False)
    state["passed"] += 1


def row(mode, ok, failed, base=True, topology="snat"):
    return soak.Row(mode, topology, "vsftpd", ok=ok, failed=failed, base=base,
                    why="-" if base else "not back at baseline in time")


# The verdict's rules on made-up rows (no lab, no root): each can fail.
VERDICTS = [
    ("both-clean", row("ftpct", 100, 0), [row("kernel", 100, 0)], []),
    ("ftpct-fails-kernel-none", row("ftpct", 99, 1), [row("kernel", 100, 0)], ["the kernel helper none"]),
    ("within-twice-kernel-plus-half-point", row("ftpct", 986, 14), [row("kernel", 995, 5)], []),
    ("above-twice-kernel-plus-half-point", row("ftpct", 984, 16), [row("kernel", 995, 5)], ["more than twice"]),
    ("no-kernel-row-ftpct-fails", row("ftpct", 99, 1), [row("kernel", 100, 0, topology="dnat")],
     ["no kernel control"]),
    ("no-kernel-row-ftpct-clean", row("ftpct", 100, 0), [], []),
    ("no-transfer", row("kernel", 0, 0), [], ["no transfer completed"]),
    ("baseline", row("ftpct", 100, 0, base=False), [row("kernel", 100, 0)], ["baseline"]),
]


@pytest.mark.parametrize("ftpct_or_kernel,others,want", [pytest.param(*v[1:], id=v[0]) for v in VERDICTS])
def test_verdict_rules(ftpct_or_kernel, others, want):
    bad, _ = soak.verdict(ftpct_or_kernel, [ftpct_or_kernel, *others])
    assert len(bad) == len(want), bad
    for reason, words in zip(bad, want):
        assert words in reason, bad
