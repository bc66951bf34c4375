"""ERSPAN Type II and Type III headers (draft-foschiano-erspan-03).

The ERSPAN header follows a GRE header with the sequence-number bit set:
protocol 0x88BE for Type II (ERSPAN version field 1) and 0x22EB for Type III
(version field 2). Type III may carry an 8-byte platform-specific subheader
(``O`` bit). Type I is 0x88BE without a GRE sequence number and has no ERSPAN
header at all (the mirrored frame follows GRE directly).

Layouts (bits)::

    Type II:  Ver(4)=1 VLAN(12) | COS(3) En(2) T(1) SessionID(10) | Reserved(12) Index(20)
    Type III: Ver(4)=2 VLAN(12) | COS(3) BSO(2) T(1) SessionID(10) | Timestamp(32)
              | SGT(16) P(1) FT(5) HwID(6) D(1) Gra(2) O(1)
    Platform: PlatfID(6) Info(58)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from vspan.packet._buf import Buffer, view
from vspan.packet.errors import PacketError, check_uint, need

ERSPAN_VERSION_I = 0
ERSPAN_VERSION_II = 1  # the version field of a Type II header
ERSPAN_VERSION_III = 2  # the version field of a Type III header

# En (Type II): how the original frame carried its VLAN
EN_NO_VLAN = 0  # originally without VLAN tag
EN_ISL = 1  # ISL encapsulated
EN_8021Q = 2  # 802.1Q encapsulated (tag removed, VLAN in the header)
EN_IN_FRAME = 3  # VLAN tag preserved in the mirrored frame

# BSO (Type III): bad/short/oversized
BSO_GOOD = 0
BSO_SHORT = 1
BSO_OVERSIZED = 2
BSO_BAD = 3

# Gra (Type III): timestamp granularity
GRA_100US = 0
GRA_100NS = 1
GRA_IEEE1588 = 2  # nanoseconds within the second; seconds in a platform subheader
GRA_USER = 3

# FT (Type III): frame type
FT_ETHERNET = 0
FT_IP = 2

# D (Type III): direction of the mirrored traffic
DIR_INGRESS = 0
DIR_EGRESS = 1

# platform ids whose layout vspan knows (the rest are kept as opaque info bits)
PLATF_PORT_UPPER_TS = 3  # Reserved(12) PortIndex(14) | upper 32 timestamp bits
PLATF_SWITCH_PORT_SECONDS = 5  # SwitchID(10) PortIndex(16) | timestamp seconds
PLATF_SWITCH_PORT_SECONDS_6 = 6  # same layout as 5

_II = struct.Struct("!HHI")
_III = struct.Struct("!HHIHH")
_PLAT = struct.Struct("!II")


def _common(header: str, session_id: int, vlan: int, cos: int, two_bits: int, name: str) -> None:
    check_uint(header, "session_id", session_id, 10)
    check_uint(header, "vlan", vlan, 12)
    check_uint(header, "cos", cos, 3)
    check_uint(header, name, two_bits, 2)


@dataclass(frozen=True, slots=True)
class ErspanII:
    """ERSPAN Type II header (8 bytes)."""

    session_id: int
    vlan: int = 0
    cos: int = 0
    en: int = EN_NO_VLAN
    truncated: bool = False
    index: int = 0
    reserved: int = 0

    LENGTH: ClassVar[int] = 8
    VERSION: ClassVar[int] = ERSPAN_VERSION_II

    def __post_init__(self) -> None:
        _common("erspan2", self.session_id, self.vlan, self.cos, self.en, "en")
        check_uint("erspan2", "index", self.index, 20)
        check_uint("erspan2", "reserved", self.reserved, 12)

    @property
    def header_len(self) -> int:
        """Always 8."""
        return self.LENGTH

    def pack(self) -> bytes:
        """The 8 header bytes."""
        return _II.pack(
            (ERSPAN_VERSION_II << 12) | self.vlan,
            (self.cos << 13) | (self.en << 11) | (int(self.truncated) << 10) | self.session_id,
            (self.reserved << 20) | self.index,
        )

    def build(self, frame: Buffer = b"") -> bytes:
        """Header + the mirrored ``frame``."""
        return self.pack() + bytes(frame)

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[ErspanII, int]:
        """Parse the header at ``offset``; return it and the offset of the mirrored frame."""
        mv = view(buf)
        need("erspan2", len(mv), offset, 8)
        w0, w1, w2 = _II.unpack_from(mv, offset)
        if w0 >> 12 != ERSPAN_VERSION_II:
            raise PacketError("erspan2", f"version field is {w0 >> 12}, expected 1 (Type II)")
        return (
            cls(
                session_id=w1 & 0x3FF,
                vlan=w0 & 0xFFF,
                cos=w1 >> 13,
                en=(w1 >> 11) & 3,
                truncated=bool(w1 & 0x400),
                index=w2 & 0xFFFFF,
                reserved=w2 >> 20,
            ),
            offset + 8,
        )


@dataclass(frozen=True, slots=True)
class ErspanPlatform:
    """The optional 8-byte platform-specific subheader of Type III: an id and 58 info bits."""

    platf_id: int
    info: int = 0

    LENGTH: ClassVar[int] = 8

    def __post_init__(self) -> None:
        check_uint("erspan3-platform", "platf_id", self.platf_id, 6)
        check_uint("erspan3-platform", "info", self.info, 58)

    @classmethod
    def switch_port_seconds(cls, switch_id: int, port_index: int, seconds: int,
                            platf_id: int = PLATF_SWITCH_PORT_SECONDS) -> ErspanPlatform:
        """Platform id 5 (or 6): switch id (10 bits), port index (16 bits), timestamp seconds."""
        check_uint("erspan3-platform", "switch_id", switch_id, 10)
        check_uint("erspan3-platform", "port_index", port_index, 16)
        check_uint("erspan3-platform", "seconds", seconds, 32)
        if platf_id not in (PLATF_SWITCH_PORT_SECONDS, PLATF_SWITCH_PORT_SECONDS_6):
            raise PacketError("erspan3-platform", f"platf_id {platf_id} has another layout")
        return cls(platf_id, (switch_id << 48) | (port_index << 32) | seconds)

    @classmethod
    def port_upper_timestamp(cls, port_index: int, upper: int) -> ErspanPlatform:
        """Platform id 3: port index (14 bits) and the upper 32 bits of the timestamp."""
        check_uint("erspan3-platform", "port_index", port_index, 14)
        check_uint("erspan3-platform", "upper", upper, 32)
        return cls(PLATF_PORT_UPPER_TS, (port_index << 32) | upper)

    @property
    def high(self) -> int:
        """The 26 info bits of the first word."""
        return self.info >> 32

    @property
    def low(self) -> int:
        """The second 32-bit word (a timestamp part for platform ids 3, 5, 6, 7)."""
        return self.info & 0xFFFFFFFF

    @property
    def switch_id(self) -> int | None:
        """Switch id of platform ids 5 and 6 (``None`` for other layouts)."""
        if self.platf_id in (PLATF_SWITCH_PORT_SECONDS, PLATF_SWITCH_PORT_SECONDS_6):
            return self.high >> 16
        return None

    @property
    def port_index(self) -> int | None:
        """Port index of platform ids 3, 5 and 6 (``None`` for other layouts)."""
        if self.platf_id in (PLATF_SWITCH_PORT_SECONDS, PLATF_SWITCH_PORT_SECONDS_6):
            return self.high & 0xFFFF
        if self.platf_id == PLATF_PORT_UPPER_TS:
            return self.high & 0x3FFF
        return None

    @property
    def seconds(self) -> int | None:
        """Timestamp seconds of platform ids 5 and 6 (``None`` for other layouts)."""
        if self.platf_id in (PLATF_SWITCH_PORT_SECONDS, PLATF_SWITCH_PORT_SECONDS_6):
            return self.low
        return None

    def pack(self) -> bytes:
        """The 8 subheader bytes."""
        return _PLAT.pack((self.platf_id << 26) | (self.info >> 32), self.info & 0xFFFFFFFF)

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[ErspanPlatform, int]:
        """Parse the subheader at ``offset``; return it and the next offset."""
        mv = view(buf)
        need("erspan3-platform", len(mv), offset, 8)
        w0, w1 = _PLAT.unpack_from(mv, offset)
        return cls(w0 >> 26, ((w0 & 0x3FFFFFF) << 32) | w1), offset + 8


@dataclass(frozen=True, slots=True)
class ErspanIII:
    """ERSPAN Type III header (12 bytes, 20 with the platform subheader)."""

    session_id: int
    vlan: int = 0
    cos: int = 0
    bso: int = BSO_GOOD
    truncated: bool = False
    timestamp: int = 0
    sgt: int = 0
    p: bool = True  # the payload is an Ethernet PDU
    ft: int = FT_ETHERNET
    hw_id: int = 0
    direction: int = DIR_INGRESS
    granularity: int = GRA_100US
    platform: ErspanPlatform | None = None

    LENGTH: ClassVar[int] = 12
    VERSION: ClassVar[int] = ERSPAN_VERSION_III

    def __post_init__(self) -> None:
        _common("erspan3", self.session_id, self.vlan, self.cos, self.bso, "bso")
        check_uint("erspan3", "timestamp", self.timestamp, 32)
        check_uint("erspan3", "sgt", self.sgt, 16)
        check_uint("erspan3", "ft", self.ft, 5)
        check_uint("erspan3", "hw_id", self.hw_id, 6)
        check_uint("erspan3", "direction", self.direction, 1)
        check_uint("erspan3", "granularity", self.granularity, 2)
        if self.platform is not None and not isinstance(self.platform, ErspanPlatform):
            raise PacketError("erspan3", f"platform must be ErspanPlatform: {self.platform!r}")

    @property
    def header_len(self) -> int:
        """12, or 20 with the platform subheader."""
        return 12 if self.platform is None else 20

    def pack(self) -> bytes:
        """The header bytes (with the platform subheader when present)."""
        o = self.platform is not None
        base = _III.pack(
            (ERSPAN_VERSION_III << 12) | self.vlan,
            (self.cos << 13) | (self.bso << 11) | (int(self.truncated) << 10) | self.session_id,
            self.timestamp,
            self.sgt,
            (int(self.p) << 15) | (self.ft << 10) | (self.hw_id << 4) | (self.direction << 3)
            | (self.granularity << 1) | int(o),
        )
        if self.platform is None:
            return base
        return base + self.platform.pack()

    def build(self, frame: Buffer = b"") -> bytes:
        """Header + the mirrored ``frame``."""
        return self.pack() + bytes(frame)

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[ErspanIII, int]:
        """Parse the header at ``offset``; return it and the offset of the mirrored frame."""
        mv = view(buf)
        need("erspan3", len(mv), offset, 12)
        w0, w1, ts, sgt, w4 = _III.unpack_from(mv, offset)
        if w0 >> 12 != ERSPAN_VERSION_III:
            raise PacketError("erspan3", f"version field is {w0 >> 12}, expected 2 (Type III)")
        off = offset + 12
        platform = None
        if w4 & 1:
            platform, off = ErspanPlatform.parse(mv, off)
        return (
            cls(
                session_id=w1 & 0x3FF,
                vlan=w0 & 0xFFF,
                cos=w1 >> 13,
                bso=(w1 >> 11) & 3,
                truncated=bool(w1 & 0x400),
                timestamp=ts,
                sgt=sgt,
                p=bool(w4 >> 15),
                ft=(w4 >> 10) & 0x1F,
                hw_id=(w4 >> 4) & 0x3F,
                direction=(w4 >> 3) & 1,
                granularity=(w4 >> 1) & 3,
                platform=platform,
            ),
            off,
        )


def erspan_version(buf: Buffer, offset: int = 0) -> int:
    """The 4-bit version field at ``offset`` (1 = Type II, 2 = Type III)."""
    mv = view(buf)
    need("erspan", len(mv), offset, 1)
    return int(mv[offset]) >> 4
