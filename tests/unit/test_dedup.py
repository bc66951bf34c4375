"""vspan dedup against editcap -d / -D / -w on scapy-built captures: copies interleaved beyond
editcap's window, copies that differ from hop to hop, real retransmissions that must stay."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import rdpcap, wrpcap

from tests.helpers.conversations import (
    MS,
    T0,
    TcpConv,
    scapy_packets,
    udp,
    write_pcapng,
)
from tests.helpers.netns import require_tools
from vspan.analysis.dedup import DedupError, DedupOptions, dedup_file
from vspan.analysis.normalize import NormalizeError, Normalizer, parse_ignore
from vspan.capture.pcapng import (
    CaptureFormatError,
    CaptureReader,
    CaptureScanner,
    Interface,
    PcapngWriter,
    RawBlock,
    RawPacket,
    drop_verdict,
)

# offline file analysis and packet codecs: no switch, engine or port (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent


US = 1000


def editcap(args: list[str], src: Path, dst: Path) -> int:
    """Run editcap; return the number of packets it kept."""
    subprocess.run(["editcap", *args, str(src), str(dst)], check=True, capture_output=True)
    return len(rdpcap(str(dst)))


def vspan_dedup(src: Path, dst: Path, **kw: object) -> int:
    stats = dedup_file(str(src), str(dst), DedupOptions(**kw))  # type: ignore[arg-type]
    assert stats.packets_out == len(rdpcap(str(dst)))
    return stats.packets_out


def two_points_in_blocks(path: Path, n: int = 12) -> list[bytes]:
    """``n`` distinct frames seen at ``member``, then (flushed later) the same at ``team``
    5 us after each original: every copy is ``n`` packets away from its original."""
    frames = [udp(("10.0.0.1", 1000 + i), ("10.0.0.2", 53), b"q" * (i + 1), ip_id=i)
              for i in range(n)]
    pkts = [(T0 + i * US, "member", f) for i, f in enumerate(frames)]
    pkts += [(T0 + i * US + 5 * US, "team", f) for i, f in enumerate(frames)]
    write_pcapng(path, pkts, interfaces=("member", "team"))
    return frames


# ---- where editcap cannot ----------------------------------------------------------------

def test_copies_beyond_editcaps_packet_window(tmp_path: Path) -> None:
    require_tools("editcap")
    src = tmp_path / "blocks.pcapng"
    frames = two_points_in_blocks(src)
    assert editcap(["-d"], src, tmp_path / "e.pcapng") == 24  # 4 previous frames: none found
    assert vspan_dedup(src, tmp_path / "v.pcapng") == 12
    kept = CaptureReader(str(tmp_path / "v.pcapng"))
    assert [(r.interface_name, r.data) for r in kept] == [("member", f) for f in frames]
    # editcap can, given a window as long as the interleaving (or a time window)
    assert editcap(["-D", "13"], src, tmp_path / "e13.pcapng") == 12
    assert editcap(["-w", "0.001"], src, tmp_path / "ew.pcapng") == 12


def test_keep_point_prefers_the_named_interface(tmp_path: Path) -> None:
    src = tmp_path / "blocks.pcapng"
    frames = two_points_in_blocks(src)
    stats = dedup_file(str(src), str(tmp_path / "v.pcapng"), DedupOptions(keep_points=("team",)))
    kept = list(CaptureReader(str(tmp_path / "v.pcapng")))
    assert [(r.interface_name, r.data) for r in kept] == [("team", f) for f in frames]
    assert stats.removed_by == {("member", "identical"): 12}
    assert stats.replaced_by_keep_point == 12 and stats.preference_missed == 0
    # by interface id as well
    dedup_file(str(src), str(tmp_path / "w.pcapng"), DedupOptions(keep_points=("1",)))
    assert {r.interface_name for r in CaptureReader(str(tmp_path / "w.pcapng"))} == {"team"}


def test_real_retransmissions_stay_where_hash_dedup_removes_them(tmp_path: Path) -> None:
    require_tools("editcap")
    v4 = TcpConv()
    v4.handshake()
    v4.data("c", 200)
    v4.t += 300 * MS
    v4.emit("c", "PA", b"x" * 200, seq=v4.c.seq - 200)  # same seq and payload, new IP ID
    v6 = TcpConv(("2001:db8::1", 40001), ("2001:db8::2", 80), t0=v4.t + MS)
    v6.handshake()
    seg = v6.data("c", 200)
    v6.frames.append((v6.t + 300 * MS, seg))  # IPv6 has no IP ID: identical bytes, later
    frames = v4.frames + v6.frames
    src = tmp_path / "rexmit.pcap"
    wrpcap(str(src), scapy_packets(frames))
    n = len(frames)
    # editcap -d compares whole frames of the last 4: the identical IPv6 one goes
    assert editcap(["-d"], src, tmp_path / "d.pcap") == n - 1
    # a hash that skips the Ethernet and IPv4 headers (-I 34) drops the IPv4 one too
    assert editcap(["-D", "5", "-I", "34"], src, tmp_path / "i.pcap") == n - 2
    # a long time window drops the IPv6 one
    assert editcap(["-w", "1"], src, tmp_path / "w.pcap") == n - 1
    # vspan keeps both, whatever is ignored: another IP ID, or later than the window
    assert vspan_dedup(src, tmp_path / "v.pcapng") == n
    assert vspan_dedup(src, tmp_path / "va.pcapng", ignore=parse_ignore("all")) == n


def test_retransmission_mixed_with_copies(tmp_path: Path) -> None:
    """Every frame also seen at a second point; the retransmission's copy goes, it stays."""
    c = TcpConv()
    c.handshake()
    c.data("c", 100)
    c.t += 210 * MS
    c.emit("c", "PA", b"x" * 100, seq=c.c.seq - 100)
    c.close()
    pkts = [(ts + k * 7 * US, point, f) for ts, f in c.frames
            for k, point in enumerate(("vm", "uplink"))]
    src = tmp_path / "mix.pcapng"
    write_pcapng(src, pkts, interfaces=("vm", "uplink"))
    out = tmp_path / "out.pcapng"
    stats = dedup_file(str(src), str(out), DedupOptions())
    assert [r.data for r in CaptureReader(str(out))] == [f for _, f in c.frames]
    assert stats.removed_by == {("uplink", "identical"): len(c.frames)}


