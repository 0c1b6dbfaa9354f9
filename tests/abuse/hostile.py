#!/usr/bin/env python3
"""Hostile FTP actions for the hostile-input suite (tests/lab/test_hostile.py,
the cases in tests/lab/hostile.py; standard library only).

Every subcommand is bounded in time and size. The ones that attack print
`probe ...` and `detail ...` lines, then one `summary: key=value ...` line,
and exit with 0 (the secure outcome: nothing passed, the session still
works), 1 (something passed the gateway, or the session broke) or 3 (the
case could not be set up: no login, the server did not show the trick).

Subcommands:
  listen --port P [--port P...] --log FILE [--secs N]
      accept on [::]:P (IPv4 too): write `hit PORT PEER` to FILE, send
      `ABUSE-LISTENER-HIT`, close. A probe that reads this line passed.
  probe HOST PORT [--timeout S]
      one TCP connection attempt: prints open / refused / timeout.
  session HOST [--cmd TEXT]... [--want REGEX] [--probe [NS@]HOST:PORT]...
          [--probe-announced] [--noop] [--until REGEX]
      log in (anonymous), send each command and read its reply (RFC 959
      multi-line replies are read whole; --until REGEX reads reply lines
      until one matches, for replies that are garbage), then probe.
      --want: the replies must contain REGEX (else exit 3: the trick did
      not reach the client). --probe-announced: probe every address and
      port that a `227 `/`229 ` line in the replies names, as received.
      --noop: a NOOP must get its 200 at the end.
  send HOST --payload KIND [--size N] [--seed N] [--probe ...]
      log in, send a raw payload on the control channel (KIND: longline,
      binary, flood), then NOOP: its 200 must come back.
  portflood HOST --addr A --count N (--pipelined | --sequential)
          --file NAME --sha HEX
      log in, N PORT commands naming A and ports BASE.. (--port-base), read every reply,
      then NOOP (200) and a real active-mode RETR of NAME on the same
      session (SHA-256 checked).
  legit HOST --mode M --file NAME --sha HEX --ready F --stop F [--max-secs N]
      a normal ftplib session (tests/e2e/ftpc.py): RETR NAME again and
      again (SHA-256 checked) until the file --stop exists, then once more.
      Touches --ready after the first good transfer.
  b2b HOST --shape SHAPE --file NAME --sha HEX [--timeout S]
      a legitimate transfer whose control traffic leaves in segments sent
      back to back (TCP_NODELAY, one send() per segment, no wait between):
        split-port-verb   "PO" | "RT a,b,c,d,p1,p2\r\n", then RETR (active)
        split-port-addr   "PORT a,b," | "c,d,p1,p2\r\n", then RETR (active)
        split-eprt        "EPRT |2|<half the address>" | "<rest>|port|\r\n",
                          then RETR (active; connect to an IPv6 HOST)
        port-retr-one     "PORT ...\r\nRETR NAME\r\n" in one segment
        port-retr-two     "PORT ...\r\n" | "RETR NAME\r\n"
        pasv-more         (fake server) SITE B2B MORE, then "PASV\r\nRETR
                          NAME\r\n" in one segment: the 227 and the 150
                          leave the server in two segments back to back
        split-227         (fake server) SITE B2B SPLIT227, then PASV: the
                          227 leaves in two segments, cut inside the address
      The data connection goes where the (possibly rewritten) PORT/EPRT or
      227 says; the data's SHA-256 must be HEX. TCP_INFO counts the data
      segments each side sent (retransmissions apart): anything but one
      segment per write means the kernel joined or cut them and the case
      did not test its shape (exit 3).
  echo HOST [--echo CMD:SEP[,SEP...]]... [--raw KIND:PORT:TEXT]...
          --kinds 227[,229] --port-base P [--server-addr A]
          [--probe-host H]... --file NAME --sha HEX
      pinholes through echoed client text. Each attempt sends, in one write,
      command lines whose argument holds a separator (lf, cr, nul) and a
      forged announcement (`227 Entering Passive Mode (A,p1,p2)` or `229
      Entering Extended Passive Mode (|||p|)`) naming its own port P, P+1,
      ..., then PASV (for a 227) or EPSV (for a 229) pipelined behind. CMD
      names the lines (ECHO_CMDS: SIZE, MDTM, CWD, RETR, DELE, RNFR, RMD,
      STAT, MLST, TYPE; MKD (a fresh directory under upload/), PWD (MKD, CWD
      into it, PWD, CWD /)); each separator of a CMD takes the next kind of
      --kinds in turn. --raw sends TEXT as it is (the server or a file name
      forges the announcement of KIND naming PORT). Replies are read with
      CR LF framing (RFC 959) up to the real 227/229, whose port is then
      used for a RETR of NAME (SHA-256 checked) while the forged port is
      probed at each --probe-host; all forged ports once more at the end,
      then NOOP. Prints per attempt whether the reply echoed the forged text.
      Exit 0: nothing forged opened, every real transfer worked; 1: a
      forged port opened or a real transfer failed; 3: nothing was echoed.
  pyftpd --root DIR --log FILE [--port 21] [--secs N]
      pyftpdlib (import it: run with Debian's /usr/bin/python3) on [::]:PORT,
      anonymous and read-only, serving DIR, until SIGTERM or N seconds.
  fakeserver --root DIR --log FILE [--secs N]
      a small FTP server on [::]:21 serving DIR (anonymous login, TYPE,
      PASV, EPSV, PORT, EPRT, RETR, SIZE, NOOP, QUIT) that also misbehaves
      on request: SITE UNSOL227 P / SITE UNSOL229 P answer with a 227/229
      that no PASV/EPSV asked for; SITE MULTI227 P / SITE MULTI229 P with
      a multi-line 213 reply holding a 227/229 line in a segment of its own; SITE LONGLINE N, SITE GARBAGE N SEED,
      SITE FLOOD N answer with an N-byte line, N random bytes, N malformed
      227/229 lines (each then `200 abuse-done`); SITE LONGOPEN227 P /
      SITE LONGOPEN229 P with a multi-line 211 reply whose opener is
      `211-` and 1,100 bytes, a 227/229 naming port P inside the block,
      then the block's end (one write); SITE B2B MORE / SITE B2B
      SPLIT227 shape the session's next 227 (see b2b; the 226 that ends the
      transfer then says how many writes and data segments left since the
      227); lines of any length and content from the client get a 500 and
      the session goes on.
"""

