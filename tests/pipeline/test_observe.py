"""``vspan observe`` on memory ports: the events an observer gets for real forwarding,
and that observing changes nothing the switch does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tests.pipeline.harness import Switch, make_switch
from vspan.capture.observe import Observer, ObserveSpec
from vspan.control.observing import SwitchNames, observe_spec

A_MAC, B_MAC, C_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
A, B, C, X = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.7"  # X: denied by c's ACL
D_MAC, E_MAC, D, E = "02:00:00:00:00:0d", "02:00:00:00:00:0e", "10.0.1.4", "10.0.1.5"

CONFIG = """
ports:
  a: {type: memory, vlan: {mode: access, id: 10}}
  b: {type: memory, vlan: {mode: trunk, allowed: [10]}}
  c:
    type: memory
    vlan: {mode: access, id: 10}
    description: web-vm
    policy:
      acls:
        - {id: no-x, action: deny, direction: in, remote_ip: 10.0.0.7/32}
  mon: {type: memory}
  d: {type: memory, vlan: {mode: access, id: 20}}
  e: {type: memory, vlan: {mode: access, id: 20}}
mirrors:
  m1: {sources: [a], destinations: [mon]}
firewall:
  default_action: allow
  exclude: [b, mon, d, e]
  sections:
    - name: s
      rules:
        - {id: telnet, services: ["tcp/23"], action: reject, direction: in}
