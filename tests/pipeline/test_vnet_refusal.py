"""Frames whose virtio-net header is hostile or does not fit them are dropped at receive,
with a reason counted on the port they came in by, through both replays (native and
Python): a tiny ``gso_size`` (one frame would become thousands of segments wherever it
must be cut: ERSPAN, captures, ports without offloads) and inconsistent fields (which
the output port's kernel send would refuse: ``tx-error``). Good offload headers still
pass whole."""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from tests.helpers.agreement import RecordingSender
from tests.helpers.differential import build, observe
from tests.pipeline.harness import Switch
from vspan.datapath import native
from vspan.ports.base import Frame
from vspan.ports.vnet import (
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP,
    GSO_UDP_L4,
    VNET_STRUCT,
)

A, B = "02:00:00:00:00:01", "02:00:00:00:00:02"
MODES = ["python", *(["native"] if native.available() else [])]
CONFIG = """
ports:
  a: {type: memory, vlan: {mode: access, id: 10}}
  b: {type: memory, vlan: {mode: access, id: 10}}
  t: {type: memory, vlan: {mode: trunk, allowed: [10]}}
  s: {type: memory}
mirrors:
  m: {sources: [{port: a, direction: both}], destinations: [s], mirrored_packet_length: 96}
"""


def _tcp(size: int) -> bytes:
    return bytes(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") /
                 TCP(sport=1000, dport=80, flags="PA") / Raw(b"t" * size))


def _udp(size: int) -> bytes:
    return bytes(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") /
                 UDP(sport=1000, dport=53) / Raw(b"u" * size))


def _vnet(flags: int, gso: int, hdr_len: int, gso_size: int, start: int, off: int) -> bytes:
    return VNET_STRUCT.pack(flags, gso, hdr_len, gso_size, start, off)


TCP_OK = _vnet(F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16)

#: (name, frame, vnet header, drop reason)
HOSTILE: list[tuple[str, bytes, bytes, str]] = [
    ("tcp-gso-size-1", _tcp(8000), _vnet(F_NEEDS_CSUM, GSO_TCPV4, 54, 1, 34, 16),
     "gso-segments"),
    ("tcp-gso-size-47", _tcp(3000), _vnet(F_NEEDS_CSUM, GSO_TCPV4, 54, 47, 34, 16),
     "gso-segments"),
    ("udp-gso-129-datagrams", _udp(129 * 8), _vnet(F_NEEDS_CSUM, GSO_UDP_L4, 42, 8, 34, 6),
     "gso-segments"),
    ("csum-beyond-frame", _tcp(100), _vnet(F_NEEDS_CSUM, 0, 0, 0, 34, 200), "vnet-header"),
    ("csum-start-beyond-frame", _tcp(100), _vnet(F_NEEDS_CSUM, 0, 0, 0, 4000, 16),
     "vnet-header"),
    ("csum-in-ethernet-header", _tcp(100), _vnet(F_NEEDS_CSUM, 0, 0, 0, 2, 2), "vnet-header"),
    ("hdr-len-beyond-frame", _tcp(100), _vnet(0, 0, 5000, 0, 0, 0), "vnet-header"),
    ("unknown-gso-type", _tcp(3000), _vnet(F_NEEDS_CSUM, 9, 54, 1448, 34, 16), "vnet-header"),
    ("ufo-not-offered", _udp(3000), _vnet(F_NEEDS_CSUM, GSO_UDP, 42, 1448, 34, 6),
     "vnet-header"),
    ("ecn-alone", _tcp(3000), _vnet(F_NEEDS_CSUM, GSO_ECN, 54, 1448, 34, 16), "vnet-header"),
    ("gso-size-0", _tcp(3000), _vnet(F_NEEDS_CSUM, GSO_TCPV4, 54, 0, 34, 16), "vnet-header"),
    ("tcp-gso-on-udp", _udp(3000), _vnet(F_NEEDS_CSUM, GSO_TCPV4, 42, 1448, 34, 6),
     "vnet-header"),
    ("tcp6-gso-on-ipv4", _tcp(3000), _vnet(F_NEEDS_CSUM, GSO_TCPV6, 54, 1448, 34, 16),
     "vnet-header"),
    ("gso-on-arp", bytes(Ether(src=A, dst=B) / ARP() / Raw(b"\0" * 3000)),
     _vnet(F_NEEDS_CSUM, GSO_TCPV4, 42, 1448, 34, 16), "vnet-header"),
    ("gso-csum-not-at-tcp", _tcp(3000), _vnet(F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 6),
     "vnet-header"),
    ("udp-gso-without-csum", _udp(3000), _vnet(0, GSO_UDP_L4, 42, 1448, 0, 0), "vnet-header"),
    ("short-header", _tcp(100), b"\x01\x00\x00", "vnet-header"),
]

