"""Differential tests against scapy (an independent implementation; test-only, GPL).

Two directions, thousands of frames in all:

* our builder -> scapy dissects: every field agrees with our parse, and after
  deleting every checksum scapy recomputes them to the very same bytes;
* scapy builds -> our parser: fields agree with scapy's dissection, checksums
  verify, and our builder recomputes scapy's checksums byte for byte.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_packet_strategies import (
    FrameSpec,
    examples,
    frames,
    high_ports,
    ip4s,
    ip6s,
    macs,
    u8,
    u16,
    u32,
)
from vspan.packet import (
    FRAG_FIRST,
    FRAG_LATER,
    ICMP,
    TCP,
    UDP,
    ICMPv6,
    IPv4,
    IPv6,
    IPv6Ext,
    IPv6Fragment,
    ParsedFrame,
    build_frame,
    checksum_ok,
    mac_str,
    parse_frame,
)

# offline file analysis and packet codecs: no switch, engine or port (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent


scapy_all = pytest.importorskip("scapy.all")
from scapy.layers.inet import ICMP as SICMP  # noqa: E402
from scapy.layers.inet import IP as SIP  # noqa: E402
from scapy.layers.inet import TCP as STCP  # noqa: E402
from scapy.layers.inet import UDP as SUDP  # noqa: E402
from scapy.layers.inet import IPOption_NOP, IPOption_Router_Alert, fragment  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    IPv6ExtHdrSegmentRouting,
    PadN,
    RouterAlert,
)
from scapy.layers.inet6 import IPv6 as SIPv6  # noqa: E402
from scapy.layers.ipsec import AH as SAH  # noqa: E402
from scapy.layers.l2 import ARP as SARP  # noqa: E402
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether  # noqa: E402
from scapy.packet import NoPayload, Packet, Padding, Raw  # noqa: E402

MANY = examples(1000)

_SCAPY_EXT = {0: IPv6ExtHdrHopByHop, 60: IPv6ExtHdrDestOpt, 43: IPv6ExtHdrRouting,
              44: IPv6ExtHdrFragment}
_CSUM_FIELDS = ("chksum", "cksum")


def _ip_str(raw: bytes) -> str:
    import ipaddress

    return str(ipaddress.ip_address(raw))


def assert_agrees(mine: ParsedFrame, pkt: Packet) -> None:
    """Every field scapy dissected equals ours, header by header."""
    eth = mine.eth
    assert isinstance(pkt, Ether)
    assert (pkt.dst, pkt.src) == (mac_str(eth.dst), mac_str(eth.src))
    types = [t.tpid for t in eth.tags] + [eth.ethertype]
    assert pkt.type == types[0]
    layer: Any = pkt.payload
    for tag, nxt in zip(eth.tags, types[1:], strict=True):
        assert isinstance(layer, Dot1Q | Dot1AD)
        assert (layer.prio, layer.dei, layer.vlan, layer.type) == (tag.pcp, tag.dei, tag.vid, nxt)
        layer = layer.payload
    l3 = mine.l3
    if mine.arp is not None:
        arp = mine.arp
        assert isinstance(layer, SARP)
        assert (layer.hwtype, layer.ptype, layer.hwlen, layer.plen, layer.op) == \
            (arp.htype, arp.ptype, len(arp.sha), len(arp.spa), arp.op)
        assert (layer.hwsrc, layer.hwdst) == (mac_str(arp.sha), mac_str(arp.tha))
        assert (layer.psrc, layer.pdst) == (_ip_str(arp.spa), _ip_str(arp.tpa))
        _assert_tail(layer.payload, b"", mine.trailer.tobytes())
        return
    if l3 is None:
        assert bytes(layer) == mine.payload.tobytes()
        return
    if isinstance(l3, IPv4):
        assert isinstance(layer, SIP)
        assert (layer.version, layer.ihl, layer.tos, layer.len, layer.id, int(layer.flags),
                layer.frag, layer.ttl, layer.proto, layer.chksum) == \
            (4, l3.ihl, l3.tos, l3.total_length, l3.ident, l3.flags, l3.frag_offset, l3.ttl,
             l3.proto, l3.checksum)
        assert (layer.src, layer.dst) == (_ip_str(l3.src), _ip_str(l3.dst))
        assert b"".join(bytes(o) for o in layer.options) == l3.options
        layer = layer.payload
    elif isinstance(l3, IPv6):
        assert isinstance(layer, SIPv6)
        assert (layer.version, layer.tc, layer.fl, layer.plen, layer.nh, layer.hlim) == \
            (6, l3.traffic_class, l3.flow_label, l3.payload_length, l3.next_header, l3.hop_limit)
        assert (layer.src, layer.dst) == (_ip_str(l3.src), _ip_str(l3.dst))
        layer = layer.payload
        for ext in l3.ext_headers:
            if isinstance(ext, IPv6Fragment):
                assert isinstance(layer, IPv6ExtHdrFragment)
                assert (layer.nh, layer.res1, layer.offset, layer.res2, layer.m, layer.id) == \
                    (ext.next_header, ext.reserved, ext.offset, ext.res, int(ext.more),
                     ext.ident)
            elif ext.header_type == 51:
                assert isinstance(layer, SAH)
                assert (layer.nh, layer.payloadlen) == (ext.next_header, ext.length_field)
                assert layer.spi == int.from_bytes(ext.data[2:6], "big")
                return  # scapy does not dissect past AH over IPv6
            else:
                expected = IPv6ExtHdrSegmentRouting if ext.data[0] == 4 and \
                    ext.header_type == 43 else _SCAPY_EXT[ext.header_type]
                assert isinstance(layer, expected)
                assert (layer.nh, layer.len) == (ext.next_header, ext.length_field)
                assert bytes(layer)[: ext.header_len] == ext.pack()
            layer = layer.payload
    if mine.frag == FRAG_LATER:
        _assert_tail(layer, mine.payload.tobytes(), mine.trailer.tobytes())
        return
    if mine.frag == FRAG_FIRST and mine.l4 is None and mine.proto in (6, 17, 1, 58):
        return  # a tiny first fragment: scapy shows a cut header, we keep the raw bytes
    l4 = mine.l4
    if isinstance(l4, TCP):
        assert isinstance(layer, STCP)
        assert (layer.sport, layer.dport, layer.seq, layer.ack, layer.dataofs, layer.reserved,
                int(layer.flags), layer.window, layer.chksum, layer.urgptr) == \
            (l4.sport, l4.dport, l4.seq, l4.ack, l4.data_offset, l4.reserved, l4.flags,
             l4.window, l4.checksum, l4.urgent)
    elif isinstance(l4, UDP):
        assert isinstance(layer, SUDP)
        assert (layer.sport, layer.dport, layer.len, layer.chksum) == \
            (l4.sport, l4.dport, l4.length, l4.checksum)
    elif isinstance(l4, ICMP):
        assert isinstance(layer, SICMP)
        assert (layer.type, layer.code, layer.chksum) == (l4.type, l4.code, l4.checksum)
        if l4.type in (0, 8):
            assert (layer.id, layer.seq) == (l4.ident, l4.seq)
        else:
            assert layer.unused == int.from_bytes(l4.rest, "big")
    elif isinstance(l4, ICMPv6):
        if l4.type not in (128, 129) and not isinstance(layer, Raw):
            assert (layer.type, layer.code, layer.cksum) == (l4.type, l4.code, l4.checksum)
            return  # neighbour discovery and the like: scapy dissects the body into options
        if l4.type not in (128, 129):  # scapy leaves types it does not know raw
            assert isinstance(layer, Raw)
            assert layer.load == l4.pack() + mine.payload.tobytes()
            _assert_tail(layer.payload, b"", mine.trailer.tobytes())
            return
        assert isinstance(layer, ICMPv6EchoRequest | ICMPv6EchoReply)
        assert (layer.type, layer.code, layer.cksum) == (l4.type, l4.code, l4.checksum)
        assert (layer.id, layer.seq, layer.data) == (l4.ident, l4.seq, mine.payload.tobytes())
        _assert_tail(layer.payload, b"", mine.trailer.tobytes())
        return
    if l4 is not None:
        layer = layer.payload
    _assert_tail(layer, mine.payload.tobytes(), mine.trailer.tobytes())


def _assert_tail(layer: Any, payload: bytes, trailer: bytes) -> None:
    """Scapy's Raw (payload) and Padding (trailer) layers match ours."""
    if isinstance(layer, Raw) and not isinstance(layer, Padding):
        assert layer.load == payload
        layer = layer.payload
    else:
        assert payload == b""
    if isinstance(layer, Padding):
        assert layer.load == trailer
    else:
        assert isinstance(layer, NoPayload) and trailer == b""


