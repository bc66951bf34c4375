"""vspan flows: Zeek conn_state and history for scapy-built conversations, duplicates apart
from retransmissions, and packet/byte counts checked against tshark's conversation table."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.erspan import ERSPAN_III
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE, CookedLinux, Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from tests.helpers.conversations import (
    MS,
    T0,
    TcpConv,
    icmp_echo,
    scapy_packets,
    udp,
    write_pcapng,
)
from tests.helpers.netns import require_tools
from vspan.analysis.flows import Flow, FlowTable, analyze_file
from vspan.capture.collector import Collector
from vspan.capture.pcapng import LINKTYPE_ETHERNET, PcapngWriter

# offline file analysis and packet codecs: no switch, engine or port (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent


def flows_of(frames: list[tuple[int, bytes]], point: str = "eth0") -> list[Flow]:
    table = FlowTable()
    for ts, frame in frames:
        table.add(ts, LINKTYPE_ETHERNET, frame, len(frame), point)
    return table.finish()


def one(frames: list[tuple[int, bytes]]) -> Flow:
    (flow,) = flows_of(frames)
    return flow


# ---- each conn_state class ---------------------------------------------------------------

def s0(c: TcpConv) -> None:
    c.syn()


def s1(c: TcpConv) -> None:
    c.handshake()
    c.data("c", 100)
    c.ack("s")


def sf(c: TcpConv) -> None:
    c.handshake()
    c.data("c", 100)
    c.ack("s")
    c.data("s", 300)
    c.ack("c")
    c.close()


def rej(c: TcpConv) -> None:
    c.syn()
    c.rst("s")


def s2(c: TcpConv) -> None:
    c.handshake()
    c.fin("c")


def s3(c: TcpConv) -> None:
    c.handshake()
    c.fin("s")


def rsto(c: TcpConv) -> None:
    c.handshake()
    c.data("c", 10)
    c.rst("c")


def rstr(c: TcpConv) -> None:
    c.handshake()
    c.rst("s")


def rstos0(c: TcpConv) -> None:
    c.syn()
    c.rst("c", with_ack=False)


def rstrh(c: TcpConv) -> None:
    c.c.seq += 1  # the SYN was not captured
    c.synack()
    c.rst("s")


def sh(c: TcpConv) -> None:
    c.syn()
    c.fin("c")


def shr(c: TcpConv) -> None:
    c.c.seq += 1
    c.synack()
    c.fin("s")


def oth(c: TcpConv) -> None:
    c.c.seq += 1
    c.s.seq += 1
    c.data("c", 50)
    c.data("s", 70)


CASES: list[tuple[Callable[[TcpConv], None], str, str, list[str]]] = [
    (s0, "S0", "S", ["unidirectional", "incomplete-handshake"]),
    (s1, "S1", "ShADa", []),
    (sf, "SF", "ShADadFf", []),
    (rej, "REJ", "Sr", ["incomplete-handshake", "reset-by-responder"]),
    (s2, "S2", "ShAF", []),
    (s3, "S3", "ShAf", []),
    (rsto, "RSTO", "ShADR", ["reset-by-originator"]),
    (rstr, "RSTR", "ShAr", ["reset-by-responder"]),
    (rstos0, "RSTOS0", "SR", ["unidirectional", "incomplete-handshake", "reset-by-originator"]),
    (rstrh, "RSTRH", "^hr", ["unidirectional", "responder-only", "reset-by-responder"]),
    (sh, "SH", "SF", ["unidirectional", "incomplete-handshake"]),
    (shr, "SHR", "^hf", ["unidirectional", "responder-only"]),
    (oth, "OTH", "Dd", []),
]


@pytest.mark.parametrize(("build", "state", "history", "flags"), CASES,
                         ids=[c[1] for c in CASES])
def test_conn_state_classes(build: Callable[[TcpConv], None], state: str, history: str,
                            flags: list[str]) -> None:
    c = TcpConv()
    build(c)
    f = one(c.frames)
    assert (f.conn_state, f.history_text) == (state, history)
    assert f.flags == flags
    d = f.as_dict()
    assert (d["orig_h"], d["orig_p"], d["resp_h"], d["resp_p"]) == ("10.0.0.1", 40000,
                                                                     "10.0.0.2", 80)
    assert d["duplicates"] == 0 and d["retransmissions"] == 0


def test_sf_counts_and_bytes() -> None:
    c = TcpConv()
    sf(c)
    d = one(c.frames).as_dict()
    assert (d["orig_pkts"], d["resp_pkts"]) == (6, 4)
    assert (d["orig_bytes"], d["resp_bytes"]) == (100, 300)  # payload, from sequence numbers
    assert d["duration"] == pytest.approx(9 * MS / 1e9)


def test_sf_ip_bytes_match_frames() -> None:
    c = TcpConv()
    sf(c)
    f = one(c.frames)
    assert f.ip_bytes[0] + f.ip_bytes[1] == sum(len(fr) - 14 for _, fr in c.frames)
    assert f.frame_bytes[0] + f.frame_bytes[1] == sum(len(fr) for _, fr in c.frames)


def test_midstream_from_server_port_is_flipped() -> None:
    c = TcpConv()
    c.c.seq += 1
    c.s.seq += 1
    c.data("s", 70)  # the first packet seen comes from port 80
    c.data("c", 50)
    f = one(c.frames)
    assert (f.as_dict()["orig_p"], f.history_text, f.conn_state) == (40000, "^dD", "OTH")


def test_udp_states() -> None:
    q = udp(("10.0.0.1", 40000), ("10.0.0.9", 53), b"query")
    r = udp(("10.0.0.9", 53), ("10.0.0.1", 40000), b"answer!")
    f = one([(T0, q), (T0 + MS, r)])
    assert (f.conn_state, f.history_text, f.bytes) == ("SF", "Dd", (5, 7))
    f = one([(T0, q)])
    assert (f.conn_state, f.history_text, f.flags) == ("S0", "D", ["unidirectional"])
    f = one([(T0, r)])  # only the answer: from a server port, so the responder
    assert (f.conn_state, f.history_text) == ("SHR", "^d")
    assert f.flags == ["unidirectional", "responder-only"]
    assert (f.as_dict()["orig_p"], f.as_dict()["resp_p"]) == (40000, 53)


def test_icmp_echo_is_one_flow_and_a_lone_reply_is_turned_around() -> None:
    req = icmp_echo("10.0.0.1", "10.0.0.2")
    rep = icmp_echo("10.0.0.2", "10.0.0.1", reply=True)
    f = one([(T0, req), (T0 + MS, rep)])
    d = f.as_dict()
    assert (d["proto"], d["orig_p"], d["resp_p"], d["conn_state"]) == ("icmp", 8, 0, "OTH")
    assert (d["orig_pkts"], d["resp_pkts"], d["flags"]) == (1, 1, [])
    f = one([(T0, rep)])
    assert f.as_dict()["orig_h"] == "10.0.0.1" and f.flags == ["unidirectional",
                                                               "responder-only"]


def test_vlan_tagged_ipv6_flow() -> None:
    c = TcpConv(("2001:db8::1", 40000), ("2001:db8::2", 443), vlan=30)
    sf(c)
    f = one(c.frames)
    d = f.as_dict()
    assert (d["conn_state"], d["history"], d["vlans"]) == ("SF", "ShADadFf", [30])
    assert (d["orig_h"], d["resp_p"]) == ("2001:db8::1", 443)


# ---- duplicates are not retransmissions ---------------------------------------------------

def test_copies_at_two_points_are_duplicates_and_a_real_retransmission_is_not() -> None:
    c = TcpConv()
    c.handshake()
    seg = c.data("c", 100)
    c.ack("s")
    # the same segment again 200 ms later with a new IP ID: a real retransmission
    c.t += 200 * MS
    c.emit("c", "PA", b"x" * 100, seq=c.c.seq - 100)
    c.close()
    table = FlowTable()
    for ts, frame in c.frames:
        table.add(ts, LINKTYPE_ETHERNET, frame, len(frame), "member")
        # the team adapter sees every frame 20 us later, tagged with VLAN 10 and a new TTL
        copy = Ether(frame)
        copy = Ether(src=copy.src, dst=copy.dst) / Dot1Q(vlan=10) / copy.payload
        copy[IP].ttl -= 1
        del copy[IP].chksum
        table.add(ts + 20_000, LINKTYPE_ETHERNET, bytes(copy), len(copy), "team")
    (f,) = table.finish()
    d = f.as_dict()
    assert d["duplicates"] == len(c.frames)
    assert d["retransmissions"] == 1 and "T" in d["history"]
    assert (d["conn_state"], d["history"]) == ("SF", "ShADaTFf")
    assert d["orig_pkts"] + d["resp_pkts"] == len(c.frames)
    assert d["orig_frames"] + d["resp_frames"] == 2 * len(c.frames)
    assert d["interfaces"] == {"member": {"orig": 6, "resp": 3}, "team": {"orig": 6, "resp": 3}}
    assert seg  # the original segment was sent


def test_copy_sharing_packet_id_is_duplicate_even_when_bytes_differ() -> None:
    c = TcpConv()
    c.handshake()
    table = FlowTable()
    for i, (ts, frame) in enumerate(c.frames):
        table.add(ts, LINKTYPE_ETHERNET, frame, len(frame), "a", packet_id=i)
        other = bytes(Ether(frame)[IP]) + b""  # raw IP as a cooked capture would give
        table.add(ts + 1000, 101, other, len(other), "b", packet_id=i)
    (f,) = table.finish()
    assert f.as_dict()["duplicates"] == 3 and f.retransmissions == 0


def test_identical_frame_later_than_window_is_a_retransmission() -> None:
    c = TcpConv(("2001:db8::1", 40000), ("2001:db8::2", 80))  # IPv6: no IP ID to tell
    c.handshake()
    c.data("c", 10)
    _, frame = c.frames[-1]
    c.frames.append((c.t + 300 * MS, frame))
    f = one(c.frames)
    assert (f.retransmissions, f.as_dict()["duplicates"]) == (1, 0)
    f = flows_of([*c.frames[:-1], (c.frames[-2][0] + 1000, frame)])[0]
    assert (f.retransmissions, f.as_dict()["duplicates"]) == (0, 1)


# ---- window, gaps, reuse -----------------------------------------------------------------

def test_out_of_window_sequence_and_blind_reset() -> None:
    c = TcpConv(wscale=None)
    c.s.window = 1000
    c.handshake()
    c.data("c", 100)
    c.ack("s")
    c.emit("c", "PA", b"y" * 10, seq=c.c.seq + 500_000)  # far beyond the 1000-byte window
    c.emit("s", "R", seq=c.s.seq + 3_000_000)  # a reset nowhere near the window
    f = one(c.frames)
    assert f.out_of_window == 2
    assert "out-of-window" in f.flags


def test_acknowledged_but_not_captured_is_a_gap() -> None:
    c = TcpConv()
    c.handshake()
    c.data("c", 100)
    c.data("c", 100)
    del c.frames[-1]  # the capture lost it
    c.ack("s")
    f = one(c.frames)
    assert f.missed_bytes == 100 and "G" in f.history_text and "capture-gap" in f.flags


def test_port_reuse_after_close_starts_a_new_flow() -> None:
    c = TcpConv()
    sf(c)
    again = TcpConv(t0=c.t + MS, isn=(90000, 70000))
    again.handshake()
    flows = flows_of(c.frames + again.frames)
    assert [f.conn_state for f in flows] == ["SF", "S1"]


def test_non_ip_and_malformed_are_counted(tmp_path: Path) -> None:
    table = FlowTable()
    table.add(T0, LINKTYPE_ETHERNET, bytes(Ether(type=0x0806) / Raw(b"\0" * 28)), 42, "x")
    table.add(T0, LINKTYPE_ETHERNET, b"\x01" * 10, 10, "x")
    table.add(T0, LINKTYPE_ETHERNET, bytes(Ether(type=0x0800) / Raw(b"\x45" + b"\0" * 5)), 20,
              "x")
    assert table.finish() == []
    assert (table.stats.non_ip, table.stats.malformed) == (1, 2)


def test_fragments_follow_their_first() -> None:
    big = Ether() / IP(src="10.0.0.1", dst="10.0.0.2", id=77) / TCP(sport=1, dport=2) / Raw(
        b"z" * 3000)
    frags = [bytes(Ether() / p) for p in
             fragment(big[IP], fragsize=1000)]  # type: ignore[no-untyped-call]
    flows = flows_of([(T0 + i, f) for i, f in enumerate(frags)])
    (f,) = flows
    assert f.frames[0] == len(frags) == 4 and f.pkts[0] == 4
    dgram = IP(src="10.0.0.1", dst="10.0.0.2", id=78) / UDP(sport=5000, dport=53) / Raw(
        b"u" * 3000)
    frags = [bytes(Ether() / p) for p in
             fragment(dgram, fragsize=1000)]  # type: ignore[no-untyped-call]
    (f,) = flows_of([(T0 + i, fr) for i, fr in enumerate(frags)])
    assert (f.pkts[0], f.bytes, f.conn_state) == (4, (3000, 0), "S0")


# ---- files: pcap, pcapng, cooked, tshark --------------------------------------------------

def test_analyze_pcap_and_cooked_capture(tmp_path: Path) -> None:
    c = TcpConv()
    sf(c)
    wrpcap(str(tmp_path / "eth.pcap"), scapy_packets(c.frames))
    cooked = []
    for p in scapy_packets(c.frames):
        q = CookedLinux(proto=0x0800) / p[IP]
        q.time = p.time
        cooked.append(q)
    wrpcap(str(tmp_path / "sll.pcap"), cooked)
    for name in ("eth.pcap", "sll.pcap"):
        flows, stats = analyze_file(str(tmp_path / name))
        assert [(f.conn_state, f.history_text) for f in flows] == [("SF", "ShADadFf")]
        assert stats.frames == len(c.frames)


_UNIT = {"bytes": 1, "kB": 1000, "MB": 1000_000, "GB": 1000_000_000}


def _tshark_conv(path: Path) -> dict[tuple[str, str], tuple[int, int, int, int, int, int]]:
    """``tshark -q -z conv,tcp``: (A, B) -> (frames A->B, bytes A->B, frames B->A, bytes B->A,
    and the rounding unit of each byte count: tshark prints "58 kB" past 10000 bytes)."""
    out = subprocess.run(["tshark", "-r", str(path), "-q", "-z", "conv,tcp"],
                         capture_output=True, text=True, check=True).stdout
    num = r"(\d+)\s+([\d,]+) (bytes|kB|MB|GB)"
    row = re.compile(rf"^(\S+)\s+<->\s+(\S+)\s+{num}\s+{num}")
    table = {}
    for line in out.splitlines():
        m = row.match(line)
        if m:
            a, b = m.group(1), m.group(2)
            # columns: "<-" (B to A) first, then "->" (A to B)
            back_unit, fwd_unit = _UNIT[m.group(5)], _UNIT[m.group(8)]
            table[(a, b)] = (int(m.group(6)), int(m.group(7).replace(",", "")) * fwd_unit,
                             int(m.group(3)), int(m.group(4).replace(",", "")) * back_unit,
                             fwd_unit, back_unit)
    return table


def _same_as_tshark(got: tuple[int, int, int, int],
                    want: tuple[int, int, int, int, int, int]) -> bool:
    """Frames equal; bytes equal, or within tshark's rounding when it printed kB/MB."""
    return (got[0] == want[0] and got[2] == want[2]
            and abs(got[1] - want[1]) < want[4] and abs(got[3] - want[3]) < want[5])


