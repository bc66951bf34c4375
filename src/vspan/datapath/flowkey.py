"""Flow key extraction: the hot-path parser of the datapath.

One pass over the headers the pipeline looks at, hand-written on ``bytes``
indexing and ``int.from_bytes`` (no per-field objects). The result is both the
flow-cache key and the fields every pipeline stage reads. Frames that cannot
be parsed give ``None`` (the caller drops them as ``malformed``).

Fields that change from frame to frame inside one flow (TCP flags, lengths,
IP id, TTL) are not part of the key: stages that need them (conntrack) read
them from the frame through per-frame hooks.
"""

from __future__ import annotations

from typing import NamedTuple

from vspan.packet.ethernet import UNTAGGED as _UNTAGGED

ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_QINQ1 = 0x9100
ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_ARP = 0x0806
VLAN_TPIDS = frozenset((ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ1))

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
_IPV6_EXT = frozenset((0, 43, 60, 135, 139, 140))
_IPV6_FRAG = 44
_IPV6_AH = 51

FRAG_NONE = 0
FRAG_FIRST = 1
FRAG_LATER = 2

UNTAGGED = _UNTAGGED  # a VLAN id absent from the frame (as the filter language has it)


class FlowKey(NamedTuple):
    """What the pipeline decides on. VLAN ids are -1 when absent."""

    in_port: int
    dst: bytes
    src: bytes
    vlan: int  # outer 802.1Q/802.1ad VID; -1 untagged; 0 = priority tag only
    pcp: int
    inner_vlan: int
    eth_type: int  # after the tag stack
    l3_src: bytes  # IPv4/IPv6 source, or ARP sender protocol address
    l3_dst: bytes
    proto: int  # IP protocol (after IPv6 extension headers) or ARP opcode
    sport: int  # TCP/UDP source port, or ICMP type
    dport: int  # TCP/UDP destination port, or ICMP code
    frag: int
    l3_off: int  # offset of the network header in the frame
    l4_off: int  # offset of the transport header (0 when none)
    tpid: int = 0  # TPID of the outer tag (0x8100, 0x88a8 or 0x9100); 0 untagged


_new = tuple.__new__
_from = int.from_bytes
_EMPTY = b""


def extract(data: bytes, in_port: int) -> FlowKey | None:
    """Parse ``data`` into a :class:`FlowKey`; ``None`` when it is malformed."""
    n = len(data)
    if n < 14:
        return None
    eth_type = (data[12] << 8) | data[13]
    off = 14
    vlan = UNTAGGED
    pcp = 0
    inner = UNTAGGED
    tpid = 0
    if eth_type in VLAN_TPIDS:
        tpid = eth_type
        if n < 18:
            return None
        tci = (data[14] << 8) | data[15]
        vlan = tci & 0xFFF
        pcp = tci >> 13
        eth_type = (data[16] << 8) | data[17]
        off = 18
        if eth_type in VLAN_TPIDS:
            if n < 22:
                return None
            inner = ((data[18] << 8) | data[19]) & 0xFFF
            eth_type = (data[20] << 8) | data[21]
            off = 22
            while eth_type in VLAN_TPIDS:  # deeper stacks: skip, key on the two outer tags
                if n < off + 4:
                    return None
                eth_type = (data[off + 2] << 8) | data[off + 3]
                off += 4
    l3_src = l3_dst = _EMPTY
    proto = sport = dport = 0
    frag = FRAG_NONE
    l4 = 0
    if eth_type == ETH_P_IPV4:
        if n < off + 20:
            return None
        vihl = data[off]
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20 or n < off + ihl:
            return None
        proto = data[off + 9]
        l3_src = data[off + 12 : off + 16]
        l3_dst = data[off + 16 : off + 20]
        fo = ((data[off + 6] << 8) | data[off + 7]) & 0x3FFF  # MF flag + offset
        if fo:
            frag = FRAG_LATER if fo & 0x1FFF else FRAG_FIRST
        if frag != FRAG_LATER:
            l4 = off + ihl
    elif eth_type == ETH_P_IPV6:
        if n < off + 40 or data[off] >> 4 != 6:
            return None
        proto = data[off + 6]
        l3_src = data[off + 8 : off + 24]
        l3_dst = data[off + 24 : off + 40]
        l4 = off + 40
        while True:
            if proto in _IPV6_EXT:
                if n < l4 + 8:
                    return None
                proto, l4 = data[l4], l4 + 8 + data[l4 + 1] * 8
            elif proto == _IPV6_FRAG:
                if n < l4 + 8:
                    return None
                fo = (data[l4 + 2] << 8) | data[l4 + 3]
                frag = FRAG_LATER if fo & 0xFFF8 else FRAG_FIRST
                proto, l4 = data[l4], l4 + 8
                if frag == FRAG_LATER:
                    l4 = 0
                    break
            elif proto == _IPV6_AH:
                if n < l4 + 8:
                    return None
                proto, l4 = data[l4], l4 + (data[l4 + 1] + 2) * 4
            else:
                break
        if l4 > n:
            return None
    elif eth_type == ETH_P_ARP:
        if n < off + 28:
            return None
        proto = (data[off + 6] << 8) | data[off + 7]
        l3_src = data[off + 14 : off + 18]
        l3_dst = data[off + 24 : off + 28]
    if l4:
        if proto in (IPPROTO_TCP, IPPROTO_UDP) or proto == 132:  # 132 = SCTP
            if n >= l4 + 8 and (proto != IPPROTO_TCP or n >= l4 + 20):
                sport = (data[l4] << 8) | data[l4 + 1]
                dport = (data[l4 + 2] << 8) | data[l4 + 3]
            elif frag == FRAG_FIRST:
                l4 = 0  # a tiny first fragment: legitimate, but its ports are not all here
            else:
                return None
        elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            if n >= l4 + 4:
                sport = data[l4]
                dport = data[l4 + 1]
            elif frag == FRAG_FIRST:
                l4 = 0
            else:
                return None
    return _new(
        FlowKey,
        (in_port, data[0:6], data[6:12], vlan, pcp, inner, eth_type, l3_src, l3_dst,
         proto, sport, dport, frag, off, l4, tpid),
    )


