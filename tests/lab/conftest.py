"""Fixtures of the lab harness (FRRouting's topotests are the model): the
topology, its FTP server and its gateway's helper are session-scoped and
parametrised, so that consecutive tests that name the same ones share them;
each is taken down by its finalizer, also when a test fails or the run is
interrupted (Ctrl-C, SIGTERM).

Options (pytest --help, group "lab"): --lab-modes, --lab-all-controls,
--lab-keep, --lab-prefix, --ftpct, --ftpload, and the soak's --soak-*.
"""

import os
import shutil
import signal
import tempfile
import time

import pytest

from . import e2e, failover, faults, hostile, servers, soak
from .clients import Uploads
from .gateway import Gateway
from .servers import FtpRoot
from .topology import Topology

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUTCOMES = pytest.StashKey()
FAILOVER_OUTCOMES = pytest.StashKey()
SOAK_RUN = pytest.StashKey()  # the soak's rows, settings and table (test_soak.py)
FAULT_OUTCOMES = pytest.StashKey()
HOSTILE_OUTCOMES = pytest.StashKey()
KEPT = pytest.StashKey()  # the work directory --lab-keep kept
STARTED = pytest.StashKey()  # monotonic time at start, for the table's wall time
# What is up now: topologies and the work directory. A second Ctrl-C or a
# SIGTERM can land inside a finalizer, and pytest then skips the finalizers
# left; pytest_unconfigure, which always runs, takes down what they missed.
LIVE = pytest.StashKey()


def pytest_addoption(parser):
    group = parser.getgroup("lab", "the namespace lab (tests/lab)")
    group.addoption("--lab-modes", default="ftpct,kernel,none",
                    help="gateway modes to run, comma-separated: ftpct, ftpct-queue-all, kernel, none "
                         "(default: ftpct,kernel,none)")
    group.addoption("--lab-all-controls", action="store_true",
                    help="run every case under kernel and none too, not only those tagged ctl")
    group.addoption("--lab-keep", action="store_true",
                    help="keep the work directory (transcripts, ftpct's logs, server logs)")
    group.addoption("--lab-prefix", default=os.environ.get("FTPCT_LAB_PREFIX", "ftpct-py-"),
                    help="namespace prefix, must start with ftpct- (default: ftpct-py-)")
    group.addoption("--ftpct", default=os.environ.get("FTPCT_BIN", os.path.join(REPO, "target/release/ftpct")),
                    help="the ftpct binary (default: target/release/ftpct)")
    group.addoption("--ftpload", default=os.environ.get("FTPLOAD_BIN", os.path.join(REPO, "target/release/ftpload")),
                    help="the ftpload binary (default: target/release/ftpload)")
    soak.add_options(group)


