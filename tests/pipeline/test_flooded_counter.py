"""The FLOODED port counter (issue 7, item 3) on memory ports.

``flooded`` counts, per ingress port, the frames the switch flooded (broadcast,
multicast, unknown unicast): one per frame whatever the number of copies,
including frames replayed from the flow cache.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import cast

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from tests.pipeline.harness import Switch, make_switch

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"
BCAST = "ff:ff:ff:ff:ff:ff"


@pytest.fixture
def sw() -> Iterator[Switch]:
    s = make_switch("ports: {a: {type: memory}, b: {type: memory}, c: {type: memory}, "
                    "lone: {type: memory, vlan: {mode: access, id: 77}}}")
    yield s
    s.engine.close()


def flooded(s: Switch, port: str) -> int:
    return s.engine.state.port(port).counters.as_dict()["flooded"]


def udp(src: str, dst: str, dport: int = 9) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2")
                 / UDP(sport=1, dport=dport))


def test_broadcast_counts_once_per_frame_not_per_copy(sw: Switch) -> None:
    arp = bytes(Ether(src=A, dst=BCAST) / ARP(psrc="10.0.0.1", pdst="10.0.0.2"))
    sw.send("a", arp)
    assert len(sw.got("b")) == 1 and len(sw.got("c")) == 1  # two copies
    assert flooded(sw, "a") == 1
    assert flooded(sw, "b") == 0 and flooded(sw, "c") == 0


def test_cached_flooded_flow_counts_every_frame(sw: Switch) -> None:
    frame = udp(A, B)  # B unknown: flooded
    sw.send("a", frame)  # learns A (not cached)
    sw.send("a", frame, frame, frame)  # decided once more, then replayed from the cache
    assert sw.engine.cache.hits >= 2
    assert len(sw.got("b")) == 4 and len(sw.got("c")) == 4
    assert flooded(sw, "a") == 4


def test_known_unicast_is_not_flooded(sw: Switch) -> None:
    sw.send("b", udp(B, A))  # B learned on b (flooded: A unknown)
    sw.send("a", udp(A, B), udp(A, B))
    assert flooded(sw, "a") == 0 and flooded(sw, "b") == 1


def test_frame_with_nowhere_to_go_is_not_counted(sw: Switch) -> None:
    sw.send("lone", udp(C, BCAST))
    assert sw.drops("no-destination") == 1
    assert flooded(sw, "lone") == 0


def test_counters_view_and_metrics_show_flooded(sw: Switch) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from vspan.api.metrics import SwitchCollector
    from vspan.control import views
    from vspan.control.agent import Agent

    sw.send("a", udp(A, BCAST), udp(A, BCAST))
    assert views.counters_view(sw.engine)["ports"]["a"]["flooded"] == 2
    registry = CollectorRegistry()
    registry.register(SwitchCollector(cast(Agent, SimpleNamespace(engine=sw.engine))))
    text = generate_latest(registry).decode()
    assert 'vspan_port_flooded_total{port="a"} 2.0' in text
    assert "one per frame" in text  # the help says what is counted
