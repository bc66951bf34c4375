"""UDP, ICMP echo, ICMP errors and fragments through the firewall on memory ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.helpers.policy_frames import (
    PEER_MAC,
    VM_MAC,
    echo,
    icmp_error_about,
    na6,
    tcp,
    udp,
)
from tests.pipeline.policy_harness import PolicySwitch, make_policy_switch
from vspan.policy.conntrack import IcmpState, UdpState

VM, DNS, ROUTER = "10.0.0.5", "10.9.9.9", "10.0.0.1"
VM6, PEER6 = "2001:db8::5", "2001:db8:1::1"

POLICY = """
ports:
  vm: {addresses: [10.0.0.5, "2001:db8::5"]}
firewall:
  default_action: drop
  exclude: [net]
  sections:
    - name: out
      rules:
        - {id: dns, services: ["udp/53"], action: allow, direction: out}
        - {id: ping-out, services: [icmp/8, "icmpv6/128"], action: allow, direction: out}
        - {id: web-out, services: ["tcp/80"], action: allow, direction: out}
    - name: in
      rules:
        - {id: nd, services: ["icmpv6/135", "icmpv6/136"], action: allow, direction: both}
        - {id: syslog-in, services: ["udp/514"], action: allow, direction: in}
        - {id: echo-reply-in, services: ["icmp/0"], action: allow, direction: in}
