"""The fault-and-abuse suite (faults.py): every case under ftpct and, where
it has an analog, under the kernel's helper (the control), in topology snat
with vsftpd, a legitimate paced PORT and PASV download of 50m.bin beside
most cases. Each run gets a fresh gateway mode (a new `ftpct run
--state-interval 1`, or the kernel's helper attached) and its own undo
stack: rules, addresses, conntrack fillers and a stopped ftpct are put back
by the fixture's finalizer, also when the case fails.

Runs are named CASE:MODE, e.g. 4-ct-full:ftpct. One case:
  /usr/bin/python3 -m pytest tests/lab/test_faults.py -k '4-ct-full'
"""

import os

import pytest

from . import faults
from .conftest import FAULT_OUTCOMES
from .gateway import Gateway, Mode
from .proc import LabError


def pytest_generate_tests(metafunc):
    if metafunc.function.__name__ != "test_faults":
        return
    kinds = metafunc.config.getoption("--lab-modes").split(",")
    params = [pytest.param("snat", "vsftpd", mode, case, id=f"{case.name}:{mode}")
              for mode in faults.MODES if mode in kinds for case in faults.CASES]
    metafunc.parametrize("topology,server,fault_gateway,fault_case", params,
                         indirect=["topology", "server", "fault_gateway"], scope="session")


@pytest.fixture(scope="session")
def fault_gateway(request, topology, lab_workdir):
    """The gateway in the mode of the parameter (ftpct: its rules applied;
    kernel: the kernel's helper attached), once for all the cases of the
    mode, as the shell suite did (`ftpct rules --delete` alone takes 6-7 s
    here). Each case starts its own `ftpct run`."""
    gw = Gateway(topology, request.config.getoption("--ftpct"), lab_workdir)
    request.addfinalizer(gw.leave)
    return gw.enter(Mode(request.param, faults.STATE_ARGS if request.param == "ftpct" else ()))


@pytest.fixture(scope="session")
def fault_sums(lab_workdir, lab_files):
    """SHA256SUMS of the served files, for faults_ftp.py --sums."""
    path = os.path.join(lab_workdir, "SHA256SUMS")
    with open(path, "w") as f:
        for name in ("empty.bin", "1k.bin", "50m.bin"):
            f.write(f"{lab_files.served_sha(name)}  {name}\n")
    return path


@pytest.fixture(scope="session")
def global_settings():
    """Settings that are global, not per namespace (nf_conntrack_max, module
    parameters): none may change. Put back and reported as an error at the
    end if a case changed one."""
    before = faults.global_settings()
    yield before
    changed = faults.restore_settings(before)
    if changed:
        raise LabError("global kernel settings changed by the suite (put back): " + "; ".join(changed))


@pytest.fixture
def fault_run(request, topology, server, fault_gateway, lab_workdir, fault_sums, fault_case, global_settings):
    """The case's FaultRun on a fresh gateway state (conntrack flushed, a
    new `ftpct run`); None where the case has no analog in the mode. Its
    finalizer stops the case's processes, undoes its changes (rules,
    addresses, conntrack fillers, a SIGSTOP, the kernel's helper detached),
    and stops its ftpct: the next case starts from the mode's state."""
    gw = fault_gateway
    if fault_case.expected(gw.mode.kind) == "n/a":
        return None
    topology.flush_conntrack()
    if gw.mode.runs_ftpct:
        gw.restart_ftpct(Mode("ftpct", faults.STATE_ARGS + (("-v",) if fault_case.verbose else ())))
    fr = faults.FaultRun(topology, gw, lab_workdir, fault_sums, gw.mode, fault_case, server)

    def close():
        left = fr.close()
        if gw.ftpct is not None and not gw.ftpct.stop():
            left.append("ftpct did not stop on SIGTERM within 5 s: killed")
        gw.ftpct = None
        if left:
            raise LabError("the case's changes could not all be undone: " + "; ".join(left))

    request.addfinalizer(close)
    return fr


def test_faults(fault_run, fault_gateway, fault_case, request):
    outcomes = request.config.stash[FAULT_OUTCOMES]
    fault_mode = fault_gateway.mode.kind
    if fault_run is None:
        outcomes.append(faults.Outcome(fault_case, fault_mode, result="n/a"))
        pytest.skip(f"n/a under {fault_mode}: {fault_case.what(fault_mode)}")
    outcome = faults.run_case(fault_run)
    outcomes.append(outcome)
    if not outcome.as_expected:
        pytest.fail(outcome.report(), pytrace=False)
