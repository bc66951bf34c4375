"""Trace and datapath agree: for every frame, what ``vspan trace`` predicted just before
(outputs with their bytes, VLAN operations, mirror copies local/RSPAN/ERSPAN, drops with
reason and rule, MAC learning, firewall connections, extended-ACL sessions, storm
buckets, meters, flood counts) is what the switch then did — and tracing changed
nothing. Random frames over VLAN tags, learned and unknown MACs, ACL-matching and not,
TCP flag sequences through a default-drop stateful firewall, a filtered, sampled and
truncated mirror, RSPAN and ERSPAN sessions, malformed frames."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.agreement import Conversations, make, pick_from, random_case, run_case


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(st.data())
def test_trace_predicts_each_frame(data: st.DataObject) -> None:
    sw, rec = make()

    def pick(seq: Sequence[Any]) -> Any:
        return data.draw(st.sampled_from(seq))

    def integer(lo: int, hi: int) -> int:
        return data.draw(st.integers(lo, hi))

    conv = Conversations()
    try:
        for _ in range(40):
            v = run_case(sw, rec, random_case(pick, integer, conv))
            assert v.differences == [], (v.case, v.differences)
    finally:
        sw.engine.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_trace_predicts_a_long_random_run(seed: int) -> None:
    """1 000 frames per seed through one switch (state builds up: connections, MACs)."""
    sw, rec = make()
    pick, integer = pick_from(random.Random(seed))
    conv = Conversations()
    try:
        for i in range(1000):
            v = run_case(sw, rec, random_case(pick, integer, conv))
            assert v.differences == [], (i, v.case, v.differences)
            if i % 200 == 199:
                sw.engine.housekeeping(sw.clock.now)
    finally:
        sw.engine.close()