import argparse
import hashlib
import os
import random
import re
import select
import signal
import socket
import subprocess
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BANNER = b"ABUSE-LISTENER-HIT"
MAX_LINE = 4 << 20  # longest reply line read, bytes
LONGOPEN_BYTES = 1100  # SITE LONGOPEN227/229: the opener's text after "211-"
RE_227 = re.compile(rb"^227 .*?(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
RE_229 = re.compile(rb"^229 .*?\((.)\1\1(\d+)\1\)")


def out(*a):
    print(*a, flush=True)


def hostport(addr):
    """ADDR:PORT as ftpct's log writes it ([v6]:port)."""
    return ("[%s]:%d" if ":" in addr[0] else "%s:%d") % (addr[0], addr[1])


# --- the control connection ---------------------------------------------------


class Ctl:
    """A raw control connection: bytes in, reply lines out."""

    def __init__(self, host, port=21, timeout=10):
        self.host = host
        self.sock = socket.create_connection((host, port), timeout)
        # Closing resets: a stalled session's unsent data is dropped, not
        # retransmitted through the gateway during the next cases.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.buf = b""
        # Where a reply line ends: any LF (tolerant, the default), or only a
        # CR LF (RFC 959's Telnet end of line; the echo cases, where a bare
        # LF or CR inside a reply is text the client chose).
        self.eol = b"\n"
        self.lines = []  # every reply line read, for --want and announcements
        loc, peer = self.sock.getsockname(), self.sock.getpeername()
        out("control %s -> %s" % (hostport(loc), hostport(peer)))
        self.local = loc

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, text):
        self.send(text.encode("latin-1") + b"\r\n")

    def readline(self, deadline):
        while self.eol not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete reply line in time")
            if len(self.buf) > MAX_LINE:
                raise ValueError("reply line longer than %d bytes" % MAX_LINE)
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("server closed the control connection")
            self.buf += chunk
        line, self.buf = self.buf.split(self.eol, 1)
        line += self.eol
        self.lines.append(line)
        return line

    def reply(self, timeout=10):
        """One reply, multi-line ones whole: (code, [lines])."""
        deadline = time.monotonic() + timeout
        first = self.readline(deadline)
        lines = [first]
        code = first[:3]
        if first[3:4] == b"-":
            while True:
                line = self.readline(deadline)
                lines.append(line)
                if line[:3] == code and line[3:4] == b" ":
                    break
        return code.decode("latin-1"), lines

    def until(self, pattern, timeout=20):
        """Reply lines until one matches PATTERN (bytes regex)."""
        deadline = time.monotonic() + timeout
        n = 0
        while True:
            line = self.readline(deadline)
            n += 1
            if re.search(pattern, line):
                return line, n

    def login(self):
        code, _ = self.reply()
        if code != "220":
            raise SystemExit(3)
        self.cmd("USER anonymous")
        code, _ = self.reply()
        if code == "331":
            self.cmd("PASS abuse@example.com")
            code, _ = self.reply()
        if code != "230":
            out("detail login failed: %s" % code)
            raise SystemExit(3)

    def noop(self, timeout=10):
        t0 = time.monotonic()
        self.cmd("NOOP")
        line, n = self.until(rb"^[0-9]{3} ", timeout)
        ms = (time.monotonic() - t0) * 1000
        return line[:3] == b"200", line.strip().decode("latin-1", "replace"), ms


def show(line, limit=160):
    s = line.rstrip(b"\r\n").decode("latin-1")
    s = "".join(c if 32 <= ord(c) < 127 else "\\x%02x" % ord(c) for c in s)
    return s if len(s) <= limit else s[:limit] + "...(%d chars)" % len(s)


# --- probes -------------------------------------------------------------------


def probe_one(host, port, timeout=1.5):
    """open / refused / timeout / unreachable / error:..."""
    try:
        s = socket.create_connection((host, port), timeout)
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        if e.errno in (101, 113):
            return "unreachable"
        return "error:%s" % e.strerror
    try:
        s.settimeout(1.0)
        data = s.recv(64)
    except OSError:
        data = b""
    finally:
        s.close()
    return "open(listener)" if data.startswith(BANNER) else "open"


