"""An ERSPAN session on a switch whose destination becomes reachable only after start-up.

The switch runs inside a host namespace with no default route, so copies to an
unreachable collector go nowhere (never out of the machine).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scapy.contrib.erspan import ERSPAN_III
from scapy.layers.inet import ICMP
from scapy.layers.l2 import ARP, GRE

from tests.helpers.netns import Lab, require_tools
from tests.system.capture import tcpdump
from tests.system.test_switch import ping
from tests.system.test_two_hosts import NsSwitch, wire

pytestmark = pytest.mark.system


def test_unreachable_erspan_destination_is_retried(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping", "tcpdump")
    host, a, b, col = (netlab.netns(n) for n in ("h", "a", "b", "col"))
    n = netlab.name
    wire(netlab, "wa", (host, n("pa")), (a, "eth0"), "02:00:00:00:0e:01", addr_b="10.14.0.1/24")
    wire(netlab, "wb", (host, n("pb")), (b, "eth0"), "02:00:00:00:0e:02", addr_b="10.14.0.2/24")
    for ns, ifname in ((host, n("pa")), (host, n("pb")), (a, "eth0"), (b, "eth0")):
        netlab.exec(ns, "ip", "link", "set", ifname, "up")
    cfg = (f"ports:\n  a: {{interface: {n('pa')}}}\n  b: {{interface: {n('pb')}}}\n"
           "mirrors:\n  er: {sources: [a], erspan: {type: erspan3, remote_ip: 198.18.7.2, "
           "session_id: 9}}\n")
    sw = NsSwitch(host, tmp_path / "h", cfg)
    try:
        sw.start()
        status = sw.mirrors()["er"]["status"]
        assert status.startswith("cannot reach 198.18.7.2"), status
        ping(netlab, a, "10.14.0.2", count=1)
        assert sw.mirrors()["er"]["counters"]["dropped"] >= 1
        # now the collector appears, behind an underlay link of the host namespace
        wire(netlab, "wc", (host, n("u0")), (col, "eth0"), addr_a="198.18.7.1/30",
             addr_b="198.18.7.2/30")
        for ns, ifname in ((host, n("u0")), (col, "eth0")):
            netlab.exec(ns, "ip", "link", "set", ifname, "up")
        deadline = time.monotonic() + 10
        while sw.mirrors()["er"]["status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.3)
        assert sw.mirrors()["er"]["status"] == "ok"
        with tcpdump(col, "eth0", tmp_path / "col.pcap", "ip proto 47", expect=6) as cap:
            ping(netlab, a, "10.14.0.2", count=3)
        counters = sw.mirrors()["er"]["counters"]
    finally:
        sw.stop()
    gre = [p for p in cap.packets if p.haslayer(GRE)]  # scapy decodes ERSPAN III inside
    echo = [p for p in gre if p.haslayer(ICMP)]
    assert len(echo) == 6, [p.summary() for p in cap.packets]  # 3 requests + 3 replies
    # on a slow machine the neighbour entry may go stale between the pings: the ARP
    # probe and its answer are mirrored too, and nothing else
    assert all(p.haslayer(ARP) for p in gre if not p.haslayer(ICMP)), [
        p.summary() for p in gre]
    assert all(p[GRE].proto == 0x22EB and p.haslayer(ERSPAN_III) for p in gre)
    assert counters["encap_sent"] >= 6 and counters["encap_errors"] == 0
