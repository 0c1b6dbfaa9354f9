#!/usr/bin/env python3
"""One FTP session that keeps its control connection open across a gateway
failover, for the failover matrix (tests/lab/failover.py). Built on
tests/e2e/ftpc.py's client (which uses the address of a 227 reply as given,
so a wrong rewrite shows).

Usage: ftpsess.py CASE HOST REMOTE OUTDIR GOFILE [WAIT]
  Before: login, TYPE I, RETR REMOTE into OUTDIR/before.bin; for the
  *-pending cases, then PORT (listening socket opened) or PASV, left pending.
  Prints "READY" and waits (at most WAIT seconds, default 60) for GOFILE to
  exist (the failover is done). After: every reply must come within
  --after-timeout seconds (8):
    port, pasv      NOOP, then a new transfer: RETR REMOTE into OUTDIR/after.bin
    port-pending    RETR REMOTE on the pending PORT into OUTDIR/after.bin, NOOP
    pasv-pending    connect to the pending PASV address, RETR REMOTE into
                    OUTDIR/after.bin, NOOP
  Prints "control from port N" (its control connection's local port), "ok:
  STEP" for each step that worked; exit 0 when all did, 1 when a step after
  the failover failed, 2 when one before it failed.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import ftpc  # noqa: E402

AFTER_TIMEOUT = 8.0


def retr_into(f, remote, path):
    with open(path, "wb") as fh:
        f.retrbinary("RETR " + remote, fh.write)


def pending_port(f):
    """PORT (EPRT in IPv6) with a listening socket; returns the socket."""
    local = f.sock.getsockname()[0]
    fam = f.sock.family
    lsock = socket.create_server((local, 0), family=fam, backlog=1)
    port = lsock.getsockname()[1]
    if fam == socket.AF_INET:
        f.sendcmd("PORT " + ",".join(local.split(".") + [str(port >> 8), str(port & 255)]))
    else:
        f.sendcmd("EPRT |2|%s|%d|" % (local, port))
    return lsock


def finish_transfer(f, conn, path):
    with conn, open(path, "wb") as fh:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            fh.write(data)
    resp = f.getresp()
    if not resp.startswith("2"):
        raise ftpc.ftplib.error_reply(resp)


def main(argv):
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    case, host, remote, outdir, gofile = argv[:5]
    wait = float(argv[5]) if len(argv) > 5 else 60.0
    mode = "port" if case.startswith("port") else "pasv"
    if ":" in host:
        mode = {"port": "eprt", "pasv": "epsv"}[mode]
    after = os.path.join(outdir, "after.bin")
    step = "login"
    try:
        f = ftpc.login(host, mode)
        print("control from port %d" % f.sock.getsockname()[1], flush=True)
        step = "RETR before"
        retr_into(f, remote, os.path.join(outdir, "before.bin"))
        print("ok: before", flush=True)
        pend = None
        if case == "port-pending":
            step = "PORT before"
            pend = pending_port(f)
        elif case == "pasv-pending":
            step = "PASV before"
            pend = f.data_addr()
        print("READY", flush=True)
    except Exception as e:  # noqa: BLE001 - the transcript says what
        print("FAILED before failover at %s: %r" % (step, e), flush=True)
        return 2
    deadline = time.monotonic() + wait
    while not os.path.exists(gofile):
        if time.monotonic() > deadline:
            print("FAILED: no failover within %.0f s" % wait, flush=True)
            return 2
        time.sleep(0.05)
    f.sock.settimeout(AFTER_TIMEOUT)
    f.timeout = AFTER_TIMEOUT
    try:
        if case in ("port", "pasv"):
            step = "NOOP after"
            f.voidcmd("NOOP")
            print("ok: NOOP", flush=True)
            step = "RETR after"
            retr_into(f, remote, after)
        elif case == "port-pending":
            step = "RETR after on the pending PORT"
            f.start("RETR " + remote)
            pend.settimeout(AFTER_TIMEOUT)
            conn, _ = pend.accept()
            pend.close()
            finish_transfer(f, conn, after)
        elif case == "pasv-pending":
            step = "connect after to the pending PASV address"
            conn = socket.create_connection(pend, AFTER_TIMEOUT)
            step = "RETR after on the pending PASV"
            f.start("RETR " + remote)
            finish_transfer(f, conn, after)
        print("ok: RETR", flush=True)
        if case.endswith("-pending"):
            step = "NOOP after"
            f.voidcmd("NOOP")
            print("ok: NOOP", flush=True)
        f.quit()
    except Exception as e:  # noqa: BLE001
        print("FAILED after failover at %s: %r" % (step, e), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
