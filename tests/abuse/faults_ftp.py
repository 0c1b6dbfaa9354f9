#!/usr/bin/env python3
"""FTP session driven step by step, for the fault suite (tests/lab/faults.py).

One control connection (Python's ftplib, with the client class of
tests/e2e/ftpc.py, so PORT, EPRT, PASV and EPSV are what they say), then the
operations in order. The suite coordinates with the session through files:
the session creates some (`touch`) and waits for others (`wait`).

Usage: faults_ftp.py HOST MODE [options] OP...
  MODE             port, eprt, pasv or epsv (data connections)
  --src ADDR       local address of the control connection
  --timeout S      socket timeout of every step (default 10)
  --sums FILE      SHA256SUMS of the served files (for get and slowget)
  --rate BPS       pace of slowget (default 4,000,000 bytes/s)
  --hurry PATH     slowget goes at full speed once PATH exists
  --started PATH   slowget creates PATH when its first data arrives
  --max-wait S     longest `wait` (default 30)
Operations:
  get NAME         RETR NAME, SHA-256 checked
  slowget NAME     RETR NAME at --rate until --hurry exists, SHA-256 checked
  announce         send PASV/PORT (...) now: the data connection is pending;
                   the next get uses it
  mode M           data connection mode from now on
  noop             NOOP
  pipeline PATH    a NOOP every 10 ms, replies unread, until PATH exists (at
                   most 1000), then one more, and every reply read: reports
                   the time from PATH seen to the last reply (answered=)
  wait PATH        wait until PATH exists (at most --max-wait s)
  touch PATH       create PATH
  sleep S          sleep
  hold S           keep the session open doing nothing (for S s at most)
  quit             QUIT
Prints one line per step (key=value), the greeting's delay first and
`result=ok` or `result=fail step=...` last. Exit 0 only if every step worked.
"""

import ftplib
import hashlib
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import ftpc  # noqa: E402  (tests/e2e/ftpc.py)

MAX_NOOPS = 1000
CHUNK = 64 << 10


def say(**kv):
    print(" ".join("%s=%s" % (k, v) for k, v in kv.items()), flush=True)


class Session(ftpc.Client):
    """ftpc.Client whose data connection can be announced early, and is
    always made from the control connection's local address."""

    pending = None

    def announce(self):
        """PASV/EPSV: the server's address; PORT/EPRT: our listening socket."""
        if self.mode in ("pasv", "epsv"):
            self.pending = ("connect", self.data_addr())
            return "%s:%d" % self.pending[1]
        local = self.sock.getsockname()[0]
        fam = self.sock.family
        lsock = socket.create_server((local, 0), family=fam, backlog=1)
        port = lsock.getsockname()[1]
        if self.mode == "port":
            self.sendcmd("PORT " + ",".join(local.split(".") + [str(port >> 8), str(port & 255)]))
        else:
            self.sendcmd("EPRT |%d|%s|%d|" % (1 if fam == socket.AF_INET else 2, local, port))
        self.pending = ("accept", lsock)
        return "%s:%d" % (local, port)

    def ntransfercmd(self, cmd, rest=None):
        if self.pending is None:
            self.announce()
        kind, what = self.pending
        self.pending = None
        if kind == "connect":
            t0 = time.monotonic()
            # From the control connection's address (--src: a host of its own).
            conn = socket.create_connection(what, self.timeout, (self.sock.getsockname()[0], 0))
            self.connect_secs = time.monotonic() - t0
            try:
                self.start(cmd)
            except BaseException:
                conn.close()
                raise
            return conn, None
        with what as lsock:
            t0 = time.monotonic()
            self.start(cmd)
            lsock.settimeout(self.timeout)
            conn, _ = lsock.accept()
            self.connect_secs = time.monotonic() - t0
        return conn, None


def load_sums(path):
    sums = {}
    if path:
        with open(path) as f:
            for line in f:
                digest, _, name = line.strip().partition("  ")
                sums[name] = digest
    return sums


