"""`vspan show mirrors` shows copies cut to the path MTU, not only those cut to the session's
length (the switch runs in a namespace without a default route; the collector is a namespace
behind an underlay link)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.test_switch import ping
from tests.system.test_two_hosts import NsSwitch, wire

pytestmark = pytest.mark.system


def test_show_mirrors_table_shows_mtu_truncation(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    host, a, b, col = (netlab.netns(n) for n in ("h", "a", "b", "col"))
    n = netlab.name
    wire(netlab, "wa", (host, n("pa")), (a, "eth0"), "02:00:00:00:0f:01", addr_b="10.15.0.1/24")
    wire(netlab, "wb", (host, n("pb")), (b, "eth0"), "02:00:00:00:0f:02", addr_b="10.15.0.2/24")
    wire(netlab, "wc", (host, n("u0")), (col, "eth0"), addr_a="198.18.8.1/30",
         addr_b="198.18.8.2/30")
    cfg = (f"ports:\n  a: {{interface: {n('pa')}}}\n  b: {{interface: {n('pb')}}}\n"
           "  c: {type: memory}\n"
           "mirrors:\n"
           "  er: {sources: [a], erspan: {type: erspan2, remote_ip: 198.18.8.2, mtu: 576}}\n"
           "  short: {sources: [b], destinations: [c], mirrored_packet_length: 100}\n")
    sw = NsSwitch(host, tmp_path / "h", cfg)
    try:
        sw.start()
        ping(netlab, a, "10.15.0.2", count=3, size=1000)
        rows = sw.mirrors()
        table = sw.cli("show", "mirrors").stdout
    finally:
        sw.stop()
    er, short = rows["er"]["counters"], rows["short"]["counters"]
    assert er["truncated"] == 0 and er["encap_truncated"] >= 6  # requests and replies
    assert short["truncated"] >= 6 and "encap_truncated" not in short
    lines = {ln.split()[0]: ln for ln in table.splitlines()[1:]}
    assert f" 0 (+{er['encap_truncated']} mtu) " in lines["er"], table
    assert f" {short['truncated']} " in lines["short"] and "mtu" not in lines["short"], table