def scapy_recomputed(raw: bytes) -> bytes:
    """``raw`` dissected by scapy and rebuilt with every checksum recomputed by scapy."""
    pkt = Ether(raw)
    layer: Any = pkt
    while not isinstance(layer, NoPayload):
        for name in _CSUM_FIELDS:
            if name in layer.fields:
                delattr(layer, name)
        layer = layer.payload
    return bytes(pkt)


# -- direction 1: our builder, scapy as the reader --------------------------------------------


@MANY
@given(frames(scapy_safe=True))
def test_scapy_reads_our_frames(spec: FrameSpec) -> None:
    """Scapy dissects our frames into the same fields and recomputes the same checksums."""
    raw = spec.build(pad=True)
    mine = parse_frame(raw)
    assert checksum_ok(mine)
    assert_agrees(mine, Ether(raw))
    assert scapy_recomputed(raw) == raw


@examples(200)
@given(frames(scapy_safe=True))
def test_scapy_sees_our_corrupted_checksums(spec: FrameSpec) -> None:
    """A frame whose checksums we leave wrong is one scapy fixes, and we flag."""
    good = spec.build()
    mine = parse_frame(good)
    l4 = mine.l4
    if l4 is None or mine.ip is None or (isinstance(l4, ICMPv6) and l4.type not in (128, 129)):
        return  # nothing to check, or a message scapy keeps raw (and so never recomputes)
    bad_l4 = dataclasses.replace(l4, checksum=l4.checksum ^ 0x0101)
    bad = build_frame(mine.eth, mine.ip, bad_l4, mine.payload, fix_checksums=False)
    parsed = parse_frame(bad)
    assert parsed.l4_checksum_ok is False and not checksum_ok(parsed)
    assert scapy_recomputed(bad) == good