def retr(f, name, sums, rate=0.0, hurry=None, started=None):
    h = hashlib.sha256()
    f.connect_secs = None
    t0 = time.monotonic()
    conn = f.transfercmd("RETR " + name)
    n = 0
    with conn:
        conn.settimeout(f.timeout)
        while True:
            data = conn.recv(CHUNK)
            if not data:
                break
            h.update(data)
            if started and n == 0:
                open(started, "a").close()
            n += len(data)
            if rate > 0 and not (hurry and os.path.exists(hurry)):
                ahead = t0 + n / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(min(ahead, 0.5))
    digest = h.hexdigest()
    want = sums.get(name)
    ok = want is None or digest == want
    extra = {}
    if f.connect_secs is not None:
        extra["connect"] = "%.2f" % f.connect_secs
    try:
        f.voidresp()
    except (OSError, EOFError, ftplib.Error) as e:
        # The data may have arrived whole and only the final reply be lost.
        say(step="get", name=name, ok=0, bytes=n, secs="%.2f" % (time.monotonic() - t0),
            sha="ok" if ok else "BAD", reply="none:" + type(e).__name__, **extra)
        raise
    say(step="get", name=name, ok=int(ok), bytes=n, secs="%.2f" % (time.monotonic() - t0),
        sha="ok" if ok else "BAD", **extra)
    if not ok:
        raise RuntimeError("SHA-256 of %s differs" % name)


def pipeline(f, until, timeout):
    """NOOPs without reading, until `until` exists; then all replies."""
    f.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent = 0
    deadline = time.monotonic() + timeout
    while sent < MAX_NOOPS and not os.path.exists(until) and time.monotonic() < deadline:
        f.sock.sendall(b"NOOP\r\n")
        sent += 1
        time.sleep(0.01)
    seen = time.monotonic()
    f.sock.sendall(b"NOOP\r\n")
    sent += 1
    for _ in range(sent):
        r = f.getresp()
        if not r.startswith("200"):
            raise RuntimeError("NOOP answered %r" % r)
    answered = time.monotonic() - seen
    say(step="pipeline", noops=sent, answered="%.2f" % answered,
        until_seen=int(os.path.exists(until)))


def wait_file(path, limit):
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError("waited %ds for %s" % (limit, path))
        time.sleep(0.02)


def main(argv):
    opts = {"--src": None, "--timeout": "10", "--sums": None, "--rate": "4000000",
            "--hurry": None, "--started": None, "--max-wait": "30"}
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    host, mode, rest = argv[0], argv[1], argv[2:]
    while rest and rest[0] in opts:
        opts[rest[0]] = rest[1]
        rest = rest[2:]
    timeout = float(opts["--timeout"])
    sums = load_sums(opts["--sums"])
    step = "connect"
    t0 = time.monotonic()
    try:
        src = (opts["--src"], 0) if opts["--src"] else None
        f = Session(timeout=timeout, source_address=src)
        f.mode = mode
        f.connect(host, 21)
        say(step="greeting", secs="%.2f" % (time.monotonic() - t0), local="%s:%d" % f.sock.getsockname()[:2])
        step = "login"
        f.login("anonymous", "ftpct@example.com")
        f.voidcmd("TYPE I")
        i = 0
        while i < len(rest):
            op = rest[i]
            arg = rest[i + 1] if i + 1 < len(rest) else None
            step = op if arg is None else "%s:%s" % (op, os.path.basename(arg))
            t = time.monotonic()
            if op == "get":
                retr(f, arg, sums)
                i += 2
            elif op == "slowget":
                retr(f, arg, sums, float(opts["--rate"]), opts["--hurry"], opts["--started"])
                i += 2
            elif op == "announce":
                say(step="announce", mode=f.mode, addr=f.announce())
                i += 1
            elif op == "mode":
                f.mode = arg
                i += 2
            elif op == "noop":
                f.voidcmd("NOOP")
                say(step="noop", secs="%.2f" % (time.monotonic() - t))
                i += 1
            elif op == "pipeline":
                pipeline(f, arg, float(opts["--max-wait"]))
                i += 2
            elif op == "wait":
                wait_file(arg, float(opts["--max-wait"]))
                i += 2
            elif op == "touch":
                open(arg, "a").close()
                i += 2
            elif op == "sleep":
                time.sleep(float(arg))
                i += 2
            elif op == "hold":
                time.sleep(min(float(arg), 300.0))
                i += 2
            elif op == "quit":
                f.quit()
                i += 1
            else:
                raise SystemExit("unknown operation %r" % op)
    except (OSError, EOFError, RuntimeError, ftplib.Error) as e:
        say(result="fail", step=step, secs="%.2f" % (time.monotonic() - t0),
            error=repr(str(e) or type(e).__name__).replace(" ", "_"))
        return 1
    say(result="ok", secs="%.2f" % (time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
