"""RSPAN sending and receiving, and mirror filters, on memory ports."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Dot1Q, Ether

from tests.pipeline.harness import make_switch

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def icmp(src: str, dst: str) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())


SENDER = """
ports:
  a: {type: memory}
  b: {type: memory}
  up: {type: memory, vlan: {mode: trunk, allowed: [10, 999]}}
mirrors:
  r: {sources: [a], rspan: {port: up, vlan: 999}}
"""


def test_rspan_copies_leave_tagged_with_mirror_vlan() -> None:
    sw = make_switch(SENDER)
    sw.send("a", icmp(A, B))
    out = sw.got("up")
    # a is on the untagged network, which the trunk does not carry: only the RSPAN
    # copy leaves by the uplink
    assert len(out) == 1
    copy = Ether(out[0])
    assert copy[Dot1Q].vlan == 999 and bytes(copy[Dot1Q].payload) == icmp(A, B)[14:]
    assert sw.engine.state.mirrors[0].mirrored == 1


def test_rspan_keep_original_tag() -> None:
    sw = make_switch("""
ports:
  t: {type: memory, vlan: {mode: trunk, allowed: [10]}}
  b: {type: memory, vlan: {mode: access, id: 10}}
  up: {type: memory, vlan: {mode: trunk, allowed: [999]}}
mirrors:
  r: {sources: [{port: t, direction: ingress}], rspan: {port: up, vlan: 999,
      keep_original_tag: true}}
""")
    frame = bytes(Ether(src=A, dst=B) / Dot1Q(vlan=10) / IP() / ICMP())
    sw.send("t", frame)
    (copy,) = sw.got("up")
    outer = Ether(copy)
    assert outer[Dot1Q].vlan == 999 and outer[Dot1Q].payload[Dot1Q].vlan == 10


def test_rspan_destination_session_delivers_only_to_its_ports() -> None:
    sw = make_switch("""
ports:
  up: {type: memory, vlan: {mode: trunk, allowed: [10]}}
  sniff: {type: memory}
  other: {type: memory}
  vm10: {type: memory, vlan: {mode: access, id: 10}}
mirrors:
  rx: {rspan_source: {port: up, vlan: 999}, destinations: [sniff]}
""")
    inner = icmp(A, B)
    carried = bytes(Ether(inner[:12] + b"\x81\x00\x03\xe7" + inner[12:]))
    sw.send("up", carried)
    assert sw.got("sniff") == [inner]
    assert sw.got("other") == [] and sw.got("vm10") == []
    normal = bytes(Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=10) / IP() / ICMP())
    sw.send("up", normal)
    assert sw.got("sniff") == [] and len(sw.got("vm10")) == 1
    _decision, _outcome, tracer = sw.engine.trace("up", carried)
    assert "is the RSPAN VLAN of session rx" in tracer.render()


def test_mirror_filter_selects_frames() -> None:
    sw = make_switch("""
ports:
  a: {type: memory}
  b: {type: memory}
  s: {type: memory}
mirrors:
  web: {sources: [a], destinations: [s], filter: "tcp dst port 80"}
""")
    web = bytes(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=80))
    ssh = bytes(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=22))
    sw.send("a", web, ssh, icmp(A, B))
    assert sw.got("s") == [web]
    assert len(sw.got("b")) == 3
