"""pcapng writer/reader: tshark and capinfos read our files; we read other tools' files."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import EDecimal, wrpcap

from tests.helpers.netns import require_tools
from vspan.capture.pcapng import (
    DIR_INBOUND,
    DIR_OUTBOUND,
    LINKTYPE_ETHERNET,
    RX_BROADCAST,
    RX_UNICAST,
    TC_ACT_SHOT,
    CaptureFormatError,
    CaptureReader,
    Interface,
    PcapngWriter,
    RotatingPcapngWriter,
    drop_comment,
    drop_verdict,
    epb_flags,
    reception_type,
    rotated_name,
    verdict_hardware,
)

TS0 = 1_763_700_000_123_456_789


def frame(i: int, size: int = 60) -> bytes:
    pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(
        src="192.0.2.1", dst="192.0.2.2") / UDP(sport=1000 + i, dport=53)
    raw = bytes(pkt)
    return raw + bytes(max(size - len(raw), 0))


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    args = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|", "-E", "occurrence=a",
            "-E", "aggregator=;"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines()]


def capinfos(path: Path) -> dict[str, str]:
    proc = subprocess.run(["capinfos", "-M", "-T", "-r", "-c", "-t", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    cols = proc.stdout.strip().split("\t")
    return {"file": cols[0], "type": cols[1], "packets": cols[2]}


def write_sample(path: Path) -> None:
    with PcapngWriter(str(path), comment="vspan unit test") as w:
        a = w.add_interface(Interface("web1", "port web1 (veth vp4a)"))
        b = w.add_interface(Interface("db1", "port db1", snaplen=100))
        w.write_packet(a, frame(0), TS0, comments=["first"],
                       flags=epb_flags(DIR_INBOUND, RX_UNICAST))
        w.write_packet(b, frame(1, 300), TS0 + 1_000, flags=epb_flags(DIR_OUTBOUND))
        w.write_packet(a, frame(2), TS0 + 2_000,
                       comments=[drop_comment("acl-deny", "web-in-3", "web1"), "second note"],
                       flags=epb_flags(DIR_INBOUND), verdicts=[drop_verdict(True)],
                       dropcount=3)
        w.write_packet(a, frame(3), TS0 + 3_000, verdicts=[verdict_hardware(b"\x01\x02")])


def test_tshark_and_capinfos_read_written_file(tmp_path: Path) -> None:
    require_tools("tshark", "capinfos")
    path = tmp_path / "out.pcapng"
    write_sample(path)
    info = capinfos(path)
    assert info["packets"] == "4"
    rows = tshark_fields(path, "frame.interface_name", "frame.interface_description",
                         "frame.comment", "frame.packet_flags_direction",
                         "frame.packet_flags_reception_type", "frame.drop_count",
                         "frame.verdict.ebpf_tc", "frame.time_epoch", "frame.len",
                         "frame.cap_len", "udp.srcport", "frame.verdict.hw")
    assert [r[0] for r in rows] == ["web1", "db1", "web1", "web1"]
    assert rows[0][1] == "port web1 (veth vp4a)"
    assert rows[0][2] == "first"
    assert rows[2][2] == "vspan: dropped: acl-deny, rule web-in-3, at web1;second note"
    assert [int(r[3], 16) if r[3] else None for r in rows] == [1, 2, 1, None]
    assert int(rows[0][4], 16) == 1
    assert rows[2][5] == "3"
    assert rows[2][6] == str(TC_ACT_SHOT)
    assert rows[3][11].replace(" ", "").replace(":", "") == "0102"
    assert rows[0][7] == "1763700000.123456789"
    assert rows[1][7] == "1763700000.123457789"
    assert (rows[1][8], rows[1][9]) == ("300", "100")  # snaplen of db1 cut the stored copy
    assert [r[10] for r in rows] == ["1000", "1001", "1002", "1003"]


def test_tshark_json_shows_comments_and_direction(tmp_path: Path) -> None:
    require_tools("tshark")
    path = tmp_path / "out.pcapng"
    write_sample(path)
    out = subprocess.run(["tshark", "-r", str(path), "-T", "json", "--no-duplicate-keys"],
                         capture_output=True,
                         text=True, check=True).stdout
    pkts = json.loads(out)
    layers = pkts[2]["_source"]["layers"]
    text = json.dumps(layers)
    assert "acl-deny" in text and "web-in-3" in text
    flags = layers["frame"]["frame.packet_flags_tree"]
    assert flags["frame.packet_flags_direction"] == "0x00000001"


def test_reader_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.pcapng"
    write_sample(path)
    r = CaptureReader(str(path))
    recs = list(r)
    assert r.format == "pcapng" and not r.truncated
    assert r.section_comments == ["vspan unit test"]
    assert [x.interface_name for x in recs] == ["web1", "db1", "web1", "web1"]
    assert recs[0].ts_ns == TS0 and recs[0].data == frame(0)
    assert recs[0].direction == DIR_INBOUND and recs[1].direction == DIR_OUTBOUND
    assert recs[1].orig_len == 300 and len(recs[1].data) == 100
    assert recs[2].comments == (drop_comment("acl-deny", "web-in-3", "web1"), "second note")
    assert recs[2].dropcount == 3 and recs[2].verdicts == (drop_verdict(True),)
    assert recs[3].flags is None
    assert r.interfaces[1].description == "port db1"


def test_reader_stops_at_cut_last_block(tmp_path: Path) -> None:
    path = tmp_path / "out.pcapng"
    write_sample(path)
    data = path.read_bytes()
    for cut in (1, 10, 50):
        (tmp_path / "cut.pcapng").write_bytes(data[:-cut])
        r = CaptureReader(str(tmp_path / "cut.pcapng"))
        assert len(list(r)) == 3
        assert r.truncated


def test_reader_rejects_garbage(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"hello world, not a capture")
    with pytest.raises(CaptureFormatError, match="not a pcap"):
        list(CaptureReader(str(tmp_path / "x")))
    bad = bytearray((tmp_path / "x").read_bytes())
    write_sample(tmp_path / "y")
    bad = bytearray((tmp_path / "y").read_bytes())
    struct.pack_into("<I", bad, len(bad) - 4, 12345)  # trailing length disagrees
    (tmp_path / "z").write_bytes(bytes(bad))
    with pytest.raises(CaptureFormatError, match="disagree"):
        list(CaptureReader(str(tmp_path / "z")))


@pytest.mark.parametrize("nano", [False, True])
def test_reads_classic_pcap(tmp_path: Path, nano: bool) -> None:
    pkts = [Ether(frame(i)) for i in range(3)]
    for i, p in enumerate(pkts):
        p.time = EDecimal(f"{1_700_000_000 + i}.{'123456789' if nano else '123456'}")
    path = tmp_path / "x.pcap"
    wrpcap(str(path), pkts, nano=nano)
    recs = list(CaptureReader(str(path)))
    assert [r.data for r in recs] == [frame(i) for i in range(3)]
    assert recs[0].linktype == LINKTYPE_ETHERNET
    frac = 123456789 if nano else 123456000
    assert recs[1].ts_ns == (1_700_000_001 * 10**9 + frac)


def test_reads_big_endian_pcap(tmp_path: Path) -> None:
    data = frame(0)
    hdr = struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    rec = struct.pack(">IIII", 100, 5, len(data), len(data)) + data
    (tmp_path / "be.pcap").write_bytes(hdr + rec)
    (r,) = list(CaptureReader(str(tmp_path / "be.pcap")))
    assert r.data == data and r.ts_ns == 100 * 10**9 + 5000


def test_reads_pcapng_from_editcap(tmp_path: Path) -> None:
    require_tools("editcap")
    pkts = [Ether(frame(i)) for i in range(5)]
    wrpcap(str(tmp_path / "a.pcap"), pkts)
    subprocess.run(["editcap", "-F", "pcapng", str(tmp_path / "a.pcap"),
                    str(tmp_path / "a.pcapng")], check=True, capture_output=True)
    recs = list(CaptureReader(str(tmp_path / "a.pcapng")))
    assert [r.data for r in recs] == [frame(i) for i in range(5)]


def test_rotation_by_size(tmp_path: Path) -> None:
    require_tools("capinfos")
    base = tmp_path / "rot.pcapng"
    w = RotatingPcapngWriter(str(base), max_bytes=2000)
    a = w.add_interface(Interface("a"))
    b = w.add_interface(Interface("b"))
    for i in range(40):
        w.write_packet(a if i % 2 else b, frame(i, 100), TS0 + i)
    w.close()
    assert len(w.files) > 3
    assert w.files[:3] == [str(base), f"{base}1", f"{base}2"]
    total = 0
    seen: list[int] = []
    for f in w.files:
        assert Path(f).stat().st_size <= 2000
        assert int(capinfos(Path(f))["packets"]) >= 1
        recs = list(CaptureReader(f))
        total += len(recs)
        for r in recs:
            assert r.interface_name == ("a" if r.interface_id == 0 else "b")
            seen.append(int.from_bytes(r.data[34:36], "big") - 1000)
    assert total == 40 and seen == list(range(40))


def test_rotation_by_time_with_strftime(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    pattern = str(tmp_path / "cap-%Y%m%d-%H%M%S.pcapng")
    w = RotatingPcapngWriter(pattern, max_seconds=10, clock=lambda: now[0])
    i = w.add_interface(Interface("a"))
    for step in range(5):
        w.write_packet(i, frame(step), TS0)
        now[0] += 6
    w.close()
    assert len(w.files) == 3  # 0..10 s, 12..22 s, 24.. s
    assert len(set(w.files)) == 3
    assert all(Path(f).exists() for f in w.files)
    assert sum(len(list(CaptureReader(f))) for f in w.files) == 5


def test_rotation_by_time_without_pattern_never_overwrites(tmp_path: Path) -> None:
    now = [0.0]
    w = RotatingPcapngWriter(str(tmp_path / "t.pcapng"), max_seconds=1, clock=lambda: now[0])
    i = w.add_interface(Interface("a"))
    for step in range(3):
        w.write_packet(i, frame(step), TS0)
        now[0] += 2
    w.close()
    assert len(set(w.files)) == 3


def test_helpers() -> None:
    assert rotated_name("x.pcapng", index=0, period_start=None) == "x.pcapng"
    assert rotated_name("x.pcapng", index=2, period_start=None) == "x.pcapng2"
    assert reception_type(b"\xff" * 6 + b"\0" * 8) == RX_BROADCAST
    assert epb_flags(DIR_OUTBOUND, RX_UNICAST) == 2 | 4
    with pytest.raises(ValueError):
        epb_flags(4)