#: headers that are fine: they pass, whole
GOOD: list[tuple[str, bytes, bytes]] = [
    ("tcp-gso", _tcp(8000), TCP_OK),
    ("tcp-gso-ecn", _tcp(8000), _vnet(F_NEEDS_CSUM, GSO_TCPV4 | GSO_ECN, 54, 1448, 34, 16)),
    ("tcp-gso-min-size", _tcp(480), _vnet(F_NEEDS_CSUM, GSO_TCPV4, 54, 48, 34, 16)),
    ("small-frame-tiny-gso", _tcp(1), _vnet(F_NEEDS_CSUM, GSO_TCPV4, 54, 1, 34, 16)),
    ("udp-gso-128", _udp(128 * 8), _vnet(F_NEEDS_CSUM, GSO_UDP_L4, 42, 8, 34, 6)),
    ("tcp-csum", _tcp(100), _vnet(F_NEEDS_CSUM, 0, 0, 0, 34, 16)),
    ("data-valid", _tcp(100), _vnet(2, 0, 0, 0, 0, 0)),
    ("tcp6-gso", bytes(Ether(src=A, dst=B) / IPv6(src="2001:db8::1", dst="2001:db8::2") /
                       TCP(sport=1000, dport=80) / Raw(b"s" * 5000)),
     _vnet(F_NEEDS_CSUM, GSO_TCPV6, 74, 1428, 54, 16)),
]


def _learned(mode: str) -> tuple[Switch, RecordingSender]:
    sw, rec = build(CONFIG, mode)
    sw.send("b", bytes(Ether(src=B, dst=A) / IP() / UDP()))  # b learned: a -> b is unicast
    for _ in range(3):  # the flows cached (and installed natively)
        sw.send("a", _tcp(100), _udp(100))
    sw.engine.process(sw.engine.state.by_name["a"], [Frame(_tcp(8000), TCP_OK)] * 2)
    for p in sw.ports.values():
        p.take()
    return sw, rec


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "data", "vnet", "reason"), HOSTILE,
                         ids=[h[0] for h in HOSTILE])
def test_hostile_header_is_dropped_at_receive(mode: str, name: str, data: bytes, vnet: bytes,
                                              reason: str) -> None:
    sw, _ = _learned(mode)
    try:
        a = sw.engine.state.by_name["a"]
        before = sw.engine.state.drops.for_port(a).get((reason, ""), 0)
        sw.engine.process(a, [Frame(data, vnet)])
        assert sw.engine.state.drops.for_port(a).get((reason, ""), 0) == before + 1
        assert sw.drops("tx-error") == 0
        for port in ("b", "s", "t"):  # not forwarded, flooded or mirrored
            assert sw.got(port) == []
        assert sw.engine.state.ports[a].counters.dropped >= 1
    finally:
        sw.engine.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "data", "vnet"), GOOD, ids=[g[0] for g in GOOD])
def test_good_header_passes(mode: str, name: str, data: bytes, vnet: bytes) -> None:
    sw, _ = _learned(mode)
    try:
        a = sw.engine.state.by_name["a"]
        sw.engine.process(a, [Frame(data, vnet)])
        assert sw.drops("vnet-header") == sw.drops("gso-segments") == 0
        assert sw.got("b")  # delivered (memory ports cut GSO frames as a NIC would)
    finally:
        sw.engine.close()


@pytest.mark.skipif(not native.available(), reason="vspan.datapath._native was not built")
def test_native_and_python_replays_agree_on_hostile_batches() -> None:
    """Hostile frames mixed into batches of cached flows: the native replay hands them to
    Python, which drops them; everything observable is the same as the Python replay's."""
    (nsw, nrec), (psw, prec) = _learned("native"), _learned("python")
    try:
        nobs, pobs = observe(nsw, nrec), observe(psw, prec)
        assert nobs == pobs
        batch = [Frame(_tcp(100))]
        for _, data, vnet, _ in HOSTILE:
            batch += [Frame(data, vnet), Frame(_tcp(8000), TCP_OK), Frame(_udp(100))]
        for sw in (nsw, psw):
            sw.engine.process(sw.engine.state.by_name["a"],
                              [Frame(f.data, f.vnet) for f in batch])
        nobs, pobs = observe(nsw, nrec), observe(psw, prec)
        assert nobs == pobs
        nat = nsw.engine.fastpath.native
        assert nat is not None and nat.replayed > 0
        assert nsw.drops("vnet-header") + nsw.drops("gso-segments") == len(HOSTILE)
    finally:
        nsw.engine.close()
        psw.engine.close()
