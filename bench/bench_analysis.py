#!/usr/bin/env python3
"""Benchmark: packets per second of ``vspan dedup`` and ``vspan flows`` (not a test).

A file of about 1 million packets from ``bench/gencapture.py`` (500 000 TCP
segments of 1000 conversations, each captured at two points, block-
interleaved, 1 in 1000 really retransmitted) is deduplicated (whole frames;
then with ``--ignore all``) and analysed into flows, in-process, ``--runs``
times. Reported: medians of packets read per second of wall time and of CPU
time of this process (the CPU figure is what the code costs; wall time also
shows how busy the machine was), and the peak RSS of each command run once as
a child process. No root needed.

Run from the repository: ``.venv/bin/python bench/bench_analysis.py``
(``--quick``: 1 run on 100 000 segments; ``--write`` to record the result in
``bench/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from common import busy_processes, loadavg, machine_description, update_section  # noqa: E402
from gencapture import generate  # noqa: E402

from vspan.analysis.dedup import DedupOptions, dedup_file  # noqa: E402
from vspan.analysis.flows import analyze_file  # noqa: E402
from vspan.analysis.normalize import parse_ignore  # noqa: E402


def timed(fn: Callable[[], int]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, packets) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    n = fn()
    return time.perf_counter() - w0, time.process_time() - c0, n


_WRAPPER = ("import resource, subprocess, sys\n"
            "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def child_rss_kb(*args: str) -> int:
    """Peak RSS (KiB) of ``vspan ARGS`` run as the only child of a small wrapper."""
    out = subprocess.run([sys.executable, "-c", _WRAPPER, sys.executable, "-m",
                          "vspan.cli.main", *args], check=True, capture_output=True, text=True,
                         cwd=REPO)
    return int(out.stdout.strip())


def _counted(names: list[str]) -> str:
    """``pytest x3, vspan up x2``."""
    return ", ".join(f"{n} x{c}" if c > 1 else n for n, c in sorted(Counter(names).items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--unique", type=int, default=500_000, help="distinct segments")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", action="store_true", help="record in bench/RESULTS.md")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.unique = 1, 100_000
    results: dict[str, object] = {"python": sys.version.split()[0], "cpus": os.cpu_count(),
                                  "load_before": loadavg(), "busy": busy_processes()}
    with tempfile.TemporaryDirectory(prefix="vspan-bench-analysis") as tmp:
        src = Path(tmp) / "in.pcapng"
        packets = generate(str(src), args.unique, retransmit=1000)
        results["packets"] = packets
        results["file_mb"] = round(src.stat().st_size / 1e6, 1)
        out = str(Path(tmp) / "out.pcapng")
        cases: dict[str, Callable[[], int]] = {
            "dedup": lambda: dedup_file(str(src), out, DedupOptions()).packets_in,
            "dedup_ignore_all": lambda: dedup_file(
                str(src), out, DedupOptions(ignore=parse_ignore("all"))).packets_in,
            "flows": lambda: analyze_file(str(src))[1].frames,
        }
        for name, fn in cases.items():
            samples = [timed(fn) for _ in range(args.runs)]
            assert all(n == packets for _, _, n in samples)
            wall = statistics.median(packets / w for w, _, _ in samples)
            cpu = statistics.median(packets / c for _, c, _ in samples)
            results[f"{name}_pps_wall"] = round(wall)
            results[f"{name}_pps_cpu"] = round(cpu)
            print(f"{name:17s} {wall:10,.0f} packets/s wall  {cpu:10,.0f} packets/s CPU  "
                  f"(median of {args.runs}, {packets:,} packets)")
        results["dedup_peak_rss_mb"] = round(child_rss_kb("dedup", str(src), "-w", out, "-q")
                                             / 1024, 1)
        results["flows_peak_rss_mb"] = round(child_rss_kb("flows", str(src), "-q", "--state",
                                                          "SF") / 1024, 1)
        print(f"peak RSS: dedup {results['dedup_peak_rss_mb']} MB, flows "
              f"{results['flows_peak_rss_mb']} MB (file {results['file_mb']} MB)")
    results["load_after"] = loadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.write:
        rows = "\n".join(f"| {k} | {v} |" for k, v in machine_description())
        body = (
            "## bench_analysis: vspan dedup and vspan flows\n\n"
            f"`bench/bench_analysis.py` (median of {args.runs} runs, "
            f"{results['packets']:,} packets, {results['file_mb']} MB pcapng; load before "
            f"{results['load_before']}, after {results['load_after']}; other processes: "
            f"{_counted(results['busy']) or 'none'})\n\n"  # type: ignore[arg-type]
            "Packets read per second; the CPU column is what the code costs (this process's "
            "CPU time), the wall column also shows how busy the machine was.\n\n"
            "| command | packets/s (wall) | packets/s (CPU) |\n|---|---|---|\n"
            + "".join(f"| {n} | {results[f'{n}_pps_wall']:,} | {results[f'{n}_pps_cpu']:,} |\n"
                      for n in ("dedup", "dedup_ignore_all", "flows"))
            + f"\nPeak RSS: dedup {results['dedup_peak_rss_mb']} MB, flows "
            f"{results['flows_peak_rss_mb']} MB.\n\n| machine | |\n|---|---|\n{rows}\n")
        update_section("bench_analysis", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
