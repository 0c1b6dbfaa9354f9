#!/usr/bin/env python3
"""Write the crafted FTP control-channel captures in pcaps/crafted/.

Python 3.11 standard library only (no scapy). The output is deterministic: run
it twice and the .pcap files and README.md are byte-identical.

Every capture is what the NAT gateway sees on its INSIDE interface:
  * classic pcap, LINKTYPE_ETHERNET (1), microsecond timestamps, starting at
    1700000000.000000 and advancing 1 ms per frame (longer gaps are marked);
  * the FTP control connection starts with a 3-way handshake and ends with a
    FIN exchange; data connections announced by PORT/EPRT/227/229 are included
    (SYN, SYN-ACK, ACK, data, ACK, FINs) from the side that really opens them;
  * full IPv4 header checksums and TCP checksums, consistent seq/ack numbers.

Usage:
  scripts/craft-pcaps.py              # write pcaps/crafted/*.pcap + README.md
  scripts/craft-pcaps.py --out DIR    # write elsewhere
  scripts/craft-pcaps.py --verify     # write, then re-read and check everything
"""

import argparse
import hashlib
import ipaddress
import os
import struct
import sys

BASE_TS = 1_700_000_000  # seconds; first frame is at BASE_TS + 1 ms
STEP_US = 1000           # 1 ms between consecutive frames

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
WINDOW = 64240
M32 = 0xFFFFFFFF

SNAT4 = "--snat 192.0.2.0/24=198.51.100.1"
SNAT6 = "--snat 2001:db8:1::/64=2001:db8:2::1"
DNAT4 = "--dnat 198.51.100.1=192.0.2.20"

# Link-layer addresses (locally administered). On the inside interface the
# inside host talks to the gateway's inside MAC; every outside peer appears
# behind that MAC.
MAC_GW_INSIDE = bytes.fromhex("020000000001")
MAC_CLIENT = bytes.fromhex("02000000c00a")   # 192.0.2.10 / 2001:db8:1::10
MAC_SERVER_IN = bytes.fromhex("02000000c014")  # 192.0.2.20 (DNAT scenario)


# --------------------------------------------------------------------------
# Wire helpers
# --------------------------------------------------------------------------

def inet_csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Host:
    def __init__(self, addr: str, mac: bytes, ttl: int):
        self.ip = ipaddress.ip_address(addr)
        self.mac = mac
        self.ttl = ttl
        self.ip_id = int.from_bytes(hashlib.sha256(addr.encode()).digest()[:2], "big")

    @property
    def v6(self) -> bool:
        return self.ip.version == 6

    def next_id(self) -> int:
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return self.ip_id


def tcp_options_syn(v6: bool) -> bytes:
    # MSS, NOP, NOP, SACK permitted
    return struct.pack("!BBH", 2, 4, 1440 if v6 else 1460) + bytes([1, 1, 4, 2])


def tcp_option_sack(blocks) -> bytes:
    body = b"".join(struct.pack("!II", l & M32, r & M32) for l, r in blocks)
    return bytes([1, 1, 5, 2 + len(body)]) + body


def build_frame(src: Host, dst: Host, sport, dport, seq, ack, flags, payload=b"",
                options=b"", window=WINDOW) -> bytes:
    assert len(options) % 4 == 0
    doff = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & M32, ack & M32,
                      doff << 4, flags, window, 0, 0) + options + payload
    if src.v6:
        pseudo = struct.pack("!16s16sI3xB", src.ip.packed, dst.ip.packed, len(tcp), 6)
    else:
        pseudo = struct.pack("!4s4sxBH", src.ip.packed, dst.ip.packed, 6, len(tcp))
    c = inet_csum(pseudo + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    if src.v6:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, src.ttl,
                         src.ip.packed, dst.ip.packed)
        ethertype = 0x86DD
    else:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), src.next_id(),
                         0x4000, src.ttl, 6, 0, src.ip.packed, dst.ip.packed)
        ip = ip[:10] + struct.pack("!H", inet_csum(ip)) + ip[12:]
        ethertype = 0x0800
    eth = dst.mac + src.mac + struct.pack("!H", ethertype)
    return eth + ip + tcp


# --------------------------------------------------------------------------
# Capture and TCP connection model
# --------------------------------------------------------------------------

class Capture:
    def __init__(self, name: str, replay: str):
        self.name = name
        self.replay = replay
        self.t_us = 0
        self.frames = []   # (t_us, bytes)
        self.notes = []    # key facts for the README, with exact numbers

    def gap(self, ms: int):
        """Extra silence before the next frame (on top of the 1 ms step)."""
        self.t_us += ms * 1000 - STEP_US

    def add(self, frame: bytes) -> int:
        self.t_us += STEP_US
        self.frames.append((self.t_us, frame))
        return len(self.frames)  # 1-based frame number, as tcpdump/wireshark count

    def note(self, text: str):
        self.notes.append(text)

    def pcap_bytes(self) -> bytes:
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
        for t_us, frame in self.frames:
            sec, usec = divmod(t_us, 1_000_000)
            out.append(struct.pack("<IIII", BASE_TS + sec, usec, len(frame), len(frame)))
            out.append(frame)
        return b"".join(out)


def other(side: str) -> str:
    return "s" if side == "c" else "c"


def isn_for(label: str) -> int:
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:4], "big")


