"""ERSPAN II/III and GRE-TEB between two namespaces: tshark decodes what vspan sends,
``vspan collect`` decodes what scapy sends, and a collector killed with SIGKILL leaves
readable files.

Topology: namespace ``a`` (10.77.0.1 and 10.77.0.11, fd77::1) and namespace ``b``
(10.77.0.2, fd77::2) joined by one veth pair. Nothing leaves the two namespaces.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import GRE, Dot1Q, Ether
from scapy.packet import Packet, Raw

from tests.helpers.netns import Lab, lab, require_tools, requires_root, sh
from tests.system.capture import Capture, tcpdump
from vspan.capture.pcapng import DIR_INBOUND, DIR_OUTBOUND, CaptureReader

pytestmark = [pytest.mark.system, requires_root]

REPO = Path(__file__).resolve().parents[2]
A1, A2, B = "10.77.0.1", "10.77.0.11", "10.77.0.2"
A6, B6 = "fd77::1", "fd77::2"


@dataclass
class Pair:
    lab: Lab
    a: str
    b: str


@pytest.fixture
def pair() -> Iterator[Pair]:
    require_tools("tshark", "tcpdump", "capinfos")
    with lab(prefix=f"vp4{secrets.token_hex(2)}") as the_lab:
        a = the_lab.netns("a")
        b = the_lab.netns("b")
        end = the_lab.veth("x", ns=a, inner_name="eth0", addr=f"{A1}/24")
        sh("ip", "link", "set", end, "netns", b)
        sh("ip", "-n", b, "link", "set", end, "name", "eth0")
        sh("ip", "-n", b, "addr", "add", f"{B}/24", "dev", "eth0")
        sh("ip", "-n", a, "addr", "add", f"{A2}/24", "dev", "eth0")
        for ns in (a, b):
            the_lab.exec(ns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0")
        sh("ip", "-n", a, "addr", "add", f"{A6}/64", "dev", "eth0", "nodad")
        sh("ip", "-n", b, "addr", "add", f"{B6}/64", "dev", "eth0", "nodad")
        sh("ip", "-n", b, "link", "set", "eth0", "up")
        the_lab.exec(a, "ping", "-c", "1", "-W", "5", B)  # neighbours resolved, link up
        yield Pair(the_lab, a, b)


# ---- helpers -----------------------------------------------------------------------------

def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 15) -> str:
    """Read ``proc``'s stderr until a line contains ``needle``."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.2)
        if ready:
            line = proc.stderr.readline()
            seen += line
            if needle in line:
                return seen
            if not line and proc.poll() is not None:
                break
    raise AssertionError(f"{needle!r} not seen on stderr; got:\n{seen}")


def sniff(ns: str, path: Path, expect: int,
          expr: str = "ip proto 47") -> AbstractContextManager[Capture]:
    """tcpdump in a namespace, listening before the block, stopped after it (once the
    ``expect``-ed packets and any straggler were written); read the file with tshark."""
    return tcpdump(ns, "eth0", path, expr, expect=expect, read=False)


