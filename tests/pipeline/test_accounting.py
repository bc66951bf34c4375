"""The accounting invariant on memory ports (issue 11, item 4; ``docs/accounting.md``).

Per port: received = forwarded + dropped (by the reason of the frame's first
drop) + consumed. A flooded frame that reaches some ports and is dropped at
another is one forwarded frame; the drop at the other port is counted apart.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tests.pipeline.harness import Switch, make_switch
from vspan.datapath import accounting
from vspan.datapath.accounting import PortAccount

A, B, C, D = (f"02:00:00:00:00:0{i}" for i in "abcd")
BCAST = "ff:ff:ff:ff:ff:ff"

CONFIG = """
ports:
  a: {type: memory, vlan: {mode: access, id: 10}}
  b: {type: memory, vlan: {mode: access, id: 10}}
  c:
    type: memory
    vlan: {mode: access, id: 10}
    policy:
      extended_acls: [{id: no-udp-in, action: deny, direction: in, weight: 10, protocol: udp}]
  d: {type: memory, vlan: {mode: access, id: 10}, mtu: 200}
  up: {type: memory, vlan: {mode: trunk, allowed: [10, 999]}}
  sniff: {type: memory}
  lone: {type: memory, vlan: {mode: access, id: 77}}
mirrors:
  rx: {rspan_source: {port: up, vlan: 999}, destinations: [sniff]}
firewall:
  default_action: allow
  exclude: [a, b, d, up, sniff, lone]
  sections:
    - name: s
      rules:
        - {id: telnet, services: ["tcp/23"], action: reject, direction: in}
"""


@pytest.fixture
def sw() -> Iterator[Switch]:
    s = make_switch(CONFIG)
    yield s
    s.engine.close()


def acct(s: Switch, port: str) -> PortAccount:
    rt = s.engine.state.port(port)
    return accounting.port_terms(rt.name, rt.counters)


def udp(src: str, dst: str, size: int = 0) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2")
                 / UDP(sport=1, dport=9) / (b"x" * size))


def test_flood_dropped_at_one_port_is_one_forwarded_frame(sw: Switch) -> None:
    sw.send("a", udp(A, BCAST))  # to b, d, up; c's port ACL denies UDP in
    assert sw.got("b") and sw.got("d") and not sw.got("c")
    a = acct(sw, "a")
    assert (a.received, a.forwarded, a.dropped, a.consumed) == (1, 1, {}, 0)
    assert sw.engine.state.drops.for_port(sw.engine.state.by_name["c"]) == {
        ("ext-acl-deny", "no-udp-in"): 1}  # the per-output drop, counted apart
    assert accounting.check(sw.engine.state) == []


def test_frame_every_output_drops_is_dropped_with_the_first_reason(sw: Switch) -> None:
    sw.send("c", udp(C, BCAST))  # learn C
    sw.send("a", udp(A, C), udp(A, C), udp(A, C))  # unicast to c: denied there (cached)
    a = acct(sw, "a")
    assert a.forwarded == 0 and a.dropped == {"ext-acl-deny": 3} and not a.difference
    big = udp(A, BCAST, 400)  # > d's MTU: dropped at d, delivered to b, up: forwarded
    sw.send("a", big)
    assert acct(sw, "a").forwarded == 1


def test_cache_hits_and_ingress_drops(sw: Switch) -> None:
    sw.send("b", udp(B, BCAST))
    frames = [udp(A, B)] * 50  # first decided, then replayed from the cache
    sw.send("a", *frames)
    sw.send("a", b"\x00" * 10)  # malformed
    sw.send("a", udp(BCAST, B))  # group source
    sw.send("lone", udp(D, BCAST))  # nobody else in VLAN 77
    assert sw.engine.cache.hits >= 48
    a = acct(sw, "a")
    assert (a.received, a.forwarded, a.dropped) == (
        52, 50, {"malformed": 1, "source-multicast": 1})
    assert acct(sw, "lone").dropped == {"no-destination": 1}
    assert accounting.check(sw.engine.state) == []


def test_rspan_vlan_frames_are_consumed(sw: Switch) -> None:
    tagged = bytes(Ether(src=D, dst=BCAST) / Dot1Q(vlan=999) / ARP())
    sw.send("up", tagged, tagged)
    assert len(sw.got("sniff")) == 2
    up = acct(sw, "up")
    assert (up.received, up.forwarded, up.consumed, up.dropped) == (2, 0, 2, {})


def test_reject_answers_are_not_received_frames(sw: Switch) -> None:
    syn = bytes(Ether(src=A, dst=C) / IP(src="10.0.0.1", dst="10.0.0.3")
                / TCP(sport=1000, dport=23, flags="S"))
    sw.send("c", udp(C, BCAST))
    sw.send("a", syn)
    assert sw.got("a")  # the RST, as if c had answered
    assert acct(sw, "a").dropped == {"firewall-reject": 1}
    c = acct(sw, "c")
    assert c.received == 1 and c.forwarded == 1  # the answer is not counted as received
    assert accounting.check(sw.engine.state) == []


def test_check_names_the_port_and_the_difference(sw: Switch) -> None:
    sw.send("a", udp(A, BCAST), udp(A, BCAST))
    sw.engine.state.port("a").counters.forwarded -= 1  # a frame gone missing
    bad = accounting.check(sw.engine.state)
    assert [(b.port, b.difference) for b in bad] == [("a", 1)]
    assert "port a: received 2" in bad[0].describe() and "difference +1" in bad[0].describe()
    sw.engine.state.port("a").counters.forwarded += 1  # put back: the invariant holds again
    assert accounting.check(sw.engine.state) == []