def test_counts_match_tshark_conversations(tmp_path: Path) -> None:
    require_tools("tshark")
    frames: list[tuple[int, bytes]] = []
    t = T0
    for i, build in enumerate(c[0] for c in CASES):
        conv = TcpConv(("10.0.0.1", 40000 + i), ("10.0.0.2", 80), t0=t,
                       vlan=20 if i % 2 else None)
        build(conv)
        frames.extend(conv.frames)
        t = conv.t
    big = TcpConv(("10.0.0.3", 50000), ("10.0.0.4", 5201), t0=t)
    big.handshake()
    for _ in range(40):
        big.data("c", 1400)
        big.ack("s")
    big.close()
    frames.extend(big.frames)
    frames.sort()
    path = tmp_path / "convs.pcapng"
    write_pcapng(path, [(ts, "eth0", f) for ts, f in frames])
    flows, _ = analyze_file(str(path))
    tshark = _tshark_conv(path)
    assert len(tshark) == len(flows) == len(CASES) + 1
    for f in flows:
        d = f.as_dict()
        o = f"{d['orig_h']}:{d['orig_p']}"
        r = f"{d['resp_h']}:{d['resp_p']}"
        if (o, r) in tshark:
            want = tshark[(o, r)]
        else:  # tshark put the responder on the left
            b = tshark[(r, o)]
            want = (b[2], b[3], b[0], b[1], b[5], b[4])
        got = (d["orig_frames"], d["orig_frame_bytes"], d["resp_frames"], d["resp_frame_bytes"])
        assert _same_as_tshark(got, want), (d["conn_state"], got, want)
        if want[4] == want[5] == 1:
            assert got == want[:4]
    assert any(w[4] > 1 for w in tshark.values())  # the big flow was compared too


