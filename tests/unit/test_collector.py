"""ERSPAN collector without sockets: scapy-made ERSPAN II/III and GRE-TEB in, pcapng out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import EDecimal, wrpcap

from tests.helpers.netns import require_tools
from vspan.capture.collector import (
    KIND_ERSPAN1,
    KIND_ERSPAN2,
    KIND_ERSPAN3,
    KIND_GRE,
    Collector,
    decapsulate_ip,
    erspan3_time,
    ip_payload_of,
)
from vspan.capture.filter import compile_filter
from vspan.capture.pcapng import (
    DIR_INBOUND,
    DIR_OUTBOUND,
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
    CaptureReader,
    PcapngWriter,
)
from vspan.packet.errors import PacketError
from vspan.packet.erspan import ErspanIII, ErspanPlatform

# offline file analysis and packet codecs: no switch, engine or port (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent


NOW = 1_763_700_000_000_000_000  # receive time used in the tests (ns)


def inner(i: int, vlan: int | None = None, size: int = 0) -> bytes:
    l2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan, prio=5)
    pkt = l2 / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=1000 + i, dport=80)
    return bytes(pkt) + b"p" * size


def outer(src: str = "198.51.100.7") -> Packet:
    return IP(src=src, dst="198.51.100.1")


def e2(seq: int, sid: int, frame: bytes, **kw: Any) -> Packet:
    return (outer() / GRE(seqnum_present=1, sequence_number=seq, proto=0x88BE)
            / ERSPAN_II(session_id=sid, **kw) / Raw(frame))


def e3(seq: int, sid: int, frame: bytes, **kw: Any) -> Packet:
    return (outer() / GRE(seqnum_present=1, sequence_number=seq, proto=0x22EB)
            / ERSPAN_III(session_id=sid, p=1, **kw) / Raw(frame))


# ---- decapsulation -----------------------------------------------------------------------

def test_decap_erspan2() -> None:
    f = inner(1, vlan=10)
    d = decapsulate_ip(bytes(e2(5, 300, f, vlan=10, cos=5, en=3, t=1, index=77)), NOW)
    assert d is not None
    assert (d.sender, d.kind, d.session_id, d.seq, d.truncated, d.direction, d.ts_ns) == (
        "198.51.100.7", KIND_ERSPAN2, 300, 5, True, None, None)
    assert d.frame == f


def test_decap_erspan3_direction_and_time() -> None:
    f = inner(2)
    ts = (NOW // 100_000 - 30) & 0xFFFFFFFF  # 3 ms before the receive time, 100 us units
    d = decapsulate_ip(bytes(e3(9, 7, f, d=1, hw=4, timestamp=ts, gra=0)), NOW)
    assert d is not None
    assert (d.kind, d.session_id, d.seq, d.direction) == (KIND_ERSPAN3, 7, 9, 1)
    assert d.ts_ns == NOW - 3_000_000
    assert d.frame == f


def test_decap_erspan3_platform_seconds() -> None:
    f = inner(3)
    secs, ns = 1_600_000_000, 123_456_789
    pkt = (outer() / GRE(seqnum_present=1, sequence_number=0, proto=0x22EB)
           / ERSPAN_III(session_id=1, p=1, gra=2, o=1, timestamp=ns)
           / ERSPAN_PlatformSpecific(platf_id=5, info1=3, info2=secs) / Raw(f))
    d = decapsulate_ip(bytes(pkt), NOW)
    assert d is not None and d.ts_ns == secs * 10**9 + ns and d.frame == f


def test_erspan3_time_wraps_and_granularities() -> None:
    # 100 us counter that wrapped just after the reference
    ref = (1 << 32) * 100_000 * 3 - 50 * 100_000
    h = ErspanIII(1, timestamp=10, granularity=0)
    assert erspan3_time(h, ref) == ((1 << 32) * 3 + 10) * 100_000
    h = ErspanIII(1, timestamp=(NOW // 100) & 0xFFFFFFFF, granularity=1)
    assert erspan3_time(h, NOW + 5_000) == NOW
    # IEEE 1588 without seconds: nearest second to the receive time
    h = ErspanIII(1, timestamp=999_999_000, granularity=2)
    assert erspan3_time(h, NOW + 1000) == NOW - 1000
    assert erspan3_time(ErspanIII(1, timestamp=2_000_000_000, granularity=2), NOW) is None
    assert erspan3_time(ErspanIII(1, granularity=3), NOW) is None
    up = ErspanIII(1, timestamp=5, granularity=0,
                   platform=ErspanPlatform.port_upper_timestamp(1, 2))
    assert erspan3_time(up, 0) == ((2 << 32) | 5) * 100_000


def test_decap_gre_teb_type1_and_others() -> None:
    f = inner(4, vlan=20)
    d = decapsulate_ip(bytes(outer() / GRE(proto=0x6558, key_present=1, key=42) / Raw(f)), NOW)
    assert d is not None and (d.kind, d.session_id, d.seq, d.frame) == (KIND_GRE, 42, None, f)
    d = decapsulate_ip(bytes(outer() / GRE(proto=0x88BE) / Raw(f)), NOW)
    assert d is not None and (d.kind, d.session_id, d.frame) == (KIND_ERSPAN1, None, f)
    assert decapsulate_ip(bytes(outer() / GRE(proto=0x0800) / IP()), NOW) is None
    assert decapsulate_ip(bytes(outer() / UDP()), NOW) is None
    v6 = IPv6(src="2001:db8::7", dst="2001:db8::1") / GRE(proto=0x6558) / Raw(f)
    d = decapsulate_ip(bytes(v6), NOW)
    assert d is not None and d.sender == "2001:db8::7" and d.frame == f


def test_decap_ignores_ethernet_padding_of_outer_packet() -> None:
    f = inner(5)
    raw = bytes(e2(1, 1, f)) + b"\0" * 10  # trailing bytes beyond IP total length
    d = decapsulate_ip(raw, NOW)
    assert d is not None and d.frame == f


@pytest.mark.parametrize("raw,why", [
    (b"", "empty"),
    (b"\x45" + b"\0" * 5, "truncated"),
    (bytes(outer() / GRE(seqnum_present=1, proto=0x88BE) / Raw(b"\x10\x00")), "truncated"),
    (bytes(outer() / GRE(seqnum_present=1, proto=0x88BE) / Raw(b"\x20" + b"\0" * 20)),
     "expected 1"),
    (bytes(outer(), ) + b"\x00\x07\x65\x58", "version 7"),
    (b"\x75" + b"\0" * 30, "IP version 7"),
])
def test_decap_malformed(raw: bytes, why: str) -> None:
    pkt = raw
    if why == "version 7":
        pkt = bytes(IP(src="198.51.100.7", dst="198.51.100.1", proto=47) / Raw(b"\x00\x07\x65\x58"))
    with pytest.raises(PacketError, match=why):
        decapsulate_ip(pkt, NOW)


def test_ip_payload_of_link_types() -> None:
    ip = bytes(outer() / UDP())
    assert ip_payload_of(LINKTYPE_ETHERNET, bytes(Ether() / Dot1Q(vlan=3) / outer() / UDP())) == ip
    assert ip_payload_of(LINKTYPE_RAW, ip) == ip
    sll = b"\0" * 14 + b"\x08\x00" + ip
    assert ip_payload_of(LINKTYPE_LINUX_SLL, sll) == ip
    assert ip_payload_of(LINKTYPE_ETHERNET, bytes(Ether(type=0x88CC) / Raw(b"x" * 50))) is None


# ---- the collector -----------------------------------------------------------------------

def _stream() -> list[tuple[Packet, int]]:
    """(packet, receive time) as a mirror sender would produce them, with loss and cuts."""
    out: list[tuple[Packet, int]] = []
    t = NOW
    for seq in (0, 1, 2, 5, 6):  # 3 and 4 lost on the way
        out.append((e2(seq, 300, inner(seq, vlan=10), vlan=10, cos=5, en=3), t))
        t += 1000
    ts = (NOW // 100_000) & 0xFFFFFFFF
    for seq in range(4):
        out.append((e3(seq, 301, inner(10 + seq), d=seq % 2, timestamp=ts, hw=1), t))
        t += 1000
    out.append((e3(4, 301, inner(14, size=100)[:80], d=0, t=1, timestamp=ts), t))
    out.append((outer("198.51.100.8") / GRE(proto=0x6558) / Raw(inner(20)), t + 1))
    out.append((e2(3, 300, inner(3, vlan=10)), t + 2))  # late arrival
    out.append((outer() / GRE(proto=0x0800) / IP(), t + 3))  # not a mirror
    return out


def _collect(path: Path, **kw: object) -> Collector:
    with PcapngWriter(str(path)) as w:
        c = Collector(w, **kw)  # type: ignore[arg-type]
        for pkt, t in _stream():
            c.handle_ip(bytes(pkt), t)
    return c


def test_collector_records(tmp_path: Path) -> None:
    path = tmp_path / "c.pcapng"
    c = _collect(path)
    st = c.stats
    assert (st.received, st.written, st.ignored, st.lost, st.truncated, st.out_of_order) == (
        13, 12, 1, 2, 1, 1)
    assert c.interface_names == [
        "erspan2-300@198.51.100.7", "erspan3-301-ingress@198.51.100.7",
        "erspan3-301-egress@198.51.100.7", "gre@198.51.100.8"]
    recs = list(CaptureReader(str(path)))
    assert len(recs) == 12
    assert [r.data for r in recs[:5]] == [inner(s, vlan=10) for s in (0, 1, 2, 5, 6)]
    gap = recs[3]
    assert gap.dropcount == 2
    assert gap.comments == ("sequence gap: 2 packets lost before this one "
                            "(expected seq 3, got 5)",)
    assert recs[0].ts_ns == NOW  # Type II: receive time
    e3s = recs[5:10]
    assert [r.direction for r in e3s] == [DIR_INBOUND, DIR_OUTBOUND, DIR_INBOUND,
                                          DIR_OUTBOUND, DIR_INBOUND]
    assert all(r.ts_ns == NOW // 100_000 * 100_000 for r in e3s)  # original time
    assert e3s[-1].comments == ("truncated by the sender (ERSPAN T bit): original length "
                                "unknown",)
    assert len(e3s[-1].data) == 80
    assert recs[10].interface_name == "gre@198.51.100.8" and recs[10].flags is None
    assert recs[11].comments == ("out of order: seq 3 arrived after seq 6",)


def test_collector_session_and_filter(tmp_path: Path) -> None:
    c = _collect(tmp_path / "s.pcapng", sessions=frozenset({301}))
    assert c.stats.written == 5 and c.stats.lost == 0
    c = _collect(tmp_path / "f.pcapng", packet_filter=compile_filter("vlan 10 and port 1001"))
    assert c.stats.written == 1
    assert c.stats.lost == 2  # sequence state is kept for filtered frames too


def test_collector_output_read_by_tshark(tmp_path: Path) -> None:
    require_tools("tshark", "capinfos")
    path = tmp_path / "c.pcapng"
    _collect(path)
    proc = subprocess.run(["capinfos", "-c", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0 and "12" in proc.stdout
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|", "-e",
         "frame.interface_name", "-e", "frame.comment", "-e", "frame.packet_flags_direction",
         "-e", "frame.drop_count", "-e", "vlan.id", "-e", "tcp.srcport"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [line.split("|") for line in out]
    assert rows[3][1].startswith("sequence gap: 2 packets lost") and rows[3][3] == "2"
    assert rows[0][4] == "10" and rows[0][5] == "1000"
    assert int(rows[6][2], 16) == DIR_OUTBOUND
    assert "T bit" in rows[9][1]


def test_collect_cli_reads_raw_capture(tmp_path: Path) -> None:
    pkts = []
    for pkt, t in _stream():
        p = Ether() / pkt
        p.time = EDecimal(t) / EDecimal(10**9)
        pkts.append(p)
    wrpcap(str(tmp_path / "raw.pcap"), pkts)
    out = tmp_path / "out.pcapng"
    proc = subprocess.run([sys.executable, "-m", "vspan.cli.main", "collect", "-r",
                           str(tmp_path / "raw.pcap"), "-w", str(out), "--session", "300"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "6 frames written to 1 file" in proc.stderr
    assert "lost on the way 2" in proc.stderr
    recs = list(CaptureReader(str(out)))
    assert [r.data for r in recs] == [inner(s, vlan=10) for s in (0, 1, 2, 5, 6, 3)]
    assert recs[0].ts_ns == NOW


def test_collect_cli_errors(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vspan.cli.main", "collect", *args],
                              capture_output=True, text=True)
    proc = run("-r", str(tmp_path / "missing.pcap"), "-w", str(tmp_path / "o.pcapng"))
    assert proc.returncode == 1 and "cannot read" in proc.stderr
    proc = run("-r", "x", "-w", str(tmp_path / "o.pcapng"), "--filter", "port 99999")
    assert proc.returncode == 2 and "out of range" in proc.stderr
    proc = run("-r", "x", "-w", str(tmp_path / "o.pcapng"), "-C", "0")
    assert proc.returncode == 2
    proc = run("-w", str(tmp_path / "o.pcapng"))
    assert proc.returncode == 2 and "--listen" in proc.stderr


# ---- frames the sender cut (ERSPAN T bit): issue 7 item 6 --------------------------------

def _cut_frames() -> list[tuple[bytes, int]]:
    """Whole frames (IPv4 behind one or two VLAN tags, IPv6, and one whose headers are shorter
    than the cut) and the wire length their own headers give."""
    v4 = bytes(Ether() / Dot1Q(vlan=10) / IP(src="192.0.2.1", dst="192.0.2.2")
               / TCP(sport=1, dport=2) / Raw(b"a" * 1460))
    qinq = bytes(Ether() / Dot1Q(vlan=10, type=0x8100) / Dot1Q(vlan=20)
                 / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1000, dport=2000)
                 / Raw(b"b" * 1000))
    v6 = bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP() / Raw(b"c" * 900))
    return [(v4, 18 + 1500), (qinq, 22 + 20 + 8 + 1000), (v6, 14 + 40 + 20 + 900)]


def _collect_cut(path: Path) -> Collector:
    ts = (NOW // 100_000) & 0xFFFFFFFF
    with PcapngWriter(str(path)) as w:
        c = Collector(w)
        for i, (frame, _) in enumerate(_cut_frames()):
            c.handle_ip(bytes(e2(i, 400, frame[:200], t=1)), NOW + i)
            c.handle_ip(bytes(e3(i, 401, frame[:160], t=1, timestamp=ts)), NOW + i)
        # headers shorter than what arrived: the original length stays unknown
        c.handle_ip(bytes(e3(3, 401, inner(14, size=100)[:80], t=1, timestamp=ts)), NOW + 9)
    return c


def test_collector_writes_cut_frames_with_their_real_length(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcapng"
    c = _collect_cut(path)
    assert c.stats.truncated == 7
    recs = list(CaptureReader(str(path)))
    want = [n for _, n in _cut_frames() for _ in (0, 1)]
    assert [r.orig_len for r in recs[:6]] == want
    assert [len(r.data) for r in recs[:6]] == [200, 160] * 3
    for r, n in zip(recs[:6], want, strict=True):
        assert r.comments == (f"truncated by the sender (ERSPAN T bit): original length {n} "
                              "from the frame's IP header",)
    assert recs[6].orig_len == 80
    assert recs[6].comments == ("truncated by the sender (ERSPAN T bit): original length "
                                "unknown",)


def test_collector_cut_frames_have_no_tshark_length_errors(tmp_path: Path) -> None:
    require_tools("tshark")
    path = tmp_path / "cut.pcapng"
    _collect_cut(path)
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|", "-e", "frame.len",
         "-e", "frame.cap_len", "-e", "_ws.expert.message"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [line.split("|") for line in out]
    want = [n for _, n in _cut_frames() for _ in (0, 1)]
    assert [int(r[0]) for r in rows[:6]] == want
    assert [int(r[1]) for r in rows[:6]] == [200, 160] * 3
    assert not [r for r in rows if "exceeds" in r[2] or "Malformed" in r[2]], rows
    expert = subprocess.run(["tshark", "-r", str(path), "-q", "-z", "expert"],
                            capture_output=True, text=True, check=True).stdout
    assert "exceeds packet length" not in expert and "exceeds framing length" not in expert
    assert "Errors" not in expert, expert
