#!/usr/bin/env python3
"""MAC churn against everyone else: one port sends from ever new source MACs as fast as
it can; what does that cost the other ports' forwarding?

In-process on memory ports (no root): the switch's own code, batches of 64 frames.
Steady traffic is two port pairs (``a -> b``, ``c -> d``, 64 UDP flows each); the churner
sends batches of frames from new source MACs (every frame one MAC learned, moved or —
with the MAC table full — refused), interleaved one to one with the steady batches.

Measured (CPU time of this process, so a busy machine's other load counts less):

* steady kpps: the other ports' frames per CPU-second spent on their batches, without
  and with the churner; target: with churn at least 90 % of without;
* the steady frames' cache hit ratio during churn, flow-cache invalidations;
* the churner's own rate (its frames all go up the slow path, or are dropped there by the
  per-port slow-path budget, ``switch.upcall_budget``: ``--budget`` sets it) and how many
  of them the budget dropped;
* flow-cache memory: bytes per entry (the cache's own estimate and tracemalloc over a
  cache filled with distinct flows).

    .venv/bin/python bench/bench_churn.py            # 3 runs, prints the table
    .venv/bin/python bench/bench_churn.py --write    # and puts it into RESULTS.md
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

from common import machine_description, update_section
from memswitch import memory_switch

from vspan.datapath.engine import Engine
from vspan.packet.build import udp_frame
from vspan.ports.base import Frame
from vspan.ports.memory import MemoryPort

CONFIG = """
ports:
  churn: {type: memory}
  a: {type: memory}
  b: {type: memory}
  c: {type: memory}
  d: {type: memory}
"""
MAC = {p: f"02:00:00:00:00:{i:02x}" for i, p in enumerate("abcd", start=1)}
BATCH = 64


@dataclass
class Run:
    """One run's numbers (the three neighbour kinds measured in alternating chunks)."""

    idle_kpps: float = 0.0  # the other ports alone
    benign_kpps: float = 0.0  # ... beside a third port sending known flows
    churn_kpps: float = 0.0  # ... beside a third port churning source MACs
    hit_ratio: float = 0.0  # the other ports' cache hits during churn
    churner_kpps: float = 0.0
    invalidations: int = 0
    invalidated: int = 0
    macs_churned: int = 0
    budget_drops: int = 0  # churn frames the upcall budget dropped (never ran the pipeline)
    budget: int = 0  # switch.upcall_budget: misses per second and port


@dataclass
class Memory:
    """Flow-cache memory with ``entries`` distinct flows."""

    entries: int = 0
    estimate: int = 0  # bytes per entry, the cache's own estimate (vspan show counters)
    traced: float = 0.0  # bytes per entry, tracemalloc
    extra: list[str] = field(default_factory=list)


def switch(cache_size: int = 65536,
           budget: int | None = None) -> tuple[Engine, dict[str, MemoryPort]]:
    """The switch, every port's MAC learned (``budget``: switch.upcall_budget, None: the
    default)."""
    extra = "" if budget is None else f", upcall_budget: {budget}"
    return memory_switch(CONFIG + f"switch: {{flow_cache_size: {cache_size}{extra}}}\n", MAC)


def steady_batches() -> list[tuple[str, list[Frame]]]:
    """a -> b and c -> d, 64 flows each."""
    out = []
    for src, dst in (("a", "b"), ("c", "d")):
        out.append((src, [Frame(udp_frame(MAC[src], MAC[dst], "10.0.0.1", "10.0.0.2",
                                          1000 + i, 53, b"x" * 18)) for i in range(BATCH)]))
    return out


def churn_batch(n: int) -> list[Frame]:
    """64 frames from 64 source MACs never seen before (the ``n``-th batch)."""
    return [Frame(udp_frame(f"02:aa:{(n >> 8) & 0xFF:02x}:{n & 0xFF:02x}:00:{i:02x}", MAC["a"],
                            "10.0.9.1", "10.0.0.1", 7, 7, b"c")) for i in range(BATCH)]


def benign_batch() -> list[Frame]:
    """64 frames of one known source MAC (cache hits): a neighbour that behaves."""
    return [Frame(udp_frame("02:aa:00:00:00:01", MAC["a"], "10.0.9.1", "10.0.0.1", 7 + i, 7,
                            b"c")) for i in range(BATCH)]


