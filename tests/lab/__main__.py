"""The lab for a person at a terminal and for scripts (scripts/lab.sh, the
demo, ops-test), on the harness's library; as root, from tests/ (or with
PYTHONPATH=tests):

  python3 -m lab up [snat|dnat|plain|fxp|ha] [vsftpd|pure-ftpd|none]
                                    (default: snat, $FTPCT_LAB_SERVER or vsftpd)
  python3 -m lab down               take everything down
  python3 -m lab status             what is up
  python3 -m lab env                shell assignments describing the lab (eval-able)
  python3 -m lab helper on|off|status   the kernel's FTP helper on the gateway(s)
  python3 -m lab server vsftpd|pure-ftpd|none   the server on port 21
  python3 -m lab ha up [SERVER]     the failover pair (ha.py, conntrackd.py); `ha CMD`
                                    runs any command above on it
  python3 -m lab ha failover a|b    the virtual addresses to gateway A or B, and
                                    conntrackd's external cache committed there
  python3 -m lab ha conntrackd a|b ARGS...   a conntrackd client command there
  python3 -m lab record-pcaps [--only REGEX] [--keep] [--out DIR]
                                    record pcaps/lab/ again (tests/lab/record.py)
  python3 -m lab record-pcaps --analyse [--out DIR]   only REWRITES, no root
  python3 -m lab bench [--quick] [--rounds N] [--only LIST] ...   the gateway
                                    benchmarks (bench.py; bench --help)

--prefix NAME (must start with ftpct-; default ftpct-lab-, ftpct-lab-ha- for
`ha`, ftpct-rec- for record-pcaps and ftpct-bench- (FTPCT_BENCH_PREFIX) for
bench, which build and take down labs of their own; scripts/lab.sh passes its
own, ftpct- and ftpct-ha-) names the namespaces PREFIX + role, so that labs
live side by side. What is up is in /run/ftpct-lab-py/PREFIX/state.json.
Environment, read at `up` (and when a server starts): FTPCT_LAB_OFFLOAD=off
(no checksum and segmentation offloads: captures carry real checksums),
FTPCT_LAB_VSFTPD_OPTS (KEY=VALUE words added to vsftpd's configuration),
FTPCT_LAB_PURE_FTPD_OPTS (more pure-ftpd arguments),
FTPCT_LAB_HA_NAT=snat|masquerade and FTPCT_LAB_HA_POLL_SECS (conntrackd's
PollSecs, 0: follow events) for ha.
"""

import argparse
import fcntl
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile

from . import bench, record, servers
from .failover import _GwView
from .gateway import kernel_helper, kernel_helper_attached
from .ha import GATEWAYS, HOSTS, SYNC, VIP_IN, VIP_OUT, HaTopology
from .proc import LabError, run, wait_until
from .servers import FtpRoot
from .topology import SPECS, Topology, ns_exists

STATE_ROOT = "/run/ftpct-lab-py"
ALL_ROLES = "fxp"  # the topology with every namespace: down takes them all
LOCK_SECS = 60


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


def lab_of(prefix, state):
    """The Topology or HaTopology the state describes."""
    if state["topology"] != "ha":
        return Topology(state["topology"], prefix)
    lab = HaTopology(prefix, state["workdir"], state["poll_secs"], state["nat"])
    lab.active = state["active"]
    return lab


def gateways(lab):
    """What kernel_helper needs, for each gateway of the lab."""
    if isinstance(lab, HaTopology):
        return [_GwView(lab, g) for g in GATEWAYS]
    return [lab]


def server_namespaces(lab):
    if isinstance(lab, HaTopology):
        return [lab.ns("srv"), lab.ns("srvin")]
    return [lab.ns(role) for role in lab.server_roles]


def greetings(lab):
    """(client namespace, address) that must greet: the server through the
    gateway, both families (and under ha the inside server through DNAT)."""
    if isinstance(lab, HaTopology):
        srv = HOSTS["srv"][0]
        return [(lab.ns("cli"), srv.addr4), (lab.ns("cli"), srv.addr6),
                (lab.ns("cliout"), VIP_OUT.addr4), (lab.ns("cliout"), VIP_OUT.addr6)]
    return [(lab.cli_ns, lab.target("v4")), (lab.cli_ns, lab.target("v6"))]