def vspan_send(p: Pair, config: dict[str, Any], frames: list[dict[str, Any]],
               **job: Any) -> dict[str, Any]:
    """Send frames with RawGreSender from namespace ``a``; return its report."""
    payload = json.dumps({"config": config, "frames": frames, **job})
    proc = subprocess.run(["ip", "netns", "exec", p.a, sys.executable, "-m",
                           "tests.helpers.erspan_tools", "vspan"], input=payload,
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def raw_send(p: Pair, packets: list[Packet], interval: float = 0.002) -> None:
    """Send scapy-made IP packets unchanged from namespace ``a``."""
    text = "\n".join(bytes(pkt).hex() for pkt in packets)
    proc = subprocess.run(["ip", "netns", "exec", p.a, sys.executable, "-m",
                           "tests.helpers.erspan_tools", "raw", str(interval)], input=text,
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sent"] == len(packets)


def tshark_json(path: Path) -> list[dict[str, Any]]:
    """Per-packet layer dicts (duplicate layers, e.g. outer and inner eth, become lists)."""
    proc = subprocess.run(["tshark", "-r", str(path), "-T", "json", "--no-duplicate-keys"],
                          capture_output=True, text=True, check=True)
    return [pkt["_source"]["layers"] for pkt in json.loads(proc.stdout)]


def flat(layer: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    """Field name -> value for a tshark JSON layer (the outermost one), subtrees included."""
    if isinstance(layer, list):
        layer = layer[0]
    out: dict[str, Any] = {}
    for k, v in layer.items():
        if isinstance(v, dict):
            out.update(flat(v))
        else:
            out[k] = v
    return out


def captured(path: Path) -> list[bytes]:
    """The IPv4 frames of a tcpdump capture."""
    return [r.data for r in CaptureReader(str(path)) if r.data[12:14] == b"\x08\x00"]


def inner_of(eth_frame: bytes, gre_len: int, erspan_len: int) -> bytes:
    """The mirrored frame, cut out of the captured bytes by header lengths."""
    ip_packet = eth_frame[14:]
    ihl = (ip_packet[0] & 0xF) * 4
    total = int.from_bytes(ip_packet[2:4], "big")
    return ip_packet[ihl + gre_len + erspan_len:total]


def frame(i: int, vlan: int | None = None, prio: int = 0, size: int = 0) -> bytes:
    l2: Packet = Ether(src="02:00:00:00:aa:01", dst="02:00:00:00:aa:02")
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan, prio=prio)
    pkt = l2 / IP(src="192.0.2.10", dst="192.0.2.20") / TCP(sport=30000 + i, dport=443)
    return bytes(pkt) + bytes(max(size - len(bytes(pkt)), 0))


# ---- vspan sends, tshark decodes ---------------------------------------------------------

def test_erspan2_every_field_decoded_by_tshark(pair: Pair, tmp_path: Path) -> None:
    cfg = {"remote_ip": B, "type": "erspan2", "session_id": 513, "index": 0xABCDE,
           "source_ip": A2, "ttl": 17, "dscp": 46}
    frames: list[dict[str, Any]] = [
        {"hex": frame(0, vlan=10, prio=5).hex()},
        {"hex": frame(1).hex(), "vlan": 20, "cos": 3},
        {"hex": frame(2, size=200)[:64].hex(), "truncated": True},
        {"hex": frame(3, size=1700).hex()},  # longer than the 1500-byte path MTU
    ]
    pcap = tmp_path / "e2.pcap"
    with sniff(pair.b, pcap, expect=4):
        report = vspan_send(pair, cfg, frames)
    assert report["counters"]["sent"] == 4 and report["counters"]["errors"] == 0
    assert report["counters"]["truncated"] == 1 and report["path_mtu"] == 1500
    assert report["local"] == A2
    pkts = tshark_json(pcap)
    assert len(pkts) == 4  # no fragments
    expect = [  # vlan, cos, encap, truncated
        ("10", "5", "3", "0"),
        ("20", "3", "0", "0"),
        ("0", "0", "0", "1"),
        ("0", "0", "0", "1"),
    ]
    raws = captured(pcap)
    for i, layers in enumerate(pkts):
        ip, gre, er = flat(layers["ip"]), flat(layers["gre"]), flat(layers["erspan"])
        assert (ip["ip.src"], ip["ip.dst"], ip["ip.ttl"], ip["ip.dsfield.dscp"]) == (
            A2, B, "17", "46")
        assert (ip["ip.flags.df"], ip["ip.flags.mf"], ip["ip.frag_offset"]) == ("1", "0", "0")
        assert int(ip["ip.len"]) <= 1500
        assert (gre["gre.proto"], gre["gre.sequence_number"]) == ("0x88be", str(i))
        assert gre["gre.flags.sequence_number"] == "1" and gre["gre.flags.key"] == "0"
        assert (er["erspan.version"], er["erspan.spanid"], er["erspan.index"]) == (
            "1", "513", str(0xABCDE))
        assert (er["erspan.vlan"], er["erspan.cos"], er["erspan.encap"],
                er["erspan.truncated"]) == expect[i]
        sent = bytes.fromhex(frames[i]["hex"])
        got = inner_of(raws[i], 8, 8)
        assert got == sent[:len(got)]
        assert bytes(Ether(raws[i])[ERSPAN_II].payload) == got
        assert len(got) == (len(sent) if i != 3 else 1500 - 20 - 16)
    inner_eth = flat({"e": pkts[0]["eth"]})  # outer and inner Ethernet both decoded
    assert "02:00:00:00:aa:01" in json.dumps(inner_eth)
    assert flat(pkts[0]["vlan"])["vlan.id"] == "10"


def test_erspan3_every_field_decoded_by_tshark(pair: Pair, tmp_path: Path) -> None:
    now = time.time_ns()
    cfg = {"remote_ip": B, "type": "erspan3", "session_id": 7, "hw_id": 21}
    cfg_ns = {"remote_ip": B, "type": "erspan3", "session_id": 8, "hw_id": 63,
              "granularity": "ns", "platform_subheader": True, "switch_id": 513,
              "index": 0xBEEF}
    frames: list[dict[str, Any]] = [
        {"hex": frame(0, vlan=30, prio=7).hex(), "egress": False, "ts_ns": now},
        {"hex": frame(1).hex(), "egress": True, "ts_ns": now + 250_000},
        {"hex": frame(2, size=300)[:100].hex(), "egress": True, "ts_ns": now,
         "truncated": True},
    ]
    pcap = tmp_path / "e3.pcap"
    with sniff(pair.b, pcap, expect=5):
        r1 = vspan_send(pair, cfg, frames)
        r2 = vspan_send(pair, cfg_ns, frames[:2])
    assert r1["counters"]["sent"] == 3 and r2["counters"]["sent"] == 2
    # the neighbour is resolved (the fixture pinged): written as Ethernet frames on the
    # AF_PACKET socket with the cached header (mirror.l2path), decoded below all the same
    assert r1["path"] == r2["path"] == "resolved"
    assert (r1["counters"]["link_layer"], r2["counters"]["link_layer"]) == (3, 2)
    pkts = tshark_json(pcap)
    assert len(pkts) == 5
    raws = captured(pcap)
    for i, layers in enumerate(pkts):
        gre, er = flat(layers["gre"]), flat(layers["erspan"])
        first = i < 3
        f = frames[i if first else i - 3]
        assert gre["gre.proto"] == "0x22eb"
        assert gre["gre.sequence_number"] == str(i if first else i - 3)
        assert er["erspan.version"] == "2"
        assert er["erspan.spanid"] == ("7" if first else "8")
        assert er["erspan.hw"] == ("21" if first else "63")
        assert er["erspan.direction"] == ("1" if f.get("egress") else "0")
        assert er["erspan.truncated"] == ("1" if f.get("truncated") else "0")
        assert (er["erspan.p"], er["erspan.ft"], er["erspan.bso"], er["erspan.sgt"]) == (
            "1", "0", "0", "0")
        tagged = i in (0, 3)
        assert (er["erspan.vlan"], er["erspan.cos"]) == (("30", "7") if tagged else ("0", "0"))
        ts = f["ts_ns"]
        if first:
            assert er["erspan.gra"] == "0" and er["erspan.o"] == "0"
            assert int(er["erspan.timestamp"]) == (ts // 100_000) & 0xFFFFFFFF
            got = inner_of(raws[i], 8, 12)
            assert bytes(Ether(raws[i])[ERSPAN_III].payload) == got
        else:
            assert er["erspan.gra"] == "2" and er["erspan.o"] == "1"
            assert int(er["erspan.timestamp"]) == ts % 10**9
            assert er["erspan.platid"] == "5"
            assert er["erspan.pid5.switchid"] == "513"
            assert er["erspan.pid5.port_index"] == str(0xBEEF)
            assert int(er["erspan.pid5.timestamp"]) == ts // 10**9
            got = inner_of(raws[i], 8, 20)
            assert bytes(Ether(raws[i])[ERSPAN_PlatformSpecific].payload) == got
        assert got == bytes.fromhex(f["hex"])


def test_plain_gre_and_path_mtu(pair: Pair, tmp_path: Path) -> None:
    sh("ip", "-n", pair.a, "link", "set", "eth0", "mtu", "1200")
    big = frame(0, size=1400)
    pcap = tmp_path / "g.pcap"
    with sniff(pair.b, pcap, expect=3):
        gre = vspan_send(pair, {"remote_ip": B, "type": "gre", "gre_key": 99},
                         [{"hex": frame(1, vlan=4).hex()}, {"hex": big.hex()}])
        capped = vspan_send(pair, {"remote_ip": B, "type": "erspan2", "mtu": 1000},
                            [{"hex": big.hex()}])
    assert gre["path_mtu"] == 1200 and gre["counters"]["truncated"] == 1
    assert capped["path_mtu"] == 1000 and capped["counters"]["truncated"] == 1
    pkts = tshark_json(pcap)
    assert len(pkts) == 3
    g0, g1, e = (flat(p["gre"]) for p in pkts)
    assert (g0["gre.proto"], int(g0["gre.key"], 16), g0["gre.sequence_number"]) == (
        "0x6558", 99, "0")
    assert g1["gre.sequence_number"] == "1"
    assert flat(pkts[0]["vlan"])["vlan.id"] == "4"
    raws = captured(pcap)
    assert inner_of(raws[0], 12, 0) == frame(1, vlan=4)
    assert len(raws[1]) == 14 + 1200 and inner_of(raws[1], 12, 0) == big[:1200 - 20 - 12]
    assert len(raws[2]) == 14 + 1000 and flat(pkts[2]["erspan"])["erspan.truncated"] == "1"
    assert e["gre.proto"] == "0x88be"


def test_loop_guard_never_sends_own_output(pair: Pair, tmp_path: Path) -> None:
    own = bytes(Ether() / IP(src=A1, dst=B) / GRE(proto=0x88BE) / Raw(b"x" * 40))
    other = bytes(Ether() / IP(src=A1, dst="10.77.0.99") / GRE(proto=0x88BE) / Raw(b"x" * 40))
    pcap = tmp_path / "l.pcap"
    with sniff(pair.b, pcap, expect=1):
        r = vspan_send(pair, {"remote_ip": B, "type": "erspan2"},
                       [{"hex": own.hex()}, {"hex": other.hex()}])
    assert r["results"] == [False, True]
    assert r["counters"]["loop_skipped"] == 1 and r["counters"]["sent"] == 1
    pkts = tshark_json(pcap)
    assert len(pkts) == 1 and flat(pkts[0]["gre"])["gre.sequence_number"] == "0"


# ---- scapy sends, vspan collect decodes --------------------------------------------------

def start_collector(p: Pair, listen: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", p.b, sys.executable, "-m", "vspan.cli.main", "collect",
         "--listen", listen, "-w", str(out), "--progress", "1", *extra],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=REPO)
    _wait_for_line(proc, "listening on")
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"collector did not finish: {err}") from None
    assert proc.returncode == 0, err
    return err


def outer(seq: int | None = None, proto: int = 0x88BE, **kw: Any) -> Packet:
    g = GRE(proto=proto, **kw) if seq is None else GRE(proto=proto, seqnum_present=1,
                                                       sequence_number=seq, **kw)
    return IP(src=A1, dst=B) / g


def test_collector_decodes_scapy_erspan(pair: Pair, tmp_path: Path) -> None:
    now = time.time_ns()
    ts = (now // 100_000) & 0xFFFFFFFF
    e2_frames = [frame(0, vlan=10, prio=5), frame(1), frame(2, vlan=10), frame(3)]
    e3_frames = [frame(10, vlan=11, prio=2), frame(11), frame(12), frame(13, size=400)[:90]]
    teb = [frame(20, vlan=12), frame(21)]
    pkts: list[Packet] = [outer(None, 0x0800) / IP(dst="192.0.2.1") / UDP()]  # not a mirror
    for seq, f in zip((0, 1, 2, 5), e2_frames, strict=True):  # 3 and 4 lost on the way
        tag = f[12:14] == b"\x81\x00"
        pkts.append(outer(seq) / ERSPAN_II(session_id=300, vlan=10 if tag else 0,
                                           en=3 if tag else 0, index=5) / Raw(f))
    for seq, f in enumerate(e3_frames):
        pkts.append(outer(seq, 0x22EB) / ERSPAN_III(session_id=301, p=1, d=seq % 2,
                                                    timestamp=ts, t=int(seq == 3)) / Raw(f))
    pkts.append(outer(None, 0x6558, key_present=1, key=9) / Raw(teb[0]))
    pkts.append(outer(None, 0x6558) / Raw(teb[1]))
    out = tmp_path / "col.pcapng"
    proc = start_collector(pair, B, out, "-c", "10")
    raw_send(pair, pkts)
    err = finish(proc)
    assert "10 frames written to 1 file" in err
    assert "lost on the way 2 (sequence gaps), truncated by sender 1" in err
    assert "ignored 1" in err

    recs = list(CaptureReader(str(out)))
    assert [r.data for r in recs] == e2_frames + e3_frames + teb
    assert [r.interface_name for r in recs] == (
        [f"erspan2-300@{A1}"] * 4
        + [f"erspan3-301-{d}@{A1}" for d in ("ingress", "egress", "ingress", "egress")]
        + [f"gre-key9@{A1}", f"gre@{A1}"])
    assert [r.direction for r in recs[4:8]] == [DIR_INBOUND, DIR_OUTBOUND] * 2
    assert all(r.ts_ns == now // 100_000 * 100_000 for r in recs[4:8])  # original time

    proc2 = subprocess.run(["capinfos", "-c", str(out)], capture_output=True, text=True)
    assert proc2.returncode == 0 and "10" in proc2.stdout
    fields = subprocess.run(
        ["tshark", "-r", str(out), "-T", "fields", "-E", "separator=|", "-E", "occurrence=a",
         "-e", "frame.interface_name", "-e", "frame.comment", "-e",
         "frame.packet_flags_direction", "-e", "frame.drop_count", "-e", "vlan.id", "-e",
         "tcp.srcport", "-e", "frame.time_epoch"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [line.split("|") for line in fields]
    assert rows[0][4] == "10" and rows[0][5] == "30000"
    assert rows[3][1] == ("sequence gap: 2 packets lost before this one "
                          "(expected seq 3, got 5)") and rows[3][3] == "2"
    assert [int(r[2], 16) for r in rows[4:8]] == [1, 2, 1, 2]
    assert "T bit" in rows[7][1]
    assert rows[4][4] == "11" and rows[8][4] == "12"
    assert rows[8][0] == f"gre-key9@{A1}"


def test_vspan_sender_to_collector_exact(pair: Pair, tmp_path: Path) -> None:
    """Frames, directions and (ns) timestamps survive vspan -> network -> vspan collect."""
    base = time.time_ns()
    frames = [{"hex": frame(i, vlan=(7 if i % 3 == 0 else None)).hex(), "egress": bool(i % 2),
               "ts_ns": base + i * 1_234_567} for i in range(20)]
    out = tmp_path / "e2e.pcapng"
    proc = start_collector(pair, B, out, "-c", "40", "--session", "9", "--session", "10")
    vspan_send(pair, {"remote_ip": B, "type": "erspan3", "session_id": 9, "granularity": "ns",
                      "platform_subheader": True}, frames)
    vspan_send(pair, {"remote_ip": B, "type": "erspan2", "session_id": 11}, frames[:3])
    vspan_send(pair, {"remote_ip": B, "type": "erspan2", "session_id": 10}, frames)
    err = finish(proc)
    assert "filtered out 3" in err and "lost on the way 0" in err
    recs = list(CaptureReader(str(out)))
    e3 = [r for r in recs if r.interface_name.startswith("erspan3")]
    e2 = [r for r in recs if r.interface_name.startswith("erspan2")]
    assert [r.data.hex() for r in e3] == [f["hex"] for f in frames]
    assert [r.ts_ns for r in e3] == [f["ts_ns"] for f in frames]
    assert [r.direction for r in e3] == [DIR_OUTBOUND if f["egress"] else DIR_INBOUND
                                         for f in frames]
    assert [r.data.hex() for r in e2] == [f["hex"] for f in frames]
    assert {r.interface_name for r in e2} == {f"erspan2-10@{A1}"}


def test_collector_ipv6(pair: Pair, tmp_path: Path) -> None:
    frames = [{"hex": frame(i).hex(), "egress": True} for i in range(5)]
    out = tmp_path / "v6.pcapng"
    proc = start_collector(pair, B6, out, "-c", "5")
    r = vspan_send(pair, {"remote_ip": B6, "type": "erspan3", "session_id": 1}, frames)
    assert r["counters"]["sent"] == 5
    finish(proc)
    recs = list(CaptureReader(str(out)))
    assert [x.data.hex() for x in recs] == [f["hex"] for f in frames]
    assert recs[0].interface_name == f"erspan3-1-egress@{A6}"


def test_collector_killed_mid_capture_leaves_readable_files(pair: Pair, tmp_path: Path) -> None:
    out = tmp_path / "kill.pcapng"
    proc = start_collector(pair, B, out, "-C", "0.02")
    frames = [{"hex": frame(i, size=100 + 37 * i).hex(), "egress": bool(i % 2)}
              for i in range(8)]
    job = json.dumps({"config": {"remote_ip": B, "type": "erspan3", "session_id": 4},
                      "frames": frames, "repeat_seconds": 5, "interval": 0.0002})
    sender = subprocess.Popen(["ip", "netns", "exec", pair.a, sys.executable, "-m",
                               "tests.helpers.erspan_tools", "vspan"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert sender.stdin is not None
    sender.stdin.write(job)
    sender.stdin.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(list(tmp_path.glob("kill.pcapng*"))) < 4:
        time.sleep(0.05)
    assert len(list(tmp_path.glob("kill.pcapng*"))) >= 4, "the capture did not get going"
    os.kill(proc.pid, signal.SIGKILL)  # `ip netns exec` execs: this pid is the collector
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    sender.terminate()
    sender.wait(timeout=60)
    files = sorted(tmp_path.glob("kill.pcapng*"), key=lambda f: f.stat().st_mtime_ns)
    total = 0
    for f in files:
        reader = CaptureReader(str(f))
        recs = list(reader)
        total += len(recs)
        assert all(r.data.hex() in {x["hex"] for x in frames} for r in recs)
        cap = subprocess.run(["capinfos", "-c", "-M", str(f)], capture_output=True, text=True)
        tsh = subprocess.run(["tshark", "-r", str(f), "-T", "fields", "-e", "frame.number"],
                             capture_output=True, text=True)
        assert len(tsh.stdout.split()) == len(recs), tsh.stderr
        if f != files[-1]:
            assert not reader.truncated and cap.returncode == 0 and tsh.returncode == 0
            assert f"Number of packets:   {len(recs)}" in cap.stdout
        elif reader.truncated:  # killed inside a write(): only that last packet is lost
            assert "cut short in the middle of a packet" in (cap.stderr + tsh.stderr)
        else:
            assert cap.returncode == 0 and tsh.returncode == 0, cap.stderr + tsh.stderr
    assert total > 100
