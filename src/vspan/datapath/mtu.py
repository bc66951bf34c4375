"""The size of the IP packets a frame puts on the wire (for the egress MTU check).

A port's MTU, like a Linux interface's, bounds the IP packet: the Ethernet
header and VLAN tags do not count. A GSO super-frame (virtio-net header with
a GSO type) is judged by the segments it will be cut into: network and
transport headers plus ``gso_size`` bytes of payload.
"""

from __future__ import annotations

from vspan.ports.vnet import GSO_ECN, GSO_NONE, GSO_UDP, GSO_UDP_L4, VNET_STRUCT

_TAG_TPIDS = (b"\x81\x00", b"\x88\xa8", b"\x91\x00")
_MAX_TAGS = 8


def l3_offset(data: bytes) -> int:
    """Where the network header starts (after Ethernet and up to 8 VLAN tags)."""
    off = 12
    for _ in range(_MAX_TAGS):
        if data[off : off + 2] not in _TAG_TPIDS:
            break
        off += 4
    return off + 2


def ip_size(data: bytes, vnet: bytes = b"") -> int:
    """The largest IP packet ``data`` (with its vnet header) becomes on the wire."""
    l3 = l3_offset(data)
    whole = len(data) - l3
    if len(vnet) != VNET_STRUCT.size or (vnet[1] & ~GSO_ECN) == GSO_NONE:
        return whole
    _flags, gso_type, _hdr_len, gso_size, csum_start, _off = VNET_STRUCT.unpack(vnet)
    if gso_size == 0 or csum_start <= l3 or csum_start + 13 > len(data):
        return whole  # nonsense header: judged whole (the segmenter will refuse it)
    proto_udp = (gso_type & ~GSO_ECN) in (GSO_UDP, GSO_UDP_L4)
    l4_header = 8 if proto_udp else (data[csum_start + 12] >> 4) * 4
    return min(whole, int(csum_start) - l3 + l4_header + int(gso_size))


def too_big(data: bytes, vnet: bytes, mtu: int) -> int:
    """0 when ``data`` fits ``mtu``, else the size of its too-big IP packets."""
    if len(data) - 14 <= mtu:  # tags only make the IP packet smaller
        return 0
    size = ip_size(data, vnet)
    return size if size > mtu else 0
