#!/usr/bin/env python3
"""Write a large pcapng fast: every frame captured twice (two capture points), for the
dedup/flows benchmark and the bounded-memory test. Not scapy: one template per frame size,
patched with ``struct.pack_into``, written in large chunks (about 1 million packets/s).

The file has two interfaces, ``member`` and ``team``. ``--unique`` distinct TCP
segments (``--flows`` conversations, 1 us apart) are written first at ``member``
and then, ``--block`` frames later in the file and 3 us later in time, again at
``team`` (as two capture points that flush at different moments). Every
``--retransmit``-th segment is followed 1 ms later by a real retransmission
(same sequence number and payload, a new IP ID), which is not a copy.
``--step-ns 0`` puts every frame at the same instant (a clock that stood still).

    python bench/gencapture.py OUT.pcapng --unique 500000      # ~1.0 M packets
"""

from __future__ import annotations

import argparse
import struct
import sys

from vspan.packet.checksum import internet_checksum

T0 = 1_763_700_000_000_000_000
US = 1000


def generate(path: str, unique: int, *, flows: int = 1000, block: int = 32,
             payload: int = 64, retransmit: int = 0, step_ns: int = US) -> int:
    """Write the file; return the number of packets written."""
    ip_len = 20 + 20 + payload
    frame_len = 14 + ip_len
    pad = (-frame_len) & 3
    total = 32 + frame_len + pad
    shb_opts = b""
    shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts
    shb = struct.pack("<II", 0x0A0D0D0A, 12 + len(shb_body)) + shb_body + struct.pack(
        "<I", 12 + len(shb_body))

    def idb(name: str) -> bytes:
        n = name.encode()
        opts = (struct.pack("<HH", 2, len(n)) + n + b"\0" * ((-len(n)) & 3)
                + struct.pack("<HHB3x", 9, 1, 9) + b"\0\0\0\0")
        body = struct.pack("<HHI", 1, 0, 262144) + opts
        return struct.pack("<II", 1, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    tmpl = bytearray(total)
    struct.pack_into("<II", tmpl, 0, 6, total)
    struct.pack_into("<II", tmpl, 20, frame_len, frame_len)
    f = 28  # frame offset in the block
    tmpl[f:f + 12] = bytes.fromhex("020000000002020000000001")
    tmpl[f + 12:f + 14] = b"\x08\x00"
    tmpl[f + 54:f + 54 + payload] = b"d" * payload
    assert len(tmpl) == total
    struct.pack_into("<I", tmpl, total - 4, total)
    seqs = [1000 * (i + 1) for i in range(flows)]
    written = 0
    with open(path, "wb", buffering=1 << 22) as out:
        out.write(shb + idb("member") + idb("team"))
        pending: list[tuple[int, bytes]] = []  # (ts, frame block body) for the team copies

        def emit(ifid: int, ts: int, i: int, seq: int, ip_id: int) -> bytes:
            b = tmpl
            struct.pack_into("<III", b, 8, ifid, ts >> 32, ts & 0xFFFFFFFF)
            flow = i % flows
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, ip_id & 0xFFFF, 0x4000, 64, 6, 0,
                             bytes((10, 1, flow >> 8 & 255, flow & 255)),
                             bytes((10, 2, 0, 1)))
            ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
            b[f + 14:f + 34] = ip
            struct.pack_into("!HHIIBBHHH", b, f + 34, 40000 + flow, 5201, seq & 0xFFFFFFFF, 1,
                             0x50, 0x18, 512, 0, 0)
            return bytes(b)

        for start in range(0, unique, block):
            member = []
            for i in range(start, min(start + block, unique)):
                flow = i % flows
                seq = seqs[flow]
                seqs[flow] += payload
                ts = T0 + i * step_ns
                blk = emit(0, ts, i, seq, i)
                member.append(blk)
                pending.append((ts, blk))
                if retransmit and i % retransmit == retransmit - 1:
                    member.append(emit(0, ts + 1000 * US, i, seq, i + 7777))
            out.write(b"".join(member))
            written += len(member)
            team = []
            for ts, blk in pending:
                b = bytearray(blk)
                t2 = ts + 3 * US
                struct.pack_into("<III", b, 8, 1, t2 >> 32, t2 & 0xFFFFFFFF)
                team.append(bytes(b))
            out.write(b"".join(team))
            written += len(team)
            pending.clear()
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output")
    ap.add_argument("--unique", type=int, default=500_000, help="distinct frames (each twice)")
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--block", type=int, default=32, help="frames per capture-point flush")
    ap.add_argument("--payload", type=int, default=64)
    ap.add_argument("--retransmit", type=int, default=0, help="every Nth frame retransmitted")
    ap.add_argument("--step-ns", type=int, default=US,
                    help="time between distinct frames (0: all at one instant)")
    args = ap.parse_args()
    n = generate(args.output, args.unique, flows=args.flows, block=args.block,
                 payload=args.payload, retransmit=args.retransmit, step_ns=args.step_ns)
    sys.stdout.write(f"{n}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
