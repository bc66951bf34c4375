"""GRE header (RFC 2784 with the key and sequence number extensions of RFC 2890).

Only GRE version 0 is handled; the RFC 1701 routing/strict-source-route bits
and version 1 (PPTP's enhanced GRE) are rejected with :class:`PacketError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vspan.packet._buf import Buffer, view
from vspan.packet.checksum import internet_checksum
from vspan.packet.errors import PacketError, check_uint, need

IPPROTO_GRE = 47

#: Transparent Ethernet bridging: the payload is a whole Ethernet frame (gretap).
GRE_PROTO_TEB = 0x6558
#: ERSPAN Type I (without sequence number) and Type II (with it).
GRE_PROTO_ERSPAN2 = 0x88BE
#: ERSPAN Type III.
GRE_PROTO_ERSPAN3 = 0x22EB

GRE_FLAG_C = 0x8000  # checksum present
GRE_FLAG_R = 0x4000  # routing present (RFC 1701, obsolete)
GRE_FLAG_K = 0x2000  # key present
GRE_FLAG_S = 0x1000  # sequence number present
GRE_FLAG_SSR = 0x0800  # strict source route (RFC 1701, obsolete)
GRE_RECUR_MASK = 0x0700
GRE_VERSION_MASK = 0x0007

_BASE = struct.Struct("!HH")
_U32 = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class GRE:
    """A GRE header.

    ``key`` and ``seq`` are ``None`` when their flag is clear. With ``checksum``
    set, :meth:`build` computes the checksum over header and payload;
    ``checksum_value`` is what :meth:`parse` found on the wire (0 otherwise).
    """

    protocol: int
    key: int | None = None
    seq: int | None = None
    checksum: bool = False
    checksum_value: int = 0

    def __post_init__(self) -> None:
        check_uint("gre", "protocol", self.protocol, 16)
        if self.key is not None:
            check_uint("gre", "key", self.key, 32)
        if self.seq is not None:
            check_uint("gre", "seq", self.seq, 32)
        check_uint("gre", "checksum_value", self.checksum_value, 16)

    @property
    def flags(self) -> int:
        """The first 16-bit word: C/K/S flags, version 0."""
        f = 0
        if self.checksum:
            f |= GRE_FLAG_C
        if self.key is not None:
            f |= GRE_FLAG_K
        if self.seq is not None:
            f |= GRE_FLAG_S
        return f

    @property
    def header_len(self) -> int:
        """Bytes of this header: 4, plus 4 for each of checksum, key, sequence."""
        return 4 + 4 * (self.checksum + (self.key is not None) + (self.seq is not None))

    def pack(self, checksum_value: int | None = None) -> bytes:
        """The header bytes; the checksum field holds ``checksum_value`` (or the parsed one)."""
        parts = [_BASE.pack(self.flags, self.protocol)]
        if self.checksum:
            value = self.checksum_value if checksum_value is None else checksum_value
            parts.append(_U32.pack(value << 16))
        if self.key is not None:
            parts.append(_U32.pack(self.key))
        if self.seq is not None:
            parts.append(_U32.pack(self.seq))
        return b"".join(parts)

    def build(self, payload: Buffer = b"") -> bytes:
        """Header + ``payload``, with the checksum computed when ``checksum`` is set."""
        body = bytes(payload)
        if not self.checksum:
            return self.pack() + body
        zero = self.pack(0)
        return self.pack(internet_checksum(zero, body)) + body

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[GRE, int]:
        """Parse the header at ``offset``; return it and the offset of the payload."""
        mv = view(buf)
        n = len(mv)
        need("gre", n, offset, 4)
        flags, proto = _BASE.unpack_from(mv, offset)
        version = flags & GRE_VERSION_MASK
        if version != 0:
            raise PacketError("gre", f"version {version} is not supported (only version 0)")
        if flags & (GRE_FLAG_R | GRE_FLAG_SSR):
            raise PacketError("gre", "RFC 1701 routing is not supported")
        off = offset + 4
        csum = 0
        has_csum = bool(flags & GRE_FLAG_C)
        if has_csum:
            need("gre", n, off, 4)
            csum = _U32.unpack_from(mv, off)[0] >> 16
            off += 4
        key = seq = None
        if flags & GRE_FLAG_K:
            need("gre", n, off, 4)
            key = _U32.unpack_from(mv, off)[0]
            off += 4
        if flags & GRE_FLAG_S:
            need("gre", n, off, 4)
            seq = _U32.unpack_from(mv, off)[0]
            off += 4
        return cls(proto, key, seq, has_csum, csum), off


def checksum_ok(buf: Buffer, offset: int = 0) -> bool:
    """Whether the GRE packet at ``offset`` (header + payload to the end) has a valid checksum.

    ``True`` when no checksum is present.
    """
    mv = view(buf)
    hdr, _ = GRE.parse(mv, offset)
    if not hdr.checksum:
        return True
    return internet_checksum(mv[offset:]) == 0
