"""The native replay does what the Python replay does: the same random frame sequences
(VLAN tags, learned/unknown MACs, MAC churn, a filtered, sampled and truncated mirror,
RSPAN, ERSPAN, an MTU, ACLs, meters, storm limits, a stateful extended ACL, a
default-drop firewall with TCP conversations, malformed frames, offloaded frames with
virtio-net headers) in random batches through a switch with ``VSPAN_FASTPATH=native``
and one with ``python``; after every batch every output byte, offload header, ERSPAN
copy, counter and table must be equal."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.agreement import CONFIG, pick_from
from tests.helpers.differential import PLAIN, Recorder, run_pair
from tests.helpers.wiresender import WireRecorder
from tests.pipeline.harness import make_switch
from vspan.config.load import ConfigError
from vspan.datapath import native

pytestmark = pytest.mark.skipif(not native.available(),
                                reason="vspan.datapath._native was not built (no C compiler?)")


CAPPED = PLAIN.replace("    mirrored_packet_length: 96\n",
                       "    mirrored_packet_length: 96\n    max_bytes: 6000\n")


@pytest.mark.parametrize("config", [PLAIN, CONFIG, CAPPED], ids=["plain", "policy", "capped"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_native_and_python_agree(config: str, seed: int) -> None:
    pick, integer = pick_from(random.Random(seed))
    replayed, diff = run_pair(config, pick, integer, 1500)
    assert diff == [], diff
    assert replayed > 50, f"the native table replayed only {replayed} frames"


@pytest.mark.parametrize("config", [PLAIN, CONFIG], ids=["plain", "policy"])
def test_native_and_python_agree_on_the_wire(config: str) -> None:
    """The ERSPAN III session's copies sent by a real RawGreSender with the link-layer
    path (AF_PACKET with the cached Ethernet + IPv4 header; socket pairs stand for the
    sockets): the native replay's sendmmsg and the Python replay's sends put the same
    bytes on the wire — Ethernet, IPv4 length/id/checksum, GRE sequence — and count the
    same (the ERSPAN timestamp is masked: each side reads the clock)."""
    pick, integer = pick_from(random.Random(7))
    recorders: list[Recorder] = []
    replayed, diff = run_pair(config, pick, integer, 1500, wire=True, recorders=recorders)
    assert diff == [], diff
    assert replayed > 50, f"the native table replayed only {replayed} frames"
    native_rec, python_rec = recorders
    assert isinstance(native_rec, WireRecorder) and isinstance(python_rec, WireRecorder)
    assert native_rec.taken == python_rec.taken
    assert native_rec.taken["link"] > 100 and native_rec.taken["raw"] == 0, native_rec.taken


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(st.data())
def test_native_and_python_agree_drawn(data: st.DataObject) -> None:
    def pick(seq: Sequence[Any]) -> Any:
        return data.draw(st.sampled_from(seq))

    def integer(lo: int, hi: int) -> int:
        return data.draw(st.integers(lo, hi))

    _, diff = run_pair(PLAIN, pick, integer, 60)
    assert diff == [], diff


@pytest.mark.parametrize("setting,env,want", [
    ("auto", "", True), ("native", "", True), ("python", "", False),
    ("python", "native", True), ("native", "python", False), ("auto", "python", False),
])
def test_config_key_and_environment_choose(setting: str, env: str, want: bool,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``switch.fastpath`` chooses; ``VSPAN_FASTPATH`` overrides it."""
    monkeypatch.setenv("VSPAN_FASTPATH", env)
    sw = make_switch(f"switch: {{fastpath: {setting}}}\nports:\n  a: {{type: memory}}\n")
    try:
        assert (sw.engine.fastpath.native is not None) == want
        assert (sw.engine.cache.native is not None) == want
    finally:
        sw.engine.close()


def test_bad_config_value_is_rejected() -> None:
    with pytest.raises(ConfigError, match="fastpath"):
        make_switch("switch: {fastpath: turbo}\nports:\n  a: {type: memory}\n")
