"""Numbered UDP datagrams for the migration benchmark (run inside a VM namespace).

    python bench/udpseq.py send DST PORT STREAM RATE SECONDS LOG.json
    python bench/udpseq.py recv BIND PORT SECONDS LOG.json

Each datagram carries ``MAGIC, stream id, sequence number, send time (ns)`` padded to
100 bytes; the sender logs every (sequence, send time), the receiver every
(stream, sequence) it got. The sender paces itself to RATE datagrams per second.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

MAGIC = b"VSQ1"
HEADER = struct.Struct("!4sBQQ")
SIZE = 100


def parse(payload: bytes) -> tuple[int, int, int] | None:
    """(stream, seq, send ns) of a datagram's payload, None if it is not one of ours."""
    if len(payload) < HEADER.size or payload[:4] != MAGIC:
        return None
    _m, stream, seq, ts = HEADER.unpack_from(payload)
    return stream, seq, ts


def send(dst: str, port: int, stream: int, rate: int, seconds: float, log: str) -> None:
    """Send at ``rate`` per second for ``seconds``; log (seq, send ns)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent: list[tuple[int, int]] = []
    start = time.monotonic()
    interval = 1.0 / rate
    seq = 0
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        due = start + seq * interval
        if now < due:
            time.sleep(due - now)
        ts = time.time_ns()
        payload = HEADER.pack(MAGIC, stream, seq, ts).ljust(SIZE, b"\0")
        try:
            s.sendto(payload, (dst, port))
        except OSError:
            pass  # no route / interface down during the move: the datagram is lost
        sent.append((seq, ts))
        seq += 1
    with open(log, "w", encoding="utf-8") as fh:
        json.dump({"sent": sent}, fh)


def recv(bind: str, port: int, seconds: float, log: str) -> None:
    """Receive for ``seconds``; log (stream, seq) of every datagram."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((bind, port))
    s.settimeout(0.2)
    got: list[tuple[int, int]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data = s.recv(2048)
        except TimeoutError:
            continue
        p = parse(data)
        if p is not None:
            got.append((p[0], p[1]))
    with open(log, "w", encoding="utf-8") as fh:
        json.dump({"got": got}, fh)


if __name__ == "__main__":
    a = sys.argv[1:]
    if a and a[0] == "send":
        send(a[1], int(a[2]), int(a[3]), int(a[4]), float(a[5]), a[6])
    elif a and a[0] == "recv":
        recv(a[1], int(a[2]), float(a[3]), a[4])
    else:
        sys.stderr.write(__doc__ or "")
        sys.exit(2)
