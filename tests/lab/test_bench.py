"""The benchmark's statistics, table and plan, without a lab (no root):
fixtures/bench-results.jsonl is two rounds of every gateway and test (and
a third, slow NOOP session without its 1-NOOP one), with a failed run, a round with failed sessions, too few sequential sessions and
a stream the queue program did not see whole; fixtures/bench-table.txt is
its table as `python3 -m lab bench --table` prints it (the format of
BENCHMARKS.md)."""

import argparse
import os
import re
import statistics

import pytest

from . import bench

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
RESULTS = os.path.join(FIXTURES, "bench-results.jsonl")


@pytest.fixture
def rows():
    return bench.load(RESULTS)


def cells(text, label):
    """The cells of the table's row named label (split on 2+ spaces)."""
    line = next(line for line in text.splitlines() if line.startswith(label + "  "))
    return re.split(r"\s{2,}", line[len(label):].strip())


def test_the_table_of_the_fixture_is_the_one_kept(rows):
    with open(os.path.join(FIXTURES, "bench-table.txt")) as f:
        assert bench.table(rows) == f.read().rstrip("\n")


def test_a_figure_is_the_median_over_rounds_and_ratios_are_against_the_same_run(rows):
    def med(mode, param, key):
        return statistics.median(r["result"][key] for r in rows
                                 if (r["mode"], r["test"], r["param"]) == (mode, "rtt", param))

    noop = {m: med(m, "NOOP", "median_us") for m in ("none", "kernel", "ftpct", "nfq")}
    got = cells(bench.table(rows), "NOOP round trip, median, all on one CPU")
    assert got[:6] == ["us", f"{noop['none']:.1f}", f"{noop['kernel']:.1f}", f"{noop['ftpct']:.1f}",
                       f"{noop['nfq']:.1f}", f"{noop['ftpct'] / noop['kernel']:.2f}"]
    assert got[6:8] == [f"{noop['ftpct'] / noop['none']:.2f}", f"{noop['ftpct'] / noop['nfq']:.2f}"]
    assert got[8:] == ["c/b <= 1.05: ok", "3"]
    assert noop["ftpct"] < 30  # round 3's 90 us is an outlier: a median, not a mean


def test_a_target_missed_is_named(rows):
    text = bench.table(rows)
    assert cells(text, "sessions/s, ftpload, K=1")[-2] == "c/b >= 0.95: MISS"
    assert "targets missed: " in text and "sessions/s, ftpload, K=1" in text.split("targets missed: ")[1]


def test_per_noop_subtracts_the_one_noop_session_of_the_same_round(rows):
    # ftpct's fixture queues 1 packet per NOOP plus 21 for the rest of the session.
    got = cells(bench.table(rows), "packets queued per NOOP round trip")
    assert got[1:5] == ["0.00", "0.00", "1.00", "2.00"] and got[-2] == "<= 0: MISS"


def test_a_failed_run_is_left_out_and_reported(rows):
    text = bench.table(rows)
    assert "kernel sessions vsftpd-K1 round 2: failed" in text
    assert cells(text, "sessions/s, vsftpd, K=1")[-1] == "2"  # n: the other gateways' two rounds


def test_failed_sessions_count_in_the_median_and_are_reported(rows):
    text = bench.table(rows)
    assert "sessions ftpload-K16: failed sessions per round none [0, 0], kernel [0, 0], ftpct [0, 2]" in text
    per_s = [r["result"]["per_s"] for r in rows if (r["mode"], r["param"]) == ("ftpct", "ftpload-K16")]
    assert cells(text, "sessions/s, ftpload, K=16")[3] == f"{statistics.median(per_s):.0f}"


def test_too_few_sequential_sessions_give_no_figure(rows):
    text = bench.table(rows)
    assert "nfq queued-sessions ftpload-active round 1: 12 sessions ok" in text
    assert cells(text, "packets queued per active session (PORT/EPRT), ftpload")[-1] == "2"


def test_machine_cpu_per_session_uses_the_cpus_of_the_run(rows):
    for r in rows:
        r["cpu"]["cpus"] = 4
    doubled = cells(bench.table(rows), "  machine CPU per session, ftpload, K=1")
    for r in rows:
        r["cpu"]["cpus"] = 2
    single = cells(bench.table(rows), "  machine CPU per session, ftpload, K=1")
    assert [int(x) for x in doubled[1:4]] == pytest.approx([2 * int(x) for x in single[1:4]], abs=1)


