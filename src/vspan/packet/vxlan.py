"""VXLAN header (RFC 7348 section 5).

Eight bytes in front of an inner Ethernet frame, carried in UDP::

    |R|R|R|R|I|R|R|R|            Reserved (24)                    |
    |                VXLAN Network Identifier (24)  | Reserved (8) |

The ``I`` flag (0x08 in the first byte) says the VNI is valid and must be
set; every reserved bit is sent as zero and ignored on receipt. The outer
UDP destination port is 4789 (IANA); Linux's ``vxlan`` device defaults to
8472 unless created with ``dstport 4789``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vspan.packet._buf import Buffer, view
from vspan.packet.errors import PacketError, check_uint, need

VXLAN_HLEN = 8
VXLAN_PORT = 4789
VXLAN_FLAG_I = 0x08
VNI_MAX = (1 << 24) - 1
#: bytes an IPv4 underlay adds in front of the inner IP packet:
#: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14)
VXLAN_OVERHEAD_V4 = 50
#: bytes in front of the inner Ethernet frame (outer IPv4 + UDP + VXLAN)
VXLAN_ENCAP_V4 = 36

_HDR = struct.Struct("!II")


@dataclass(frozen=True, slots=True)
class Vxlan:
    """A VXLAN header.

    ``flags`` is the whole first byte (``0x08`` = I) and ``reserved`` the 24
    reserved bits after it, ``reserved2`` the last byte: :meth:`parse` keeps
    what the wire carried so a receiver can report it, :meth:`pack` writes
    what the fields hold (zeros by default, as RFC 7348 asks of a sender).
    """

    vni: int
    flags: int = VXLAN_FLAG_I
    reserved: int = 0
    reserved2: int = 0

    def __post_init__(self) -> None:
        check_uint("vxlan", "vni", self.vni, 24)
        check_uint("vxlan", "flags", self.flags, 8)
        check_uint("vxlan", "reserved", self.reserved, 24)
        check_uint("vxlan", "reserved2", self.reserved2, 8)

    header_len = VXLAN_HLEN

    @property
    def valid_vni(self) -> bool:
        """The ``I`` flag: the VNI field is meaningful."""
        return bool(self.flags & VXLAN_FLAG_I)

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[Vxlan, int]:
        """Parse the header at ``offset``; return it and the inner frame's offset.

        Flags are not judged here (a receiver decides what to drop).
        """
        mv = view(buf)
        need("vxlan", len(mv), offset, VXLAN_HLEN)
        word0, word1 = _HDR.unpack_from(mv, offset)
        return cls(word1 >> 8, word0 >> 24, word0 & 0xFFFFFF, word1 & 0xFF), offset + VXLAN_HLEN

    def pack(self) -> bytes:
        """Header bytes."""
        return _HDR.pack((self.flags << 24) | self.reserved, (self.vni << 8) | self.reserved2)

    def build(self, inner: Buffer = b"") -> bytes:
        """Header + the inner Ethernet frame."""
        return self.pack() + bytes(inner)

    def __str__(self) -> str:
        return f"VXLAN vni {self.vni} flags {self.flags:#04x}"


def vxlan_header(vni: int) -> bytes:
    """The 8 header bytes a sender writes for ``vni`` (I set, reserved zero)."""
    if not 0 <= vni <= VNI_MAX:
        raise PacketError("vxlan", f"vni={vni!r} does not fit in 24 bits")
    return _HDR.pack(VXLAN_FLAG_I << 24, vni << 8)
