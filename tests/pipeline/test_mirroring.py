"""Local port mirroring on memory ports: directions, many-to-one, once per session,
truncation, sampling, destination port rules."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Dot1Q, Ether

from tests.pipeline.harness import make_switch

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"


def icmp(src: str, dst: str, size: int = 0) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP()
                 / (b"p" * size))


def base(session: str) -> str:
    return f"""
ports:
  a: {{type: memory}}
  b: {{type: memory}}
  c: {{type: memory}}
  sniff: {{type: memory}}
mirrors:
  mon:
{session}
"""


def learned(sw_yaml: str):  # type: ignore[no-untyped-def]
    sw = make_switch(sw_yaml)
    sw.send("a", icmp(A, B))
    sw.send("b", icmp(B, A))
    sw.send("c", icmp(C, A))
    for p in ("a", "b", "c", "sniff"):
        sw.got(p)
    for m in sw.engine.state.mirrors.values():
        m.mirrored = m.seen = m.truncated = m.sampled_out = 0
    return sw


def test_ingress_only() -> None:
    sw = learned(base("    sources: [{port: a, direction: ingress}]\n    destinations: [sniff]"))
    sw.send("a", icmp(A, B))
    sw.send("b", icmp(B, A))
    assert sw.got("sniff") == [icmp(A, B)]


def test_egress_only() -> None:
    sw = learned(base("    sources: [{port: a, direction: egress}]\n    destinations: [sniff]"))
    sw.send("a", icmp(A, B))
    sw.send("b", icmp(B, A))
    assert sw.got("sniff") == [icmp(B, A)]


def test_both_directions() -> None:
    sw = learned(base("    sources: [a]\n    destinations: [sniff]"))
    sw.send("a", icmp(A, B))
    sw.send("b", icmp(B, A))
    assert sw.got("sniff") == [icmp(A, B), icmp(B, A)]
    assert sw.engine.state.mirrors[0].mirrored == 2


def test_many_sources_one_destination_and_once_per_session() -> None:
    sw = learned(base("    sources: [a, b, c]\n    destinations: [sniff]"))
    sw.send("a", icmp(A, B))  # a ingress and b egress are both sources: one copy
    sw.send("c", icmp(C, A))
    assert sw.got("sniff") == [icmp(A, B), icmp(C, A)]


def test_flooded_frame_copied_once() -> None:
    sw = learned(base("    sources: [{port: b, direction: egress}, {port: c, direction: egress}]"
                      "\n    destinations: [sniff]"))
    bcast = icmp(A, "ff:ff:ff:ff:ff:ff")
    sw.send("a", bcast)
    assert sw.got("sniff") == [bcast]
    assert sw.got("b") == [bcast] and sw.got("c") == [bcast]


def test_truncation() -> None:
    sw = learned(base("    sources: [a]\n    destinations: [sniff]\n"
                      "    mirrored_packet_length: 64"))
    big = icmp(A, B, size=200)
    small = icmp(A, B)
    sw.send("a", big, small)
    got = sw.got("sniff")
    assert got == [big[:64], small]
    assert sw.got("b") == [big, small]  # normal traffic intact
    assert sw.engine.state.mirrors[0].truncated == 1


def test_sampling_one_in_four() -> None:
    sw = learned(base("    sources: [{port: a, direction: ingress}]\n"
                      "    destinations: [sniff]\n    sampling_rate: 4"))
    sw.send("a", *[icmp(A, B, size=i) for i in range(40)])
    assert len(sw.got("sniff")) == 10
    m = sw.engine.state.mirrors[0]
    assert m.sampled_out == 30 and m.mirrored == 10


def test_destination_gets_no_normal_traffic_and_cannot_send() -> None:
    sw = learned(base("    sources: [a]\n    destinations: [sniff]"))
    bcast = icmp(B, "ff:ff:ff:ff:ff:ff")
    sw.send("b", bcast)  # flood excludes the mirror destination...
    assert sw.got("sniff") == [bcast]  # ...which sees only the egress copy of a
    sw.got("a"), sw.got("c")
    sw.send("sniff", icmp("02:00:00:00:00:99", A))
    assert sw.got("a") == []
    assert sw.drops("mirror-dest-port") == 1


def test_allow_normal_io() -> None:
    sw = learned(base("    sources: [{port: a, direction: ingress}]\n"
                      "    destinations: [sniff]\n    allow_normal_io: true"))
    sw.send("sniff", icmp("02:00:00:00:00:99", A))
    assert len(sw.got("a")) == 1
    bcast = icmp(B, "ff:ff:ff:ff:ff:ff")
    sw.send("b", bcast)
    assert sw.got("sniff") == [bcast]


def test_disabled_session_copies_nothing() -> None:
    sw = learned(base("    enabled: false\n    sources: [a]\n    destinations: [sniff]"))
    sw.send("a", icmp(A, B))
    assert sw.got("sniff") == []


def test_egress_copy_is_frame_as_delivered() -> None:
    sw = make_switch("""
ports:
  t: {type: memory, vlan: {mode: trunk, allowed: [10]}}
  acc: {type: memory, vlan: {mode: access, id: 10}}
  sniff: {type: memory}
mirrors:
  m: {sources: [{port: acc, direction: egress}], destinations: [sniff]}
""")
    tagged = bytes(Ether(src=A, dst=B) / Dot1Q(vlan=10) / IP() / ICMP())
    sw.send("t", tagged)
    untagged = sw.got("acc")
    assert len(untagged) == 1 and not Ether(untagged[0]).haslayer(Dot1Q)
    assert sw.got("sniff") == untagged


def test_ingress_copy_is_frame_as_sent_even_if_dropped() -> None:
    sw = make_switch("""
ports:
  t: {type: memory, vlan: {mode: trunk, allowed: [10]}}
  sniff: {type: memory}
mirrors:
  m: {sources: [{port: t, direction: ingress}], destinations: [sniff]}
""")
    bad = bytes(Ether(src=A, dst=B) / Dot1Q(vlan=30) / IP() / ICMP())
    sw.send("t", bad)
    assert sw.got("sniff") == [bad]
    assert sw.drops("vlan-not-allowed") == 1


def test_trace_text_names_each_stage() -> None:
    sw = learned(base("    sources: [a]\n    destinations: [sniff]"))
    decision, _outcome, tracer = sw.engine.trace("a", icmp(A, B))
    text = tracer.render()
    assert "received on port a" in text
    assert "session mon: ingress copy -> sniff" in text
    assert "joins untagged network" in text
    assert "02:00:00:00:00:0b on VLAN 0 learned on port b" in text
    assert "port b" in text
    assert [o.port for o in decision.outputs] == [sw.engine.state.by_name["b"]]


def test_trace_of_drop_names_reason() -> None:
    sw = make_switch("ports: {t: {type: memory, vlan: {mode: trunk, allowed: [10]}}}")
    bad = bytes(Ether(src=A, dst=B) / Dot1Q(vlan=30) / IP() / ICMP())
    decision, _outcome, tracer = sw.engine.trace("t", bad)
    assert decision.drops[0].reason.value == "vlan-not-allowed"
    assert "tagged VID 30 not allowed on trunk port (allowed: 10): drop" in tracer.render()