def test_the_optional_column_shows_only_when_the_results_have_it(rows):
    assert "(e) ftpctall" not in bench.table(rows)
    extra = [dict(r, mode="ftpctall") for r in rows if r["mode"] == "ftpct"]
    text = bench.table(rows + extra)
    head = text.splitlines()[0].split()
    assert "ftpctall" in head and head.index("ftpctall") < head.index("c/b")


def proxy_rows(rows):
    """The kernel's rows as the proxy's, with the CPU of a program in the
    gateway (a quarter of the client's) and no stream (it cannot run it)."""
    return [dict(r, mode="ftp-proxy", cpu=dict(r["cpu"], ftpct_cpu_s=r["cpu"].get("cli_pct", 0) / 400))
            for r in rows if r["mode"] == "kernel" and r["test"] != "stream"]


def test_the_proxy_is_a_column_with_its_ratio_and_what_it_cannot_run(rows):
    assert "(f) ftp-proxy" not in bench.table(rows)  # shown only when the results have it
    text = bench.table(rows + proxy_rows(rows))
    head = text.splitlines()[0]
    assert head.index("(d) nfq") < head.index("(f) ftp-proxy") < head.index("c/b") < head.index("c/f")
    noop = cells(text, "NOOP round trip, median, all on one CPU")
    assert noop[5] == noop[2] and noop[9] == noop[6]  # c/f: the proxy's rows are the kernel's here: c/f is c/b
    # Its program's CPU per session is shown (not a queue program's: no stream figures).
    per_session = cells(text, "  queue program CPU per session, ftpload, K=1")
    assert per_session[1:3] == ["-", "-"] and per_session[5] != "-"
    assert cells(text, "stream: queue program CPU per packet")[5] == "-"
    # Nothing queued through it, and the NOOP on the other CPU is its own test's (none here).
    assert cells(text, "packets queued per passive session (PASV/EPSV), ftpload")[5] == "0.0"
    few = [dict(r, result=dict(r["result"], ok=12)) if r["test"] == "queued-sessions" else r for r in proxy_rows(rows)]
    text = bench.table(rows + few)  # 12 sequential sessions: enough where nothing is queued
    assert cells(text, "packets queued per active session (PORT/EPRT), ftpload")[5] == "0.0"
    assert "ftp-proxy queued-sessions" not in text
    assert cells(text, "NOOP round trip, median, queue program on the other CPU")[5] == "-"
    assert "cannot run:\n  (f) ftp-proxy: EPSV and EPRT" in text and "IPv6" in text
    assert "session after another" not in text  # the fixture's client gave no session times
    timed = [dict(r, result=dict(r["result"], latency_median_us=1000.0 * (r["mode"] == "ftp-proxy") + 1500))
             if r["test"] == "queued-sessions" else r for r in rows + proxy_rows(rows)]
    got = cells(bench.table(timed), "one active session after another: its time, median, ftpload")
    assert got[1:6] == ["1.50", "1.50", "1.50", "1.50", "2.50"] and got[9] == "0.60"


def test_the_proxy_sessions_use_the_modes_it_can_do():
    proxy, ftpct = bench.COLUMN["ftp-proxy"], bench.COLUMN["ftpct"]
    tests = {(t.test, t.param): t for t in bench.plan(bench.QUICK)}
    k16 = tests[("sessions", "ftpload-K16")]
    assert bench.argv_for(k16, ftpct) == k16.argv and "pasv,epsv,port,eprt" in k16.argv
    argv = bench.argv_for(k16, proxy)
    assert argv[argv.index("--modes") + 1] == "pasv,port" and len(argv) == len(k16.argv)
    active = bench.argv_for(tests[("queued-sessions", "ftpload-active")], proxy)
    assert argv[-2:] == active[-2:] and active[active.index("--modes") + 1] == "port"
    assert bench.modes_of(tests[("rtt", "NOOP")], proxy) is None
    runs = [(t.test, t.param) for t in bench.selected(proxy, list(tests.values()), options())]
    assert ("rtt", "NOOP-other-cpu") in runs and ("stream", "mss120") not in runs and len(runs) == 17
    only_epsv = bench.Test("sessions", "x", "sessions", "ftpload", bench.sessions_argv(1, 1, ("epsv",)), 60)
    assert bench.selected(proxy, [only_epsv], options()) == []


def options(**kw):
    opts = dict(quick=True, rounds=None, only="rtt,sessions,bulk,stream,syscalls", no_vsftpd=False, no_nfq=False,
                no_ftp_proxy=False, queue_all_too=False, ftpct_queues="0", ftpct_busy_poll=0, prefix="ftpct-bench-")
    opts.update(kw)
    return argparse.Namespace(**opts)


