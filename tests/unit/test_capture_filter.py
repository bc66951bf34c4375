"""Filter expressions: tcpdump (libpcap BPF) is the oracle on scapy-made frames."""

from __future__ import annotations

import re
import shutil
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, GRE, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from vspan.capture.filter import FilterError, compile_filter
from vspan.datapath.flowkey import extract

# no switch, engine or port: the VSPAN_FASTPATH=python pass skips it (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent

M1, M2, BC = "02:00:00:00:00:01", "02:00:00:00:00:02", "ff:ff:ff:ff:ff:ff"


def eth(src: str = M1, dst: str = M2) -> Packet:
    return Ether(src=src, dst=dst)


UNTAGGED: list[Packet] = [
    eth() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags="S"),
    eth(M2, M1) / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=1234, flags="SA"),
    eth(dst="01:00:5e:00:00:fb") / IP(src="10.0.1.5", dst="224.0.0.251")
    / UDP(sport=5353, dport=5353),
    eth() / IP(src="192.168.1.10", dst="8.8.8.8") / UDP(sport=40000, dport=53),
    eth() / IP(src="10.0.0.1", dst="192.168.1.10") / ICMP(),
    eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=443, dport=50000),
    eth(dst="33:33:00:01:00:02") / IPv6(src="fe80::1", dst="ff02::1:2") / UDP(sport=546,
                                                                             dport=547),
    eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(),
    eth(dst=BC) / ARP(psrc="10.0.0.1", pdst="10.0.0.2", hwsrc=M1),
    eth() / IP(src="10.0.0.3", dst="10.0.0.4") / SCTP(sport=3868, dport=3868),
    eth() / IP(src="10.0.0.1", dst="10.0.0.2", proto=17, frag=100) / Raw(b"\x00\x50" * 20),
    Ether(src=M1, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x00" * 46),
    eth() / IP(src="10.0.0.1", dst="10.0.0.9") / GRE() / Raw(b"x" * 20),
    eth() / IP(src="10.0.0.1", dst="224.0.0.1", proto=2) / Raw(b"\x11" * 8),
    eth() / IP(src="172.16.5.5", dst="10.0.0.2") / UDP(sport=7, dport=9) / Raw(b"z" * 1000),
    eth() / IP(src="10.1.2.3", dst="10.0.0.2") / TCP(sport=22, dport=8080),
    eth(M2, "02:00:00:00:00:99") / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80,
                                                                            dport=1234),
]
TAGGED: list[Packet] = [
    eth() / Dot1Q(vlan=10) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80),
    eth() / Dot1Q(vlan=20, prio=5) / IP(src="10.0.0.5", dst="10.0.0.6") / UDP(sport=53,
                                                                                dport=1000),
    eth() / Dot1Q(vlan=10) / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=443,
                                                                               dport=50000),
    eth(dst=BC) / Dot1Q(vlan=10) / ARP(psrc="10.0.0.1", pdst="10.0.0.2", hwsrc=M1),
    eth() / Dot1Q(vlan=0, prio=3) / IP(src="10.0.0.1", dst="192.168.1.10") / ICMP(),
    eth() / Dot1Q(vlan=30) / IP(src="192.168.1.10", dst="8.8.8.8") / UDP(sport=40000,
                                                                          dport=53),
]

