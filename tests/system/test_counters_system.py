"""Port counters of a real switch with real traffic (issue 7, item 3: FLOODED)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.switchproc import running_switch
from tests.system.test_switch import hosts, ping, ports_yaml

pytestmark = pytest.mark.system


def test_arp_broadcasts_are_counted_as_flooded(netlab: Lab, tmp_path: Path) -> None:
    """Each ARP request ping sends is broadcast and flooded: one count per frame at the
    sending port (two copies each, to b and c); the unicast echo exchange is not."""
    require_tools("ping")
    h = hosts(netlab, {"a": "10.6.0.1/24", "b": "10.6.0.2/24", "c": "10.6.0.3/24"})
    with running_switch(tmp_path, ports_yaml(h)) as sw:
        ping(netlab, h["a"][0], "10.6.0.2", count=2)
        netlab.exec(h["a"][0], "ip", "neigh", "flush", "dev", "eth0")
        ping(netlab, h["a"][0], "10.6.0.2", count=2)  # one more ARP request
        ports = sw.show("counters")["ports"]
        metrics = sw.cli("show", "metrics").stdout
        table = sw.cli("show", "counters").stdout
    assert {p: ports[p]["flooded"] for p in ("a", "b", "c")} == {"a": 2, "b": 0, "c": 0}
    assert 'vspan_port_flooded_total{port="a"} 2.0' in metrics
    header, row_a = table.splitlines()[0].split(), next(
        line.split() for line in table.splitlines() if re.match(r"a\s", line))
    assert row_a[header.index("FLOODED")] == "2"
