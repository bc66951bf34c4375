"""Comparison keys for copies of one frame captured at several points.

A copy of a frame differs from hop to hop in a few known fields: a VLAN tag
pushed or popped, MAC addresses rewritten by a router, the TTL (hop limit)
decremented, checksums filled in by offload (or left partial), Ethernet
padding added on a physical wire. :class:`Normalizer` turns a captured frame
into the bytes two copies share once the chosen fields are ignored:

``vlan``      every 802.1Q/802.1ad tag is left out
``mac``       destination and source MAC are left out
``ttl``       IPv4 TTL and header checksum, IPv6 hop limit are zeroed
``checksums`` IPv4 header, TCP, UDP, ICMP and ICMPv6 checksums are zeroed
``padding``   bytes after the end of the IP packet (Ethernet padding, trailers) are cut

Everything else stays: the IP ID, the TCP sequence numbers and the payload,
so a retransmission (new IP ID) never looks like a copy. With nothing
ignored the key is the frame itself. Frames of other link types (raw IP,
Linux cooked, loopback) are compared as Ethernet frames with zero MACs, so
with ``mac`` and ``vlan`` ignored a cooked capture matches an Ethernet one.
"""

from __future__ import annotations

from collections.abc import Iterable

from vspan.capture.pcapng import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)
from vspan.datapath.flowkey import (
    ETH_P_IPV4,
    ETH_P_IPV6,
    FRAG_LATER,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    FlowKey,
    extract,
)

IGNORABLE = ("vlan", "mac", "ttl", "checksums", "padding")
Key = bytes | tuple[int, bytes]  # a frame key: bytes, or (link type, bytes) for other link types
_L4_CSUM = {IPPROTO_TCP: 16, IPPROTO_UDP: 6, IPPROTO_ICMP: 2, IPPROTO_ICMPV6: 2}
_ZERO_MACS = b"\0" * 12


class NormalizeError(ValueError):
    """An unknown field name in an ignore list."""


def parse_ignore(spec: str | Iterable[str]) -> frozenset[str]:
    """``"vlan,ttl"`` (or a list) into the set of ignored fields; unknown names are errors."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name == "all":
            out.update(IGNORABLE)
            continue
        if name not in IGNORABLE:
            raise NormalizeError(f"cannot ignore {name!r}: choose from {', '.join(IGNORABLE)}, "
                                 "all")
        out.add(name)
    return frozenset(out)


def as_ethernet(linktype: int, data: bytes) -> bytes | None:
    """The frame as Ethernet (zero MACs for other link types); ``None``: not understood."""
    if linktype == LINKTYPE_ETHERNET:
        return data
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not data:
            return None
        et = b"\x08\x00" if data[0] >> 4 == 4 else b"\x86\xdd"
        return _ZERO_MACS + et + data
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 5:
            return None
        et = b"\x08\x00" if data[4] >> 4 == 4 else b"\x86\xdd"
        return _ZERO_MACS + et + data[4:]
    if linktype == LINKTYPE_LINUX_SLL:
        return _ZERO_MACS + data[14:] if len(data) >= 16 else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return _ZERO_MACS + data[0:2] + data[20:] if len(data) >= 20 else None
    return None


class Normalizer:
    """Turns frames into comparison keys with the chosen fields ignored."""

    def __init__(self, ignore: frozenset[str] = frozenset()) -> None:
        unknown = ignore - set(IGNORABLE)
        if unknown:
            raise NormalizeError(f"cannot ignore {', '.join(sorted(unknown))}")
        self.ignore = ignore
        self._mac = "mac" in ignore
        self._vlan = "vlan" in ignore
        self._ttl = "ttl" in ignore
        self._csum = "checksums" in ignore
        self._pad = "padding" in ignore
        self._l3 = self._ttl or self._csum or self._pad
        self._without: dict[str, Normalizer] = {}  # one field less (for :meth:`differing`)

    def key(self, linktype: int, data: bytes) -> Key:
        """The comparison key of one frame (the frame itself when nothing is ignored)."""
        if not self.ignore:
            return data if linktype == LINKTYPE_ETHERNET else (linktype, data)
        frame = as_ethernet(linktype, data)
        if frame is None:
            return (linktype, data)
        return self.frame_key(frame, extract(frame, 0))

    def frame_key(self, frame: bytes, k: FlowKey | None) -> Key:
        """The key of an Ethernet frame already parsed into ``k`` (``None``: unparsable)."""
        if k is None:
            return frame
        off = k.l3_off
        parts = []
        if not self._mac:
            parts.append(frame[0:12])
        if not self._vlan:
            parts.append(frame[12:off - 2])
        parts.append(frame[off - 2:off])
        if self._l3 and k.eth_type in (ETH_P_IPV4, ETH_P_IPV6):
            parts.append(self._l3_key(frame, off, k.eth_type, k.proto, k.l4_off, k.frag))
        else:
            parts.append(frame[off:])
        return b"".join(parts)

    def _l3_key(self, frame: bytes, off: int, eth_type: int, proto: int, l4: int,
                frag: int) -> bytes:
        ip = bytearray(frame[off:])
        n = len(ip)
        v4 = eth_type == ETH_P_IPV4
        if self._pad:
            end = ((ip[2] << 8) | ip[3]) if v4 else 40 + ((ip[4] << 8) | ip[5])
            if 20 <= end < n:
                del ip[end:]
                n = end
        if v4:
            if self._ttl or self._csum:
                ip[10] = ip[11] = 0
            if self._ttl:
                ip[8] = 0
        elif self._ttl:
            ip[7] = 0
        if self._csum and l4 and frag != FRAG_LATER:
            pos = _L4_CSUM.get(proto)
            if pos is not None and l4 - off + pos + 2 <= n:
                at = l4 - off + pos
                ip[at] = ip[at + 1] = 0
        return bytes(ip)

    def differing(self, linktype_a: int, a: bytes, linktype_b: int, b: bytes) -> tuple[str, ...]:
        """Which ignored fields two frames with equal keys differ in (empty: identical)."""
        if linktype_a == linktype_b and a == b:
            return ()
        out = []
        for name in IGNORABLE:
            if name in self.ignore:
                other = self._without.get(name)
                if other is None:
                    other = self._without[name] = Normalizer(self.ignore - {name})
                if other.key(linktype_a, a) != other.key(linktype_b, b):
                    out.append(name)
        return tuple(out) or ("link type",)
