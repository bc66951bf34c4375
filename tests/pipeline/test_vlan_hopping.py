"""VLAN hopping: hostile tag stacks on memory ports (issue 7, item 1).

An access port and an untagged port are untagged on the wire: a tagged frame
from their VM is dropped (a priority tag alone is the one exception). A trunk
carries Q-in-Q in an allowed outer 802.1Q tag, but a frame whose delivery
would pop the outer tag and expose an inner one is dropped for that output.
vspan speaks 802.1Q: an outer 802.1ad / 0x9100 tag is dropped on every port.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether

from tests.helpers.vlan_frames import HOSTILE, VLAN_REASONS, Hostile, frame, tags_of
from tests.pipeline.harness import Switch, make_switch
from vspan.datapath.decision import VLAN_SET
from vspan.datapath.vlanops import apply as vlan_apply

VM, VM2, T, T2, T3 = ("02:00:00:00:10:01", "02:00:00:00:10:02", "02:00:00:00:7e:01",
                      "02:00:00:00:7e:02", "02:00:00:00:7e:03")

CONFIG = """
ports:
  acc10: {type: memory, vlan: {mode: access, id: 10}}
  acc10b: {type: memory, vlan: {mode: access, id: 10}}
  acc20: {type: memory, vlan: {mode: access, id: 20}}
  plain: {type: memory}
  trunk: {type: memory, vlan: {mode: trunk, allowed: [10, 20], native: 10}}
  trunk2: {type: memory, vlan: {mode: trunk, allowed: [10, 20], native: 99}}
  trunk3: {type: memory, vlan: {mode: trunk, allowed: [10]}}
