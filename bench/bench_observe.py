#!/usr/bin/env python3
"""What does `vspan observe` cost forwarding? (not a test)

In-process on memory ports (no root): the switch's own code, batches of 64 frames,
a -> b, 64 UDP flows. Four setups, each measured in one block per run (an
observer attached throughout, so its cap is the cap), the order rotated from run
to run (a busy machine's drift falls on all of them alike):

* **no observer**: the fast path as it is when nobody observes;
* **observer at the cap**: every event kind (``--verdict all``), the default cap of
  1000 events/s, far below the frame rate, so the cap is what limits it;
* **filtered observer**: ``-f "udp src port 1000"`` (1 flow in 64), default cap;
* **uncapped observer**: every event, cap 10^9/s (what the cap protects from).

An observer is read as the daemon reads it: a reader thread takes its events,
builds them and encodes them to JSON, polling every 50 ms when idle (the API's
stream loop). The forwarding rate is frames per wall-clock second of the
forwarding loop (the reader competes with it for the interpreter, as in the
daemon); the reader's CPU seconds are reported beside it.

    .venv/bin/python bench/bench_observe.py            # 4 runs of 4 x 5 s, prints the table
    .venv/bin/python bench/bench_observe.py --write    # and puts it into RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

from common import machine_description, update_section
from memswitch import memory_switch

from vspan.capture.filter import compile_filter
from vspan.capture.observe import DEFAULT_MAX_RATE, Observer, ObserveSpec
from vspan.control.observing import SwitchNames
from vspan.datapath.engine import Engine
from vspan.packet.build import udp_frame
from vspan.ports.base import Frame
from vspan.ports.memory import MemoryPort

CONFIG = """
ports:
  a: {type: memory}
  b: {type: memory}
"""
MAC = {"a": "02:00:00:00:00:01", "b": "02:00:00:00:00:02"}
BATCH = 64
ALL = frozenset({"received", "forwarded", "mirrored", "dropped"})
SETUPS = ("none", "capped", "filtered", "uncapped")
LABELS = {"none": "no observer",
          "capped": f"observer at the cap (all events, {DEFAULT_MAX_RATE:.0f} ev/s)",
          "filtered": 'filtered observer (`-f "udp src port 1000"`: 1 flow in 64)',
          "uncapped": "uncapped observer (all events, cap 10^9 ev/s)"}


@dataclass
class Run:
    """One run: kpps per setup, events read, reader CPU seconds."""

    kpps: dict[str, float] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)
    reader_cpu: dict[str, float] = field(default_factory=dict)


def switch() -> tuple[Engine, dict[str, MemoryPort]]:
    """The switch with both MACs learned."""
    return memory_switch(CONFIG, MAC)


class Reader:
    """Reads the active observer like the API's stream does (a thread)."""

    def __init__(self) -> None:
        self.obs: Observer | None = None
        self.events = 0
        self.cpu = 0.0
        self.busy = False  # taking or encoding a batch
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            obs = self.obs
            self.busy = True
            t = time.thread_time()
            batch = obs.take() if obs is not None else []
            for ev in batch:
                json.dumps(ev, separators=(",", ":"))
            self.events += len(batch)
            self.cpu += time.thread_time() - t
            self.busy = False
            if not batch:
                time.sleep(0.05)


def spec(setup: str) -> ObserveSpec:
    """The observer of a setup."""
    if setup == "capped":
        return ObserveSpec(kinds=ALL)
    if setup == "filtered":
        return ObserveSpec(filter=compile_filter("udp src port 1000"))
    return ObserveSpec(kinds=ALL, max_rate=1e9)


def one_run(seconds: float, order: tuple[str, ...]) -> Run:
    """Each setup for ``seconds`` in one block (the observer attached throughout, so its
    cap is the cap: a one-second burst, then ``max_rate``), in ``order``."""
    engine, ports = switch()
    a = engine.state.by_name["a"]
    frames = [Frame(udp_frame(MAC["a"], MAC["b"], "10.0.0.1", "10.0.0.2", 1000 + i, 53,
                              b"x" * 18)) for i in range(BATCH)]
    engine.process(a, frames)  # every flow cached
    ports["b"].take()
    reader = Reader()
    names = SwitchNames(engine)
    r = Run()
    clock = time.perf_counter
    for i, setup in enumerate(order):
        obs = None
        if setup != "none":
            obs = Observer(i, spec(setup), names, "bench", "bench", engine.clock())
            engine.add_observer(obs)
            reader.obs = obs
        e0, c0 = reader.events, reader.cpu
        done = 0
        t = clock()
        deadline = t + seconds
        while clock() < deadline:
            for _ in range(20):
                engine.process(a, frames)
                ports["b"].take()
            done += 20 * BATCH
        spent = clock() - t
        if obs is not None:
            engine.remove_observer(obs.id)
            while obs.pending:  # let the reader finish the block's events
                time.sleep(0.01)
            reader.obs = None
            while reader.busy:
                time.sleep(0.01)
            c = obs.counters()
            r.suppressed[setup] = c["sampled_out"] + c["rate_limited"] + c["queue_full"]
        r.kpps[setup] = done / spent / 1e3
        r.events[setup] = reader.events - e0
        r.reader_cpu[setup] = reader.cpu - c0
    reader.stop.set()
    reader.thread.join()
    engine.close()
    return r


def table(runs: list[Run], seconds: float) -> str:
    """The RESULTS.md section."""
    def med(values: list[float]) -> float:
        return statistics.median(values)

    base = med([r.kpps["none"] for r in runs])
    lines = [
        "## Cost of `vspan observe` (`bench/bench_observe.py`)",
        "",
        "In-process on memory ports, batches of 64 frames a -> b (64 UDP flows, all cached), "
        "wall-clock rate of the forwarding loop with a reader thread taking, building and "
        "JSON-encoding the events as the daemon's stream does; each setup "
        f"{seconds:.0f} s in one block per run, the order rotated run to run. Medians of "
        f"{len(runs)} runs, **on a shared, busy machine** (2 cores, other helpers' tests "
        "running).",
        "",
        "| setup | kpps | relative | events read per block | suppressed per block "
        "| reader CPU s per block |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETUPS:
        k = med([r.kpps[s] for r in runs])
        ev = med([float(r.events[s]) for r in runs])
        sup = med([float(r.suppressed.get(s, 0)) for r in runs])
        rc = med([r.reader_cpu[s] for r in runs])
        lines.append(f"| {LABELS[s]} | {k:.0f} | {100 * k / base:.0f} % | {ev:.0f} | "
                     f"{sup:.0f} | {rc:.2f} |")
    lines += ["", "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine_description()[:4])]
    return "\n".join(lines)


def main() -> int:
    """Run, print, optionally write RESULTS.md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0, help="per setup and run")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    args = ap.parse_args()
    runs = []
    for i in range(args.runs):
        order = SETUPS[i % len(SETUPS):] + SETUPS[:i % len(SETUPS)]  # rotated run to run
        r = one_run(args.seconds, order)
        sys.stderr.write(f"run {i + 1}: " + ", ".join(f"{s} {r.kpps[s]:.0f} kpps"
                                                       for s in SETUPS) + "\n")
        runs.append(r)
    text = table(runs, args.seconds)
    sys.stdout.write(text + "\n")
    if args.write:
        update_section("bench_observe", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
