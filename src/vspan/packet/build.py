"""Frame builders: a generic :func:`build_frame` and one-liners for tests, trace and replies."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from vspan.packet._buf import Buffer
from vspan.packet.addr import BROADCAST_MAC, ZERO_MAC, IPLike, MacLike, ip_bytes, mac_bytes
from vspan.packet.arp import ARP, ARP_REPLY, ARP_REQUEST
from vspan.packet.errors import PacketError
from vspan.packet.ethernet import ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, ETH_ZLEN, Ethernet, VlanTag
from vspan.packet.frame import L3Header, L4Header, ParsedFrame
from vspan.packet.icmp import (
    ICMP,
    ICMP_ADMIN_PROHIBITED,
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMPV6_ADMIN_PROHIBITED,
    ICMPV6_DEST_UNREACH,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPv6,
    echo_rest,
)
from vspan.packet.ipv4 import IPv4
from vspan.packet.ipv6 import IPv6
from vspan.packet.tcp import ACK, FIN, RST, SYN, TCP, tcp_flags
from vspan.packet.udp import UDP

VlanSpec = int | VlanTag | Sequence[int | VlanTag] | None

#: Largest ICMP error datagrams (RFC 1812 4.3.2.3, RFC 4443 2.4(c)).
ICMP_ERROR_MAX_V4 = 576
ICMP_ERROR_MAX_V6 = 1280


def build_frame(
    eth: Ethernet,
    l3: L3Header | None = None,
    l4: L4Header | None = None,
    payload: Buffer = b"",
    *,
    fix_lengths: bool = True,
    fix_checksums: bool = True,
    fix_types: bool = True,
    pad: bool = False,
) -> bytes:
    """Serialise headers and payload into one frame.

    By default lengths and checksums are computed (``fix_lengths``,
    ``fix_checksums``; pass ``False`` to keep the values in the headers) and the
    ethertype / IP protocol are set from the types of ``l3`` and ``l4``, and an
    IPv6 next-header chain is made to run through the extension headers to
    ``l4`` (or to the last extension header's ``next_header``) (``fix_types``).
    ``pad`` zero-pads to 60 bytes.
    """
    if l4 is not None and not isinstance(l3, IPv4 | IPv6):
        raise PacketError("frame", "a transport header needs an IPv4 or IPv6 header")
    if fix_types:
        if isinstance(l3, ARP):
            eth = dataclasses.replace(eth, ethertype=ETH_P_ARP)
        elif isinstance(l3, IPv4):
            eth = dataclasses.replace(eth, ethertype=ETH_P_IPV4)
            if l4 is not None:
                l3 = dataclasses.replace(l3, proto=l4.protocol)
        elif isinstance(l3, IPv6):
            eth = dataclasses.replace(eth, ethertype=ETH_P_IPV6)
            l3 = l3.with_chain(l4.protocol if l4 is not None else l3.upper_protocol)
    body: bytes = bytes(payload)
    if l4 is not None:
        assert isinstance(l3, IPv4 | IPv6)
        body = l4.build(body, ip=l3, fix_lengths=fix_lengths, fix_checksums=fix_checksums)
    if isinstance(l3, IPv4):
        body = l3.build(body, fix_lengths=fix_lengths, fix_checksums=fix_checksums)
    elif isinstance(l3, IPv6):
        body = l3.build(body, fix_lengths=fix_lengths)
    elif isinstance(l3, ARP):
        body = l3.pack() + body
    return eth.build(body, pad=pad)


# -- small constructors ------------------------------------------------------------------


def vlan_tags(vlan: VlanSpec) -> tuple[VlanTag, ...]:
    """Tags from ``None``, a VID, a :class:`VlanTag` or a sequence of them (outer first).

    Bare VIDs get TPID 0x8100, except that the outer of several gets 0x88A8 (802.1ad).
    """
    if vlan is None:
        return ()
    items: Sequence[int | VlanTag] = [vlan] if isinstance(vlan, int | VlanTag) else vlan
    tags: list[VlanTag] = []
    for i, item in enumerate(items):
        if isinstance(item, VlanTag):
            tags.append(item)
        else:
            tpid = 0x88A8 if i == 0 and len(items) > 1 else 0x8100
            tags.append(VlanTag(tpid=tpid, vid=item))
    return tuple(tags)


def ethernet(src_mac: MacLike, dst_mac: MacLike, vlan: VlanSpec = None,
             ethertype: int = ETH_P_IPV4) -> Ethernet:
    """An :class:`Ethernet` header from text or raw MACs and a VLAN spec."""
    return Ethernet(mac_bytes(dst_mac), mac_bytes(src_mac), vlan_tags(vlan), ethertype)


def ip_header(src_ip: IPLike, dst_ip: IPLike, proto: int = 0, *, ttl: int = 64,
              tos: int = 0, ident: int = 0, df: bool = False) -> IPv4 | IPv6:
    """An IPv4 or IPv6 header, by the address family (both must agree).

    For IPv6, ``ttl`` is the hop limit, ``tos`` the traffic class; ``ident``
    and ``df`` are ignored.
    """
    src, dst = ip_bytes(src_ip), ip_bytes(dst_ip)
    if len(src) != len(dst):
        raise PacketError("ip", f"{src_ip!r} and {dst_ip!r} are not the same IP version")
    if len(src) == 4:
        return IPv4(src, dst, proto, ttl, tos, ident, 0x2 if df else 0)
    return IPv6(src, dst, proto, ttl, tos)


def udp_frame(
    src_mac: MacLike, dst_mac: MacLike, src_ip: IPLike, dst_ip: IPLike,
    sport: int, dport: int, payload: Buffer = b"", *,
    vlan: VlanSpec = None, ttl: int = 64, pad: bool = False,
) -> bytes:
    """An Ethernet/IP/UDP frame (IPv4 or IPv6 by the addresses) with right checksums."""
    return build_frame(ethernet(src_mac, dst_mac, vlan), ip_header(src_ip, dst_ip, ttl=ttl),
                       UDP(sport, dport), payload, pad=pad)


def tcp_frame(
    src_mac: MacLike, dst_mac: MacLike, src_ip: IPLike, dst_ip: IPLike,
    sport: int, dport: int, flags: str | int = "S", seq: int = 0, ack: int = 0,
    payload: Buffer = b"", *,
    window: int = 65535, options: bytes = b"", vlan: VlanSpec = None, ttl: int = 64,
    pad: bool = False,
) -> bytes:
    """An Ethernet/IP/TCP frame; ``flags`` as letters (``"SA"``) or bits."""
    tcp = TCP(sport, dport, seq, ack, tcp_flags(flags), window, options=options)
    return build_frame(ethernet(src_mac, dst_mac, vlan), ip_header(src_ip, dst_ip, ttl=ttl),
                       tcp, payload, pad=pad)


def icmp_echo(
    src_mac: MacLike, dst_mac: MacLike, src_ip: IPLike, dst_ip: IPLike,
    ident: int = 0, seq: int = 0, payload: Buffer = b"", *,
    reply: bool = False, vlan: VlanSpec = None, ttl: int = 64, pad: bool = False,
) -> bytes:
    """An ICMP (IPv4) or ICMPv6 (IPv6) echo request, or reply with ``reply=True``."""
    ip = ip_header(src_ip, dst_ip, ttl=ttl)
    l4: ICMP | ICMPv6
    if isinstance(ip, IPv4):
        l4 = ICMP(ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST, 0, echo_rest(ident, seq))
    else:
        l4 = ICMPv6(ICMPV6_ECHO_REPLY if reply else ICMPV6_ECHO_REQUEST, 0,
                    echo_rest(ident, seq))
    return build_frame(ethernet(src_mac, dst_mac, vlan), ip, l4, payload, pad=pad)


def arp_request(src_mac: MacLike, src_ip: IPLike, target_ip: IPLike, *,
                vlan: VlanSpec = None, pad: bool = False) -> bytes:
    """A broadcast who-has ``target_ip`` ARP request."""
    sha = mac_bytes(src_mac)
    arp = ARP(ARP_REQUEST, sha, _v4(src_ip), ZERO_MAC, _v4(target_ip))
    return build_frame(Ethernet(BROADCAST_MAC, sha, vlan_tags(vlan), ETH_P_ARP), arp, pad=pad)


def arp_reply(src_mac: MacLike, src_ip: IPLike, dst_mac: MacLike, dst_ip: IPLike, *,
              vlan: VlanSpec = None, pad: bool = False) -> bytes:
    """A unicast ARP reply: ``src_ip`` is at ``src_mac``, sent to ``dst_mac``/``dst_ip``."""
    sha, tha = mac_bytes(src_mac), mac_bytes(dst_mac)
    arp = ARP(ARP_REPLY, sha, _v4(src_ip), tha, _v4(dst_ip))
    return build_frame(Ethernet(tha, sha, vlan_tags(vlan), ETH_P_ARP), arp, pad=pad)


def _v4(addr: IPLike) -> bytes:
    raw = ip_bytes(addr)
    if len(raw) != 4:
        raise PacketError("arp", f"{addr!r} is not an IPv4 address")
    return raw


# -- replies (firewall reject) -------------------------------------------------------------


def tcp_reset_for(frame: ParsedFrame, *, ttl: int = 64, pad: bool = True) -> bytes:
    """The RST that answers the TCP segment in ``frame`` (RFC 9293 3.10.7.1).

    Addresses and ports are swapped and VLAN tags kept. If the segment had
    ACK, the reset's sequence number is that ACK; otherwise it is an RST+ACK
    acknowledging the segment.
    """
    tcp, ip = frame.tcp, frame.ip
    if tcp is None or ip is None:
        raise PacketError("tcp", "no TCP segment to reset")
    if tcp.flags & RST:
        raise PacketError("tcp", "a reset is never answered with a reset")
    if tcp.flags & ACK:
        rst = TCP(tcp.dport, tcp.sport, seq=tcp.ack, flags=RST, window=0)
    else:
        seg_len = len(frame.payload) + bool(tcp.flags & SYN) + bool(tcp.flags & FIN)
        rst = TCP(tcp.dport, tcp.sport, seq=0, ack=(tcp.seq + seg_len) & 0xFFFFFFFF,
                  flags=RST | ACK, window=0)
    eth = dataclasses.replace(frame.eth, dst=frame.eth.src, src=frame.eth.dst)
    reply_ip = ip_header(ip.dst, ip.src, ttl=ttl)
    return build_frame(eth, reply_ip, rst, pad=pad)


def icmp_unreachable_for(frame: ParsedFrame, code: int | None = None, *, ttl: int = 64,
                         pad: bool = True) -> bytes:
    """The ICMP/ICMPv6 destination unreachable that rejects the IP packet in ``frame``.

    Sent from the packet's destination back to its source, VLAN tags kept,
    quoting as much of the packet as fits in 576 (IPv4) or 1280 (IPv6)
    bytes. ``code`` defaults to "administratively prohibited".
    """
    ip = frame.ip
    if ip is None:
        raise PacketError("icmp", "no IP packet to answer")
    start = frame.l3_offset
    end = frame.payload_offset + len(frame.payload)
    eth = dataclasses.replace(frame.eth, dst=frame.eth.src, src=frame.eth.dst)
    reply_ip = ip_header(ip.dst, ip.src, ttl=ttl)
    l4: ICMP | ICMPv6
    if isinstance(ip, IPv4):
        quote = bytes(frame.data[start : min(end, start + ICMP_ERROR_MAX_V4 - 28)])
        l4 = ICMP(ICMP_DEST_UNREACH, ICMP_ADMIN_PROHIBITED if code is None else code)
    else:
        quote = bytes(frame.data[start : min(end, start + ICMP_ERROR_MAX_V6 - 48)])
        l4 = ICMPv6(ICMPV6_DEST_UNREACH, ICMPV6_ADMIN_PROHIBITED if code is None else code)
    return build_frame(eth, reply_ip, l4, quote, pad=pad)


def pad_frame(frame: bytes, size: int = ETH_ZLEN) -> bytes:
    """``frame`` zero-padded to ``size`` bytes."""
    return frame + bytes(max(0, size - len(frame)))
