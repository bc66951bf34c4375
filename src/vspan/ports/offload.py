"""Software completion of the offloads a virtio-net header asks for.

Ports with vnet headers (AF_PACKET, TAP) pass partial checksums and GSO
super-frames on whole. Destinations that cannot take a vnet header (memory
ports in tests, pcap captures, ERSPAN/VXLAN encapsulation) need real wire
frames: :func:`finalize` turns one :class:`~vspan.ports.base.Frame` into the
frames a NIC would have put on the wire:

* ``VIRTIO_NET_HDR_F_NEEDS_CSUM`` without GSO: the internet checksum over
  ``data[csum_start:]`` is stored at ``csum_start + csum_offset`` (the field
  holds the pseudo-header sum, as the kernel leaves it).
* ``GSO_TCPV4`` / ``GSO_TCPV6`` (with or without ``GSO_ECN``): the payload is
  cut into ``gso_size`` pieces; each segment gets its IP length (and IPv4 id
  +1 per segment, IPv4 header checksum), TCP sequence number, flags (FIN/PSH
  on the last segment only, CWR on the first only) and a full TCP checksum,
  as Linux's ``tcp_gso_segment`` does.
* ``GSO_UDP_L4`` (USO): each segment is a whole UDP datagram.
* A super-frame is never cut finer than the kernel would (a hostile ``gso_size`` of 1
  would turn one frame into tens of thousands): TCP pieces carry at least
  ``MIN_TCP_GSO_SIZE`` bytes, UDP frames make at most ``MAX_UDP_SEGMENTS`` datagrams
  (:func:`vspan.ports.vnet.segments_refusal`); finer ones raise :class:`OffloadError`.
* Legacy UFO (``GSO_UDP``, IP fragmentation) is not supported.

VLAN tags (802.1Q, 802.1ad, QinQ) in front of the IP header are kept in every
segment. Malformed input raises :class:`OffloadError`, never anything else.

The reverse also exists: :func:`receive_offloads` describes a frame received
through a socket (VXLAN) with the vnet header it needs: a TCP/UDP checksum a
local sender left partial (a kernel VXLAN device on a veth underlay leaves the
inner checksum to "hardware" that never comes), or a TCP super-packet the
sender's GSO handed over whole.
"""

from __future__ import annotations

import struct

from vspan.packet.checksum import ones_sum, pseudo_header_v4, pseudo_header_v6
from vspan.packet.errors import PacketError
from vspan.ports.base import Frame
from vspan.ports.vnet import (
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    GSO_TCPV6,
    GSO_UDP,
    GSO_UDP_L4,
    VNET_HDR_LEN,
    VNET_STRUCT,
    segments_refusal,
)

_VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_ETH_IPV4 = 0x0800
_ETH_IPV6 = 0x86DD
_PROTO_TCP = 6
_PROTO_UDP = 17
_IPV6_EXT_8 = frozenset((0, 43, 60))  # hop-by-hop, routing, destination options
_IPV6_AH = 51
_IPV6_FRAG = 44
_MAX_VLAN_TAGS = 8
_H16 = struct.Struct(">H")
_H32 = struct.Struct(">I")


class OffloadError(PacketError):
    """A frame's vnet header asks for work that cannot be done on this frame."""

    def __init__(self, message: str) -> None:
        super().__init__("offload", message)


def finalize(frame: Frame) -> list[bytes]:
    """The wire frames for ``frame``: checksum completed, GSO segmented.

    A frame whose vnet header asks for nothing comes back as ``[frame.data]``.
    """
    vnet = frame.vnet
    data = frame.data
    if not vnet:
        return [data]
    if len(vnet) != VNET_HDR_LEN:
        raise OffloadError(f"vnet header is {len(vnet)} bytes, expected {VNET_HDR_LEN}")
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = VNET_STRUCT.unpack(vnet)
    kind = gso_type & ~GSO_ECN
    if kind == GSO_NONE:
        if flags & F_NEEDS_CSUM:
            return [complete_checksum(data, csum_start, csum_offset)]
        return [data]
    if kind in (GSO_TCPV4, GSO_TCPV6):
        return segment_tcp(data, gso_size, ipv6=kind == GSO_TCPV6)
    if kind == GSO_UDP_L4:
        return segment_udp(data, gso_size)
    if kind == GSO_UDP:
        raise OffloadError("UFO (GSO_UDP, IP fragmentation) frames are not supported")
    raise OffloadError(f"unknown GSO type {gso_type:#x}")


