#!/usr/bin/env python3
"""Fills the conntrack table of the current network namespace, for
the fault suite, tests/lab/faults.py (case 4-ct-full: conntrack table full).

nf_conntrack_max is global on this kernel (read-only outside the initial
namespace), but the count it limits is per namespace: filling one
namespace's table up to the global maximum makes that namespace "full"
without changing any global setting, and leaves the others alone.

The fillers are created over ctnetlink (standard library only), in batches:
ESTABLISHED, ASSURED (so that conntrack's early drop cannot evict them to
make room for a new connection), with a mark of their own and a timeout
(they go by themselves if nobody deletes them). Their tuples are TCP
203.0.113.(1..250):P -> 203.0.113.251:9, P from 1024 on.

Usage (as root, inside the namespace):
  faults_ctfill.py fill [--mark M] [--max N] [--timeout S]
      create fillers until the kernel refuses one (ENOMEM: table full) or N
      were made; prints created=... refused=... count=... max=...
  faults_ctfill.py free COUNT [--first I]
      delete COUNT fillers by tuple (the first ones): makes that much room
  faults_ctfill.py flush [--mark M]
      delete every entry with the fillers' mark (one request)
Exit 0 on success; fill exits 3 when the table did not become full.
"""

import argparse
import errno
import os
import socket
import struct
import sys

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_DELETE = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000

CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_STATUS = 3
CTA_PROTOINFO = 4
CTA_TIMEOUT = 7
CTA_MARK = 8
CTA_MARK_MASK = 21
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_PROTOINFO_TCP = 1
CTA_PROTOINFO_TCP_STATE = 1
TCP_CONNTRACK_ESTABLISHED = 3
IPS_SEEN_REPLY = 1 << 1
IPS_ASSURED = 1 << 2
IPS_CONFIRMED = 1 << 3  # set by the kernel before it reads CTA_STATUS: must be kept

DEFAULT_MARK = 0x0FA11ED
HARD_MAX = 2_000_000
BATCH = 256
NET = bytes([203, 0, 113])
DST = NET + bytes([251])
DPORT = 9


def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def nest(kind, *parts):
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def tuple_attr(kind, src, sport, dst, dport):
    return nest(
        kind,
        nest(CTA_TUPLE_IP, attr(CTA_IP_V4_SRC, src), attr(CTA_IP_V4_DST, dst)),
        nest(
            CTA_TUPLE_PROTO,
            attr(CTA_PROTO_NUM, bytes([socket.IPPROTO_TCP])),
            attr(CTA_PROTO_SRC_PORT, struct.pack("!H", sport)),
            attr(CTA_PROTO_DST_PORT, struct.pack("!H", dport)),
        ),
    )


def filler(i):
    """Original tuple (src, sport) of filler number i."""
    return NET + bytes([1 + i % 250]), 1024 + i // 250


def message(kind, flags, seq, body, family=socket.AF_INET, version=0):
    ty = (NFNL_SUBSYS_CTNETLINK << 8) | kind
    payload = struct.pack("=BBH", family, version, 0) + body
    return struct.pack("=IHHII", 16 + len(payload), ty, NLM_F_REQUEST | flags, seq, 0) + payload


def create_msg(i, mark, timeout, src=None, sport=None):
    if src is None:
        src, sport = filler(i)
    body = (
        tuple_attr(CTA_TUPLE_ORIG, src, sport, DST, DPORT)
        + tuple_attr(CTA_TUPLE_REPLY, DST, DPORT, src, sport)
        + attr(CTA_STATUS, struct.pack("!I", IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED))
        + nest(CTA_PROTOINFO, nest(CTA_PROTOINFO_TCP, attr(CTA_PROTOINFO_TCP_STATE, bytes([TCP_CONNTRACK_ESTABLISHED]))))
        + attr(CTA_TIMEOUT, struct.pack("!I", timeout))
        + attr(CTA_MARK, struct.pack("!I", mark))
    )
    return message(IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_EXCL, i + 1, body)


class Creator:
    """create_msg at Python speed: a template whose addresses, ports and
    sequence number are patched in place (fillers differ in nothing else)."""

    SRC_MARK = NET + b"\xee"
    PORT_MARK = 0xBEEF

    def __init__(self, mark, timeout):
        self.tmpl = create_msg(0, mark, timeout, self.SRC_MARK, self.PORT_MARK)
        self.src_at = self.find(self.SRC_MARK)
        self.port_at = self.find(struct.pack("!H", self.PORT_MARK))

    def find(self, pattern):
        at, i = [], self.tmpl.find(pattern)
        while i >= 0:
            at.append(i)
            i = self.tmpl.find(pattern, i + 1)
        if len(at) != 2:
            raise SystemExit("template: %r found %d times" % (pattern, len(at)))
        return at

    def __call__(self, i):
        m = bytearray(self.tmpl)
        src, sport = filler(i)
        for at in self.src_at:
            m[at:at + 4] = src
        for at in self.port_at:
            m[at:at + 2] = struct.pack("!H", sport)
        m[8:12] = struct.pack("=I", i + 1)
        return bytes(m)


