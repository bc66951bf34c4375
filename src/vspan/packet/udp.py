"""UDP header (RFC 768)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vspan.packet._buf import Buffer, view
from vspan.packet._l4 import IPHeader, fill_checksum, pseudo
from vspan.packet.checksum import internet_checksum
from vspan.packet.errors import PacketError, check_uint, need
from vspan.packet.ipv4 import IPPROTO_UDP, IPv4

_HDR = struct.Struct("!HHHH")
UDP_HLEN = 8


@dataclass(frozen=True, slots=True)
class UDP:
    """UDP header. ``length`` covers header and payload."""

    sport: int
    dport: int
    length: int = 0
    checksum: int = 0

    def __post_init__(self) -> None:
        check_uint("udp", "sport", self.sport, 16)
        check_uint("udp", "dport", self.dport, 16)
        check_uint("udp", "length", self.length, 16)
        check_uint("udp", "checksum", self.checksum, 16)

    header_len = UDP_HLEN
    protocol = IPPROTO_UDP

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[UDP, int]:
        """Parse the header at ``offset``; return it and the payload offset.

        The length field is not checked here; :func:`vspan.packet.parse_frame` does.
        """
        mv = view(buf)
        need("udp", len(mv), offset, UDP_HLEN)
        return cls(*_HDR.unpack_from(mv, offset)), offset + UDP_HLEN

    def pack(self) -> bytes:
        """Header bytes as stored."""
        return _HDR.pack(self.sport, self.dport, self.length, self.checksum)

    def build(
        self,
        payload: Buffer = b"",
        *,
        ip: IPHeader | None = None,
        fix_lengths: bool = True,
        fix_checksums: bool = True,
    ) -> bytes:
        """Header + ``payload``; computes length and checksum (which needs ``ip``) by default.

        A computed checksum of 0 is sent as 0xFFFF (0 means "none" over IPv4).
        """
        length = UDP_HLEN + len(payload) if fix_lengths else self.length
        if length > 0xFFFF:
            raise PacketError("udp", f"datagram of {length} bytes is too long")
        seg = _HDR.pack(self.sport, self.dport, length, 0 if fix_checksums else self.checksum)
        seg += bytes(payload)
        if fix_checksums:
            csum = internet_checksum(pseudo("udp", ip, IPPROTO_UDP, len(seg)), seg) or 0xFFFF
            seg = fill_checksum(seg, 6, csum)
        return seg

    def checksum_ok(self, payload: Buffer, ip: IPHeader) -> bool:
        """True when the stored checksum matches (0 over IPv4 means "not computed": ok)."""
        if self.checksum == 0 and isinstance(ip, IPv4):
            return True
        seg = self.pack() + bytes(payload)
        return internet_checksum(pseudo("udp", ip, IPPROTO_UDP, len(seg)), seg) == 0

    def __str__(self) -> str:
        return f"UDP {self.sport} > {self.dport} len {self.length}"