def start_server(lab, files, kind):
    """The pids (process groups) of the servers started."""
    if kind == "none":
        return []
    srv = servers.server(kind, files, fxp=lab.name == "fxp")
    try:
        srv.start(server_namespaces(lab))
        for ns, addr in greetings(lab):
            got = servers.greeting(ns, addr)
            if got != "220":
                raise LabError(f"no 220 greeting from {addr} through the gateway (got {got!r})\n" + srv.output())
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


def cmd_up(prefix, topology, server):
    if load_state(prefix) or ns_exists(prefix + "gw"):
        print(f"lab: a lab {prefix}* is up: taking it down first", file=sys.stderr)
        cmd_down(prefix)
    workdir = tempfile.mkdtemp(prefix="ftpct-lab-py.", dir="/tmp")
    os.chmod(workdir, 0o755)
    state = {"topology": topology, "server": server, "workdir": workdir, "server_pids": []}
    if topology == "ha":
        state.update(active="a", nat=os.environ.get("FTPCT_LAB_HA_NAT", "snat"),
                     poll_secs=int(os.environ.get("FTPCT_LAB_HA_POLL_SECS", "1")))
    lab = lab_of(prefix, state)
    try:
        lab.build()
        files = FtpRoot(os.path.join(workdir, "root")).build()
        state["server_pids"] = start_server(lab, files, server)
    except BaseException:
        lab.destroy()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    save_state(prefix, state)
    cmd_status(prefix)


def cmd_down(prefix):
    state = load_state(prefix) or {}
    # What runs inside (servers, conntrackd, clients) goes with the namespaces.
    Topology(ALL_ROLES, prefix).destroy()
    HaTopology(prefix, state.get("workdir", "/nonexistent")).destroy()
    workdir = state.get("workdir", "")
    if os.path.basename(workdir).startswith("ftpct-lab-py."):
        shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(os.path.dirname(state_path(prefix)), ignore_errors=True)
    print("lab: down", file=sys.stderr)


def cmd_status(prefix):
    state = load_state(prefix)
    if state is None:
        print(f"lab {prefix}*: down")
        for ns in Topology(ALL_ROLES, prefix).namespaces() + HaTopology(prefix, "/nonexistent").namespaces():
            if ns_exists(ns):
                print(f"  stray namespace: {ns} (run: python3 -m lab --prefix {prefix} down)")
        return
    lab = lab_of(prefix, state)
    env = lab_env(prefix, state)
    print(f"lab {prefix}*: up, topology {lab.name}")
    print(f"  files:   {env['FTPCT_LAB_ANON']} (anonymous root)")
    print(f"  server:  {state['server']} on port 21, reach it at {env['FTPCT_LAB_TARGET4']} "
          f"and [{env['FTPCT_LAB_TARGET6']}]")
    print(f"  helper:  kernel ftp helper {helper_state(lab)}")
    if lab.name == "ha":
        print(f"  active:  gateway {lab.active} ({lab.gw_ns(lab.active)}), NAT {lab.nat}, conntrackd on both")
    alive = sum(group_alive(pid) for pid in state["server_pids"])
    print(f"  servers: {alive} of {len(state['server_pids'])} running")
    for ns in lab.namespaces():
        if not ns_exists(ns):
            print(f"  {ns:<16} MISSING")
            continue
        out = run(["ip", "-br", "addr", "show"], ns=ns, check=False).stdout
        addrs = [" ".join([f[0].split("@")[0], *(a for a in f[2:] if not a.startswith("fe80"))])
                 for f in (line.split() for line in out.splitlines()) if f and f[0] != "lo"]
        print(f"  {ns:<16} {'; '.join(addrs)}")


def helper_state(lab):
    states = [kernel_helper_attached(gw) for gw in gateways(lab)]
    if len(states) == 1:
        return states[0]
    return ", ".join(f"gateway {g} {s}" for g, s in zip(GATEWAYS, states))


