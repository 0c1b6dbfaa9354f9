#!/usr/bin/env python3
"""What `conntrack -L` does not show, read from ctnetlink in this network
namespace: the sequence adjustment of TCP entries (CTA_SEQ_ADJ_ORIG/REPLY)
and the NAT binding and expect function of expectations (CTA_EXPECT_NAT,
CTA_EXPECT_FN). Used by the failover matrix (tests/lab/failover.py) to say
what a gateway holds.
Usage: ctstate.py [--port PORT]   TCP entries with PORT on either side (default:
                                  all), one a line, e.g.
         192.0.2.10:52976 -> 198.51.100.20:21 helper=ftp seqadj orig=(pos 1234, 0 -> 2) reply=- labels=-
                                  (labels: the connlabel bits set, e.g. 5,64)
       ctstate.py --summary PORT  for the entry whose original source port is
                                  PORT, the shifts it holds: "orig+2",
                                  "reply+2", "orig+2,reply-1", or "-" for none
       ctstate.py --expect        IPv4 expectations, e.g.
         expect 198.51.100.20:0 -> 198.51.100.1:38173 master ... fn=nat-follow-master nat=yes
"""

import socket
import struct
import sys

NETLINK_NETFILTER = 12
MSG = (1 << 8) | 1  # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_DONE, NLMSG_ERROR = 3, 2
CTA_TUPLE_ORIG, CTA_STATUS, CTA_HELP, CTA_SEQ_ADJ_ORIG, CTA_SEQ_ADJ_REPLY, CTA_LABELS = 1, 3, 5, 15, 16, 22
EXP_GET = (2 << 8) | 1  # NFNL_SUBSYS_CTNETLINK_EXP, IPCTNL_MSG_EXP_GET
CTA_EXPECT_NAT, CTA_EXPECT_FN = 10, 11


def attrs(buf):
    out, i = {}, 0
    while i + 4 <= len(buf):
        ln, typ = struct.unpack_from("HH", buf, i)
        if ln < 4:
            break
        out[typ & 0x3FFF] = buf[i + 4 : i + ln]
        i += (ln + 3) & ~3
    return out


def tuple_str(buf):
    t = attrs(buf)
    ip, proto = attrs(t.get(1, b"")), attrs(t.get(2, b""))
    if 1 in ip:
        src, dst = socket.inet_ntop(socket.AF_INET, ip[1]), socket.inet_ntop(socket.AF_INET, ip[2])
    else:
        src = "[%s]" % socket.inet_ntop(socket.AF_INET6, ip[3])
        dst = "[%s]" % socket.inet_ntop(socket.AF_INET6, ip[4])
    if proto.get(1, b"\0")[0] != 6:
        return None, None
    sport, dport = struct.unpack(">H", proto[2])[0], struct.unpack(">H", proto[3])[0]
    return "%s:%d -> %s:%d" % (src, sport, dst, dport), (sport, dport)


def shift(buf):
    """offset_after of a CTA_SEQ_ADJ_* nest, 0 when absent."""
    if buf is None:
        return 0
    return struct.unpack(">i", attrs(buf)[3])[0]


def seqadj_str(buf):
    if buf is None:
        return "-"
    a = attrs(buf)
    pos = struct.unpack(">I", a[1])[0]
    before, after = struct.unpack(">i", a[2])[0], struct.unpack(">i", a[3])[0]
    return "(pos %d, %d -> %d)" % (pos, before, after)


def dump(s, msg_type, family, handle):
    """Sends a dump request; calls handle(attributes) for each answer."""
    body = struct.pack("BBH", family, 0, 0)
    s.send(struct.pack("IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
    while True:
        data = s.recv(1 << 20)
        i = 0
        while i + 16 <= len(data):
            ln, typ = struct.unpack_from("IH", data, i)
            if typ == NLMSG_DONE:
                return
            if typ == NLMSG_ERROR:
                err = struct.unpack_from("i", data, i + 16)[0]
                if err:
                    raise OSError(-err, "netlink error")
            else:
                handle(attrs(data[i + 20 : i + ln]))
            i += (ln + 3) & ~3


def show_expect(a):
    fn = a.get(CTA_EXPECT_FN, b"").rstrip(b"\0").decode() or "-"
    print(
        "expect %s master %s fn=%s nat=%s"
        % (tuple_str(a.get(2, b""))[0], tuple_str(a.get(1, b""))[0], fn, "yes" if CTA_EXPECT_NAT in a else "no")
    )


def main(argv):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    if "--expect" in argv:
        dump(s, EXP_GET, socket.AF_INET, show_expect)
        return 0
    port = int(argv[argv.index("--port") + 1]) if "--port" in argv else None
    summary = int(argv[argv.index("--summary") + 1]) if "--summary" in argv else None
    found = []

    def show(a):
        text, ports = tuple_str(a.get(CTA_TUPLE_ORIG, b""))
        if not text:
            return
        if summary is not None:
            if ports[0] == summary:
                o, r = shift(a.get(CTA_SEQ_ADJ_ORIG)), shift(a.get(CTA_SEQ_ADJ_REPLY))
                found.append(",".join("%s%+d" % (k, v) for k, v in (("orig", o), ("reply", r)) if v) or "-")
        elif port is None or port in ports:
            helper = attrs(a[CTA_HELP]).get(1, b"").rstrip(b"\0").decode() if CTA_HELP in a else "-"
            labels = a.get(CTA_LABELS)
            bits = int.from_bytes(labels, "little") if labels else 0
            print(
                "%s helper=%s seqadj orig=%s reply=%s labels=%s"
                % (
                    text,
                    helper,
                    seqadj_str(a.get(CTA_SEQ_ADJ_ORIG)),
                    seqadj_str(a.get(CTA_SEQ_ADJ_REPLY)),
                    ",".join(str(b) for b in range(128) if bits >> b & 1) or "-",
                )
            )

    for family in (socket.AF_INET, socket.AF_INET6):
        dump(s, MSG, family, show)
    if summary is not None:
        print(found[0] if found else "-")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
