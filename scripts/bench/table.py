#!/usr/bin/env python3
"""The table of scripts/bench.sh: medians over rounds of each figure for the
gateways (a) none, (b) kernel, (c) ftpct and (d) nfq (a do-nothing queue
program), and (e) ftpctall (ftpct with --queue-all) when the results have it;
ratios c/b, c/a and c/d, and the targets of issue 10 (queue only what can
matter): NOOP round trip c/b <= 1.05, sessions/s c/b >= 0.95, bulk >= 0.98,
packets queued per NOOP 0, per session 4 (passive) and 5 (active); the
stream's queue capacity is issue 4's.

Usage: scripts/bench/table.py results.jsonl
"""
import json
import os
import statistics
import sys

MODES = ("none", "kernel", "ftpct", "nfq", "ftpctall")
# Column (e) is printed only when the results have it (--queue-all-too).
OPTIONAL = ("ftpctall",)
# Gateways with a queue program.
QUEUED = ("ftpct", "nfq", "ftpctall")
# Sequential sessions of the packets-queued rows: at least this many.
MIN_QUEUED_SESSIONS = 20


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Table:
    def __init__(self, rows):
        self.rows = rows
        present = {r["mode"] for r in rows}
        self.modes = tuple(m for m in MODES if m not in OPTIONAL or m in present)
        self.lines = []
        self.misses = []
        self.problems = []

    def problem(self, text):
        if text not in self.problems:
            self.problems.append(text)

    def values(self, test, param, fn):
        """Per mode: the list of fn(row) over rounds (None when failed)."""
        out = {m: [] for m in MODES}
        for r in self.rows:
            if r["test"] == test and r["param"] == param and r["mode"] in out:
                res = r.get("result") or {}
                if res.get("failed"):
                    out[r["mode"]].append(None)
                    self.problem(f"{r['mode']} {test} {param} round {r['round']}: failed")
                    continue
                out[r["mode"]].append(fn(r))
        return out

    def add(self, label, unit, vals, fmt="{:.0f}", target=None):
        """target: (kind, limit) with kind 'min_cb' (c/b >= limit),
        'max_cb' (c/b <= limit), 'min_c' (c >= limit) or 'max_c' (c <= limit,
        c as printed: fmt's rounding is the tolerance)."""
        med = {m: median(vals[m]) for m in self.modes}
        if all(med[m] is None for m in self.modes):
            return
        a, b, c, d = (med[m] for m in MODES[:4])
        cb = c / b if c is not None and b else None
        ca = c / a if c is not None and a else None
        cd = c / d if c is not None and d else None
        verdict = ""
        if target:
            kind, limit = target
            if kind == "min_cb" and cb is not None:
                ok = cb >= limit
                verdict = f"c/b >= {limit}: " + ("ok" if ok else "MISS")
            elif kind == "max_cb" and cb is not None:
                ok = cb <= limit
                verdict = f"c/b <= {limit}: " + ("ok" if ok else "MISS")
            elif kind == "min_c" and c is not None:
                ok = c >= limit
                verdict = f">= {limit:,.0f}: " + ("ok" if ok else "MISS")
            elif kind == "max_c" and c is not None:
                ok = float(fmt.format(c)) <= limit
                verdict = f"<= {limit:,.0f}: " + ("ok" if ok else "MISS")
            else:
                ok = True
            if not ok:
                self.misses.append(label)

        def f(x):
            return "-" if x is None else fmt.format(x)

        def r(x):
            return "-" if x is None else f"{x:.2f}"

        n = max(len([v for v in vals[m] if v is not None]) for m in self.modes)
        self.lines.append((label, unit, *(f(med[m]) for m in self.modes),
                           r(cb), r(ca), r(cd), verdict, n))

    def render(self):
        names = {"none": "(a) none", "kernel": "(b) kernel", "ftpct": "(c) ftpct",
                 "nfq": "(d) nfq", "ftpctall": "(e) ftpctall"}
        head = ("figure (median over rounds)", "unit", *(names[m] for m in self.modes),
                "c/b", "c/a", "c/d", "target", "n")
        rows = [head] + [tuple(str(x) for x in l) for l in self.lines]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        out = []
        for i, r in enumerate(rows):
            cells = []
            for j, cell in enumerate(r):
                left = j in (0, 1, len(head) - 2)
                cells.append(cell.ljust(widths[j]) if left else cell.rjust(widths[j]))
            out.append("  ".join(cells).rstrip())
            if i == 0:
                out.append("  ".join("-" * w for w in widths))
        return "\n".join(out)


