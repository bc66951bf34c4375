"""ICMP (RFC 792) and ICMPv6 (RFC 4443) headers."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vspan.packet._buf import Buffer, as_bytes, view
from vspan.packet._l4 import IPHeader, fill_checksum, pseudo
from vspan.packet.checksum import internet_checksum
from vspan.packet.errors import PacketError, check_uint, need
from vspan.packet.ipv4 import IPPROTO_ICMP, IPPROTO_ICMPV6

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
#: Codes of ICMP destination unreachable.
ICMP_NET_UNREACH = 0
ICMP_HOST_UNREACH = 1
ICMP_PROT_UNREACH = 2
ICMP_PORT_UNREACH = 3
ICMP_FRAG_NEEDED = 4
ICMP_ADMIN_PROHIBITED = 13

ICMPV6_DEST_UNREACH = 1
ICMPV6_PACKET_TOO_BIG = 2
ICMPV6_TIME_EXCEEDED = 3
ICMPV6_PARAM_PROBLEM = 4
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
ICMPV6_NEIGHBOR_SOLICIT = 135
ICMPV6_NEIGHBOR_ADVERT = 136
#: Codes of ICMPv6 destination unreachable.
ICMPV6_NOROUTE = 0
ICMPV6_ADMIN_PROHIBITED = 1
ICMPV6_ADDR_UNREACH = 3
ICMPV6_PORT_UNREACH = 4

_HDR = struct.Struct("!BBH4s")
ICMP_HLEN = 8


def _check(name: str, type_: int, code: int, checksum: int, rest: bytes) -> None:
    check_uint(name, "type", type_, 8)
    check_uint(name, "code", code, 8)
    check_uint(name, "checksum", checksum, 16)
    if not isinstance(rest, bytes | bytearray | memoryview) or len(rest) != 4:
        raise PacketError(name, f"rest must be 4 bytes, got {rest!r}")


def echo_rest(ident: int, seq: int) -> bytes:
    """The 4 "rest of header" bytes of an echo request/reply."""
    check_uint("icmp", "ident", ident, 16)
    check_uint("icmp", "seq", seq, 16)
    return ident.to_bytes(2, "big") + seq.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class ICMP:
    """ICMP (for IPv4) header: type, code, checksum and the 4 type-specific bytes."""

    type: int
    code: int = 0
    rest: bytes = b"\x00\x00\x00\x00"
    checksum: int = 0

    def __post_init__(self) -> None:
        _check("icmp", self.type, self.code, self.checksum, self.rest)
        object.__setattr__(self, "rest", as_bytes(self.rest))

    header_len = ICMP_HLEN
    protocol = IPPROTO_ICMP

    @property
    def ident(self) -> int:
        """Echo identifier (first two rest bytes)."""
        return int.from_bytes(self.rest[:2], "big")

    @property
    def seq(self) -> int:
        """Echo sequence number (last two rest bytes)."""
        return int.from_bytes(self.rest[2:], "big")

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[ICMP, int]:
        """Parse the 8-byte header at ``offset``; return it and the body offset."""
        mv = view(buf)
        need("icmp", len(mv), offset, ICMP_HLEN)
        t, c, csum, rest = _HDR.unpack_from(mv, offset)
        return cls(t, c, rest, csum), offset + ICMP_HLEN

    def pack(self, checksum: int | None = None) -> bytes:
        """Header bytes with the given (or the stored) checksum."""
        return _HDR.pack(self.type, self.code,
                         self.checksum if checksum is None else checksum, self.rest)

    def build(
        self,
        payload: Buffer = b"",
        *,
        ip: IPHeader | None = None,
        fix_lengths: bool = True,
        fix_checksums: bool = True,
    ) -> bytes:
        """Header + ``payload``; computes the checksum by default (``ip`` is not needed)."""
        del ip, fix_lengths
        msg = self.pack(0 if fix_checksums else None) + bytes(payload)
        if fix_checksums:
            msg = fill_checksum(msg, 2, internet_checksum(msg))
        return msg

    def checksum_ok(self, payload: Buffer, ip: IPHeader | None = None) -> bool:
        """True when the stored checksum matches header and ``payload``."""
        del ip
        return internet_checksum(self.pack(), payload) == 0

    def __str__(self) -> str:
        return f"ICMP type {self.type} code {self.code}"


@dataclass(frozen=True, slots=True)
class ICMPv6:
    """ICMPv6 header: type, code, checksum and the 4 type-specific bytes."""

    type: int
    code: int = 0
    rest: bytes = b"\x00\x00\x00\x00"
    checksum: int = 0

    def __post_init__(self) -> None:
        _check("icmpv6", self.type, self.code, self.checksum, self.rest)
        object.__setattr__(self, "rest", as_bytes(self.rest))

    header_len = ICMP_HLEN
    protocol = IPPROTO_ICMPV6

    @property
    def ident(self) -> int:
        """Echo identifier (first two rest bytes)."""
        return int.from_bytes(self.rest[:2], "big")

    @property
    def seq(self) -> int:
        """Echo sequence number (last two rest bytes)."""
        return int.from_bytes(self.rest[2:], "big")

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[ICMPv6, int]:
        """Parse the 8-byte header at ``offset``; return it and the body offset."""
        mv = view(buf)
        need("icmpv6", len(mv), offset, ICMP_HLEN)
        t, c, csum, rest = _HDR.unpack_from(mv, offset)
        return cls(t, c, rest, csum), offset + ICMP_HLEN

    def pack(self, checksum: int | None = None) -> bytes:
        """Header bytes with the given (or the stored) checksum."""
        return _HDR.pack(self.type, self.code,
                         self.checksum if checksum is None else checksum, self.rest)

    def build(
        self,
        payload: Buffer = b"",
        *,
        ip: IPHeader | None = None,
        fix_lengths: bool = True,
        fix_checksums: bool = True,
    ) -> bytes:
        """Header + ``payload``; computes the checksum (which needs ``ip``) by default."""
        del fix_lengths
        msg = self.pack(0 if fix_checksums else None) + bytes(payload)
        if fix_checksums:
            csum = internet_checksum(pseudo("icmpv6", ip, IPPROTO_ICMPV6, len(msg)), msg)
            msg = fill_checksum(msg, 2, csum)
        return msg

    def checksum_ok(self, payload: Buffer, ip: IPHeader) -> bool:
        """True when the stored checksum matches header, ``payload`` and pseudo-header."""
        msg = self.pack() + bytes(payload)
        return internet_checksum(pseudo("icmpv6", ip, IPPROTO_ICMPV6, len(msg)), msg) == 0

    def __str__(self) -> str:
        return f"ICMP6 type {self.type} code {self.code}"
