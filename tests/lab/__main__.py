"""The lab for a person at a terminal, on the harness's library (run as
root from tests/, or with PYTHONPATH=tests):

  python3 -m lab up [snat|dnat|plain|fxp] [vsftpd|pure-ftpd|none]  (default: snat vsftpd)
  python3 -m lab down               take everything down
  python3 -m lab status             what is up
  python3 -m lab env                shell assignments describing the lab (eval-able)
  python3 -m lab helper on|off      attach the kernel's FTP helper on the gateway
  python3 -m lab server vsftpd|pure-ftpd|none   the server on port 21
  python3 -m lab record-pcaps [--only REGEX] [--keep] [--out DIR]
                                    record pcaps/lab/ again (tests/lab/record.py)
  python3 -m lab record-pcaps --analyse [--out DIR]   only REWRITES, no root
  python3 -m lab bench [--quick] [--rounds N] [--only LIST] ...   the gateway
                                    benchmarks (bench.py; bench --help)

--prefix NAME (default ftpct-lab-; ftpct-rec- for record-pcaps, which builds
and takes down a lab of its own; must start with ftpct-) names the
namespaces, so that this lab, scripts/lab.sh's (ftpct-cli, ftpct-gw, ...) and
the test runs' (ftpct-py-*) live side by side; bench's default is
ftpct-bench- (FTPCT_BENCH_PREFIX). What is up is written in
/run/ftpct-lab-py/PREFIX/state.json. The failover pair (ha) is still
scripts/lab.sh's alone.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile

from . import bench, record, servers
from .gateway import kernel_helper, kernel_helper_attached
from .proc import LabError, wait_until
from .servers import FtpRoot
from .topology import SPECS, Topology, ns_exists

STATE_ROOT = "/run/ftpct-lab-py"  # not scripts/lab.sh's /run/ftpct-lab
ALL_ROLES = "fxp"  # the topology with every namespace: down takes them all


def state_path(prefix):
    return os.path.join(STATE_ROOT, prefix.rstrip("-"), "state.json")


def load_state(prefix):
    try:
        with open(state_path(prefix)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def save_state(prefix, state):
    os.makedirs(os.path.dirname(state_path(prefix)), exist_ok=True)
    with open(state_path(prefix), "w") as f:
        json.dump(state, f, indent=1)


def need_state(prefix):
    state = load_state(prefix)
    if state is None:
        raise LabError(f"the lab {prefix}* is down (python3 -m lab up)")
    return state


def start_server(topo, files, kind):
    """The pids (process groups) of the servers started."""
    if kind == "none":
        return []
    srv = servers.server(kind, files, fxp=topo.name == "fxp")
    try:
        srv.start([topo.ns(role) for role in topo.server_roles])
        servers.check_reachable(srv, topo)
    except BaseException:
        srv.stop()
        raise
    return [d.pid for d in srv.daemons]


def stop_groups(pids, timeout=5.0):
    """SIGTERM to each process group, SIGKILL to those left after timeout s."""
    def alive():
        return [pid for pid in pids if group_alive(pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in alive():
            os.killpg(pid, sig)
        try:
            wait_until("servers stopped", lambda: not alive(), timeout=timeout)
            return
        except LabError:
            continue


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def cmd_up(prefix, topology="snat", server="vsftpd"):
    if load_state(prefix) or ns_exists(prefix + "gw"):
        print(f"lab: a lab {prefix}* is up: taking it down first", file=sys.stderr)
        cmd_down(prefix)
    workdir = tempfile.mkdtemp(prefix="ftpct-lab-py.", dir="/tmp")
    os.chmod(workdir, 0o755)
    topo = Topology(topology, prefix)
    try:
        topo.build()
        files = FtpRoot(os.path.join(workdir, "root")).build()
        pids = start_server(topo, files, server)
    except BaseException:
        topo.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    save_state(prefix, {"topology": topology, "server": server, "workdir": workdir, "server_pids": pids})
    cmd_status(prefix)


def cmd_down(prefix):
    state = load_state(prefix) or {}
    Topology(ALL_ROLES, prefix).destroy()  # what runs inside goes with it
    workdir = state.get("workdir", "")
    if os.path.basename(workdir).startswith("ftpct-lab-py."):
        shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(os.path.dirname(state_path(prefix)), ignore_errors=True)
    print("lab: down", file=sys.stderr)


def cmd_status(prefix):
    state = load_state(prefix)
    if state is None:
        print(f"lab {prefix}*: down")
        return
    topo = Topology(state["topology"], prefix)
    print(f"lab {prefix}*: up, topology {topo.name}")
    print(f"  files:   {state['workdir']}/root/ftp (anonymous root)")
    print(f"  server:  {state['server']} on port 21, reach it at {topo.target('v4')} and [{topo.target('v6')}]")
    print(f"  helper:  kernel ftp helper {kernel_helper_attached(topo)}")
    for ns in topo.namespaces():
        print(f"  {ns:<16} {'present' if ns_exists(ns) else 'MISSING'}")


def cmd_env(prefix):
    state = need_state(prefix)
    topo = Topology(state["topology"], prefix)
    cli = topo.links["cli"].host
    env = {"FTPCT_LAB_TOPO": topo.name, "FTPCT_LAB_SERVER": state["server"],
           "FTPCT_LAB_ROOT": os.path.join(state["workdir"], "root"),
           "FTPCT_LAB_ANON": os.path.join(state["workdir"], "root", "ftp"),
           "FTPCT_LAB_NS_CLI": topo.cli_ns, "FTPCT_LAB_NS_GW": topo.gw_ns,
           "FTPCT_LAB_CLI4": cli.addr4, "FTPCT_LAB_CLI6": cli.addr6,
           "FTPCT_LAB_TARGET4": topo.target("v4"), "FTPCT_LAB_TARGET6": topo.target("v6")}
    for role in topo.server_roles:
        key = "SRV" if role == "srv" else "SRV2_"
        env[f"FTPCT_LAB_NS_{role.upper()}"] = topo.ns(role)
        env[f"FTPCT_LAB_{key}4"] = topo.server_addr("v4", role)
        env[f"FTPCT_LAB_{key}6"] = topo.server_addr("v6", role)
    for key, value in env.items():
        print(f"{key}={shlex.quote(value)}")


def cmd_helper(prefix, on_off):
    topo = Topology(need_state(prefix)["topology"], prefix)
    kernel_helper(topo, on_off == "on")
    print(f"kernel ftp helper {kernel_helper_attached(topo)}")


def cmd_server(prefix, kind):
    state = need_state(prefix)
    topo = Topology(state["topology"], prefix)
    stop_groups(state["server_pids"])
    state.update(server="none", server_pids=[])
    save_state(prefix, state)
    files = FtpRoot(os.path.join(state["workdir"], "root"))
    state.update(server=kind, server_pids=start_server(topo, files, kind))
    save_state(prefix, state)
    print(f"lab: server {kind}", file=sys.stderr)


def parse(argv):
    p = argparse.ArgumentParser(prog="python3 -m lab", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prefix", default=None, help="default ftpct-lab-; bench: ftpct-bench-")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up")
    up.add_argument("topology", nargs="?", default="snat", choices=sorted(SPECS))
    up.add_argument("server", nargs="?", default="vsftpd", choices=[*servers.KINDS, "none"])
    for name in ("down", "status", "env"):
        sub.add_parser(name)
    sub.add_parser("helper").add_argument("on_off", choices=["on", "off"])
    sub.add_parser("server").add_argument("kind", choices=[*servers.KINDS, "none"])
    rec = sub.add_parser("record-pcaps", help="record pcaps/lab/ again (tests/lab/record.py)")
    rec.add_argument("--only", metavar="REGEX",
                     help="record only the scenarios whose name matches (other MANIFEST lines are kept)")
    rec.add_argument("--keep", action="store_true", help="keep the work directory (client logs) and print its path")
    rec.add_argument("--analyse", action="store_true", help="only derive REWRITES from the captures (no root)")
    rec.add_argument("--out", default=record.OUT, help="the captures' directory (default: pcaps/lab)")
    b = sub.add_parser("bench", description=bench.__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=bench.help_text())
    b.add_argument("--prefix", default=argparse.SUPPRESS, help="namespace prefix (default ftpct-bench-)")
    bench.add_arguments(b)
    args = p.parse_args(argv)
    if args.prefix is None:
        args.prefix = {"record-pcaps": "ftpct-rec-",
                       "bench": os.environ.get("FTPCT_BENCH_PREFIX", "ftpct-bench-")}.get(args.command, "ftpct-lab-")
    return args


def main(argv):
    args = parse(argv)
    if args.command == "record-pcaps" and args.analyse:
        return 1 if record.analyse(args.out) else 0
    if args.command == "bench":  # its --table needs no root
        try:
            return bench.main(args)
        except LabError as e:
            print(f"bench: error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted (the lab is down)", file=sys.stderr)
            return 130
    if os.geteuid() != 0:
        print("lab: run as root (network namespaces)", file=sys.stderr)
        return 1
    commands = {
        "up": lambda: cmd_up(args.prefix, args.topology, args.server),
        "down": lambda: cmd_down(args.prefix),
        "status": lambda: cmd_status(args.prefix),
        "env": lambda: cmd_env(args.prefix),
        "helper": lambda: cmd_helper(args.prefix, args.on_off),
        "server": lambda: cmd_server(args.prefix, args.kind),
        "record-pcaps": lambda: record.record(args.prefix, args.out, args.only, args.keep),
    }
    try:
        if commands[args.command]():
            return 1  # record-pcaps: failures
    except LabError as e:
        print(f"lab: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"lab: interrupted ({e or 'Ctrl-C'})", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
