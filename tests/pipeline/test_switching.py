"""Learning, flooding, VLANs and drop reasons on memory ports (scapy builds the frames)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tests.pipeline.harness import Switch, make_switch

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
BCAST = "ff:ff:ff:ff:ff:ff"


def icmp(src: str, dst: str, vlan: int | None = None) -> bytes:
    eth = Ether(src=src, dst=dst)
    if vlan is not None:
        return bytes(eth / Dot1Q(vlan=vlan) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())
    return bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())


@pytest.fixture
def flat() -> Iterator[Switch]:
    sw = make_switch("ports: {a: {type: memory}, b: {type: memory}, c: {type: memory}}")
    yield sw
    sw.engine.close()


def test_unknown_unicast_floods_then_learned_unicast(flat: Switch) -> None:
    flat.send("a", icmp(A, B))
    assert len(flat.got("b")) == 1 and len(flat.got("c")) == 1
    flat.send("b", icmp(B, A))  # A was learned on a: reply goes only there
    assert len(flat.got("a")) == 1 and flat.got("c") == []
    flat.send("a", icmp(A, B))  # B now learned on b
    assert len(flat.got("b")) == 1 and flat.got("c") == []


def test_broadcast_floods_everywhere_but_ingress(flat: Switch) -> None:
    arp = bytes(Ether(src=A, dst=BCAST) / ARP(psrc="10.0.0.1", pdst="10.0.0.2"))
    flat.send("a", arp)
    assert flat.got("a") == []
    assert flat.got("b") == [arp] and flat.got("c") == [arp]


def test_frames_are_forwarded_unchanged(flat: Switch) -> None:
    frame = bytes(Ether(src=A, dst=B) / IP(src="1.2.3.4", dst="5.6.7.8") / TCP(dport=80) / b"x")
    flat.send("a", frame)
    assert flat.got("b") == [frame]


def test_same_port_destination_dropped(flat: Switch) -> None:
    flat.send("a", icmp(A, B))
    flat.send("a", icmp(B, A))  # B now learned on a; A lives on a: same-port drop
    flat.got("b"), flat.got("c")
    flat.send("a", icmp(C, B))  # B lives on a: nothing goes out
    assert flat.got("b") == [] and flat.got("c") == []
    assert flat.drops("same-port") == 2


def test_malformed_counted_not_crashing(flat: Switch) -> None:
    flat.send("a", b"\x00" * 10, bytes(Ether(src=A, dst=B, type=0x0800) / b"\x45\x00"))
    assert flat.drops("malformed") == 2
    assert flat.got("b") == []


def test_source_multicast_dropped(flat: Switch) -> None:
    flat.send("a", icmp("01:00:5e:00:00:01", B))
    assert flat.drops("source-multicast") == 1


def test_flow_cache_hits_and_invalidation(flat: Switch) -> None:
    flat.send("a", icmp(A, B))
    flat.send("b", icmp(B, A))
    flat.got("b"), flat.got("c")
    cache = flat.engine.cache
    hits = cache.hits
    for _ in range(5):
        flat.send("a", icmp(A, B))
    assert cache.hits == hits + 4  # first after learning B rebuilt the decision
    assert len(flat.got("b")) == 5 and flat.got("c") == []


def test_fdb_aging(flat: Switch) -> None:
    flat.send("a", icmp(A, B))
    flat.got("b"), flat.got("c")
    assert flat.engine.state.fdb.lookup(0, bytes.fromhex("02000000000a")) is not None
    flat.clock.now += 301
    flat.engine.housekeeping(flat.clock.now)
    flat.send("b", icmp(B, A))  # A aged out: flood again
    assert len(flat.got("a")) == 1 and len(flat.got("c")) == 1


def test_mac_limit() -> None:
    sw = make_switch("ports: {a: {type: memory, mac_limit: 1}, b: {type: memory}}")
    sw.send("a", icmp(A, B))
    sw.send("a", icmp(C, B))
    assert len(sw.got("b")) == 1
    assert sw.drops("mac-limit") == 1
    sw.engine.close()


VLANS = """
ports:
  acc10: {type: memory, vlan: {mode: access, id: 10}}
  acc10b: {type: memory, vlan: {mode: access, id: 10}}
  acc20: {type: memory, vlan: {mode: access, id: 20}}
  trunk: {type: memory, vlan: {mode: trunk, allowed: [10, 20], native: 99}}
  nat99: {type: memory, vlan: {mode: access, id: 99}}
  plain: {type: memory}
