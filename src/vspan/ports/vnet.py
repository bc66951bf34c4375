"""The virtio-net header (``struct virtio_net_hdr``, 10 bytes) carried with frames.

AF_PACKET (``PACKET_VNET_HDR``) and TAP (``IFF_VNET_HDR``) prefix every frame
with it, so partial checksums and GSO super-frames pass the switch whole.
Layout (little endian, host order on x86): flags u8, gso_type u8,
hdr_len u16, gso_size u16, csum_start u16, csum_offset u16.
"""

from __future__ import annotations

import struct

VNET_HDR_LEN = 10
VNET_STRUCT = struct.Struct("<BBHHHH")

F_NEEDS_CSUM = 1
F_DATA_VALID = 2

GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80

EMPTY_VNET = bytes(VNET_HDR_LEN)


def is_plain(vnet: bytes) -> bool:
    """True when the header asks for no offload work (no csum, no GSO)."""
    return not vnet or (vnet[0] & F_NEEDS_CSUM == 0 and vnet[1] == GSO_NONE)


def shift(vnet: bytes, delta: int) -> bytes:
    """Return the header with its frame offsets moved by ``delta`` bytes.

    Needed whenever a VLAN tag is pushed (+4) or popped (-4) in front of the
    network header: ``csum_start`` and ``hdr_len`` count from the frame start.
    """
    if not vnet or is_plain(vnet):
        return vnet
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_STRUCT.unpack(vnet)
    if hdr_len:
        hdr_len += delta
    if flags & F_NEEDS_CSUM:
        csum_start += delta
    return VNET_STRUCT.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