"""
PORTS = ("acc10", "acc10b", "acc20", "plain", "trunk", "trunk2", "trunk3")


@pytest.fixture
def sw() -> Iterator[Switch]:
    s = make_switch(CONFIG)
    # the MAC behind the native-10 trunk is known in VLAN 10 (so unicast goes only there)
    s.send("trunk", bytes(Ether(src=T, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.9.0.20")))
    for p in PORTS:
        s.got(p)
    yield s
    s.engine.close()


def _everything_out(s: Switch) -> dict[str, list[bytes]]:
    return {p: got for p in PORTS if (got := s.got(p))}


def _udp(src: str, dst: str, *tags: Dot1Q | Dot1AD) -> bytes:
    eth = Ether(src=src, dst=dst)
    for t in tags:
        eth = eth / t
    return bytes(eth / IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=1, dport=2) / b"q")


@pytest.mark.parametrize("port", ["acc10", "plain"])
@pytest.mark.parametrize("h", HOSTILE, ids=lambda h: h.name)
def test_tagged_frame_from_untagged_port_is_dropped(sw: Switch, h: Hostile, port: str) -> None:
    data = frame(h, VM, T)
    sw.send(port, data, data)  # twice: the second one is replayed from the flow cache
    assert _everything_out(sw) == {}
    assert sw.drops(h.reason) == 2
    assert sw.engine.state.drops.for_port(sw.engine.state.by_name[port]) == {(h.reason, ""): 2}
    assert sw.engine.state.port(port).counters.dropped == 2


@pytest.mark.parametrize("h", HOSTILE, ids=lambda h: h.name)
def test_trace_explains_each_hostile_drop(sw: Switch, h: Hostile) -> None:
    decision, _outcome, tracer = sw.engine.trace("acc10", frame(h, VM, T))
    assert [d.reason.value for d in decision.drops] == [h.reason]
    assert not decision.outputs
    text = tracer.render()
    vlan_lines = [line for line in text.splitlines() if line.startswith("vlan")]
    assert vlan_lines and vlan_lines[-1].endswith("drop"), text
    if h.reason == "vlan-tpid":
        assert "802.1Q" in text and "0x" in text, text
    elif h.reason == "vlan-inner-tag":
        assert "inner" in text, text
    else:
        assert "access port" in text and "untagged on the wire" in text, text


def test_untagged_frame_from_access_port_still_reaches_the_native_trunk(sw: Switch) -> None:
    data = _udp(VM, T)
    sw.send("acc10", data)
    assert _everything_out(sw) == {"trunk": [data]}


def test_priority_tag_alone_is_untagged(sw: Switch) -> None:
    """VID 0 is the one tag an access port takes: it joins the access VLAN."""
    data = _udp(VM, "ff:ff:ff:ff:ff:ff", Dot1Q(vlan=0, prio=3))
    sw.send("acc10", data)
    out = _everything_out(sw)
    untagged = _udp(VM, "ff:ff:ff:ff:ff:ff")
    assert out["acc10b"] == [untagged] and out["trunk"] == [untagged]
    for port in ("trunk2", "trunk3"):  # a tagged egress carries VLAN 10 and keeps the priority
        (got,) = out[port]
        assert tags_of(got) == [(0x8100, 10)] and got[14] >> 5 == 3
    assert set(out) == {"acc10b", "trunk", "trunk2", "trunk3"}


def test_qinq_through_trunks_never_exposes_the_inner_tag(sw: Switch) -> None:
    """Q-in-Q in an allowed outer tag crosses to a tagged egress as it is; an egress
    that would pop the outer tag (access, native) would expose VLAN 20: dropped."""
    data = _udp(T2, "ff:ff:ff:ff:ff:ff", Dot1Q(vlan=10), Dot1Q(vlan=20))
    sw.send("trunk2", data, data)
    assert _everything_out(sw) == {"trunk3": [data, data]}
    assert sw.drops("vlan-inner-tag") == 6  # acc10, acc10b, trunk (native 10), twice
    by_port = {sw.engine.state.port_names[p]: n for (p, r, _), n in
               sw.engine.state.drops.by_key.items() if r == "vlan-inner-tag"}
    assert by_port == {"acc10": 2, "acc10b": 2, "trunk": 2}


def test_qinq_to_a_learned_mac_behind_an_access_port_is_dropped(sw: Switch) -> None:
    sw.send("acc10", _udp(VM, "ff:ff:ff:ff:ff:ff"))
    _everything_out(sw)
    sw.send("trunk3", _udp(T3, VM, Dot1Q(vlan=10), Dot1AD(vlan=20)))
    assert _everything_out(sw) == {}
    assert sw.drops("vlan-inner-tag") == 1
    decision, _outcome, tracer = sw.engine.trace("trunk3",
                                                 _udp(T3, VM, Dot1Q(vlan=10), Dot1Q(vlan=20)))
    assert [d.reason.value for d in decision.drops] == ["vlan-inner-tag"]
    assert "inner" in tracer.render()


@pytest.mark.parametrize("tpid", [0x88A8, 0x9100])
def test_outer_s_tag_on_a_trunk_is_dropped(sw: Switch, tpid: int) -> None:
    data = bytearray(_udp(T2, "ff:ff:ff:ff:ff:ff", Dot1Q(vlan=10)))
    data[12:14] = tpid.to_bytes(2, "big")
    sw.send("trunk2", bytes(data))
    assert _everything_out(sw) == {}
    assert sw.drops("vlan-tpid") == 1


def test_priority_tag_over_another_tag_on_a_trunk_is_dropped(sw: Switch) -> None:
    sw.send("trunk", _udp(T, "ff:ff:ff:ff:ff:ff", Dot1Q(vlan=0), Dot1Q(vlan=20)))
    assert _everything_out(sw) == {}
    assert sw.drops("vlan-inner-tag") == 1


def test_flow_cache_tells_outer_tpids_apart(sw: Switch) -> None:
    """An 802.1Q-tagged flow in the cache must not let the same fields under 0x88a8 in."""
    q = bytes(Ether(src=T2, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=10) / ARP(psrc="10.9.0.7"))
    sw.send("trunk2", q, q)  # learned, then cached
    assert sw.engine.cache.entries
    _everything_out(sw)
    ad = bytearray(q)
    ad[12:14] = b"\x88\xa8"
    sw.send("trunk2", bytes(ad))
    assert _everything_out(sw) == {}
    assert sw.drops("vlan-tpid") == 1


def test_reasons_are_vlan_reasons() -> None:
    assert {h.reason for h in HOSTILE} <= VLAN_REASONS


def test_vlan_set_writes_an_8021q_tag() -> None:
    """VLAN_SET (re-tagging a priority tag) always leaves an 802.1Q tag, whatever TPID came."""
    for tpid in (0x8100, 0x88A8, 0x9100):
        data = bytearray(_udp(VM, T, Dot1Q(vlan=0, prio=5, dei=1)))
        data[12:14] = tpid.to_bytes(2, "big")
        out, _ = vlan_apply(VLAN_SET, 10, bytes(data), b"")
        assert tags_of(out) == [(0x8100, 10)]
        assert out[14] >> 5 == 5 and out[14] & 0x10  # PCP and DEI kept
        assert out[16:] == bytes(data[16:])
