"""The native table given a frame class it must not fill directly (``datapath/_slots.h``):
it calls the class for every frame it makes (VLAN pushes and pops, RSPAN copies) and
still does exactly what the Python replay does."""

from __future__ import annotations

import random

import pytest

from tests.helpers.agreement import pick_from
from tests.helpers.differential import PLAIN, run_pair
from vspan.datapath import native
from vspan.ports.base import Frame

pytestmark = pytest.mark.skipif(not native.available(),
                                reason="vspan.datapath._native was not built (no C compiler?)")


def test_a_subclassed_frame_is_called_and_the_replays_agree(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []

    class CountingFrame(Frame):
        __slots__ = ()

        def __init__(self, data: bytes, vnet: bytes = b"", ts_ns: int = 0, port: int = 0,
                     pid: int = 0) -> None:
            made.append(len(data))
            super().__init__(data, vnet, ts_ns, port, pid)

    monkeypatch.setattr(native, "Frame", CountingFrame)
    pick, integer = pick_from(random.Random(4))
    replayed, diff = run_pair(PLAIN, pick, integer, 800)
    assert diff == [], diff
    assert replayed > 50, f"the native table replayed only {replayed} frames"
    assert made, "the native table made no frame through the class"
