#!/usr/bin/env python3
"""Coverage-guided fuzzing of the whole engine with atheris (libFuzzer for Python).

Each input drives a fresh switch of the CI fuzz harness (``tests/helpers/fuzzing.py``:
VLANs, ACLs, stateful extended ACLs, firewall, guards, storm control, MTU, MAC limits,
local/RSPAN/ERSPAN mirrors, virtio-net ports) with up to four frames: either raw bytes
straight from the fuzzer (on a chosen port, with a raw virtio-net header on the ports
that take one) or frames the harness builds with scapy and mutates, its choices read
from the input. After every batch: no exception, and the accounting invariant
(``docs/accounting.md``) with the per-frame fate check; a failure raises, which atheris
reports as a crash with the input saved (``crash-*``) for replay.

Needs the optional dependency (``pip install -e '.[fuzz]'``). Bounded by libFuzzer's
own options, not run in CI::

    .venv/bin/python bench/fuzz_atheris.py -max_total_time=120
    .venv/bin/python bench/fuzz_atheris.py -max_total_time=600 /tmp/fz-corpus   # keep a corpus
    .venv/bin/python bench/fuzz_atheris.py crash-<hash>                           # replay one
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import atheris  # noqa: E402

with atheris.instrument_imports(include=["vspan"]):
    from tests.helpers import fuzzing

T = TypeVar("T")


class ProviderSource:
    """A :class:`fuzzing.Source` reading its choices from the fuzzer's input."""

    def __init__(self, fdp: Any) -> None:
        self.fdp = fdp

    def pick(self, seq: Sequence[T]) -> T:
        """One element of ``seq``."""
        return seq[int(self.fdp.ConsumeIntInRange(0, len(seq) - 1))]

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""
        return int(self.fdp.ConsumeIntInRange(lo, hi))


def one_input(data: bytes) -> None:
    """The fuzz target: a fresh switch, up to four batches from ``data``."""
    fdp = atheris.FuzzedDataProvider(data)
    src = ProviderSource(fdp)
    sw = fuzzing.make_switch()
    try:
        for _ in range(src.integer(1, 4)):
            port = src.pick(fuzzing.IN_PORTS)
            if src.integer(0, 1):
                vnet = b""
                if port in fuzzing.VNET_PORTS and src.integer(0, 1):
                    vnet = fdp.ConsumeBytes(10).ljust(10, b"\0")
                inp = fuzzing.Input(port, fdp.ConsumeBytes(src.integer(0, 1600)), vnet)
            else:
                made = fuzzing.make_input(src)
                inp = fuzzing.Input(port, made.data,
                                    made.vnet if port in fuzzing.VNET_PORTS else b"")
            problems = fuzzing.run_batch(sw, [inp], float(src.integer(0, 40)),
                                         trace=bool(src.integer(0, 1)))
            if problems:
                raise AssertionError(problems)
    finally:
        sw.close()


def main() -> None:
    """Hand the target to libFuzzer (its options come from the command line)."""
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