def mac_str(mac: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff`` for 6 bytes."""
    return ":".join(f"{b:02x}" for b in mac)


_ET_IPV4 = b"\x08\x00"
_ET_VLAN = b"\x81\x00"


def fast_key(data: bytes, in_port: int) -> tuple[object, ...] | None:
    """A cheap flow-cache key for the common frames, or ``None`` (use :func:`extract`).

    Unfragmented IPv4 with TCP/UDP/ICMP, untagged or with one 802.1Q tag: the
    key is made of the raw header bytes every :class:`FlowKey` field comes from
    (MACs, tag, ethertype, version/IHL, protocol, addresses, ports or ICMP
    type/code), so two frames with equal fast keys have equal flow keys.
    """
    n = len(data)
    et = data[12:14]
    off = 14
    if et == _ET_VLAN:
        et = data[16:18]
        off = 18
    if et != _ET_IPV4 or n < off + 28:
        return None
    vihl = data[off]
    if vihl != 0x45 or data[off + 6] & 0x3F or data[off + 7]:  # options or a fragment
        return None
    proto = data[off + 9]
    l4 = off + 20
    if proto == IPPROTO_TCP:
        if n < l4 + 20:
            return None
        ports = data[l4 : l4 + 4]
    elif proto == IPPROTO_UDP:
        ports = data[l4 : l4 + 4]
    elif proto == IPPROTO_ICMP:
        ports = data[l4 : l4 + 2]
    else:
        return None
    return (in_port, data[:off], proto, data[off + 12 : off + 20], ports)


def lenient_key(data: bytes) -> FlowKey | None:
    """A key for a frame :func:`extract` refuses (cut inside L3/L4): L2 and what L3 is whole."""
    n = len(data)
    if n < 14:
        return None
    etype = (data[12] << 8) | data[13]
    off = 14
    vlan = inner = UNTAGGED
    pcp = 0
    depth = 0
    while etype in VLAN_TPIDS and n >= off + 4:
        tci = (data[off] << 8) | data[off + 1]
        if depth == 0:
            vlan, pcp = tci & 0xFFF, tci >> 13
        elif depth == 1:
            inner = tci & 0xFFF
        etype = (data[off + 2] << 8) | data[off + 3]
        off += 4
        depth += 1
    src = dst = b""
    proto = 0
    if etype == ETH_P_IPV4 and n >= off + 20:
        proto = data[off + 9]
        src, dst = data[off + 12:off + 16], data[off + 16:off + 20]
    elif etype == ETH_P_IPV6 and n >= off + 40:
        proto = data[off + 6]
        src, dst = data[off + 8:off + 24], data[off + 24:off + 40]
    elif etype == ETH_P_ARP and n >= off + 28:
        proto = (data[off + 6] << 8) | data[off + 7]
        src, dst = data[off + 14:off + 18], data[off + 24:off + 28]
    return FlowKey(0, data[0:6], data[6:12], vlan, pcp, inner, etype, src, dst, proto, 0, 0, 0,
                   off, 0)