def probe_spec(spec, timeout):
    """[NS@]HOST:PORT; HOST may be [v6]."""
    ns, _, hp = spec.rpartition("@")
    host, _, port = hp.rpartition(":")
    host = host.strip("[]")
    if ns:
        try:
            r = subprocess.run(
                ["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                 "probe", host, port, "--timeout", str(timeout)],
                capture_output=True, text=True, timeout=timeout + 10)
            res = r.stdout.strip().split()[-1] if r.stdout.strip() else "error:" + r.stderr.strip()[-80:]
        except subprocess.TimeoutExpired:
            res = "error:probe-hung"
    else:
        res = probe_one(host, int(port), timeout)
    return spec, res


def run_probes(specs, timeout=1.5, label="probe"):
    """Probes in parallel; prints them (`LABEL SPEC RESULT`); number that passed."""
    results = {}

    def work(sp):
        results[sp] = probe_spec(sp, timeout)[1]

    threads = [threading.Thread(target=work, args=(sp,)) for sp in dict.fromkeys(specs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 15)
    opened = 0
    for sp in dict.fromkeys(specs):
        res = results.get(sp, "error:no-result")
        out("%s %s %s" % (label, sp, res))
        if res.startswith("open"):
            opened += 1
    return opened


def announced(lines, default_host):
    """HOST:PORT of every 227/229 line, as the client received it."""
    found = []
    for line in lines:
        m = RE_227.match(line)
        if m:
            n = [int(x) for x in m.groups()]
            if all(x < 256 for x in n):
                found.append("%d.%d.%d.%d:%d" % (n[0], n[1], n[2], n[3], n[4] * 256 + n[5]))
            continue
        m = RE_229.match(line)
        if m:
            host = default_host if ":" not in default_host else "[%s]" % default_host
            found.append("%s:%s" % (host, m.group(2).decode()))
    return found


# --- subcommands ----------------------------------------------------------------


def cmd_listen(a):
    socks = []
    for port in a.port:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        s.listen(64)
        s.setblocking(False)
        socks.append(s)
    end = time.monotonic() + a.secs
    with open(a.log, "a", buffering=1) as log:
        log.write("listening %s\n" % " ".join(map(str, a.port)))
        while time.monotonic() < end:
            r, _, _ = select.select(socks, [], [], 1.0)
            for s in r:
                try:
                    c, peer = s.accept()
                except OSError:
                    continue
                log.write("hit %d %s:%d\n" % (s.getsockname()[1], peer[0], peer[1]))
                try:
                    c.settimeout(1)
                    c.sendall(BANNER + b"\r\n")
                except OSError:
                    pass
                c.close()
    return 0


def cmd_probe(a):
    out(probe_one(a.host, a.port, a.timeout))
    return 0


def cmd_session(a):
    c = Ctl(a.host)
    c.login()
    base = len(c.lines)
    for text in a.cmd:
        c.cmd(text)
        try:
            if a.until:
                line, n = c.until(a.until.encode("latin-1"), a.timeout)
                out("reply to %s: %d line(s), last %s" % (show(text.encode("latin-1"), 60), n, show(line)))
            else:
                code, lines = c.reply(a.timeout)
                out("reply to %s: %s (%d line(s))" % (show(text.encode("latin-1"), 60), code, len(lines)))
        except (TimeoutError, ConnectionError, ValueError) as e:
            out("detail no reply to %s: %s" % (show(text.encode("latin-1"), 60), e))
            out("summary: opened=0 noop=lost broken=1")
            return 1
    got = c.lines[base:]
    for line in got:
        if RE_227.match(line) or RE_229.match(line):
            out("received %s" % show(line))
    if a.want and not any(re.search(a.want.encode("latin-1"), ln) for ln in got):
        out("detail the replies do not contain %r" % a.want)
        out("summary: opened=0 trick=missing")
        return 3
    specs = list(a.probe)
    if a.probe_announced:
        specs += announced(got, a.host)
    opened = run_probes(specs, a.probe_timeout) if specs else 0
    noop = "-"
    if a.noop:
        ok, line, ms = c.noop()
        noop = "200" if ok else "bad"
        out("noop %s (%.1f ms)" % (line, ms))
    c.cmd("QUIT")
    out("summary: opened=%d probes=%d noop=%s" % (opened, len(specs), noop))
    return 1 if opened or noop == "bad" else 0


def garbage_bytes(size, seed):
    """Random bytes with every nasty control byte present."""
    rng = random.Random(seed)
    data = bytearray(rng.getrandbits(8) for _ in range(size))
    nasty = [b"\x00", b"\r", b"\xff\xf4\xff\xfd\x06", b"\xff\xff", b"\r\r\x00\n", b"\x1b[2J"]
    for i in range(0, size, 97):
        chunk = nasty[(i // 97) % len(nasty)]
        data[i:i + len(chunk)] = chunk
    return bytes(data[:size])


def payload(kind, size, seed, flood_client=True):
    if kind == "longline":
        return b"A" * size + b"\r\n"
    if kind == "binary":
        return garbage_bytes(size, seed) + b"\r\n"
    if kind == "flood":
        # Lines a helper may log: malformed announcements, overlong lines.
        if flood_client:
            bad = [b"PORT 1,2,3\r\n", b"PORT 192,0,2,999,1,1\r\n", b"EPRT |9|x|1|\r\n",
                   b"EPRT |1|192.0.2.10|0|\r\n", b"PORT 1,2,3,4,5,6,7,8\r\n"]
        else:
            bad = [b"227 Entering Passive Mode (1,2,3)\r\n", b"227 (192,0,2,300,4,1)\r\n",
                   b"229 Entering Extended Passive Mode (|||0|)\r\n", b"227 (192,0,2,1,0,0)\r\n"]
        lines = [bad[i % len(bad)] for i in range(size)]
        lines += [b"B" * 2000 + b"\r\n"] * 100
        return b"".join(lines)
    raise SystemExit("unknown payload %r" % kind)


def cmd_send(a):
    c = Ctl(a.host)
    c.login()
    data = payload(a.payload, a.size, a.seed)
    out("detail sending %d bytes (%s)" % (len(data), a.payload))
    err = []

    def writer():
        try:
            c.send(data)
            c.cmd("NOOP")
        except OSError as e:
            err.append(str(e))

    t = threading.Thread(target=writer, daemon=True)
    t0 = time.monotonic()
    t.start()
    # The replies to the garbage, then the NOOP's 200 (the first 200 after it).
    n = 0
    status = "bad"
    try:
        while True:
            line = c.readline(t0 + a.timeout)
            n += 1
            if re.match(a.noop_re.encode("latin-1"), line):
                status = "200"
                break
    except (TimeoutError, ConnectionError, ValueError) as e:
        out("detail after the payload: %s" % e)
    t.join(2)  # a daemon thread: a writer stuck on a stalled connection is left behind
    if err:
        out("detail send failed: %s" % err[0])
    out("noop %s after %d reply line(s), %.1f ms" % (status, n, (time.monotonic() - t0) * 1000))
    if status == "200":
        ok, line, ms = c.noop()
        out("noop again %s (%.1f ms)" % (line, ms))
        status = "200" if ok else "bad"
    opened = run_probes(a.probe, a.probe_timeout) if a.probe else 0
    if status == "200":  # on a stalled connection the QUIT would wait for room
        c.cmd("QUIT")
    out("summary: opened=%d noop=%s replies=%d" % (opened, status, n))
    return 0 if status == "200" and not opened else 1


def active_retr(c, addr, name, timeout=20):
    """PORT + RETR on the raw session; the data's SHA-256."""
    with socket.create_server((c.local[0], 0), backlog=1) as ls:
        port = ls.getsockname()[1]
        c.cmd("PORT %s,%d,%d" % (addr.replace(".", ","), port >> 8, port & 255))
        code, _ = c.reply(timeout)
        if code != "200":
            return None, "PORT answered %s" % code
        c.cmd("TYPE I")
        c.reply(timeout)
        c.cmd("RETR " + name)
        code, _ = c.reply(timeout)
        if code[0] != "1":
            return None, "RETR answered %s" % code
        ls.settimeout(timeout)
        d, _ = ls.accept()
    digest, _ = read_data(d, timeout)
    code, _ = c.reply(timeout)
    return digest, "RETR done %s" % code


def cmd_portflood(a):
    c = Ctl(a.host, timeout=20)
    c.login()
    n = a.count
    ports = [a.port_base + i % 10000 for i in range(n)]
    lines = [("PORT %s,%d,%d\r\n" % (a.addr.replace(".", ","), p >> 8, p & 255)).encode() for p in ports]
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    ok = bad = 0
    err = []
    if a.pipelined:
        blob = b"".join(lines)

        def writer():
            try:
                c.send(blob)
            except OSError as e:
                err.append(str(e))

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            for _ in range(n):
                code, _ = c.reply(max(0.1, deadline - time.monotonic()))
                ok += code == "200"
                bad += code != "200"
        except (TimeoutError, ConnectionError, ValueError) as e:
            err.append(str(e))
        t.join(5)
    else:
        try:
            for ln in lines:
                if time.monotonic() > deadline:
                    err.append("time limit")
                    break
                c.send(ln)
                code, _ = c.reply(max(0.1, deadline - time.monotonic()))
                ok += code == "200"
                bad += code != "200"
        except (TimeoutError, ConnectionError, ValueError) as e:
            err.append(str(e))
    secs = time.monotonic() - t0
    out("detail %d PORT %s in %.2f s: %d answered 200, %d other%s" % (
        n, "pipelined" if a.pipelined else "sequential", secs, ok, bad,
        ("; error: " + err[0]) if err else ""))
    noop, sha_ok = "bad", False
    try:
        good, line, ms = c.noop(3 if err else 10)
        noop = "200" if good else "bad"
        out("noop %s (%.1f ms)" % (line, ms))
        if not good:
            raise TimeoutError("no 200 for NOOP: no transfer tried")
        digest, why = active_retr(c, a.addr, a.file)
        sha_ok = digest == a.sha
        out("detail transfer on the same session: %s, sha256 %s" % (why, "ok" if sha_ok else "MISMATCH %s" % digest))
        c.cmd("QUIT")
    except (TimeoutError, ConnectionError, ValueError, OSError) as e:
        out("detail session after the flood: %s" % e)
    out("summary: answered=%d secs=%.2f noop=%s transfer=%s" % (ok, secs, noop, "ok" if sha_ok else "bad"))
    return 0 if noop == "200" and sha_ok and ok + bad == n else 1


def cmd_legit(a):
    sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
    import ftpc  # noqa: E402 (the e2e matrix's client)

    end = time.monotonic() + a.max_secs
    f = ftpc.login(a.host, a.mode)
    f.set_debuglevel(0)
    done = 0

    def one():
        h = hashlib.sha256()
        f.retrbinary("RETR " + a.file, h.update)
        if h.hexdigest() != a.sha:
            out("legit: SHA-256 MISMATCH on transfer %d: %s" % (done + 1, h.hexdigest()))
            raise SystemExit(1)

    one()
    done += 1
    open(a.ready, "w").close()
    while not os.path.exists(a.stop) and time.monotonic() < end and done < a.max_count:
        one()
        done += 1
        time.sleep(0.05)
    stopped = os.path.exists(a.stop)
    one()  # once more, after the attack
    done += 1
    f.quit()
    out("legit: %d transfer(s) of %s, SHA-256 ok%s" % (done, a.file, "" if stopped else " (no stop signal)"))
    return 0


# --- echoed client text ---------------------------------------------------------

# What an echo attempt puts between the path and the forged announcement.
ECHO_SEPS = {"lf": b"\n", "cr": b"\r", "nul": b"\x00"}
# The command lines one attempt sends before its PASV/EPSV, ARG standing for
# the hostile argument (a fresh name, a separator, a forged announcement).
# MKD echoes on success (a fresh directory under the writable upload/), PWD
# after a CWD into such a directory; the others echo in their error reply.
ECHO_CMDS = {
    "SIZE": ["SIZE /ARG"],
    "MDTM": ["MDTM /ARG"],
    "CWD": ["CWD /ARG"],
    "RETR": ["RETR /ARG"],
    "DELE": ["DELE /ARG"],
    "RNFR": ["RNFR /ARG"],
    "RMD": ["RMD /ARG"],
    "STAT": ["STAT /ARG"],
    "MLST": ["MLST /ARG"],
    "TYPE": ["TYPE ARG"],
    "MKD": ["MKD /upload/ARG"],
    "PWD": ["MKD /upload/ARG", "CWD /upload/ARG", "PWD", "CWD /"],
}


def forged(kind, port, addr):
    """The announcement-shaped text naming PORT (of ADDR, for a 227)."""
    if kind == "227":
        return "227 Entering Passive Mode (%s,%d,%d)" % (addr.replace(".", ","), port >> 8, port & 255)
    return "229 Entering Extended Passive Mode (|||%d|)" % port


def echo_attempts(a):
    """[(label, kind, forged port, [command lines as bytes])]: every
    --echo CMD:SEP,... (the kinds taken in turn, so that each separator
    meets each kind), then every --raw KIND:PORT:TEXT as it is."""
    kinds = a.kinds.split(",")
    nonce = "%06x" % random.getrandbits(24)
    found = []
    for ci, spec in enumerate(a.echo):
        name, _, seps = spec.partition(":")
        if name not in ECHO_CMDS:
            raise SystemExit("unknown echo command %r (one of %s)" % (name, ", ".join(ECHO_CMDS)))
        for si, sep in enumerate(seps.split(",")):
            kind = kinds[(ci + si) % len(kinds)]
            port = a.port_base + len(found)
            arg = ("e%s%02d" % (nonce, len(found))).encode() + ECHO_SEPS[sep] + \
                forged(kind, port, a.server_addr or "0.0.0.0").encode("latin-1")
            lines = [t.encode("latin-1").replace(b"ARG", arg) for t in ECHO_CMDS[name]]
            found.append(("%s %s %s" % (name, sep, kind), kind, port, lines))
    for spec in a.raw:
        kind, port, text = spec.split(":", 2)
        found.append((text, kind, int(port), [text.encode("latin-1")]))
    if len(found) > a.max_attempts:
        raise SystemExit("%d attempts: more than --max-attempts %d" % (len(found), a.max_attempts))
    return found


def forged_marks(kind, port):
    """Byte strings that show the forged announcement in a reply."""
    if kind == "227":
        return [b",%d,%d)" % (port >> 8, port & 255)]
    return [b"(|||%d|)" % port]


def announcement(code, lines, host):
    """(host, port) that a 227/229 reply's last line announces, or None."""
    where = announced(lines[-1:], host) if code in ("227", "229") else []
    if not where:
        return None
    h, _, p = where[0].rpartition(":")
    return h.strip("[]"), int(p)


def passive_retr(c, where, a):
    """RETR a.file over a data connection to WHERE: (ok, why)."""
    try:
        d = socket.create_connection(where, a.data_timeout)
    except OSError as e:
        return False, "data connection to %s: %s" % (hostport(where), e)
    try:
        c.cmd("TYPE I")  # an echoed TYPE may have changed it
        c.reply(a.timeout)
        c.cmd("RETR " + a.file)
        code, lines = c.reply(a.timeout)
        if code[0] != "1":
            d.close()
            return False, "RETR answered %s" % show(lines[-1])
        digest, n = read_data(d, a.timeout)
        code, lines = c.reply(a.timeout)
    except (TimeoutError, ConnectionError, ValueError, OSError) as e:
        d.close()
        return False, "transfer: %s" % e
    if digest != a.sha:
        return False, "SHA-256 MISMATCH (%d bytes)" % n
    return True, "RETR ok (%d bytes, %s)" % (n, code)


def alone_retr(c, kind, a):
    """PASV/EPSV sent alone, once every reply came (the way clients send
    commands), and a RETR over what it announces: (ok, why). A helper may
    refuse the answer to a passive request pipelined behind other commands
    (ftpct does: their replies may quote text that forges it); this one
    every helper must serve."""
    verb = "PASV" if kind == "227" else "EPSV"
    try:
        c.cmd(verb)
        code, rl = c.reply(a.timeout)
    except (TimeoutError, ConnectionError, ValueError, OSError) as e:
        return False, "%s alone: %s" % (verb, e)
    where = announcement(code, rl, c.host)
    if not where:
        return False, "%s alone answered %s" % (verb, show(rl[-1]))
    return passive_retr(c, where, a)


def echo_one(c, n, attempt, a, probe_hosts):
    """One attempt: its lines and PASV/EPSV in one write, the replies read
    (CR LF framed) up to the real 227/229, the real one used for a RETR
    while the forged port is probed; then PASV/EPSV alone and its RETR.
    Returns (echoed, real, pipelined_ok, alone_ok, opened)."""
    label, kind, port, lines = attempt
    verb = "PASV" if kind == "227" else "EPSV"
    c.send(b"".join(ln + b"\r\n" for ln in lines) + verb.encode() + b"\r\n")
    marks = forged_marks(kind, port)
    codes, echoed, real, at_start = [], False, None, False
    try:
        for _ in range(2 * len(lines) + 4):
            code, rl = c.reply(a.timeout)
            codes.append(code)
            blob = b"".join(rl)
            if any(m in blob for m in marks):
                echoed = True
            where = announcement(code, rl, c.host)
            if where and where[1] == port:
                at_start = True  # the server's own framing made it a reply
                continue
            if where:
                real = where
                break
            if code == kind:
                break  # the reply to PASV/EPSV, with no address in it
    except (TimeoutError, ConnectionError, ValueError) as e:
        out("attempt %d: %s (forged port %d): %s, replies %s, then %s" % (
            n, label, port, "echoed" if echoed else "NOT echoed", " ".join(codes), e))
        if isinstance(e, TimeoutError):
            c.cmd("NOOP")  # back in step: whatever is late comes before its 200
            c.until(rb"^200 ", a.timeout)
        return echoed, False, False, False, 0
    specs = [(h if ":" not in h else "[%s]" % h) + ":%d" % port for h in probe_hosts]
    res = {}

    def probe(sp):
        res[sp] = probe_spec(sp, a.probe_timeout)[1]

    threads = [threading.Thread(target=probe, args=(sp,)) for sp in specs]
    for t in threads:
        t.start()
    ok, why = passive_retr(c, real, a) if real else (False, "no real %s reply" % kind)
    for t in threads:
        t.join(a.probe_timeout + 15)
    opened = sum(1 for sp in specs if res.get(sp, "").startswith("open"))
    alone, alone_why = alone_retr(c, kind, a)
    out("attempt %d: %s (forged port %d): %s, replies %s%s; real %s -> %s, %s; alone: %s; forged port %s" % (
        n, label, port, "echoed" if echoed else "NOT echoed", " ".join(codes),
        " (the forged one as a reply of its own)" if at_start else "",
        kind, hostport(real) if real else "none", why, alone_why,
        " ".join("%s=%s" % (sp, res.get(sp, "no-result")) for sp in specs)))
    return echoed, real is not None, ok, alone, opened


def cmd_echo(a):
    attempts = echo_attempts(a)
    probe_hosts = list(dict.fromkeys(a.probe_host or [a.host]))
    c = Ctl(a.host, timeout=a.timeout)
    c.login()
    c.eol = b"\r\n"
    c.cmd("TYPE I")
    c.reply(a.timeout)
    out("forged ports: %s" % ",".join(str(x[2]) for x in attempts))
    echoed, fine, alone, reals, opened, leaks = {}, 0, 0, 0, 0, []
    for n, att in enumerate(attempts):
        try:
            e, r, ok, ok_alone, o = echo_one(c, n, att, a, probe_hosts)
        except (TimeoutError, ConnectionError, ValueError, OSError) as err:
            out("detail the session broke at attempt %d: %s" % (n, err))
            break
        echoed[att[0]] = e
        reals += r
        fine += ok
        alone += ok_alone
        opened += o
        if o:
            leaks.append("%s (%d)" % (att[0], att[2]))
    # Once more, every forged port at once (a pinhole may have opened late).
    specs = ["%s:%d" % (h if ":" not in h else "[%s]" % h, att[2]) for att in attempts for h in probe_hosts]
    late = run_probes(specs, a.sweep_timeout, "sweep")
    opened += late
    noop = "bad"
    try:
        ok, line, ms = c.noop(a.timeout)
        noop = "200" if ok else "bad"
        out("noop %s (%.1f ms)" % (line, ms))
        c.cmd("QUIT")
    except (TimeoutError, ConnectionError, ValueError, OSError) as e:
        out("detail NOOP: %s" % e)
    if opened:
        out("detail OPENED by: %s%s" % (", ".join(leaks) or "-", "; %d more at the final sweep" % late if late else ""))
    yes = [k for k, v in echoed.items() if v]
    no = [k for k, v in echoed.items() if not v]
    out("detail echoed: %s; not echoed: %s" % (", ".join(yes) or "none", ", ".join(no) or "none"))
    out("detail %d of %d attempt(s) got their real reply, %d pipelined transfer(s) ok, %d alone" % (
        reals, len(attempts), fine, alone))
    out("summary: opened=%d attempts=%d echoed=%d real=%d pipelined=%d alone=%d noop=%s" % (
        opened, len(attempts), len(yes), reals, fine, alone, noop))
    if opened:
        return 1
    if not yes:
        out("detail no attempt was echoed: the case tested nothing")
        return 3
    # The pipelined transfers are information (ftpct refuses them by
    # design); the ones sent alone must all work.
    return 0 if alone == len(attempts) and noop == "200" else 1


def cmd_pyftpd(a):
    """pyftpdlib (Debian's python3-pyftpdlib) on [::]:PORT, anonymous,
    read-only (its defaults), serving ROOT."""
    import logging

    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    logging.basicConfig(filename=a.log, level=logging.INFO)
    auth = DummyAuthorizer()
    auth.add_anonymous(a.root)

    class Handler(FTPHandler):
        authorizer = auth
        timeout = 120

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(max(1, int(a.secs)))
    # A thread (and an I/O loop) per session: in one shared loop, pyftpdlib
    # 1.5.7 (Debian 12) stops reading a session's control connection for
    # good when another session's active data connection is set up about
    # when its passive one closes (fd reuse: "unregister(); fd was no longer
    # in socket_map"), which the SNAT cases, whose legitimate session uses
    # PORT, hit every time.
    server = ThreadedFTPServer(("::", a.port), Handler)
    server.max_cons = 512
    server.serve_forever(timeout=1.0)  # until SIGTERM or --secs (SystemExit)
    return 0


# --- segments sent back to back ---------------------------------------------------


def tcp_counters(sock):
    """(data segments sent, segments retransmitted) so far, from TCP_INFO:
    tcpi_data_segs_out (offset 156) and tcpi_total_retrans (offset 100)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 160)
    return struct.unpack_from("I", info, 156)[0], struct.unpack_from("I", info, 100)[0]


class Burst:
    """Writes sent back to back, one send() each with TCP_NODELAY, and the
    data segments they left in (retransmissions apart)."""

    def __init__(self, sock):
        self.sock = sock
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.writes = []
        self.mark = tcp_counters(sock)

    def send(self, *parts):
        for p in parts:
            p = p if isinstance(p, bytes) else p.encode("latin-1")
            self.sock.sendall(p)
            self.writes.append(p)

    def segments(self):
        """(original data segments, retransmitted ones) since the mark."""
        segs, retrans = tcp_counters(self.sock)
        retrans -= self.mark[1]
        return segs - self.mark[0] - retrans, retrans

    def shown(self):
        return " | ".join('"%s"' % p.decode("latin-1").replace("\r", "\\r").replace("\n", "\\n")
                          for p in self.writes)


def b2b_cut(line, shape):
    """Where SHAPE cuts the announcement LINE (str)."""
    if shape == "split-port-verb":
        return 2  # "PO" | "RT ..."
    if shape == "split-port-addr":
        return line.index(",", line.index(",") + 1) + 1  # "PORT a,b," | "c,d,..."
    if shape == "split-eprt":
        start = len("EPRT |2|")
        return start + (line.index("|", start) - start) // 2  # half the address
    return None


def read_data(d, timeout):
    h = hashlib.sha256()
    n = 0
    d.settimeout(timeout)
    with d:
        while True:
            b = d.recv(1 << 16)
            if not b:
                break
            h.update(b)
            n += len(b)
    return h.hexdigest(), n


class B2BError(Exception):
    pass


def expect_code(c, want, what, timeout):
    code, lines = c.reply(timeout)
    if not code.startswith(want):
        raise B2BError("%s answered %s" % (what, show(lines[-1])))
    return code, lines


def b2b_active(c, a, steps):
    """PORT/EPRT in the shape asked for, then RETR over the active data
    connection: (burst, its segments, digest, size, None)."""
    fam = c.sock.family
    with socket.create_server((c.local[0], 0), family=fam, backlog=1) as ls:
        port = ls.getsockname()[1]
        if a.shape == "split-eprt":
            if fam != socket.AF_INET6:
                raise SystemExit(b2b_setup_failed("split-eprt needs an IPv6 control connection"))
            line = "EPRT |2|%s|%d|\r\n" % (c.local[0], port)
        else:
            line = "PORT %s,%d,%d\r\n" % (c.local[0].replace(".", ","), port >> 8, port & 255)
        retr = "RETR %s\r\n" % a.file
        b = Burst(c.sock)
        if a.shape == "port-retr-one":
            b.send(line + retr)
        elif a.shape == "port-retr-two":
            b.send(line, retr)
        else:
            cut = b2b_cut(line, a.shape)
            b.send(line[:cut], line[cut:])
        code, _ = expect_code(c, "2", line.split()[0], a.timeout)
        steps.append(code)
        segs = b.segments()  # everything of the burst has left by now
        if a.shape not in ("port-retr-one", "port-retr-two"):
            c.cmd(retr.strip())
        code, _ = expect_code(c, "1", "RETR", a.timeout)
        steps.append(code)
        ls.settimeout(a.timeout)
        try:
            d, _ = ls.accept()
        except socket.timeout:
            raise B2BError("no data connection from the server in %g s" % a.timeout)
    digest, n = read_data(d, a.timeout)
    code, _ = expect_code(c, "2", "the transfer", a.timeout)
    steps.append(code)
    return b, segs, digest, n, None


def b2b_passive(c, a, steps):
    """SITE B2B ..., then PASV (pipelined with the RETR for pasv-more) and
    RETR over the passive data connection: (burst, its segments, digest,
    size, the server's (writes, segments, retransmitted))."""
    mode = "MORE" if a.shape == "pasv-more" else "SPLIT227"
    c.cmd("SITE B2B " + mode)
    code, lines = c.reply(a.timeout)
    if code != "200":
        raise SystemExit(b2b_setup_failed("SITE B2B %s answered %s" % (mode, show(lines[-1]))))
    b = Burst(c.sock)
    if mode == "MORE":
        b.send("PASV\r\nRETR %s\r\n" % a.file)
    else:
        b.send("PASV\r\n")
    code, lines = expect_code(c, "227", "PASV", a.timeout)
    steps.append(code)
    segs = b.segments()
    out("received %s" % show(lines[-1]))
    where = announced(lines[-1:], a.host)
    if not where:
        raise B2BError("no address in %s" % show(lines[-1]))
    host, _, port = where[0].rpartition(":")
    try:
        d = socket.create_connection((host.strip("[]"), int(port)), a.timeout)
    except OSError as e:
        raise B2BError("data connection to %s: %s" % (where[0], e))
    if mode != "MORE":
        c.cmd("RETR " + a.file)
    try:
        expect_code(c, "1", "RETR", a.timeout)
    except BaseException:
        d.close()
        raise
    steps.append("150")
    digest, n = read_data(d, a.timeout)
    code, lines = expect_code(c, "2", "the transfer", a.timeout)
    steps.append(code)
    m = re.search(rb"b2b writes=(\d+) segments=(\d+) retransmitted=(\d+)", lines[-1])
    server = tuple(int(x) for x in m.groups()) if m else None
    return b, segs, digest, n, server


def b2b_setup_failed(why):
    out("detail %s" % why)
    out("summary: opened=0 transfer=not-tried")
    return 3


def cmd_b2b(a):
    c = Ctl(a.host, timeout=a.timeout)
    c.login()
    c.cmd("TYPE I")
    code, lines = c.reply(a.timeout)
    if code != "200":
        return b2b_setup_failed("TYPE I answered %s" % show(lines[-1]))
    steps = []
    try:
        fn = b2b_passive if a.shape in ("pasv-more", "split-227") else b2b_active
        b, (segs, retrans), digest, n, server = fn(c, a, steps)
    except (B2BError, TimeoutError, ConnectionError, ValueError, OSError) as e:
        got = ("after the replies " + " ".join(steps)) if steps else "with no reply to the shaped writes"
        out("detail transfer failed %s: %s" % (got, e))
        out("summary: opened=0 transfer=failed")
        return 1
    ok = digest == a.sha
    out("detail client: %d write(s) back to back (%s) left in %d data segment(s), %d retransmitted" % (
        len(b.writes), b.shown(), segs, retrans))
    if server:
        out("detail server: %d write(s) back to back from its 227 on left in %d data segment(s), %d retransmitted"
            % server)
    out("detail transfer: %s, %d bytes, SHA-256 %s" % (
        " ".join(steps), n, "ok" if ok else "MISMATCH %s" % digest))
    try:
        c.cmd("QUIT")
    except OSError:
        pass
    joined = segs != len(b.writes) or (server is not None and server[1] != server[0])
    if a.shape in ("pasv-more", "split-227") and server is None:
        joined = True
        out("detail the fake server's 226 did not say how its writes left")
    if joined:
        out("detail the writes did not leave as one segment each: not the shape under test")
        out("summary: opened=0 transfer=%s shape=lost" % ("ok" if ok else "bad"))
        return 3
    out("summary: opened=0 transfer=%s" % ("ok" if ok else "bad"))
    return 0 if ok else 1


# --- the fake server ------------------------------------------------------------


class FakeSession(threading.Thread):
    def __init__(self, conn, root, log):
        super().__init__(daemon=True)
        self.c, self.root, self.log = conn, root, log
        self.pasv = None
        self.port_addr = None
        self.buf = b""
        self.b2b = None  # SITE B2B: how the next 227 leaves
        self.burst = None  # from a shaped 227 to the 226: the writes, counted

    def w(self, data):
        data = data if isinstance(data, bytes) else data.encode("latin-1")
        if self.burst:
            self.burst.send(data)
        else:
            self.c.sendall(data)

    def wait_line(self, secs):
        """Reads until a whole line is buffered (at most SECS)."""
        end = time.monotonic() + secs
        try:
            while b"\n" not in self.buf and time.monotonic() < end:
                self.c.settimeout(max(0.01, end - time.monotonic()))
                chunk = self.c.recv(1 << 16)
                if not chunk:
                    break
                self.buf += chunk
        except socket.timeout:
            pass
        finally:
            self.c.settimeout(120)

    def reply_227(self, text):
        """The 227, shaped as SITE B2B asked: MORE sends it and the reply
        to the command pipelined behind it back to back (that command read
        first), SPLIT227 cuts it inside the address, two writes back to
        back."""
        mode, self.b2b = self.b2b, None
        if not mode:
            self.w(text)
            return
        if mode == "MORE":
            self.wait_line(2.0)
        self.burst = Burst(self.c)
        if mode == "SPLIT227":
            cut = text.index(",", text.index(",") + 1) + 1  # "227 ... (a,b," | "c,d,p1,p2)"
            self.burst.send(text[:cut], text[cut:])
        else:
            self.burst.send(text)

    def line(self):
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                # Tolerant: an endless line is answered and dropped.
                self.buf = b""
                self.w("500 line too long, still listening\r\n")
            chunk = self.c.recv(1 << 16)
            if not chunk:
                return None
            self.buf += chunk
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r")

    def own_addr(self):
        a = self.c.getsockname()[0]
        return a[7:] if a.startswith("::ffff:") else a

    def open_pasv(self):
        if self.pasv:
            self.pasv.close()
        fam = socket.AF_INET if "." in self.own_addr() else socket.AF_INET6
        self.pasv = socket.create_server((self.own_addr(), 0), family=fam, backlog=1)
        self.pasv.settimeout(15)
        self.port_addr = None
        return self.pasv.getsockname()[1]

    def data_conn(self):
        if self.pasv:
            d, _ = self.pasv.accept()
            self.pasv.close()
            self.pasv = None
            return d
        if self.port_addr:
            return socket.create_connection(self.port_addr, 15)
        raise OSError("no PORT/PASV")

    def retr(self, name):
        path = os.path.realpath(os.path.join(self.root, name.lstrip("/")))
        if not path.startswith(os.path.realpath(self.root) + os.sep) or not os.path.isfile(path):
            self.w("550 no such file\r\n")
            return
        self.w("150 here it comes\r\n")
        try:
            d = self.data_conn()
        except OSError:
            self.w("425 no data connection\r\n")
            return
        with d, open(path, "rb") as fh:
            while True:
                b = fh.read(1 << 16)
                if not b:
                    break
                d.sendall(b)
        if self.burst:
            writes, (segs, retrans) = len(self.burst.writes), self.burst.segments()
            self.burst = None
            self.w("226 done (b2b writes=%d segments=%d retransmitted=%d)\r\n" % (writes, segs, retrans))
        else:
            self.w("226 done\r\n")

    def site(self, args):
        words = args.split()
        what = words[0].upper() if words else ""
        n = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
        if what == "B2B" and len(words) > 1 and words[1].upper() in ("MORE", "SPLIT227"):
            self.b2b = words[1].upper()
            self.c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.w("200 b2b %s: the next 227 is shaped\r\n" % self.b2b)
        elif what in ("MULTI227", "MULTI229"):
            # The listing trick, each line its own segment: a helper that
            # reads segments, not replies, sees a 227/229 at a line start.
            self.c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.w("213-Status follows:\r\n")
            time.sleep(0.05)
            if what == "MULTI227":
                a = self.own_addr().split(".")
                self.w("227 Entering Passive Mode (%s,%d,%d)\r\n" % (",".join(a), n >> 8, n & 255))
            else:
                self.w("229 Entering Extended Passive Mode (|||%d|)\r\n" % n)
            time.sleep(0.05)
            self.w("213 End of status\r\n")
            self.c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        elif what == "UNSOL227":
            a = self.own_addr().split(".")
            self.w("227 Entering Passive Mode (%s,%d,%d)\r\n" % (",".join(a), n >> 8, n & 255))
        elif what == "UNSOL229":
            self.w("229 Entering Extended Passive Mode (|||%d|)\r\n" % n)
        elif what in ("LONGOPEN227", "LONGOPEN229"):
            # A multi-line reply whose opener is longer than a helper's
            # line limit (1,024 by default), a 227/229 naming port N inside
            # the block, then the block's end, in one write.
            self.w("211-%s\r\n%s\r\n211 End of the long block\r\n" % (
                "O" * LONGOPEN_BYTES, forged(what[-3:], n, self.own_addr())))
        elif what == "LONGLINE":
            self.w(b"200-" + b"L" * n + b"\r\n200 abuse-done\r\n")
        elif what == "GARBAGE":
            seed = int(words[2]) if len(words) > 2 else 1
            self.w(garbage_bytes(n, seed) + b"\r\n200 abuse-done\r\n")
        elif what == "FLOOD":
            self.w(payload("flood", n, 0, flood_client=False) + b"200 abuse-done\r\n")
        else:
            self.w("500 unknown SITE command\r\n")

    def run(self):
        try:
            self.c.settimeout(120)
            self.w("220 abuse fake server\r\n")
            while True:
                ln = self.line()
                if ln is None:
                    break
                text = ln.decode("latin-1")
                verb, _, arg = text.partition(" ")
                verb = verb.upper()
                if verb == "USER":
                    self.w("331 any password\r\n")
                elif verb == "PASS":
                    self.w("230 logged in\r\n")
                elif verb in ("TYPE", "MODE", "STRU"):
                    self.w("200 ok\r\n")
                elif verb == "NOOP":
                    self.w("200 NOOP ok\r\n")
                elif verb == "SYST":
                    self.w("215 UNIX Type: L8\r\n")
                elif verb == "PWD":
                    self.w('257 "/"\r\n')
                elif verb == "PASV":
                    p = self.open_pasv()
                    self.reply_227("227 Entering Passive Mode (%s,%d,%d)\r\n" % (
                        self.own_addr().replace(".", ","), p >> 8, p & 255))
                elif verb == "EPSV":
                    self.w("229 Entering Extended Passive Mode (|||%d|)\r\n" % self.open_pasv())
                elif verb == "PORT":
                    n = arg.split(",")
                    self.port_addr = (".".join(n[:4]), int(n[4]) * 256 + int(n[5]))
                    self.w("200 PORT ok\r\n")
                elif verb == "EPRT":
                    d = arg[0]
                    _, _, host, port, _ = arg.split(d)
                    self.port_addr = (host, int(port))
                    self.w("200 EPRT ok\r\n")
                elif verb == "SIZE":
                    p = os.path.join(self.root, arg.lstrip("/"))
                    self.w("213 %d\r\n" % os.path.getsize(p) if os.path.isfile(p) else "550 no\r\n")
                elif verb == "RETR":
                    self.retr(arg)
                elif verb == "SITE":
                    self.site(arg)
                elif verb == "QUIT":
                    self.w("221 bye\r\n")
                    break
                else:
                    self.w("500 unknown command\r\n")
        except (OSError, ValueError, IndexError) as e:
            self.log.write("session error: %s\n" % e)
        finally:
            self.c.close()


def cmd_fakeserver(a):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", 21))
    s.listen(64)
    s.settimeout(1.0)
    end = time.monotonic() + a.secs
    n = 0
    with open(a.log, "a", buffering=1) as log:
        log.write("fake server listening on 21\n")
        while time.monotonic() < end and n < a.max_sessions:
            try:
                conn, peer = s.accept()
            except socket.timeout:
                continue
            n += 1
            log.write("session %d from %s\n" % (n, peer[0]))
            FakeSession(conn, a.root, log).start()
    return 0


# --- main -------------------------------------------------------------------------


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="sub", required=True)

    s = sub.add_parser("listen")
    s.add_argument("--port", type=int, action="append", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--secs", type=float, default=900)
    s.set_defaults(fn=cmd_listen)

    s = sub.add_parser("probe")
    s.add_argument("host")
    s.add_argument("port", type=int)
    s.add_argument("--timeout", type=float, default=1.5)
    s.set_defaults(fn=cmd_probe)

    def probes(s):
        s.add_argument("--probe", action="append", default=[])
        s.add_argument("--probe-timeout", type=float, default=1.5)
        s.add_argument("--timeout", type=float, default=20)

    s = sub.add_parser("session")
    s.add_argument("host")
    s.add_argument("--cmd", action="append", default=[])
    s.add_argument("--want")
    s.add_argument("--until")
    s.add_argument("--probe-announced", action="store_true")
    s.add_argument("--noop", action="store_true")
    probes(s)
    s.set_defaults(fn=cmd_session)

    s = sub.add_parser("send")
    s.add_argument("host")
    s.add_argument("--payload", choices=["longline", "binary", "flood"], required=True)
    s.add_argument("--size", type=int, default=100000)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--noop-re", default=r"^200 .*(NOOP|Zzz)",
                   help="the NOOP's reply (vsftpd: 200 NOOP ok., pure-ftpd: 200 Zzz...)")
    probes(s)
    s.set_defaults(fn=cmd_send)

    s = sub.add_parser("portflood")
    s.add_argument("host")
    s.add_argument("--addr", required=True)
    s.add_argument("--count", type=int, default=10000)
    s.add_argument("--port-base", type=int, default=20000, help="PORTs name ports BASE..BASE+9999")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--pipelined", action="store_true")
    g.add_argument("--sequential", action="store_true")
    s.add_argument("--file", required=True)
    s.add_argument("--sha", required=True)
    s.add_argument("--timeout", type=float, default=60)
    s.set_defaults(fn=cmd_portflood)

    s = sub.add_parser("legit")
    s.add_argument("host")
    s.add_argument("--mode", default="pasv")
    s.add_argument("--file", required=True)
    s.add_argument("--sha", required=True)
    s.add_argument("--ready", required=True)
    s.add_argument("--stop", required=True)
    s.add_argument("--max-secs", type=float, default=90)
    s.add_argument("--max-count", type=int, default=2000)
    s.set_defaults(fn=cmd_legit)

    s = sub.add_parser("b2b")
    s.add_argument("host")
    s.add_argument("--shape", required=True, choices=[
        "split-port-verb", "split-port-addr", "split-eprt", "port-retr-one", "port-retr-two",
        "pasv-more", "split-227"])
    s.add_argument("--file", required=True)
    s.add_argument("--sha", required=True)
    s.add_argument("--timeout", type=float, default=10)
    s.set_defaults(fn=cmd_b2b)

    s = sub.add_parser("echo")
    s.add_argument("host")
    s.add_argument("--echo", action="append", default=[], help="CMD:SEP[,SEP...]")
    s.add_argument("--raw", action="append", default=[], help="KIND:PORT:TEXT")
    s.add_argument("--kinds", default="227,229")
    s.add_argument("--port-base", type=int, default=47500)
    s.add_argument("--server-addr", help="the server's own IPv4 address, for the forged 227s")
    s.add_argument("--probe-host", action="append", default=[])
    s.add_argument("--probe-timeout", type=float, default=0.4)
    s.add_argument("--sweep-timeout", type=float, default=0.5)
    s.add_argument("--data-timeout", type=float, default=1.0)
    s.add_argument("--timeout", type=float, default=5.0)
    s.add_argument("--max-attempts", type=int, default=64)
    s.add_argument("--file", required=True)
    s.add_argument("--sha", required=True)
    s.set_defaults(fn=cmd_echo)

    s = sub.add_parser("pyftpd")
    s.add_argument("--root", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--port", type=int, default=21)
    s.add_argument("--secs", type=float, default=900)
    s.set_defaults(fn=cmd_pyftpd)

    s = sub.add_parser("fakeserver")
    s.add_argument("--root", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--secs", type=float, default=900)
    s.add_argument("--max-sessions", type=int, default=2000)
    s.set_defaults(fn=cmd_fakeserver)

    a = p.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