def lab_env(prefix, state):
    """The variables `env` prints (scripts/lab.sh's names)."""
    lab = lab_of(prefix, state)
    root = os.path.join(state["workdir"], "root")
    env = {"FTPCT_LAB_TOPO": lab.name, "FTPCT_LAB_SERVER": state["server"], "FTPCT_LAB_ROOT": root,
           "FTPCT_LAB_ANON": os.path.join(root, "ftp"),
           "FTPCT_LAB_NS_CLI": prefix + "cli", "FTPCT_LAB_NS_GW": prefix + "gw",
           "FTPCT_LAB_NS_SRV": prefix + "srv", "FTPCT_LAB_NS_SRV2": prefix + "srv2"}
    if isinstance(lab, HaTopology):
        cli, srv = HOSTS["cli"][0], HOSTS["srv"][0]
        env.update(FTPCT_LAB_CLI4=cli.addr4, FTPCT_LAB_CLI6=cli.addr6, FTPCT_LAB_SRV4=srv.addr4,
                   FTPCT_LAB_SRV6=srv.addr6, FTPCT_LAB_SRV2_4="", FTPCT_LAB_SRV2_6="",
                   FTPCT_LAB_TARGET4=srv.addr4, FTPCT_LAB_TARGET6=srv.addr6)
        srvin, cliout = HOSTS["srvin"][0], HOSTS["cliout"][0]
        env.update(FTPCT_LAB_NS_GW2=prefix + "gw2", FTPCT_LAB_NS_SW=prefix + "sw",
                   FTPCT_LAB_NS_SRVIN=prefix + "srvin", FTPCT_LAB_NS_CLIOUT=prefix + "cliout",
                   FTPCT_LAB_SRVIN4=srvin.addr4, FTPCT_LAB_SRVIN6=srvin.addr6,
                   FTPCT_LAB_CLIOUT4=cliout.addr4, FTPCT_LAB_CLIOUT6=cliout.addr6,
                   FTPCT_LAB_VIP_IN4=VIP_IN.addr4, FTPCT_LAB_VIP_IN6=VIP_IN.addr6,
                   FTPCT_LAB_VIP_OUT4=VIP_OUT.addr4, FTPCT_LAB_VIP_OUT6=VIP_OUT.addr6,
                   FTPCT_LAB_HA_ACTIVE=lab.active, FTPCT_LAB_HA_NAT=lab.nat)
        return env
    cli = lab.links["cli"].host
    has2 = "srv2" in lab.links
    env.update(FTPCT_LAB_CLI4=cli.addr4, FTPCT_LAB_CLI6=cli.addr6,
               FTPCT_LAB_SRV4=lab.server_addr("v4"), FTPCT_LAB_SRV6=lab.server_addr("v6"),
               FTPCT_LAB_SRV2_4=lab.server_addr("v4", "srv2") if has2 else "",
               FTPCT_LAB_SRV2_6=lab.server_addr("v6", "srv2") if has2 else "",
               FTPCT_LAB_TARGET4=lab.target("v4"), FTPCT_LAB_TARGET6=lab.target("v6"))
    return env


def cmd_env(prefix):
    for key, value in lab_env(prefix, need_state(prefix)).items():
        print(f"{key}={shlex.quote(value)}")


def cmd_helper(prefix, on_off):
    lab = lab_of(prefix, need_state(prefix))
    if on_off != "status":
        for gw in gateways(lab):
            kernel_helper(gw, on_off == "on")
    print(f"kernel ftp helper {helper_state(lab)}")


def cmd_server(prefix, kind):
    state = need_state(prefix)
    lab = lab_of(prefix, state)
    stop_groups(state["server_pids"])
    state.update(server="none", server_pids=[])
    save_state(prefix, state)
    files = FtpRoot(os.path.join(state["workdir"], "root"))
    state.update(server=kind, server_pids=start_server(lab, files, kind))
    save_state(prefix, state)
    print(f"lab: server {kind}", file=sys.stderr)


def need_ha(prefix):
    state = need_state(prefix)
    if state["topology"] != "ha":
        raise LabError(f"the lab {prefix}* is {state['topology']}, not ha (python3 -m lab ha up)")
    return state, lab_of(prefix, state)


