"""Guards, storm limit, port ACLs and extended ACLs as pipeline stages on memory ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.policy_frames import PEER_MAC, VM_MAC, arp, ra, tcp, udp
from tests.pipeline.policy_harness import PolicySwitch, make_policy_switch
from vspan.datapath.trace import Tracer

VM, PEER = "10.0.0.5", "10.1.1.1"

POLICY = """
ports:
  vm:
    addresses: [10.0.0.5]
    acls:
      - {id: deny-10, action: deny, direction: both, remote_ip: 10.0.0.0/8}
      - {id: allow-10.1, action: allow, direction: both, remote_ip: 10.1.0.0/16}
      - {id: meter-all, action: meter, direction: both, remote_ip: any}
    extended_acls:
      - {id: web-out, action: allow, direction: out, weight: 100, protocol: tcp,
         remote_port: 80, stateful: true, idle_timeout: 30}
      - {id: no-tcp-in, action: deny, direction: in, weight: 10, protocol: tcp}
    guards:
      mac_spoofing: false
      macs: ["02:00:00:00:00:01"]
      dhcp_guard: true
      router_guard: true
      storm: {broadcast: 5, unknown_unicast: 3}
"""


@pytest.fixture
def ps() -> Iterator[PolicySwitch]:
    s = make_policy_switch(["vm", "net"], POLICY)
    yield s
    s.close()


def learn_both(ps: PolicySwitch) -> None:
    ps.send("net", arp(src_mac=PEER_MAC, psrc=PEER, pdst=VM))
    ps.send("vm", arp(src_mac=VM_MAC, psrc=VM, pdst=PEER))
    ps.got("vm"), ps.got("net")


def test_guard_drops_carry_their_own_reasons(ps: PolicySwitch) -> None:
    ps.send("vm", udp(VM, PEER, 1, 2, src_mac="02:00:00:00:00:66"))
    ps.send("vm", ra(src_mac=VM_MAC))
    ps.send("vm", udp(VM, "255.255.255.255", 67, 68, dst_mac="ff:ff:ff:ff:ff:ff"))
    assert ps.got("net") == []
    assert ps.drops("mac-spoof") == 1
    assert ps.drops("router-guard") == 1
    assert ps.drops("dhcp-guard") == 1
    # guards only look at what the VM sends: an RA towards the VM is delivered
    ps.send("net", ra(src_mac=PEER_MAC))
    assert len(ps.got("vm")) == 1


def test_storm_limit_broadcast_with_injected_clock(ps: PolicySwitch) -> None:
    b = arp(src_mac=VM_MAC, psrc=VM, pdst=PEER)
    for _ in range(8):
        ps.send("vm", b)
    assert len(ps.got("net")) == 5  # burst = 1 s worth = 5
    assert ps.drops("storm-limit") == 3
    ps.clock.now += 0.4  # 2 tokens
    for _ in range(3):
        ps.send("vm", b)
    assert len(ps.got("net")) == 2
    assert ps.drops("storm-limit") == 4


def test_storm_limit_unknown_unicast_only_while_unknown(ps: PolicySwitch) -> None:
    f = udp(VM, PEER, 5000, 5000)  # to 10.1.x: allowed by the ACL
    for _ in range(5):
        ps.send("vm", f)
    assert len(ps.got("net")) == 3 and ps.drops("storm-limit") == 2
    ps.send("net", arp(src_mac=PEER_MAC, psrc=PEER, pdst=VM))  # the peer becomes known
    ps.got("vm")
    for _ in range(5):
        ps.send("vm", f)
    assert len(ps.got("net")) == 5 and ps.drops("storm-limit") == 2


def test_port_acl_in_both_directions_with_meter(ps: PolicySwitch) -> None:
    learn_both(ps)
    ps.send("vm", udp(VM, "10.2.2.2", 1, 2))  # denied outbound (10/8)
    ps.send("net", udp("10.2.2.2", VM, 2, 1, src_mac=PEER_MAC, dst_mac=VM_MAC))  # and inbound
    assert ps.got("net") == [] and ps.got("vm") == []
    assert ps.drops_by_rule("acl-deny") == {"deny-10": 2}
    f = udp(VM, PEER, 1, 2)
    for _ in range(3):
        ps.send("vm", f)
    assert len(ps.got("net")) == 3
    pol = ps.policy.ports["vm"]
    meters = {(m.rule_id, m.direction): (m.packets, m.bytes) for m in pol.acl.meters()}
    assert meters[("meter-all", "out")] == (3, 3 * len(f))  # counted on cache hits too


def test_extended_acl_stateful_return_traffic(ps: PolicySwitch) -> None:
    learn_both(ps)
    # inbound TCP is denied by weight-10 rule ...
    ps.send("net", tcp(PEER, VM, 40000, 22, "S", src_mac=PEER_MAC, dst_mac=VM_MAC))
    assert ps.got("vm") == []
    assert ps.drops_by_rule("ext-acl-deny") == {"no-tcp-in": 1}
    # ... but the answer to the VM's own web request comes back through the session
    ps.send("vm", tcp(VM, PEER, 40001, 80, "S"))
    assert len(ps.got("net")) == 1
    synack = tcp(PEER, VM, 80, 40001, "SA", src_mac=PEER_MAC, dst_mac=VM_MAC)
    ps.send("net", synack)
    assert ps.got("vm") == [synack]
    ps.clock.now += 31  # idle timeout 30 s
    ps.send("net", synack)
    assert ps.got("vm") == []
    assert ps.drops_by_rule("ext-acl-deny") == {"no-tcp-in": 2}


def test_counters_for_metrics(ps: PolicySwitch) -> None:
    learn_both(ps)
    for _ in range(2):
        ps.send("vm", udp(VM, PEER, 1, 2))
    c = ps.policy.counters()
    vm = c["ports"]["vm"]
    assert vm["meters"]["meter-all/out"]["packets"] == 2
    assert vm["storm"]["broadcast"]["passed"] == 1  # the ARP of learn_both
    assert c["firewall"] == {} and c["replies_dropped"] == 0


def test_trace_shows_policy_decisions_inline(ps: PolicySwitch) -> None:
    learn_both(ps)
    decision, _outcome, tracer = ps.sw.engine.trace("vm", udp(VM, "10.2.2.2", 1, 2))
    assert isinstance(tracer, Tracer)
    text = tracer.render()
    assert "passes guards" in text
    assert "port ACL out: entry deny-10 -> deny" in text
    assert "deny-10" in text and "allow-10.1" not in text.split("deny-10 ->")[0]
    assert decision.drops and decision.drops[0].rule == "deny-10"
    _, _, tr2 = ps.sw.engine.trace("net", tcp(PEER, VM, 40000, 22, "S", src_mac=PEER_MAC,
                                           dst_mac=VM_MAC))
    t2 = tr2.render()
    assert "extended ACL in: rule no-tcp-in (weight 10) -> deny" in t2
    assert "port ACL in: entry allow-10.1 -> allow" in t2
    assert "metered by meter-all" in t2
