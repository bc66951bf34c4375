"""Remote mirror copies carry the frame's VLAN (issue 7, item 2), on memory ports.

ERSPAN: a frame untagged on the wire in an access VLAN (or a trunk's native
VLAN) is sent with that VLAN in the ERSPAN header (``En`` = 0); a tagged frame
with its own tag (``En`` = 3). RSPAN with ``keep_original_tag``: the access VLAN
becomes the copy's inner tag. The pipeline decides the VLAN (it classified the
frame); the engine only passes it on. The ERSPAN sender is replaced by one that
encapsulates with the real encapsulator and keeps the payloads (nothing is sent),
decoded by scapy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import GRE, Dot1Q, Ether

from tests.helpers.vlan_frames import tags_of
from tests.pipeline.harness import Switch, make_switch
from vspan.mirror.encap import EncapType, ErspanConfig, ErspanEncapsulator, SenderCounters

VM, PEER, T = "02:00:00:00:20:01", "02:00:00:00:20:02", "02:00:00:00:20:03"
BCAST = "ff:ff:ff:ff:ff:ff"

CONFIG = """
ports:
  vm: {type: memory, vlan: {mode: access, id: 10}}
  peer: {type: memory, vlan: {mode: access, id: 10}}
  t: {type: memory, vlan: {mode: trunk, allowed: [10, 20], native: 30}}
  plain: {type: memory}
  up: {type: memory, vlan: {mode: trunk, allowed: [999]}}
mirrors:
  er2: {sources: [vm], erspan: {type: erspan2, remote_ip: 127.0.0.1, session_id: 1}}
  er3: {sources: [vm], erspan: {type: erspan3, remote_ip: 127.0.0.1, session_id: 2}}
  er2t: {sources: [{port: t, direction: ingress}, plain],
         erspan: {type: erspan2, remote_ip: 127.0.0.1, session_id: 3}}
  rs: {sources: [vm], rspan: {port: up, vlan: 999, keep_original_tag: true}}
  rsplain: {sources: [plain], rspan: {port: up, vlan: 999, keep_original_tag: true}}
  rsdrop: {sources: [{port: t, direction: ingress}], rspan: {port: up, vlan: 999}}
"""


class RecordingSender:
    """Stands in for RawGreSender: the real encapsulation, kept instead of sent."""

    def __init__(self, type_: str, session_id: int) -> None:
        self.encap = ErspanEncapsulator(ErspanConfig("127.0.0.1", EncapType(type_),
                                                     session_id=session_id))
        self.payloads: list[bytes] = []
        self.counters = SenderCounters()

    def send(self, frame: bytes, *, egress: bool = False, truncated: bool = False,
             ts_ns: int | None = None, vlan: int | None = None, cos: int = 0) -> bool:
        self.payloads.append(self.encap.encapsulate(frame, egress=egress, truncated=truncated,
                                                    vlan=vlan, cos=cos))
        return True

    def close(self) -> None:
        pass

    def decoded(self) -> list[Any]:
        out = [GRE(p) for p in self.payloads]
        self.payloads.clear()
        return out


@pytest.fixture
def sw() -> Iterator[Switch]:
    s = make_switch(CONFIG)
    for m in s.engine.state.mirrors.values():
        if m.config.erspan is not None:
            if m.sender is not None:
                m.sender.close()
            m.sender = RecordingSender(m.config.erspan.type.value, m.config.erspan.session_id)
    yield s
    s.engine.close()


def sender(s: Switch, name: str) -> RecordingSender:
    m = next(m for m in s.engine.state.mirrors.values() if m.name == name)
    assert isinstance(m.sender, RecordingSender)
    return m.sender


def udp(src: str, dst: str, *tags: Dot1Q) -> bytes:
    eth = Ether(src=src, dst=dst)
    for t in tags:
        eth = eth / t
    return bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"m")


def test_erspan_copies_of_an_access_port_carry_its_vlan(sw: Switch) -> None:
    sw.send("vm", udp(VM, BCAST))  # ingress copy: untagged on the wire, VLAN 10
    sw.send("t", udp(T, VM, Dot1Q(vlan=10, prio=2)))  # delivered to vm untagged: egress copy
    for name, layer in (("er2", ERSPAN_II), ("er3", ERSPAN_III)):
        got = sender(sw, name).decoded()
        assert len(got) == 2, name
        for g in got:
            e = g[layer]
            assert e.vlan == 10, (name, e.show(dump=True))
            assert tags_of(bytes(e.payload)) == []  # the copy itself is untagged, as on the wire
            if layer is ERSPAN_II:
                assert e.en == 0  # no tag in the frame: the VLAN is carried in the header
        assert [g[layer].cos for g in got] == [0, 0]


def test_erspan_copy_of_a_tagged_frame_keeps_its_tag(sw: Switch) -> None:
    sw.send("t", udp(T, VM, Dot1Q(vlan=20, prio=5)))
    (g,) = sender(sw, "er2t").decoded()
    e = g[ERSPAN_II]
    assert e.vlan == 20 and e.en == 3 and e.cos == 5
    assert Ether(bytes(e.payload))[Dot1Q].vlan == 20


def test_erspan_copy_of_the_native_vlan_and_the_untagged_network(sw: Switch) -> None:
    sw.send("t", udp(T, BCAST))  # untagged on a trunk: native VLAN 30
    sw.send("plain", udp(PEER, BCAST))  # the untagged network: no VLAN
    native, untagged = (g[ERSPAN_II] for g in sender(sw, "er2t").decoded())
    assert native.vlan == 30 and native.en == 0
    assert untagged.vlan == 0 and untagged.en == 0


def test_erspan_copy_of_a_priority_tagged_frame_names_the_vlan(sw: Switch) -> None:
    sw.send("vm", udp(VM, BCAST, Dot1Q(vlan=0, prio=6)))
    (g,) = sender(sw, "er2").decoded()
    e = g[ERSPAN_II]
    assert e.vlan == 10 and e.cos == 6 and e.en == 3


def test_decision_carries_the_vlan_of_the_copies(sw: Switch) -> None:
    decision, _, _ = sw.engine.trace("vm", udp(VM, PEER))
    assert {c.vlan for c in decision.mirrors()} == {10}


def test_rspan_keep_original_tag_carries_the_access_vlan_inside(sw: Switch) -> None:
    frame = udp(VM, BCAST)
    sw.send("vm", frame)
    (copy,) = sw.got("up")
    assert tags_of(copy) == [(0x8100, 999), (0x8100, 10)]
    assert copy[:12] + copy[20:] == frame  # the rest of the frame is untouched


def test_rspan_keep_original_tag_of_the_untagged_network_adds_no_tag(sw: Switch) -> None:
    frame = udp(PEER, BCAST)
    sw.send("plain", frame)
    (copy,) = sw.got("up")
    assert tags_of(copy) == [(0x8100, 999)]


def test_rspan_without_keep_original_tag_replaces_the_tag(sw: Switch) -> None:
    sw.send("t", udp(T, VM, Dot1Q(vlan=20)))
    (copy,) = sw.got("up")
    assert tags_of(copy) == [(0x8100, 999)]
