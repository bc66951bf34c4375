"""The ERSPAN sender's link-layer path (``mirror.l2path``) follows the host's tables and
never loses a copy silently: an unresolved next hop falls back to the raw GRE socket
(counted, and the kernel resolves it), a neighbour's new MAC and a route through another
interface are picked up at the next look, an unanswered neighbour is counted as errors
(``EHOSTUNREACH``); every copy that was sent reaches the collector with a valid IPv4
header and a GRE sequence without holes.

Topology: namespace ``a`` (the sender) joined to namespace ``b`` (the collector,
10.78.9.9 on its loopback) by two veth pairs, ``eth0`` (10.78.0.0/24) and ``eth1``
(10.78.1.0/24); ``a`` routes 10.78.9.9 via b's eth0, later via b's eth1.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import GRE, Ether

from tests.helpers.netns import Lab, lab, require_tools, requires_root, sh
from tests.system.capture import tcpdump

pytestmark = [pytest.mark.system, requires_root]

REPO = Path(__file__).resolve().parents[2]
COLLECTOR = "10.78.9.9"
FAKE_MAC = "02:00:00:00:77:77"


class Driver:
    """``tests.helpers.erspan_tools drive`` in namespace ``a``: one RawGreSender."""

    def __init__(self, the_lab: Lab, ns: str) -> None:
        cfg = json.dumps({"remote_ip": COLLECTOR, "type": "erspan3", "session_id": 5})
        self.proc = the_lab.popen(ns, sys.executable, "-m", "tests.helpers.erspan_tools",
                                  "drive", cfg, cwd=REPO, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)

    def send(self, n: int) -> dict[str, Any]:
        """Send ``n`` copies (0: look at the tables again); the sender's state after."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the driver died"
        out: dict[str, Any] = json.loads(line)
        return out

    def close(self) -> None:
        """End the driver."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def two_links() -> Iterator[tuple[Lab, str, str]]:
    require_tools("tcpdump")
    with lab(prefix=f"vl{secrets.token_hex(2)}") as the_lab:
        a, b = the_lab.netns("a"), the_lab.netns("b")
        for i in (0, 1):
            end = the_lab.veth(f"x{i}", ns=a, inner_name=f"eth{i}", addr=f"10.78.{i}.1/24")
            sh("ip", "link", "set", end, "netns", b)
            sh("ip", "-n", b, "link", "set", end, "name", f"eth{i}")
            sh("ip", "-n", b, "addr", "add", f"10.78.{i}.2/24", "dev", f"eth{i}")
            sh("ip", "-n", b, "link", "set", f"eth{i}", "up")
            # an unanswered neighbour fails after one 100 ms probe (not 3 x 1 s)
            the_lab.exec(a, "sysctl", "-qw", f"net.ipv4.neigh.eth{i}.mcast_solicit=1",
                         f"net.ipv4.neigh.eth{i}.retrans_time_ms=100")
        sh("ip", "-n", b, "addr", "add", f"{COLLECTOR}/32", "dev", "lo")
        sh("ip", "-n", a, "route", "add", f"{COLLECTOR}/32", "via", "10.78.0.2", "dev", "eth0")
        yield the_lab, a, b


def _resolved_within(d: Driver, seconds: float = 3.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        st = d.send(0)
        if st["path"] == "resolved" or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def test_fallback_and_table_changes(two_links: tuple[Lab, str, str], tmp_path: Path) -> None:
    the_lab, a, b = two_links
    mac0 = the_lab.exec(b, "cat", "/sys/class/net/eth0/address").stdout.strip()
    mac1 = the_lab.exec(b, "cat", "/sys/class/net/eth1/address").stdout.strip()
    with (tcpdump(b, "eth0", tmp_path / "e0.pcap", "ip proto 47") as cap0,
          tcpdump(b, "eth1", tmp_path / "e1.pcap", "ip proto 47") as cap1):
        d = Driver(the_lab, a)
        try:
            # no neighbour entry yet: the raw socket sends (and the kernel resolves)
            st = d.send(1)
            assert st["path"] == "unresolved" and st["counters"]["unresolved"] == 1, st
            st = _resolved_within(d)
            assert st["hop"] == ["eth0", mac0.replace(":", ""), "10.78.0.2"], st
            st = d.send(3)
            assert st["counters"]["link_layer"] == 3, st
            # the neighbour's MAC changes: the next look addresses the new one
            sh("ip", "-n", a, "neigh", "replace", "10.78.0.2", "lladdr", FAKE_MAC, "dev",
               "eth0", "nud", "permanent")
            st = d.send(0)
            assert st["hop"][1] == FAKE_MAC.replace(":", ""), st
            st = d.send(2)
            # the route moves to eth1, whose next hop is not resolved yet
            sh("ip", "-n", a, "route", "replace", f"{COLLECTOR}/32", "via", "10.78.1.2",
               "dev", "eth1")
            st = d.send(0)
            assert st["path"] == "unresolved", st
            st = d.send(1)
            st = _resolved_within(d)
            assert st["hop"] == ["eth1", mac1.replace(":", ""), "10.78.1.2"], st
            st = d.send(2)
            c = st["counters"]
            assert (c["sent"], c["link_layer"], c["unresolved"], c["errors"]) == (
                9, 7, 2, 0), c
            # the next hop stops answering: copies are refused by the kernel and counted
            sh("ip", "-n", b, "addr", "del", "10.78.1.2/24", "dev", "eth1")
            sh("ip", "-n", a, "neigh", "flush", "dev", "eth1")
            st = d.send(0)
            assert st["path"] == "unresolved", st
            for _ in range(20):
                st = d.send(1)
                if st["counters"]["errors"]:
                    break
                time.sleep(0.1)
            c = st["counters"]
            assert c["errors"] > 0 and "EHOSTUNREACH" in c["last_error"], c
            assert c["link_layer"] == 7, c
        finally:
            d.close()
    # the nine copies sent before the next hop went away all reached the collector, in order
    pkts = [(0, p) for p in cap0.packets] + [(1, p) for p in cap1.packets]
    seqs: dict[int, tuple[int, str]] = {}
    for link, p in pkts:
        ip = p[IP]
        fixed = IP(bytes(ip))
        del fixed.chksum
        assert IP(bytes(fixed)).chksum == ip.chksum, ip.summary()  # scapy's checksum
        assert ip.dst == COLLECTOR and ip.flags == "DF"
        seqs[p[GRE].sequence_number] = (link, p[Ether].dst)
    assert sorted(seqs)[:9] == list(range(9)), sorted(seqs)
    assert [seqs[i][0] for i in range(9)] == [0] * 6 + [1] * 3
    assert {seqs[i][1] for i in range(4)} == {mac0}
    assert [seqs[i][1] for i in (4, 5)] == [FAKE_MAC] * 2
    assert {seqs[i][1] for i in (6, 7, 8)} == {mac1}