EXPRESSIONS = [
    "host 10.0.0.1", "src host 10.0.0.1", "dst host 10.0.0.2", "host 10.0.0.1 or 10.0.0.3",
    "src or dst host 10.0.0.2", "src and dst host 10.0.0.1", "ip host 10.0.0.1",
    "arp host 10.0.0.2", "not host 10.0.0.1", "src 10.0.0.1", "dst 8.8.8.8",
    "host 2001:db8::1", "ip6 host 2001:db8::2", "src host 2001:db8::1",
    "net 10.0.0.0/24", "net 10.0.0.0/8", "src net 192.168.0.0/16", "dst net 10.0.0.0/30",
    "net 10.0.0.0 mask 255.255.255.0", "net 192.168", "net 2001:db8::/32", "ip6 net ff00::/8",
    "port 80", "src port 80", "dst port 53", "tcp port 80", "udp port 53", "tcp port 53",
    "port 80 or 53", "portrange 1-100", "tcp portrange 8000-9000", "src portrange 1-1023",
    "port 3868", "sctp port 3868", "udp port 5353", "port http", "port domain",
    "tcp", "udp", "icmp", "icmp6", "arp", "ip", "ip6", "sctp", "igmp",
    "ip proto 47", "ip proto \\tcp", "ip6 proto 58", "proto 17", "ether proto 0x88cc",
    "ether proto \\arp",
    "ether host 02:00:00:00:00:01", "ether src 02:00:00:00:00:02",
    "ether dst ff:ff:ff:ff:ff:ff", "ether broadcast", "ether multicast", "broadcast",
    "multicast", "ip multicast", "ip6 multicast",
    "less 80", "greater 500", "less 60",
    "tcp and port 80", "tcp or udp", "not tcp", "not (tcp or udp)", "! arp and ! ip6",
    "host 10.0.0.1 and not port 80", "tcp and (port 80 or port 22)",
    "host 10.0.0.1 or host 10.0.0.3 and tcp",  # equal precedence, left to right
    "udp and dst port 53 or icmp", "not host 10.0.0.1 and not host 10.0.0.2",
    "ip and not tcp and not udp", "(src net 10.0.0.0/8) && (dst port 80 || dst port 8080)",
    "tcp src port 80 and dst port 1234", "ether src 02:00:00:00:00:02 and not ether dst "
    "02:00:00:00:00:01",
]
VLAN_EXPRESSIONS = [
    "vlan", "vlan 10", "vlan 20", "vlan 0", "vlan 10 and tcp", "vlan 10 and host 10.0.0.1",
    "vlan 10 and port 80", "vlan 20 and udp port 53", "vlan and ip6", "vlan 10 and arp",
    "not vlan", "vlan 30 and dst host 8.8.8.8", "vlan and icmp",
]


def _tcpdump(path: Path, expr: str) -> set[int]:
    proc = subprocess.run(["tcpdump", "-Z", "root", "-nn", "-tt", "-q", "-r", str(path), expr],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"tcpdump rejected {expr!r}: {proc.stderr}"
    out = set()
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\d+)\.\d+ ", line)
        if m:
            out.add(int(m.group(1)))
    return out


def _write(path: Path, pkts: list[Packet]) -> list[bytes]:
    for i, p in enumerate(pkts):
        p.time = i
    wrpcap(str(path), pkts)
    return [bytes(p) for p in pkts]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[bytes]]]:
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    d = tmp_path_factory.mktemp("filter")
    return {
        "untagged": (d / "u.pcap", _write(d / "u.pcap", UNTAGGED)),
        "tagged": (d / "t.pcap", _write(d / "t.pcap", TAGGED)),
    }


def _ours(expr: str, frames: list[bytes]) -> set[int]:
    f = compile_filter(expr)
    return {i for i, fr in enumerate(frames) if f.match(fr)}


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_same_as_tcpdump(expr: str, files: dict[str, tuple[Path, list[bytes]]]) -> None:
    path, frames = files["untagged"]
    assert _ours(expr, frames) == _tcpdump(path, expr)
    # tagged frames: ours looks through the tag, which in tcpdump is "vlan and (...)"
    path, frames = files["tagged"]
    assert _ours(expr, frames) == _tcpdump(path, f"vlan and ({expr})")


@pytest.mark.parametrize("expr", VLAN_EXPRESSIONS)
def test_vlan_same_as_tcpdump(expr: str, files: dict[str, tuple[Path, list[bytes]]]) -> None:
    path, frames = files["tagged"]
    assert _ours(expr, frames) == _tcpdump(path, expr)
    _, untagged = files["untagged"]
    expected_untagged = set(range(len(untagged))) if expr == "not vlan" else set()
    assert _ours(expr, untagged) == expected_untagged


def test_vlan_has_no_offset_side_effect(files: dict[str, tuple[Path, list[bytes]]]) -> None:
    """In tcpdump a second 'vlan' tests the inner tag; here every 'vlan N' tests the outer one."""
    _, frames = files["tagged"]
    assert _ours("vlan and not vlan 10", frames) == {1, 4, 5}
    assert _ours("vlan 10 or vlan 20", frames) == {0, 1, 2, 3}
    qinq = bytes(eth() / Dot1Q(vlan=100) / Dot1Q(vlan=200) / IP(src="10.0.0.1") / UDP())
    assert compile_filter("vlan 100 and host 10.0.0.1 and udp").match(qinq)
    assert not compile_filter("vlan 200").match(qinq)