"""


@pytest.fixture
def sw() -> Iterator[Switch]:
    s = make_switch(CONFIG)
    for port, mac, ip in (("a", A_MAC, A), ("c", C_MAC, C), ("d", D_MAC, D), ("e", E_MAC, E)):
        s.send(port, bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=ip)))
    s.send("b", bytes(Ether(src=B_MAC, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=10) / ARP(psrc=B)))
    for p in s.ports:
        s.got(p)
    yield s
    s.engine.close()


def attach(sw: Switch, **body: Any) -> Observer:
    spec = observe_spec(sw.engine.state.config, sw.engine.state.by_name, body)
    obs = Observer(1, spec, SwitchNames(sw.engine), "t", "h", now=sw.clock.now)
    sw.engine.add_observer(obs)
    return obs


def ping(src_mac: str, dst_mac: str, src: str, dst: str) -> bytes:
    return bytes(Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst) / ICMP())


def syn(src_mac: str, dst_mac: str, src: str, dst: str, dport: int) -> bytes:
    return bytes(Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst)
                 / TCP(sport=40000, dport=dport, flags="S"))


def test_forwarded_and_mirrored_events_name_ports_vlan_op_and_session(sw: Switch) -> None:
    obs = attach(sw)
    sw.send("a", ping(A_MAC, B_MAC, A, B))
    assert len(sw.got("b")) == 1 and len(sw.got("mon")) == 1
    events = obs.take()
    kinds = [e["type"] for e in events]
    assert kinds == ["forwarded", "mirrored"]
    fwd, mir = events
    assert fwd["in_port"] == "a" and fwd["source"] in ("cache", "upcall")
    assert fwd["outputs"] == [{"port": "b", "vlan_op": "push", "vid": 10}]
    assert fwd["summary"]["src_ip"] == A and fwd["summary"]["proto"] == "icmp"
    assert fwd["summary"]["src_mac"] == A_MAC and fwd["summary"]["icmp_type"] == 8
    assert mir["session"] == "m1" and mir["destination"] == "mon"
    assert fwd["frame"] == mir["frame"]


def test_acl_drop_carries_reason_stage_rule_and_its_text(sw: Switch) -> None:
    obs = attach(sw, verdicts=["dropped"])
    sw.send("b", syn(B_MAC, C_MAC, B, C, 22))  # b is a trunk: untagged is not allowed
    sw.send("a", syn(A_MAC, C_MAC, X, C, 22))
    assert sw.got("c") == []
    events = obs.take()
    assert [e["reason"] for e in events] == ["vlan-untagged-not-allowed", "acl-deny"]
    assert events[0]["port"] == "b" and events[0]["direction"] == "in"
    ev = events[1]
    assert ev["port"] == "c" and ev["direction"] == "out" and ev["stage"] == "acl"
    assert ev["rule"] == "no-x"
    assert ev["rule_text"] == "{id: no-x, action: deny, direction: in, remote_ip: 10.0.0.7/32}"
    assert ev["summary"]["tcp_flags"] == "S" and ev["summary"]["dport"] == 22
    assert ev["explanation"]


def test_firewall_reject_and_its_answer_are_observed(sw: Switch) -> None:
    obs = attach(sw, verdicts=["all"])
    sw.send("a", syn(A_MAC, C_MAC, A, C, 23))
    events = obs.take()
    drops = [e for e in events if e["type"] == "dropped"]
    assert [(d["reason"], d["rule"]) for d in drops] == [("firewall-reject", "telnet")]
    assert drops[0]["rule_text"].startswith("section s: {id: telnet")
    # the RST the switch made for c's VM is observed too, as a frame of the switch's own
    replies = [e for e in events if e["source"] == "reply"]
    assert replies and replies[0]["summary"]["tcp_flags"] == "RA"
    assert any(e["type"] == "forwarded" and e["outputs"][0]["port"] == "a" for e in replies)


def test_port_vm_reason_and_filter_select(sw: Switch) -> None:
    obs = attach(sw, vms=["web-vm"], reasons=["acl-deny"])
    assert obs.spec.kinds == frozenset({"dropped"})
    sw.send("a", ping(A_MAC, B_MAC, A, B))  # no drop, not c
    sw.send("a", syn(A_MAC, C_MAC, X, C, 22))  # acl-deny at c
    sw.send("a", syn(A_MAC, C_MAC, A, C, 23))  # firewall-reject at c: other reason
    assert [e["reason"] for e in obs.take()] == ["acl-deny"]
    sw.engine.remove_observer(obs.id)
    obs = attach(sw, ports=["b"], filter="icmp")
    sw.send("a", syn(A_MAC, B_MAC, A, B, 80))
    sw.send("a", ping(A_MAC, B_MAC, A, B))
    sw.send("a", ping(A_MAC, C_MAC, A, C))  # icmp, but neither from nor to b
    events = obs.take()
    assert [(e["type"], e["summary"]["dst_ip"]) for e in events] == [("forwarded", B)]


def test_sampling_and_rate_cap_count_what_they_leave_out(sw: Switch) -> None:
    obs = attach(sw, ports=["a"], verdicts=["forwarded"], sample=3)
    for _ in range(9):
        sw.send("a", ping(A_MAC, B_MAC, A, B))
    assert len(obs.take()) == 3
    assert obs.counters()["sampled_out"] == 6
    sw.engine.remove_observer(obs.id)
    obs = attach(sw, ports=["a"], verdicts=["forwarded"], max_rate=5)
    for _ in range(20):  # the clock stands still: a burst of 5, then nothing
        sw.send("a", ping(A_MAC, B_MAC, A, B))
    assert len(obs.take()) == 5 and obs.counters()["rate_limited"] == 15
    sw.clock.now += 1.0  # a second later: 5 more
    for _ in range(20):
        sw.send("a", ping(A_MAC, B_MAC, A, B))
    assert len(obs.take()) == 5 and obs.counters()["rate_limited"] == 30
    report = obs.suppressed_event()
    assert report is not None and report["rate_limited"] == 30
    assert obs.suppressed_event() is None  # nothing new since


def test_observing_changes_nothing_and_costs_nothing_after(sw: Switch) -> None:
    frames = [ping(A_MAC, B_MAC, A, B), syn(A_MAC, C_MAC, X, C, 22),
              syn(A_MAC, C_MAC, A, C, 23), ping(C_MAC, A_MAC, C, A)]
    out_plain: list[list[bytes]] = []
    for f in frames:
        sw.send("a" if f[6:12] == bytes.fromhex("02000000000a") else "c", f)
        out_plain.append(sorted(b for p in sw.ports for b in sw.got(p)))
    obs = attach(sw, verdicts=["all"])
    out_seen: list[list[bytes]] = []
    for f in frames:
        sw.send("a" if f[6:12] == bytes.fromhex("02000000000a") else "c", f)
        out_seen.append(sorted(b for p in sw.ports for b in sw.got(p)))
    assert out_seen == out_plain
    assert obs.counters()["emitted"] > 0
    sw.engine.remove_observer(obs.id)
    before = obs.counters()
    sw.send("a", ping(A_MAC, B_MAC, A, B))
    assert obs.counters() == before and sw.engine.observers == []


def test_queue_full_is_counted(sw: Switch) -> None:
    spec = ObserveSpec(kinds=frozenset({"forwarded"}), max_rate=1e9)
    obs = Observer(7, spec, SwitchNames(sw.engine), now=sw.clock.now, queue_frames=2)
    sw.engine.add_observer(obs)
    for _ in range(5):
        sw.send("a", ping(A_MAC, B_MAC, A, B))
    assert obs.pending == 2 and obs.counters()["queue_full"] == 3


def test_simple_forwards_are_told_per_batch_in_order_and_capped_in_bulk(sw: Switch) -> None:
    """d -> e is a cached single unchanged output (the fast path's common case): observed
    without a record per frame, in order with the batch's other frames, and a batch over
    the cap is counted at once."""
    sw.send("d", ping(D_MAC, E_MAC, D, E))  # decided and cached
    sw.got("e")
    obs = attach(sw, verdicts=["all"], max_rate=5)
    flood = bytes(Ether(src=D_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src=D, dst=E) / ICMP())
    sw.send("d", ping(D_MAC, E_MAC, D, E), flood, ping(D_MAC, E_MAC, D, E))
    events = obs.take()
    assert [(e["frame"], e["type"], e["source"]) for e in events] == [
        (1, "received", "cache"), (1, "forwarded", "cache"),
        (2, "received", "upcall"), (2, "forwarded", "upcall")]  # cap: 5 tokens, 2 per frame
    assert events[2]["summary"]["dst_mac"] == "ff:ff:ff:ff:ff:ff"  # in arrival order
    assert obs.counters()["rate_limited"] == 2
    sw.send("d", *[ping(D_MAC, E_MAC, D, E)] * 10)  # same clock: no tokens, counted at once
    assert len(sw.got("e")) == 13 and obs.take() == []
    assert obs.counters()["rate_limited"] == 22
    sw.clock.now += 1.0
    sw.send("d", *[ping(D_MAC, E_MAC, D, E)] * 10)
    assert len(obs.take()) == 4  # 5 tokens: two frames of two events
    # 3 + 10 + 10 frames of two events: 4 + 4 emitted, the rest over the cap
    assert obs.counters() == {"matched": 46, "emitted": 8, "sampled_out": 0,
                              "rate_limited": 38, "queue_full": 0}


def test_the_filter_is_decided_per_flow_with_frame_lengths_on_the_fast_path(sw: Switch) -> None:
    sw.send("d", ping(D_MAC, E_MAC, D, E))  # decided and cached
    obs = attach(sw, filter="icmp and greater 100")
    big = bytes(Ether(src=D_MAC, dst=E_MAC) / IP(src=D, dst=E) / ICMP() / (b"x" * 100))
    small = ping(D_MAC, E_MAC, D, E)  # the same flow (same fast key), 42 bytes
    sw.send("d", small, big, small, big)
    assert len(sw.got("e")) == 5
    events = obs.take()
    assert [(e["type"], e["summary"]["len"]) for e in events] == [
        ("forwarded", len(big)), ("forwarded", len(big))]
    assert all(e["source"] == "cache" for e in events)
    other = bytes(Ether(src=D_MAC, dst=E_MAC) / IP(src=D, dst=E) / UDP() / (b"x" * 100))
    sw.send("d", other, other)  # cached after the first: the filter says no for the flow
    assert obs.take() == []