def complete_checksum(data: bytes, csum_start: int, csum_offset: int) -> bytes:
    """Fill in a partial checksum: RFC 1071 sum of ``data[csum_start:]``.

    The 16-bit field at ``csum_start + csum_offset`` holds the (uncomplemented)
    pseudo-header sum, which is part of the sum. A UDP result of 0 is sent as
    0xFFFF (0 would mean "no checksum").
    """
    at = csum_start + csum_offset
    if csum_start >= len(data) or at + 2 > len(data):
        raise OffloadError(
            f"checksum at {csum_start}+{csum_offset} lies outside the {len(data)}-byte frame"
        )
    value = ~ones_sum(data[csum_start:]) & 0xFFFF
    if value == 0 and csum_offset == 6:  # UDP
        value = 0xFFFF
    return b"".join((data[:at], _H16.pack(value), data[at + 2 :]))


def _l3(data: bytes) -> tuple[int, int]:
    """Ethertype after the VLAN tag stack and the network header offset."""
    n = len(data)
    if n < 14:
        raise OffloadError(f"frame of {n} bytes is shorter than an Ethernet header")
    eth_type = (data[12] << 8) | data[13]
    off = 14
    tags = 0
    while eth_type in _VLAN_TPIDS:
        tags += 1
        if tags > _MAX_VLAN_TAGS or n < off + 4:
            raise OffloadError("truncated or absurd VLAN tag stack")
        eth_type = (data[off + 2] << 8) | data[off + 3]
        off += 4
    return eth_type, off


class IPInfo:
    """Where the IP and transport headers are, and what to rewrite per segment."""

    __slots__ = ("dst", "ip_id", "ipv6", "l3", "l4", "proto", "src")

    def __init__(self, data: bytes, want_ipv6: bool | None, want_proto: int) -> None:
        eth_type, l3 = _l3(data)
        n = len(data)
        if eth_type == _ETH_IPV4 and want_ipv6 is not True:
            if n < l3 + 20 or data[l3] >> 4 != 4:
                raise OffloadError("truncated or not an IPv4 header")
            ihl = (data[l3] & 0x0F) * 4
            if ihl < 20 or n < l3 + ihl:
                raise OffloadError(f"bad IPv4 header length {ihl}")
            frag = _H16.unpack_from(data, l3 + 6)[0]
            if frag & 0x3FFF:
                raise OffloadError("cannot segment an IPv4 fragment")
            self.ipv6 = False
            self.proto = data[l3 + 9]
            self.src = data[l3 + 12 : l3 + 16]
            self.dst = data[l3 + 16 : l3 + 20]
            self.ip_id = _H16.unpack_from(data, l3 + 4)[0]
            l4 = l3 + ihl
        elif eth_type == _ETH_IPV6 and want_ipv6 is not False:
            if n < l3 + 40 or data[l3] >> 4 != 6:
                raise OffloadError("truncated or not an IPv6 header")
            self.ipv6 = True
            self.src = data[l3 + 8 : l3 + 24]
            self.dst = data[l3 + 24 : l3 + 40]
            self.ip_id = 0
            nxt = data[l3 + 6]
            l4 = l3 + 40
            for _ in range(8):
                if nxt in _IPV6_EXT_8 or nxt == _IPV6_AH:
                    if n < l4 + 2:
                        raise OffloadError("truncated IPv6 extension header")
                    size = (data[l4 + 1] + 2) * 4 if nxt == _IPV6_AH else (data[l4 + 1] + 1) * 8
                    nxt = data[l4]
                    l4 += size
                elif nxt == _IPV6_FRAG:
                    raise OffloadError("cannot segment an IPv6 fragment")
                else:
                    break
            self.proto = nxt
        else:
            want = {True: "IPv6", False: "IPv4", None: "IP"}[want_ipv6]
            raise OffloadError(f"GSO frame is not {want} (ethertype {eth_type:#06x})")
        if self.proto != want_proto:
            raise OffloadError(f"GSO frame carries IP protocol {self.proto}, not {want_proto}")
        self.l3 = l3
        self.l4 = l4

    def ip_header(self, data: bytes, index: int, l4_len: int) -> bytes:
        """The network header(s) for segment ``index`` whose L4 part is ``l4_len`` bytes."""
        l3, l4 = self.l3, self.l4
        hdr = bytearray(data[l3:l4])
        if self.ipv6:
            hdr[4:6] = _H16.pack(l4 - l3 - 40 + l4_len)
        else:
            hdr[2:4] = _H16.pack(l4 - l3 + l4_len)
            hdr[4:6] = _H16.pack((self.ip_id + index) & 0xFFFF)
            ihl = (hdr[0] & 0x0F) * 4
            hdr[10:12] = b"\0\0"
            hdr[10:12] = _H16.pack(~ones_sum(hdr[:ihl]) & 0xFFFF)
        return bytes(hdr)

    def pseudo(self, l4_len: int) -> bytes:
        """The pseudo-header for an L4 segment of ``l4_len`` bytes."""
        if self.ipv6:
            return self.src + self.dst + _H32.pack(l4_len) + bytes((0, 0, 0, self.proto))
        return self.src + self.dst + bytes((0, self.proto)) + _H16.pack(l4_len)


