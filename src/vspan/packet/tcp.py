"""TCP header (RFC 9293) with options."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vspan.packet._buf import Buffer, as_bytes, view
from vspan.packet._l4 import IPHeader, fill_checksum, pseudo
from vspan.packet.checksum import internet_checksum
from vspan.packet.errors import PacketError, check_uint, need
from vspan.packet.ipv4 import IPPROTO_TCP

FIN = 0x001
SYN = 0x002
RST = 0x004
PSH = 0x008
ACK = 0x010
URG = 0x020
ECE = 0x040
CWR = 0x080
NS = 0x100  # now "AE" (RFC 9293 keeps it reserved; accurate ECN uses it)

#: Flag letters as scapy and tcpdump use them, lowest bit first.
_LETTERS = "FSRPAUECN"

_HDR = struct.Struct("!HHIIHHHH")
TCP_HLEN = 20


def tcp_flags(flags: str | int) -> int:
    """Flag bits from letters (``"SA"``: SYN+ACK; ``F S R P A U E C N``) or an int."""
    if isinstance(flags, int):
        check_uint("tcp", "flags", flags, 9)
        return flags
    bits = 0
    for ch in flags.upper():
        i = _LETTERS.find(ch)
        if i < 0:
            raise PacketError("tcp", f"unknown flag letter {ch!r} in {flags!r}")
        bits |= 1 << i
    return bits


def flags_str(bits: int) -> str:
    """Letters for flag bits, in scapy's order (``0x12`` -> ``"SA"``)."""
    return "".join(ch for i, ch in enumerate(_LETTERS) if bits >> i & 1)


@dataclass(frozen=True, slots=True)
class TCP:
    """TCP header. ``flags`` holds the 9 flag bits, ``reserved`` the 3 bits before them.

    The data offset is derived from ``options`` (a multiple of 4 bytes, at most 40).
    """

    sport: int
    dport: int
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 65535
    urgent: int = 0
    options: bytes = b""
    checksum: int = 0
    reserved: int = 0

    def __post_init__(self) -> None:
        check_uint("tcp", "sport", self.sport, 16)
        check_uint("tcp", "dport", self.dport, 16)
        check_uint("tcp", "seq", self.seq, 32)
        check_uint("tcp", "ack", self.ack, 32)
        if isinstance(self.flags, str):
            object.__setattr__(self, "flags", tcp_flags(self.flags))
        check_uint("tcp", "flags", self.flags, 9)
        check_uint("tcp", "window", self.window, 16)
        check_uint("tcp", "urgent", self.urgent, 16)
        check_uint("tcp", "checksum", self.checksum, 16)
        check_uint("tcp", "reserved", self.reserved, 3)
        if not isinstance(self.options, bytes | bytearray | memoryview):
            raise PacketError("tcp", f"options must be bytes, got {self.options!r}")
        object.__setattr__(self, "options", as_bytes(self.options))
        if len(self.options) % 4 or len(self.options) > 40:
            raise PacketError(
                "tcp", f"options length {len(self.options)} is not a multiple of 4 up to 40")

    protocol = IPPROTO_TCP

    @property
    def header_len(self) -> int:
        """Header length in bytes (20 + options)."""
        return TCP_HLEN + len(self.options)

    @property
    def data_offset(self) -> int:
        """Header length in 32-bit words."""
        return 5 + len(self.options) // 4

    @property
    def flag_str(self) -> str:
        """The flags as letters (``"SA"``)."""
        return flags_str(self.flags)

    def has(self, flags: str | int) -> bool:
        """True when every flag in ``flags`` is set."""
        bits = tcp_flags(flags)
        return self.flags & bits == bits

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[TCP, int]:
        """Parse the header at ``offset``; return it and the payload offset."""
        mv = view(buf)
        n = len(mv)
        need("tcp", n, offset, TCP_HLEN)
        sport, dport, seq, ack, offflags, window, csum, urg = _HDR.unpack_from(mv, offset)
        hlen = (offflags >> 12) * 4
        if hlen < TCP_HLEN:
            raise PacketError("tcp", f"data offset {offflags >> 12} is below 5")
        need("tcp", n, offset, hlen)
        options = bytes(mv[offset + TCP_HLEN : offset + hlen])
        hdr = cls(sport, dport, seq, ack, offflags & 0x1FF, window, urg, options, csum,
                  (offflags >> 9) & 7)
        return hdr, offset + hlen

    def pack(self, checksum: int | None = None) -> bytes:
        """Header bytes with the given (or the stored) checksum."""
        return _HDR.pack(
            self.sport, self.dport, self.seq, self.ack,
            (self.data_offset << 12) | (self.reserved << 9) | self.flags,
            self.window, self.checksum if checksum is None else checksum, self.urgent,
        ) + self.options

    def build(
        self,
        payload: Buffer = b"",
        *,
        ip: IPHeader | None = None,
        fix_lengths: bool = True,
        fix_checksums: bool = True,
    ) -> bytes:
        """Header + ``payload``; computes the checksum (which needs ``ip``) by default."""
        del fix_lengths  # TCP carries no length of its own
        seg = self.pack(0 if fix_checksums else None) + bytes(payload)
        if fix_checksums:
            csum = internet_checksum(pseudo("tcp", ip, IPPROTO_TCP, len(seg)), seg)
            seg = fill_checksum(seg, 16, csum)
        return seg

    def checksum_ok(self, payload: Buffer, ip: IPHeader) -> bool:
        """True when the stored checksum matches header, ``payload`` and pseudo-header."""
        seg = self.pack() + bytes(payload)
        return internet_checksum(pseudo("tcp", ip, IPPROTO_TCP, len(seg)), seg) == 0

    def __str__(self) -> str:
        return (f"TCP {self.sport} > {self.dport} [{self.flag_str}] seq {self.seq} "
                f"ack {self.ack} win {self.window}")
