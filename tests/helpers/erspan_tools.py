"""Senders for the ERSPAN system tests, run inside a namespace with ``python -m``.

``python -m tests.helpers.erspan_tools vspan`` reads a JSON job on stdin::

    {"config": {...ErspanConfig keywords...},
     "frames": [{"hex": "...", "egress": false, "truncated": false, "ts_ns": null,
                 "vlan": null, "cos": 0}],
     "repeat_seconds": 0, "interval": 0}

sends the frames with :class:`vspan.mirror.encap.RawGreSender` (looping over them
for ``repeat_seconds`` when given) and prints the sender's counters, path MTU and
local address as JSON.

``python -m tests.helpers.erspan_tools raw`` reads hex IP packets (one per
line) and sends them unchanged through an ``IPPROTO_RAW`` socket: the way
scapy-made ERSPAN/GRE packets reach the collector.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any

from vspan.mirror.encap import ErspanConfig, RawGreSender


def send_vspan(job: dict[str, Any]) -> dict[str, Any]:
    """Send ``job``'s frames with a RawGreSender; return what it counted."""
    cfg = ErspanConfig(**job["config"])
    frames = job["frames"]
    interval = float(job.get("interval", 0))
    until = time.monotonic() + float(job.get("repeat_seconds", 0))
    results = []
    with RawGreSender(cfg) as sender:
        while True:
            for f in frames:
                ok = sender.send(bytes.fromhex(f["hex"]), egress=f.get("egress", False),
                                 truncated=f.get("truncated", False), ts_ns=f.get("ts_ns"),
                                 vlan=f.get("vlan"), cos=f.get("cos", 0))
                results.append(ok)
                if interval:
                    time.sleep(interval)
            if time.monotonic() >= until:
                break
        return {"counters": sender.counters.as_dict(), "path_mtu": sender.path_mtu,
                "local": sender.local_address, "results": results[:1000],
                "next_seq": sender.encap.next_seq, "path": str(sender.path_state)}


def drive(config: dict[str, Any]) -> None:
    """One RawGreSender driven line by line: each stdin line ``N`` sends N copies of a
    small frame (``0``: just re-read the route and neighbour tables) and prints the
    sender's path state, next hop and counters as one JSON line."""
    sender = RawGreSender(ErspanConfig(**config))
    sender.refresh_interval = 0.0  # re-read the tables before every copy (tests)
    frame = bytes.fromhex("02000000aa0202000000aa010800") + bytes(46)
    with sender:
        for line in sys.stdin:
            n = int(line)
            if n == 0:
                sender.refresh_path()
            for _ in range(n):
                sender.send(frame)
            hop = sender.next_hop
            sys.stdout.write(json.dumps({
                "path": str(sender.path_state), "counters": sender.counters.as_dict(),
                "hop": None if hop is None else [hop.ifname, hop.dst_mac.hex(), hop.gateway],
            }) + "\n")
            sys.stdout.flush()


def send_raw(lines: list[str], interval: float) -> int:
    """Send whole IPv4 packets (hex) through a raw socket; return how many were sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    n = 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        pkt = bytes.fromhex(line)
        dst = socket.inet_ntoa(pkt[16:20])
        sock.sendto(pkt, (dst, 0))
        n += 1
        if interval:
            time.sleep(interval)
    sock.close()
    return n


def main(argv: list[str]) -> int:
    """Entry point: ``vspan`` or ``raw [interval]``."""
    if not argv:
        sys.stderr.write("usage: erspan_tools vspan|raw [interval]\n")
        return 2
    if argv[0] == "vspan":
        out = send_vspan(json.load(sys.stdin))
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    if argv[0] == "drive":
        drive(json.loads(argv[1]))
        return 0
    if argv[0] == "raw":
        interval = float(argv[1]) if len(argv) > 1 else 0.0
        n = send_raw(sys.stdin.read().splitlines(), interval)
        sys.stdout.write(json.dumps({"sent": n}) + "\n")
        return 0
    sys.stderr.write(f"unknown mode {argv[0]!r}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
