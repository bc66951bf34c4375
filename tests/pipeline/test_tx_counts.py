"""Per-port tx counters on the flush (both fast paths): a port's ``tx_frames`` and
``tx_bytes`` are the frames it took and their bytes — a local mirror's destination
counted like any output, a truncated copy by its cut length — and a port that takes
nothing counts nothing sent (its frames are TX_ERROR drops)."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tests.helpers.differential import fastpath
from tests.pipeline.harness import Switch, make_switch

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
CONFIG = """
ports:
  a: {type: memory}
  b: {type: memory}
  sniff: {type: memory}
mirrors:
  mon:
    sources: [a]
    destinations: [sniff]
%s"""


def udp(src: str, dst: str, size: int) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2")
                 / UDP(sport=1000, dport=9) / (b"u" * size))


def learned(mode: str, extra: str = "") -> Switch:
    with fastpath(mode):
        sw = make_switch(CONFIG % extra)
    sw.send("a", udp(A, B, 0))
    sw.send("b", udp(B, A, 0))
    for p in ("a", "b", "sniff"):
        sw.got(p)
    for rt in sw.engine.state.ports.values():
        rt.counters.tx_frames = rt.counters.tx_bytes = 0
    return sw


def tx(sw: Switch, port: str) -> tuple[int, int]:
    c = sw.engine.state.ports[sw.engine.state.by_name[port]].counters
    return c.tx_frames, c.tx_bytes


@pytest.mark.parametrize("mode", ["native", "python"])
def test_output_and_mirror_copies_count_their_bytes(mode: str) -> None:
    sw = learned(mode)
    frames = [udp(A, B, n) for n in (10, 200, 1000, 18, 64)]
    sw.send("a", *frames)
    assert sw.got("b") == frames and sw.got("sniff") == frames
    assert tx(sw, "b") == (5, sum(map(len, frames)))
    assert tx(sw, "sniff") == (5, sum(map(len, frames)))


@pytest.mark.parametrize("mode", ["native", "python"])
def test_truncated_copies_count_their_cut_length(mode: str) -> None:
    sw = learned(mode, "    mirrored_packet_length: 96\n")
    frames = [udp(A, B, n) for n in (10, 200, 1000)]
    sw.send("a", *frames)
    copies = sw.got("sniff")
    assert copies == [f[:96] for f in frames]
    assert tx(sw, "sniff") == (3, sum(map(len, copies)))
    assert tx(sw, "b") == (3, sum(map(len, frames)))


@pytest.mark.parametrize("mode", ["native", "python"])
def test_a_port_that_takes_nothing_counts_nothing_sent(mode: str) -> None:
    sw = learned(mode)
    sw.ports["sniff"].set_link(False)
    frames = [udp(A, B, n) for n in (10, 200)]
    sw.send("a", *frames)
    assert sw.got("b") == frames and sw.got("sniff") == []
    assert tx(sw, "sniff") == (0, 0)
    assert tx(sw, "b") == (2, sum(map(len, frames)))
    assert sw.drops("tx-error") == 2
