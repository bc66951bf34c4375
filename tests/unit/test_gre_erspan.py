"""GRE and ERSPAN Type II/III headers: round trips, and scapy.contrib.erspan as the oracle."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import GRE as ScapyGRE
from scapy.layers.l2 import Dot1Q, Ether

from vspan.packet.errors import PacketError
from vspan.packet.erspan import (
    DIR_EGRESS,
    EN_IN_FRAME,
    GRA_IEEE1588,
    ErspanII,
    ErspanIII,
    ErspanPlatform,
    erspan_version,
)
from vspan.packet.gre import (
    GRE,
    GRE_PROTO_ERSPAN2,
    GRE_PROTO_ERSPAN3,
    GRE_PROTO_TEB,
    checksum_ok,
)

INNER = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=10, prio=5)
              / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1, dport=2) / b"payload")


# ---- GRE ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key,seq,csum", [
    (None, None, False), (7, None, False), (None, 99, False), (0xDEADBEEF, 0xFFFFFFFF, False),
    (None, None, True), (5, 6, True),
])
def test_gre_matches_scapy(key: int | None, seq: int | None, csum: bool) -> None:
    ours = GRE(GRE_PROTO_TEB, key=key, seq=seq, checksum=csum).build(INNER)
    kw: dict[str, Any] = {"proto": GRE_PROTO_TEB}
    if key is not None:
        kw.update(key_present=1, key=key)
    if seq is not None:
        kw.update(seqnum_present=1, sequence_number=seq)
    if csum:
        kw.update(chksum_present=1)
    theirs = bytes(ScapyGRE(**kw) / INNER)
    assert ours == theirs
    hdr, off = GRE.parse(theirs)
    assert (hdr.protocol, hdr.key, hdr.seq, hdr.checksum) == (GRE_PROTO_TEB, key, seq, csum)
    assert theirs[off:] == INNER
    assert hdr.header_len == off
    assert checksum_ok(theirs)


def test_gre_bad_checksum_detected() -> None:
    pkt = bytearray(GRE(GRE_PROTO_TEB, checksum=True).build(INNER))
    pkt[-1] ^= 0xFF
    assert not checksum_ok(bytes(pkt))


@pytest.mark.parametrize("raw,why", [
    (b"\x00", "truncated"),
    (b"\x00\x01\x65\x58", "version 1"),
    (b"\x40\x00\x65\x58", "routing"),
    (b"\x10\x00\x88\xbe\x00\x00", "truncated"),
    (b"\x20\x00\x65\x58\x00", "truncated"),
])
def test_gre_malformed(raw: bytes, why: str) -> None:
    with pytest.raises(PacketError, match=why):
        GRE.parse(raw)


@given(st.integers(0, 0xFFFF), st.none() | st.integers(0, 2**32 - 1),
       st.none() | st.integers(0, 2**32 - 1), st.booleans(), st.binary(max_size=40))
def test_gre_round_trip(proto: int, key: int | None, seq: int | None, csum: bool,
                        payload: bytes) -> None:
    pkt = GRE(proto, key, seq, csum).build(payload)
    hdr, off = GRE.parse(pkt)
    assert (hdr.protocol, hdr.key, hdr.seq, hdr.checksum) == (proto, key, seq, csum)
    assert pkt[off:] == payload
    assert checksum_ok(pkt)


def test_gre_value_checks() -> None:
    with pytest.raises(PacketError):
        GRE(0x10000)
    with pytest.raises(PacketError):
        GRE(GRE_PROTO_TEB, key=-1)


# ---- ERSPAN Type II ----------------------------------------------------------------------

@pytest.mark.parametrize("sid,vlan,cos,en,t,index", [
    (0, 0, 0, 0, False, 0),
    (1023, 4095, 7, 3, True, 0xFFFFF),
    (300, 10, 5, EN_IN_FRAME, False, 0x12345),
])
def test_erspan2_matches_scapy(sid: int, vlan: int, cos: int, en: int, t: bool,
                               index: int) -> None:
    ours = ErspanII(sid, vlan, cos, en, t, index).build(INNER)
    theirs = bytes(ERSPAN_II(vlan=vlan, cos=cos, en=en, t=int(t), session_id=sid, index=index)
                   / INNER)
    assert ours == theirs
    hdr, off = ErspanII.parse(theirs)
    assert hdr == ErspanII(sid, vlan, cos, en, t, index)
    assert theirs[off:] == INNER
    assert erspan_version(theirs) == 1


@given(st.integers(0, 1023), st.integers(0, 4095), st.integers(0, 7), st.integers(0, 3),
       st.booleans(), st.integers(0, 2**20 - 1), st.integers(0, 4095))
def test_erspan2_round_trip(sid: int, vlan: int, cos: int, en: int, t: bool, index: int,
                            res: int) -> None:
    h = ErspanII(sid, vlan, cos, en, t, index, res)
    assert ErspanII.parse(h.pack()) == (h, 8)


def test_erspan2_errors() -> None:
    with pytest.raises(PacketError, match="session_id"):
        ErspanII(1024)
    with pytest.raises(PacketError, match="index"):
        ErspanII(1, index=1 << 20)
    with pytest.raises(PacketError, match="expected 1"):
        ErspanII.parse(ErspanIII(1).pack())
    with pytest.raises(PacketError, match="truncated"):
        ErspanII.parse(b"\x10\x00\x00")


# ---- ERSPAN Type III ---------------------------------------------------------------------

def test_erspan3_matches_scapy() -> None:
    h = ErspanIII(session_id=301, vlan=10, cos=5, bso=0, truncated=True, timestamp=123456,
                  sgt=0xBEEF, p=True, ft=0, hw_id=33, direction=DIR_EGRESS, granularity=2)
    theirs = bytes(ERSPAN_III(vlan=10, cos=5, bso=0, t=1, session_id=301, timestamp=123456,
                              sgt_other=0xBEEF, p=1, ft=0, hw=33, d=1, gra=2, o=0) / INNER)
    assert h.build(INNER) == theirs
    parsed, off = ErspanIII.parse(theirs)
    assert parsed == h
    assert theirs[off:] == INNER


def test_erspan3_platform_matches_scapy() -> None:
    plat = ErspanPlatform.switch_port_seconds(1000, 0xABCD, 1_700_000_000)
    h = ErspanIII(session_id=5, timestamp=999, granularity=GRA_IEEE1588, platform=plat)
    theirs = bytes(ERSPAN_III(session_id=5, timestamp=999, p=1, gra=2, o=1)
                   / ERSPAN_PlatformSpecific(platf_id=5, info1=(1000 << 16) | 0xABCD,
                                             info2=1_700_000_000) / INNER)
    assert h.build(INNER) == theirs
    parsed, off = ErspanIII.parse(theirs)
    assert parsed == h
    assert off == 20
    assert parsed.platform is not None
    assert (parsed.platform.switch_id, parsed.platform.port_index, parsed.platform.seconds) == (
        1000, 0xABCD, 1_700_000_000)
    p3 = ErspanPlatform.port_upper_timestamp(0x3FFF, 7)
    assert (p3.port_index, p3.low, p3.seconds, p3.switch_id) == (0x3FFF, 7, None, None)


@given(st.integers(0, 1023), st.integers(0, 4095), st.integers(0, 7), st.integers(0, 3),
       st.booleans(), st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF), st.booleans(),
       st.integers(0, 31), st.integers(0, 63), st.integers(0, 1), st.integers(0, 3),
       st.none() | st.tuples(st.integers(0, 63), st.integers(0, 2**58 - 1)))
def test_erspan3_round_trip(sid: int, vlan: int, cos: int, bso: int, t: bool, ts: int,
                            sgt: int, p: bool, ft: int, hw: int, d: int, gra: int,
                            plat: tuple[int, int] | None) -> None:
    h = ErspanIII(sid, vlan, cos, bso, t, ts, sgt, p, ft, hw, d, gra,
                  None if plat is None else ErspanPlatform(*plat))
    raw = h.pack()
    assert len(raw) == h.header_len
    assert ErspanIII.parse(raw) == (h, len(raw))
    # and scapy reads the same fields
    s = ERSPAN_III(raw + INNER)
    assert (s.session_id, s.vlan, s.cos, s.bso, s.t, s.timestamp, s.hw, s.d, s.gra, s.o) == (
        sid, vlan, cos, bso, int(t), ts, hw, d, gra, int(plat is not None))


def test_erspan3_errors() -> None:
    with pytest.raises(PacketError, match="hw_id"):
        ErspanIII(1, hw_id=64)
    with pytest.raises(PacketError, match="expected 2"):
        ErspanIII.parse(ErspanII(1).pack() + b"\0" * 8)
    with pytest.raises(PacketError, match="truncated"):
        ErspanIII.parse(ErspanIII(1, platform=ErspanPlatform(5)).pack()[:15])
    with pytest.raises(PacketError):
        ErspanPlatform(64)


def test_full_stack_parses_like_scapy() -> None:
    """A GRE + ERSPAN III stack from scapy, decoded field by field."""
    pkt = bytes(ScapyGRE(seqnum_present=1, sequence_number=42, proto=GRE_PROTO_ERSPAN3)
                / ERSPAN_III(session_id=7, hw=3, d=1, p=1, timestamp=5) / INNER)
    gre, off = GRE.parse(pkt)
    assert (gre.protocol, gre.seq) == (GRE_PROTO_ERSPAN3, 42)
    e3, off = ErspanIII.parse(pkt, off)
    assert (e3.session_id, e3.hw_id, e3.direction, e3.timestamp) == (7, 3, 1, 5)
    assert pkt[off:] == INNER
    pkt2 = bytes(ScapyGRE(seqnum_present=1, sequence_number=1, proto=GRE_PROTO_ERSPAN2)
                 / ERSPAN_II(session_id=9) / INNER)
    gre, off = GRE.parse(pkt2)
    e2, off = ErspanII.parse(pkt2, off)
    assert e2.session_id == 9 and pkt2[off:] == INNER