def test_the_gateways_and_what_each_runs():
    opts = options()
    assert [c.key for c in bench.COLUMNS if c.enabled(opts)] == ["none", "kernel", "ftpct", "nfq", "ftp-proxy"]
    assert [c.key for c in bench.COLUMNS if c.enabled(options(no_nfq=True, queue_all_too=True,
                                                              no_ftp_proxy=True))] == \
        ["none", "kernel", "ftpct", "ftpctall"]
    tests = bench.plan(bench.QUICK)
    runs = {c.key: [(t.test, t.param) for t in bench.selected(c, tests, opts)] for c in bench.COLUMNS}
    assert len(runs["ftpct"]) == len(set(runs["ftpct"])) == 18
    assert ("syscalls", "ftpload-sequential") in runs["nfq"] and ("syscalls", "ftpload-sequential") not in runs["none"]
    assert ("rtt", "NOOP-other-cpu") in runs["ftpct"] and ("rtt", "NOOP-other-cpu") not in runs["kernel"]
    assert not any(test == "bulk" or param.startswith("vsftpd") for test, param in runs["nfq"])
    assert ("stream", "mss120") in runs["nfq"]
    only = bench.selected(bench.COLUMN["kernel"], tests, options(only="bulk", no_vsftpd=True))
    assert [(t.test, t.param) for t in only] == [("bulk", "ftpload")]


def test_quick_is_shorter_but_keeps_the_noop_count():
    assert bench.QUICK.noop == bench.Sizes().noop == 10000
    assert bench.QUICK.sess_secs < bench.Sizes().sess_secs


def test_options_are_checked_and_named_in_the_header():
    opts = options()
    bench.check_options(opts)
    assert opts.rounds == 2
    assert bench.command_line(opts) == "python3 -m lab bench --quick --rounds 2"
    opts = options(quick=False, rounds=3, only="rtt,sessions", no_nfq=True, no_ftp_proxy=True, ftpct_queues="0:1")
    bench.check_options(opts)
    assert bench.command_line(opts) == \
        "python3 -m lab bench --rounds 3 --no-nfq --no-ftp-proxy --ftpct-queues 0:1 --only rtt,sessions"
    for bad in (options(only="rtt,latency"), options(rounds=100), options(prefix="lab-")):
        with pytest.raises(bench.LabError):
            bench.check_options(bad)


def test_the_fixture_is_what_a_run_writes(rows):
    """Every row has the keys a run records, so the fixture tests the table
    on the shape of real results."""
    for r in rows:
        assert set(r) == {"round", "mode", "test", "param", "cpu", "result"}
        assert r["mode"] in bench.COLUMN
    assert {r["test"] for r in rows} == {"rtt", "sessions", "queued-sessions", "bulk", "stream"}


def test_netlink_requests_per_session_come_from_the_metrics_of_the_run():
    row = {"result": {"ok": 4, "failed": 0},
           "cpu": {"netlink": {"CtGet yes": 8, "IpsetDel no": 6, "CtCreate yes": 2}}}
    assert bench.netlink_per_session(None)(row) == 4.0
    assert bench.netlink_per_session("yes")(row) == 2.5
    # A binary without the metric: no figure.
    assert bench.netlink_per_session(None)({"result": {"ok": 4}, "cpu": {}}) is None


STRACE_C = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 61.02    0.004113          27       150           sendmsg
 30.11    0.002030          10       200        12 recvmsg
  8.87    0.000598           5       100           epoll_wait
------ ----------- ----------- --------- --------- ----------------
100.00    0.006741          14       450        12 total
"""


def test_system_calls_per_session_come_from_strace_summary(rows):
    assert bench.strace_counts(STRACE_C) == {"sendmsg": 150, "recvmsg": 200, "epoll_wait": 100}
    base = next(r for r in rows if r["mode"] == "ftpct" and r["param"] == "ftpload-passive")
    traced = [dict(base, test="syscalls", param="ftpload-sequential", mode=mode, round=n,
                   cpu=dict(base["cpu"], syscalls=bench.strace_counts(STRACE_C)), result=dict(base["result"], ok=ok))
              for mode, n, ok in (("ftpct", 1, 25), ("ftpct", 2, 50), ("ftpct", 3, 25), ("nfq", 1, 50))]
    text = bench.table(rows + traced)
    got = cells(text, "system calls of the gateway's program per sequential session, ftpload")
    assert got[1:5] == ["-", "-", "18.0", "9.0"] and got[-2:] == ["<= 16: MISS", "3"]  # median of 18, 9, 18
    assert cells(text, "  of them sends and receives, ftpload")[3:5] == ["14.0", "7.0"]
