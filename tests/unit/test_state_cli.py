"""`vspan up` with a state file, as a real process on memory ports (no root needed):
kill -9 and restart restores live ACLs, firewall rules and mirror sessions (through the
CLI); `vspan show config` after a restore is accepted by check-config; a capture a crash
interrupted is shown, not restarted; a damaged, emptied or newer state file is refused
with the way out, and --reset-state recovers keeping a backup."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.switchproc import VSPAN, SwitchProcess
from vspan.cli.client import request

PORTS = """
ports:
  web1: {type: memory, policy: {addresses: [10.0.0.5]}}
  web2: {type: memory}
  sniff: {type: memory}
"""


@pytest.fixture
def sw(tmp_path: Path) -> Iterator[SwitchProcess]:
    s = SwitchProcess(tmp_path, PORTS)
    try:
        yield s
    finally:
        s.stop()


def up(sw: SwitchProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`vspan up` that is expected to stop by itself (a refusal)."""
    return subprocess.run([*VSPAN, "up", "-c", str(sw.config), *args], capture_output=True,
                          text=True, timeout=30)


def live_changes(sw: SwitchProcess) -> None:
    sw.cli("acl", "add", "web1", "--action", "deny", "--direction", "both", "--remote-ip",
           "10.66.0.0/16", "--id", "no-66")
    sw.cli("firewall", "rule", "add", "--section", "lab", "--id", "icmp-ok", "--action",
           "allow", "--service", "icmp")
    sw.cli("mirror", "create", "mon", "--source", "web1", "--dest", "sniff")


def test_kill_9_and_restart_restores_live_changes(sw: SwitchProcess, tmp_path: Path) -> None:
    sw.start()
    live_changes(sw)
    sw.kill()  # the commands returned: their changes are on disk
    sw.start()
    assert "restored the saved state with 3 live changes" in sw.log.read_text()
    acl = json.loads(sw.cli("acl", "show", "web1", "--json").stdout)
    assert [e["id"] for e in acl["acls"]] == ["no-66"]
    assert [m["name"] for m in sw.show("mirrors")] == ["mon"]
    fw = json.loads(sw.cli("firewall", "show", "--json").stdout)
    assert [r["id"] for s in fw["config"]["sections"] for r in s["rules"]] == ["icmp-ok"]
    live = sw.cli("show", "live").stdout
    assert "acl web1/no-66" in live and "mirror mon" in live and "not in file" in live
    state = sw.show("state")
    assert state["started"]["how"] == "restored" and state["live_changes"] == 3
    # the restored running configuration saves as a file check-config accepts
    saved = tmp_path / "saved.yaml"
    saved.write_text(sw.cli("show", "config").stdout, encoding="utf-8")
    check = subprocess.run([*VSPAN, "check-config", str(saved)], capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    # and a plain reload still refuses to undo the restored live changes
    proc = sw.cli("reload", check=False)
    assert proc.returncode == 1 and "would undo 3 live changes" in proc.stderr


def test_edited_file_is_taken_or_reported_at_restart(sw: SwitchProcess) -> None:
    sw.start()
    sw.cli("mirror", "create", "mon", "--source", "web1", "--dest", "sniff")
    sw.stop()
    # an edit that would undo the live mirror session: reported, the state runs
    sw.config.write_text(sw.config.read_text() + "  web3: {type: memory}\n")
    sw.start()
    log = sw.log.read_text()
    assert "changed since it was last applied, but taking it would undo 1 live change" in log
    assert "removes mirror mon" in log and "vspan reload --keep-live" in log
    assert [m["name"] for m in sw.show("mirrors")] == ["mon"]
    assert "web3" not in {p["name"] for p in sw.show("ports")}
    sw.cli("reload", "--keep-live")  # the admin takes it
    assert "web3" in {p["name"] for p in sw.show("ports")}
    sw.stop()
    sw.start()
    assert "restored the saved state with 1 live change" in sw.log.read_text()
    assert "web3" in {p["name"] for p in sw.show("ports")}


def test_capture_interrupted_by_a_crash_is_shown(sw: SwitchProcess, tmp_path: Path) -> None:
    sw.start()
    path = tmp_path / "web1.pcapng"
    started = subprocess.Popen([*VSPAN, "capture", "web1", "-w", str(path), "--socket",
                                sw.socket], stderr=subprocess.PIPE, text=True)
    try:
        assert started.stderr is not None
        assert "capturing on web1" in started.stderr.readline()
        sw.kill()
    finally:
        started.kill()
        started.wait()
    sw.start()
    assert "was interrupted by the last stop; not restarted" in sw.log.read_text()
    state = sw.show("state")
    (cut,) = state["started"]["interrupted_captures"]
    assert cut["ports"] == ["web1"] and cut["path"] == str(path)
    assert "interrupted" in sw.cli("show", "state").stdout
    assert request(sw.socket, "GET", "/captures") == []  # not restarted


def state_file(sw: SwitchProcess) -> Path:
    return sw.state_dir / "state.db"


def break_truncate(p: Path) -> None:
    with open(p, "r+b") as fh:
        fh.truncate(os.path.getsize(p) // 2)


def break_garbage(p: Path) -> None:
    p.write_bytes(os.urandom(8192))


def break_empty(p: Path) -> None:
    p.write_bytes(b"")


def break_newer(p: Path) -> None:
    conn = sqlite3.connect(p)
    conn.execute("INSERT INTO schema_version VALUES (99, 0, '9.9')")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(("damage", "says"), [
    (break_truncate, "damaged"), (break_garbage, "not a SQLite database"),
    (break_empty, "empty"), (break_newer, "written by a newer vspan (state schema version 99"),
])
def test_unusable_state_is_refused_then_reset(sw: SwitchProcess, damage: object,
                                              says: str) -> None:
    sw.start()
    sw.cli("mirror", "create", "mon", "--source", "web1", "--dest", "sniff")
    sw.stop()
    path = state_file(sw)
    assert callable(damage)
    damage(path)
    before = path.read_bytes()
    proc = up(sw)
    assert proc.returncode == 1
    assert f"state file {path}: " in proc.stderr and says in proc.stderr, proc.stderr
    assert "--reset-state" in proc.stderr
    assert path.read_bytes() == before  # left as it was
    sw.up_args = ("--reset-state",)
    sw.start()
    log = sw.log.read_text()
    assert f"--reset-state: the old state is kept as {path}.old-" in log
    assert "no saved state: starting from" in log
    assert sw.show("mirrors") == []
    backups = [p for p in sw.state_dir.iterdir() if p.name.startswith("state.db.old-")
               and not p.name.endswith(("-wal", "-shm"))]
    assert len(backups) == 1 and backups[0].read_bytes() == before


def test_a_second_switch_on_the_same_state_is_refused(sw: SwitchProcess, tmp_path: Path
                                                      ) -> None:
    sw.start()
    other = tmp_path / "other.yaml"
    other.write_text(sw.config.read_text().replace(sw.socket, str(tmp_path / "o.sock")))
    proc = subprocess.run([*VSPAN, "up", "-c", str(other)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 1 and "in use by another vspan process" in proc.stderr
