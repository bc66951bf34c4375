#!/usr/bin/env python3
"""Trace against datapath, at length: random frames through a switch on memory ports; for
each, what ``vspan trace`` predicted just before is compared with what the switch did
(outputs with bytes, VLAN operations, mirror copies local/RSPAN/ERSPAN, drops with reason
and rule, MAC learning, firewall connections, extended-ACL sessions, storm buckets,
meters, flood counts; and that tracing changed nothing).

The switch, the frames and the comparison are those of the CI test
(``tests/helpers/agreement.py``, ``tests/pipeline/test_trace_agreement.py``), run for
many more frames. In-process, no root needed.

    .venv/bin/python bench/bench_agreement.py --frames 100000 --seeds 1 2 3
    .venv/bin/python bench/bench_agreement.py --frames 100000 --write   # into RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import update_section  # noqa: E402

from tests.helpers.agreement import (  # noqa: E402
    Conversations,
    make,
    pick_from,
    random_case,
    run_case,
)


@dataclass
class SeedResult:
    """What one seed's frames did, and where trace and datapath disagreed."""

    seed: int
    frames: int
    disagreed: int = 0
    seconds: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)
    differences: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)


def run(frames: int, seed: int) -> SeedResult:
    """``frames`` random frames with ``seed``: counts of what happened and of disagreements."""
    sw, rec = make()
    rng = random.Random(seed)
    pick, integer = pick_from(rng)
    conv = Conversations()
    r = SeedResult(seed, frames)
    kinds = r.kinds
    t0 = time.monotonic()
    try:
        for i in range(frames):
            case = random_case(pick, integer, conv)
            v = run_case(sw, rec, case)
            outcome = v.outcome
            if outcome.outputs:
                kinds["delivered"] += 1
            if outcome.flooded:
                kinds["flooded"] += 1
            for d in outcome.drops:
                kinds[f"drop {d.reason.value}"] += 1
            if any(c.ok for c in outcome.copies):
                kinds["mirrored"] += 1
            if outcome.replies:
                kinds["answered (reject)"] += 1
            if outcome.learned:
                kinds["learning"] += 1
            for table in ("conn", "session", "storm", "meter"):
                if any(fx[0] == table for fx in outcome.effects):
                    kinds[f"{table} state changed"] += 1
            if v.differences:
                r.disagreed += 1
                for diff in v.differences:
                    r.differences[diff.split(":")[0]] += 1
                if len(r.examples) < 5:
                    r.examples.append(f"frame {i} ({case.what}): {v.differences}")
            if i % 500 == 499:
                sw.engine.housekeeping(sw.clock.now)
    finally:
        sw.engine.close()
    r.seconds = round(time.monotonic() - t0, 1)
    return r


def section(results: list[SeedResult]) -> str:
    """The RESULTS.md section."""
    total = sum(r.frames for r in results)
    bad = sum(r.disagreed for r in results)
    kinds: Counter[str] = Counter()
    for r in results:
        kinds.update(r.kinds)
    lines = [
        "## Trace against datapath (`bench/bench_agreement.py`)",
        "",
        f"{total} random frames ({len(results)} seeds: "
        f"{', '.join(str(r.seed) for r in results)}) through a switch on memory ports "
        "(access and trunk VLANs, a MAC limit, port ACL with a meter, storm limit, stateful "
        "extended ACL, default-drop stateful firewall with strict/non-strict sections and a "
        "reject rule, a filtered + sampled + truncated local mirror, RSPAN, ERSPAN III; "
        "random TCP segments and scripted TCP conversations). For each frame the trace's "
        "prediction was compared with what the switch then did.",
        "",
        f"**Disagreements: {bad} of {total} frames.**",
        "",
        "| what the frames did (a frame may count in several rows) | frames |",
        "|---|---|",
        *(f"| {k} | {n} |" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])),
        "",
        f"Run time: {', '.join(str(r.seconds) + ' s' for r in results)} "
        "(in-process, on a shared, busy machine).",
    ]
    return "\n".join(lines)


def main() -> int:
    """Run, print, optionally write RESULTS.md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100_000, help="frames per seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--write", action="store_true", help="put the section into RESULTS.md")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = len(args.seeds)
    results = [run(args.frames // n + (1 if i < args.frames % n else 0), s)
               for i, s in enumerate(args.seeds)]
    if args.json:
        sys.stdout.write(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    text = section(results)
    sys.stdout.write(text + "\n")
    for r in results:
        for e in r.examples:
            sys.stdout.write(f"seed {r.seed}: {e}\n")
    if args.write:
        update_section("bench_agreement.py", text)
    return 1 if any(r.disagreed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
