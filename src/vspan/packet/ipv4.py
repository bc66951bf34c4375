"""IPv4 header (RFC 791) with options and fragment fields."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from vspan.packet._buf import Buffer, as_bytes, view
from vspan.packet.checksum import internet_checksum
from vspan.packet.errors import PacketError, check_len, check_uint, need

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_GRE = 47
IPPROTO_ICMPV6 = 58

#: Bits of :attr:`IPv4.flags`.
IP_RF = 0x4
IP_DF = 0x2
IP_MF = 0x1

_HDR = struct.Struct("!BBHHHBBH4s4s")


@dataclass(frozen=True, slots=True)
class IPv4:
    """IPv4 header. ``frag_offset`` is in 8-byte units; ``flags`` holds RF/DF/MF.

    ``total_length`` and ``checksum`` are what the header carries; :meth:`build`
    computes them unless told to keep them.
    """

    src: bytes
    dst: bytes
    proto: int = 0
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    flags: int = 0
    frag_offset: int = 0
    options: bytes = b""
    total_length: int = 0
    checksum: int = 0

    def __post_init__(self) -> None:
        check_len("ipv4", "src", self.src, 4)
        check_len("ipv4", "dst", self.dst, 4)
        object.__setattr__(self, "src", as_bytes(self.src))
        object.__setattr__(self, "dst", as_bytes(self.dst))
        if not isinstance(self.options, bytes | bytearray | memoryview):
            raise PacketError("ipv4", f"options must be bytes, got {self.options!r}")
        object.__setattr__(self, "options", as_bytes(self.options))
        if len(self.options) % 4 or len(self.options) > 40:
            raise PacketError(
                "ipv4", f"options length {len(self.options)} is not a multiple of 4 up to 40")
        check_uint("ipv4", "proto", self.proto, 8)
        check_uint("ipv4", "ttl", self.ttl, 8)
        check_uint("ipv4", "tos", self.tos, 8)
        check_uint("ipv4", "ident", self.ident, 16)
        check_uint("ipv4", "flags", self.flags, 3)
        check_uint("ipv4", "frag_offset", self.frag_offset, 13)
        check_uint("ipv4", "total_length", self.total_length, 16)
        check_uint("ipv4", "checksum", self.checksum, 16)

    # -- derived fields -------------------------------------------------------------------

    @property
    def header_len(self) -> int:
        """Header length in bytes (20 + options)."""
        return 20 + len(self.options)

    @property
    def ihl(self) -> int:
        """Header length in 32-bit words."""
        return 5 + len(self.options) // 4

    @property
    def dscp(self) -> int:
        """Differentiated services code point (upper 6 bits of TOS)."""
        return self.tos >> 2

    @property
    def ecn(self) -> int:
        """ECN bits (lower 2 bits of TOS)."""
        return self.tos & 3

    @property
    def df(self) -> bool:
        """Don't-fragment flag."""
        return bool(self.flags & IP_DF)

    @property
    def mf(self) -> bool:
        """More-fragments flag."""
        return bool(self.flags & IP_MF)

    @property
    def is_fragment(self) -> bool:
        """True for any fragment (MF set or a non-zero offset)."""
        return bool(self.flags & IP_MF or self.frag_offset)

    @property
    def is_first_fragment(self) -> bool:
        """A fragment at offset 0 (it carries the transport header)."""
        return bool(self.flags & IP_MF) and self.frag_offset == 0

    @property
    def is_later_fragment(self) -> bool:
        """A fragment at a non-zero offset (no transport header)."""
        return self.frag_offset != 0

    @property
    def src_addr(self) -> ipaddress.IPv4Address:
        """Source as an address object."""
        return ipaddress.IPv4Address(self.src)

    @property
    def dst_addr(self) -> ipaddress.IPv4Address:
        """Destination as an address object."""
        return ipaddress.IPv4Address(self.dst)

    # -- wire format ----------------------------------------------------------------------

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[IPv4, int]:
        """Parse the header at ``offset``; return it and the offset of its payload.

        Checks version, IHL and that the header is present. Whether
        ``total_length`` fits the buffer is the caller's business (see
        :func:`vspan.packet.parse_frame`), so quoted, cut headers in ICMP errors parse.
        """
        mv = view(buf)
        n = len(mv)
        need("ipv4", n, offset, 20)
        vihl, tos, tot, ident, frag, ttl, proto, csum, src, dst = _HDR.unpack_from(mv, offset)
        if vihl >> 4 != 4:
            raise PacketError("ipv4", f"version is {vihl >> 4}, not 4")
        hlen = (vihl & 0xF) * 4
        if hlen < 20:
            raise PacketError("ipv4", f"IHL {vihl & 0xF} is below 5")
        need("ipv4", n, offset, hlen)
        options = bytes(mv[offset + 20 : offset + hlen])
        hdr = cls(src, dst, proto, ttl, tos, ident, frag >> 13, frag & 0x1FFF, options, tot, csum)
        return hdr, offset + hlen

    def pack(self, checksum: int | None = None, total_length: int | None = None) -> bytes:
        """Header bytes with the given (or the stored) checksum and total length."""
        return _HDR.pack(
            0x40 | self.ihl, self.tos,
            self.total_length if total_length is None else total_length,
            self.ident, (self.flags << 13) | self.frag_offset, self.ttl, self.proto,
            self.checksum if checksum is None else checksum, self.src, self.dst,
        ) + self.options

    def build(
        self, payload: Buffer = b"", *, fix_lengths: bool = True, fix_checksums: bool = True
    ) -> bytes:
        """Header + ``payload``; computes total length and checksum unless told not to."""
        tot = self.header_len + len(payload) if fix_lengths else self.total_length
        if tot > 0xFFFF:
            raise PacketError("ipv4", f"datagram of {tot} bytes is too long")
        if fix_checksums:
            hdr = self.pack(0, tot)
            csum = internet_checksum(hdr)
            hdr = hdr[:10] + csum.to_bytes(2, "big") + hdr[12:]
        else:
            hdr = self.pack(None, tot)
        return hdr + bytes(payload)

    def checksum_ok(self) -> bool:
        """True when the stored header checksum is right."""
        return internet_checksum(self.pack()) == 0

    def __str__(self) -> str:
        frag = ""
        if self.is_fragment:
            frag = f" frag off {self.frag_offset * 8}{' MF' if self.mf else ''}"
        return f"IP {self.src_addr} > {self.dst_addr} proto {self.proto} ttl {self.ttl}{frag}"