def _check_mss(mss: int) -> None:
    if mss <= 0:
        raise OffloadError("GSO frame with gso_size 0")


def _check_segments(total: int, mss: int, udp: bool) -> None:
    why = segments_refusal(total, mss, udp)
    if why is not None:
        raise OffloadError(why)


def segment_tcp(data: bytes, mss: int, ipv6: bool | None = None) -> list[bytes]:
    """Cut a TCP GSO super-frame into ``mss``-byte segments (see module doc)."""
    _check_mss(mss)
    ip = IPInfo(data, ipv6, _PROTO_TCP)
    l4 = ip.l4
    if len(data) < l4 + 20:
        raise OffloadError("truncated TCP header")
    thlen = (data[l4 + 12] >> 4) * 4
    if thlen < 20 or len(data) < l4 + thlen:
        raise OffloadError(f"bad TCP header length {thlen}")
    l2 = data[: ip.l3]
    th = bytearray(data[l4 : l4 + thlen])
    th[16:18] = b"\0\0"
    seq0 = _H32.unpack_from(th, 4)[0]
    flags0 = th[13]
    payload = memoryview(data)[l4 + thlen :]
    total = len(payload)
    _check_segments(total, mss, udp=False)
    starts = range(0, total, mss) if total else range(1)
    last = len(starts) - 1
    out: list[bytes] = []
    for index, start in enumerate(starts):
        chunk = payload[start : start + mss]
        seg_len = thlen + len(chunk)
        th[4:8] = _H32.pack((seq0 + start) & 0xFFFFFFFF)
        fl = flags0
        if index != last:
            fl &= ~0x09  # FIN, PSH only on the last segment
        if index:
            fl &= ~0x80  # CWR only on the first
        th[13] = fl
        th[16:18] = b"\0\0"
        th[16:18] = _H16.pack(~ones_sum(ip.pseudo(seg_len), th, chunk) & 0xFFFF)
        out.append(b"".join((l2, ip.ip_header(data, index, seg_len), th, chunk)))
    return out


def segment_udp(data: bytes, mss: int) -> list[bytes]:
    """Cut a UDP GSO (``GSO_UDP_L4``) frame into datagrams of ``mss`` payload bytes."""
    _check_mss(mss)
    ip = IPInfo(data, None, _PROTO_UDP)
    l4 = ip.l4
    if len(data) < l4 + 8:
        raise OffloadError("truncated UDP header")
    l2 = data[: ip.l3]
    uh = bytearray(data[l4 : l4 + 8])
    payload = memoryview(data)[l4 + 8 :]
    total = len(payload)
    _check_segments(total, mss, udp=True)
    starts = range(0, total, mss) if total else range(1)
    out: list[bytes] = []
    for index, start in enumerate(starts):
        chunk = payload[start : start + mss]
        seg_len = 8 + len(chunk)
        uh[4:6] = _H16.pack(seg_len)
        uh[6:8] = b"\0\0"
        value = ~ones_sum(ip.pseudo(seg_len), uh, chunk) & 0xFFFF
        uh[6:8] = _H16.pack(value or 0xFFFF)
        out.append(b"".join((l2, ip.ip_header(data, index, seg_len), uh, chunk)))
    return out


