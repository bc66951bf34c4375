"""IPv6 header (RFC 8200) and its extension headers."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from vspan.packet._buf import Buffer, as_bytes, view
from vspan.packet.errors import PacketError, check_len, check_uint, need

IPPROTO_HOPOPTS = 0
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_AH = 51
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60
IPPROTO_MH = 135
IPPROTO_HIP = 139
IPPROTO_SHIM6 = 140

#: Extension headers with the generic (next header, length in 8-byte units - 1) layout.
GENERIC_EXT = frozenset(
    (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_MH, IPPROTO_HIP, IPPROTO_SHIM6))
#: Every extension header the parser walks through.
EXT_HEADERS = GENERIC_EXT | {IPPROTO_FRAGMENT, IPPROTO_AH}

_HDR = struct.Struct("!IHBB16s16s")
_FRAG = struct.Struct("!BBHI")


@dataclass(frozen=True, slots=True)
class IPv6Ext:
    """A hop-by-hop, routing, destination options, AH, mobility, HIP or shim6 header.

    ``header_type`` is the protocol number that announces it; ``data`` is
    everything after its next-header and length bytes (so ``len(data) + 2`` is
    a multiple of 8, or of 4 for AH).
    """

    header_type: int
    next_header: int
    data: bytes = b"\x00" * 6

    def __post_init__(self) -> None:
        if self.header_type not in GENERIC_EXT and self.header_type != IPPROTO_AH:
            raise PacketError("ipv6-ext", f"{self.header_type} is not an extension header")
        check_uint("ipv6-ext", "next_header", self.next_header, 8)
        if not isinstance(self.data, bytes | bytearray | memoryview):
            raise PacketError("ipv6-ext", f"data must be bytes, got {self.data!r}")
        object.__setattr__(self, "data", as_bytes(self.data))
        size = len(self.data) + 2
        unit = 4 if self.header_type == IPPROTO_AH else 8
        if size < 8 or size % unit or self.length_field > 255:
            raise PacketError(
                "ipv6-ext", f"header of {size} bytes is not a multiple of {unit} in 8..")

    @property
    def header_len(self) -> int:
        """Length of this header in bytes."""
        return len(self.data) + 2

    @property
    def length_field(self) -> int:
        """The value of the on-wire length byte."""
        if self.header_type == IPPROTO_AH:
            return (len(self.data) + 2) // 4 - 2
        return (len(self.data) + 2) // 8 - 1

    def pack(self) -> bytes:
        """The header bytes."""
        return bytes((self.next_header, self.length_field)) + self.data


@dataclass(frozen=True, slots=True)
class IPv6Fragment:
    """The fragment header. ``offset`` is in 8-byte units; ``more`` is the M flag."""

    next_header: int
    offset: int = 0
    more: bool = False
    ident: int = 0
    reserved: int = 0
    res: int = 0

    def __post_init__(self) -> None:
        check_uint("ipv6-frag", "next_header", self.next_header, 8)
        check_uint("ipv6-frag", "offset", self.offset, 13)
        check_uint("ipv6-frag", "ident", self.ident, 32)
        check_uint("ipv6-frag", "reserved", self.reserved, 8)
        check_uint("ipv6-frag", "res", self.res, 2)
        object.__setattr__(self, "more", bool(self.more))

    header_type = IPPROTO_FRAGMENT
    header_len = 8

    def pack(self) -> bytes:
        """The header bytes."""
        return _FRAG.pack(self.next_header, self.reserved,
                          (self.offset << 3) | (self.res << 1) | int(self.more), self.ident)


ExtHeader = IPv6Ext | IPv6Fragment


@dataclass(frozen=True, slots=True)
class IPv6:
    """IPv6 header and its extension headers (in order).

    ``next_header`` announces the first extension header (or the upper layer);
    each extension header's ``next_header`` announces the one after it.
    ``payload_length`` covers extension headers and the upper layer.
    """

    src: bytes
    dst: bytes
    next_header: int = IPPROTO_NONE
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0
    ext_headers: tuple[ExtHeader, ...] = ()
    payload_length: int = 0

    def __post_init__(self) -> None:
        check_len("ipv6", "src", self.src, 16)
        check_len("ipv6", "dst", self.dst, 16)
        object.__setattr__(self, "src", as_bytes(self.src))
        object.__setattr__(self, "dst", as_bytes(self.dst))
        if not isinstance(self.ext_headers, tuple):
            object.__setattr__(self, "ext_headers", tuple(self.ext_headers))
        for ext in self.ext_headers:
            if not isinstance(ext, IPv6Ext | IPv6Fragment):
                raise PacketError("ipv6", f"{ext!r} is not an extension header")
        check_uint("ipv6", "next_header", self.next_header, 8)
        check_uint("ipv6", "hop_limit", self.hop_limit, 8)
        check_uint("ipv6", "traffic_class", self.traffic_class, 8)
        check_uint("ipv6", "flow_label", self.flow_label, 20)
        check_uint("ipv6", "payload_length", self.payload_length, 16)

    # -- derived fields -------------------------------------------------------------------

    @property
    def ext_len(self) -> int:
        """Bytes of extension headers."""
        return sum(e.header_len for e in self.ext_headers)

    @property
    def header_len(self) -> int:
        """40 + extension headers."""
        return 40 + self.ext_len

    @property
    def upper_protocol(self) -> int:
        """The protocol after the last extension header."""
        return self.ext_headers[-1].next_header if self.ext_headers else self.next_header

    @property
    def fragment(self) -> IPv6Fragment | None:
        """The fragment header, if any."""
        for ext in self.ext_headers:
            if isinstance(ext, IPv6Fragment):
                return ext
        return None

    @property
    def is_fragment(self) -> bool:
        """True when a fragment header is present."""
        return self.fragment is not None

    @property
    def is_later_fragment(self) -> bool:
        """A fragment at a non-zero offset (no upper-layer header)."""
        frag = self.fragment
        return frag is not None and frag.offset != 0

    @property
    def src_addr(self) -> ipaddress.IPv6Address:
        """Source as an address object."""
        return ipaddress.IPv6Address(self.src)

    @property
    def dst_addr(self) -> ipaddress.IPv6Address:
        """Destination as an address object."""
        return ipaddress.IPv6Address(self.dst)

    @property
    def final_destination(self) -> bytes:
        """The destination for upper-layer checksums (RFC 8200 8.1).

        With a routing header that still has segments left, that is the last
        address of a type 0/2 header or segment 0 of a segment routing header;
        otherwise :attr:`dst`. Of several such headers the last one counts.
        """
        for ext in reversed(self.ext_headers):
            if isinstance(ext, IPv6Ext) and ext.header_type == IPPROTO_ROUTING:
                rtype, segleft = ext.data[0], ext.data[1]
                if segleft == 0:
                    continue
                if rtype in (0, 2) and len(ext.data) >= 22:
                    return ext.data[-16:]
                if rtype == 4 and len(ext.data) >= 22:
                    return ext.data[6:22]
        return self.dst

    def with_chain(self, upper: int) -> IPv6:
        """A copy whose next-header fields chain through the extension headers to ``upper``."""
        exts: list[ExtHeader] = []
        types = [e.header_type for e in self.ext_headers[1:]] + [upper]
        for ext, nxt in zip(self.ext_headers, types, strict=False):
            if isinstance(ext, IPv6Fragment):
                exts.append(IPv6Fragment(nxt, ext.offset, ext.more, ext.ident, ext.reserved,
                                         ext.res))
            else:
                exts.append(IPv6Ext(ext.header_type, nxt, ext.data))
        first = self.ext_headers[0].header_type if self.ext_headers else upper
        return IPv6(self.src, self.dst, first, self.hop_limit, self.traffic_class,
                    self.flow_label, tuple(exts), self.payload_length)

    # -- wire format ----------------------------------------------------------------------

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[IPv6, int]:
        """Parse the header and its extension headers; return it and the upper-layer offset.

        Extension headers must lie inside both the buffer and ``payload_length``.
        The walk stops at the first non-extension protocol, at "no next header"
        (59), and after a fragment header with a non-zero offset.
        """
        mv = view(buf)
        n = len(mv)
        need("ipv6", n, offset, 40)
        vtf, plen, nh, hlim, src, dst = _HDR.unpack_from(mv, offset)
        if vtf >> 28 != 6:
            raise PacketError("ipv6", f"version is {vtf >> 28}, not 6")
        limit = min(n, offset + 40 + plen)
        off = offset + 40
        exts: list[ExtHeader] = []
        proto = nh
        while proto in EXT_HEADERS:
            if limit < off + 8:
                raise PacketError("ipv6", f"extension header {proto} at offset {off} is cut short")
            if proto == IPPROTO_FRAGMENT:
                nxt, reserved, fo, ident = _FRAG.unpack_from(mv, off)
                frag = IPv6Fragment(nxt, fo >> 3, bool(fo & 1), ident, reserved, (fo >> 1) & 3)
                exts.append(frag)
                off += 8
                proto = nxt
                if frag.offset:
                    break
                continue
            nxt, hl = mv[off], mv[off + 1]
            size = (hl + 2) * 4 if proto == IPPROTO_AH else (hl + 1) * 8
            if limit < off + size:
                raise PacketError("ipv6", f"extension header {proto} at offset {off} is cut short")
            exts.append(IPv6Ext(proto, nxt, bytes(mv[off + 2 : off + size])))
            off += size
            proto = nxt
        hdr = cls(src, dst, nh, hlim, (vtf >> 20) & 0xFF, vtf & 0xFFFFF, tuple(exts), plen)
        return hdr, off

    def pack(self, payload_length: int | None = None) -> bytes:
        """Header and extension header bytes with the given (or the stored) payload length."""
        plen = self.payload_length if payload_length is None else payload_length
        fixed = _HDR.pack((6 << 28) | (self.traffic_class << 20) | self.flow_label, plen,
                          self.next_header, self.hop_limit, self.src, self.dst)
        return fixed + b"".join(e.pack() for e in self.ext_headers)

    def build(self, payload: Buffer = b"", *, fix_lengths: bool = True) -> bytes:
        """Header + extension headers + ``payload``; computes the payload length by default."""
        plen = self.ext_len + len(payload) if fix_lengths else self.payload_length
        if plen > 0xFFFF:
            raise PacketError("ipv6", f"payload of {plen} bytes needs a jumbogram")
        return self.pack(plen) + bytes(payload)

    def __str__(self) -> str:
        return (f"IP6 {self.src_addr} > {self.dst_addr} next {self.upper_protocol} "
                f"hlim {self.hop_limit}")
