"""Per-header round trips (build -> parse -> equal), checksums and field validation."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_packet_strategies import (
    FAST,
    arps,
    ethernets,
    icmps,
    icmpv6s,
    ipv4s,
    ipv6s,
    payloads,
    tcps,
    udps,
)
from vspan.packet import (
    ARP,
    ICMP,
    TCP,
    UDP,
    Ethernet,
    ICMPv6,
    IPv4,
    IPv6,
    IPv6Ext,
    IPv6Fragment,
    PacketError,
    VlanTag,
    flags_str,
    internet_checksum,
    ip_bytes,
    mac_bytes,
    mac_str,
    ones_sum,
    pseudo_header,
    tcp_flags,
)

# no switch, engine or port: the VSPAN_FASTPATH=python pass skips it (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent

IP4 = IPv4(bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 6)
IP6 = IPv6(ipaddress.IPv6Address("2001:db8::1").packed, ipaddress.IPv6Address("2001:db8::2").packed,
           6)


def rfc1071_checksum(data: bytes) -> int:
    """The textbook loop from RFC 1071, as an oracle."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# -- checksums ---------------------------------------------------------------------------


def test_rfc1071_example() -> None:
    """RFC 1071 section 3 example: the sum of 0001 f203 f4f5 f6f7 is ddf2."""
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


def test_known_ipv4_header_checksum() -> None:
    """A header from the wild (Wikipedia's IPv4 checksum example) gives b861."""
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(hdr) == 0xB861


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00", b"\xff\xff", b"\xff\xff\xff\xff"])
def test_checksum_edge_cases(data: bytes) -> None:
    """All-zero and all-one inputs follow the one's complement rules."""
    assert internet_checksum(data) == rfc1071_checksum(data)


@FAST
@given(st.binary(max_size=300))
def test_checksum_matches_rfc1071_loop(data: bytes) -> None:
    """The big-integer shortcut equals the word-by-word loop, odd lengths included."""
    assert internet_checksum(data) == rfc1071_checksum(data)
    assert internet_checksum(memoryview(data)) == rfc1071_checksum(data)


@FAST
@given(st.lists(st.binary(max_size=40).map(lambda b: b + b"\x00" * (len(b) % 2)), max_size=4),
       st.binary(max_size=41))
def test_checksum_of_chunks_is_checksum_of_concatenation(chunks: list[bytes], last: bytes) -> None:
    """Even-length chunks followed by any chunk sum like their concatenation."""
    assert internet_checksum(*chunks, last) == rfc1071_checksum(b"".join([*chunks, last]))


@FAST
@given(st.binary(min_size=2, max_size=100).filter(lambda b: len(b) % 2 == 0))
def test_inserting_checksum_verifies(data: bytes) -> None:
    """A buffer with its own checksum appended sums to zero."""
    csum = internet_checksum(data)
    assert internet_checksum(data + csum.to_bytes(2, "big")) == 0


def test_pseudo_headers() -> None:
    """Pseudo-headers have the RFC layouts (12 bytes for IPv4, 40 for IPv6)."""
    ph4 = pseudo_header(b"\x01\x02\x03\x04", b"\x05\x06\x07\x08", 17, 0x1234)
    assert ph4 == bytes.fromhex("0102030405060708 0011 1234")
    ph6 = pseudo_header(bytes(16), b"\x01" * 16, 6, 0x10000)
    assert ph6 == bytes(16) + b"\x01" * 16 + bytes.fromhex("00010000 00000006")


# -- round trips ---------------------------------------------------------------------------


@FAST
@given(ethernets(), payloads)
def test_ethernet_roundtrip(eth: Ethernet, payload: bytes) -> None:
    """Tags, ethertype and addresses survive; the next offset is after the tags."""
    raw = eth.build(payload)
    parsed, off = Ethernet.parse(raw)
    assert parsed == eth
    assert off == eth.header_len == 14 + 4 * len(eth.tags)
    assert raw[off:] == payload


@FAST
@given(arps, st.integers(0, 8))
def test_arp_roundtrip(arp: ARP, offset: int) -> None:
    """Any hardware/protocol address sizes round-trip at any offset."""
    raw = bytes(offset) + arp.pack()
    parsed, end = ARP.parse(memoryview(raw), offset)
    assert parsed == arp
    assert end == len(raw) == offset + arp.header_len


@FAST
@given(ipv4s(), payloads)
def test_ipv4_roundtrip_keeping_fields(ip: IPv4, payload: bytes) -> None:
    """With nothing recomputed, every field (options, flags, bad checksum) survives."""
    raw = ip.build(payload, fix_lengths=False, fix_checksums=False)
    parsed, off = IPv4.parse(raw)
    assert parsed == ip
    assert off == ip.header_len
    assert raw[off:] == payload


