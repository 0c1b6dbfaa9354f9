#!/usr/bin/env python3
"""FTP client for the end-to-end matrix (tests/lab), on Python's ftplib.

Unlike ftplib's defaults, it uses the address of a 227 reply as given (so a
wrong rewrite of the 227 shows), and it speaks every data-connection mode on
request: PORT, EPRT, PASV or EPSV, whatever the address family.

Usage:
  ftpc.py session MODE HOST OP...    one session, the operations in order:
      ls LOCAL            LIST into the file LOCAL
      get REMOTE LOCAL    RETR REMOTE into LOCAL
      put LOCAL REMOTE    STOR LOCAL as REMOTE
      idle SECONDS        stay idle (control connection open), then go on
      chat KIB            KIB KiB of plain commands (SIZE of a long absent
                          name, 500-byte lines: a mirror's walk), answered
                          by errors, no transfer
  ftpc.py fxp HOST_A HOST_B NAME DEST
      server-to-server copy: PASV (EPSV in IPv6) on A, PORT (EPRT) with A's
      address on B, RETR NAME on A, STOR DEST on B. Prints each server's
      last reply or error ("B: 425 ...", "A: timed out"); exit 0 when both
      servers report success (226/250).
MODE: port, eprt, pasv or epsv. Exit status 0 only when every step worked.
"""

import ftplib
import socket
import sys
import time

TIMEOUT = 15


class Client(ftplib.FTP):
    mode = "epsv"

    def data_addr(self):
        if self.mode == "pasv":
            return ftplib.parse227(self.sendcmd("PASV"))
        return ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())

    def start(self, cmd):
        resp = self.sendcmd(cmd)
        if resp[0] == "2":
            resp = self.getresp()
        if resp[0] != "1":
            raise ftplib.error_reply(resp)

    def ntransfercmd(self, cmd, rest=None):
        if self.mode in ("pasv", "epsv"):
            host, port = self.data_addr()
            conn = socket.create_connection((host, port), self.timeout)
            try:
                self.start(cmd)
            except BaseException:
                conn.close()
                raise
            return conn, None
        local = self.sock.getsockname()[0]
        fam = self.sock.family
        with socket.create_server((local, 0), family=fam, backlog=1) as lsock:
            port = lsock.getsockname()[1]
            if self.mode == "port":
                if fam != socket.AF_INET:
                    raise SystemExit("PORT needs IPv4")
                nums = local.split(".") + [str(port >> 8), str(port & 255)]
                self.sendcmd("PORT " + ",".join(nums))
            else:
                af = 1 if fam == socket.AF_INET else 2
                self.sendcmd("EPRT |%d|%s|%d|" % (af, local, port))
            self.start(cmd)
            lsock.settimeout(self.timeout)
            conn, _ = lsock.accept()
        return conn, None


def login(host, mode):
    f = Client(timeout=TIMEOUT)
    f.mode = mode
    f.set_debuglevel(1)  # the transcript shows every command (*cmd* 'PORT ...')
    f.connect(host, 21)
    f.login("anonymous", "ftpct@example.com")
    f.voidcmd("TYPE I")
    return f


def chat(f, kib):
    line = "SIZE " + "x" * 493  # with CR LF, 500 bytes
    for _ in range(kib * 1024 // 500 + 1):
        try:
            f.sendcmd(line)
        except ftplib.error_perm:
            pass  # 550: no such file


def session(mode, host, ops):
    f = login(host, mode)
    i = 0
    while i < len(ops):
        op, start = ops[i], i
        if op == "ls":
            lines = []
            f.retrlines("LIST", lines.append)
            with open(ops[i + 1], "w") as fh:
                fh.write("\n".join(lines) + "\n")
            i += 2
        elif op == "get":
            with open(ops[i + 2], "wb") as fh:
                f.retrbinary("RETR " + ops[i + 1], fh.write)
            i += 3
        elif op == "put":
            with open(ops[i + 1], "rb") as fh:
                f.storbinary("STOR " + ops[i + 2], fh)
            i += 3
        elif op == "idle":
            time.sleep(float(ops[i + 1]))
            i += 2
        elif op == "chat":
            chat(f, int(ops[i + 1]))
            i += 2
        else:
            raise SystemExit("unknown operation %r" % op)
        print("ok:", " ".join(ops[start:i]), flush=True)
    f.quit()


def fxp(host_a, host_b, name, dest):
    a, b = login(host_a, "pasv"), login(host_b, "pasv")
    if ":" in host_a:
        port = ftplib.parse229(a.sendcmd("EPSV"), a.sock.getpeername())[1]
        b.sendcmd("EPRT |2|%s|%d|" % (host_a, port))
    else:
        h, port = ftplib.parse227(a.sendcmd("PASV"))
        b.sendcmd("PORT " + ",".join(h.split(".") + [str(port >> 8), str(port & 255)]))
    a.putcmd("RETR " + name)
    b.putcmd("STOR " + dest)
    ok = True
    for side, f in (("B", b), ("A", a)):
        try:
            r = f.getresp()
            if r.startswith("1"):
                r = f.getresp()
        except (ftplib.Error, OSError) as e:  # a 4xx/5xx reply, a timeout: the other side still answers
            r = str(e)
        print("%s: %s" % (side, r), flush=True)
        ok = ok and r[:3] in ("226", "250")
    for f in (a, b):
        try:
            f.quit()
        except Exception:
            f.close()
    return ok


def main(argv):
    if len(argv) >= 4 and argv[0] == "session":
        session(argv[1], argv[2], argv[3:])
        return 0
    if len(argv) == 5 and argv[0] == "fxp":
        return 0 if fxp(*argv[1:]) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
