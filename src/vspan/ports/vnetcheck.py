"""Is a received frame's virtio-net header one the switch may act on?

A VM (TAP), a test (memory port) or any other source hands vspan a frame with a
virtio-net header; the switch forwards the header with the frame or acts on it
(software GSO for ERSPAN, RSPAN, captures and ports without offloads). A header
whose fields do not fit the frame would make the output port's send fail, and
a tiny ``gso_size`` would make one frame into thousands of segments, so such
frames are refused at receive: :func:`refusal` says why, in the words of the
drop reasons ``vnet-header`` and ``gso-segments``. The rules follow the
kernel's own (``virtio_net_hdr_to_skb`` in ``include/linux/virtio_net.h``, the
``hdr_len`` check of ``tun_get_user`` and ``packet_snd``):

* the header is 10 bytes; ``hdr_len`` does not reach past the frame;
* ``NEEDS_CSUM``: ``csum_start`` lies after the Ethernet header and the 2-byte
  checksum at ``csum_start + csum_offset`` inside the frame;
* GSO: a known type (TCPv4, TCPv6, UDP L4; ECN only with TCP; no UFO, which
  vspan never offers), a ``gso_size`` of 1..65534, an IPv4/IPv6 frame of the
  type's protocol with whole headers, not a fragment; with ``NEEDS_CSUM`` the
  checksum is the transport header's (``csum_start`` at it, ``csum_offset``
  16 for TCP, 6 for UDP); UDP GSO needs ``NEEDS_CSUM``;
* the cut is not finer than :func:`vspan.ports.vnet.segments_refusal` allows.

``vspan.ports._segment.h`` (``seg_vnet_check``) is the same check in C; a unit
test holds the two to each other.
"""

from __future__ import annotations

from typing import NamedTuple

from vspan.ports.offload import IPInfo, OffloadError
from vspan.ports.vnet import (
    F_NEEDS_CSUM,
    GSO_BY_FRAGS,
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP_L4,
    VNET_HDR_LEN,
    VNET_STRUCT,
    segments_refusal,
)

BAD_HEADER = "vnet-header"
"""The drop reason for a header whose fields do not fit the frame."""
BAD_SEGMENTS = "gso-segments"
"""The drop reason for a GSO frame that would be cut too finely."""

_ETH_LEN = 14


class Refusal(NamedTuple):
    """Why a frame's virtio-net header is refused."""

    reason: str  # BAD_HEADER or BAD_SEGMENTS (drop reason values)
    detail: str  # what is wrong, with the numbers


def refusal(data: bytes, vnet: bytes) -> Refusal | None:
    """Why ``vnet`` cannot go with ``data`` (see the module doc); ``None`` when it can."""
    if not vnet:
        return None
    if len(vnet) != VNET_HDR_LEN:
        return Refusal(BAD_HEADER, f"virtio-net header of {len(vnet)} bytes, not "
                                   f"{VNET_HDR_LEN}")
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_STRUCT.unpack(vnet)
    n = len(data)
    if hdr_len > n:
        return Refusal(BAD_HEADER, f"hdr_len {hdr_len} is beyond the {n}-byte frame")
    csum = flags & F_NEEDS_CSUM
    if csum and (csum_start < _ETH_LEN or csum_start + csum_offset + 2 > n):
        return Refusal(BAD_HEADER, f"checksum at csum_start {csum_start} + csum_offset "
                                   f"{csum_offset} is outside the {n}-byte frame")
    if gso_type == GSO_NONE:
        return None
    kind = gso_type & ~GSO_ECN
    if kind == GSO_UDP_L4 and gso_type == kind:
        udp, want_ipv6, at = True, None, 6
    elif kind in (GSO_TCPV4, GSO_TCPV6):
        udp, want_ipv6, at = False, kind == GSO_TCPV6, 16
    else:
        return Refusal(BAD_HEADER, f"gso_type {gso_type:#x} is unknown or not offered")
    if gso_size == 0 or gso_size == GSO_BY_FRAGS:
        return Refusal(BAD_HEADER, f"gso_size {gso_size} on a GSO frame")
    try:
        ip = IPInfo(data, want_ipv6, 17 if udp else 6)
    except OffloadError as exc:
        return Refusal(BAD_HEADER, exc.reason)
    l4 = ip.l4
    l4_hdr = 8 if udp else (data[l4 + 12] >> 4) * 4 if n >= l4 + 20 else 0
    if l4_hdr < (8 if udp else 20) or n < l4 + l4_hdr:
        return Refusal(BAD_HEADER, f"{'UDP' if udp else 'TCP'} header cut short or of a "
                                   "bad length")
    if csum and (csum_start != l4 or csum_offset != at):
        return Refusal(BAD_HEADER, f"checksum at csum_start {csum_start} + csum_offset "
                                   f"{csum_offset} is not the transport header's ({l4} + {at})")
    if udp and not csum:
        return Refusal(BAD_HEADER, "UDP GSO frame without NEEDS_CSUM")
    why = segments_refusal(n - l4 - l4_hdr, gso_size, udp)
    return Refusal(BAD_SEGMENTS, why) if why is not None else None