# -- direction 2: scapy builds, we read ------------------------------------------------------

_IP_OPTIONS = [[], [IPOption_Router_Alert()], [IPOption_NOP(), IPOption_Router_Alert()]]
_TCP_OPTIONS = [[], [("MSS", 1460)], [("MSS", 1400), ("SAckOK", b""), ("WScale", 7)],
                [("NOP", None), ("NOP", None), ("Timestamp", (12345, 678))]]


@st.composite
def scapy_frames(draw: st.DrawFn) -> bytes:
    """Frames scapy builds: tags, ARP, IPv4 with options, IPv6 with extension headers."""
    pkt: Any = Ether(src=mac_str(draw(macs)), dst=mac_str(draw(macs)))
    for _ in range(draw(st.integers(0, 2))):
        cls = draw(st.sampled_from([Dot1Q, Dot1AD]))
        pkt = pkt / cls(prio=draw(st.integers(0, 7)), dei=draw(st.integers(0, 1)),
                        vlan=draw(st.integers(0, 4095)))
    kind = draw(st.sampled_from(["ipv4", "ipv6", "ipv6", "arp"]))
    if kind == "arp":
        pkt = pkt / SARP(op=draw(st.sampled_from([1, 2])), hwsrc=mac_str(draw(macs)),
                         psrc=_ip_str(draw(ip4s)), hwdst=mac_str(draw(macs)),
                         pdst=_ip_str(draw(ip4s)))
        return bytes(pkt)
    payload = Raw(draw(st.binary(min_size=1, max_size=80)))
    l4_kind = draw(st.sampled_from(["tcp", "udp", "icmp", "raw"]))
    if l4_kind == "tcp":
        l4: Any = STCP(sport=draw(high_ports), dport=draw(high_ports), seq=draw(u32), ack=draw(u32),
                       flags=draw(st.integers(0, 0x1FF)), window=draw(u16),
                       urgptr=draw(u16), options=draw(st.sampled_from(_TCP_OPTIONS)))
    elif l4_kind == "udp":
        l4 = SUDP(sport=draw(high_ports), dport=draw(high_ports))
    if kind == "ipv4":
        ip: Any = SIP(src=_ip_str(draw(ip4s)), dst=_ip_str(draw(ip4s)), ttl=draw(u8),
                      tos=draw(u8), id=draw(u16), flags=draw(st.sampled_from([0, 2])),
                      options=draw(st.sampled_from(_IP_OPTIONS)))
        if l4_kind == "icmp":
            l4 = SICMP(type=draw(st.sampled_from([0, 8])), id=draw(u16), seq=draw(u16))
        elif l4_kind == "raw":
            ip.proto = 253
        datagram = ip / payload if l4_kind == "raw" else ip / l4 / payload
        if draw(st.booleans()):  # scapy fragments it; we read one of the fragments
            frags = fragment(  # type: ignore[no-untyped-call]
                datagram, fragsize=8 * draw(st.integers(1, 6)))
            return bytes(pkt / frags[draw(st.integers(0, len(frags) - 1))])
        return bytes(pkt / datagram)
    ip = SIPv6(src=_ip_str(draw(ip6s)), dst=_ip_str(draw(ip6s)), hlim=draw(u8),
               tc=draw(u8), fl=draw(st.integers(0, 0xFFFFF)))
    for _ in range(draw(st.integers(0, 3))):
        # scapy builds AH over IPv6 without its length and without upper-layer
        # checksums: use it only in front of raw data
        kinds = ["hbh", "dst", "rt0", "srh", "frag"] + (["ah"] if l4_kind == "raw" else [])
        ext = draw(st.sampled_from(kinds))
        if ext == "hbh":
            ip = ip / IPv6ExtHdrHopByHop(options=[RouterAlert()])
        elif ext == "dst":
            ip = ip / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * draw(
                st.integers(0, 12)))])
        elif ext == "rt0":
            addrs = [_ip_str(draw(ip6s)) for _ in range(draw(st.integers(1, 3)))]
            ip = ip / IPv6ExtHdrRouting(addresses=addrs,
                                        segleft=draw(st.integers(0, len(addrs))))
        elif ext == "srh":
            addrs = [_ip_str(draw(ip6s)) for _ in range(draw(st.integers(1, 3)))]
            ip = ip / IPv6ExtHdrSegmentRouting(addresses=addrs,
                                               segleft=draw(st.integers(0, len(addrs) - 1)))
        elif ext == "frag":
            ip = ip / IPv6ExtHdrFragment(id=draw(u32), m=draw(st.integers(0, 1)))
        else:
            icv = draw(st.sampled_from([4, 12, 20]))
            ip = ip / SAH(spi=draw(u32), seq=draw(u32), payloadlen=(12 + icv) // 4 - 2,
                          icv=draw(st.binary(min_size=icv, max_size=icv)))
    if l4_kind == "icmp":
        l4 = draw(st.sampled_from([ICMPv6EchoRequest, ICMPv6EchoReply]))(
            id=draw(u16), seq=draw(u16))
        if draw(st.booleans()):
            l4 = ICMPv6ND_NS(tgt=_ip_str(draw(ip6s)))
    elif l4_kind == "raw":
        return _fix_ah_next_headers(pkt / ip / payload)  # next header 59: raw after headers
    return _fix_ah_next_headers(pkt / ip / l4 / payload)


