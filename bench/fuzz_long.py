#!/usr/bin/env python3
"""Fuzzing at length: the CI fuzz harness (``tests/helpers/fuzzing.py``,
``tests/pipeline/test_fuzz_pipeline.py``) driven by seeded ``random.Random`` sources for
many more frames. Each seed runs one switch for ``--steps`` batches (state builds up:
MACs, connections, sessions, buckets), then a fresh one for the next seed. Stops at the
first exception or accounting problem and prints the seed and step to replay it.

    .venv/bin/python bench/fuzz_long.py --steps 20000 --seeds 1 2 3
    .venv/bin/python bench/fuzz_long.py --minutes 10            # seeds 1, 2, ... until then

Even seeds run with a capture (filter, dropped frames) on several ports. Prints what
the frames exercised (fates per port, drop reasons, mirror copies) so a run
that exercised little is visible. In-process, no root needed.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import fuzzing  # noqa: E402
from tests.helpers.agreement import Conversations  # noqa: E402
from vspan.datapath import accounting  # noqa: E402


def run_seed(seed: int, steps: int, totals: Counter[str]) -> bool:
    """One seeded run (even seeds with a capture running); ``False`` (after printing
    why) at the first problem."""
    with tempfile.TemporaryDirectory(prefix="fz-") as tmp:
        capture = str(Path(tmp) / "c.pcapng") if seed % 2 == 0 else None
        return _run_seed(seed, steps, totals, capture)


def _run_seed(seed: int, steps: int, totals: Counter[str], capture: str | None) -> bool:
    sw = fuzzing.make_switch(capture)
    src = fuzzing.RandomSource(random.Random(seed))
    step = 0
    history: list[fuzzing.Input] = []
    conv = Conversations()
    try:
        for step in range(steps):
            problems = fuzzing.run_inputs(sw, src, 1, history, conv)
            if problems:
                print(f"seed {seed} step {step}: {problems}")
                return False
    except Exception:  # report the seed and step, then the traceback
        print(f"seed {seed} step {step}: exception")
        traceback.print_exc()
        return False
    finally:
        st = sw.engine.state
        for a in accounting.accounts(st):
            totals["received"] += a.received
            totals["forwarded"] += a.forwarded
            totals["consumed"] += a.consumed
            for reason, n in a.dropped.items():
                totals[f"dropped {reason}"] += n
        for (_, reason, _), n in st.drops.by_key.items():
            totals[f"drop events {reason}"] += n
        for m in st.mirrors.values():
            for k, v in m.counters().items():
                if isinstance(v, int):
                    totals[f"mirror {m.name} {k}"] += v
        totals["steps"] += step + 1
        totals["erspan copies recorded"] += len(sw.sender.sent)
        totals["cache hits"] += sw.engine.cache.hits
        totals["upcalls"] += sw.engine.upcall.upcalls
        sw.close()
    return True


def main() -> int:
    """Run the seeds; print what was exercised."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20000, help="batches per seed")
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--minutes", type=float, default=0.0,
                    help="run seeds 1, 2, ... until this much time has passed")
    args = ap.parse_args()
    totals: Counter[str] = Counter()
    t0 = time.monotonic()
    seeds = args.seeds if args.seeds else [1, 2, 3]
    ok = True
    ran = 0
    if args.minutes:
        seed = 1
        while ok and time.monotonic() - t0 < args.minutes * 60:
            ok = run_seed(seed, args.steps, totals)
            ran += 1
            seed += 1
    else:
        for seed in seeds:
            ok = run_seed(seed, args.steps, totals) and ok
            ran += 1
    took = time.monotonic() - t0
    print(f"{ran} seeds, {totals['received']} frames received in {took:.0f} s "
          f"({'no problem' if ok else 'PROBLEM FOUND'}; busy shared machine)")
    for k, v in sorted(totals.items()):
        print(f"  {k}: {v}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