"""


@pytest.fixture
def ps() -> Iterator[PolicySwitch]:
    s = make_policy_switch(["vm", "net"], POLICY)
    yield s
    s.close()


def to_vm(ps: PolicySwitch, frame: bytes) -> bool:
    ps.send("net", frame)
    return len(ps.got("vm")) == 1


def from_vm(ps: PolicySwitch, frame: bytes) -> bool:
    ps.send("vm", frame)
    return len(ps.got("net")) == 1


def query(sport: int = 33333) -> bytes:
    return udp(VM, DNS, sport, 53, b"q")


def answer(sport: int = 33333, src: str = DNS) -> bytes:
    return udp(src, VM, 53, sport, b"a", src_mac=PEER_MAC, dst_mac=VM_MAC)


def test_udp_reply_admitted_by_state(ps: PolicySwitch) -> None:
    assert not to_vm(ps, answer())  # unsolicited: default drop
    assert from_vm(ps, query())
    (c,) = ps.conns("vm")
    assert c.state == UdpState.FIRST
    assert to_vm(ps, answer())
    assert c.state == UdpState.MULTIPLE
    assert not to_vm(ps, answer(src="10.9.9.8"))  # another server is not the reply
    assert not to_vm(ps, answer(sport=33334))  # nor another port


def test_udp_timeouts(ps: PolicySwitch) -> None:
    assert from_vm(ps, query())
    assert from_vm(ps, query())  # SINGLE: 30 s
    (c,) = ps.conns("vm")
    assert c.state == UdpState.SINGLE
    ps.clock.now += 31
    assert not to_vm(ps, answer())
    assert from_vm(ps, query())  # FIRST again: 60 s
    ps.clock.now += 59
    assert to_vm(ps, answer())  # MULTIPLE: 60 s from now
    ps.clock.now += 59
    assert to_vm(ps, answer())
    ps.clock.now += 61
    assert not to_vm(ps, answer())


def test_icmp_echo_by_id(ps: PolicySwitch) -> None:
    assert from_vm(ps, echo(VM, DNS, ident=7))
    (c,) = ps.conns("vm")
    assert c.state == IcmpState.REQUEST
    assert to_vm(ps, echo(DNS, VM, ident=7, reply=True, src_mac=PEER_MAC, dst_mac=VM_MAC))
    assert c.state == IcmpState.REPLIED
    # a reply with another id: the rule 'echo-reply-in' matches, but there was no request
    assert not to_vm(ps, echo(DNS, VM, ident=8, reply=True, src_mac=PEER_MAC, dst_mac=VM_MAC))
    assert ps.drops_by_rule("firewall-state-invalid") == {"echo-reply-in": 1}
    # an echo request towards the VM with the same id is not part of the VM's ping
    assert not to_vm(ps, echo(DNS, VM, ident=7, src_mac=PEER_MAC, dst_mac=VM_MAC))
    ps.clock.now += 11  # replied ICMP lasts 10 s
    assert not to_vm(ps, echo(DNS, VM, ident=7, reply=True, src_mac=PEER_MAC, dst_mac=VM_MAC))


def test_icmpv6_echo(ps: PolicySwitch) -> None:
    assert from_vm(ps, echo(VM6, PEER6, ident=3))
    assert to_vm(ps, echo(PEER6, VM6, ident=3, reply=True, src_mac=PEER_MAC, dst_mac=VM_MAC))
    assert not to_vm(ps, echo(PEER6, VM6, ident=4, reply=True, src_mac=PEER_MAC,
                              dst_mac=VM_MAC))


def test_icmp_first_timeout(ps: PolicySwitch) -> None:
    assert from_vm(ps, echo(VM, DNS, ident=9))
    ps.clock.now += 21  # an unanswered request lasts 20 s
    assert not to_vm(ps, echo(DNS, VM, ident=9, reply=True, src_mac=PEER_MAC,
                              dst_mac=VM_MAC))


def test_icmp_error_related_to_udp_flow(ps: PolicySwitch) -> None:
    q = query()
    assert from_vm(ps, q)
    err = icmp_error_about(ROUTER, q, type_=3, code=3)  # port unreachable
    assert to_vm(ps, err)
    pf = ps.policy.firewall.port("vm")  # type: ignore[union-attr]
    assert pf is not None and pf.conntrack.counters["related"] == 1


def test_icmp_error_about_untracked_flow_is_judged_by_rules(ps: PolicySwitch) -> None:
    never_sent = udp(VM, DNS, 44444, 53, b"q")
    assert not to_vm(ps, icmp_error_about(ROUTER, never_sent))
    assert ps.drops_by_rule("firewall-deny") == {"default": 1}


def test_icmp_error_related_to_tcp_and_time_exceeded(ps: PolicySwitch) -> None:
    syn = tcp(VM, DNS, 40000, 80, "S", seq=1)
    assert from_vm(ps, syn)
    assert to_vm(ps, icmp_error_about(ROUTER, syn, type_=11, code=0))


def test_icmpv6_error_related(ps: PolicySwitch) -> None:
    q = udp(VM6, PEER6, 33333, 53)
    assert from_vm(ps, q)
    assert to_vm(ps, icmp_error_about("2001:db8::1", q))
    other = udp(VM6, PEER6, 33334, 53)
    assert not to_vm(ps, icmp_error_about("2001:db8::1", other))


def test_icmp_error_about_ping_is_related(ps: PolicySwitch) -> None:
    req = echo(VM, DNS, ident=77)
    assert from_vm(ps, req)
    assert to_vm(ps, icmp_error_about(ROUTER, req, type_=3, code=1))


def test_neighbour_discovery_is_untracked_and_rule_driven(ps: PolicySwitch) -> None:
    assert from_vm(ps, na6(VM6))
    assert ps.conns("vm") == []


def test_inbound_udp_service_creates_state_for_replies(ps: PolicySwitch) -> None:
    log = udp("10.7.7.7", VM, 5140, 514, b"<13>hi", src_mac=PEER_MAC, dst_mac=VM_MAC)
    assert to_vm(ps, log)
    assert from_vm(ps, udp(VM, "10.7.7.7", 514, 5140, b"ack"))  # reply through state
    (c,) = ps.conns("vm")
    assert c.origin == "in" and c.rule_id == "syslog-in" and c.state == UdpState.MULTIPLE


def test_later_fragments_follow_a_tracked_pair(ps: PolicySwitch) -> None:
    big = Ether(src=VM_MAC, dst=PEER_MAC) / IP(src=VM, dst=DNS, id=99) / UDP(
        sport=33333, dport=53) / Raw(b"x" * 3000)
    frags = [bytes(Ether(src=VM_MAC, dst=PEER_MAC) / f) for f in fragment(big[IP], 1000)]  # type: ignore[no-untyped-call]
    assert len(frags) >= 3
    for f in frags:
        assert from_vm(ps, f)
    # later fragments of a pair that has no connection are judged by the rules: dropped
    stray = Ether(src=PEER_MAC, dst=VM_MAC) / IP(src="10.5.5.5", dst=VM, id=5, frag=100,
                                                   proto=17) / Raw(b"y" * 100)
    assert not to_vm(ps, bytes(stray))