# ---- copies that differ from hop to hop --------------------------------------------------

def _tagged(frame: bytes, vlan: int) -> bytes:
    e = Ether(frame)
    return bytes(Ether(src=e.src, dst=e.dst) / Dot1Q(vlan=vlan) / e.payload)


def _routed(frame: bytes) -> bytes:
    e = Ether(frame)
    ip = e[IP].copy()
    ip.ttl -= 1
    del ip.chksum
    return bytes(Ether(src="02:aa:00:00:00:01", dst="02:bb:00:00:00:02") / ip)


def test_vlan_pushed_copies_need_ignore_vlan(tmp_path: Path) -> None:
    require_tools("editcap")
    c = TcpConv()
    c.handshake()
    c.data("c", 500)
    c.close()
    pkts = []
    for ts, f in c.frames:
        pkts += [(ts, "access", f), (ts + 3 * US, "trunk", _tagged(f, 10))]
    src = tmp_path / "vlan.pcapng"
    write_pcapng(src, pkts, interfaces=("access", "trunk"))
    n = len(c.frames)
    for args in (["-d"], ["-D", "100"], ["-w", "0.001"], ["-D", "5", "-I", "14"]):
        assert editcap(args, src, tmp_path / "e.pcapng") == 2 * n, args  # bytes differ
    assert vspan_dedup(src, tmp_path / "v.pcapng") == 2 * n
    out = tmp_path / "vi.pcapng"
    stats = dedup_file(str(src), str(out), DedupOptions(ignore=parse_ignore("vlan")))
    assert stats.packets_out == n and stats.removed_by == {("trunk", "ignoring vlan"): n}
    assert [r.data for r in CaptureReader(str(out))] == [f for _, f in c.frames]


