"""Hypothesis strategies for vspan.packet headers and frames (shared by test_packet_*).

Imported by the other packet test modules as ``tests.unit.test_packet_strategies``;
the few tests at the bottom check that the strategies make what they promise.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vspan.packet import (
    ARP,
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_QINQ1,
    ICMP,
    TCP,
    UDP,
    Ethernet,
    ICMPv6,
    IPv4,
    IPv6,
    IPv6Ext,
    IPv6Fragment,
    L3Header,
    L4Header,
    VlanTag,
    build_frame,
    parse_frame,
)
from vspan.packet.ipv6 import EXT_HEADERS, IPPROTO_AH, IPPROTO_DSTOPTS, IPPROTO_HOPOPTS

# no switch, engine or port: the VSPAN_FASTPATH=python pass skips it (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent


def examples(n: int) -> settings:
    """Settings for ``n`` examples, without deadlines or speed checks (CI machines are busy)."""
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


FAST = examples(150)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
macs = st.binary(min_size=6, max_size=6)
ip4s = st.binary(min_size=4, max_size=4)
ip6s = st.binary(min_size=16, max_size=16)
payloads = st.binary(max_size=64)


def _words(max_words: int, *, valid_ip_options: bool = False) -> st.SearchStrategy[bytes]:
    """Byte strings whose length is a multiple of 4 (at most ``max_words`` words)."""
    if valid_ip_options:
        # NOPs then one router alert or end-of-list: options every parser understands
        return st.sampled_from([b"", b"\x94\x04\x00\x00", b"\x01\x01\x01\x00",
                                b"\x01\x01\x01\x01\x94\x04\x00\x00"])
    return st.integers(0, max_words).flatmap(
        lambda n: st.binary(min_size=4 * n, max_size=4 * n))


tpids = st.sampled_from([ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ1])
vlan_tags = st.builds(VlanTag, tpid=tpids, pcp=st.integers(0, 7), dei=st.integers(0, 1),
                      vid=st.integers(0, 4095))


def ethernets(*, scapy_tpids: bool = False) -> st.SearchStrategy[Ethernet]:
    """Ethernet headers with 0-3 tags (``scapy_tpids``: only TPIDs scapy decodes)."""
    tags = vlan_tags
    if scapy_tpids:
        tags = st.builds(VlanTag, tpid=st.sampled_from([ETH_P_8021Q, ETH_P_8021AD]),
                         pcp=st.integers(0, 7), dei=st.integers(0, 1),
                         vid=st.integers(0, 4095))
    # an ethertype equal to a TPID announces one more tag: not a frame with these tags
    ethertypes = u16.filter(lambda t: t not in (ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ1))
    return st.builds(Ethernet, dst=macs, src=macs,
                     tags=st.lists(tags, max_size=3).map(tuple), ethertype=ethertypes)


arps = st.integers(0, 8).flatmap(lambda hl: st.integers(0, 8).flatmap(lambda pl: st.builds(
    ARP, op=u16, sha=st.binary(min_size=hl, max_size=hl), spa=st.binary(min_size=pl, max_size=pl),
    tha=st.binary(min_size=hl, max_size=hl), tpa=st.binary(min_size=pl, max_size=pl),
    htype=u16, ptype=u16)))
eth_arps = st.builds(ARP, op=st.sampled_from([1, 2]), sha=macs, spa=ip4s, tha=macs, tpa=ip4s)


def ipv4s(*, fragments: bool = True, valid_options: bool = False) -> st.SearchStrategy[IPv4]:
    """IPv4 headers; with ``fragments`` some have MF set or a non-zero offset."""
    frag = st.one_of(st.just(0), st.integers(0, 0x1FFF)) if fragments else st.just(0)
    flags = st.integers(0, 7) if fragments else st.sampled_from([0, 2])
    return st.builds(IPv4, src=ip4s, dst=ip4s, proto=u8, ttl=u8, tos=u8, ident=u16,
                     flags=flags, frag_offset=frag,
                     options=_words(10, valid_ip_options=valid_options),
                     total_length=u16, checksum=u16)


def _pad_options(size: int) -> bytes:
    """Hop-by-hop/destination option area of ``size`` bytes made only of Pad1/PadN."""
    if size == 0:
        return b""
    if size == 1:
        return b"\x00"
    return bytes((1, size - 2)) + bytes(size - 2)


@st.composite
def ipv6_exts(draw: st.DrawFn, *, ah: bool = True, scapy_safe: bool = False) -> IPv6Ext:
    """One non-fragment extension header (next_header left for the chain to fix)."""
    kinds = [IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, 43] + ([IPPROTO_AH] if ah else [])
    kind = draw(st.sampled_from(kinds))
    if kind == IPPROTO_AH:
        words = draw(st.integers(1, 6))  # 8 + 4*words - 2 data bytes (SPI, seq, ICV)
        return IPv6Ext(kind, 59, draw(st.binary(min_size=4 * words + 6,
                                               max_size=4 * words + 6)))
    units = draw(st.integers(0, 4))
    size = 8 * units + 6
    if kind == 43:
        rtype = draw(st.sampled_from([0, 2, 4]))
        if rtype == 2:
            data = bytes((2, draw(st.integers(0, 1)))) + bytes(4) + draw(ip6s)
        elif rtype == 0:
            naddr = draw(st.integers(0, 2))
            data = bytes((0, draw(st.integers(0, naddr)))) + bytes(4) + b"".join(
                draw(ip6s) for _ in range(naddr))
        else:  # segment routing: last entry, flags, tag, segment list
            nseg = draw(st.integers(1, 2))
            data = (bytes((4, draw(st.integers(0, nseg)), nseg - 1, 0, 0, 0))
                    + b"".join(draw(ip6s) for _ in range(nseg)))
        return IPv6Ext(kind, 59, data)
    if scapy_safe:
        return IPv6Ext(kind, 59, _pad_options(size))
    return IPv6Ext(kind, 59, draw(st.binary(min_size=size, max_size=size)))


ipv6_frags = st.builds(IPv6Fragment, next_header=st.just(59), offset=st.integers(0, 0x1FFF),
                       more=st.booleans(), ident=u32, reserved=u8, res=st.integers(0, 3))


@st.composite
def ipv6s(draw: st.DrawFn, *, upper: int | None = None, fragments: bool = True,
          ah: bool = True, scapy_safe: bool = False) -> IPv6:
    """IPv6 headers with a consistent extension header chain ending in ``upper``.

    A fragment header with a non-zero offset is always the last one (the walk
    stops there). ``upper`` is never an extension header type.
    """
    exts: list[IPv6Ext | IPv6Fragment] = draw(
        st.lists(ipv6_exts(ah=ah, scapy_safe=scapy_safe), max_size=3))
    if fragments and draw(st.booleans()):
        frag = draw(ipv6_frags)
        if frag.offset:
            exts.append(frag)
        else:
            exts.insert(draw(st.integers(0, len(exts))), frag)
    if upper is None:
        upper = draw(u8.filter(lambda p: p not in EXT_HEADERS))
    ip = IPv6(draw(ip6s), draw(ip6s), 0, draw(u8), draw(u8), draw(st.integers(0, 0xFFFFF)),
              tuple(exts), draw(u16))
    return ip.with_chain(upper)


tcps = st.builds(TCP, sport=u16, dport=u16, seq=u32, ack=u32, flags=st.integers(0, 0x1FF),
                 window=u16, urgent=u16, options=_words(10), checksum=u16,
                 reserved=st.integers(0, 7))
udps = st.builds(UDP, sport=u16, dport=u16, length=u16, checksum=u16)
#: TCP options scapy decodes and re-encodes byte for byte (NOP-padded to a 4-byte multiple).
VALID_TCP_OPTIONS = [
    b"",
    b"\x02\x04\x05\xb4",  # MSS 1460
    b"\x01\x03\x03\x07",  # NOP, window scale 7
    b"\x01\x01\x04\x02",  # NOP NOP SACK-permitted
    b"\x01\x01\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x02",  # timestamps
    b"\x02\x04\x05\xb4\x01\x03\x03\x07\x01\x01\x04\x02",
]
#: Ports scapy binds no application layer to (so it leaves payloads raw).
high_ports = st.integers(49152, 65535)
scapy_tcps = st.builds(TCP, sport=high_ports, dport=high_ports, seq=u32, ack=u32,
                       flags=st.integers(0, 0x1FF), window=u16, urgent=u16,
                       options=st.sampled_from(VALID_TCP_OPTIONS), checksum=u16,
                       reserved=st.integers(0, 7))
#: ICMP types whose body scapy does not dissect into fields (no quoted IP, no timestamps).
SCAPY_ICMP_TYPES = [0, 8, 42, 253]
SCAPY_ICMPV6_TYPES = [128, 129, 128, 129, 100, 200]
scapy_udps = st.builds(UDP, sport=high_ports, dport=high_ports, length=u16, checksum=u16)
scapy_icmps = st.builds(ICMP, type=st.sampled_from(SCAPY_ICMP_TYPES), code=u8,
                        rest=st.binary(min_size=4, max_size=4), checksum=u16)
scapy_icmpv6s = st.builds(ICMPv6, type=st.sampled_from(SCAPY_ICMPV6_TYPES), code=u8,
                          rest=st.binary(min_size=4, max_size=4), checksum=u16)
icmps = st.builds(ICMP, type=u8, code=u8, rest=st.binary(min_size=4, max_size=4),
                  checksum=u16)
icmpv6s = st.builds(ICMPv6, type=u8, code=u8, rest=st.binary(min_size=4, max_size=4),
                    checksum=u16)


@dataclass(frozen=True)
class FrameSpec:
    """Headers and payload of a generated frame."""

    eth: Ethernet
    l3: L3Header | None
    l4: L4Header | None
    payload: bytes

    def build(self, *, pad: bool = False) -> bytes:
        """The frame, with computed lengths, checksums and types."""
        return build_frame(self.eth, self.l3, self.l4, self.payload, pad=pad)


@st.composite
def frames(draw: st.DrawFn, *, fragments: bool = True, scapy_safe: bool = False,
           ah: bool = True) -> FrameSpec:
    """Well-formed frames of every kind the parser knows, and some it does not.

    With ``scapy_safe``, only what scapy decodes the same way: 802.1Q/802.1ad TPIDs,
    IPv4 and TCP options it understands, IPv6 extension headers padded with PadN,
    ICMP types without dissected bodies, experimental ethertypes/protocols for raw
    payloads, no fragments, no AH.
    """
    eth = draw(ethernets(scapy_tpids=scapy_safe))
    kind = draw(st.sampled_from(["ipv4", "ipv6", "ipv4", "ipv6", "arp", "raw"]))
    payload = draw(payloads)
    if kind == "raw":
        if scapy_safe:
            etype = draw(st.sampled_from([0x88B5, 0x88B6, 0x1234]))
        else:
            etype = draw(u16.filter(lambda t: t not in (0x0800, 0x86DD, 0x0806, 0x8100,
                                                        0x88A8, 0x9100)))
        return FrameSpec(Ethernet(eth.dst, eth.src, eth.tags, etype), None, None, payload)
    if kind == "arp":
        return FrameSpec(eth, draw(eth_arps), None, b"")
    if scapy_safe:
        l4s = [scapy_tcps, scapy_udps, scapy_icmps if kind == "ipv4" else scapy_icmpv6s]
    else:
        l4s = [tcps, udps, icmps if kind == "ipv4" else icmpv6s]
    l4: L4Header | None = draw(st.one_of(*l4s, st.none()))
    ip: IPv4 | IPv6
    if kind == "ipv4":
        ip = draw(ipv4s(fragments=fragments and not scapy_safe, valid_options=scapy_safe))
        if ip.frag_offset and l4 is not None:
            payload = l4.build(payload, ip=ip)  # later fragment: just data
            l4 = None
        if l4 is None and (scapy_safe or ip.proto in (1, 6, 17)):
            ip = IPv4(ip.src, ip.dst, 253, ip.ttl, ip.tos, ip.ident, ip.flags, ip.frag_offset,
                      ip.options)
    else:
        upper = l4.protocol if l4 is not None else draw(
            st.sampled_from([59, 253] if scapy_safe else [59, 253, 254, 47]))
        ip = draw(ipv6s(upper=upper, fragments=fragments and not scapy_safe,
                        ah=ah and not scapy_safe, scapy_safe=scapy_safe))
        if ip.is_later_fragment and l4 is not None:
            payload = l4.build(payload, ip=ip)
            ip = ip.with_chain(253)
            l4 = None
    return FrameSpec(eth, ip, l4, payload)


# -- the strategies keep their promises --------------------------------------------------


@FAST
@given(frames())
def test_generated_frames_parse(spec: FrameSpec) -> None:
    """Every generated frame parses, and to the same kinds of headers."""
    parsed = parse_frame(spec.build())
    assert type(parsed.l3) is type(spec.l3)
    assert type(parsed.l4) is type(spec.l4)
    assert parsed.payload.tobytes() == spec.payload


@examples(50)
@given(ipv6s())
def test_generated_ipv6_chain_is_consistent(ip: IPv6) -> None:
    """The next-header chain runs through every extension header."""
    types = [ip.next_header] + [e.next_header for e in ip.ext_headers]
    assert types[: len(ip.ext_headers)] == [e.header_type for e in ip.ext_headers]
    assert types[-1] not in EXT_HEADERS