class Tcp:
    """One TCP connection. Side 'c' opened it (sent the SYN), side 's' accepted."""

    def __init__(self, cap: Capture, c: Host, cport: int, s: Host, sport: int,
                 c_isn: int, s_isn: int):
        self.cap = cap
        self.host = {"c": c, "s": s}
        self.port = {"c": cport, "s": sport}
        self.isn = {"c": c_isn & M32, "s": s_isn & M32}
        self.nxt = {"c": c_isn & M32, "s": s_isn & M32}  # next seq each side sends

    # -- low level ---------------------------------------------------------
    def reserve(self, side: str, payload: bytes) -> int:
        """Allocate sequence space for payload without emitting it."""
        seq = self.nxt[side]
        self.nxt[side] = (seq + len(payload)) & M32
        return seq

    def pkt(self, side, flags, payload=b"", seq=None, ack=None, options=b"") -> int:
        """Emit a segment. seq=None: next new data (advances). ack=None: everything
        the peer has sent so far."""
        peer = other(side)
        if seq is None:
            seq = self.nxt[side]
            adv = len(payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
            self.nxt[side] = (seq + adv) & M32
        if ack is None:
            ack = self.nxt[peer] if flags & ACK else 0
        frame = build_frame(self.host[side], self.host[peer], self.port[side],
                            self.port[peer], seq, ack, flags, payload, options)
        return self.cap.add(frame)

    # -- conveniences --------------------------------------------------------
    def handshake(self):
        self.pkt("c", SYN, options=tcp_options_syn(self.host["c"].v6))
        self.pkt("s", SYN | ACK, options=tcp_options_syn(self.host["s"].v6))
        self.pkt("c", ACK)

    def send(self, side, data) -> int:
        if isinstance(data, str):
            data = data.encode("latin-1")
        return self.pkt(side, PSH | ACK, data)

    def ack(self, side, **kw) -> int:
        return self.pkt(side, ACK, **kw)

    def close(self, first: str):
        self.pkt(first, FIN | ACK)
        self.pkt(other(first), FIN | ACK)
        self.pkt(first, ACK)

    def rel(self, side: str, seq: int) -> int:
        return (seq - self.isn[side]) & M32


class Ftp:
    """An FTP control connection plus the data connections it announces."""

    def __init__(self, cap, client: Host, cport, server: Host, sport=21, label=None,
                 c_isn=None, s_isn=None):
        label = label or cap.name
        self.cap = cap
        self.client, self.server = client, server
        self.ctl = Tcp(cap, client, cport, server, sport,
                       isn_for(label + "/c") if c_isn is None else c_isn,
                       isn_for(label + "/s") if s_isn is None else s_isn)
        self.ndata = 0

    def cmd(self, line: str, reply: str = None, client_ack=True):
        """Client sends a command; the server answers (its reply ACKs the
        command); the client ACKs the reply. Returns (frame, seq) of the command."""
        seq = self.ctl.nxt["c"]
        f = self.ctl.send("c", line)
        if reply is not None:
            self.ctl.send("s", reply)
            if client_ack:
                self.ctl.ack("c")
        return f, seq

    def reply(self, text: str, client_ack=True):
        seq = self.ctl.nxt["s"]
        f = self.ctl.send("s", text)
        if client_ack:
            self.ctl.ack("c")
        return f, seq

    def login(self, type_i=True, banner=True):
        self.ctl.handshake()
        if banner:
            self.reply("220 (vsFTPd 3.0.3)\r\n")
        self.cmd("USER anonymous\r\n", "331 Please specify the password.\r\n")
        self.cmd("PASS anonymous@\r\n", "230 Login successful.\r\n")
        if type_i:
            self.cmd("TYPE I\r\n", "200 Switching to Binary mode.\r\n")

    def quit(self):
        self.cmd("QUIT\r\n", "221 Goodbye.\r\n", client_ack=False)
        self.ctl.close("s")

    def data(self, opener: Host, oport: int, acceptor: Host, aport: int,
             payload: bytes, sender_is_opener: bool) -> int:
        """A whole data connection. Returns the frame number of its SYN."""
        self.ndata += 1
        lab = "%s/data%d" % (self.cap.name, self.ndata)
        d = Tcp(self.cap, opener, oport, acceptor, aport, isn_for(lab + "/o"),
                isn_for(lab + "/a"))
        syn = len(self.cap.frames) + 1
        d.handshake()
        snd = "c" if sender_is_opener else "s"
        d.send(snd, payload)
        d.ack(other(snd))
        d.close(snd)
        return syn

    def active(self, dport: int, payload: bytes, sport=20, upload=False) -> int:
        """Server opens the data connection to the client (PORT/EPRT)."""
        return self.data(self.server, sport, self.client, dport, payload, upload)

    def passive(self, sport: int, dport: int, payload: bytes, upload=False) -> int:
        """Client opens the data connection to the server (PASV/EPSV)."""
        return self.data(self.client, sport, self.server, dport, payload, upload)

    def list_passive(self, cport: int, sport: int) -> int:
        """LIST, data connection from the client's cport to the server's
        announced sport, then 150 and 226."""
        self.cmd("LIST\r\n")
        syn = self.passive(cport, sport, LISTING)
        self.reply("150 Here comes the directory listing.\r\n")
        self.reply("226 Directory send OK.\r\n")
        return syn

    def list_active(self, dport: int, sport=20) -> int:
        """LIST, 150, data connection from the server to dport, 226."""
        self.cmd("LIST\r\n", "150 Here comes the directory listing.\r\n")
        syn = self.active(dport, LISTING, sport=sport)
        self.reply("226 Directory send OK.\r\n")
        return syn


LISTING = (b"-rw-r--r--    1 0        0              12 Nov 14  2023 file\r\n"
           b"drwxr-xr-x    2 0        0            4096 Nov 14  2023 pub\r\n")
FILE = b"hello world\n"


def v4_hosts():
    return Host("192.0.2.10", MAC_CLIENT, 64), Host("198.51.100.20", MAC_GW_INSIDE, 63)


def v6_hosts():
    return (Host("2001:db8:1::10", MAC_CLIENT, 64),
            Host("2001:db8:2::20", MAC_GW_INSIDE, 63))


def seqnote(ftp: Ftp, side: str, seq: int) -> str:
    return "seq %d (relative %d)" % (seq, ftp.ctl.rel(side, seq))


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------

PORT_LINE = "PORT 192,0,2,10,156,64\r\n"  # 192.0.2.10 port 40000 (156*256+64)
PORT_OK = "200 PORT command successful. Consider using PASV.\r\n"


def sc_split_port(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login()
    p1, p2 = "PORT 192,0,2", ",10,156,64\r\n"
    s1 = f.ctl.nxt["c"]
    n1 = f.ctl.send("c", p1)
    n2 = f.ctl.send("c", p2)
    na = f.ctl.ack("s")
    f.reply(PORT_OK)
    cap.note("frame %d: client `PORT 192,0,2` (12 bytes), %s" % (n1, seqnote(f, "c", s1)))
    cap.note("frame %d: client `,10,156,64\\r\\n` (12 bytes), %s" % (n2, seqnote(f, "c", s1 + 12)))
    cap.note("frame %d: server pure ACK, ack %d (covers both halves)" % (na, (s1 + 24) & M32))
    syn = f.list_active(40000)
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:40000" % syn)
    f.quit()


def sc_split_port_retrans(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login()
    p1, p2 = b"PORT 192,0,2", b",10,156,64\r\n"
    s1 = f.ctl.reserve("c", p1)
    s2 = f.ctl.reserve("c", p2)
    n1 = f.ctl.pkt("c", PSH | ACK, p1, seq=s1)
    n2 = f.ctl.pkt("c", PSH | ACK, p2, seq=s2)
    cap.gap(200)
    n3 = f.ctl.pkt("c", PSH | ACK, p1, seq=s1)
    na = f.ctl.ack("s")
    f.reply(PORT_OK)
    cap.note("frame %d: client `PORT 192,0,2` (12 bytes), %s" % (n1, seqnote(f, "c", s1)))
    cap.note("frame %d: client `,10,156,64\\r\\n` (12 bytes), %s" % (n2, seqnote(f, "c", s2)))
    cap.note("frame %d (+200 ms): retransmission of the first half alone: `PORT 192,0,2`, "
             "%s, same bytes" % (n3, seqnote(f, "c", s1)))
    cap.note("frame %d: server pure ACK, ack %d (covers both halves)" % (na, (s1 + 24) & M32))
    syn = f.list_active(40000)
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:40000" % syn)
    f.quit()


def sc_pipelined(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login(type_i=False)
    req = "TYPE I\r\nPORT 192,0,2,10,156,64\r\nRETR file\r\n"
    rep = ("200 Switching to Binary mode.\r\n" + PORT_OK +
           "150 Opening BINARY mode data connection for file (12 bytes).\r\n")
    n1, s1 = f.cmd(req, rep)
    cap.note("frame %d: one client segment of %d bytes with three commands, %s; "
             "`PORT` starts at byte offset 8 of the payload" % (n1, len(req), seqnote(f, "c", s1)))
    cap.note("frame %d: one server segment with the three replies (200, 200, 150)" % (n1 + 1))
    syn = f.active(40000, FILE)
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:40000 (RETR, 12 bytes)" % syn)
    f.reply("226 Transfer complete.\r\n")
    f.quit()


def sc_retrans_port(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login()
    line = PORT_LINE.encode()
    s1 = f.ctl.reserve("c", line)
    n1 = f.ctl.pkt("c", PSH | ACK, line, seq=s1)
    cap.gap(200)
    n2 = f.ctl.pkt("c", PSH | ACK, line, seq=s1)
    na = f.ctl.ack("s")
    f.reply(PORT_OK)
    cap.note("frame %d: client `%s` (%d bytes), %s"
             % (n1, PORT_LINE.strip(), len(line), seqnote(f, "c", s1)))
    cap.note("frame %d (+200 ms): exact retransmission, same seq, same bytes, same ack" % n2)
    cap.note("frame %d: server pure ACK, ack %d" % (na, (s1 + len(line)) & M32))
    syn = f.list_active(40000)
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:40000" % syn)
    f.quit()


def sc_ooo_port(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login(type_i=False)
    a, b = b"TYPE I\r\n", PORT_LINE.encode()
    sa = f.ctl.reserve("c", a)
    sb = f.ctl.reserve("c", b)
    nb = f.ctl.pkt("c", PSH | ACK, b, seq=sb)
    na = f.ctl.pkt("c", PSH | ACK, a, seq=sa)
    # The server only got A (the out-of-order B did not reach it): it answers A
    # and acknowledges up to the end of A.
    nr = f.ctl.pkt("s", PSH | ACK, b"200 Switching to Binary mode.\r\n", ack=(sa + len(a)) & M32)
    f.ctl.ack("c")
    cap.gap(200)
    nb2 = f.ctl.pkt("c", PSH | ACK, b, seq=sb)
    f.reply(PORT_OK)
    cap.note("frame %d: segment B `%s` (%d bytes) first, %s (a hole of 8 bytes before it)"
             % (nb, PORT_LINE.strip(), len(b), seqnote(f, "c", sb)))
    cap.note("frame %d: segment A `TYPE I\\r\\n` (8 bytes), %s" % (na, seqnote(f, "c", sa)))
    cap.note("frame %d: server `200 Switching to Binary mode.` with ack %d (end of A only: "
             "the server never received the first B)" % (nr, (sa + len(a)) & M32))
    cap.note("frame %d (+200 ms): client retransmits B, %s, same bytes; the server's next "
             "segment acks %d" % (nb2, seqnote(f, "c", sb), (sb + len(b)) & M32))
    syn = f.list_active(40000)
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:40000" % syn)
    f.quit()


def sc_overlong(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login()
    seg1 = "SITE " + "A" * 495 + ",192,0,2,10,1,2" + "A" * 485
    assert len(seg1) == 1000
    tail = "\r\n"
    seg2 = "PORT 192,0,2,10,1,2 " + "A" * (1000 - 20 - len(tail)) + tail
    assert len(seg2) == 1000
    s1 = f.ctl.nxt["c"]
    n1 = f.ctl.send("c", seg1)
    n2 = f.ctl.send("c", seg2)
    na = f.ctl.ack("s")
    f.reply("500 Unknown SITE command.\r\n")
    n3, s3 = f.cmd(PORT_LINE, PORT_OK)
    cap.note("frame %d: first 1000 bytes of a 2000-byte line (`SITE AAA...`), %s; "
             "`,192,0,2,10,1,2` at payload offset 500" % (n1, seqnote(f, "c", s1)))
    cap.note("frame %d: last 1000 bytes, %s; this segment *begins* with "
             "`PORT 192,0,2,10,1,2 ` although it is the middle of the SITE line; the line "
             "ends with `\\r\\n` at the end of this segment" % (n2, seqnote(f, "c", s1 + 1000)))
    cap.note("frame %d: server pure ACK of both (ack %d), then `500`" % (na, (s1 + 2000) & M32))
    cap.note("frame %d: normal `%s`, %s" % (n3, PORT_LINE.strip(), seqnote(f, "c", s3)))
    syn = f.list_active(40000)
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:40000" % syn)
    f.quit()


def sc_bounce_thirdparty(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login()
    n, sq = f.cmd("PORT 203,0,113,5,0,25\r\n", PORT_OK)
    cap.note("frame %d: `PORT 203,0,113,5,0,25` (%s); the server (naively) answers 200"
             % (n, seqnote(f, "c", sq)))
    f.cmd("NOOP\r\n", "200 NOOP ok.\r\n")
    f.quit()


def sc_bounce_port25(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login()
    n, sq = f.cmd("PORT 192,0,2,10,0,25\r\n", PORT_OK)
    cap.note("frame %d: `PORT 192,0,2,10,0,25` (%s); the server answers 200"
             % (n, seqnote(f, "c", sq)))
    f.cmd("NOOP\r\n", "200 NOOP ok.\r\n")
    f.quit()


def sc_malformed(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login()
    bad = [("PORT 192,0,2,300,1,2\r\n", "501 Illegal PORT command.\r\n"),
           ("PORT 1,2,3\r\n", "501 Illegal PORT command.\r\n"),
           ("EPRT |1|192.0.2.10|0|\r\n", "501 Bad EPRT command.\r\n"),
           ("EPRT |3|x|5|\r\n", "501 Bad EPRT protocol.\r\n")]
    for line, rep in bad:
        n, sq = f.cmd(line, rep)
        cap.note("frame %d: `%s` (%s) -> %s" % (n, line.strip(), seqnote(f, "c", sq), rep[:3]))
    n, sq = f.cmd(PORT_LINE, PORT_OK)
    cap.note("frame %d: valid `%s` (%s) -> 200" % (n, PORT_LINE.strip(), seqnote(f, "c", sq)))
    syn = f.list_active(40000)
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:40000" % syn)
    f.quit()


def opaque(label: str, n: int) -> bytes:
    out, i = b"", 0
    while len(out) < n:
        out += hashlib.sha256(("%s/%d" % (label, i)).encode()).digest()
        i += 1
    return out[:n]


def sc_auth_tls(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.ctl.handshake()
    f.reply("220 (vsFTPd 3.0.3)\r\n")
    n0, _ = f.cmd("AUTH TLS\r\n", "234 Proceed\r\n")
    cap.note("frame %d: `AUTH TLS`, frame %d: `234 Proceed`; everything after is opaque"
             % (n0, n0 + 1))
    # Client "ClientHello": a TLS record header, random bytes, ending with CRLF.
    ch = b"\x16\x03\x01\x00\xb9" + opaque("ch", 180) + b"\r\n"
    f.ctl.send("c", ch)
    # Server "ServerHello...": contains a 227-looking text in the middle, ends with CRLF.
    sh = (b"\x16\x03\x03\x01\x20" + opaque("sh1", 120) + b"\r\n227 (192,0,2,10,1,2)\r\n"
          + opaque("sh2", 150) + b"\r\n")
    n_sh = f.ctl.send("s", sh)
    f.ctl.ack("c")
    # Client record that *starts* with a PORT line (previous client segment ended in CRLF).
    c2 = b"PORT 192,0,2,10,1,2\r\n" + opaque("c2", 64)
    s_c2 = f.ctl.nxt["c"]
    n_c2 = f.ctl.send("c", c2)
    # Server record that *starts* with a 227 line (previous server segment ended in CRLF).
    s2 = b"227 (192,0,2,10,1,2)\r\n" + opaque("s2", 48)
    n_s2 = f.ctl.send("s", s2)
    f.ctl.ack("c")
    f.ctl.send("c", b"\x17\x03\x03\x00\x1a" + opaque("quit", 26))
    f.ctl.send("s", b"\x17\x03\x03\x00\x1f" + opaque("221", 31))
    f.ctl.send("s", b"\x15\x03\x03\x00\x1a" + opaque("alert", 26))
    f.ctl.close("s")
    cap.note("frame %d: server binary record with `\\r\\n227 (192,0,2,10,1,2)\\r\\n` inside"
             % n_sh)
    cap.note("frame %d: client segment beginning with `PORT 192,0,2,10,1,2\\r\\n`, %s "
             "(the previous client segment ended with \\r\\n)" % (n_c2, seqnote(f, "c", s_c2)))
    cap.note("frame %d: server segment beginning with `227 (192,0,2,10,1,2)\\r\\n`" % n_s2)


def sc_pasv_227_variants(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login()
    replies = ["227 Entering Passive Mode (198,51,100,20,195,80).\r\n",
               "227 =198,51,100,20,195,81\r\n",
               "227 Entering Passive Mode 198,51,100,20,195,82\r\n"]
    for i, rep in enumerate(replies):
        port = 50000 + i
        n, _ = f.cmd("PASV\r\n", rep)
        syn = f.list_passive(40001 + i, port)
        cap.note("frame %d: `%s`; frame %d: data SYN 192.0.2.10:%d -> 198.51.100.20:%d"
                 % (n + 1, rep.strip(), syn, 40001 + i, port))
    f.quit()


def sc_eprt_v6(cap):
    c, s = v6_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login()
    n, sq = f.cmd("EPRT |2|2001:db8:1::10|40100|\r\n", "200 EPRT command successful. "
                  "Consider using EPSV.\r\n")
    cap.note("frame %d: `EPRT |2|2001:db8:1::10|40100|` (%s)" % (n, seqnote(f, "c", sq)))
    syn = f.list_active(40100)
    cap.note("frame %d: data SYN [2001:db8:2::20]:20 -> [2001:db8:1::10]:40100" % syn)
    f.quit()


def sc_epsv_v6(cap):
    c, s = v6_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login()
    n, _ = f.cmd("EPSV\r\n", "229 Entering Extended Passive Mode (|||40200|)\r\n")
    syn = f.list_passive(40001, 40200)
    cap.note("frame %d: `229 Entering Extended Passive Mode (|||40200|)`" % (n + 1))
    cap.note("frame %d: data SYN [2001:db8:1::10]:40001 -> [2001:db8:2::20]:40200" % syn)
    f.quit()


def sc_eprt_odd_delim(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login()
    n, sq = f.cmd("EPRT !1!192.0.2.10!40300!\r\n", "200 EPRT command successful. "
                  "Consider using EPSV.\r\n")
    cap.note("frame %d: `EPRT !1!192.0.2.10!40300!` (%s)" % (n, seqnote(f, "c", sq)))
    syn = f.list_active(40300)
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:40300" % syn)
    n, sq = f.cmd("port 192,0,2,10,157,200\r\n", PORT_OK)
    cap.note("frame %d: lowercase `port 192,0,2,10,157,200` (port 40392) (%s)"
             % (n, seqnote(f, "c", sq)))
    syn = f.list_active(40392)
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:40392" % syn)
    f.quit()


def sc_several_rewrites(cap):
    c, s = v4_hosts()
    # Client ISN chosen so that the client's sequence numbers wrap past 2^32
    # inside the SACK episode: the lost `PWD\r\n` occupies 0xFFFFFFFD..0x1.
    f = Ftp(cap, c, 40000, s, c_isn=(0xFFFFFFFD - 108) & M32)
    f.login()
    cap.note("client ISN %d (0x%08X): the client's sequence numbers wrap through 0 "
             "inside the lost `PWD\\r\\n` segment (seq 0xFFFFFFFD, 5 bytes, ends at 2)"
             % (f.ctl.isn["c"], f.ctl.isn["c"]))
    # 1st PORT: port 40000
    n, sq = f.cmd("PORT 192,0,2,10,156,64\r\n", PORT_OK)
    cap.note("frame %d: rewrite 1 `PORT 192,0,2,10,156,64` (24 bytes) at %s"
             % (n, seqnote(f, "c", sq)))
    syn = f.list_active(40000)
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:40000" % syn)
    f.cmd("CWD pub\r\n", "250 Directory successfully changed.\r\n")
    # 2nd PORT: port 1793
    n, sq = f.cmd("PORT 192,0,2,10,7,1\r\n", PORT_OK)
    cap.note("frame %d: rewrite 2 `PORT 192,0,2,10,7,1` (21 bytes) at %s"
             % (n, seqnote(f, "c", sq)))
    f.cmd("NLST\r\n", "150 Here comes the directory listing.\r\n")
    syn = f.active(1793, b"file\r\n")
    f.reply("226 Directory send OK.\r\n")
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:1793" % syn)
    # SACK episode: PWD is lost before the gateway, NOOP is seen first.
    x, y = b"PWD\r\n", b"NOOP\r\n"
    sx = f.ctl.reserve("c", x)
    sy = f.ctl.reserve("c", y)
    assert sx == 0xFFFFFFFD and sy == 2, (sx, sy)
    ny = f.ctl.pkt("c", PSH | ACK, y, seq=sy)
    nd = f.ctl.ack("s", ack=sx, options=tcp_option_sack([(sy, sy + len(y))]))
    cap.gap(200)
    nx = f.ctl.pkt("c", PSH | ACK, x, seq=sx)
    nf = f.ctl.ack("s")
    f.reply('257 "/pub" is the current directory\r\n')
    f.reply("200 NOOP ok.\r\n")
    cap.note("frame %d: `NOOP\\r\\n` at %s arrives first (the segment before it, `PWD\\r\\n`, "
             "was lost on the client's LAN)" % (ny, seqnote(f, "c", sy)))
    cap.note("frame %d: server duplicate ACK, ack %d, SACK block %d-%d (left-right, "
             "inside numbering, i.e. already un-shifted)" % (nd, sx, sy, (sy + len(y)) & M32))
    cap.note("frame %d (+200 ms): `PWD\\r\\n` at %s (its only appearance)"
             % (nx, seqnote(f, "c", sx)))
    cap.note("frame %d: server ACK %d covering both" % (nf, (sy + len(y)) & M32))
    # 3rd PORT: port 65535
    n, sq = f.cmd("PORT 192,0,2,10,255,255\r\n", PORT_OK)
    cap.note("frame %d: rewrite 3 `PORT 192,0,2,10,255,255` (25 bytes) at %s"
             % (n, seqnote(f, "c", sq)))
    f.cmd("RETR file\r\n", "150 Opening BINARY mode data connection for file (12 bytes).\r\n")
    syn = f.active(65535, FILE)
    f.reply("226 Transfer complete.\r\n")
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:65535" % syn)
    f.quit()


def sc_dnat_pasv(cap):
    client = Host("198.51.100.10", MAC_GW_INSIDE, 63)
    server = Host("192.0.2.20", MAC_SERVER_IN, 64)
    f = Ftp(cap, client, 40000, server)
    f.login()
    n, _ = f.cmd("PASV\r\n", "227 Entering Passive Mode (192,0,2,20,195,80).\r\n")
    cap.note("frame %d: server `227 Entering Passive Mode (192,0,2,20,195,80).` (48 bytes)"
             % (n + 1))
    syn = f.list_passive(40001, 50000)
    cap.note("frame %d: data SYN 198.51.100.10:40001 -> 192.0.2.20:50000 (inside view, "
             "already DNATed)" % syn)
    n, _ = f.cmd("EPSV\r\n", "229 Entering Extended Passive Mode (|||50001|)\r\n")
    cap.note("frame %d: server `229 Entering Extended Passive Mode (|||50001|)`" % (n + 1))
    syn = f.list_passive(40002, 50001)
    cap.note("frame %d: data SYN 198.51.100.10:40002 -> 192.0.2.20:50001" % syn)
    f.quit()


def sc_fin_then_new(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s, label="fin-then-new/1")
    f.login()
    n, sq = f.cmd(PORT_LINE, PORT_OK)
    cap.note("session 1: frame %d: `%s` (%s)" % (n, PORT_LINE.strip(), seqnote(f, "c", sq)))
    syn = f.list_active(40000)
    cap.note("session 1: frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:40000" % syn)
    f.quit()
    end1 = len(cap.frames)
    cap.note("session 1 ends at frame %d (server FIN, client FIN, server ACK)" % end1)
    cap.gap(1000)
    # New connection, same 4-tuple, new ISNs above the old ones.
    c_isn = (f.ctl.nxt["c"] + 0x01000000) & M32
    g = Ftp(cap, c, 40000, s, label="fin-then-new/2", c_isn=c_isn)
    g.login()
    cap.note("session 2: frame %d (+1 s): new SYN from 192.0.2.10:40000, ISN %d; server ISN %d"
             % (end1 + 1, g.ctl.isn["c"], g.ctl.isn["s"]))
    line = "PORT 192,0,2,10,156,65\r\n"
    n, sq = g.cmd(line, PORT_OK)
    cap.note("session 2: frame %d: `%s` (%s)" % (n, line.strip(), seqnote(g, "c", sq)))
    syn = g.list_active(40001)
    cap.note("session 2: frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:40001" % syn)
    g.quit()


def dnat_ftp(cap):
    client = Host("198.51.100.10", MAC_GW_INSIDE, 63)
    server = Host("192.0.2.20", MAC_SERVER_IN, 64)
    f = Ftp(cap, client, 40000, server)
    f.login()
    return f


FORGED_227 = "227 Entering Passive Mode (192,0,2,20,21,56).\r\n"  # port 5432
FORGED_229 = "229 Entering Extended Passive Mode (|||5433|)\r\n"


def sc_listing_227(cap):
    f = dnat_ftp(cap)
    listing = ("213-Status follows:\r\n"
               "-rw-r--r--    1 14       50              0 Nov 25 12:00 x\r\n"
               + FORGED_227 + FORGED_229 +
               "213 End of status\r\n")
    n, _ = f.cmd("STAT upload\r\n", listing)
    cap.note("frame %d: STAT reply, a multi-line 213 block quoting a file name that holds "
             "`%s` and `%s`" % (n + 1, FORGED_227.strip(), FORGED_229.strip()))
    forged_end = "213-Status follows:\r\n213 x\r\n" + FORGED_227 + "213 End of status\r\n"
    n, _ = f.cmd("STAT upload\r\n", forged_end)
    cap.note("frame %d: a second STAT whose file name also forges the end of the block "
             "(`213 x`), then `%s` as if it were a new reply; no PASV is waiting"
             % (n + 1, FORGED_227.strip()))
    n, _ = f.cmd("PASV\r\n", "227 Entering Passive Mode (192,0,2,20,195,80).\r\n")
    cap.note("frame %d: the real answer to PASV (port 50000)" % (n + 1))
    syn = f.list_passive(40001, 50000)
    cap.note("frame %d: data SYN 198.51.100.10:40001 -> 192.0.2.20:50000" % syn)
    f.quit()


def sc_unsolicited_227(cap):
    f = dnat_ftp(cap)
    n, _ = f.cmd("NOOP\r\n", FORGED_227)
    cap.note("frame %d: `%s` in answer to NOOP" % (n + 1, FORGED_227.strip()))
    n, _ = f.cmd(FORGED_227, "500 Unknown command.\r\n")
    cap.note("frame %d: the client sends `%s` as a command" % (n, FORGED_227.strip()))
    n, _ = f.reply(FORGED_229)
    cap.note("frame %d: `%s` with no command waiting" % (n, FORGED_229.strip()))
    n, _ = f.cmd("EPSV\r\n", "229 Entering Extended Passive Mode (|||50001|)\r\n")
    cap.note("frame %d: the real answer to EPSV (port 50001)" % (n + 1))
    syn = f.list_passive(40002, 50001)
    cap.note("frame %d: data SYN 198.51.100.10:40002 -> 192.0.2.20:50001" % syn)
    f.quit()


MANY_PORTS = 40


def sc_many_pipelined_ports(cap):
    c, s = v4_hosts()
    f = Ftp(cap, c, 40000, s)
    f.login()
    lines = "".join("PORT 192,0,2,10,%d,%d\r\n" % (160 + i // 256, i % 256)
                    for i in range(MANY_PORTS))
    # The 40 replies in two segments: one would exceed the client's MSS.
    half = MANY_PORTS // 2
    n, sq = f.cmd(lines, PORT_OK * half, client_ack=False)
    f.reply(PORT_OK * (MANY_PORTS - half))
    cap.note("frame %d: one client segment with %d PORT lines (ports 40960..%d), %s"
             % (n, MANY_PORTS, 40960 + MANY_PORTS - 1, seqnote(f, "c", sq)))
    n, _ = f.cmd("NOOP\r\n", "200 NOOP ok.\r\n")
    cap.note("frame %d: NOOP after them" % n)
    syn = f.list_active(40960 + MANY_PORTS - 1)
    cap.note("frame %d: data SYN 198.51.100.20:20 -> 192.0.2.10:%d (the last PORT)"
             % (syn, 40960 + MANY_PORTS - 1))
    f.quit()


# --------------------------------------------------------------------------
# Scenario table: name, builder, replay args, description, expected behaviour
# --------------------------------------------------------------------------

SCENARIOS = [
    ("split-port", sc_split_port, SNAT4,
     "`PORT 192,0,2,10,156,64\\r\\n` sent in two segments back to back: `PORT 192,0,2` "
     "then `,10,156,64\\r\\n`; the server ACKs both at once and answers 200; LIST over an "
     "active data connection from 198.51.100.20:20 to 192.0.2.10:40000.",
     "The PORT line is rewritten exactly once, to `PORT 198,51,100,1,156,64\\r\\n` (+2 bytes, "
     "26 bytes instead of 24), only once the whole line is known: never act on half a line, "
     "never send a half-rewritten line. Part 1 cannot be forwarded as it is (its `192,0,2` "
     "must change) and this file has no retransmission, so a drop-and-wait-for-retransmit "
     "engine cannot complete it: part 1 has to be held until part 2 completes the line, then "
     "both released carrying the rewritten text (the server's ACK in the capture covers both "
     "halves, as after such a release). One expectation (198.51.100.20 -> 198.51.100.1:40000, "
     "DNAT back to 192.0.2.10:40000); the data SYN matches it. Client sequence numbers after "
     "the line are +2 on the outside; the server ACKs in this file are already in inside "
     "numbering."),
    ("split-port-retrans", sc_split_port_retrans, SNAT4,
     "Same split as split-port, then 200 ms later the client retransmits the first half "
     "(`PORT 192,0,2`, same seq, same 12 bytes) alone, as if it had been lost; then the "
     "server ACKs everything and answers 200; LIST over an active data connection.",
     "Same outcome as split-port: the server receives one `PORT 198,51,100,1,156,64\\r\\n`, "
     "one expectation, one +2 shift. The retransmitted first half must be rewritten "
     "consistently with what was already sent for that sequence range (identical bytes for "
     "identical outside sequence numbers; no second expectation, no second shift). The kernel "
     "helper drops a segment holding a partial command, so a retransmission of only that part "
     "would be dropped again and again (drop loop): ftpct must not do that; it has seen part 2 "
     "and can complete the line."),
    ("pipelined", sc_pipelined, SNAT4,
     "One client segment carries `TYPE I\\r\\nPORT 192,0,2,10,156,64\\r\\nRETR file\\r\\n`; the "
     "server answers 200, 200, 150 in one segment; active data connection (12-byte file); "
     "226.",
     "The PORT line in the middle of the segment (byte offset 8) is found and rewritten "
     "(+2 bytes; the segment grows from 43 to 45 bytes); the other two lines pass unchanged. "
     "One expectation for 192.0.2.10:40000. The kernel helper would only look at the start of "
     "the segment and miss it."),
    ("retrans-port", sc_retrans_port, SNAT4,
     "A whole `PORT 192,0,2,10,156,64\\r\\n` segment, then an exact retransmission (same seq, "
     "same bytes) 200 ms later, before the server's ACK; then ACK and 200; LIST.",
     "Both copies are rewritten identically (`PORT 198,51,100,1,156,64\\r\\n`, same outside "
     "seq); the shift is recorded once (+2, not +4); a single expectation (the retransmission "
     "may refresh it, not duplicate it)."),
    ("ooo-port", sc_ooo_port, SNAT4,
     "The client sends `TYPE I\\r\\n` (A) then `PORT 192,0,2,10,156,64\\r\\n` (B) pipelined; the "
     "capture shows B first (a hole of 8 bytes before it), then A. The server only got A "
     "(it answers 200 for TYPE and acks the end of A); 200 ms later the client retransmits B, "
     "the server acks it and answers 200; LIST.",
     "B must not be parsed before A is known (a line may only start after the preceding "
     "bytes are seen), and it must not reach the server with the private address. The capture "
     "follows a gateway that drops the out-of-order B (the server's frame-14 reply ACKs the "
     "end of A only) and rewrites B when the client retransmits it in order (frame 16). An "
     "engine that instead holds B and releases it rewritten once A has passed is also "
     "correct, and must then rewrite the retransmission identically. Either way: exactly one "
     "rewrite (+2 bytes from B's sequence number), one expectation, A unchanged."),
    ("overlong", sc_overlong, SNAT4,
     "A 2000-byte client line `SITE AAA...` split into two 1000-byte segments. The first "
     "contains `,192,0,2,10,1,2`; the second *begins* with `PORT 192,0,2,10,1,2 ` (text "
     "in the middle of the SITE line that looks like a command at a segment start). Server: "
     "500. Then a normal `PORT 192,0,2,10,156,64\\r\\n` -> 200; LIST.",
     "Nothing inside the overlong line is acted on (no rewrite, no expectation for port 258); "
     "the engine discards (or caps) the overlong line without losing sync and resumes at the "
     "next line start: the following normal PORT is rewritten (+2) and expected "
     "(192.0.2.10:40000)."),
    ("bounce-thirdparty", sc_bounce_thirdparty, SNAT4,
     "`PORT 203,0,113,5,0,25\\r\\n`: a third-party host and port 25 (classic bounce attack); "
     "the server answers 200; NOOP; QUIT. No data connection.",
     "Refused: the address is not the sender's (and port 25 is privileged). No expectation, "
     "not rewritten, no sequence shift; the refusal is logged."),
    ("bounce-port25", sc_bounce_port25, SNAT4,
     "`PORT 192,0,2,10,0,25\\r\\n`: the client's own address but privileged port 25; the "
     "server answers 200; NOOP; QUIT. No data connection.",
     "Refused by default (privileged data port): no expectation, not rewritten, no shift. "
     "(The kernel helper would accept it.)"),
    ("malformed", sc_malformed, SNAT4,
     "`PORT 192,0,2,300,1,2`, `PORT 1,2,3`, `EPRT |1|192.0.2.10|0|`, `EPRT |3|x|5|` each "
     "answered 501, then a valid `PORT 192,0,2,10,156,64` -> 200 and LIST.",
     "The four malformed commands are not rewritten and create no expectation (out-of-range "
     "octet, too few numbers, port 0, unknown protocol family). The engine stays in sync and "
     "rewrites the valid PORT (+2), one expectation for 192.0.2.10:40000."),
    ("auth-tls", sc_auth_tls, SNAT4,
     "Banner, `AUTH TLS` -> `234 Proceed`, then opaque binary records both ways (no "
     "cleartext login). They contain text lookalikes: a client segment that begins with "
     "`PORT 192,0,2,10,1,2\\r\\n` right after a segment ending in CRLF, and server segments "
     "containing / beginning with `227 (192,0,2,10,1,2)`. Ends with FINs.",
     "Inspection stops after the 234 reply (the engine says so); nothing after it is parsed, "
     "rewritten or expected; no sequence shift ever happens on this connection."),
    ("pasv-227-variants", sc_pasv_227_variants, SNAT4,
     "Three PASV; replies `227 Entering Passive Mode (198,51,100,20,195,80).`, "
     "`227 =198,51,100,20,195,81`, `227 Entering Passive Mode 198,51,100,20,195,82`; after each, "
     "the client opens a data connection from 192.0.2.10:4000{1,2,3} to 198.51.100.20:5000{0,1,2} "
     "and LISTs.",
     "All three 227 forms are parsed (kernel leniency: digits anywhere after `227 `). The "
     "server is outside and the address is its own, so nothing is rewritten (no shift); three "
     "expectations for 198.51.100.20:50000/50001/50002 from the client, each matched by its "
     "data SYN (the data connection is SNATed like the control one)."),
    ("eprt-v6", sc_eprt_v6, SNAT6,
     "IPv6. `EPRT |2|2001:db8:1::10|40100|` -> 200; LIST over a data connection from "
     "[2001:db8:2::20]:20 to [2001:db8:1::10]:40100.",
     "Rewritten to `EPRT |2|2001:db8:2::1|40100|\\r\\n` (RFC 5952 form, 1 byte shorter: shift "
     "-1). One expectation: from 2001:db8:2::20 to [2001:db8:2::1]:40100, DNAT back to "
     "[2001:db8:1::10]:40100; the data SYN matches it."),
    ("epsv-v6", sc_epsv_v6, SNAT6,
     "IPv6. `EPSV` -> `229 Entering Extended Passive Mode (|||40200|)`; the client opens a "
     "data connection from [2001:db8:1::10]:40001 to [2001:db8:2::20]:40200; LIST.",
     "Nothing to rewrite (229 carries no address); one expectation for "
     "[2001:db8:2::20]:40200 from the client, matched by the data SYN."),
    ("eprt-odd-delim", sc_eprt_odd_delim, SNAT4,
     "`EPRT !1!192.0.2.10!40300!` (delimiter `!`) -> 200, LIST to 192.0.2.10:40300; then "
     "lowercase `port 192,0,2,10,157,200` (port 40392) -> 200, LIST to 192.0.2.10:40392.",
     "Both are recognised (any delimiter in the 33-126 range; commands are case-insensitive). "
     "EPRT is rewritten keeping its delimiter: `EPRT !1!198.51.100.1!40300!` (+2); then "
     "`port ...` is rewritten to `PORT 198,51,100,1,157,200` or `port 198,51,100,1,157,200` "
     "(+2, cumulative +4). Two expectations, each matched by its data SYN."),
    ("several-rewrites", sc_several_rewrites, SNAT4,
     "Three PORT commands for 192.0.2.10 with ports 156,64 (40000), 7,1 (1793), 255,255 "
     "(65535), each followed by 200 and a short active transfer (LIST, NLST, RETR), with other "
     "commands in between (CWD pub, PWD, NOOP). Between the 2nd and the 3rd PORT, `PWD\\r\\n` "
     "is lost on the client side: the capture shows `NOOP\\r\\n` first, the server's duplicate "
     "ACK with a SACK block (option kind 5) for it, then (200 ms later) `PWD\\r\\n`. The "
     "client's ISN is 0xFFFFFF91, so its sequence numbers wrap through 0 inside that "
     "lost PWD segment (it starts at 0xFFFFFFFD; NOOP is at 2; the SACK block is 2-8 with "
     "ack 4294967293).",
     "Three rewrites of +2 each: the outside client sequence numbers are +2 after the first, "
     "+4 after the second, +6 after the third; every later client segment is shifted by the "
     "right amount, including the out-of-order NOOP and the late PWD (both after rewrite 2: "
     "+4), and ACK/SACK numbers coming back from the server are un-shifted (in this inside "
     "capture they appear already un-shifted). Sequence comparisons must be modulo 2^32. "
     "Three expectations (ports 40000, 1793, 65535)."),
    ("dnat-pasv", sc_dnat_pasv, DNAT4,
     "DNAT, captured on the inside: server 192.0.2.20:21 inside, client 198.51.100.10:40000 "
     "outside (the gateway publishes the server as 198.51.100.1). The server answers PASV "
     "with `227 Entering Passive Mode (192,0,2,20,195,80).` and EPSV with "
     "`229 Entering Extended Passive Mode (|||50001|)`; the client connects 198.51.100.10:40001 "
     "-> 192.0.2.20:50000 and 198.51.100.10:40002 -> 192.0.2.20:50001 (already DNATed).",
     "The 227 is rewritten to `227 Entering Passive Mode (198,51,100,1,195,80).` (+2 in the "
     "server->client direction; the client's ACKs are un-shifted); the 229 is not rewritten "
     "(no address). Two expectations: from 198.51.100.10 to 198.51.100.1:50000 and :50001, "
     "DNATed to 192.0.2.20:50000/50001; both data SYNs match."),
    ("fin-then-new", sc_fin_then_new, SNAT4,
     "Session 1: login, `PORT 192,0,2,10,156,64` -> 200, LIST, QUIT, FIN exchange. 1 s later "
     "session 2 reuses the same 4-tuple (192.0.2.10:40000 -> 198.51.100.20:21) with new, "
     "higher ISNs: login, `PORT 192,0,2,10,156,65` -> 200, LIST (to port 40001), QUIT, FINs.",
     "Session 1's PORT is rewritten (+2). After the FIN exchange the flow (and its sequence "
     "offsets) is removed, so session 2 starts with no shift: its first segments are passed "
     "without adjustment, and its own PORT gets its own +2 from its own sequence number. "
     "Exactly one expectation per session."),
    ("listing-227", sc_listing_227, DNAT4,
     "DNAT, inside view (as dnat-pasv). `STAT upload` is answered by a multi-line 213 block "
     "that quotes a file name holding newlines: its lines include `227 Entering Passive Mode "
     "(192,0,2,20,21,56).` (port 5432) and `229 Entering Extended Passive Mode (|||5433|)`. A "
     "second STAT's block also quotes a forged block end (`213 x`) before the 227. Then a real "
     "PASV -> 227 (port 50000) and LIST over it.",
     "Nothing inside a multi-line reply is an announcement, and a 227 counts only as the "
     "answer to a PASV still waiting for it: the quoted 227/229 lines (and the 227 after the "
     "forged end, which answers no PASV) are refused as unsolicited and counted, no "
     "expectation for 5432/5433; the real 227 is rewritten and expected, its SYN matched. "
     "(The kernel helper parses a 227 at any segment start after a newline.)"),
    ("unsolicited-227", sc_unsolicited_227, DNAT4,
     "DNAT, inside view. The server answers NOOP with a 227 naming port 5432; the client "
     "sends that 227 line as a command (500); the server sends a 229 (port 5433) with no "
     "command waiting; then a real EPSV -> 229 (port 50001) and LIST over it.",
     "Only the real 229 gets an expectation; the 227 answering NOOP and the 229 that answers "
     "nothing are refused as unsolicited; the client's 227 line is no announcement at all."),
    ("many-pipelined-ports", sc_many_pipelined_ports, SNAT4,
     "40 PORT lines for 192.0.2.10 (ports 40960..40999) in one client segment; the server "
     "answers 40 times 200 in two segments of 20 (one would exceed the client's MSS); NOOP; "
     "LIST to the last port.",
     "Every line is rewritten (+2 each, +80 in all, the segment grows by 80 bytes) and the "
     "sequence numbers of later segments are right: 40 edits in flight, more than a fixed "
     "history would hold. At most 16 expectations stay (the session limit: the oldest make "
     "room); the last one is matched by the data SYN."),
]


README_HEAD = """# Crafted FTP captures

Generated by `scripts/craft-pcaps.py` (Python standard library only). Do not edit
the `.pcap` files or this README by hand: change the script and run

    python3 scripts/craft-pcaps.py --verify

The output is deterministic (byte-identical on every run).

## Conventions common to every file

* Classic pcap, LINKTYPE_ETHERNET (1), microsecond timestamps. The first frame is
  at 1700000000.001000 and each frame is 1 ms after the previous one, except where
  a scenario says `+200 ms` / `+1 s`.
* Every capture is what the gateway sees on its **inside** interface. For SNAT
  that is the client side: the client's packets are before NAT (source
  192.0.2.10, addresses in PORT/EPRT not yet rewritten); the server's packets
  are after the gateway's processing (destination already de-NATed to
  192.0.2.10, ACK and SACK numbers already in the client's original numbering,
  i.e. already un-shifted). A data connection that the server opens towards an
  announced PORT/EPRT therefore appears already de-NATed, towards 192.0.2.10.
* Default addresses (IPv4, SNAT): client 192.0.2.10:40000 (MAC 02:00:00:00:c0:0a),
  server 198.51.100.20:21 behind the gateway's inside MAC 02:00:00:00:00:01.
  Replay with `--snat 192.0.2.0/24=198.51.100.1`.
  IPv6: client 2001:db8:1::10, server 2001:db8:2::20, replay with
  `--snat 2001:db8:1::/64=2001:db8:2::1`.
  DNAT (dnat-pasv): server 192.0.2.20:21 (MAC 02:00:00:00:c0:14), client
  198.51.100.10:40000 behind the gateway MAC; replay with `--dnat 198.51.100.1=192.0.2.20`.
* Inside hosts send with TTL/hop limit 64, outside ones arrive with 63. IPv4 DF set.
* The control connection: 3-way handshake (SYN options MSS, SACK-permitted), banner
  `220 (vsFTPd 3.0.3)`, `USER anonymous`/331, `PASS anonymous@`/230, `TYPE I`/200
  (unless the scenario sends TYPE itself), the scenario, `QUIT`/221, then the server
  closes: server FIN, client FIN, server ACK.
  Each command is answered by a reply segment that ACKs it, and the client ACKs
  each reply with a pure ACK (except 221, acked by its FIN).
* Active data connections (PORT/EPRT) come from the server's port 20; passive ones
  from client ports 40001, 40002, ... Each is SYN, SYN-ACK, ACK, one data segment,
  ACK, FIN, FIN, ACK. The data sender closes first.
* Note: `PORT 192,0,2,10,156,64` announces port 40000, the same port number as the
  client's control port (RFC 959's default data port is the control port too); the
  data connection's tuple differs only by the server port (20, not 21). An
  expectation keyed on (address, port) alone would also match the control
  connection's packets from 198.51.100.20:21.
* Sequence numbers below are absolute, with the value relative to the sender's ISN
  in parentheses (as `tcpdump -S` vs plain `tcpdump` show them). Frame numbers are
  1-based, as tcpdump/Wireshark count them.
* The `Replay:` lines assume `ftpct replay FILE` with `--snat`/`--dnat` as in the
  project brief; adapt them if the CLI spells them differently.
* A replay that feeds the server's packets to the engine as if they came from the
  outside must first put them in outside form (destination 198.51.100.1, ACK/SACK
  in the rewritten numbering); this capture shows them as they leave the gateway.
"""


def render_readme(results) -> str:
    out = [README_HEAD]
    for (name, _, replay, desc, expect), cap in results:
        out.append("\n## %s.pcap\n\n" % name)
        out.append("Replay: `ftpct replay pcaps/crafted/%s.pcap %s`\n\n" % (name, replay))
        out.append("What is in it: %s\n\n" % desc)
        out.append("What a correct FTP helper does: %s\n\n" % expect)
        out.append("Key frames (%d frames in all):\n\n" % len(cap.frames))
        for n in cap.notes:
            out.append("* %s\n" % n)
    return "".join(out)


# --------------------------------------------------------------------------
# Verification: re-read the files, check checksums and seq/ack consistency
# --------------------------------------------------------------------------

def read_pcap(path):
    data = open(path, "rb").read()
    magic, vmaj, vmin, _, _, _, link = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xA1B2C3D4 and (vmaj, vmin) == (2, 4) and link == 1, path
    off, frames = 24, []
    while off < len(data):
        sec, usec, incl, orig = struct.unpack("<IIII", data[off:off + 16])
        assert incl == orig
        frames.append((sec * 1_000_000 + usec, data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return frames


def parse(frame):
    et = struct.unpack("!H", frame[12:14])[0]
    ip = frame[14:]
    if et == 0x0800:
        ihl = (ip[0] & 0xF) * 4
        assert inet_csum(ip[:ihl]) == 0, "bad IPv4 header checksum"
        tot = struct.unpack("!H", ip[2:4])[0]
        assert tot == len(ip)
        src, dst, tcp = ip[12:16], ip[16:20], ip[ihl:tot]
        pseudo = struct.pack("!4s4sxBH", src, dst, 6, len(tcp))
    elif et == 0x86DD:
        plen = struct.unpack("!H", ip[4:6])[0]
        assert ip[6] == 6 and plen == len(ip) - 40
        src, dst, tcp = ip[8:24], ip[24:40], ip[40:]
        pseudo = struct.pack("!16s16sI3xB", src, dst, len(tcp), 6)
    else:
        raise AssertionError("unexpected ethertype %04x" % et)
    assert inet_csum(pseudo + tcp) == 0, "bad TCP checksum"
    sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", tcp[:14])
    doff = (off >> 4) * 4
    opts, payload = tcp[20:doff], tcp[doff:]
    sack = []
    i = 0
    while i < len(opts):
        k = opts[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        ln = opts[i + 1]
        if k == 5:
            for j in range(i + 2, i + ln, 8):
                sack.append(struct.unpack("!II", opts[j:j + 8]))
        i += ln
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return (a, sport, b, dport), seq, ack, flags, payload, sack


def sdiff(a, b):
    """a - b as a signed 32-bit sequence difference."""
    d = (a - b) & M32
    return d - (1 << 32) if d & 0x80000000 else d


def verify(path):
    frames = read_pcap(path)
    last_t = -1
    flows = {}   # direction key -> dict(isn, max_end, data)
    events = []
    for i, (t, fr) in enumerate(frames, 1):
        assert t > last_t, "%s: timestamps not increasing at %d" % (path, i)
        last_t = t
        key, seq, ack, flags, payload, sack = parse(fr)
        rkey = (key[2], key[3], key[0], key[1])
        if flags & SYN:
            st = flows.get(key)
            if st is not None and not st.get("closed"):
                raise AssertionError("%s:%d SYN on open flow" % (path, i))
            flows[key] = {"isn": seq, "end": (seq + 1) & M32, "fin": False}
            if flags & ACK:
                assert ack == flows[rkey]["end"], "%s:%d SYN-ACK ack" % (path, i)
            continue
        st, peer = flows[key], flows.get(rkey)
        assert flags & ACK, "%s:%d no ACK flag" % (path, i)
        # ACK never beyond what the peer sent, and never goes backwards
        assert sdiff(ack, peer["end"]) <= 0, "%s:%d acks unsent data" % (path, i)
        if "last_ack" in st:
            assert sdiff(ack, st["last_ack"]) >= 0, "%s:%d ack went back" % (path, i)
        st["last_ack"] = ack
        for l, r in sack:
            assert sdiff(l, ack) > 0 and sdiff(r, peer["end"]) <= 0 and sdiff(r, l) > 0
            events.append("frame %d: SACK %d-%d (ack %d)" % (i, l, r, ack))
        ln = len(payload) + (1 if flags & FIN else 0)
        end = (seq + ln) & M32
        if ln:
            d = sdiff(seq, st["end"])
            if d > 0:
                events.append("frame %d: hole of %d bytes before seq %d" % (i, d, seq))
            elif sdiff(end, st["end"]) <= 0:
                events.append("frame %d: old data (retransmission or gap fill) "
                              "seq %d len %d" % (i, seq, ln))
            if sdiff(end, st["end"]) > 0:
                st["end"] = end
        else:
            assert seq == st["end"] or sdiff(seq, st["end"]) <= 0, \
                "%s:%d pure ACK seq %d != %d" % (path, i, seq, st["end"])
        if flags & FIN:
            st["fin"] = True
        if st["fin"] and peer["fin"] and ack == peer["end"] and not ln:
            st["closed"] = peer["closed"] = True
    for key, st in flows.items():
        assert st["fin"], "%s: flow %s not closed" % (path, key)
    return len(frames), events


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "pcaps", "crafted"))
    ap.add_argument("--verify", action="store_true", help="re-read and check the output")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = []
    for sc in SCENARIOS:
        name, builder, replay = sc[0], sc[1], sc[2]
        cap = Capture(name, replay)
        builder(cap)
        with open(os.path.join(args.out, name + ".pcap"), "wb") as fh:
            fh.write(cap.pcap_bytes())
        results.append((sc, cap))
    with open(os.path.join(args.out, "README.md"), "w") as fh:
        fh.write(render_readme(results))
    for (sc, cap) in results:
        path = os.path.join(args.out, sc[0] + ".pcap")
        if args.verify:
            n, events = verify(path)
            print("%-22s %3d frames OK%s" % (sc[0] + ".pcap", n,
                                             "".join("\n    " + e for e in events)))
        else:
            print("wrote %s (%d frames)" % (os.path.relpath(path), len(cap.frames)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