def test_every_sample_is_parsed() -> None:
    """The frames above exercise the flow-key parser, not its malformed path."""
    for p in UNTAGGED + TAGGED:
        assert extract(bytes(p), 0) is not None, p.summary()


def test_empty_filter_matches_everything() -> None:
    f = compile_filter("")
    assert f.match(bytes(UNTAGGED[0])) and f.match(b"\x00" * 14)
    assert not compile_filter("ip").match(b"\x00" * 5)


def test_cut_frame_still_judged_on_headers_present() -> None:
    full = bytes(Ether() / IP(src="10.9.9.9", dst="10.0.0.1") / TCP(dport=80))
    cut = full[:30]  # IPv4 header cut: only L2 is whole
    assert compile_filter("ether proto \\ip").match(cut)
    cut = full[:40]  # TCP header cut: addresses are there, ports are not
    assert extract(cut, 0) is None
    assert compile_filter("host 10.9.9.9").match(cut)
    assert not compile_filter("port 80").match(cut)


def test_match_key_api() -> None:
    f = compile_filter("tcp dst port 80")
    raw = bytes(UNTAGGED[0])
    key = extract(raw, 3)
    assert key is not None
    assert f.match_key(key, len(raw)) and f(raw)
    assert repr(f) == "PacketFilter('tcp dst port 80')"


@pytest.mark.parametrize("expr,message,column", [
    ("host", "expected an address after 'host'", 5),
    ("host and port 80", "expected an address after 'host', found 'and'", 6),
    ("port 99999", "port 99999 is out of range", 6),
    ("host 10.0.0.1 and", "expected a primitive", 18),
    ("(tcp or udp", "expected ')' to close the '(' at column 1", 12),
    ("tcp udp", "expected 'and', 'or' or the end", 5),
    ("host example.com", "not an IP address (host names are not resolved)", 6),
    ("tcp host 10.0.0.1", "'tcp' cannot be combined with 'host'", 10),
    ("icmp port 5", "'icmp' cannot be combined with 'port'", 11),
    ("net 10.0.0.0/40", "bad network", 5),
    ("vlan 5000", "VLAN id 5000 is out of range", 6),
    ("tcp[13] & 2 != 0", "byte-offset expressions", 4),
    ("ether host 10.0.0.1", "not a MAC address", 12),
    ("ip6 host 10.0.0.1", "IPv4 address cannot be used with 'ip6'", 10),
    ("portrange 80", "not a port range", 11),
    ("80", "ambiguous", 1),
    ("port nosuchservice", "not a port number or known service", 6),
    ("ether", "'ether' needs", 1),
    ("tcp proto 6", "'tcp proto' is not valid", 1),
    ("gateway 10.0.0.1", "not supported", 1),
    (")", "unexpected ')'", 1),
])
def test_errors_name_the_position(expr: str, message: str, column: int) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(expr)
    err = info.value
    assert message in err.message
    assert err.position + 1 == column
    assert f"(at column {column})" in str(err)
    assert str(err).endswith(" " * (column - 1) + "^")


LENGTH_EXPRESSIONS = [
    "less 80", "greater 500", "not less 100", "tcp and greater 60", "less 70 or greater 900",
    "(less 70 or greater 900) and not udp", "not (greater 100 and less 200)", "udp or less 64",
    "greater 64 and less 64", "less 0", "greater 0", "not (port 80 or less 90)",
]


@pytest.mark.parametrize("expr", EXPRESSIONS + VLAN_EXPRESSIONS + LENGTH_EXPRESSIONS)
def test_flow_lengths_agree_with_the_frame_predicate(expr: str) -> None:
    """The flow-level form (decided once per flow) gives, for every frame length, what the
    per-frame predicate gives: so a mirror filter cached as length ranges is exact."""
    f = compile_filter(expr)
    for p in UNTAGGED + TAGGED:
        key = extract(bytes(p), 0)
        assert key is not None
        spans = f.lengths(key)
        assert all(lo <= hi for lo, hi in spans)
        assert all(a[1] + 1 < b[0] for a, b in pairwise(spans))
        for n in (0, 1, 59, 60, 63, 64, 65, 69, 70, 71, 79, 80, 81, 89, 90, 99, 100, 101, 199,
                  200, 201, 499, 500, 501, 899, 900, 901, 1500, 65535, 0xFFFFFFFF):
            assert f.match_key(key, n) == any(lo <= n <= hi for lo, hi in spans), (expr, n)
