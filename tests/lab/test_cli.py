"""`python3 -m lab` (scripts/lab.sh wraps it), the lab for a person at a
terminal and for scripts: up, env, helper, server and down, and the failover
pair's ha up, failover, conntrackd, leave nothing behind. Namespaces
--lab-prefix + cli- (ha: + cli-ha-)."""

import os
import subprocess
import sys

import pytest

from .conftest import require_root
from .topology import ns_exists

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lab(prefix, *args, code=0):
    done = subprocess.run([sys.executable, "-m", "lab", "--prefix", prefix, *args], cwd=TESTS,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
    assert done.returncode == code, f"python3 -m lab {' '.join(args)}: exit {done.returncode}: {done.stderr}"
    return done.stdout


def env_of(prefix, *ha):
    return dict(line.split("=", 1) for line in lab(prefix, *ha, "env").splitlines())


@pytest.fixture
def prefix(request):
    require_root()
    prefix = request.config.getoption("--lab-prefix") + ("cli-ha-" if "ha" in request.node.name else "cli-")
    yield prefix
    lab(prefix, "down")


def test_cli_up_env_helper_server_down(prefix):
    assert "up, topology dnat" in lab(prefix, "up", "dnat", "pure-ftpd")
    env = env_of(prefix)
    assert (env["FTPCT_LAB_TARGET4"], env["FTPCT_LAB_SRV4"]) == ("198.51.100.1", "192.0.2.20")
    assert lab(prefix, "helper", "on").strip() == "kernel ftp helper on"
    lab(prefix, "server", "vsftpd")
    status = lab(prefix, "status")
    assert "server:  vsftpd" in status and "helper:  kernel ftp helper on" in status
    lab(prefix, "down")
    assert not any(ns_exists(prefix + role) for role in ("cli", "gw", "srv", "srv2"))
    assert "down" in lab(prefix, "status")


def test_cli_ha_up_failover_conntrackd_down(prefix):
    assert "active:  gateway a" in lab(prefix, "ha", "up")
    env = env_of(prefix, "ha")
    assert (env["FTPCT_LAB_HA_ACTIVE"], env["FTPCT_LAB_NS_GW2"]) == ("a", prefix + "gw2")
    assert "connections" in lab(prefix, "ha", "conntrackd", "b", "-s")
    lab(prefix, "ha", "failover", "b")
    assert env_of(prefix, "ha")["FTPCT_LAB_HA_ACTIVE"] == "b"
    vips = subprocess.run(["ip", "-n", prefix + "gw2", "-br", "addr"], capture_output=True, text=True).stdout
    assert "198.51.100.1/24" in vips and "192.0.2.1/24" in vips
    lab(prefix, "ha", "failover", "b", code=1)  # already active
    lab(prefix, "ha", "down")
    assert not any(ns_exists(prefix + role) for role in ("sw", "gw", "gw2", "cli", "srvin", "srv", "cliout"))