def test_routed_copies_need_ignore_mac_and_ttl(tmp_path: Path) -> None:
    c = TcpConv()
    c.handshake()
    pkts = []
    for ts, f in c.frames:
        pkts += [(ts, "in", f), (ts + 40 * US, "out", _routed(f))]
    src = tmp_path / "routed.pcapng"
    write_pcapng(src, pkts, interfaces=("in", "out"))
    assert vspan_dedup(src, tmp_path / "a.pcapng", ignore=parse_ignore("mac")) == 6
    assert vspan_dedup(src, tmp_path / "b.pcapng", ignore=parse_ignore("ttl")) == 6
    stats = dedup_file(str(src), str(tmp_path / "c.pcapng"),
                       DedupOptions(ignore=parse_ignore("mac,ttl")))
    assert stats.packets_out == 3
    assert stats.removed_by == {("out", "ignoring mac+ttl"): 3}


def test_offloaded_checksums_and_padding() -> None:
    f = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / Raw(b"a"))
    partial = bytearray(f)
    partial[14 + 20 + 6:14 + 20 + 8] = b"\x12\x34"  # a partial checksum (tx offload)
    padded = f + b"\0" * (60 - len(f))
    norm = Normalizer(parse_ignore("checksums"))
    assert norm.key(1, f) == norm.key(1, bytes(partial)) != norm.key(1, padded)
    pad = Normalizer(parse_ignore("padding"))
    assert pad.key(1, f) == pad.key(1, padded) != pad.key(1, bytes(partial))
    assert Normalizer().key(1, f) == f
    assert Normalizer(parse_ignore("all")).key(1, f) != Normalizer().key(1, f)
    with pytest.raises(NormalizeError, match="cannot ignore 'ipid'"):
        parse_ignore("vlan,ipid")


def test_raw_ip_capture_matches_ethernet_when_l2_ignored(tmp_path: Path) -> None:
    f = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", id=5) / UDP() / Raw(b"x" * 20))
    norm = Normalizer(parse_ignore("mac,vlan"))
    assert norm.key(1, f) == norm.key(101, f[14:])  # LINKTYPE_RAW
    assert Normalizer().key(1, f) != Normalizer().key(101, f[14:])


# ---- packet ids ----------------------------------------------------------------------------

def test_packet_ids_decide(tmp_path: Path) -> None:
    a = udp(("10.0.0.1", 1), ("10.0.0.2", 2), b"one")
    b = udp(("10.0.0.1", 1), ("10.0.0.2", 2), b"two", ip_id=2)
    pkts = [(T0, "nic", a), (T0 + US, "switch", _tagged(a, 5)),  # same id, other bytes: copy
            (T0 + 2 * US, "nic", b), (T0 + 3 * US, "switch", b)]  # same bytes, other ids
    src = tmp_path / "pid.pcapng"
    write_pcapng(src, pkts, interfaces=("nic", "switch"), packet_ids={0: 7, 1: 7, 2: 8, 3: 9})
    out = tmp_path / "o.pcapng"
    stats = dedup_file(str(src), str(out), DedupOptions())
    assert stats.removed_by == {("switch", "packet-id"): 1}
    assert [r.packet_id for r in CaptureReader(str(out))] == [7, 8, 9]


# ---- what is kept --------------------------------------------------------------------------