def pytest_configure(config):
    config.stash[OUTCOMES] = []
    config.stash[FAILOVER_OUTCOMES] = []
    config.stash[FAULT_OUTCOMES] = []
    config.stash[HOSTILE_OUTCOMES] = []
    config.stash[LIVE] = {"topologies": [], "workdir": None}
    config.stash[STARTED] = time.monotonic()
    config.addinivalue_line("markers", "quick: a control or quick case (the matrix's tags ctl, quick)")
    # SIGTERM as Ctrl-C: pytest then runs every finalizer (lab taken down).
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_unconfigure(config):
    live = config.stash.get(LIVE, None)
    if not live:
        return
    # No interruption of the last clean-up.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    for topo in live["topologies"]:
        topo.destroy()  # its namespaces, and what still runs in them
    if live["workdir"] and not config.getoption("--lab-keep"):
        shutil.rmtree(live["workdir"], ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """One test file after the other. pytest groups the tests that share a
    session fixture's parameter by its index in each file's list, so that
    test_e2e.py's and test_hostile.py's runs (both on topology, server and
    gateway) would alternate, rebuilding the lab every run; a stable sort
    keeps each file's own order."""
    items.sort(key=lambda item: str(item.path))


def pytest_report_collectionfinish(config, start_path, items):
    """The count of runs, and why it is not the count of cases."""
    lines = []
    xruns = [item for item in items if hasattr(item, "callspec") and "fault_case" in item.callspec.params]
    if xruns:
        xmodes = [item.callspec.params["fault_gateway"] for item in xruns]
        na = sum(1 for item in xruns
                 if item.callspec.params["fault_case"].expected(item.callspec.params["fault_gateway"]) == "n/a")
        lines.append(f"faults: {len({item.callspec.params['fault_case'].name for item in xruns})} case(s), "
                     f"{len(xruns)} run(s): " + ", ".join(f"{xmodes.count(m)} under {m}" for m in dict.fromkeys(xmodes))
                     + f" ({na} with no analog under the kernel's helper: skipped as n/a)")
    fruns = [item for item in items if hasattr(item, "callspec") and "fcase" in item.callspec.params]
    if fruns:
        fcases = {item.callspec.params["fcase"].name for item in fruns}
        modes = {item.callspec.params["failover_run"] for item in fruns}
        lines.append(f"failover: {len(fcases)} case(s), {len(fruns)} run(s) under {', '.join(sorted(modes))} "
                     "(every case under the kernel's helper, the control, and ftpct)")
    rows = [item.callspec.id for item in items if hasattr(item, "callspec") and "soak_rows" in item.callspec.params]
    if rows:
        lines.append(f"soak: {len(rows)} row(s), TOPOLOGY:MODE: {', '.join(rows)} (ftpct judged against the "
                     f"kernel's helper on the same topology), {soak.settings_from(config).seconds} s of load per row")
    hruns = [item for item in items if hasattr(item, "callspec") and "hcase" in item.callspec.params]
    if hruns:
        hcases = {item.callspec.params["hcase"].name for item in hruns}
        hmodes = sorted({item.callspec.params["gateway"].kind for item in hruns})
        lines.append(f"hostile: {len(hcases)} case(s), {len(hruns)} run(s) under {', '.join(hmodes)} "
                     "(every case under ftpct and under the kernel's helper, the control)")
    runs = [item for item in items if hasattr(item, "callspec") and "case" in item.callspec.params]
    if not runs:
        return lines
    kinds = {}
    for item in runs:
        kind = item.callspec.params["gateway"].kind
        kinds[kind] = kinds.get(kind, 0) + 1
    cases = {item.callspec.params["case"].name for item in runs}
    per_mode = ", ".join(f"{n} under {kind}" for kind, n in kinds.items())
    return [f"e2e: {len(cases)} case(s) from tests/e2e/matrix, {len(runs)} run(s): {per_mode} "
            "(every case runs under ftpct; the kernel's helper and no helper run the cases tagged ctl)"] + lines


def pytest_terminal_summary(terminalreporter, config):
    elapsed = time.monotonic() - config.stash[STARTED]
    tables = ((OUTCOMES, "end-to-end runs", e2e.table),
              (FAILOVER_OUTCOMES, "gateway failover runs", failover.table),
              (FAULT_OUTCOMES, "fault and abuse runs", faults.table),
              (HOSTILE_OUTCOMES, "hostile input runs", hostile.table))
    for key, title, table in tables:
        outcomes = config.stash[key]
        if outcomes:
            terminalreporter.section(title)
            for line in table(outcomes, elapsed):
                terminalreporter.write_line(line)
    soak_run = config.stash.get(SOAK_RUN, None)
    if soak_run:
        terminalreporter.section("soak")
        for line in soak_run["table"]:
            terminalreporter.write_line(line)
        kept = soak_run["kept"] or "removed (passed; --soak-out DIR keeps one)"
        terminalreporter.write_line(f"soak: work directory {kept}")
    if KEPT in config.stash:
        terminalreporter.write_line(f"lab: work directory kept: {config.stash[KEPT]}")


def require_root():
    """Not root: the lab's tests are skipped, with the reason; under CI=true
    (or FTPCT_REQUIRE_KERNEL_TESTS=1) that is an error, so that CI never
    passes with them silently skipped."""
    if os.geteuid() == 0:
        return
    why = "needs root: the lab creates network namespaces (sudo /usr/bin/python3 -m pytest tests/lab)"
    if os.environ.get("CI") == "true" or os.environ.get("FTPCT_REQUIRE_KERNEL_TESTS") == "1":
        pytest.fail(f"{why}; CI=true (or FTPCT_REQUIRE_KERNEL_TESTS=1) makes skipping it an error", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def outcomes(request):
    return request.config.stash[OUTCOMES]


@pytest.fixture(scope="session")
def lab_workdir(request):
    """Transcripts, logs, upload sources and the servers' files; removed at
    the end unless --lab-keep."""
    require_root()
    path = tempfile.mkdtemp(prefix="ftpct-lab-py.", dir="/tmp")
    os.chmod(path, 0o755)  # the servers' unprivileged processes walk through it
    request.config.stash[LIVE]["workdir"] = path
    yield path
    if request.config.getoption("--lab-keep"):
        request.config.stash[KEPT] = path
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def lab_files(lab_workdir):
    """The servers' files, made once for every topology."""
    return FtpRoot(os.path.join(lab_workdir, "root")).build()


@pytest.fixture(scope="session")
def uploads(lab_workdir):
    return Uploads(lab_workdir)


@pytest.fixture(scope="session")
def topology(request, lab_workdir):
    """The topology named by the parameter, built in namespaces
    --lab-prefix + role."""
    topo = Topology(request.param, request.config.getoption("--lab-prefix"))
    live = request.config.stash[LIVE]["topologies"]
    live.append(topo)

    def take_down():
        topo.destroy()
        live.remove(topo)

    request.addfinalizer(take_down)
    return topo.build()


@pytest.fixture(scope="session")
def server(request, topology, lab_files):
    """The FTP server kind named by the parameter, in every server
    namespace of the topology, reachable through the gateway."""
    srv = servers.server(request.param, lab_files, fxp=topology.name == "fxp")
    request.addfinalizer(srv.stop)
    srv.start([topology.ns(role) for role in topology.server_roles])
    servers.check_reachable(srv, topology)
    return srv


@pytest.fixture(scope="session")
def gateway(request, topology, lab_workdir):
    """The gateway in the mode of the parameter (a gateway.Mode)."""
    gw = Gateway(topology, request.config.getoption("--ftpct"), lab_workdir)
    request.addfinalizer(gw.leave)
    return gw.enter(request.param)
