"""The state file on a temp dir: round trips, durability settings, refusals with a way out,
reset keeping a backup, one process at a time, migrations, crash atomicity."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vspan.control.statedb import schema as schema_mod
from vspan.control.statedb import store as store_mod
from vspan.control.statedb.store import (
    SavedMac,
    StateError,
    StateStore,
    reset_state,
    state_file,
)

# no switch, engine or port: the VSPAN_FASTPATH=python pass skips it (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent

LIVE = [{"item": {"kind": "mirror", "name": "mon", "value": {"sources": []}},
         "steps": [{"verb": "added", "command": "vspan mirror create", "at": 1.0}]}]


def new_store(tmp_path: Path, switch: str = "sw", reset: bool = False) -> StateStore:
    return StateStore(state_file(str(tmp_path / "state")), switch, reset)


def saved_store(tmp_path: Path) -> str:
    """A closed state file holding a configuration, a live change and two MACs."""
    st = new_store(tmp_path)
    st.save_config({"ports": {"a": {}}}, LIVE, ("/etc/sw.yaml", {"ports": {}}))
    st.save_fdb([SavedMac(10, b"\x02\x00\x00\x00\x00\x01", "a", 3.5),
                 SavedMac(0, b"\x02\x00\x00\x00\x00\x02", "b", 0.0)], at=1000.0)
    st.close()
    return st.path


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    st = new_store(tmp_path)
    assert st.created and st.load_config() is None and st.load_fdb() == ([], None)
    st.close()
    path = saved_store(tmp_path / "x")
    st = StateStore(path, "sw")
    assert not st.created
    saved = st.load_config()
    assert saved is not None
    assert saved.running == {"ports": {"a": {}}} and saved.live == LIVE
    assert (saved.source_path, saved.source_config) == ("/etc/sw.yaml", {"ports": {}})
    macs, at = st.load_fdb()
    assert at == 1000.0
    assert [(m.vlan, m.mac.hex(), m.port, m.age) for m in macs] == [
        (0, "020000000002", "b", 0.0), (10, "020000000001", "a", 3.5)]
    # a later save without a source keeps the file it came from
    st.save_config({"ports": {}}, [])
    again = st.load_config()
    assert again is not None and again.source_path == "/etc/sw.yaml" and again.live == []
    st.close()


def test_durability_settings_and_private_files(tmp_path: Path) -> None:
    st = new_store(tmp_path)
    st.save_config({}, [])
    conn = sqlite3.connect(st.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    with st._lock:  # the store's own connection: every commit fsyncs (FULL = 2)
        assert st._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    for name in os.listdir(tmp_path / "state"):
        assert stat.S_IMODE(os.stat(tmp_path / "state" / name).st_mode) == 0o600, name
    st.close()


def refuses(path: str, switch: str = "sw") -> StateError:
    before = Path(path).read_bytes() if os.path.exists(path) else None
    with pytest.raises(StateError) as info:
        StateStore(path, switch).close()
    err = info.value
    assert err.remedy, "a refusal always says what to do"
    after = Path(path).read_bytes() if os.path.exists(path) else None
    assert after == before, "a refused file is left as it was"
    return err


def test_garbage_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = saved_store(tmp_path)
    junk = random.Random(1).randbytes(20000)
    Path(path).write_bytes(junk)
    err = refuses(path)
    assert "not a SQLite database" in str(err) and "--reset-state" in err.remedy
    assert Path(path).read_bytes() == junk


@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_truncated_file_is_refused(tmp_path: Path, keep: float) -> None:
    path = saved_store(tmp_path)
    with open(path, "r+b") as fh:
        fh.truncate(int(os.path.getsize(path) * keep))
    err = refuses(path)
    assert ("damaged" in str(err) or "truncated" in str(err)), str(err)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = saved_store(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (?, 0, '9.9')",
                 (schema_mod.SCHEMA_VERSION + 1,))
    conn.commit()
    conn.close()
    err = refuses(path)
    assert "newer vspan" in str(err) and "--reset-state" in err.remedy


def test_other_databases_and_switches_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    assert "not a vspan state file" in str(refuses(str(other)))
    path = saved_store(tmp_path)
    err = refuses(path, switch="another")
    assert "belongs to switch 'sw'" in str(err) and "--state-dir" in err.remedy


def test_damaged_content_is_refused_at_load(tmp_path: Path) -> None:
    path = saved_store(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE config SET running = '{not json'")
    conn.commit()
    conn.close()
    st = StateStore(path, "sw")
    try:
        with pytest.raises(StateError, match="not JSON"):
            st.load_config()
    finally:
        st.close()


def test_a_wal_without_its_database_is_refused(tmp_path: Path) -> None:
    path = saved_store(tmp_path)
    os.rename(path, path + ".elsewhere")
    Path(path + "-wal").write_bytes(b"x" * 100)
    assert "-wal" in str(refuses(path))


def test_reset_keeps_an_openable_backup(tmp_path: Path) -> None:
    path = saved_store(tmp_path)
    st = StateStore(path, "sw", reset=True)
    try:
        assert st.created and st.load_config() is None
        assert len(st.backups) >= 1 and all(".old-" in b for b in st.backups)
        backup = st.backups[0]
    finally:
        st.close()
    old = StateStore(backup, "sw")
    try:
        saved = old.load_config()
        assert saved is not None and saved.live == LIVE
    finally:
        old.close()
    # a corrupt file is moved aside as it is
    Path(path).write_bytes(b"junk" * 10)
    moved = reset_state(path)
    assert Path(moved[0]).read_bytes() == b"junk" * 10 and not os.path.exists(path)


def test_one_process_at_a_time(tmp_path: Path) -> None:
    st = new_store(tmp_path)
    with pytest.raises(StateError, match=f"in use by another vspan process \\(pid {os.getpid()}"):
        new_store(tmp_path)
    st.close()
    new_store(tmp_path).close()


def test_migration_from_an_older_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    path = saved_store(tmp_path)  # version 1
    target = schema_mod.SCHEMA_VERSION + 1
    monkeypatch.setitem(schema_mod.MIGRATIONS, target,
                        ("CREATE TABLE tokens (name TEXT PRIMARY KEY)",))
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", target)
    st = StateStore(path, "sw")
    try:
        assert [m["version"] for m in st.info()["migrations"]] == [*range(1, target + 1)]
        saved = st.load_config()
        assert saved is not None and saved.live == LIVE  # the data came along
    finally:
        st.close()
    # a migration that fails leaves the file at its version
    monkeypatch.setitem(schema_mod.MIGRATIONS, target + 1, ("CREATE TABLE tokens (x)",))
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", target + 1)
    assert "cannot be migrated" in str(refuses(path))
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == target
    conn.close()


def test_captures_left_running_are_interrupted(tmp_path: Path) -> None:
    st = new_store(tmp_path)
    st.capture_started(1, {"ports": ["a"], "path": "/tmp/a.pcapng"})
    st.capture_started(2, {"ports": ["b"], "path": "/tmp/b.pcapng"})
    st.capture_ended(2)
    st.close()  # as if the process died: capture 1 never ended
    st = new_store(tmp_path)
    try:
        assert [(c.id, c.state) for c in st.interrupted] == [(1, "interrupted")]
        assert {(c.id, c.state) for c in st.captures()} == {(1, "interrupted"), (2, "stopped")}
    finally:
        st.close()


CHILD = textwrap.dedent("""
    import sys
    from vspan.control.statedb.store import SavedMac, StateStore
    st = StateStore(sys.argv[1], "sw")
    n = int(sys.argv[2])
    k = int(sys.argv[3])
    if sys.argv[4] == "hold":
        # one long transaction, held open half-way through: the parent kills us inside it
        st._conn.execute("PRAGMA cache_size = 20")  # spill pages into the WAL early
        with st._write() as conn:
            conn.execute("DELETE FROM fdb")
            conn.executemany("INSERT INTO fdb VALUES (?, ?, ?, 0)",
                             [(1, i.to_bytes(6, "big"), "torn") for i in range(n)])
            print("inside", flush=True)
            sys.stdin.read()
    while True:
        k += 1
        st.save_fdb([SavedMac(1, i.to_bytes(6, "big"), f"w{k}", 0.0) for i in range(n)],
                    at=float(k))
        print(k, flush=True)
