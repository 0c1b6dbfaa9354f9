#!/usr/bin/env python3
"""Spoofed TCP SYNs through a raw socket, for the fault suite (tests/lab/faults.py).

Standard library only; needs CAP_NET_RAW (run it as root inside a lab
namespace). Every packet is an IPv4 SYN with a random source address taken
from --src (a range inside the documentation networks), a random or fixed
source port, and a random or fixed destination port. The IP header checksum
and length are filled in by the kernel (IP_HDRINCL); the TCP checksum is
computed here, so the receiver accepts the segment.

Usage:
  faults_synflood.py --src 192.0.2.100-192.0.2.254 --dst 198.51.100.20 \\
      --dport 21 --count 45000 --rate 12000 [--sport 21] [--seed N]
  --src A-B     source addresses, first and last (IPv4, one /24 at most)
  --dst ADDR    destination address
  --dport P     destination port (0: random 1024-65535)
  --sport P     source port (0, the default: random 1024-65535)
  --count N     SYNs to send (at most 1,000,000)
  --rate PPS    packets per second (0: as fast as possible)
  --max-secs S  stop after S seconds whatever was sent (default 30)
Prints one line: sent=N secs=S pps=R errors=E. Exit 0 when all were sent.
"""

import argparse
import ipaddress
import random
import socket
import struct
import sys
import time

DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
MAX_COUNT = 1_000_000
BATCH = 200  # packets between two looks at the clock


def doc_addr(text):
    a = ipaddress.ip_address(text)
    if a.version != 4 or not any(a in n for n in DOC_NETS):
        raise argparse.ArgumentTypeError("%s is not an IPv4 documentation address" % text)
    return a


def addr_range(text):
    first, _, last = text.partition("-")
    a = doc_addr(first)
    b = doc_addr(last or first)
    if int(b) < int(a) or int(b) - int(a) > 255:
        raise argparse.ArgumentTypeError("bad range %s" % text)
    return int(a), int(b)


def fold(s):
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=addr_range, required=True)
    p.add_argument("--dst", type=doc_addr, required=True)
    p.add_argument("--dport", type=int, default=21)
    p.add_argument("--sport", type=int, default=0)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--max-secs", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    if not 0 < a.count <= MAX_COUNT:
        p.error("--count must be 1..%d" % MAX_COUNT)
    if a.max_secs <= 0 or a.max_secs > 120:
        p.error("--max-secs must be in (0, 120]")

    rnd = random.Random(a.seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dst = int(a.dst)
    dst_b = a.dst.packed
    lo, hi = a.src
    # Pseudo-header and constant TCP fields, summed once: protocol 6, TCP
    # length 20, data offset 5 and flags SYN (0x5002), window 64240.
    const = fold((dst >> 16) + (dst & 0xFFFF) + 6 + 20 + 0x5002 + 64240)

    start = time.monotonic()
    deadline = start + a.max_secs
    sent = errors = 0
    while sent < a.count:
        now = time.monotonic()
        if now > deadline:
            break
        if a.rate > 0:
            due = start + sent / a.rate
            if due > now:
                time.sleep(min(due - now, 0.05))
                continue
        for _ in range(min(BATCH, a.count - sent)):
            src = rnd.randint(lo, hi)
            sport = a.sport or rnd.randint(1024, 65535)
            dport = a.dport or rnd.randint(1024, 65535)
            seq = rnd.getrandbits(32)
            c = fold(const + (src >> 16) + (src & 0xFFFF) + sport + dport + (seq >> 16) + (seq & 0xFFFF))
            csum = (~c) & 0xFFFF
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0x4000, 64, 6, 0, src.to_bytes(4, "big"), dst_b)
            tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 0x50, 0x02, 64240, csum, 0)
            try:
                s.sendto(ip + tcp, (str(a.dst), 0))
            except OSError:
                errors += 1  # ENOBUFS under load: counted, not retried
            sent += 1
    secs = time.monotonic() - start
    print("sent=%d secs=%.2f pps=%.0f errors=%d" % (sent, secs, sent / secs if secs else 0, errors), flush=True)
    return 0 if sent == a.count else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
