"""ERSPAN/GRE encapsulation, RSPAN tags and the loop guard; scapy decodes what we build."""

from __future__ import annotations

import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Dot1Q, Ether

from vspan.mirror.encap import (
    EncapType,
    ErspanConfig,
    ErspanEncapsulator,
    Granularity,
    MirrorConfigError,
    RawGreSender,
    _route_v4,
    frame_vlan,
    rspan_copy,
    rspan_strip,
)
from vspan.packet.errors import PacketError

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
UNTAGGED = bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="192.0.2.1", dst="192.0.2.2")
                 / TCP(sport=1000, dport=80) / (b"x" * 100))
TAGGED = bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=42, prio=6)
               / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=5, dport=6) / b"hello")
TS = 1_763_700_000_123_456_789  # ns since the epoch


def decode(payload: bytes) -> GRE:
    return GRE(payload)


def test_erspan2_tagged_frame() -> None:
    enc = ErspanEncapsulator(ErspanConfig("198.51.100.1", EncapType.ERSPAN2, session_id=77,
                                          index=0xABCDE))
    for seq in range(3):
        g = decode(enc.encapsulate(TAGGED))
        assert (g.proto, g.seqnum_present, g.sequence_number, g.key_present) == (
            0x88BE, 1, seq, 0)
        e = g[ERSPAN_II]
        assert (e.ver, e.vlan, e.cos, e.en, e.t, e.session_id, e.index) == (
            1, 42, 6, 3, 0, 77, 0xABCDE)
        assert bytes(e.payload) == TAGGED
    assert enc.next_seq == 3


def test_erspan2_untagged_with_access_vlan_and_truncation() -> None:
    enc = ErspanEncapsulator(ErspanConfig("198.51.100.1", EncapType.ERSPAN2, session_id=1))
    e = decode(enc.encapsulate(UNTAGGED, vlan=20, cos=3, truncated=True))[ERSPAN_II]
    assert (e.vlan, e.cos, e.en, e.t) == (20, 3, 0, 1)
    e = decode(enc.encapsulate(UNTAGGED, max_frame=64))[ERSPAN_II]
    assert e.t == 1
    assert bytes(e.payload) == UNTAGGED[:64]
    e = decode(enc.encapsulate(UNTAGGED, max_frame=len(UNTAGGED)))[ERSPAN_II]
    assert e.t == 0 and bytes(e.payload) == UNTAGGED


