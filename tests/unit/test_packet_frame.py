"""parse_frame / build_frame and the one-line builders."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given

from tests.unit.test_packet_strategies import FAST, FrameSpec, frames
from vspan.packet import (
    ARP_REQUEST,
    FRAG_FIRST,
    FRAG_LATER,
    FRAG_NONE,
    ICMP,
    IP_MF,
    TCP,
    UDP,
    Ethernet,
    IPv4,
    IPv6,
    IPv6Ext,
    IPv6Fragment,
    PacketError,
    VlanTag,
    arp_reply,
    arp_request,
    build_frame,
    checksum_ok,
    ethernet,
    icmp_echo,
    icmp_unreachable_for,
    ip_header,
    parse_frame,
    tcp_frame,
    tcp_reset_for,
    udp_frame,
)

# no switch, engine or port: the VSPAN_FASTPATH=python pass skips it (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent

A_MAC, B_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


@FAST
@given(frames())
def test_frame_roundtrip(spec: FrameSpec) -> None:
    """build_frame -> parse_frame gives the headers back; rebuilding as-is gives the bytes."""
    raw = spec.build()
    parsed = parse_frame(raw)
    assert parsed.eth.tags == spec.eth.tags
    assert (parsed.eth.dst, parsed.eth.src) == (spec.eth.dst, spec.eth.src)
    assert parsed.payload.tobytes() == spec.payload
    assert checksum_ok(parsed)
    if isinstance(spec.l3, IPv4):
        assert isinstance(parsed.l3, IPv4)
        assert dataclasses.replace(parsed.l3, total_length=0, checksum=0, proto=0) == \
            dataclasses.replace(spec.l3, total_length=0, checksum=0, proto=0)
    elif isinstance(spec.l3, IPv6):
        assert isinstance(parsed.l3, IPv6)
        assert dataclasses.replace(parsed.l3, payload_length=0) == \
            dataclasses.replace(spec.l3, payload_length=0)
    else:
        assert parsed.l3 == spec.l3
    if spec.l4 is not None:
        assert parsed.l4 is not None
        expected = dataclasses.replace(spec.l4, checksum=0)
        if isinstance(expected, UDP):
            expected = dataclasses.replace(expected, length=len(spec.payload) + 8)
        assert dataclasses.replace(parsed.l4, checksum=0) == expected
        assert parsed.l4_checksum_ok is (None if parsed.is_fragment else True)
    again = build_frame(parsed.eth, parsed.l3, parsed.l4, parsed.payload,
                        fix_lengths=False, fix_checksums=False, fix_types=False)
    assert again == raw


@FAST
@given(frames())
def test_parse_does_not_copy_payload(spec: FrameSpec) -> None:
    """payload and trailer are views into the caller's buffer."""
    buf = bytearray(spec.build(pad=True))
    parsed = parse_frame(buf)
    assert parsed.payload.obj is buf
    assert parsed.trailer.obj is buf
    if len(parsed.payload):
        buf[parsed.payload_offset] ^= 0xFF
        assert parsed.payload[0] == buf[parsed.payload_offset]


@FAST
@given(frames())
def test_padding_goes_to_trailer(spec: FrameSpec) -> None:
    """Ethernet padding after the IP datagram or ARP message is the trailer, not payload."""
    raw = spec.build()
    padded = spec.build(pad=True)
    parsed = parse_frame(padded)
    if spec.l3 is None:
        assert len(parsed.trailer) == 0
    else:
        assert parsed.payload.tobytes() == spec.payload
        assert parsed.trailer.tobytes() == bytes(len(padded) - len(raw))


def test_corrupted_checksums_are_flagged() -> None:
    """A flipped bit in the IPv4 header or in the transport payload fails verification."""
    raw = bytearray(udp_frame(A_MAC, B_MAC, "10.0.0.1", "10.0.0.2", 1, 2, b"data"))
    assert checksum_ok(parse_frame(raw))
    raw[14 + 8] ^= 1  # TTL
    parsed = parse_frame(raw)
    assert not parsed.ip_checksum_ok and not checksum_ok(parsed)
    assert parsed.l4_checksum_ok  # TTL is not in the pseudo-header
    raw[14 + 8] ^= 1
    raw[-1] ^= 1
    parsed = parse_frame(raw)
    assert parsed.ip_checksum_ok and parsed.l4_checksum_ok is False


