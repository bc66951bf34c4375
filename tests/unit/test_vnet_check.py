"""The receive check of virtio-net headers (:mod:`vspan.ports.vnetcheck`), its C twin
(``seg_vnet_check``), and the segmenters' own limit on how finely they cut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw

from tests.pipeline.test_vnet_refusal import GOOD, HOSTILE
from vspan.datapath import native
from vspan.datapath.reasons import EXPLANATIONS, DropReason
from vspan.ports.base import Frame
from vspan.ports.offload import OffloadError, finalize
from vspan.ports.vnet import (
    F_NEEDS_CSUM,
    GSO_TCPV4,
    GSO_UDP_L4,
    MAX_UDP_SEGMENTS,
    MIN_TCP_GSO_SIZE,
    VNET_STRUCT,
)
from vspan.ports.vnetcheck import BAD_HEADER, BAD_SEGMENTS, refusal

_CODES = {None: 0, BAD_HEADER: 1, BAD_SEGMENTS: 2}


def test_refusal_reasons_are_explained_drop_reasons() -> None:
    for reason in (BAD_HEADER, BAD_SEGMENTS):
        assert DropReason(reason) in EXPLANATIONS


@pytest.mark.parametrize(("name", "data", "vnet", "reason"), HOSTILE,
                         ids=[h[0] for h in HOSTILE])
def test_hostile_headers_are_refused_with_their_reason(name: str, data: bytes, vnet: bytes,
                                                       reason: str) -> None:
    bad = refusal(data, vnet)
    assert bad is not None and bad.reason == reason and bad.detail
    if native.available():
        assert native.vnet_check(data, vnet) == _CODES[reason]


@pytest.mark.parametrize(("name", "data", "vnet"), GOOD, ids=[g[0] for g in GOOD])
def test_good_headers_are_not_refused(name: str, data: bytes, vnet: bytes) -> None:
    assert refusal(data, vnet) is None
    if native.available():
        assert native.vnet_check(data, vnet) == 0


def test_segmenters_never_cut_finer_than_the_limits() -> None:
    """Defence in depth: whoever calls finalize (ERSPAN, captures, software GSO on tx)
    gets an OffloadError, not tens of thousands of segments (C: None)."""
    tcp = bytes(Ether() / IP() / TCP() / Raw(b"x" * 60000))
    udp = bytes(Ether() / IP() / UDP() / Raw(b"y" * (MAX_UDP_SEGMENTS * 8 + 1)))
    cases = [(tcp, VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, 1, 34, 16)),
             (tcp, VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, MIN_TCP_GSO_SIZE - 1, 34, 16)),
             (udp, VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_UDP_L4, 42, 8, 34, 6))]
    for data, vnet in cases:
        with pytest.raises(OffloadError, match="gso_size"):
            finalize(Frame(data, vnet))
        if native.available():
            assert native.finalize(data, vnet) is None
    ok = VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, MIN_TCP_GSO_SIZE, 34, 16)
    assert len(finalize(Frame(tcp, ok))) == -(-60000 // MIN_TCP_GSO_SIZE)


def _bases() -> list[bytes]:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    l3s: list[Packet] = [IP(src="10.0.0.1", dst="10.0.0.2"),
                         IPv6(src="2001:db8::1", dst="2001:db8::2"),
                         IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrDestOpt()]
    out = []
    for tag in (False, True):
        head = eth / Dot1Q(vlan=5) if tag else eth
        for l3 in l3s:
            out.append(bytes(head / l3 / TCP() / Raw(b"p" * 700)))
            out.append(bytes(head / l3 / UDP() / Raw(b"q" * 700)))
    return out


_BASES = _bases()


@pytest.mark.skipif(not native.available(), reason="vspan.datapath._native was not built")
@settings(max_examples=600, deadline=None)
@given(base=st.sampled_from(_BASES), cut=st.integers(0, 800),
       flips=st.lists(st.tuples(st.integers(0, 799), st.integers(0, 255)), max_size=3),
       flags=st.sampled_from([0, 1, 2, 3, 0xFF]),
       gso=st.sampled_from([0, 1, 3, 4, 5, 0x81, 0x84, 0x85, 0x80, 9]),
       hdr_len=st.sampled_from([0, 14, 54, 74, 800, 0xFFFF]),
       gso_size=st.sampled_from([0, 1, 5, 47, 48, 536, 1448, 0xFFFF]),
       start=st.sampled_from([0, 13, 14, 34, 38, 54, 58, 62, 66, 82, 0xFFFF]),
       off=st.sampled_from([0, 6, 16, 700, 0xFFFF]), vlen=st.sampled_from([0, 10, 3]))
def test_c_check_is_the_python_one(base: bytes, cut: int, flips: list[tuple[int, int]],
                                   flags: int, gso: int, hdr_len: int, gso_size: int,
                                   start: int, off: int, vlen: int) -> None:
    data = bytearray(base[: len(base) - cut] if cut < len(base) else b"")
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    vnet = VNET_STRUCT.pack(flags, gso, hdr_len, gso_size, start, off)[:vlen]
    bad = refusal(bytes(data), vnet)
    assert native.vnet_check(bytes(data), vnet) == _CODES[bad.reason if bad else None]
