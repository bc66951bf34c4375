"""``switch.poll`` on a real switch: it forwards in every mode, and its counters show how it
waited (issue 9, item 6). No timed assertions: the latency is measured by
``bench/bench_latency.py``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.switchproc import running_switch
from tests.system.test_switch import hosts, ports_yaml

pytestmark = pytest.mark.system

PINGS = 20


def _ping_all(lab: Lab, ns: str, dst: str) -> None:
    """``PINGS`` echoes 10 ms apart, each answered. Not ``-W``: once one reply came, ping
    waits only max(2 RTTs, the interval) for the last one (iputils), 10 ms here, which a
    loaded machine misses. ``-w`` waits until ``PINGS`` replies came (sending more while
    it waits); replies come back in order, so the first ``PINGS`` requests were answered."""
    proc = lab.exec(ns, "ping", "-c", str(PINGS), "-i", "0.01", "-w", "60", dst,
                    check=False, timeout=90)
    answered = {int(m) for m in re.findall(r"icmp_seq=(\d+) ", proc.stdout)}
    assert proc.returncode == 0 and answered >= set(range(1, PINGS + 1)), \
        proc.stdout + proc.stderr


@pytest.mark.parametrize("setting", ["off", "adaptive", "always", "predict"])
def test_the_switch_forwards_in_every_poll_mode(netlab: Lab, tmp_path: Path,
                                                setting: str) -> None:
    """Every echo crosses the switch both ways; the counters say how the engine waited:
    ``off`` never polls without blocking, ``always`` never blocks, ``adaptive`` blocks
    while idle and polls after traffic (a 100 ms window: the next echo, 10 ms later, is
    found by polling). ``predict``: adaptive as configured by default (200 µs, predicted
    windows for the echoes that come every 10-20 ms: timed waits and polls in one call,
    as many as the timing gives — any number — with nothing lost)."""
    require_tools("ping")
    mode = "adaptive" if setting == "predict" else setting
    h = hosts(netlab, {"a": "10.61.0.1/24", "b": "10.61.0.2/24"})
    extra = f"poll: {{mode: {mode}" + (", busy_us: 100000}" if setting == "adaptive" else "}")
    with running_switch(tmp_path, ports_yaml(h), switch_extra=extra) as sw:
        _ping_all(netlab, h["a"][0], "10.61.0.2")
        counters = sw.show("counters")
        text = sw.cli("show", "counters").stdout
        metrics = sw.cli("show", "metrics").stdout
    poll = counters["poll"]
    rx = sum(p["rx_frames"] for p in counters["ports"].values())
    assert poll["mode"] == mode
    assert rx >= 2 * PINGS
    if mode == "off":
        assert poll["busy_polls"] == poll["busy_frames"] == poll["empty_polls"] == 0
        assert poll["waits"] > 0
    elif mode == "always":
        assert poll["waits"] == 0
        assert poll["busy_frames"] >= 2 * PINGS
        assert poll["empty_polls"] > 0 and poll["empty_seconds"] > 0
    else:
        assert poll["waits"] > 0  # idle before the first frame: blocked
        assert poll["busy_polls"] > 0 and poll["busy_frames"] > 0
        assert poll["predict"] is True
        assert 0 <= poll["predicted_frames"] <= poll["busy_frames"]
    assert f"poll: {mode}" in text
    assert f'vspan_poll_mode{{mode="{mode}"}} 1.0' in metrics
    for name in ("waits", "busy_polls", "busy_frames", "empty_polls", "empty_seconds",
                 "predicted_windows", "predicted_frames"):
        assert f"vspan_poll_{name}_total " in metrics


def test_a_reload_changes_the_poll_mode_live(netlab: Lab, tmp_path: Path) -> None:
    """From ``off`` to ``always`` with ``vspan reload``: no restart, forwarding goes on,
    and from then on the engine no longer blocks."""
    require_tools("ping")
    h = hosts(netlab, {"a": "10.62.0.1/24", "b": "10.62.0.2/24"})
    with running_switch(tmp_path, ports_yaml(h), switch_extra="poll: {mode: off}") as sw:
        _ping_all(netlab, h["a"][0], "10.62.0.2")
        before = sw.show("counters")["poll"]
        assert before["mode"] == "off" and before["busy_polls"] == 0
        always = tmp_path / "always.yaml"
        always.write_text(sw.config.read_text(encoding="utf-8").replace(
            "poll: {mode: off}", "poll: {mode: always}"), encoding="utf-8")
        out = sw.cli("reload", str(always)).stdout
        assert out.splitlines() == ["switch setting changed: poll"]
        _ping_all(netlab, h["a"][0], "10.62.0.2")
        after = sw.show("counters")["poll"]
    assert after["mode"] == "always"
    assert after["busy_frames"] >= 2 * PINGS
