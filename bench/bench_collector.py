#!/usr/bin/env python3
"""Benchmark: ERSPAN collector throughput in packets per second (not a test).

Two measurements, medians over ``--runs``:

* **decode+write** (no root): pre-built ERSPAN II, ERSPAN III and GRE-TEB
  packets of 128-byte mirrored frames fed to :class:`vspan.capture.collector.Collector`
  in-process, writing pcapng to a temporary file: the collector's own cost per
  packet (parse, sequence tracking, one ``write()`` per block).
* **live** (root): ``vspan collect --listen 127.0.0.1`` in a private network
  namespace (``vp4b`` + 4 hex chars, removed afterwards) pinned to CPU1, and a
  Python sender on CPU0 blasting ERSPAN III over a raw socket to the
  namespace's loopback for ``--seconds``; reported: offered pps, pps written
  to the file, and the kernel's receive-buffer drops.

Run from the repository: ``.venv/bin/python bench/bench_collector.py``
(``--quick``: 1 run, 2 s, fewer packets; ``--no-live`` to skip the live part).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from vspan.capture.collector import Collector  # noqa: E402
from vspan.capture.pcapng import PcapngWriter  # noqa: E402
from vspan.mirror.encap import EncapType, ErspanConfig, ErspanEncapsulator  # noqa: E402

FRAME = (bytes.fromhex("020000000002020000000001") + b"\x08\x00"
         + bytes.fromhex("4500007200004000400600000a0000010a000002") + bytes(94))


def _ipv4(payload: bytes, src: bytes = bytes([198, 51, 100, 7]),
          dst: bytes = bytes([198, 51, 100, 1])) -> bytes:
    total = 20 + len(payload)
    return (bytes([0x45, 0]) + total.to_bytes(2, "big") + b"\0\0\x40\0" + bytes([64, 47])
            + b"\0\0" + src + dst + payload)


def packets(kind: str, n: int) -> list[bytes]:
    """``n`` IPv4 packets of one session with consecutive sequence numbers."""
    enc = ErspanEncapsulator(ErspanConfig("198.51.100.1", EncapType(kind), session_id=5))
    return [_ipv4(enc.encapsulate(FRAME, egress=bool(i & 1))) for i in range(n)]


def decode_rate(kind: str, n: int, workdir: Path) -> float:
    """Packets per second through Collector.handle_ip, writing pcapng."""
    pkts = packets(kind, n)
    now = time.time_ns()
    path = workdir / f"bench-{kind}.pcapng"
    with PcapngWriter(str(path)) as w:
        c = Collector(w)
        t0 = time.perf_counter()
        for p in pkts:
            c.handle_ip(p, now)
        dt = time.perf_counter() - t0
    assert c.stats.written == n and c.stats.lost == 0, c.stats
    path.unlink()
    return n / dt


SENDER = r"""
import socket, sys, time
pkt = bytes.fromhex(sys.argv[1]); seconds = float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
s.connect(("127.0.0.1", 0))
hdr, body = pkt[:4], pkt[8:]
n = 0
end = time.monotonic() + seconds
send = s.send
while True:
    for _ in range(1000):
        try:
            send(hdr + n.to_bytes(4, "big") + body)
        except OSError:
            pass
        n += 1
    if time.monotonic() >= end:
        break
print(n)
"""


def live_rate(seconds: float, workdir: Path) -> dict[str, float]:
    """One live run in a private namespace: offered pps, written pps, kernel drops."""
    ns = f"vp4b{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        out = workdir / "live.pcapng"
        cfg = ErspanConfig("127.0.0.1", EncapType.ERSPAN3, session_id=5)
        gre = ErspanEncapsulator(cfg).encapsulate(FRAME)
        collector = subprocess.Popen(
            ["ip", "netns", "exec", ns, "taskset", "-c", "1", sys.executable, "-m",
             "vspan.cli.main", "collect", "--listen", "127.0.0.1", "-w", str(out), "-q",
             "--duration", str(seconds + 1.5)],
            stderr=subprocess.PIPE, text=True, cwd=REPO)
        assert collector.stderr is not None
        collector.stderr.readline()  # "listening on ..."
        time.sleep(0.3)
        t0 = time.monotonic()
        sent = subprocess.run(
            ["ip", "netns", "exec", ns, "taskset", "-c", "0", sys.executable, "-c", SENDER,
             gre.hex(), str(seconds)], capture_output=True, text=True, check=True)
        elapsed = time.monotonic() - t0
        _, err = collector.communicate(timeout=seconds + 30)
        m = re.search(r"(\d+) frames written", err)
        d = re.search(r"dropped by the kernel \(receive buffer full\) (\d+)", err)
        written = int(m.group(1)) if m else 0
        offered = int(sent.stdout.strip())
        out.unlink(missing_ok=True)
        return {"offered_pps": offered / elapsed, "written_pps": written / elapsed,
                "kernel_drops": float(d.group(1)) if d else -1.0,
                "written": float(written), "offered": float(offered)}
    finally:
        subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        for pid in pids.stdout.split():
            subprocess.run(["kill", "-9", pid], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-live", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.packets, args.seconds = 1, 20_000, 2.0
    results: dict[str, object] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="vp4bench") as tmp:
        work = Path(tmp)
        for kind in ("erspan2", "erspan3", "gre"):
            rates = [decode_rate(kind, args.packets, work) for _ in range(args.runs)]
            med = statistics.median(rates)
            results[f"decode_write_{kind}_pps"] = round(med)
            print(f"decode+write {kind:8s}: {med:10,.0f} pps (median of {args.runs}, "
                  f"{args.packets} packets each)")
        if args.no_live:
            pass
        elif os.geteuid() != 0 or shutil.which("taskset") is None:
            print("live: skipped (needs root and taskset)")
        else:
            runs = [live_rate(args.seconds, work) for _ in range(args.runs)]
            for key in ("offered_pps", "written_pps", "kernel_drops"):
                results[f"live_{key}"] = round(statistics.median(r[key] for r in runs))
            print(f"live erspan3 over loopback: offered {results['live_offered_pps']:,} pps, "
                  f"written {results['live_written_pps']:,} pps, kernel drops "
                  f"{results['live_kernel_drops']:,} (median of {args.runs}, "
                  f"{args.seconds:g} s each)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