def receive_offloads(data: bytes, l3: int, mtu: int) -> tuple[bytes, bytes]:
    """Describe the offloads a received frame still needs: ``(data, vnet header)``.

    For frames that arrive through a socket rather than a NIC (VXLAN decapsulation),
    which carry no virtio-net header of their own. ``l3`` is where the IP header
    starts, ``mtu`` the largest IP packet the wire could have carried.

    * A TCP/UDP checksum left partial (the field holds the uncomplemented
      pseudo-header sum) gets ``NEEDS_CSUM``, so the next hop completes it. A
      complete checksum equals that sum only when completing it again gives the
      same value, so the test is safe.
    * A TCP packet bigger than ``mtu`` is a super-packet a local sender's GSO
      did not cut (a kernel VTEP over veth hands the whole thing to the UDP
      socket): it becomes a ``GSO_TCPV4``/``GSO_TCPV6`` frame with segments that
      fit ``mtu`` (its checksum field is set to the partial sum if it was not).

    Anything else (fragments, IPv6 extension headers, UDP without checksum,
    non-TCP/UDP) comes back unchanged with ``b""``.
    """
    n = len(data)
    eth_type = data[l3 - 2 : l3]
    if eth_type == b"\x08\x00":
        if n < l3 + 20 or data[l3] >> 4 != 4 or data[l3 + 6] & 0x3F or data[l3 + 7]:
            return data, b""
        ihl = (data[l3] & 0x0F) * 4
        proto = data[l3 + 9]
        ip_len = _H16.unpack_from(data, l3 + 2)[0]
        l4 = l3 + ihl
        l4_len = ip_len - ihl
        if l4_len <= 0:
            return data, b""
        pseudo = pseudo_header_v4(data[l3 + 12 : l3 + 16], data[l3 + 16 : l3 + 20], proto,
                                  l4_len)
        gso = GSO_TCPV4
    elif eth_type == b"\x86\xdd":
        if n < l3 + 40 or data[l3] >> 4 != 6:
            return data, b""
        proto = data[l3 + 6]
        l4_len = _H16.unpack_from(data, l3 + 4)[0]
        ip_len = 40 + l4_len
        l4 = l3 + 40
        pseudo = pseudo_header_v6(data[l3 + 8 : l3 + 24], data[l3 + 24 : l3 + 40], proto, l4_len)
        gso = GSO_TCPV6
    else:
        return data, b""
    if proto == _PROTO_TCP:
        at = 16
    elif proto == _PROTO_UDP:
        at = 6
    else:
        return data, b""
    if l4_len < at + 2 or n < l4 + at + 2 or n < l3 + ip_len:
        return data, b""
    field = _H16.unpack_from(data, l4 + at)[0]
    if field == 0 and proto == _PROTO_UDP:
        return data, b""  # UDP without checksum
    partial = ones_sum(pseudo)
    is_partial = field == partial or field == partial % 0xFFFF
    if proto == _PROTO_TCP and ip_len > mtu:
        thlen = (data[l4 + 12] >> 4) * 4
        mss = mtu - (l4 - l3) - thlen
        if thlen < 20 or l4_len < thlen or mss <= 0:
            return data, b""
        if not is_partial:
            data = b"".join((data[: l4 + at], _H16.pack(partial), data[l4 + at + 2 :]))
        return data, VNET_STRUCT.pack(F_NEEDS_CSUM, gso, l4 + thlen, mss, l4, at)
    if not is_partial:
        return data, b""
    return data, VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_NONE, 0, 0, l4, at)