@FAST
@given(ipv4s(), payloads)
def test_ipv4_build_computes_length_and_checksum(ip: IPv4, payload: bytes) -> None:
    """Built headers carry the real total length and a checksum that verifies."""
    raw = ip.build(payload)
    parsed, _ = IPv4.parse(raw)
    assert parsed.total_length == len(raw)
    assert parsed.checksum_ok()
    assert internet_checksum(raw[: ip.header_len]) == 0
    assert dataclasses.replace(parsed, total_length=ip.total_length, checksum=ip.checksum) == ip
    assert parsed.is_fragment == bool(ip.flags & 1 or ip.frag_offset)


@FAST
@given(ipv6s(), payloads)
def test_ipv6_roundtrip(ip: IPv6, payload: bytes) -> None:
    """Extension headers are walked and survive; the offset is the upper-layer start."""
    raw = ip.build(payload)
    parsed, off = IPv6.parse(raw)
    assert parsed == dataclasses.replace(ip, payload_length=len(raw) - 40)
    assert off == ip.header_len
    assert raw[off:] == payload
    assert parsed.upper_protocol == ip.upper_protocol


@FAST
@given(tcps, payloads, st.sampled_from([IP4, IP6]))
def test_tcp_roundtrip(tcp: TCP, payload: bytes, ip: IPv4 | IPv6) -> None:
    """All header fields survive; a computed checksum verifies."""
    raw = tcp.build(payload, fix_checksums=False)
    parsed, off = TCP.parse(raw)
    assert parsed == tcp
    assert off == tcp.header_len
    fixed, _ = TCP.parse(tcp.build(payload, ip=ip))
    assert fixed.checksum_ok(payload, ip)
    assert dataclasses.replace(fixed, checksum=tcp.checksum) == tcp


@FAST
@given(udps, payloads, st.sampled_from([IP4, IP6]))
def test_udp_roundtrip(udp: UDP, payload: bytes, ip: IPv4 | IPv6) -> None:
    """Fields survive; built length and checksum are right and never 0."""
    parsed, off = UDP.parse(udp.build(payload, fix_lengths=False, fix_checksums=False))
    assert parsed == udp
    assert off == 8
    fixed, _ = UDP.parse(udp.build(payload, ip=ip))
    assert fixed.length == 8 + len(payload)
    assert fixed.checksum != 0
    assert fixed.checksum_ok(payload, ip)


@FAST
@given(icmps, payloads)
def test_icmp_roundtrip(icmp: ICMP, payload: bytes) -> None:
    """ICMP has no pseudo-header: the checksum covers header and body only."""
    parsed, off = ICMP.parse(icmp.build(payload, fix_checksums=False))
    assert parsed == icmp
    assert off == 8
    fixed, _ = ICMP.parse(icmp.build(payload))
    assert fixed.checksum_ok(payload)


@FAST
@given(icmpv6s, payloads)
def test_icmpv6_roundtrip(icmp: ICMPv6, payload: bytes) -> None:
    """ICMPv6 checksums include the IPv6 pseudo-header."""
    parsed, off = ICMPv6.parse(icmp.build(payload, fix_checksums=False))
    assert parsed == icmp
    assert off == 8
    fixed, _ = ICMPv6.parse(icmp.build(payload, ip=IP6))
    assert fixed.checksum_ok(payload, IP6)
    other = dataclasses.replace(IP6, src=bytes(16))
    assert not fixed.checksum_ok(payload, other)


def test_udp_zero_checksum_over_ipv4_means_none() -> None:
    """UDP checksum 0 is "not computed" over IPv4 but wrong over IPv6."""
    udp = UDP(1, 2, 8, 0)
    assert udp.checksum_ok(b"", IP4)
    assert not udp.checksum_ok(b"", IP6)


def test_l4_checksum_needs_ip() -> None:
    """Computing a pseudo-header checksum without the IP header is an error, not 0."""
    with pytest.raises(PacketError, match="tcp"):
        TCP(1, 2).build(b"x")
    assert TCP(1, 2).build(b"x", fix_checksums=False)[16:18] == b"\x00\x00"


# -- field helpers and validation -------------------------------------------------------------


def test_tcp_flag_letters() -> None:
    """Letters follow scapy's order; ints pass through."""
    assert tcp_flags("SA") == 0x12
    assert tcp_flags("FSRPAUECN") == 0x1FF
    assert flags_str(0x12) == "SA"
    assert TCP(1, 2, flags="S").flags == 2  # type: ignore[arg-type]
    assert TCP(1, 2, flags=0x18).has("PA")
    with pytest.raises(PacketError):
        tcp_flags("X")


