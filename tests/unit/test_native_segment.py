"""The C software GSO/checksum (``ports/_segment.h``) is ``offload.finalize`` byte for byte:
TCP over IPv4/IPv6 (options, flags, ECN/CWR, sequence wrap), UDP GSO, partial checksums,
VLAN tags, and malformed headers (refused where Python raises)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw

from vspan.datapath import native
from vspan.packet.errors import PacketError
from vspan.ports.base import Frame
from vspan.ports.offload import finalize
from vspan.ports.vnet import F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_STRUCT

pytestmark = pytest.mark.skipif(not native.available(), reason="_native was not built")


@settings(max_examples=400, deadline=None)
@given(v6=st.booleans(), udp=st.booleans(), tag=st.booleans(), size=st.integers(0, 3000),
       mss=st.integers(0, 1500), ecn=st.booleans(), flags=st.sampled_from(["PA", "FPA", "A",
                                                                             "CA", "S"]),
       seq=st.sampled_from([0, 2**32 - 100]), gso=st.booleans(), cut=st.integers(0, 80),
       junk=st.binary(max_size=12))
def test_finalize_is_the_python_one(v6: bool, udp: bool, tag: bool, size: int, mss: int,
                                    ecn: bool, flags: str, seq: int, gso: bool, cut: int,
                                    junk: bytes) -> None:
    eth: Packet = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if tag:
        eth = eth / Dot1Q(vlan=7)
    ip: Packet = IPv6(src="2001:db8::1", dst="2001:db8::2") if v6 else IP(
        src="10.0.0.1", dst="10.0.0.2", id=65530)
    l4: Packet = UDP(sport=5, dport=6) if udp else TCP(sport=5, dport=6, seq=seq, flags=flags)
    data = bytes(eth / ip / l4 / Raw(bytes(i % 251 for i in range(size))))
    l3 = 18 if tag else 14
    csum_start = l3 + (40 if v6 else 20)
    kind = (GSO_UDP_L4 if udp else GSO_TCPV6 if v6 else GSO_TCPV4) if gso else 0
    if ecn and kind and not udp:
        kind |= GSO_ECN
    vnet = VNET_STRUCT.pack(F_NEEDS_CSUM, kind, 0, mss, csum_start, 6 if udp else 16)
    for d, vn in ((data, vnet), (data[: max(0, len(data) - cut)], vnet), (data, junk)):
        try:
            want: list[bytes] | None = finalize(Frame(d, vn))
        except PacketError:
            want = None
        assert native.finalize(d, vn) == want


@settings(max_examples=300, deadline=None)
@given(payload=st.one_of(st.binary(max_size=2000),
                         st.builds(lambda n, b: bytes([b]) * n, st.integers(0, 2000),
                                   st.sampled_from([0x00, 0xFF, 0x80, 0x01]))),
       udp=st.booleans(), gso=st.booleans())
def test_checksums_of_any_payload_are_the_python_ones(payload: bytes, udp: bool,
                                                      gso: bool) -> None:
    """The C sum takes 32-bit words (byte order swapped back at the end): any bytes —
    random, all-zero, all-0xFF, odd lengths — give the RFC 1071 checksum Python gives,
    including the UDP checksum that sums to zero (sent as 0xFFFF)."""
    ip = IP(src="10.0.0.1", dst="10.0.0.2", id=7)
    l4: Packet = UDP(sport=5, dport=6) if udp else TCP(sport=5, dport=6, flags="PA")
    data = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip / l4
                 / Raw(payload))
    kind = (GSO_UDP_L4 if udp else GSO_TCPV4) if gso else 0
    vnet = VNET_STRUCT.pack(F_NEEDS_CSUM, kind, 0, 536, 34, 6 if udp else 16)
    try:
        want: list[bytes] | None = finalize(Frame(data, vnet))
    except PacketError:
        want = None
    assert native.finalize(data, vnet) == want
