"""On a real switch with namespaces: one namespace floods frames from random source MACs
as fast as a raw socket sends them while another pair pings; the pings all come back, the
flood's excess misses are dropped at its port with the reason ``upcall-budget`` and no
other port loses a frame to the budget. With the native and the Python replay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.switchproc import SwitchProcess
from tests.system.test_switch import hosts, ping, ports_yaml
from vspan.datapath import native

pytestmark = pytest.mark.system

# frames from ever new random source MACs (ethertype 0x88b5, local experimental: no host
# stack takes them) to a's MAC, sent until killed
FLOOD = r"""
import os, socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
dst = bytes.fromhex(sys.argv[1].replace(":", ""))
while True:
    src = bytearray(os.urandom(6))
    src[0] = (src[0] & 0xFC) | 0x02  # unicast, locally administered
    try:
        s.send(dst + bytes(src) + b"\x88\xb5" + bytes(46))
    except OSError:  # the veth's queue is full: go on
        pass
"""


def budget_drops(counters: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in counters["drops"]:
        if d["reason"] == "upcall-budget":
            out[d["port"]] = out.get(d["port"], 0) + int(d["frames"])
    return out


@pytest.mark.parametrize("fastpath", ["python", "native"])
def test_mac_flood_on_one_port_does_not_starve_a_pinging_pair(
        netlab: Lab, tmp_path: Path, fastpath: str, monkeypatch: pytest.MonkeyPatch) -> None:
    require_tools("ping")
    if fastpath == "native" and not native.available():
        pytest.skip("the C extension vspan.datapath._native was not built")
    monkeypatch.setenv("VSPAN_FASTPATH", fastpath)
    h = hosts(netlab, {"a": "10.47.0.1/24", "b": "10.47.0.2/24", "c": "10.47.0.3/24"})
    sw = SwitchProcess(tmp_path, ports_yaml(h))
    sw.config.write_text(sw.config.read_text(encoding="utf-8").replace(
        "switch: {", "switch: {upcall_budget: 200, ", 1), encoding="utf-8")
    sw.start()
    try:
        ping(netlab, h["a"][0], "10.47.0.2", count=2)  # the pair's MACs learned
        flood = netlab.popen(h["c"][0], sys.executable, "-c", FLOOD, "02:00:00:00:01:01",
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # let the flood run past the budget's one-second bucket, then ping through it
            ping(netlab, h["a"][0], "10.47.0.2", count=1, interval="0.2")
            ping(netlab, h["a"][0], "10.47.0.2", count=30, interval="0.05")
            assert flood.poll() is None, flood.stderr.read() if flood.stderr else ""
        finally:
            flood.kill()
            flood.wait(timeout=10)
        counters = sw.show("counters")
    finally:
        sw.stop()
    drops = budget_drops(counters)
    assert drops.get("c", 0) > 0, counters["drops"]
    assert set(drops) == {"c"}  # the pinging pair never met the budget
    assert counters["upcall_budget"]["rate"] == 200
    assert counters["upcall_budget"]["dropped"] == drops["c"]