def test_blocks_options_and_comments_are_kept(tmp_path: Path) -> None:
    require_tools("tshark")
    src = tmp_path / "rich.pcapng"
    f1 = udp(("10.0.0.1", 1), ("10.0.0.2", 2), b"first")
    f2 = udp(("10.0.0.1", 1), ("10.0.0.2", 2), b"second", ip_id=2)
    with PcapngWriter(str(src), comment="field capture") as w:
        a = w.add_interface(Interface("web1", description="port web1", os="Linux"))
        b = w.add_interface(Interface("web2", description="port web2"))
        w.write_packet(a, f1, T0, comments=["vspan: dropped: acl-deny, rule r1, at web1"],
                       flags=1, dropcount=3, verdicts=[drop_verdict(True)], queue=2)
        w.write_packet(b, f1, T0 + US, comments=["the copy"])
        w.write_statistics(a, T0 + 2 * US, ifrecv=10, ifdrop=1)
        w.write_packet(b, f2, T0 + 3 * US, orig_len=900)
    out = tmp_path / "out.pcapng"
    stats = dedup_file(str(src), str(out), DedupOptions())
    assert (stats.packets_out, stats.removed, stats.blocks) == (2, 1, 3)  # 2 IDBs + 1 ISB
    blocks_in = [i.block for i in CaptureScanner(str(src), blocks=True)]
    blocks_out = [i.block for i in CaptureScanner(str(out), blocks=True)]
    assert blocks_out[1:] == [blocks_in[1], blocks_in[2], blocks_in[3], blocks_in[5],
                              blocks_in[6]]  # byte for byte, the copy (index 4) left out
    r = CaptureReader(str(out))
    recs = list(r)
    assert r.section_comments == ["field capture", "vspan dedup: window 5 ms"]
    assert recs[0].comments == ("vspan: dropped: acl-deny, rule r1, at web1",)
    assert (recs[0].dropcount, recs[0].flags, recs[1].orig_len) == (3, 1, 900)
    out_json = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.comment",
                               "-e", "frame.interface_description", "-e", "frame.len"],
                              capture_output=True, text=True, check=True).stdout
    assert out_json.splitlines() == ["vspan: dropped: acl-deny, rule r1, at web1\tport web1\t"
                                     f"{len(f1)}", "\tport web2\t900"]


def test_annotate_names_the_removed_copies(tmp_path: Path) -> None:
    src = tmp_path / "blocks.pcapng"
    two_points_in_blocks(src, n=2)
    out = tmp_path / "o.pcapng"
    dedup_file(str(src), str(out), DedupOptions(annotate=True))
    recs = list(CaptureReader(str(out)))
    assert recs[0].comments == ("vspan dedup: copy at team removed (identical, +5.000 us)",)


def test_classic_pcap_in_pcapng_out(tmp_path: Path) -> None:
    require_tools("capinfos")
    f = udp(("10.0.0.1", 1), ("10.0.0.2", 2), b"x")
    g = udp(("10.0.0.1", 1), ("10.0.0.2", 2), b"y", ip_id=9)
    src = tmp_path / "in.pcap"
    wrpcap(str(src), scapy_packets([(T0, f), (T0 + US, f), (T0 + 2 * US, g),
                                    (T0 + 10 * MS, f)]))
    out = tmp_path / "out.pcapng"
    stats = dedup_file(str(src), str(out), DedupOptions())
    assert stats.removed_by == {("#0", "repeated"): 1} and stats.input_format == "pcap"
    recs = list(CaptureReader(str(out)))
    assert [r.data for r in recs] == [f, g, f]  # the one 10 ms later is not a copy
    assert [r.ts_ns - T0 for r in recs] == [0, 2 * US, 10 * MS]
    info = subprocess.run(["capinfos", "-t", "-c", str(out)], capture_output=True, text=True,
                          check=True).stdout
    assert "pcapng" in info and "3" in info


