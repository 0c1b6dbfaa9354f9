"""The hostile-input suite (hostile.py): every case under ftpct and under
the kernel's own helper (the control), with a legitimate SHA-256-checked
session beside it. ftpct's runs must give the case's secure result; the
kernel's are information (the table says where it differs from what it did
when the suite was written).

Runs are named CASE:MODE, e.g. unsolicited-227-dnat-fake:ftpct. One case:
  /usr/bin/python3 -m pytest tests/lab/test_hostile.py -k 'unsolicited-227-dnat-fake'
ftpct with --queue-all: --lab-modes ftpct-queue-all,kernel.
"""

import pytest

from . import hostile
from .conftest import HOSTILE_OUTCOMES
from .gateway import Mode


def runs(config):
    """(case, mode) in the order of hostile.groups(), the modes of
    --lab-modes that this suite knows (no helper is not one) in each."""
    hostile.check_cases()
    kinds = [k for k in config.getoption("--lab-modes").split(",") if k in hostile.MODES]
    modes = {kind: Mode(kind) for kind in kinds}  # one object per mode: pytest reuses a fixture for it
    return [(case, modes[kind]) for group in hostile.groups() for kind in kinds
            for case in hostile.CASES if (case.topology, case.server) == group]


def pytest_generate_tests(metafunc):
    if metafunc.function.__name__ != "test_hostile":
        return
    params = [pytest.param(case.topology, case.server, mode, case, id=f"{case.name}:{mode.kind}")
              for case, mode in runs(metafunc.config)]
    metafunc.parametrize("topology,server,gateway,hcase", params, indirect=["topology", "server", "gateway"],
                         scope="session")


@pytest.fixture(scope="session")
def hostile_listeners(request, topology, lab_files, lab_workdir):
    """The trick files in the served root and the listeners of the
    topology (torn down with it)."""
    hostile.make_tricks(lab_files.anon, topology.server_addr("v4"))
    listeners = hostile.Listeners(topology, lab_workdir)
    request.addfinalizer(listeners.stop)
    return listeners.start()


def test_hostile(topology, server, gateway, hcase, hostile_listeners, lab_files, lab_workdir, request):
    if gateway.mode.runs_ftpct and not gateway.ftpct.alive():
        gateway.enter(gateway.mode)  # a crashed ftpct comes back for the next case
    lab = hostile.Lab(topology, server, gateway, lab_files, hostile_listeners, lab_workdir)
    outcome = hostile.run(lab, hcase)
    request.config.stash[HOSTILE_OUTCOMES].append(outcome)
    if outcome.verdict == "MISMATCH":
        pytest.fail(outcome.report(), pytrace=False)


def test_hostile_cases_are_data():
    """Without root too: every case named once with a known runner and
    server, 53 attacks and 7 back-to-back transfers, each topology one the
    lab builds, each kernel result one a run can give."""
    hostile.check_cases()
    b2b = [case for case in hostile.CASES if case.runner == "b2b"]
    assert (len(hostile.CASES) - len(b2b), len(b2b)) == (53, 7)
    assert {case.topology for case in hostile.CASES} == {"snat", "dnat", "fxp"}
    assert {case.kernel for case in hostile.CASES} <= {None, "OPEN", "failed"}