""")


def consistent(path: str, n: int) -> int:
    """The generation the file holds; asserts it is one whole write."""
    st = StateStore(path, "sw")
    try:
        macs, at = st.load_fdb()
    finally:
        st.close()
    assert at is not None
    assert len(macs) == n and {m.port for m in macs} == {f"w{int(at)}"}
    return int(at)


def test_kill_inside_a_long_transaction_leaves_the_previous_state(tmp_path: Path) -> None:
    n = 20000
    path = state_file(str(tmp_path / "state"))
    st = StateStore(path, "sw")
    st.save_fdb([SavedMac(1, i.to_bytes(6, "big"), "w1", 0.0) for i in range(n)], at=1.0)
    st.close()
    child = subprocess.Popen([sys.executable, "-c", CHILD, path, str(n), "1", "hold"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "inside"
        assert os.path.getsize(path + "-wal") > 0  # the transaction did write pages
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert consistent(path, n) == 1


def test_kill_at_random_moments_of_a_write_loop(tmp_path: Path) -> None:
    n = 20000
    path = state_file(str(tmp_path / "state"))
    st = StateStore(path, "sw")
    st.save_fdb([SavedMac(1, i.to_bytes(6, "big"), "w1", 0.0) for i in range(n)], at=1.0)
    st.close()
    rng = random.Random(7)
    last = 1
    for _ in range(5):
        child = subprocess.Popen([sys.executable, "-c", CHILD, path, str(n), str(last),
                                  "loop"], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            child.stdout.readline()  # at least one write committed
            time.sleep(rng.uniform(0.0, 0.3))
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        got = consistent(path, n)
        assert got > last  # the committed writes are there, whole
        last = got


def test_info_describes_the_file(tmp_path: Path) -> None:
    path = saved_store(tmp_path)
    st = StateStore(path, "sw")
    try:
        info = st.info()
    finally:
        st.close()
    assert info["path"] == path and info["live_changes"] == 1 and info["fdb_entries"] == 2
    assert info["config_source"] == "/etc/sw.yaml" and info["fdb_saved"] == 1000.0
    json.dumps(info)