def test_ipv4_fragments_are_flagged() -> None:
    """First fragments keep their transport header; later ones carry raw data."""
    eth = ethernet(A_MAC, B_MAC)
    ip = IPv4(bytes(4), bytes(4), 17, flags=IP_MF)
    udp = UDP(1, 2, length=1000).build(b"x" * 16, ip=ip, fix_lengths=False)
    first = parse_frame(build_frame(eth, ip, None, udp))
    assert first.frag == FRAG_FIRST and first.is_fragment
    assert first.udp is not None and first.udp.length == 1000  # not checked in a fragment
    assert first.l4_checksum_ok is None
    later = parse_frame(build_frame(eth, dataclasses.replace(ip, frag_offset=2), None, b"y" * 8))
    assert later.frag == FRAG_LATER and later.l4 is None and later.l4_offset == 0
    assert later.payload.tobytes() == b"y" * 8
    whole = parse_frame(udp_frame(A_MAC, B_MAC, "10.0.0.1", "10.0.0.2", 1, 2, b"z"))
    assert whole.frag == FRAG_NONE and not whole.is_fragment


def test_tiny_first_fragment_keeps_raw_bytes() -> None:
    """A first fragment that cuts the TCP header is a fragment with raw data, not an error."""
    eth = ethernet(A_MAC, B_MAC)
    ip = IPv4(bytes(4), bytes(4), 6, flags=IP_MF)
    tcp_start = TCP(1, 2, flags=2).pack()[:8]
    parsed = parse_frame(build_frame(eth, ip, None, tcp_start))
    assert parsed.frag == FRAG_FIRST and parsed.l4 is None
    assert parsed.payload.tobytes() == tcp_start and parsed.l4_offset == 34
    whole = bytearray(build_frame(eth, dataclasses.replace(ip, flags=0), None, tcp_start))
    with pytest.raises(PacketError, match="tcp"):
        parse_frame(whole)


def test_ipv6_extension_headers_are_walked() -> None:
    """Hop-by-hop, routing, AH, fragment and destination options lead to the TCP header."""
    exts = (
        IPv6Ext(0, 0, b"\x01\x04" + bytes(4)),
        IPv6Ext(43, 0, bytes(6)),
        IPv6Ext(51, 0, bytes(14)),
        IPv6Fragment(0, offset=0, more=True, ident=5),
        IPv6Ext(60, 0, bytes(14)),
    )
    ip = IPv6(b"\x20" + bytes(15), b"\x20" + bytes(14) + b"\x01", ext_headers=exts)
    raw = build_frame(ethernet(A_MAC, B_MAC), ip, TCP(80, 1234, flags=0x12), b"hi")
    parsed = parse_frame(raw)
    assert parsed.ipv6 is not None
    assert [e.header_type for e in parsed.ipv6.ext_headers] == [0, 43, 51, 44, 60]
    assert parsed.ipv6.next_header == 0 and parsed.proto == 6
    assert parsed.tcp is not None and parsed.tcp.flag_str == "SA"
    assert parsed.frag == FRAG_FIRST
    assert parsed.l4_offset == 14 + 40 + 8 + 8 + 16 + 8 + 16
    assert parsed.payload.tobytes() == b"hi"


def test_ipv6_later_fragment_stops_the_walk() -> None:
    """After a fragment header with an offset the rest is data."""
    ip = IPv6(bytes(16), bytes(16), ext_headers=(IPv6Fragment(6, offset=10),))
    parsed = parse_frame(build_frame(ethernet(A_MAC, B_MAC), ip, None, b"\x00" * 30,
                                     fix_types=True))
    assert parsed.frag == FRAG_LATER and parsed.l4 is None
    assert parsed.payload.nbytes == 30


def test_unknown_ethertype_and_protocol_keep_raw_payload() -> None:
    """Neither an unknown ethertype nor an unknown IP protocol is an error."""
    raw = Ethernet(b"\x01" * 6, b"\x02" * 6, (VlanTag(vid=5),), 0x88B5).build(b"abc")
    parsed = parse_frame(raw)
    assert parsed.l3 is None and parsed.payload.tobytes() == b"abc" and parsed.vlan == 5
    raw = build_frame(ethernet(A_MAC, B_MAC), IPv4(bytes(4), bytes(4), 132), None, b"sctp")
    parsed = parse_frame(raw)
    assert parsed.l4 is None and parsed.payload.tobytes() == b"sctp" and parsed.proto == 132
    assert parsed.l4_offset == 34