_NEXT_HEADER = {IPv6ExtHdrHopByHop: 0, IPv6ExtHdrDestOpt: 60, IPv6ExtHdrRouting: 43,
                IPv6ExtHdrSegmentRouting: 43, IPv6ExtHdrFragment: 44, SAH: 51, STCP: 6,
                SUDP: 17, Raw: 59}


def _fix_ah_next_headers(pkt: Any) -> bytes:
    """Scapy cannot fill AH's next header over IPv6 (it leaves 0); set it from the layer after."""
    layer = pkt
    while not isinstance(layer, NoPayload):
        if isinstance(layer, SAH):
            nxt = layer.payload
            layer.nh = _NEXT_HEADER.get(type(nxt), 58)
        layer = layer.payload
    return bytes(pkt)


@MANY
@given(scapy_frames())
def test_we_read_scapy_frames(raw: bytes) -> None:
    """Scapy-built frames parse to scapy's fields, verify, and rebuild byte for byte."""
    mine = parse_frame(raw)
    assert mine.ip_checksum_ok
    assert mine.l4_checksum_ok in (True, None)
    if mine.is_fragment:
        assert mine.l4_checksum_ok is None
    assert_agrees(mine, Ether(raw))
    again = build_frame(mine.eth, mine.l3, mine.l4, mine.payload, fix_types=False,
                        fix_checksums=not mine.is_fragment, fix_lengths=not mine.is_fragment)
    if mine.is_fragment:
        assert again == raw
    else:
        assert again == raw[: len(again)]  # our checksums are scapy's
        assert raw[len(again):] == mine.trailer.tobytes()


def test_scapy_fragments_are_flagged() -> None:
    """Fragments scapy makes are first/later as their offsets say."""
    datagram = SIP(src="10.0.0.1", dst="10.0.0.2") / SUDP(sport=1, dport=2) / Raw(b"x" * 100)
    frags = fragment(datagram, fragsize=32)  # type: ignore[no-untyped-call]
    assert len(frags) > 2
    parsed = [parse_frame(bytes(Ether() / f)) for f in frags]
    assert parsed[0].frag == 1 and parsed[0].udp is not None
    assert parsed[0].udp.length == 108
    assert all(p.frag == FRAG_LATER and p.l4 is None for p in parsed[1:])
    data = parsed[0].udp.pack() + b"".join(p.payload.tobytes() for p in parsed)
    assert data == bytes(datagram[SUDP])


def test_scapy_routing_header_final_destination() -> None:
    """With segments left, the TCP checksum uses the routing header's last address."""
    pkt = (Ether() / SIPv6(src="2001:db8::1", dst="2001:db8::2")
           / IPv6ExtHdrRouting(addresses=["2001:db8::3", "2001:db8::4"], segleft=2)
           / STCP(sport=1, dport=2) / Raw(b"data"))
    mine = parse_frame(bytes(pkt))
    assert mine.ipv6 is not None
    assert _ip_str(mine.ipv6.final_destination) == "2001:db8::4"
    assert mine.l4_checksum_ok is True
    ext = mine.ipv6.ext_headers[0]
    assert isinstance(ext, IPv6Ext) and ext.header_type == 43
