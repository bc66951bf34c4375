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
GSO_BY_FRAGS = 0xFFFF  # a gso_size the kernel keeps for itself (virtio_net_hdr_to_skb refuses it)

# How finely a GSO super-frame may be cut (finer ones are refused: docs/datapath.md).
# The kernel's own floors: TCP never sends segments of less than TCP_MIN_SND_MSS (48,
# include/net/tcp.h, the tcp_min_snd_mss default) and refuses a UDP GSO (USO) frame of
# more than UDP_MAX_SEGMENTS (128, include/linux/udp.h) datagrams.
MIN_TCP_GSO_SIZE = 48
MAX_UDP_SEGMENTS = 128

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


def segments_refusal(total: int, gso_size: int, udp: bool) -> str | None:
    """Why cutting ``total`` payload bytes into ``gso_size``-byte pieces is refused.

    ``None`` when it is allowed: a TCP super-frame is cut into pieces of at least
    :data:`MIN_TCP_GSO_SIZE` bytes (a frame that fits one piece is not cut at all), a UDP
    one into at most :data:`MAX_UDP_SEGMENTS` datagrams. ``gso_size`` must be positive.
    """
    count = -(-total // gso_size) if total else 1
    if udp:
        if count > MAX_UDP_SEGMENTS:
            return (f"gso_size {gso_size} would cut {total} bytes into {count} UDP datagrams "
                    f"(at most {MAX_UDP_SEGMENTS})")
    elif count > 1 and gso_size < MIN_TCP_GSO_SIZE:
        return (f"gso_size {gso_size} would cut {total} bytes into {count} TCP segments "
                f"(segments carry at least {MIN_TCP_GSO_SIZE} bytes)")
    return None