def main():
    rows = load(sys.argv[1])
    t = Table(rows)
    res = lambda k: (lambda r: r["result"][k])
    cpu = lambda k: (lambda r: r["cpu"][k])

    for cmd, what in (("NOOP", "NOOP"), ("PASV", "PASV+227"), ("PORT", "PORT+200")):
        label = f"{what} round trip, median" + (", all on one CPU" if cmd == "NOOP" else "")
        t.add(label, "us", t.values("rtt", cmd, res("median_us")), "{:.1f}",
              ("max_cb", 1.05) if cmd == "NOOP" else None)
        t.add(f"{what} round trip, p99", "us", t.values("rtt", cmd, res("p99_us")), "{:.1f}")
        if cmd == "NOOP":
            # The queue program on the other CPU; (a) and (b) have none: their
            # figures are repeated from the row above.
            same = t.values("rtt", "NOOP", res("median_us"))
            other = t.values("rtt", "NOOP-other-cpu", res("median_us"))
            other["none"], other["kernel"] = same["none"], same["kernel"]
            t.add("NOOP round trip, median, queue program on the other CPU", "us", other, "{:.1f}",
                  ("max_cb", 1.05))

    # Packets queued: the NFQUEUE rules' counters (a gateway without queue
    # rules counts 0). Per NOOP: the NOOP session less the 1-NOOP session of
    # the same round and gateway, over the NOOPs between them.
    def queued_of(r):
        return (r.get("cpu") or {}).get("queued")

    base = {(r["mode"], r["round"]): r for r in rows
            if r["test"] == "rtt" and r["param"] == "NOOP-base"}

    def per_noop(r):
        b = base.get((r["mode"], r["round"]))
        if b is None or (b.get("result") or {}).get("failed"):
            t.problem(f"{r['mode']} rtt NOOP round {r['round']}: no 1-NOOP session to subtract")
            return None
        n = r["result"]["count"] - b["result"]["count"]
        if queued_of(r) is None or queued_of(b) is None or n <= 0:
            return None
        return (queued_of(r) - queued_of(b)) / n

    t.add("packets queued per NOOP round trip", "pkt", t.values("rtt", "NOOP", per_noop), "{:.2f}",
          ("max_c", 0))

    def per_session(r):
        res = r["result"]
        done = res["ok"] + res["failed"]
        if res["failed"] or done < MIN_QUEUED_SESSIONS:
            t.problem(f"{r['mode']} queued-sessions {r['param']} round {r['round']}: "
                      f"{res['ok']} sessions ok, {res['failed']} failed (the figure needs "
                      f">= {MIN_QUEUED_SESSIONS}, none failed)")
            return None
        return queued_of(r) / res["ok"] if queued_of(r) is not None else None

    qparams = {r["param"] for r in rows if r["test"] == "queued-sessions"}
    for srv in sorted({p.rsplit("-", 1)[0] for p in qparams}, key=lambda s: (s != "ftpload", s)):
        for kind, what, limit in (("passive", "PASV/EPSV", 4), ("active", "PORT/EPRT", 5)):
            t.add(f"packets queued per {kind} session ({what}), {srv}", "pkt",
                  t.values("queued-sessions", f"{srv}-{kind}", per_session), "{:.1f}",
                  ("max_c", limit))

    # Per session done: the steadiest figures of a run (CPU time, not
    # rates). The machine's: busy share of all its CPUs (this machine's
    # count: the table is made where the run was) over the wall time.
    def queue_cpu_per_session(r):
        ok = r["result"]["ok"]
        return 1e6 * r["cpu"]["ftpct_cpu_s"] / ok if ok and r["mode"] in QUEUED else None

    def machine_cpu_per_session(r):
        ok = r["result"]["ok"]
        c = r["cpu"]
        return 1e6 * c["machine_busy_pct"] / 100 * os.cpu_count() * c["wall_s"] / ok if ok else None

    servers = sorted({r["param"].split("-K")[0] for r in rows if r["test"] == "sessions"},
                     key=lambda s: (s != "ftpload", s))
    ks = sorted({int(r["param"].split("-K")[1]) for r in rows if r["test"] == "sessions"})
    for srv in servers:
        for k in ks:
            p = f"{srv}-K{k}"
            t.add(f"sessions/s, {srv}, K={k}", "1/s", t.values("sessions", p, res("per_s")),
                  target=("min_cb", 0.95))
        for k in ks:
            p = f"{srv}-K{k}"
            t.add(f"  server CPU, {srv}, K={k}", "% core", t.values("sessions", p, cpu("srv_pct")))
            t.add(f"  queue program CPU, {srv}, K={k}", "% core", t.values("sessions", p, cpu("ftpct_pct")))
            t.add(f"  client CPU, {srv}, K={k}", "% core", t.values("sessions", p, cpu("cli_pct")))
            t.add(f"  machine busy, {srv}, K={k}", "% all", t.values("sessions", p, cpu("machine_busy_pct")))
            t.add(f"  queue program CPU per session, {srv}, K={k}", "us",
                  t.values("sessions", p, queue_cpu_per_session))
            t.add(f"  machine CPU per session, {srv}, K={k}", "us",
                  t.values("sessions", p, machine_cpu_per_session))
        for k in ks:
            p = f"{srv}-K{k}"
            fails = t.values("sessions", p, res("failed"))
            if any(v for m in t.modes for v in fails[m] if v):
                t.problem(f"sessions {p}: failed sessions per round "
                                  + ", ".join(f"{m} {fails[m]}" for m in t.modes))

    for srv in ("ftpload", "vsftpd"):
        v = t.values("bulk", srv, res("mib_s"))
        t.add(f"bulk 1 GiB RETR, {srv}", "MiB/s", v, target=("min_cb", 0.98))
        t.add(f"  server CPU, bulk, {srv}", "% core", t.values("bulk", srv, cpu("srv_pct")))
        t.add(f"  client CPU (SHA-256 included), bulk, {srv}", "% core", t.values("bulk", srv, cpu("cli_pct")))
        t.add(f"  machine busy, bulk, {srv}", "% all", t.values("bulk", srv, cpu("machine_busy_pct")))
        ok = t.values("bulk", srv, res("sha256_ok"))
        if any(x is False for m in MODES for x in ok[m]):
            t.problem(f"bulk {srv}: SHA-256 mismatch")

    params = sorted({r["param"] for r in rows if r["test"] == "stream"})
    for p in params:
        t.add("stream: packets/s through the gateway", "pkt/s",
              t.values("stream", p, lambda r: r["cpu"]["counted"] / r["result"]["secs"]))
        t.add("stream: lines/s delivered", "lines/s",
              t.values("stream", p, lambda r: r["result"]["lines_received"] / r["result"]["secs"]))

        queued = QUEUED

        def per_pkt(r):
            n = r["cpu"]["seen"]
            return 1e6 * r["cpu"]["ftpct_cpu_s"] / n if n and r["mode"] in queued else None

        def capacity(r):
            n = r["cpu"]["seen"]
            s = r["cpu"]["ftpct_cpu_s"]
            return n / s if n and s and r["mode"] in queued else None

        def missed(r):
            return r["cpu"]["counted"] - r["cpu"]["seen"] if r["mode"] in queued else None

        t.add("stream: queue program CPU per packet", "us", t.values("stream", p, per_pkt), "{:.2f}")
        t.add("stream: queue capacity (packets per CPU-second)", "pkt/s",
              t.values("stream", p, capacity), target=("min_c", 250_000))
        t.add("stream: queue program busy", "% core", t.values("stream", p, cpu("ftpct_pct")), "{:.0f}")
        t.add("stream: machine busy", "% all", t.values("stream", p, cpu("machine_busy_pct")), "{:.0f}")
        t.add("stream: packets not inspected", "pkt", t.values("stream", p, missed))
        for r in rows:
            if r["test"] != "stream" or (r.get("result") or {}).get("failed"):
                continue
            if not r["result"]["ok"]:
                t.problem(f"stream {r['mode']} round {r['round']}: lines lost or altered")
            if r["mode"] in queued and r["cpu"]["counted"] != r["cpu"]["seen"]:
                t.problem(
                    f"stream {r['mode']} round {r['round']}: {r['cpu']['counted']} packets at the rule, "
                    f"{r['cpu']['seen']} inspected (socket drops {r['cpu']['socket_drops']})")

    print(t.render())
    print()
    print("targets missed: " + (", ".join(t.misses) if t.misses else "none"))
    if t.problems:
        print("problems:")
        for p in t.problems:
            print("  " + p)


if __name__ == "__main__":
    main()
