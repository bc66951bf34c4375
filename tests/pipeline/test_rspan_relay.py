"""RSPAN pieces the distributed switch compiles its cross-host sessions from, on memory
ports: a copy "as seen" (the mirror tag pushed on whatever the frame carried), and a
receiving session that relays a mirror VLAN out of another port on another VLAN."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Dot1Q, Ether

from tests.pipeline.harness import make_switch
from vspan.config.load import ConfigError, load_text

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def icmp(src: str, dst: str, vlan: int | None = None) -> bytes:
    eth = Ether(src=src, dst=dst)
    return bytes((eth / Dot1Q(vlan=vlan) if vlan is not None else eth)
                 / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())


def test_as_seen_copies_push_the_mirror_tag_on_the_frame_as_it_was() -> None:
    sw = make_switch("""
ports:
  acc: {type: memory, vlan: {mode: access, id: 10}}
  t: {type: memory, vlan: {mode: trunk, allowed: [10]}}
  up: {type: memory, vlan: {mode: trunk, allowed: [4000]}}
mirrors:
  r: {sources: [{port: acc, direction: ingress}, {port: t, direction: ingress}],
      rspan: {port: up, vlan: 4000, keep_original_tag: true, tag_untagged: false}}
""")
    untagged = icmp(A, B)
    tagged = icmp(B, A, vlan=10)
    sw.send("acc", untagged)
    sw.send("t", tagged)
    out = sw.got("up")
    assert [c[:12] + c[16:] for c in out] == [untagged, tagged]  # only the mirror tag added
    assert [Ether(c)[Dot1Q].vlan for c in out] == [4000, 4000]
    # with tag_untagged (the default) the access port's VLAN becomes an inner tag
    sw2 = make_switch("""
ports:
  acc: {type: memory, vlan: {mode: access, id: 10}}
  up: {type: memory, vlan: {mode: trunk, allowed: [4000]}}
mirrors:
  r: {sources: [acc], rspan: {port: up, vlan: 4000, keep_original_tag: true}}
""")
    sw2.send("acc", untagged)
    inner = Ether(sw2.got("up")[0])[Dot1Q].payload
    assert isinstance(inner, Dot1Q) and inner.vlan == 10


RELAY = """
ports:
  ov: {type: memory, vlan: {mode: trunk, allowed: [10, 4000]}}
  up: {type: memory, vlan: {mode: trunk, allowed: [300]}}
  vm: {type: memory, vlan: {mode: access, id: 10}}
mirrors:
  r.rx: {rspan_source: {port: ov, vlan: 4000}, rspan: {port: up, vlan: 300}}
"""


def test_a_receiving_session_relays_its_vlan_out_of_another_port() -> None:
    sw = make_switch(RELAY)
    copy = icmp(A, B, vlan=4000)
    sw.send("ov", copy)
    out = sw.got("up")
    assert len(out) == 1
    relayed = Ether(out[0])
    assert relayed[Dot1Q].vlan == 300  # the outer tag replaced, nothing else changed
    assert out[0][:12] == copy[:12] and out[0][16:] == copy[16:]
    assert not sw.got("vm") and not sw.got("ov")  # never switched
    r = sw.engine.state.mirrors[0]
    assert (r.seen, r.mirrored) == (1, 1)
    # the uplink is no mirror destination: it keeps forwarding its own traffic
    up_rt = sw.engine.state.port("up")
    assert not up_rt.mirror_dest
    # a relayed copy keeps the inner tag of a frame copied with keep_original_tag
    sw.send("ov", bytes(Ether(src=A, dst=B) / Dot1Q(vlan=4000) / Dot1Q(vlan=10) / IP()
                        / ICMP()))
    twice = Ether(sw.got("up")[0])
    assert twice[Dot1Q].vlan == 300 and twice[Dot1Q].payload.vlan == 10


def test_trace_names_the_relay() -> None:
    sw = make_switch(RELAY)
    _decision, _outcome, tracer = sw.engine.trace("ov", icmp(A, B, vlan=4000))
    assert "relay out of up on VLAN 300" in tracer.render()


@pytest.mark.parametrize(("mirror", "expected"), [
    ("{rspan_source: {port: ov, vlan: 4000}, rspan: {port: up, vlan: 300}, "
     "destinations: [vm]}", "destinations or rspan, not both"),
    ("{rspan_source: {port: ov, vlan: 4000}, rspan: {port: ov, vlan: 4000}}",
     "cannot relay a mirror VLAN back onto itself"),
    ("{rspan_source: {port: ov, vlan: 4000}}", "needs destinations (or rspan"),
])
def test_relay_sessions_are_checked(mirror: str, expected: str) -> None:
    text = RELAY.replace("  r.rx: {rspan_source: {port: ov, vlan: 4000}, rspan: {port: up, "
                         "vlan: 300}}", f"  r: {mirror}")
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        load_text(text)