@pytest.mark.parametrize("gran,gra,expect", [
    (Granularity.US100, 0, (TS // 100_000) & 0xFFFFFFFF),
    (Granularity.NS100, 1, (TS // 100) & 0xFFFFFFFF),
    (Granularity.NS, 2, TS % 1_000_000_000),
])
def test_erspan3_fields(gran: Granularity, gra: int, expect: int) -> None:
    cfg = ErspanConfig("198.51.100.1", EncapType.ERSPAN3, session_id=1023, hw_id=63,
                       granularity=gran)
    enc = ErspanEncapsulator(cfg, clock=lambda: TS)
    g = decode(enc.encapsulate(TAGGED, egress=True))
    e = g[ERSPAN_III]
    assert g.proto == 0x22EB and g.sequence_number == 0
    assert (e.ver, e.vlan, e.cos, e.bso, e.t, e.session_id) == (2, 42, 6, 0, 0, 1023)
    assert (e.timestamp, e.p, e.ft, e.hw, e.d, e.gra, e.o) == (expect, 1, 0, 63, 1, gra, 0)
    assert bytes(e.payload) == TAGGED
    e = decode(enc.encapsulate(UNTAGGED, egress=False, ts_ns=TS + 10**9))[ERSPAN_III]
    assert (e.d, e.vlan, e.cos) == (0, 0, 0)
    assert g.sequence_number + 1 == decode(enc.encapsulate(UNTAGGED)).sequence_number - 1


def test_erspan3_platform_subheader() -> None:
    cfg = ErspanConfig("198.51.100.1", EncapType.ERSPAN3, session_id=3, index=0xBEEF,
                       switch_id=513, granularity=Granularity.NS, platform_subheader=True)
    enc = ErspanEncapsulator(cfg)
    assert enc.overhead == 28
    g = decode(enc.encapsulate(UNTAGGED, ts_ns=TS))
    e = g[ERSPAN_III]
    assert e.o == 1
    p = g[ERSPAN_PlatformSpecific]
    assert (p.platf_id, p.info1, p.info2) == (5, (513 << 16) | 0xBEEF, TS // 10**9)
    assert bytes(p.payload) == UNTAGGED


def test_plain_gre() -> None:
    enc = ErspanEncapsulator(ErspanConfig("198.51.100.1", EncapType.GRE, gre_key=99),
                             start_seq=2**32 - 1)
    g = decode(enc.encapsulate(TAGGED))
    assert (g.proto, g.key_present, g.key, g.seqnum_present, g.sequence_number) == (
        0x6558, 1, 99, 1, 2**32 - 1)
    assert bytes(g.payload) == TAGGED
    assert decode(enc.encapsulate(TAGGED)).sequence_number == 0  # wraps
    nos = ErspanEncapsulator(ErspanConfig("198.51.100.1", EncapType.GRE, gre_sequence=False))
    assert nos.encapsulate(TAGGED) == b"\x00\x00\x65\x58" + TAGGED
    assert nos.overhead == 4


def test_cut_sets_t_bit() -> None:
    enc = ErspanEncapsulator(ErspanConfig("198.51.100.1", EncapType.ERSPAN3))
    full = enc.encapsulate(UNTAGGED)
    cut = enc.cut(full, 100)
    assert len(cut) == 100
    assert decode(cut)[ERSPAN_III].t == 1
    assert enc.cut(full, 10_000) == full


@pytest.mark.parametrize("kw,msg", [
    ({"remote_ip": "nope"}, "remote_ip"),
    ({"session_id": 1024}, "session_id"),
    ({"hw_id": 64}, "hw_id"),
    ({"dscp": 64}, "dscp"),
    ({"ttl": 0}, "ttl"),
    ({"mtu": 100}, "mtu"),
    ({"type": "vxlan"}, "vxlan"),
    ({"granularity": "1s"}, "1s"),
    ({"gre_key": 1}, "gre_key"),
    ({"source_ip": "2001:db8::1"}, "same IP version"),
    ({"type": "erspan3", "platform_subheader": True, "index": 0x10000}, "index"),
])
def test_config_errors(kw: dict[str, object], msg: str) -> None:
    args: dict[str, object] = {"remote_ip": "198.51.100.1", **kw}
    with pytest.raises(MirrorConfigError, match=msg):
        ErspanConfig(**args)  # type: ignore[arg-type]


# ---- loop guard --------------------------------------------------------------------------

def test_loop_guard_recognises_own_output() -> None:
    s = RawGreSender(ErspanConfig("198.51.100.1", EncapType.ERSPAN2))
    own = Ether() / IP(src="192.0.2.9", dst="198.51.100.1") / GRE(proto=0x88BE) / (b"x" * 30)
    assert s.is_own_output(bytes(own))
    assert s.is_own_output(bytes(Ether() / Dot1Q(vlan=5) / own[IP]))
    assert s.is_own_output(bytes(Ether() / Dot1Q(vlan=5) / Dot1Q(vlan=6) / own[IP]))
    assert not s.is_own_output(bytes(Ether() / IP(dst="198.51.100.2", proto=47) / (b"x" * 30)))
    assert not s.is_own_output(bytes(Ether() / IP(dst="198.51.100.1") / UDP() / (b"x" * 30)))
    assert not s.is_own_output(b"\x00" * 10)
    s._local = bytes([192, 0, 2, 8])  # once connected, the source address must match too
    assert not s.is_own_output(bytes(own))
    s6 = RawGreSender(ErspanConfig("2001:db8::1", EncapType.ERSPAN3))
    assert s6.is_own_output(bytes(Ether() / IPv6(dst="2001:db8::1", nh=47) / (b"x" * 30)))
    assert not s6.is_own_output(bytes(Ether() / IPv6(dst="2001:db8::1", nh=17) / (b"x" * 30)))


def test_send_before_open_counts_error() -> None:
    s = RawGreSender(ErspanConfig("198.51.100.1", EncapType.ERSPAN2))
    assert s.send(UNTAGGED) is False
    assert s.counters.errors == 1 and "ENOTCONN" in s.counters.last_error
    assert s.counters.as_dict()["sent"] == 0


def test_route_parse() -> None:
    text = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
        "eth1\t0064A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    )
    import ipaddress
    assert _route_v4(ipaddress.IPv4Address("192.168.100.7"), text) == "eth1"
    assert _route_v4(ipaddress.IPv4Address("8.8.8.8"), text) == "eth0"


# ---- RSPAN -------------------------------------------------------------------------------

def test_rspan_untagged() -> None:
    out = Ether(rspan_copy(UNTAGGED, 900, keep_original_tag=False))
    assert out[Dot1Q].vlan == 900 and out[Dot1Q].prio == 0
    assert bytes(out[Dot1Q].payload) == UNTAGGED[14:]
    assert rspan_strip(bytes(out), 900) == UNTAGGED
    assert rspan_strip(bytes(out), 901) is None


def test_rspan_tagged_keep_and_replace() -> None:
    kept = Ether(rspan_copy(TAGGED, 900, keep_original_tag=True))
    assert kept[Dot1Q].vlan == 900 and kept[Dot1Q].prio == 6
    assert kept[Dot1Q].payload[Dot1Q].vlan == 42
    assert rspan_strip(bytes(kept), 900) == TAGGED
    replaced = Ether(rspan_copy(TAGGED, 900, keep_original_tag=False, pcp=1))
    assert replaced[Dot1Q].vlan == 900 and replaced[Dot1Q].prio == 1
    assert not isinstance(replaced[Dot1Q].payload, Dot1Q)
    assert len(bytes(replaced)) == len(TAGGED)
    assert frame_vlan(bytes(replaced)) == (900, 1)


def test_rspan_keep_original_tag_with_the_frames_vlan() -> None:
    """An untagged frame of VLAN 10 (access port) keeps VLAN 10 as its inner tag; a
    priority tag gets VID 10; a real tag stays; without keep the VLAN is not added."""
    kept = rspan_copy(UNTAGGED, 900, keep_original_tag=True, original_vlan=10)
    e = Ether(kept)
    assert e[Dot1Q].vlan == 900 and e[Dot1Q].payload[Dot1Q].vlan == 10
    assert bytes(e[Dot1Q].payload[Dot1Q].payload) == UNTAGGED[14:]
    assert rspan_strip(kept, 900) == UNTAGGED[:12] + b"\x81\x00\x00\x0a" + UNTAGGED[12:]
    prio = bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=0, prio=5) / IP() / b"p")
    e = Ether(rspan_copy(prio, 900, keep_original_tag=True, original_vlan=10))
    assert (e[Dot1Q].vlan, e[Dot1Q].prio) == (900, 5)
    assert (e[Dot1Q].payload[Dot1Q].vlan, e[Dot1Q].payload[Dot1Q].prio) == (10, 5)
    assert rspan_copy(TAGGED, 900, True, original_vlan=42) == rspan_copy(TAGGED, 900, True)
    assert rspan_copy(UNTAGGED, 900, False, original_vlan=10) == rspan_copy(UNTAGGED, 900, False)
    with pytest.raises(PacketError, match="original_vlan"):
        rspan_copy(UNTAGGED, 900, True, original_vlan=4095)


def test_erspan_priority_tagged_frame_carries_its_vlan() -> None:
    prio = bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=0, prio=5) / IP() / b"p")
    enc = ErspanEncapsulator(ErspanConfig("198.51.100.1", EncapType.ERSPAN2, session_id=1))
    e = decode(enc.encapsulate(prio, vlan=10))[ERSPAN_II]
    assert (e.vlan, e.cos, e.en) == (10, 5, 3)
    e = decode(enc.encapsulate(TAGGED, vlan=10))[ERSPAN_II]  # a real tag wins
    assert (e.vlan, e.cos, e.en) == (42, 6, 3)


def test_rspan_errors() -> None:
    with pytest.raises(PacketError, match="VLAN id"):
        rspan_copy(UNTAGGED, 4095, False)
    with pytest.raises(PacketError, match="too short"):
        rspan_copy(b"\x00" * 5, 10, False)
    with pytest.raises(PacketError, match="priority"):
        rspan_copy(UNTAGGED, 10, False, pcp=8)
