"""Linux bonding's transmit hashes (``xmit_hash_policy``), computed on whole frames.

The definitions are those of the kernel (``drivers/net/bonding/bond_main.c``,
``__bond_xmit_hash``; Documentation/networking/bonding.rst):

* ``layer2``: ``dst MAC[5] ^ src MAC[5] ^ ethertype``;
* ``layer2+3``: the layer2 value ``^ src IP ^ dst IP``, then the fold
  ``h ^= h >> 16; h ^= h >> 8``;
* ``layer3+4``: the 32-bit word of source and destination port (or, for ICMP
  echo/timestamp, ``type | code << 8 | id << 16``) ``^ src IP ^ dst IP``, the
  fold, then ``h >> 1``;
* the member is ``usable_members[hash % len(usable_members)]``.

Details that follow the kernel exactly: IPv4 addresses and the port word are
taken as the kernel's ``u32`` loads of network-order bytes on a little-endian
host (x86, arm64); an IPv6 address is first folded with ``ipv6_addr_hash``
(XOR of its four 32-bit words); IPv4 fragments have no ports; the IPv6
next-header field is taken as is (extension headers are not walked); an ICMP
error is hashed on the addresses (and ports) of the packet it quotes; traffic
that is neither IPv4 nor IPv6, or whose IP header is cut short, falls back to
the layer2 value. VLAN tags (802.1Q, 802.1ad, up to two) are skipped: the
kernel sees them as metadata (VLAN tx acceleration), never in the header, so
``ethertype`` is the one after the tags.

These run per frame in the datapath: plain indexing and ``struct``, no objects.
"""

from __future__ import annotations

import struct

_U32LE = struct.Struct("<I")
_FOUR_U32LE = struct.Struct("<IIII")
_TAG_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
IPPROTO_ICMP = 1
IPPROTO_ICMPV6 = 58
#: protocols whose first 4 transport bytes are "ports" (``proto_ports_offset``); AH: 4
_PORTS_AT_0 = frozenset((6, 17, 33, 50, 132, 136))  # TCP UDP DCCP ESP SCTP UDP-Lite
_IPPROTO_AH = 51
#: ICMP types that carry an identifier (``icmp_has_id``), the same set for v4 and v6
_ICMP_HAS_ID = frozenset((0, 8, 13, 14, 128, 129))
#: ICMPv4 error types (``icmp_is_err``); ICMPv6 errors are the types below 128
_ICMP_ERRORS = frozenset((3, 4, 5, 11, 12))


def l2_header(data: bytes) -> tuple[int, int]:
    """``(ethertype, network header offset)`` after up to two VLAN tags; (-1, 0) if short."""
    n = len(data)
    if n < 14:
        return -1, 0
    etype = (data[12] << 8) | data[13]
    off = 14
    if etype in _TAG_TPIDS and n >= 18:
        etype = (data[16] << 8) | data[17]
        off = 18
        if etype in _TAG_TPIDS and n >= 22:
            etype = (data[20] << 8) | data[21]
            off = 22
    return etype, off


def eth_hash(data: bytes) -> int:
    """``dst MAC[5] ^ src MAC[5] ^ ethertype`` (``bond_eth_hash``); 0 for a runt."""
    etype, _ = l2_header(data)
    if etype < 0:
        return 0
    return data[5] ^ data[11] ^ etype


def _ip(data: bytes, etype: int, off: int, l34: bool,
        proto: int) -> tuple[int, int, int, int, int] | None:
    """``bond_flow_ip``: (src, dst, ip proto, transport offset, ports) or None."""
    n = len(data)
    if etype == ETH_P_IP:
        if n < off + 20:
            return None
        src = _U32LE.unpack_from(data, off + 12)[0]
        dst = _U32LE.unpack_from(data, off + 16)[0]
        if not ((data[off + 6] << 8) | data[off + 7]) & 0x3FFF:  # not a fragment
            proto = data[off + 9]
        off += (data[off] & 0x0F) << 2
    elif etype == ETH_P_IPV6:
        if n < off + 40:
            return None
        a, b, c, d = _FOUR_U32LE.unpack_from(data, off + 8)
        src = a ^ b ^ c ^ d
        a, b, c, d = _FOUR_U32LE.unpack_from(data, off + 24)
        dst = a ^ b ^ c ^ d
        proto = data[off + 6]
        off += 40
    else:
        return None
    ports = 0
    if l34 and proto >= 0:
        poff = 0 if proto in _PORTS_AT_0 else 4 if proto == _IPPROTO_AH else -1
        if poff >= 0 and n >= off + poff + 4:
            ports = _U32LE.unpack_from(data, off + poff)[0]
    return src, dst, proto, off, ports


def dissect(data: bytes, l34: bool) -> tuple[int, int, int, int] | None:
    """``bond_flow_dissect``: (src, dst, ports word, icmp word) or None (use layer2)."""
    etype, off = l2_header(data)
    flow = _ip(data, etype, off, l34, -1)
    if flow is None:
        return None
    src, dst, proto, off, ports = flow
    icmp = 0
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        itype = 0
        if len(data) >= off + 8:  # skb_flow_get_icmp_tci
            itype = data[off]
            ident = 0
            if itype in _ICMP_HAS_ID:
                ident = ((data[off + 4] << 8) | data[off + 5]) or 1
            icmp = itype | (data[off + 1] << 8) | (ident << 16)
        is_error = itype in _ICMP_ERRORS if proto == IPPROTO_ICMP else itype < 128
        if not is_error:
            return src, dst, ports, icmp
        inner = _ip(data, etype, off + 8, l34, proto)  # the quoted packet's header
        if inner is None:
            return None
        src, dst, _, _, ports = inner
    return src, dst, ports, icmp


def _fold(h: int) -> int:
    h ^= h >> 16
    return h ^ (h >> 8)


def layer2(data: bytes) -> int:
    """The ``layer2`` hash."""
    return eth_hash(data)


def layer2_3(data: bytes) -> int:
    """The ``layer2+3`` hash."""
    flow = dissect(data, False)
    if flow is None:
        return eth_hash(data)
    return _fold(eth_hash(data) ^ flow[0] ^ flow[1])


def layer3_4(data: bytes) -> int:
    """The ``layer3+4`` hash."""
    flow = dissect(data, True)
    if flow is None:
        return eth_hash(data)
    src, dst, ports, icmp = flow
    h = icmp if icmp >> 16 else ports
    return _fold(h ^ src ^ dst) >> 1
