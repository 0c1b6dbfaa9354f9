"""The end-to-end matrix: every case of tests/e2e/matrix (one line a case),
a real client session through the lab's gateway, under each gateway mode it
runs in, against the expected result of that mode (cases.Case.expected).

Runs are named CASE:MODE, e.g. snat-v4-port-curl-vsftpd:ftpct. One run:
  /usr/bin/python3 -m pytest tests/lab -k 'snat-v4-port-curl-vsftpd:ftpct'
"""

import pytest

from . import cases, e2e
from .gateway import Mode


def runs(config):
    """(case, mode) for every run, ordered by topology, server and gateway
    mode: the session fixtures are then built once per group."""
    kinds = [k for k in config.getoption("--lab-modes").split(",") if k]
    all_controls = config.getoption("--lab-all-controls")
    modes = {}  # one Mode object per mode: pytest reuses a fixture for the same object
    selected = []
    for case in cases.load():
        for kind in kinds:
            if case.runs_under(kind, all_controls):
                args = case.ftpct_args if kind.startswith("ftpct") else ()
                selected.append((case, modes.setdefault((kind, args), Mode(kind, args))))
    # vsftpd before pure-ftpd in each topology: pure-ftpd's active data
    # connections leave port 20 in TIME_WAIT without SO_REUSEADDR, and a
    # vsftpd started after it cannot bind port 20 for a minute ("500 OOPS:
    # vsf_sysutil_bind").
    rank = {column: {v: i for i, v in enumerate(cases.CHOICES[column])} for column in ("topology", "server")}
    kind_rank = {kind: i for i, kind in enumerate(kinds)}
    selected.sort(key=lambda r: (rank["topology"][r[0].topology], rank["server"][r[0].server],
                                 kind_rank[r[1].kind], r[1].ftpct_args))
    return selected


def pytest_generate_tests(metafunc):
    if metafunc.function.__name__ != "test_e2e":
        return
    params = [pytest.param(case.topology, case.server, mode, case, id=f"{case.name}:{mode.kind}",
                           marks=[pytest.mark.quick] if case.quick else [])
              for case, mode in runs(metafunc.config)]
    # scope="session": without it a parametrisation that is not indirect for
    # every name gets function scope, and the lab would be rebuilt per run.
    metafunc.parametrize("topology,server,gateway,case", params, indirect=["topology", "server", "gateway"],
                         scope="session")


def test_e2e(topology, server, gateway, case, lab_files, lab_workdir, uploads, outcomes):
    outcome = e2e.run(e2e.Lab(topology, server, gateway, lab_files, lab_workdir, uploads), case)
    outcomes.append(outcome)
    if not outcome.as_expected:
        pytest.fail(outcome.report(), pytrace=False)