def test_vlan_tag_tci() -> None:
    """TCI packs pcp/dei/vid."""
    tag = VlanTag(0x8100, 5, 1, 100)
    assert tag.tci == (5 << 13) | (1 << 12) | 100
    assert VlanTag.from_tci(0x8100, tag.tci) == tag


def test_ipv6_fragment_and_final_destination() -> None:
    """Fragment accessors and the routing header's final destination."""
    final = ipaddress.IPv6Address("2001:db8::99").packed
    rh = IPv6Ext(43, 44, bytes((0, 1)) + bytes(4) + final)
    frag = IPv6Fragment(17, offset=3, more=True, ident=7)
    ip = IPv6(IP6.src, IP6.dst, 43, ext_headers=(rh, frag))
    assert ip.fragment == frag and ip.is_fragment and ip.is_later_fragment
    assert ip.final_destination == final
    assert dataclasses.replace(ip, ext_headers=(IPv6Ext(43, 17, bytes(6)),)).final_destination \
        == IP6.dst


def test_addresses() -> None:
    """Address helpers accept text, objects and raw bytes, and reject garbage."""
    assert mac_bytes("02:00:00:aa:bb:cc") == bytes.fromhex("020000aabbcc")
    assert mac_bytes("02-00-00-aa-bb-cc") == bytes.fromhex("020000aabbcc")
    assert mac_str(bytes.fromhex("020000aabbcc")) == "02:00:00:aa:bb:cc"
    assert ip_bytes("10.0.0.1") == b"\x0a\x00\x00\x01"
    assert ip_bytes(ipaddress.IPv6Address("::1")) == bytes(15) + b"\x01"
    for bad in ("02:00", "zz:00:00:00:00:00", b"\x00"):
        with pytest.raises(PacketError):
            mac_bytes(bad)
    for bad_ip in ("10.0.0.256", b"\x00\x00", "nope"):
        with pytest.raises(PacketError):
            ip_bytes(bad_ip)


@pytest.mark.parametrize("make", [
    lambda: VlanTag(vid=4096),
    lambda: VlanTag(pcp=8),
    lambda: Ethernet(b"\x00" * 5, b"\x00" * 6),
    lambda: Ethernet(b"\x00" * 6, b"\x00" * 6, ethertype=0x10000),
    lambda: IPv4(b"\x00" * 4, b"\x00" * 4, options=b"\x01"),
    lambda: IPv4(b"\x00" * 4, b"\x00" * 4, options=b"\x01" * 44),
    lambda: IPv4(b"\x00" * 4, b"\x00" * 4, ttl=256),
    lambda: IPv4(b"\x00" * 4, b"\x00" * 16),
    lambda: IPv4(b"\x00" * 4, b"\x00" * 4, flags=8),
    lambda: IPv6(b"\x00" * 16, b"\x00" * 16, flow_label=1 << 20),
    lambda: IPv6Ext(0, 6, b"\x00" * 5),
    lambda: IPv6Ext(6, 6, b"\x00" * 6),
    lambda: IPv6Ext(51, 6, b"\x00" * 4),
    lambda: IPv6Fragment(6, offset=1 << 13),
    lambda: TCP(70000, 1),
    lambda: TCP(1, 1, options=b"\x01\x01"),
    lambda: TCP(1, 1, flags=0x200),
    lambda: UDP(1, -1),
    lambda: ICMP(256),
    lambda: ICMPv6(1, rest=b"\x00"),
    lambda: ARP(1, b"\x00" * 6, b"\x00" * 4, b"\x00" * 5, b"\x00" * 4),
])
def test_invalid_fields_raise_packet_error(make: object) -> None:
    """Out-of-range or wrongly sized fields raise PacketError at construction."""
    assert callable(make)
    with pytest.raises(PacketError):
        make()


def test_packet_error_names_header() -> None:
    """The error is a ValueError that says which header failed."""
    with pytest.raises(PacketError) as info:
        IPv4.parse(b"\x45" + bytes(10))
    assert isinstance(info.value, ValueError)
    assert info.value.header == "ipv4"
    assert "truncated" in str(info.value)


def test_oversized_payloads_are_rejected() -> None:
    """Lengths that do not fit their 16-bit fields raise PacketError."""
    with pytest.raises(PacketError):
        IP4.build(bytes(70000))
    with pytest.raises(PacketError):
        IP6.build(bytes(70000))
    with pytest.raises(PacketError):
        UDP(1, 2).build(bytes(70000), ip=IP4)
