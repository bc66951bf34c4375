"""ICMP (RFC 792) and ICMPv6 (RFC 4443) headers."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

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
class _IcmpHeader:
    """What ICMP and ICMPv6 share: type, code, checksum and the 4 type-specific bytes."""

    type: int
    code: int = 0
    rest: bytes = b"\x00\x00\x00\x00"
    checksum: int = 0

    header_len: ClassVar[int] = ICMP_HLEN
    protocol: ClassVar[int] = IPPROTO_ICMP
    _name: ClassVar[str] = "icmp"

    def __post_init__(self) -> None:
        _check(self._name, self.type, self.code, self.checksum, self.rest)
        object.__setattr__(self, "rest", as_bytes(self.rest))

    @property
    def ident(self) -> int:
        """Echo identifier (first two rest bytes)."""
        return int.from_bytes(self.rest[:2], "big")

    @property
    def seq(self) -> int:
        """Echo sequence number (last two rest bytes)."""
        return int.from_bytes(self.rest[2:], "big")

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[Self, int]:
        """Parse the 8-byte header at ``offset``; return it and the body offset."""
        mv = view(buf)
        need(cls._name, len(mv), offset, ICMP_HLEN)
        t, c, csum, rest = _HDR.unpack_from(mv, offset)
        return cls(t, c, rest, csum), offset + ICMP_HLEN

    def pack(self, checksum: int | None = None) -> bytes:
        """Header bytes with the given (or the stored) checksum."""
        return _HDR.pack(self.type, self.code,
                         self.checksum if checksum is None else checksum, self.rest)

    def _pseudo(self, ip: IPHeader | None, length: int) -> bytes:
        """The pseudo-header the checksum covers (none for ICMP over IPv4)."""
        del ip, length
        return b""

    def build(
        self,
        payload: Buffer = b"",
        *,
        ip: IPHeader | None = None,
        fix_lengths: bool = True,
        fix_checksums: bool = True,
    ) -> bytes:
        """Header + ``payload``; computes the checksum by default (ICMPv6 needs ``ip``)."""
        del fix_lengths
        msg = self.pack(0 if fix_checksums else None) + bytes(payload)
        if fix_checksums:
            msg = fill_checksum(msg, 2, internet_checksum(self._pseudo(ip, len(msg)), msg))
        return msg

    def checksum_ok(self, payload: Buffer, ip: IPHeader | None = None) -> bool:
        """True when the stored checksum matches header, ``payload`` (and pseudo-header)."""
        msg = self.pack() + bytes(payload)
        return internet_checksum(self._pseudo(ip, len(msg)), msg) == 0


@dataclass(frozen=True, slots=True)
class ICMP(_IcmpHeader):
    """ICMP (for IPv4) header."""

    def __str__(self) -> str:
        return f"ICMP type {self.type} code {self.code}"


@dataclass(frozen=True, slots=True)
class ICMPv6(_IcmpHeader):
    """ICMPv6 header (its checksum covers the IPv6 pseudo-header)."""

    protocol: ClassVar[int] = IPPROTO_ICMPV6
    _name: ClassVar[str] = "icmpv6"

    def _pseudo(self, ip: IPHeader | None, length: int) -> bytes:
        return pseudo("icmpv6", ip, IPPROTO_ICMPV6, length)

    def __str__(self) -> str:
        return f"ICMP6 type {self.type} code {self.code}"
