#!/usr/bin/env python3
"""Listens on a unix datagram socket and writes each datagram as one line
(newlines shown as ' | ') to stdout, flushed, until SECONDS have passed.
With `journal`, datagrams are read as journald's native protocol and
written as their fields, KEY=VALUE joined by ' | '.

Usage: dgram-listen.py PATH SECONDS [journal]

Stands in for systemd's notify socket (NOTIFY_SOCKET) and for journald's
native socket (/run/systemd/journal/socket) in scripts/ops-test.sh.
"""
import os
import socket
import struct
import sys
import time


def journal_fields(data):
    """KEY=VALUE lines, or KEY, a 64-bit little-endian length, VALUE."""
    fields, i = [], 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            fields.append(line.decode(errors="replace"))
            i = nl + 1
            continue
        size = struct.unpack_from("<Q", data, nl + 1)[0]
        start = nl + 9
        value = data[start:start + size].decode(errors="replace")
        fields.append(f"{line.decode(errors='replace')}={value}")
        i = start + size + 1
    return fields


def main():
    path, seconds = sys.argv[1], float(sys.argv[2])
    journal = len(sys.argv) > 3 and sys.argv[3] == "journal"
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o777)  # a non-root ftpct must be able to write to it
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if journal:
            print(" | ".join(journal_fields(data)), flush=True)
        else:
            print(data.decode(errors="replace").replace("\n", " | "), flush=True)


if __name__ == "__main__":
    main()
