"""Fuzzing the whole engine (issue 11, item 4): random and mutated frames — Ethernet,
VLAN tag stacks and odd TPIDs, IPv4/IPv6 (extension headers, fragments), ARP, TCP, UDP,
ICMP, DHCP, cut short, bit-flipped, with made-up lengths and virtio-net headers — through
a switch with VLANs, port and extended ACLs (stateful), guards, storm control, a
default-drop firewall, an MTU, MAC limits and local/RSPAN/ERSPAN mirrors with filters,
sampling and truncation (``tests/helpers/fuzzing.py``). After every batch: no exception,
every frame accounted for (``docs/accounting.md``), and a single frame's counted fate
matches what left the ports. ``bench/fuzz_long.py`` runs the same for longer."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.helpers import fuzzing

T = TypeVar("T")

# no shrinking: an example is a whole switch run, and shrinking one takes longer than
# the test may (the failure report lists every draw; bench/fuzz_long.py names seed and step)
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)


class _Draw:
    """A :class:`fuzzing.Source` drawing from hypothesis."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def pick(self, seq: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(seq))

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))


@settings(max_examples=800, deadline=None, database=None, phases=PHASES,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_fuzzed_frames_never_raise_and_are_all_accounted_for(data: st.DataObject) -> None:
    """Short runs on fresh switches (some with a capture running)."""
    with tempfile.TemporaryDirectory(prefix="fz-") as tmp:
        capture = str(Path(tmp) / "c.pcapng") if data.draw(st.booleans()) else None
        sw = fuzzing.make_switch(capture)
        try:
            problems = fuzzing.run_inputs(sw, _Draw(data), steps=4)
            assert problems == [], problems
        finally:
            sw.close()


@settings(max_examples=30, deadline=None, database=None, phases=PHASES,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_fuzzed_runs_with_state_building_up(data: st.DataObject) -> None:
    """Longer runs: learned MACs, connections, sessions, buckets, reloads, link changes."""
    sw = fuzzing.make_switch()
    try:
        problems = fuzzing.run_inputs(sw, _Draw(data), steps=40)
        assert problems == [], problems
    finally:
        sw.close()
