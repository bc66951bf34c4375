#!/usr/bin/env python3
"""What one ERSPAN copy costs the kernel to send: a raw ``IPPROTO_GRE`` socket (today's
sender: a route lookup and the IP output path per message) against an ``AF_PACKET``
socket on the underlay interface sending the same packet with a cached Ethernet + IPv4
header (``PACKET_QDISC_BYPASS`` on or off). Not a test; needs root.

Two namespaces made here (``vbe<pid>s`` sender, ``vbe<pid>c`` collector, joined by a veth
pair, no default route, removed at the end); in the sender namespace the same GRE payload
(an ERSPAN III header and a 64-byte frame) is sent ``--copies`` times per method, one
``send`` per copy, and the sender's CPU time per copy (``time.process_time``: user +
kernel, the collector's receive included, since veth delivers in the sender's context)
is reported, median of ``--runs``. By default the collector's stack receives the GRE
packets nobody listens to (as in ``bench_switch.py``); ``--drop-at-collector`` sets the
collector's veth end down, so veth drops the copies on transmit and the figure is the
sending side's alone.
Both methods pay the collector alike.

    sudo .venv/bin/python bench/bench_erspan_send.py [--copies 200000] [--runs 5]
        [--drop-at-collector]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable

SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
ETH_P_IP = 0x0800
SRC, DST = "10.77.0.1", "10.77.0.2"


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True)


def _csum(hdr: bytes) -> int:
    s = sum(int(w) for w in struct.unpack(f"!{len(hdr) // 2}H", hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _payload() -> bytes:
    # ERSPAN III (GRE with sequence, 0x22EB) + a 64-byte frame: the bytes do not matter here
    return struct.pack("!HHIHHIHH", 0x1000, 0x22EB, 1, 0x2000, 1, 0, 0, 0x8000) + bytes(64)


def _time(fn: Callable[[bytes], object], n: int) -> float:
    data = _payload()
    t0 = time.process_time()
    for _ in range(n):
        try:
            fn(data)
        except OSError:  # ENOBUFS when veth drops (collector end down): counted as sent
            pass
    return (time.process_time() - t0) / n


def inner(copies: int, runs: int, peer_mac: str) -> None:
    """In the sender namespace: time each method; print one line per method."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
    raw.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
    raw.connect((DST, 0))
    with open("/sys/class/net/veg0/address", encoding="ascii") as fh:
        own = fh.read().strip()
    payload = _payload()
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, 47,
                               0, socket.inet_aton(SRC), socket.inet_aton(DST)))
    struct.pack_into("!H", ip, 10, _csum(bytes(ip)))
    eth = bytes.fromhex(peer_mac.replace(":", "")) + bytes.fromhex(own.replace(":", "")) + \
        b"\x08\x00"
    frame = eth + bytes(ip) + payload

    def packet(bypass: bool) -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, int(bypass))
        s.bind(("veg0", 0))
        return s

    pk, pkb = packet(False), packet(True)
    # the product's sender (Python replay path: encapsulation + header work included)
    from vspan.mirror.encap import EncapType, ErspanConfig, RawGreSender
    senders = {link: RawGreSender(ErspanConfig(remote_ip=DST, type=EncapType.ERSPAN3,
                                               link_layer=link)) for link in (False, True)}
    for snd in senders.values():
        snd.open()
    assert str(senders[True].path_state) == "resolved", senders[True].path_state
    inner_frame = bytes(64)
    methods: dict[str, Callable[[bytes], object]] = {
        "raw IPPROTO_GRE socket (before)": raw.send,
        "AF_PACKET, cached Ethernet+IPv4 header": lambda _d: pk.send(frame),
        "AF_PACKET + PACKET_QDISC_BYPASS": lambda _d: pkb.send(frame),
        "RawGreSender.send, sender: raw (Python, encapsulation included)":
            lambda _d: senders[False].send(inner_frame),
        "RawGreSender.send, sender: auto = AF_PACKET (Python, encapsulation included)":
            lambda _d: senders[True].send(inner_frame),
    }
    res: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(runs):
        for name, fn in methods.items():
            res[name].append(_time(fn, copies))
    base = statistics.median(res["raw IPPROTO_GRE socket (before)"])
    for name, v in res.items():
        m = statistics.median(v)
        print(f"| {name} | {m * 1e6:.2f} | {m / base:.2f} |")


def main() -> None:
    """Build the namespaces, run the timing inside the sender's, clean up."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--drop-at-collector", action="store_true",
                    help="the collector's veth end down: veth drops the copies")
    ap.add_argument("--inner", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(args.copies, args.runs, args.inner)
        return
    if os.geteuid() != 0:
        sys.exit("needs root (namespaces, raw sockets)")
    s, c = f"vbe{os.getpid()}s", f"vbe{os.getpid()}c"
    try:
        _sh("ip", "netns", "add", s)
        _sh("ip", "netns", "add", c)
        _sh("ip", "-n", s, "link", "add", "veg0", "type", "veth", "peer", "name", "veg1",
            "netns", c)
        _sh("ip", "-n", s, "addr", "add", f"{SRC}/24", "dev", "veg0")
        _sh("ip", "-n", c, "addr", "add", f"{DST}/24", "dev", "veg1")
        for ns, dev in ((s, "veg0"), (c, "veg1")):
            _sh("ip", "-n", ns, "link", "set", dev, "up")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        mac = subprocess.run(["ip", "netns", "exec", c, "cat", "/sys/class/net/veg1/address"],
                             check=True, capture_output=True, text=True).stdout.strip()
        _sh("ip", "-n", s, "neigh", "replace", DST, "lladdr", mac, "dev", "veg0")
        if args.drop_at_collector:
            _sh("ip", "-n", c, "link", "set", "veg1", "down")
        print(f"copies per run {args.copies}, median of {args.runs} runs; sender CPU per copy")
        print("| method | µs per copy | vs raw socket |")
        print("|---|---|---|")
        sys.stdout.flush()
        subprocess.run(["ip", "netns", "exec", s, sys.executable, __file__, "--copies",
                        str(args.copies), "--runs", str(args.runs), "--inner", mac], check=True)
    finally:
        for ns in (s, c):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


if __name__ == "__main__":
    main()
