"""offload.finalize: partial checksums and software GSO, with scapy as the oracle.

Frames are built by scapy the way the kernel hands them to a vnet-header
port: the L4 checksum field holds the pseudo-header sum (not complemented),
the IP length covers the whole super-frame. Every segment ``finalize`` makes
is re-parsed by scapy, whose own checksum computation must agree, and the
reassembled payload must equal the original.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import checksum

from vspan.packet.errors import PacketError
from vspan.ports.base import Frame
from vspan.ports.offload import OffloadError, finalize
from vspan.ports.vnet import (
    F_DATA_VALID,
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP,
    GSO_UDP_L4,
    VNET_STRUCT,
)

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


def ETH(**kw: Any) -> Packet:
    """An Ethernet header with fixed addresses (no scapy route lookups)."""
    return Ether(src=MAC_A, dst=MAC_B, **kw)


def vnet(flags: int, gso: int, hdr_len: int, gso_size: int, start: int, off: int) -> bytes:
    return VNET_STRUCT.pack(flags, gso, hdr_len, gso_size, start, off)


def l4_offset(pkt: Packet) -> int:
    """Byte offset of the TCP/UDP header in the built frame."""
    layer = pkt[TCP] if TCP in pkt else pkt[UDP]
    return len(pkt) - len(layer)


def pseudo_bytes(pkt: Packet, l4_len: int) -> bytes:
    """The pseudo-header as the RFCs define it (written here, not taken from vspan)."""
    proto = 6 if TCP in pkt else 17
    if IP in pkt:
        ip = pkt[IP]
        return (
            bytes(map(int, ip.src.split(".")))
            + bytes(map(int, ip.dst.split(".")))
            + struct.pack(">BBH", 0, proto, l4_len)
        )
    import ipaddress

    ip6 = pkt[IPv6]
    return (
        ipaddress.IPv6Address(ip6.src).packed
        + ipaddress.IPv6Address(ip6.dst).packed
        + struct.pack(">I3xB", l4_len, proto)
    )


def as_partial(pkt: Packet) -> tuple[bytes, int, int]:
    """Frame bytes with the L4 checksum replaced by the pseudo-header sum (kernel style).

    Returns (frame, csum_start, csum_offset).
    """
    raw = bytearray(bytes(pkt))
    start = l4_offset(pkt)
    csum_off = 16 if TCP in pkt else 6
    l4_len = len(raw) - start
    folded = ~checksum(pseudo_bytes(pkt, l4_len)) & 0xFFFF  # uncomplemented sum
    raw[start + csum_off : start + csum_off + 2] = struct.pack(">H", folded)
    return bytes(raw), start, csum_off


def scapy_agrees(seg: bytes) -> Packet:
    """Parse ``seg`` with scapy and check IP/TCP/UDP checksums and lengths against it."""
    pkt = Ether(seg)
    if IP in pkt:
        ip = pkt[IP]
        fresh = ip.copy()
        del fresh.chksum
        assert IP(bytes(fresh)).chksum == ip.chksum, "IPv4 header checksum"
        assert ip.len == len(bytes(ip)), "IPv4 total length"
    else:
        ip6 = pkt[IPv6]
        assert ip6.plen == len(bytes(ip6)) - 40, "IPv6 payload length"
    l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
    fresh4 = l4.copy()
    del fresh4.chksum
    if UDP in pkt:
        del fresh4.len
    rebuilt = pkt.copy()
    rebuilt[type(l4)].chksum = None
    if UDP in pkt:
        rebuilt[UDP].len = None
    assert Ether(bytes(rebuilt))[type(l4)].chksum == l4.chksum, "L4 checksum"
    if UDP in pkt:
        assert pkt[UDP].len == len(bytes(pkt[UDP])), "UDP length"
    return pkt


def payload_of(pkt: Packet) -> bytes:
    layer = pkt[TCP] if TCP in pkt else pkt[UDP]
    return bytes(layer.payload)


# --------------------------------------------------------------------------- GSO


@pytest.mark.parametrize(
    ("name", "l3", "mss", "size"),
    [
        ("v4", IP(src="10.0.0.1", dst="10.0.0.2", id=0xFFFE), 1448, 10000),
        ("v4-exact", IP(src="10.0.0.1", dst="10.0.0.2", id=7), 1000, 5000),
        ("v4-ipopts", IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x00"), 500, 1733),
        ("v6", IPv6(src="2001:db8::1", dst="2001:db8::2"), 1428, 7777),
        ("v6-ext", IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrDestOpt(), 1200, 4001),
    ],
)
@pytest.mark.parametrize("tag", ["none", "dot1q", "qinq"])
def test_tcp_gso_segments_match_scapy(name: str, l3: Packet, mss: int, size: int, tag: str) -> None:
    payload = os.urandom(size)
    l2: Packet = Ether(src=MAC_A, dst=MAC_B)
    if tag == "dot1q":
        l2 = l2 / Dot1Q(vlan=42, prio=3)
    elif tag == "qinq":
        l2 = l2 / Dot1AD(vlan=100) / Dot1Q(vlan=42)
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (123, 456))]
    seq0 = 0xFFFFF000  # wraps inside the frame
    pkt = l2 / l3 / TCP(sport=40000, dport=5201, seq=seq0, ack=99, flags="FPA", options=opts)
    pkt = pkt / Raw(payload)
    pkt = Ether(bytes(pkt))  # let scapy fill lengths
    data, start, off = as_partial(pkt)
    is_v6 = IPv6 in pkt
    gso = GSO_TCPV6 if is_v6 else GSO_TCPV4
    hdr_len = start + len(pkt[TCP]) - len(payload)
    segs = finalize(Frame(data, vnet(F_NEEDS_CSUM, gso, hdr_len, mss, start, off)))

    assert len(segs) == -(-size // mss)
    got = b""
    ids = []
    for i, seg in enumerate(segs):
        p = scapy_agrees(seg)
        chunk = payload_of(p)
        assert len(chunk) == (mss if i < len(segs) - 1 else size - mss * (len(segs) - 1))
        assert p[TCP].seq == (seq0 + i * mss) & 0xFFFFFFFF
        assert p[TCP].ack == 99
        assert p[TCP].options == pkt[TCP].options
        flags = str(p[TCP].flags)
        assert ("F" in flags) == ("P" in flags) == (i == len(segs) - 1)
        assert "A" in flags
        if tag == "dot1q":
            assert p[Dot1Q].vlan == 42 and p[Dot1Q].prio == 3
        if tag == "qinq":
            assert p[Dot1AD].vlan == 100 and p[Dot1Q].vlan == 42
        if not is_v6:
            ids.append(p[IP].id)
            assert p[IP].options == pkt[IP].options
        got += chunk
    assert got == payload
    if ids:
        assert ids == [(ids[0] + i) & 0xFFFF for i in range(len(ids))]
        assert ids[0] == pkt[IP].id


def test_tcp_gso_cwr_only_on_first_segment() -> None:
    pkt = Ether(
        bytes(
            Ether(src=MAC_A, dst=MAC_B)
            / IP(src="10.0.0.1", dst="10.0.0.2")
            / TCP(flags="CEA", seq=1)
            / Raw(os.urandom(3000))
        )
    )
    data, start, off = as_partial(pkt)
    segs = finalize(Frame(data, vnet(F_NEEDS_CSUM, GSO_TCPV4 | GSO_ECN, 54, 1000, start, off)))
    flags = [str(scapy_agrees(s)[TCP].flags) for s in segs]
    assert "C" in flags[0]
    assert all("C" not in f and "E" in f for f in flags[1:])


def test_gso_frame_smaller_than_mss_is_one_segment_with_checksum() -> None:
    pkt = Ether(bytes(ETH() / IP(src="10.1.1.1", dst="10.1.1.2") / TCP(flags="PA") / Raw(b"hello")))
    data, start, off = as_partial(pkt)
    assert data != bytes(pkt)  # really partial
    segs = finalize(Frame(data, vnet(F_NEEDS_CSUM, GSO_TCPV4, 59, 1448, start, off)))
    assert segs == [bytes(pkt)]


def test_gso_frame_without_payload() -> None:
    pkt = Ether(bytes(ETH() / IPv6(src="::1", dst="::2") / TCP(flags="A")))
    data, start, off = as_partial(pkt)
    segs = finalize(Frame(data, vnet(F_NEEDS_CSUM, GSO_TCPV6, 74, 1448, start, off)))
    assert segs == [bytes(pkt)]


@pytest.mark.parametrize(
    "l3",
    [IP(src="10.0.0.1", dst="10.0.0.2", id=500), IPv6(src="2001:db8::1", dst="2001:db8::2")],
)
def test_udp_l4_gso_makes_whole_datagrams(l3: Packet) -> None:
    payload = os.urandom(5 * 1200 + 77)
    pkt = Ether(
        bytes(
            Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=7) / l3 / UDP(sport=1, dport=2) / Raw(payload)
        )
    )
    data, start, off = as_partial(pkt)
    segs = finalize(Frame(data, vnet(F_NEEDS_CSUM, GSO_UDP_L4, start + 8, 1200, start, off)))
    assert len(segs) == 6
    chunks = [payload_of(scapy_agrees(s)) for s in segs]
    assert [len(c) for c in chunks] == [1200] * 5 + [77]
    assert b"".join(chunks) == payload
    if IP in pkt:
        assert [Ether(s)[IP].id for s in segs] == list(range(500, 506))


# ---------------------------------------------------------------- checksum only


@pytest.mark.parametrize(
    "pkt",
    [
        ETH() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="S") / Raw(b"x" * 11),
        ETH() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=53) / Raw(b"odd"),
        ETH() / Dot1Q(vlan=5) / IPv6(src="fe80::1", dst="ff02::1") / UDP() / Raw(os.urandom(99)),
        ETH() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP() / Raw(os.urandom(1400)),
    ],
    ids=["tcp4", "udp4-odd", "udp6-vlan", "tcp6"],
)
def test_partial_checksum_completed(pkt: Packet) -> None:
    pkt = Ether(bytes(pkt))
    data, start, off = as_partial(pkt)
    assert data != bytes(pkt)
    out = finalize(Frame(data, vnet(F_NEEDS_CSUM, GSO_NONE, 0, 0, start, off)))
    assert out == [bytes(pkt)]
    scapy_agrees(out[0])


def test_udp_checksum_zero_is_sent_as_ffff() -> None:
    base = ETH() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7, dport=9)
    probe = Ether(bytes(base / Raw(b"abcd\x00\x00")))
    # choose the last payload word so that the computed checksum is 0
    word = probe[UDP].chksum if probe[UDP].chksum != 0xFFFF else 0
    pkt = Ether(bytes(base / Raw(b"abcd" + struct.pack(">H", word))))
    assert pkt[UDP].chksum == 0xFFFF  # scapy's rule for a zero result
    data, start, off = as_partial(pkt)
    out = finalize(Frame(data, vnet(F_NEEDS_CSUM, GSO_NONE, 0, 0, start, off)))
    assert Ether(out[0])[UDP].chksum == 0xFFFF
    assert out == [bytes(pkt)]


@pytest.mark.parametrize("vn", [b"", vnet(0, 0, 0, 0, 0, 0), vnet(F_DATA_VALID, 0, 0, 0, 0, 0)])
def test_plain_frames_pass_unchanged(vn: bytes) -> None:
    data = bytes(ETH() / IP() / TCP() / Raw(b"z" * 20))
    assert finalize(Frame(data, vn)) == [data]


# -------------------------------------------------------------------- malformed


def _tcp4() -> tuple[bytes, int, int]:
    return as_partial(
        Ether(bytes(ETH() / IP(src="1.1.1.1", dst="2.2.2.2") / TCP() / Raw(b"p" * 3000)))
    )


def _bad_cases() -> list[tuple[str, bytes, bytes]]:
    data, start, off = _tcp4()
    udp = bytes(ETH() / IP() / UDP() / Raw(b"u" * 100))
    frag6 = bytes(ETH() / IPv6() / IPv6ExtHdrFragment() / TCP() / Raw(b"f" * 3000))
    arp = bytes(ETH(type=0x0806) / Raw(b"\0" * 28))
    bad_thl = bytearray(data)
    bad_thl[start + 12] = 0x20  # data offset 8 bytes
    return [
        ("short-vnet", data, b"\x01\x01"),
        ("mss-zero", data, vnet(1, GSO_TCPV4, 54, 0, start, off)),
        ("ufo", data, vnet(1, GSO_UDP, 54, 1000, start, off)),
        ("unknown-gso", data, vnet(1, 9, 54, 1000, start, off)),
        ("csum-outside", data[:40], vnet(1, 0, 0, 0, start, off)),
        ("csum-start-past-end", data, vnet(1, 0, 0, 0, 60000, 16)),
        ("tcp4-on-ipv6", frag6, vnet(1, GSO_TCPV4, 54, 1000, 54, 16)),
        ("frag6", frag6, vnet(1, GSO_TCPV6, 62, 1000, 62, 16)),
        ("tcp-gso-on-udp", udp, vnet(1, GSO_TCPV4, 42, 50, 34, 6)),
        ("not-ip", arp, vnet(1, GSO_TCPV4, 42, 50, 34, 16)),
        ("short-eth", b"\x00" * 10, vnet(1, GSO_TCPV4, 42, 50, 34, 16)),
        ("truncated-tcp", data[:40], vnet(1, GSO_TCPV4, 54, 100, start, off)),
        ("bad-tcp-hlen", bytes(bad_thl), vnet(1, GSO_TCPV4, 54, 100, start, off)),
        ("vlan-stack", b"\0" * 12 + b"\x81\x00\x00\x01" * 3, vnet(1, GSO_TCPV4, 0, 9, 0, 0)),
    ]


@pytest.mark.parametrize(("name", "data", "vn"), _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_malformed_raises_offload_error(name: str, data: bytes, vn: bytes) -> None:
    with pytest.raises(OffloadError) as info:
        finalize(Frame(data, vn))
    assert isinstance(info.value, PacketError)  # callers may catch the packet error type
    assert str(info.value)


@settings(max_examples=400, deadline=None)
@given(
    cut=st.integers(0, 3100),
    flips=st.lists(st.tuples(st.integers(0, 3099), st.integers(0, 255)), max_size=6),
    flags=st.integers(0, 255),
    gso=st.sampled_from([0, 1, 3, 4, 5, 0x81, 0x84, 2, 0xFF]),
    hdr_len=st.integers(0, 0xFFFF),
    gso_size=st.integers(0, 0xFFFF),
    start=st.integers(0, 0xFFFF),
    off=st.integers(0, 0xFFFF),
)
def test_fuzz_never_crashes(
    cut: int,
    flips: list[tuple[int, int]],
    flags: int,
    gso: int,
    hdr_len: int,
    gso_size: int,
    start: int,
    off: int,
) -> None:
    data = bytearray(_FUZZ_BASE[:cut])
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    frame = Frame(bytes(data), vnet(flags, gso, hdr_len, gso_size, start, off))
    try:
        segs = finalize(frame)
    except OffloadError:
        return
    assert all(isinstance(s, bytes) for s in segs)


_FUZZ_BASE = _tcp4()[0]