def _be_pcapng(frames: list[tuple[int, bytes]]) -> bytes:
    """A big-endian pcapng (microsecond timestamps) written by hand."""
    def block(btype: int, body: bytes) -> bytes:
        return struct.pack(">II", btype, 12 + len(body)) + body + struct.pack(">I", 12 + len(body))
    out = block(0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack(">HHI", 1, 0, 65535))
    for ts, f in frames:
        us = ts // 1000
        body = struct.pack(">IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(f), len(f))
        out += block(6, body + f + b"\0" * ((-len(f)) & 3))
    return out


def test_big_endian_pcapng_and_two_sections(tmp_path: Path) -> None:
    require_tools("tshark")
    f = udp(("10.0.0.1", 1), ("10.0.0.2", 2), b"abc")
    sec = _be_pcapng([(T0, f), (T0 + 2 * US, f), (T0 + 9 * MS, f)])
    src = tmp_path / "be.pcapng"
    src.write_bytes(sec + sec)  # two sections: copies are never matched across them
    out = tmp_path / "o.pcapng"
    stats = dedup_file(str(src), str(out), DedupOptions())
    assert (stats.sections, stats.packets_in, stats.packets_out) == (2, 6, 4)
    times = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.time_epoch"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert [round((float(t) - T0 / 1e9) * 1000, 3) for t in times] == [0.0, 9.0, 0.0, 9.0]
    scan = CaptureScanner(str(out), blocks=True)
    kinds = [type(i).__name__ for i in scan]
    assert kinds.count("RawPacket") == 4 and scan.byte_order == ">"


# ---- bounded memory, bad input -----------------------------------------------------------

def test_byte_cap_forces_writes_and_says_when_copies_may_remain(tmp_path: Path) -> None:
    src = tmp_path / "blocks.pcapng"
    two_points_in_blocks(src, n=50)  # copies 50 packets apart
    # a buffer too small for 50 packets, an index still big enough
    stats = dedup_file(str(src), str(tmp_path / "o.pcapng"),
                       DedupOptions(max_held_bytes=40_000, keep_points=("team",)))
    assert stats.packets_out == 50 and stats.forced > 0 and stats.forgotten == 0
    assert stats.preference_missed > 0  # the cap cost some preferences, never a copy
    # too small for the index as well: some copies stay, and the report says so
    proc = subprocess.run([sys.executable, "-m", "vspan.cli.main", "dedup", str(src), "-w",
                           str(tmp_path / "p.pcapng"), "--max-buffer", "1", "--json"],
                          capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout)["forgotten"] == 0  # 1 MB is plenty here
    stats = dedup_file(str(src), str(tmp_path / "q.pcapng"), DedupOptions(max_held_bytes=8000))
    assert stats.forgotten > 0 and stats.packets_out == 100 - stats.removed > 50


def test_untimed_simple_packet_blocks_are_kept(tmp_path: Path) -> None:
    f = udp(("10.0.0.1", 1), ("10.0.0.2", 2), b"abc")
    w = PcapngWriter(str(tmp_path / "spb.pcapng"))
    w.add_interface(Interface("x"))
    w.close()
    spb = struct.pack("<II", 3, 16 + len(f) + ((-len(f)) & 3)) + struct.pack("<I", len(f))
    spb += f + b"\0" * ((-len(f)) & 3) + struct.pack("<I", 16 + len(f) + ((-len(f)) & 3))
    with open(tmp_path / "spb.pcapng", "ab") as fh:
        fh.write(spb * 2)
    stats = dedup_file(str(tmp_path / "spb.pcapng"), str(tmp_path / "o.pcapng"), DedupOptions())
    assert (stats.untimed, stats.packets_out) == (2, 2)
    assert [r.data for r in CaptureReader(str(tmp_path / "o.pcapng"))] == [f, f]


def test_bad_input_leaves_nothing_and_says_why(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vspan.cli.main", "dedup", *args],
                              capture_output=True, text=True)

    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture file at all")
    proc = run(str(junk), "-w", str(tmp_path / "o.pcapng"))
    assert proc.returncode == 1 and "not a pcap" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pcap"]  # no output, no temp
    src = tmp_path / "in.pcapng"
    two_points_in_blocks(src, n=3)
    before = src.read_bytes()
    proc = run(str(src), "-w", str(src))
    assert proc.returncode == 2 and "overwrite the input" in proc.stderr
    assert src.read_bytes() == before
    for bad in (["--window", "soon"], ["--ignore", "everything"], ["--max-buffer", "0"]):
        proc = run(str(src), "-w", str(tmp_path / "o.pcapng"), *bad)
        assert proc.returncode == 2, bad
    # a block with a lying length in the middle: an error, nothing written
    data = bytearray(before)
    data[-4:] = struct.pack("<I", 12345)
    (tmp_path / "bad.pcapng").write_bytes(bytes(data))
    proc = run(str(tmp_path / "bad.pcapng"), "-w", str(tmp_path / "o2.pcapng"))
    assert proc.returncode == 1 and "disagree" in proc.stderr
    assert not (tmp_path / "o2.pcapng").exists()
    # a cut last block: what came before is kept, with a warning
    (tmp_path / "cut.pcapng").write_bytes(before[:-10])
    proc = run(str(tmp_path / "cut.pcapng"), "-w", str(tmp_path / "o3.pcapng"))
    assert proc.returncode == 0 and "last block was cut" in proc.stderr
    with pytest.raises(DedupError):
        dedup_file(str(src), str(tmp_path / "x"), DedupOptions(window_ns=-1))


def test_cli_report_and_json(tmp_path: Path) -> None:
    src = tmp_path / "blocks.pcapng"
    two_points_in_blocks(src)
    proc = subprocess.run([sys.executable, "-m", "vspan.cli.main", "dedup", str(src), "-w",
                           str(tmp_path / "o.pcapng"), "--keep-point", "team", "--keep-point",
                           "nosuch", "--window", "2ms"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "24 packets read, 12 written" in err and "12 copies removed" in err
    assert "member" in err and "identical" in err and "no interface named nosuch" in err
    assert "\r" not in err  # no progress bar when stderr is not a terminal
    proc = subprocess.run([sys.executable, "-m", "vspan.cli.main", "dedup", str(src), "-w",
                           str(tmp_path / "p.pcapng"), "--json"], capture_output=True, text=True)
    rep = json.loads(proc.stdout)
    assert rep["removed_by"] == [{"interface": "team", "reason": "identical", "packets": 12}]
    assert rep["packets_by_interface"] == {"member": 12, "team": 12}


def test_scanner_yields_blocks_in_order(tmp_path: Path) -> None:
    src = tmp_path / "blocks.pcapng"
    two_points_in_blocks(src, n=1)
    items = list(CaptureScanner(str(src), blocks=True))
    assert [type(i) for i in items] == [RawBlock, RawBlock, RawBlock, RawPacket, RawPacket]
    assert isinstance(items[3], RawPacket) and items[3].ts_ns == T0


def test_ipv6_hop_limit_is_ttl() -> None:
    a = bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=64) / TCP())
    b = bytes(Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=63) / TCP())
    assert Normalizer(parse_ignore("ttl")).key(1, a) == Normalizer(parse_ignore("ttl")).key(1, b)
    assert Normalizer().key(1, a) != Normalizer().key(1, b)