def cmd_failover(prefix, to):
    state, lab = need_ha(prefix)
    lab.failover(to)
    state["active"] = to
    save_state(prefix, state)
    print(f"lab: failover: gateway {to} ({lab.gw_ns(to)}) is active", file=sys.stderr)


def cmd_conntrackd(prefix, g, args):
    _, lab = need_ha(prefix)
    done = lab.conntrackd[g].ctl(*args)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


def parse(argv):
    """(options, ha): `ha CMD ...` is CMD on the failover pair."""
    p = argparse.ArgumentParser(prog="python3 -m lab", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prefix", help="namespace prefix (default ftpct-lab-, ftpct-lab-ha- for ha, "
                                    "ftpct-rec- for record-pcaps, ftpct-bench- for bench)")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up")
    up.add_argument("topology", nargs="?", default="snat", choices=[*sorted(SPECS), "ha"])
    up.add_argument("server", nargs="?", default=os.environ.get("FTPCT_LAB_SERVER", "vsftpd"),
                    choices=[*servers.KINDS, "none"])
    for name in ("down", "status", "env"):
        sub.add_parser(name)
    sub.add_parser("helper").add_argument("on_off", nargs="?", default="status", choices=["on", "off", "status"])
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
    sub.add_parser("failover").add_argument("to", choices=sorted(GATEWAYS))
    ctd = sub.add_parser("conntrackd")
    ctd.add_argument("gateway", choices=sorted(GATEWAYS))
    ctd.add_argument("args", nargs=argparse.REMAINDER)
    i = 0  # the command's place, after the options
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] == "--prefix" else 1
    ha = argv[i:i + 1] == ["ha"]
    if ha:  # `ha CMD ...` is CMD on the failover pair; `ha up SERVER` brings up topology ha
        rest = argv[i + 1:]
        argv = argv[:i] + (["up", "ha", *rest[1:]] if rest[:1] == ["up"] else rest)
    args = p.parse_args(argv)
    if args.command in ("failover", "conntrackd") and not ha:
        p.error(f"{args.command}: only for the failover pair (ha {args.command} ...)")
    if args.prefix is None:
        if ha or getattr(args, "topology", None) == "ha":
            args.prefix = "ftpct-lab-ha-"
        else:
            args.prefix = {"record-pcaps": "ftpct-rec-",
                           "bench": os.environ.get("FTPCT_BENCH_PREFIX", "ftpct-bench-")}.get(args.command, "ftpct-lab-")
    return args


def main(argv):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head`: no traceback
    args = parse(argv)
    if args.command == "record-pcaps" and args.analyse:
        try:
            return 1 if record.analyse(args.out) else 0
        except FileNotFoundError as e:
            print(f"lab: error: record-pcaps --analyse: {e.filename}: no such file", file=sys.stderr)
            return 1
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
    if not args.prefix.startswith("ftpct-"):
        print(f"lab: error: namespace prefix {args.prefix!r} must start with ftpct-", file=sys.stderr)
        return 2
    commands = {
        "up": lambda: cmd_up(args.prefix, args.topology, args.server),
        "down": lambda: cmd_down(args.prefix),
        "status": lambda: cmd_status(args.prefix),
        "env": lambda: cmd_env(args.prefix),
        "helper": lambda: cmd_helper(args.prefix, args.on_off),
        "server": lambda: cmd_server(args.prefix, args.kind),
        "failover": lambda: cmd_failover(args.prefix, args.to),
        "conntrackd": lambda: cmd_conntrackd(args.prefix, args.gateway, args.args),
        # True when a scenario failed.
        "record-pcaps": lambda: 1 if record.record(args.prefix, args.out, args.only, args.keep) else 0,
    }
    os.makedirs(STATE_ROOT, exist_ok=True)
    # One lab command at a time (the lock goes with the process).
    with open(os.path.join(STATE_ROOT, "lock"), "w") as lock:
        try:
            wait_until("the lock of the lab's commands", lambda: try_lock(lock), timeout=LOCK_SECS, interval=0.2)
            return commands[args.command]() or 0
        except LabError as e:
            print(f"lab: error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as e:
            print(f"lab: interrupted ({e or 'Ctrl-C'})", file=sys.stderr)
            return 130


def try_lock(f):
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