def test_counts_with_duplicates_match_tshark_frames(tmp_path: Path) -> None:
    require_tools("tshark")
    c = TcpConv()
    sf(c)
    path = tmp_path / "dup.pcapng"
    packets = [(ts + k * 5000, iface, f) for ts, f in c.frames
               for k, iface in enumerate(("member", "team"))]
    write_pcapng(path, packets, interfaces=("member", "team"))
    flows, stats = analyze_file(str(path))
    (f,) = flows
    (want,) = _tshark_conv(path).values()
    d = f.as_dict()
    assert (d["orig_frames"], d["orig_frame_bytes"], d["resp_frames"],
            d["resp_frame_bytes"]) == want[:4]
    assert (d["orig_pkts"], d["resp_pkts"], d["duplicates"]) == (6, 4, 10)
    assert d["retransmissions"] == 0 and d["history"] == "ShADadFf"
    assert stats.duplicates == 10


def test_flows_cli_table_json_and_errors(tmp_path: Path) -> None:
    c = TcpConv()
    s0(c)
    other = TcpConv(("10.0.0.5", 40001), t0=c.t)
    sf(other)
    path = tmp_path / "x.pcapng"
    write_pcapng(path, [(ts, "eth0", f) for ts, f in c.frames + other.frames])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vspan.cli.main", "flows", *args],
                              capture_output=True, text=True)

    proc = run(str(path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:5] == ["START", "DURATION", "PROTO", "ORIGINATOR", "RESPONDER"]
    assert "S0" in lines[1] and "incomplete-handshake" in lines[1]
    assert "SF" in lines[2] and "ShADadFf" in lines[2]
    assert "2 flows (S0 1, SF 1) in 11 frames; 0 capture duplicates, 0 retransmissions, " \
           "1 one-way flow" in proc.stdout
    proc = run(str(path), "--json", "--state", "SF")
    objs = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(objs) == 1 and objs[0]["conn_state"] == "SF"
    for k in ("proto", "orig_h", "orig_p", "resp_h", "resp_p", "conn_state", "history",
              "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "duplicates",
              "retransmissions"):
        assert k in objs[0]
    proc = run(str(path), "--problems", "--json", "-q")
    assert [json.loads(x)["conn_state"] for x in proc.stdout.splitlines()] == ["S0"]
    assert run(str(path), "--state", "XX").returncode == 2
    assert run(str(path), "--window", "soon").returncode == 2
    assert run(str(tmp_path / "missing")).returncode == 1
    (tmp_path / "junk").write_bytes(b"not a capture at all")
    proc = run(str(tmp_path / "junk"))
    assert proc.returncode == 1 and "not a pcap" in proc.stderr


def test_flows_of_ipv6_cooked_v2(tmp_path: Path) -> None:
    frame = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=1234, dport=22,
                                                                    flags="S"))
    table = FlowTable()
    table.add(T0, 101, frame, len(frame), "raw")
    (f,) = table.finish()
    assert (f.conn_state, f.as_dict()["resp_p"]) == ("S0", 22)


