"""The gateway failover suite (failover.py): every case under both gateway
modes, kernel (the control) and ftpct, against the case's expected result
for that mode. One lab (ha.py) per mode, built, failed over once and taken
down; its runs share it.

Runs are named CASE:MODE, e.g. pending-port-snat:ftpct. One mode:
  /usr/bin/python3 -m pytest tests/lab/test_failover.py -k ':kernel'
"""

import os

import pytest

from . import failover, servers
from .conftest import FAILOVER_OUTCOMES, LIVE, require_root
from .ha import HOSTS, VIP_OUT, HaTopology
from .proc import LabError


def pytest_generate_tests(metafunc):
    if metafunc.function.__name__ != "test_failover":
        return
    params = [pytest.param(mode, case, id=f"{case.name}:{mode}")
              for mode in failover.MODES for case in failover.CASES]
    metafunc.parametrize("failover_run,fcase", params, indirect=["failover_run"], scope="session")


@pytest.fixture(scope="session")
def failover_run(request, lab_workdir, lab_files):
    """One mode's whole run: {case name: Outcome}. The lab is taken down
    (conntrackd, ftpct, servers, namespaces) before the tests judge it."""
    require_root()
    mode = request.param
    # conntrackd's files and logs in the mode's own directory
    lab = HaTopology(request.config.getoption("--lab-prefix") + "ha-",
                     os.path.join(lab_workdir, f"failover-{mode}"))
    live = request.config.stash[LIVE]["topologies"]
    live.append(lab)
    srv = servers.server("vsftpd", lab_files, fxp=False)
    run = failover.FailoverRun(lab, mode, request.config.getoption("--ftpct"), lab_workdir,
                               lab_files.served_sha(failover.FILE))
    try:
        lab.build()
        srv.start([lab.ns("srv"), lab.ns("srvin")])
        for ns, addr in ((lab.ns("cli"), HOSTS["srv"][0].addr4), (lab.ns("cli"), HOSTS["srv"][0].addr6),
                         (lab.ns("cliout"), VIP_OUT.addr4), (lab.ns("cliout"), VIP_OUT.addr6)):
            got = servers.greeting(ns, addr)
            if got != "220":
                raise LabError(f"no 220 greeting from {addr} through gateway A (got {got!r})\n"
                               + srv.output() + "\n" + lab.logs())
        run.enter()
        return run.run()
    finally:
        try:
            run.leave()
        finally:
            srv.stop()
            lab.destroy()
            live.remove(lab)


def test_failover(failover_run, fcase, request):
    outcome = failover_run[fcase.name]
    request.config.stash[FAILOVER_OUTCOMES].append(outcome)
    if not outcome.as_expected:
        pytest.fail(outcome.report(), pytrace=False)
