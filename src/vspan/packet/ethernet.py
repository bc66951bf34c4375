"""Ethernet II header with its stack of 802.1Q / 802.1ad VLAN tags."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from vspan.packet._buf import Buffer, as_bytes, view
from vspan.packet.addr import mac_str
from vspan.packet.errors import PacketError, check_len, check_uint, need

ETH_P_IPV4 = 0x0800
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_IPV6 = 0x86DD
ETH_P_8021AD = 0x88A8
ETH_P_QINQ1 = 0x9100
#: TPIDs that introduce a VLAN tag (802.1Q, 802.1ad, and the old pre-standard QinQ 0x9100).
VLAN_TPIDS = frozenset((ETH_P_8021Q, ETH_P_8021AD, ETH_P_QINQ1))

#: The VLAN id of a flow key that has no tag there.
UNTAGGED = -1

ETH_HLEN = 14
VLAN_HLEN = 4
#: Minimum frame length on the wire without FCS (what ``pad`` pads to).
ETH_ZLEN = 60

_HDR = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")


@dataclass(frozen=True, slots=True)
class VlanTag:
    """One 802.1Q/802.1ad tag: the TPID that announces it and its TCI fields."""

    tpid: int = ETH_P_8021Q
    pcp: int = 0
    dei: int = 0
    vid: int = 0

    def __post_init__(self) -> None:
        check_uint("vlan", "tpid", self.tpid, 16)
        check_uint("vlan", "pcp", self.pcp, 3)
        check_uint("vlan", "dei", self.dei, 1)
        check_uint("vlan", "vid", self.vid, 12)

    @property
    def tci(self) -> int:
        """The 16-bit tag control information."""
        return (self.pcp << 13) | (self.dei << 12) | self.vid

    @classmethod
    def from_tci(cls, tpid: int, tci: int) -> VlanTag:
        """A tag from its TPID and TCI."""
        return cls(tpid, tci >> 13, (tci >> 12) & 1, tci & 0xFFF)


@dataclass(frozen=True, slots=True)
class Ethernet:
    """Ethernet II header. ``tags`` are outermost first; ``ethertype`` is the one after them."""

    dst: bytes
    src: bytes
    tags: tuple[VlanTag, ...] = ()
    ethertype: int = ETH_P_IPV4

    def __post_init__(self) -> None:
        check_len("ethernet", "dst", self.dst, 6)
        check_len("ethernet", "src", self.src, 6)
        object.__setattr__(self, "dst", as_bytes(self.dst))
        object.__setattr__(self, "src", as_bytes(self.src))
        if not isinstance(self.tags, tuple):
            object.__setattr__(self, "tags", tuple(self.tags))
        for tag in self.tags:
            if not isinstance(tag, VlanTag):
                raise PacketError("ethernet", f"tags must be VlanTag objects, got {tag!r}")
        check_uint("ethernet", "ethertype", self.ethertype, 16)

    @property
    def header_len(self) -> int:
        """Bytes of this header including its tags."""
        return ETH_HLEN + VLAN_HLEN * len(self.tags)

    @property
    def vlan(self) -> int | None:
        """Outer VLAN id, or ``None`` when untagged."""
        return self.tags[0].vid if self.tags else None

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[Ethernet, int]:
        """Parse the header (and every VLAN tag) at ``offset``; return it and the next offset."""
        mv = view(buf)
        n = len(mv)
        need("ethernet", n, offset, ETH_HLEN)
        dst, src, etype = _HDR.unpack_from(mv, offset)
        off = offset + ETH_HLEN
        tags: list[VlanTag] = []
        while etype in VLAN_TPIDS:
            need("vlan", n, off, VLAN_HLEN)
            tci, inner = _TAG.unpack_from(mv, off)
            tags.append(VlanTag.from_tci(etype, tci))
            etype = inner
            off += VLAN_HLEN
        return cls(dst, src, tuple(tags), etype), off

    def pack(self) -> bytes:
        """The header bytes (without payload)."""
        parts = [self.dst, self.src]
        for tag in self.tags:
            parts.append(_TAG.pack(tag.tpid, tag.tci))
        parts.append(self.ethertype.to_bytes(2, "big"))
        return b"".join(parts)

    def build(self, payload: Buffer = b"", *, pad: bool = False) -> bytes:
        """Header + ``payload``; with ``pad``, zero-padded to 60 bytes (the minimum frame)."""
        frame = self.pack() + bytes(payload)
        if pad and len(frame) < ETH_ZLEN:
            frame += bytes(ETH_ZLEN - len(frame))
        return frame

    def __str__(self) -> str:
        tags = "".join(f" vlan {t.vid}" + (f" pcp {t.pcp}" if t.pcp else "") for t in self.tags)
        return f"{mac_str(self.src)} > {mac_str(self.dst)}{tags} type 0x{self.ethertype:04x}"
