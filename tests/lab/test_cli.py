"""`python3 -m lab`, the lab for a person at a terminal: up, env, helper,
server and down leave nothing behind."""

import os
import subprocess
import sys

import pytest

from .topology import ns_exists

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "ftpct-py-cli-"


def lab(*args):
    done = subprocess.run([sys.executable, "-m", "lab", "--prefix", PREFIX, *args], cwd=TESTS,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"python3 -m lab {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture
def cli_lab():
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab creates network namespaces")
    yield
    lab("down")


def test_cli_up_env_helper_server_down(cli_lab):
    assert "up, topology dnat" in lab("up", "dnat", "pure-ftpd")
    env = dict(line.split("=", 1) for line in lab("env").splitlines())
    assert (env["FTPCT_LAB_TARGET4"], env["FTPCT_LAB_SRV4"]) == ("198.51.100.1", "192.0.2.20")
    assert lab("helper", "on").strip() == "kernel ftp helper on"
    lab("server", "vsftpd")
    status = lab("status")
    assert "server:  vsftpd" in status and "helper:  kernel ftp helper on" in status
    lab("down")
    assert not any(ns_exists(PREFIX + role) for role in ("cli", "gw", "srv", "srv2"))
    assert "down" in lab("status")