def one_run(rounds: int, chunk: int = 25, budget: int | None = None) -> Run:
    """The other ports' rate alone, beside a benign neighbour, beside a MAC churner: the
    three measured in alternating chunks of ``chunk`` rounds (drift cancels out)."""
    engine, ports = switch(budget=budget)
    idx = engine.state.by_name
    steady = [(idx[p], frames) for p, frames in steady_batches()]
    third = idx["churn"]
    benign = benign_batch()
    for _ in range(2):  # warm: every steady and benign flow cached, the benign MAC learned
        for i, frames in steady:
            engine.process(i, frames)
        engine.process(third, benign)
    churn = [churn_batch(k) for k in range(rounds + chunk)]  # built before timing
    cpu = time.process_time
    cache = engine.cache
    spent = {"idle": 0.0, "benign": 0.0, "churn": 0.0}
    done = dict.fromkeys(spent, 0)
    r = Run()
    churn_spent = 0.0
    hits = misses = 0
    inval0, gone0 = cache.invalidations, cache.invalidated
    budget0 = engine.upcall.budget_drops
    n = 0
    while min(done.values()) < rounds:
        for phase in spent:
            for _ in range(chunk):
                if phase == "benign":
                    engine.process(third, benign)
                elif phase == "churn":
                    t = cpu()
                    engine.process(third, churn[n])
                    churn_spent += cpu() - t
                    n += 1
                h, m = cache.hits, cache.misses
                t = cpu()
                for i, frames in steady:
                    engine.process(i, frames)
                spent[phase] += cpu() - t
                if phase == "churn":
                    hits += cache.hits - h
                    misses += cache.misses - m
                for port in ports.values():
                    port.take()
            done[phase] += chunk
    total = rounds * 2 * BATCH
    r.idle_kpps = total / spent["idle"] / 1e3
    r.benign_kpps = total / spent["benign"] / 1e3
    r.churn_kpps = total / spent["churn"] / 1e3
    r.hit_ratio = hits / max(1, hits + misses)
    r.churner_kpps = n * BATCH / churn_spent / 1e3
    r.invalidations = cache.invalidations - inval0
    r.invalidated = cache.invalidated - gone0
    r.macs_churned = n * BATCH
    r.budget_drops = engine.upcall.budget_drops - budget0
    r.budget = engine.upcall.budget.rate
    engine.close()
    return r


def memory(entries: int) -> Memory:
    """Fill a cache with ``entries`` distinct flows; bytes per entry."""
    engine, ports = switch(cache_size=entries, budget=0)  # every miss cached, none budgeted
    a = engine.state.by_name["a"]
    frames = [Frame(udp_frame(MAC["a"], MAC["b"], f"10.{(i >> 16) & 0xFF}.{(i >> 8) & 0xFF}."
                              f"{i & 0xFF}", "10.0.0.2", 1000 + (i & 0x3FFF), 53, b"x"))
              for i in range(entries)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for k in range(0, entries, BATCH):
        engine.process(a, frames[k:k + BATCH])
        ports["b"].take()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    m = Memory(len(engine.cache.entries), engine.cache.memory(), grown / entries)
    engine.close()
    return m


def table(runs: list[Run], mem: Memory) -> str:
    """The RESULTS.md section."""
    def med(values: list[float]) -> float:
        return statistics.median(values)

    idle = med([r.idle_kpps for r in runs])
    benign = med([r.benign_kpps for r in runs])
    churn = med([r.churn_kpps for r in runs])
    lines = [
        "## MAC churn against the other ports (`bench/bench_churn.py`)",
        "",
        "In-process on memory ports, batches of 64 frames, CPU time of the benchmark "
        "process. Steady traffic a -> b and c -> d (64 UDP flows each); a third port sends "
        "nothing, or known flows (a benign neighbour), or frames from never-seen source MACs "
        "(the churner), one batch for each round of steady batches; the three measured in "
        f"alternating chunks. Medians of {len(runs)} runs on a shared, busy machine.",
        "",
        "| third port | other ports: kpps of their batches | relative | their cache hits |",
        "|---|---|---|---|",
        f"| idle | {idle:.0f} | 100 % | 100 % |",
        f"| benign neighbour (known flows) | {benign:.0f} | {100 * benign / idle:.0f} % "
        "| 100 % |",
        f"| churning source MACs ({runs[0].macs_churned} per run) | {churn:.0f} "
        f"| {100 * churn / idle:.0f} % | {100 * med([r.hit_ratio for r in runs]):.1f} % |",
        "",
        f"Against a benign neighbour the churner costs the other ports "
        f"**{100 * (1 - churn / benign):.0f} %** of their rate (target: at most 10 %); "
        f"flow-cache invalidations during churn: "
        f"{med([float(r.invalidations) for r in runs]):.0f} (entries forgotten: "
        f"{med([float(r.invalidated) for r in runs]):.0f}); the churner's own frames, all "
        f"on the slow path or dropped there: {med([r.churner_kpps for r in runs]):.0f} kpps.",
        "",
        f"Slow-path budget (`switch.upcall_budget`): {runs[0].budget} misses per second and "
        f"port; the churner's misses it dropped (reason `upcall-budget`, before the pipeline "
        f"runs): {med([float(r.budget_drops) for r in runs]):.0f} of "
        f"{runs[0].macs_churned} per run; the other ports' frames it dropped: 0 (their flows "
        f"are cached, and cached flows never count).",
        "",
        f"Flow-cache memory with {mem.entries} distinct flows: {mem.traced:.0f} bytes per "
        f"entry measured with tracemalloc ({mem.traced * mem.entries / 2**20:.1f} MiB); the "
        f"cache's own estimate (`vspan show counters`, metric `vspan_flow_cache_bytes`): "
        f"{mem.estimate} bytes per entry.",
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine_description()[:4]),
    ]
    return "\n".join(lines)


def main() -> int:
    """Measure, print, optionally write RESULTS.md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=400, help="batch rounds per phase")
    ap.add_argument("--entries", type=int, default=65536, help="flows for the memory figure")
    ap.add_argument("--budget", type=int, default=None,
                    help="switch.upcall_budget (default: the switch's default)")
    ap.add_argument("--write", action="store_true", help="put the section into RESULTS.md")
    args = ap.parse_args()
    runs = [one_run(args.rounds, budget=args.budget) for _ in range(args.runs)]
    mem = memory(args.entries)
    text = table(runs, mem)
    sys.stdout.write(text + "\n")
    if args.write:
        update_section(Path(__file__).name, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
