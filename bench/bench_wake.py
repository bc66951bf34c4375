#!/usr/bin/env python3
"""Benchmark: what waking a thread costs on this machine (not a test; no vspan in it).

Builds ``bench/wakepp.c`` with ``cc`` and measures the one-way wake-up latency of a thread
that waits in ``epoll_wait`` for an eventfd written by a thread on another CPU, after a
quiet gap (``--gap-us``, default 10 ms: ``ping -i 0.01``'s cadence):

* *cross-CPU, sleeping*: the waiter blocks, its CPU idles (vspan's engine with
  ``switch.poll`` ``off``, and ``adaptive`` outside its windows);
* *cross-CPU, polling*: the waiter polls with timeout 0 (``always``, or inside a window);
* *same CPU, sleeping*: the wake-up stays on the writer's CPU (as the Linux bridge's
  forwarding does: it runs inside the sender's own system call).

With ``--halt-poll-ns`` (root, a guest with ``cpuidle-haltpoll``) the sleeping case is
measured again for each value of ``/sys/module/haltpoll/parameters/guest_halt_poll_ns``,
which is restored afterwards: a measurement of the cause (a halted virtual CPU's wake-up
is a hypervisor round trip), not a setting vspan makes. Prints a table; RESULTS.md is
left alone. Run: ``.venv/bin/python bench/bench_wake.py [--halt-poll-ns 0,200000]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
HALT_POLL = Path("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
WRITER_CPU, WAITER_CPU = 0, 1


def build(workdir: str) -> str:
    """Compile wakepp.c; return the binary's path."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("bench_wake: no C compiler (cc)")
    out = str(Path(workdir) / "wakepp")
    subprocess.run([cc, "-O2", "-pthread", "-o", out, str(HERE / "wakepp.c")], check=True)
    return out


def run(binary: str, mode: str, count: int, gap_us: int) -> list[float]:
    """One series: sorted latencies in µs."""
    proc = subprocess.run([binary, mode, str(WRITER_CPU), str(WAITER_CPU), str(count),
                           str(gap_us)], capture_output=True, text=True, check=True,
                          timeout=count * (gap_us / 1e6 + 0.05) + 30)
    return [int(v) / 1000 for v in proc.stdout.split()]


def row(name: str, lat: list[float]) -> str:
    """A table row: p10, p50, p90 of sorted values."""
    n = len(lat)
    return (f"| {name} | {lat[n // 10]:.1f} | {lat[n // 2]:.1f} | {lat[9 * n // 10]:.1f} |")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--count", type=int, default=300, help="wake-ups per series")
    ap.add_argument("--gap-us", type=int, default=10000, help="quiet µs before each wake-up")
    ap.add_argument("--halt-poll-ns", default="",
                    help="comma-separated guest_halt_poll_ns values to measure the "
                         "sleeping case with (root; restored afterwards)")
    args = ap.parse_args(argv)
    values = [int(v) for v in args.halt_poll_ns.split(",") if v.strip()]
    lines = ["| wake-up (one way) | p10 µs | p50 µs | p90 µs |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="vspan-wake-") as wd:
        binary = build(wd)
        for name, mode in (("cross-CPU, sleeping", "block"), ("cross-CPU, polling", "spin"),
                           ("same CPU, sleeping", "same")):
            lines.append(row(name, run(binary, mode, args.count, args.gap_us)))
        if values:
            original = HALT_POLL.read_text(encoding="utf-8").strip()
            try:
                for v in values:
                    HALT_POLL.write_text(str(v), encoding="utf-8")
                    lines.append(row(f"cross-CPU, sleeping, guest_halt_poll_ns {v}",
                                     run(binary, "block", args.count, args.gap_us)))
            finally:
                HALT_POLL.write_text(original, encoding="utf-8")
    sys.stdout.write(f"gap {args.gap_us} µs, {args.count} wake-ups per series, writer "
                     f"CPU{WRITER_CPU}, waiter CPU{WAITER_CPU}\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
