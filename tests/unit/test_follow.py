"""Follow TCP stream: tshark's ``-z follow,tcp,FMT,N`` is the oracle on scapy-made captures."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from scapy.contrib.erspan import ERSPAN_III
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, Ether
from scapy.packet import Packet, Padding, Raw
from scapy.utils import wrpcap

from tests.helpers.netns import require_tools
from vspan.analysis.follow import FollowError, follow, list_streams, parse_flow, render
from vspan.capture.collector import Collector
from vspan.capture.pcapng import CaptureReader, PcapngWriter

C4, S4 = "10.0.0.1", "10.0.0.2"
C6, S6 = "2001:db8::1", "2001:db8::2"


# offline file analysis and packet codecs: no switch, engine or port (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent


def seg(src: str, dst: str, sport: int, dport: int, flags: str, seq: int, ack: int,
        data: bytes = b"") -> Packet:
    l3 = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / l3 / TCP(
        sport=sport, dport=dport, flags=flags, seq=seq % 2**32, ack=ack % 2**32)
    return pkt / Raw(data) if data else pkt


def conversation(c: str, s: str, cport: int = 40000, sport: int = 80, cisn: int = 1000,
                 sisn: int = 5000) -> list[Packet]:
    """Handshake, request in two segments, response with reordering and retransmits, close."""
    req1, req2 = b"GET /index.html HTTP/1.1\r\n", b"Host: example\r\n\r\n"
    r1, r2, r3 = b"HTTP/1.1 200 OK\r\n", b"Content-Length: 40\r\n\r\n", bytes(range(40))
    c1, s1 = cisn + 1, sisn + 1
    return [
        seg(c, s, cport, sport, "S", cisn, 0),
        seg(s, c, sport, cport, "SA", sisn, c1),
        seg(c, s, cport, sport, "A", c1, s1),
        seg(c, s, cport, sport, "PA", c1, s1, req1),
        seg(c, s, cport, sport, "PA", c1 + len(req1), s1, req2),
        seg(c, s, cport, sport, "PA", c1 + len(req1), s1, req2),  # retransmit
        seg(s, c, sport, cport, "PA", s1 + len(r1), c1 + 43, r2),  # out of order
        seg(s, c, sport, cport, "PA", s1, c1 + 43, r1),
        seg(s, c, sport, cport, "PA", s1 + len(r1) + len(r2), c1 + 43, r3),
        seg(s, c, sport, cport, "PA", s1 + len(r1) - 4, c1 + 43, r1[-4:] + r2[:6]),  # overlap
        seg(c, s, cport, sport, "PA", c1 + 43, s1 + 79, b"bye\n"),
        seg(c, s, cport, sport, "FA", c1 + 47, s1 + 79),
        seg(s, c, sport, cport, "FA", s1 + 79, c1 + 48),
    ]


def write(path: Path, pkts: Sequence[Packet]) -> Path:
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i / 100
    wrpcap(str(path), pkts)
    return path


def tshark_follow(path: Path, fmt: str, index: int) -> str:
    proc = subprocess.run(["tshark", "-r", str(path), "-q", "-z", f"follow,tcp,{fmt},{index}"],
                          capture_output=True, check=True)
    return proc.stdout.decode()  # no newline translation: "\r\n" in the data stays


def ours(path: Path, fmt: str, index: int) -> str:
    return render(follow(CaptureReader(str(path)), index=index), fmt)


SCENARIOS = {
    "ipv4": lambda: conversation(C4, S4),
    "ipv6": lambda: conversation(C6, S6, 50000, 443),
    "seq-wrap": lambda: conversation(C4, S4, cisn=2**32 - 20, sisn=2**32 - 3),
    "two-streams": lambda: conversation(C4, S4) + conversation(C4, S4, 40001, 8080, 7, 9),
    "interleaved": lambda: [p for pair in zip(conversation(C4, S4), conversation(
        "10.0.0.3", S4, 1, 22), strict=True) for p in pair],
    "port-reuse": lambda: conversation(C4, S4) + conversation(C4, S4, cisn=900_000),
    "no-handshake": lambda: conversation(C4, S4)[3:],
    "padded": lambda: [seg(C4, S4, 1, 2, "PA", 10, 20, b"hi") / Padding(b"\0" * 20),
                       seg(S4, C4, 2, 1, "PA", 20, 12, b"ok") / Padding(b"\0" * 20)],
}


@pytest.mark.parametrize("fmt", ["ascii", "hex", "raw"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_same_as_tshark(tmp_path: Path, name: str, fmt: str) -> None:
    require_tools("tshark")
    path = write(tmp_path / f"{name}.pcap", SCENARIOS[name]())
    streams = len(list_streams(CaptureReader(str(path))))
    assert streams >= 1
    for index in range(streams):
        assert ours(path, fmt, index) == tshark_follow(path, fmt, index), (name, index)


def test_stream_numbering(tmp_path: Path) -> None:
    path = write(tmp_path / "r.pcap", SCENARIOS["port-reuse"]() + SCENARIOS["interleaved"]())
    rows = list_streams(CaptureReader(str(path)))
    assert [r.index for r in rows] == [0, 1, 2, 3]
    assert [str(r.a) for r in rows] == ["10.0.0.1:40000", "10.0.0.1:40000", "10.0.0.1:40000",
                                        "10.0.0.3:1"]
    assert rows[0].bytes_a == 26 + 17 * 2 + 4


def test_follow_by_flow(tmp_path: Path) -> None:
    path = write(tmp_path / "f.pcap", SCENARIOS["two-streams"]() + SCENARIOS["ipv6"]())
    s = follow(CaptureReader(str(path)), flow=parse_flow("10.0.0.2:8080-10.0.0.1:40001"))
    assert s.index == 1
    s6 = follow(CaptureReader(str(path)), flow=parse_flow("[2001:db8::2]:443-[2001:db8::1]:50000"))
    assert s6.index == 2
    assert b"".join(c.data for c in s6.chunks if c.node == 0).startswith(b"GET /index.html")
    assert s6.bytes_sent(1) == 79 and s6.missing(0) == 0
    with pytest.raises(FollowError, match=r"no TCP stream between 10\.9\.9\.9:1 and"):
        follow(CaptureReader(str(path)), flow=parse_flow("10.9.9.9:1-10.0.0.1:2"))
    with pytest.raises(FollowError, match="no stream 7"):
        follow(CaptureReader(str(path)), index=7)


@pytest.mark.parametrize("spec,msg", [
    ("10.0.0.1:80", "not a flow"), ("10.0.0.1-10.0.0.2:1", "not ADDR:PORT"),
    ("host:1-10.0.0.2:1", "not an IP address"), ("10.0.0.1:70000-10.0.0.2:1", "not ADDR:PORT"),
])
def test_bad_flow_specs(spec: str, msg: str) -> None:
    with pytest.raises(FollowError, match=msg):
        parse_flow(spec)


def test_capture_loss_is_marked(tmp_path: Path) -> None:
    pkts = [
        seg(C4, S4, 1, 80, "S", 100, 0),
        seg(S4, C4, 80, 1, "SA", 500, 101),
        seg(C4, S4, 1, 80, "PA", 101, 501, b"one "),
        seg(C4, S4, 1, 80, "PA", 110, 501, b"three "),  # "two  " (5 bytes) missed by capture
        seg(S4, C4, 80, 1, "A", 501, 116),  # the server acknowledged it: capture loss
        seg(S4, C4, 80, 1, "PA", 501, 116, b"ack"),
        seg(C4, S4, 1, 80, "PA", 130, 504, b"tail"),  # never filled: reported at the end
    ]
    path = write(tmp_path / "loss.pcap", pkts)
    s = follow(CaptureReader(str(path)), index=0)
    assert [(c.node, c.data, c.missing) for c in s.chunks] == [
        (0, b"one ", 0), (0, b"", 5), (0, b"three ", 0), (1, b"ack", 0), (0, b"", 14),
        (0, b"tail", 0)]
    assert s.missing(0) == 19
    text = render(s, "ascii")
    assert "[5 bytes missing in capture file]\n6\nthree " in text
    assert "\t3\nack\n[14 bytes missing in capture file]\n4\ntail\n" in text


def test_follow_through_erspan_and_collector(tmp_path: Path) -> None:
    """A stream mirrored over ERSPAN III: the raw capture and the collector output agree."""
    require_tools("tshark")
    plain = conversation(C4, S4)
    wrapped = []
    for i, p in enumerate(plain):
        w = (Ether() / IP(src="198.51.100.7", dst="198.51.100.1")
             / GRE(seqnum_present=1, sequence_number=i, proto=0x22EB)
             / ERSPAN_III(session_id=3, p=1, d=0) / p)
        wrapped.append(w)
    raw = write(tmp_path / "raw.pcap", wrapped)
    ref = write(tmp_path / "plain.pcap", plain)
    expect = tshark_follow(ref, "ascii", 0)
    assert ours(raw, "ascii", 0) == expect
    out = tmp_path / "collected.pcapng"
    with PcapngWriter(str(out)) as wr:
        c = Collector(wr)
        for rec in CaptureReader(str(raw)):
            c.handle_ip(rec.data[14:], rec.ts_ns)
    assert ours(out, "ascii", 0) == expect
    assert tshark_follow(out, "ascii", 0) == expect


def test_cli(tmp_path: Path) -> None:
    path = write(tmp_path / "c.pcap", SCENARIOS["two-streams"]())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vspan.cli.main", "follow", *args],
                              capture_output=True, text=True)

    proc = run(str(path), "--flow", "10.0.0.1:40001-10.0.0.2:8080", "--format", "raw")
    assert proc.returncode == 0
    assert "Filter: tcp.stream eq 1" in proc.stdout
    assert b"GET /index.html".hex() in proc.stdout
    proc = run(str(path), "--list")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2
    proc = run(str(path), "--index", "5")
    assert proc.returncode == 1 and "no stream 5" in proc.stderr
    proc = run(str(tmp_path / "nope.pcap"))
    assert proc.returncode == 1 and "cannot read" in proc.stderr