def test_flows_of_collector_output_with_ingress_and_egress_sessions(tmp_path: Path) -> None:
    """A conversation mirrored over ERSPAN III at the sender's port (ingress) and the
    receiver's port (egress), decapsulated by the collector: one interface per session and
    direction; every frame twice, so half are duplicates and none is a retransmission."""
    c = TcpConv()
    sf(c)
    path = tmp_path / "collected.pcapng"
    with PcapngWriter(str(path)) as w:
        col = Collector(w)
        seq = 0
        for ts, frame in c.frames:
            for egress in (0, 1):  # the copy at the ingress port, then at the egress port
                pkt = (IP(src="192.0.2.7", dst="192.0.2.1")
                       / GRE(seqnum_present=1, sequence_number=seq, proto=0x22EB)
                       / ERSPAN_III(session_id=9, d=egress, gra=3, timestamp=0) / Raw(frame))
                col.handle_ip(bytes(pkt), ts + egress * 30_000)
                seq += 1
    assert col.stats.written == 2 * len(c.frames)
    (f,) = analyze_file(str(path))[0]
    d = f.as_dict()
    assert (d["conn_state"], d["history"]) == ("SF", "ShADadFf")
    assert d["duplicates"] == len(c.frames) and d["retransmissions"] == 0
    assert set(d["interfaces"]) == {"erspan3-9-ingress@192.0.2.7", "erspan3-9-egress@192.0.2.7"}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([1, 101, 113, 276, 0]))
def test_hostile_bytes_never_raise(data: bytes, linktype: int) -> None:
    table = FlowTable()
    table.add(T0, linktype, data, len(data), "x")
    table.finish()
    assert table.stats.frames == 1


def test_every_prefix_of_real_frames_is_handled() -> None:
    c = TcpConv(("2001:db8::1", 40000), ("2001:db8::2", 80), vlan=7)
    sf(c)
    v4 = TcpConv()
    sf(v4)
    table = FlowTable()
    for _, frame in c.frames + v4.frames:
        for n in range(len(frame) + 1):
            table.add(T0 + n, LINKTYPE_ETHERNET, frame[:n], len(frame), "x")
    flows = table.finish()
    assert flows and table.stats.malformed + table.stats.non_ip > 0