@pytest.mark.parametrize(("raw", "header"), [
    (b"", "ethernet"),
    (bytes(13), "ethernet"),
    (bytes(12) + b"\x81\x00\x00", "vlan"),
    (bytes(12) + b"\x08\x00" + b"\x45" + bytes(18), "ipv4"),
    (bytes(12) + b"\x08\x00" + b"\x65" + bytes(19), "ipv4"),  # version 6 in IPv4
    (bytes(12) + b"\x08\x00" + b"\x44" + bytes(19), "ipv4"),  # IHL 4
    (bytes(12) + b"\x08\x00" + b"\x45\x00\x00\x10" + bytes(16), "ipv4"),  # total < header
    (bytes(12) + b"\x08\x00" + b"\x45\x00\x00\x30" + bytes(16), "ipv4"),  # total > frame
    (bytes(12) + b"\x86\xdd" + b"\x60" + bytes(38), "ipv6"),
    (bytes(12) + b"\x86\xdd" + b"\x60\x00\x00\x00\x00\x08\x00\x40" + bytes(32), "ipv6"),
    (bytes(12) + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01" + bytes(19), "arp"),
])
def test_garbage_raises_packet_error(raw: bytes, header: str) -> None:
    """Short or inconsistent frames raise PacketError naming the header."""
    with pytest.raises(PacketError) as info:
        parse_frame(raw)
    assert info.value.header == header


def test_bad_transport_lengths_raise() -> None:
    """A UDP length beyond the datagram or a TCP data offset below 5 is malformed."""
    good = bytearray(udp_frame(A_MAC, B_MAC, "10.0.0.1", "10.0.0.2", 1, 2, b"abcd"))
    good[14 + 20 + 4 : 14 + 20 + 6] = (100).to_bytes(2, "big")
    with pytest.raises(PacketError, match="udp"):
        parse_frame(good)
    good[14 + 20 + 4 : 14 + 20 + 6] = (7).to_bytes(2, "big")
    with pytest.raises(PacketError, match="udp"):
        parse_frame(good)
    tcp = bytearray(tcp_frame(A_MAC, B_MAC, "10.0.0.1", "10.0.0.2", 1, 2))
    tcp[14 + 20 + 12] = 0x40
    with pytest.raises(PacketError, match="tcp"):
        parse_frame(tcp)
    tcp[14 + 20 + 12] = 0xF0  # 60-byte header in a 20-byte segment
    with pytest.raises(PacketError, match="tcp"):
        parse_frame(tcp)


# -- builders ------------------------------------------------------------------------------


def test_udp_frame_with_qinq() -> None:
    """Two VIDs make an 802.1ad outer and 802.1Q inner tag."""
    parsed = parse_frame(udp_frame(A_MAC, B_MAC, "10.0.0.1", "10.0.0.2", 5000, 53, b"q",
                                   vlan=[100, 200]))
    assert [(t.tpid, t.vid) for t in parsed.eth.tags] == [(0x88A8, 100), (0x8100, 200)]
    assert parsed.udp == UDP(5000, 53, 9, parsed.udp.checksum if parsed.udp else 0)
    assert checksum_ok(parsed)


def test_tcp_frame_ipv6_and_pad() -> None:
    """Address family follows the addresses; pad makes 60 bytes without touching IP."""
    parsed = parse_frame(tcp_frame(A_MAC, B_MAC, "2001:db8::1", "2001:db8::2", 1, 22, "PA",
                                   seq=7, ack=9, payload=b"ssh", vlan=3, pad=True))
    assert parsed.ipv6 is not None and parsed.tcp is not None
    assert parsed.tcp.flag_str == "PA" and (parsed.tcp.seq, parsed.tcp.ack) == (7, 9)
    assert parsed.vlan == 3
    assert checksum_ok(parsed)
    small = tcp_frame(A_MAC, B_MAC, "10.0.0.1", "10.0.0.2", 1, 2, pad=True)
    assert len(small) == 60
    assert parse_frame(small).trailer.nbytes == 6


def test_icmp_echo_both_families() -> None:
    """Echo requests and replies carry id and sequence."""
    v4 = parse_frame(icmp_echo(A_MAC, B_MAC, "10.0.0.1", "10.0.0.2", 7, 3, b"ping"))
    assert v4.icmp is not None and (v4.icmp.type, v4.icmp.ident, v4.icmp.seq) == (8, 7, 3)
    assert checksum_ok(v4)
    v6 = parse_frame(icmp_echo(A_MAC, B_MAC, "fe80::1", "fe80::2", 7, 3, reply=True))
    assert v6.icmpv6 is not None and v6.icmpv6.type == 129
    assert checksum_ok(v6)


def test_arp_builders() -> None:
    """Requests are broadcast with a zero target MAC; replies are unicast."""
    req = parse_frame(arp_request(A_MAC, "10.0.0.1", "10.0.0.2", vlan=7))
    assert req.arp is not None and req.arp.op == ARP_REQUEST
    assert req.eth.dst == b"\xff" * 6 and req.arp.tha == bytes(6) and req.vlan == 7
    assert str(req.arp.target_ip) == "10.0.0.2"
    rep = parse_frame(arp_reply(B_MAC, "10.0.0.2", A_MAC, "10.0.0.1"))
    assert rep.arp is not None and rep.arp.op == 2 and rep.eth.dst == rep.arp.tha
    with pytest.raises(PacketError):
        arp_request(A_MAC, "::1", "10.0.0.1")


def test_mixed_address_families_are_rejected() -> None:
    """An IPv4 source with an IPv6 destination is a PacketError."""
    with pytest.raises(PacketError):
        ip_header("10.0.0.1", "::1")
    with pytest.raises(PacketError):
        build_frame(ethernet(A_MAC, B_MAC), None, UDP(1, 2))


@pytest.mark.parametrize(("src", "dst"), [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")])
def test_tcp_reset_for_syn_and_ack(src: str, dst: str) -> None:
    """A SYN is answered with RST+ACK of seq+1; an ACKed segment with RST at its ack."""
    syn = parse_frame(tcp_frame(A_MAC, B_MAC, src, dst, 40000, 80, "S", seq=1000, vlan=9))
    rst = parse_frame(tcp_reset_for(syn))
    assert rst.tcp is not None and rst.ip is not None and syn.ip is not None
    assert rst.tcp.flag_str == "RA" and rst.tcp.ack == 1001 and rst.tcp.seq == 0
    assert (rst.tcp.sport, rst.tcp.dport) == (80, 40000)
    assert (rst.ip.src, rst.ip.dst) == (syn.ip.dst, syn.ip.src)
    assert (rst.eth.src, rst.eth.dst, rst.vlan) == (syn.eth.dst, syn.eth.src, 9)
    assert checksum_ok(rst)
    data = parse_frame(tcp_frame(A_MAC, B_MAC, src, dst, 40000, 80, "PA", seq=5, ack=777,
                                 payload=b"GET /"))
    rst = parse_frame(tcp_reset_for(data))
    assert rst.tcp is not None and rst.tcp.flag_str == "R" and rst.tcp.seq == 777
    with pytest.raises(PacketError):
        tcp_reset_for(rst)


@pytest.mark.parametrize(("src", "dst", "itype"), [
    ("10.0.0.1", "10.0.0.2", 3), ("fd00::1", "fd00::2", 1)])
def test_icmp_unreachable_quotes_the_packet(src: str, dst: str, itype: int) -> None:
    """The error goes back to the source and quotes the rejected datagram."""
    orig_raw = udp_frame(A_MAC, B_MAC, src, dst, 1234, 53, b"x" * 2000)
    orig = parse_frame(orig_raw)
    err = parse_frame(icmp_unreachable_for(orig))
    icmp = err.icmp or err.icmpv6
    assert icmp is not None and icmp.type == itype
    assert err.ip is not None and orig.ip is not None and err.ip.dst == orig.ip.src
    assert checksum_ok(err)
    limit = 576 if itype == 3 else 1280
    assert 14 + limit - 8 <= len(err.data) <= 14 + limit
    assert err.payload.tobytes() == orig_raw[14 : 14 + len(err.payload)]
    if itype == 3:
        inner, off = IPv4.parse(err.payload)
        assert inner == orig.ip and off == 20
    arp = parse_frame(arp_request(A_MAC, "10.0.0.1", "10.0.0.2"))
    with pytest.raises(PacketError):
        icmp_unreachable_for(arp)


def test_str_summaries() -> None:
    """Frames and headers print one readable line."""
    text = str(parse_frame(tcp_frame(A_MAC, B_MAC, "10.0.0.1", "10.0.0.2", 1, 2, "S")))
    assert "10.0.0.1 > 10.0.0.2" in text and "[S]" in text
    assert "ICMP type 8" in str(ICMP(8))
    frag = IPv4(bytes(4), bytes(4), flags=IP_MF)
    assert "MF" in str(frag)