def delete_msg(i):
    src, sport = filler(i)
    return message(IPCTNL_MSG_CT_DELETE, 0, i + 1, tuple_attr(CTA_TUPLE_ORIG, src, sport, DST, DPORT))


class Ctnl:
    def __init__(self):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.s.bind((0, 0))
        self.errors = {}

    def send(self, msgs):
        self.s.send(b"".join(msgs))

    def drain(self, block_for=0.0):
        """Reads the kernel's answers (errors only, without NLM_F_ACK)."""
        self.s.settimeout(block_for if block_for > 0 else 0.0)
        while True:
            try:
                data = self.s.recv(1 << 20)
            except (BlockingIOError, socket.timeout):
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # answers lost: count them as unknown
                    self.errors["ENOBUFS"] = self.errors.get("ENOBUFS", 0) + 1
                    continue
                raise
            self.s.settimeout(0.0)
            off = 0
            while off + 16 <= len(data):
                n, ty, _, _, _ = struct.unpack_from("=IHHII", data, off)
                if n < 16:
                    break
                if ty == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, off + 16)[0]
                    if code:
                        name = errno.errorcode.get(code, str(code))
                        self.errors[name] = self.errors.get(name, 0) + 1
                off += (n + 3) & ~3


def proc(name):
    try:
        with open("/proc/sys/net/netfilter/" + name) as f:
            return int(f.read())
    except OSError:
        return -1


def cmd_fill(a):
    ct = Ctnl()
    make = Creator(a.mark, a.timeout)
    assert make(7) == create_msg(7, a.mark, a.timeout)
    created = 0
    i = a.first
    while i - a.first < a.max:
        n = min(BATCH, a.max - (i - a.first))
        ct.send([make(j) for j in range(i, i + n)])
        before = sum(ct.errors.values())
        ct.drain()
        failed = sum(ct.errors.values()) - before
        created += n - failed
        i += n
        if ct.errors.get("ENOMEM"):
            break
    ct.drain(0.2)
    full = bool(ct.errors.get("ENOMEM"))
    print(
        "created=%d next=%d refused=%s count=%d max=%d full=%s"
        % (created, i, ",".join("%s:%d" % kv for kv in sorted(ct.errors.items())) or "none",
           proc("nf_conntrack_count"), proc("nf_conntrack_max"), "yes" if full else "no"),
        flush=True,
    )
    return 0 if full else 3


def cmd_free(a):
    ct = Ctnl()
    i = a.first
    while i < a.first + a.count:
        n = min(BATCH, a.first + a.count - i)
        ct.send([delete_msg(j) for j in range(i, i + n)])
        ct.drain()
        i += n
    ct.drain(0.2)
    print("deleted=%d errors=%s count=%d" % (a.count - sum(ct.errors.values()),
                                             ",".join("%s:%d" % kv for kv in sorted(ct.errors.items())) or "none",
                                             proc("nf_conntrack_count")), flush=True)
    return 0


def cmd_flush(a):
    ct = Ctnl()
    body = attr(CTA_MARK, struct.pack("!I", a.mark)) + attr(CTA_MARK_MASK, struct.pack("!I", 0xFFFFFFFF))
    ct.send([message(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, 1, body, family=socket.AF_INET, version=1)])
    ct.drain(5.0)
    bad = {k: v for k, v in ct.errors.items()}
    print("flushed errors=%s count=%d" % (",".join("%s:%d" % kv for kv in sorted(bad.items())) or "none",
                                          proc("nf_conntrack_count")), flush=True)
    return 1 if bad else 0


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fill")
    f.add_argument("--mark", type=lambda s: int(s, 0), default=DEFAULT_MARK)
    f.add_argument("--max", type=int, default=400_000)
    f.add_argument("--first", type=int, default=0)
    f.add_argument("--timeout", type=int, default=600)
    r = sub.add_parser("free")
    r.add_argument("count", type=int)
    r.add_argument("--first", type=int, default=0)
    fl = sub.add_parser("flush")
    fl.add_argument("--mark", type=lambda s: int(s, 0), default=DEFAULT_MARK)
    a = p.parse_args(argv)
    if a.cmd == "fill" and not 0 < a.max <= HARD_MAX:
        p.error("--max must be 1..%d" % HARD_MAX)
    if a.cmd == "free" and not 0 < a.count <= HARD_MAX:
        p.error("COUNT must be 1..%d" % HARD_MAX)
    if os.geteuid() != 0:
        p.error("run as root")
    return {"fill": cmd_fill, "free": cmd_free, "flush": cmd_flush}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
