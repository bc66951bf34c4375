"""On a real switch with namespaces pinging: a time-boxed mirror session and a byte-capped
mirror session end by themselves; a byte-capped capture ends by itself (the CLI returns and
says why) with a file no larger than the cap that tshark reads; each stop is audited as the
system with its reason, and ``vspan audit`` finds them by identity, action and time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.switchproc import SwitchProcess, running_switch
from tests.system.test_switch import hosts, ports_yaml

pytestmark = pytest.mark.system


def wait_for(what: str, check: Any, timeout: float = 30.0) -> None:
    """Poll ``check()`` until true (a generous bound: it says 'never happened', not 'slow')."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.2)


def session(sw: SwitchProcess, name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = sw.show("mirrors")
    return next(r for r in rows if r["name"] == name)


def audit(sw: SwitchProcess, *args: str) -> list[dict[str, Any]]:
    out = sw.cli("audit", "--json", *args).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_sessions_and_captures_stop_by_themselves(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping", "tshark")
    h = hosts(netlab, {"a": "10.31.0.1/24", "b": "10.31.0.2/24", "c": "10.31.0.3/24"})
    with running_switch(tmp_path, ports_yaml(h)) as sw:
        pinger = netlab.popen(h["a"][0], "ping", "-i", "0.05", "-s", "200", "10.31.0.2",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            made = sw.cli("mirror", "create", "boxed", "--source", "a", "--dest", "c",
                          "--duration", "2s")
            assert made.returncode == 0, made.stderr
            stop_at = datetime.fromisoformat(sw.show("config")["mirrors"]["boxed"]["stop_at"])
            sw.cli("mirror", "create", "capped", "--source", "b", "--dest", "c",
                   "--max-bytes", "3k")
            table = sw.cli("show", "mirrors").stdout
            assert f"until {stop_at.isoformat()}" in table and "/3072 B" in table
            # a byte-capped capture: the CLI returns when the switch stops it
            out = tmp_path / "capped.pcapng"
            cap = subprocess.run([sys.executable, "-m", "vspan.cli.main", "capture", "a", "b",
                                  "-w", str(out), "--max-bytes", "4k", "--socket", sw.socket],
                                 capture_output=True, text=True, timeout=120)
            assert cap.returncode == 0, cap.stderr
            assert "(max_bytes 4096 reached)" in cap.stderr
            wait_for("the time-boxed session stopping", lambda: not session(sw, "boxed")
                     ["enabled"])
            wait_for("the byte-capped session stopping", lambda: not session(sw, "capped")
                     ["enabled"])
        finally:
            pinger.terminate()
            pinger.wait(timeout=10)
        capped = session(sw, "capped")["counters"]
        assert 0 < capped["bytes"] <= 3072 and capped["capped"] >= 1
        assert session(sw, "boxed")["counters"]["mirrored"] > 0  # it did copy while it ran
        # the capture file: never past its cap, whole packets that tshark reads
        assert 0 < out.stat().st_size <= 4096
        lines = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e",
                                "frame.interface_name", "-e", "icmp.type"],
                               capture_output=True, text=True, check=True).stdout.splitlines()
        assert lines and all(line.split("\t")[1] in ("0", "8", "") for line in lines)
        # the stops, audited as the system with the reasons
        stops = {(e["action"], e["target"]): e for e in audit(sw, "--identity", "system")}
        boxed_stop = stops[("mirror.stop", "boxed")]
        assert boxed_stop["detail"].startswith("time box over")
        assert datetime.fromisoformat(boxed_stop["time"].replace("Z", "+00:00")) >= stop_at
        assert stops[("mirror.stop", "capped")]["detail"].startswith("max_bytes 3072 reached")
        cap_stop = next(e for (a, _), e in stops.items() if a == "capture.stop")
        assert cap_stop["detail"].startswith("max_bytes 4096 reached")
        assert all(e["role"] == "-" and e["source"] == "vspan" and e["result"] == "ok"
                   for e in stops.values())
        # the starts, by the socket's user (root here)
        starts = audit(sw, "--action", "mirror.create")
        assert [e["target"] for e in starts] == ["boxed", "capped"]
        assert all(e["identity"] == "uid:0(root)" and e["role"] == "admin" for e in starts)
        # filters: a family of actions, and a time
        assert {e["action"] for e in audit(sw, "--action", "capture.")} == \
            {"capture.start", "capture.stop"}
        assert audit(sw, "--since", "2999-01-01T00:00Z") == []
        assert len(audit(sw, "--since", "1h")) == len(audit(sw))
        # the same log read offline from the file
        offline = audit(sw, "--file", str(sw.state_dir / "audit.jsonl"), "--identity",
                        "system")
        assert offline == audit(sw, "--identity", "system")
        table = sw.cli("audit", "--identity", "system").stdout
        assert "mirror.stop" in table and "time box over" in table