def test_hostile_block_lengths_neither_crash_nor_allocate(tmp_path: Path) -> None:
    """A block claiming gigabytes (at the start or in the middle) is a clear error or a cut
    file, never a huge read; every prefix of a file is read or refused cleanly."""
    src = tmp_path / "in.pcapng"
    two_points_in_blocks(src, n=3)
    good = src.read_bytes()
    scan = CaptureScanner(str(src), blocks=True)
    starts = [0]
    for _ in scan:
        starts.append(scan.position)
    # the first interface block, the first packet block, the last packet block
    for where in (starts[1], starts[3], starts[-2]):
        for length in (0xFFFFFFF0, 0x3FFFFF0):
            bad = bytearray(good)
            struct.pack_into("<I", bad, where + 4, length)
            (tmp_path / "h.pcapng").write_bytes(bytes(bad))
            try:
                stats = dedup_file(str(tmp_path / "h.pcapng"), str(tmp_path / "o.pcapng"),
                                   DedupOptions())
            except CaptureFormatError as err:
                assert "plausible" in str(err) or "disagree" in str(err)
            else:
                assert stats.truncated
    for cut in range(0, len(good), 7):
        (tmp_path / "p.pcapng").write_bytes(good[:cut])
        try:
            list(CaptureScanner(str(tmp_path / "p.pcapng"), blocks=True))
        except CaptureFormatError:
            pass
