"""The accounting invariant of a real switch (issue 11, item 4; ``docs/accounting.md``):
``vspan show accounting``, the per-port terms in ``vspan show counters`` and the metrics,
and the check every system test gets when its switch is stopped."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.switchproc import SwitchProcess, running_switch
from tests.system.test_switch import hosts, ping, ports_yaml

pytestmark = pytest.mark.system


def test_real_traffic_is_accounted_for(netlab: Lab, tmp_path: Path) -> None:
    """Pings that pass (a-b) and pings c's port ACL drops: every frame each port received
    is forwarded, dropped with a reason or consumed, and the switch says so."""
    require_tools("ping")
    h = hosts(netlab, {"a": "10.7.0.1/24", "b": "10.7.0.2/24", "c": "10.7.0.3/24"})
    deny = ("policy: {acls: [{id: no-a, action: deny, direction: in, "
            "remote_ip: 10.7.0.1/32}]}")
    with running_switch(tmp_path, ports_yaml(h, {"c": deny})) as sw:
        ping(netlab, h["a"][0], "10.7.0.2", count=3)
        assert not ping(netlab, h["a"][0], "10.7.0.3", count=2, check=False)
        acct: dict[str, Any] = sw.show("accounting")
        counters = sw.show("counters")
        text = sw.cli("show", "accounting").stdout
        metrics = sw.cli("show", "metrics").stdout
    assert acct["ok"] and acct["failures"] == []
    rows = {p["port"]: p for p in acct["ports"]}
    a = rows["a"]
    assert a["received"] >= 5 and a["difference"] == 0
    assert a["received"] == a["forwarded"] + sum(a["dropped"].values()) + a["consumed"]
    assert a["dropped"].get("acl-deny", 0) >= 2  # the echo requests to c
    assert counters["ports"]["a"]["forwarded"] >= a["forwarded"]
    assert counters["rx_dropped"]["a"]["acl-deny"] == a["dropped"]["acl-deny"]
    assert "accounting holds" in text
    assert 'vspan_accounting_difference{port="a"} 0.0' in metrics
    # (the kernels' own IPv6 traffic may add frames between the reads)
    fwd = re.search(r'^vspan_port_forwarded_total\{port="a"\} (\S+)$', metrics, re.M)
    assert fwd is not None and float(fwd.group(1)) >= a["forwarded"]
    assert 'vspan_port_rx_dropped_total{port="a",reason="acl-deny"}' in metrics


def test_stopping_a_switch_whose_accounting_fails_fails_the_test(tmp_path: Path) -> None:
    """The check run before every system test's switch is stopped: a switch reporting a
    port whose frames do not add up fails with the port and the difference (and is
    stopped all the same)."""
    sw = SwitchProcess(tmp_path, "ports: {m: {type: memory}}\n")
    sw.start()
    real = sw.accounting()
    assert real is not None and real["ok"]  # an idle switch: 0 = 0
    broken = {"ok": False, "ports": [{"port": "m", "received": 3, "difference": 1}],
              "failures": ["port m: received 3, forwarded 2 + dropped 0 + consumed 0 = 2: "
                           "difference +1"]}
    sw.accounting = lambda: broken  # type: ignore[method-assign]
    proc = sw.proc
    with pytest.raises(AssertionError, match=r"port m: received 3.*difference \+1"):
        sw.stop()
    assert proc is not None and proc.poll() is not None  # stopped anyway
