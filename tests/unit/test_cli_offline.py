"""The CLI without a running switch: check-config and offline trace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

VSPAN = [sys.executable, "-m", "vspan.cli.main"]

CFG = """
ports:
  web: {type: memory, vlan: {mode: access, id: 10}}
  db: {type: memory, vlan: {mode: access, id: 10}}
  other: {type: memory, vlan: {mode: access, id: 20}}
  up: {type: memory, vlan: {mode: trunk, allowed: [10, 20]}}
  sniff: {type: memory}
mirrors:
  mon: {sources: [web], destinations: [sniff]}
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VSPAN, *args], capture_output=True, text=True, timeout=60)


def test_check_config_ok(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(CFG)
    proc = run("check-config", str(cfg))
    assert proc.returncode == 0 and "5 ports, 1 mirror sessions" in proc.stdout


def test_offline_trace_text(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(CFG)
    proc = run("trace", "-c", str(cfg), "-i", "web", "--src-ip", "10.0.0.1", "--dst-ip",
               "10.0.0.2", "--proto", "tcp", "--dport", "5432")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "session mon: ingress copy -> sniff" in out
    assert "joins VLAN 10" in out
    assert "flood" in out and "db" in out and "up" in out
    assert "leaves tagged VID 10 (tag op: push)" in out
    assert "other" not in out.split("verdict:")[1]


def test_offline_trace_json_drop(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(CFG)
    proc = run("trace", "-c", str(cfg), "-i", "up", "--vlan", "30", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["decision"]["drops"][0]["reason"] == "vlan-not-allowed"
    # the decision stops at the VLAN stage; replaying it, the frame is dropped there
    assert [n["stage"] for n in data["trace"]][-2:] == ["vlan", "replay"]
    assert data["trace"][-1]["children"][0]["stage"] == "drop"
    assert data["outcome"]["drops"][0]["reason"] == "vlan-not-allowed"


def test_offline_trace_qinq_to_untagged_ports(tmp_path: Path) -> None:
    """``--vlan 10 --vlan 20`` is 802.1Q over 802.1Q; the access ports of VLAN 10 would
    see the inner tag once the outer one is popped, so those copies are dropped."""
    cfg = tmp_path / "s.yaml"
    cfg.write_text(CFG)
    proc = run("trace", "-c", str(cfg), "-i", "up", "--vlan", "10", "--vlan", "20", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    drops = {(d["reason"], d["port"]) for d in data["decision"]["drops"]}
    assert drops == {("vlan-inner-tag", "web"), ("vlan-inner-tag", "db")}
    assert "expose the inner tag VID 20" in proc.stdout


def test_trace_without_switch_says_so(tmp_path: Path) -> None:
    proc = run("trace", "-i", "web", "--socket", str(tmp_path / "none.sock"))
    assert proc.returncode == 1 and "no switch is running" in proc.stderr
