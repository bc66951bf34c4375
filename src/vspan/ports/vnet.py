"""The virtio-net header (``struct virtio_net_hdr``, 10 bytes) carried with frames.

AF_PACKET (``PACKET_VNET_HDR``) and TAP (``IFF_VNET_HDR``) prefix every frame
with it, so partial checksums and GSO super-frames pass the switch whole.
Layout (little endian, host order on x86): flags u8, gso_type u8,
hdr_len u16, gso_size u16, csum_start u16, csum_offset u16.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vspan.ports.base import Frame, PortCounters

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


# frames longer than this are written with a gather call (header and frame apart)
GATHER_MIN = 4096


def send_frames(frames: Sequence[Frame], write: Callable[[bytes], Any],
                gather: Callable[[tuple[bytes, bytes]], Any], counters: PortCounters,
                on_error: Callable[[OSError], None]) -> int:
    """Write each frame behind its vnet header (zeros when plain); return how many went.

    ``write`` takes header+frame as one buffer, ``gather`` the two apart (no copy of
    a big frame). Failures are counted in ``counters.tx_errors`` and reported to
    ``on_error``; nothing is raised for one bad frame.
    """
    sent = 0
    nbytes = 0
    errors = 0
    for frame in frames:
        data = frame.data
        vnet = frame.vnet or EMPTY_VNET
        if len(vnet) != VNET_HDR_LEN or len(data) < 14:
            errors += 1
            continue
        try:
            if len(data) > GATHER_MIN:
                gather((vnet, data))
            else:
                write(vnet + data)
        except OSError as exc:
            errors += 1
            on_error(exc)
            continue
        except (TypeError, ValueError):
            errors += 1
            continue
        sent += 1
        nbytes += len(data)
    counters.tx_frames += sent
    counters.tx_bytes += nbytes
    counters.tx_errors += errors
    return sent