"""


@pytest.fixture
def vlans() -> Iterator[Switch]:
    sw = make_switch(VLANS)
    yield sw
    sw.engine.close()


def test_access_vlans_isolated(vlans: Switch) -> None:
    vlans.send("acc10", icmp(A, BCAST))
    assert len(vlans.got("acc10b")) == 1
    assert vlans.got("acc20") == [] and vlans.got("plain") == [] and vlans.got("nat99") == []
    trunk = vlans.got("trunk")
    assert len(trunk) == 1
    tagged = Ether(trunk[0])
    assert tagged.haslayer(Dot1Q) and tagged[Dot1Q].vlan == 10


def test_trunk_tagged_frame_reaches_access_untagged(vlans: Switch) -> None:
    vlans.send("trunk", icmp(A, BCAST, vlan=20))
    out = vlans.got("acc20")
    assert len(out) == 1 and not Ether(out[0]).haslayer(Dot1Q)
    assert out[0] == icmp(A, BCAST)
    assert vlans.got("acc10") == []


def test_trunk_native_vlan_untagged_both_ways(vlans: Switch) -> None:
    vlans.send("trunk", icmp(A, BCAST))  # untagged on trunk -> native 99
    assert vlans.got("nat99") == [icmp(A, BCAST)]
    vlans.send("nat99", icmp(B, BCAST))  # native leaves the trunk untagged
    assert vlans.got("trunk") == [icmp(B, BCAST)]


def test_trunk_disallowed_tag_dropped(vlans: Switch) -> None:
    vlans.send("trunk", icmp(A, BCAST, vlan=30))
    assert all(vlans.got(p) == [] for p in ("acc10", "acc20", "nat99", "plain"))
    assert vlans.drops("vlan-not-allowed") == 1


def test_untagged_port_drops_tagged(vlans: Switch) -> None:
    vlans.send("plain", icmp(A, BCAST, vlan=10))
    assert vlans.drops("vlan-not-allowed") == 1


def test_trunk_without_native_drops_untagged() -> None:
    sw = make_switch("ports: {t: {type: memory, vlan: {mode: trunk, allowed: [5]}}, "
                     "u: {type: memory, vlan: {mode: access, id: 5}}}")
    sw.send("t", icmp(A, BCAST))
    assert sw.drops("vlan-untagged-not-allowed") == 1
    sw.send("t", icmp(A, BCAST, vlan=5))
    assert sw.got("u") == [icmp(A, BCAST)]
    sw.engine.close()


def test_same_mac_learned_per_vlan(vlans: Switch) -> None:
    vlans.send("acc10", icmp(A, BCAST))
    vlans.send("acc20", icmp(A, BCAST))  # same MAC, other VLAN: separate entry
    fdb = vlans.engine.state.fdb
    mac = bytes.fromhex("02000000000a")
    e10, e20 = fdb.lookup(10, mac), fdb.lookup(20, mac)
    assert e10 is not None and e20 is not None and e10.port != e20.port


def test_reserved_multicast_not_forwarded(flat: Switch) -> None:
    flat.send("a", bytes(Ether(src=A, dst="01:80:c2:00:00:00") / (b"\x00" * 40)))
    assert flat.got("b") == [] and flat.drops("reserved-multicast") == 1
