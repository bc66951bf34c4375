"""One switch's state file: opened (or refused with a way out), read and written in
transactions that are on disk when the call returns.

The file is SQLite in WAL mode with ``synchronous=FULL``: every commit is
fsync'ed before :class:`StateStore` returns, and a crash (``kill -9``, power
loss) in the middle of a write leaves the file as the last commit left it.
A new file is built beside its final name and renamed into place, so a file
that exists is always a whole one. A file that cannot be trusted — not a
database, damaged, emptied, another switch's, written by a newer vspan — is
refused with :class:`StateError`, whose message names the way out
(``vspan up --reset-state``, which moves the file aside with
:func:`reset_state` instead of deleting it). One process at a time may hold a
state file (an ``flock`` on ``<file>.lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from vspan.control.statedb.schema import SCHEMA_VERSION, file_version, migrate

STATE_FILE = "state.db"
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first bytes of every SQLite database
SIDE_FILES = ("-wal", "-shm")  # SQLite's companions of a WAL-mode database
T = TypeVar("T")
KEEP_CAPTURES = 50  # ended/interrupted capture records kept


class StateError(Exception):
    """The state file cannot be used; the message says why and what to do about it."""

    def __init__(self, path: str, reason: str, remedy: str = "") -> None:
        self.path, self.reason = path, reason
        self.remedy = remedy or (
            "the switch was not started and the file was left as it is; to start afresh "
            "from the configuration file, run `vspan up` again with --reset-state (the old "
            "state file is kept beside it as a backup)")
        super().__init__(f"state file {path}: {reason}")


class StateWriteError(Exception):
    """A write to the state file failed (disk full, I/O error); nothing of it was kept."""


@dataclass(frozen=True)
class SavedConfig:
    """The saved configuration side of the state."""

    running: dict[str, Any]  # the running configuration (config_data form)
    live: list[dict[str, Any]]  # LiveChanges.to_data()
    source_path: str | None  # the configuration file it was last loaded from
    source_config: dict[str, Any] | None  # that file's configuration as last applied
    saved: float  # Unix time of the write


@dataclass(frozen=True)
class SavedMac:
    """A learned MAC address as saved: its port by name and its age at the save."""

    vlan: int
    mac: bytes
    port: str
    age: float


@dataclass(frozen=True)
class CaptureRecord:
    """A capture the switch ran: ``state`` is running, stopped or interrupted."""

    run: str
    id: int
    spec: dict[str, Any]
    started: float
    state: str
    ended: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"run": self.run, "id": self.id, "started": self.started,
                "state": self.state, "ended": self.ended} | self.spec


def state_file(state_dir: str) -> str:
    """The state file of a switch whose state directory is ``state_dir``."""
    return os.path.join(state_dir, STATE_FILE)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_state_dir(directory: str) -> None:
    """Create the state directory (mode 0700) when missing (StateError when impossible)."""
    old = os.umask(0o077)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as err:
        raise StateError(directory, f"cannot create the state directory: {err.strerror}",
                         "give another with --state-dir or switch.state_dir") from None
    finally:
        os.umask(old)
    if not os.path.isdir(directory):
        raise StateError(directory, "the state directory is not a directory",
                         "give another with --state-dir or switch.state_dir")


def reset_state(path: str, now: float | None = None) -> list[str]:
    """Move the state file (and SQLite's side files) aside; return the new names.

    The backup is ``<file>.old-<UTC time>``, its side files renamed alike, so it
    can still be opened with ``sqlite3``. Nothing is deleted.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    base = f"{path}.old-{stamp}"
    n = 1
    while any(os.path.lexists(base + s) for s in ("", *SIDE_FILES)):
        n += 1
        base = f"{path}.old-{stamp}-{n}"
    moved: list[str] = []
    for suffix in ("", *SIDE_FILES):
        if os.path.lexists(path + suffix):
            os.rename(path + suffix, base + suffix)
            moved.append(base + suffix)
    if moved:
        _fsync_dir(os.path.dirname(os.path.abspath(path)))
    return moved


class StateLock:
    """An exclusive ``flock`` on ``<state file>.lock`` for the life of a process's use."""

    def __init__(self, path: str) -> None:
        self.path = path + ".lock"
        old = os.umask(0o077)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise StateError(path, f"cannot open {self.path}: {err.strerror}",
                             "give another state directory with --state-dir") from None
        finally:
            os.umask(old)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise StateError(path, f"in use by another vspan process (pid {holder})",
                             "stop that switch first, or give this one its own state "
                             "directory (--state-dir or switch.state_dir)") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Give the lock up."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
    if mode is None or str(mode[0]).lower() != "wal":
        conn.close()
        raise sqlite3.DatabaseError(f"cannot switch to WAL mode (journal mode {mode})")
    conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL at every commit
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _create(path: str, switch: str) -> None:
    """Build a new state file beside ``path`` and rename it into place."""
    tmp = path + ".new"
    for suffix in ("", *SIDE_FILES):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp + suffix)
    old = os.umask(0o077)
    try:
        conn = _connect(tmp)
        try:
            conn.execute("BEGIN IMMEDIATE")
            migrate(conn, 0, SCHEMA_VERSION)
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                             [("switch", switch), ("created", repr(time.time()))])
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    finally:
        os.umask(old)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


class StateStore:
    """An open state file of switch ``switch`` (see the module text); with ``reset`` an
    existing file is first moved aside (:func:`reset_state`) and a new one made.

    Every method is safe to call from any thread; writes are serialised.
    """

    def __init__(self, path: str, switch: str, reset: bool = False) -> None:
        self.path = path
        self.switch = switch
        self.created = False  # True when this open made the file
        self.backups: list[str] = []  # where reset moved an old file
        self.closed = False
        self.run = f"{time.time():.6f}-{os.getpid()}"  # this process's captures
        self._lock = threading.Lock()
        make_state_dir(os.path.dirname(os.path.abspath(path)))
        self._flock = StateLock(path)
        try:
            if reset:
                self.backups = reset_state(path)
            if not os.path.lexists(path):
                self._refuse_orphans()
                _create(path, switch)
                self.created = True
            self._conn = self._open()
        except BaseException:
            self._flock.release()
            raise
        try:
            self.interrupted = self._mark_interrupted()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening
    def _refuse_orphans(self) -> None:
        """A WAL without its database is a damaged state, not a missing one."""
        if os.path.lexists(self.path + "-wal"):
            raise StateError(self.path, f"the file is missing but {self.path}-wal "
                             "(its last writes) is there")

    def _open(self) -> sqlite3.Connection:
        """Inspect the file read-only (a refused file is not modified), then open it for
        writing and migrate it when it is older."""
        path = self.path
        if not os.path.isfile(path):
            raise StateError(path, "not a regular file")
        with open(path, "rb") as fh:
            header = fh.read(len(SQLITE_MAGIC))
        if not header and not os.path.exists(path + "-wal"):
            raise StateError(path, "empty: the file holds nothing (truncated?)")
        if header != SQLITE_MAGIC:
            raise StateError(path, "damaged, or not a SQLite database (its header is wrong)")
        version = self._run_checked(self._inspect)
        conn = self._run_checked(lambda: _connect(path))
        if version < SCHEMA_VERSION:
            try:
                self._migrate(conn, version)
            except BaseException:
                conn.close()
                raise
        return conn

    def _run_checked(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except sqlite3.DatabaseError as err:
            raise StateError(self.path, f"damaged, or not a SQLite database (SQLite: {err})") \
                from None

    def _inspect(self) -> int:
        """Check the file through a read-only connection; its schema version."""
        uri = f"file:{urllib.parse.quote(os.path.abspath(self.path))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            return self._check(conn)
        finally:
            conn.close()

    def _check(self, conn: sqlite3.Connection) -> int:
        path = self.path
        problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise StateError(path, "damaged (SQLite quick_check: "
                             f"{'; '.join(problems[:3])})")
        version = file_version(conn)
        if version is None or version == 0:
            empty = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
            raise StateError(path, "empty: the file holds no tables (truncated?)" if empty
                             else "not a vspan state file (it has no schema version)")
        if version > SCHEMA_VERSION:
            raise StateError(
                path, f"written by a newer vspan (state schema version {version}; this "
                      f"vspan reads versions up to {SCHEMA_VERSION})",
                "run the newer vspan that wrote it, or start afresh from the configuration "
                "file with `vspan up --reset-state` (the old file is kept beside it as a "
                "backup)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'switch'").fetchone()
        if row is None:
            raise StateError(path, "not a vspan state file (it names no switch)")
        if row[0] != self.switch:
            raise StateError(
                path, f"belongs to switch {row[0]!r}, not {self.switch!r}",
                "give this switch its own state directory (--state-dir or "
                "switch.state_dir), or start afresh with --reset-state (the old file "
                "is kept beside it as a backup)")
        return version

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        """Bring an older file to :data:`SCHEMA_VERSION` in one transaction."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrate(conn, version, SCHEMA_VERSION)
        except sqlite3.Error as err:
            conn.execute("ROLLBACK")
            raise StateError(self.path, f"cannot be migrated from state schema version "
                             f"{version} to {SCHEMA_VERSION} (SQLite: {err}); the file "
                             "was left at its version") from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close the file and give up its lock (writes nothing; again: nothing)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._flock.release()

    # ---------------------------------------------------------------- plumbing
    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed (and fsync'ed) when the block ends."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as err:
                raise StateWriteError(f"{self.path}: {err}") from None

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as err:
                raise StateError(self.path, f"damaged ({err})") from None

    def _meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    @staticmethod
    def _json(text: str | None, what: str, path: str) -> Any:
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError as err:
            raise StateError(path, f"damaged: {what} is not JSON ({err})") from None

    # ----------------------------------------------------------- configuration
    def load_config(self) -> SavedConfig | None:
        """The saved configuration and live changes (None when none was saved yet)."""
        rows = self._read("SELECT running, source_path, source_config, saved FROM config")
        if not rows:
            return None
        running, source_path, source_config, saved = rows[0]
        live = [self._json(r[0], "a live change", self.path) for r in
                self._read("SELECT change FROM live_changes ORDER BY seq")]
        run = self._json(running, "the running configuration", self.path)
        src = self._json(source_config, "the configuration file's last version", self.path)
        if not isinstance(run, dict) or (src is not None and not isinstance(src, dict)):
            raise StateError(self.path, "damaged: the saved configuration is not a mapping")
        return SavedConfig(run, live, source_path, src, float(saved))

    def save_config(self, running: dict[str, Any], live: list[dict[str, Any]],
                    source: tuple[str, dict[str, Any]] | None = None) -> None:
        """Replace the running configuration and the live changes in one transaction;
        ``source`` (path, configuration) records the file a (re)load applied."""
        with self._write() as conn:
            if source is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO config (id, running, source_path, source_config,"
                    " saved) VALUES (1, ?, ?, ?, ?)",
                    (json.dumps(running), source[0], json.dumps(source[1]), time.time()))
            else:
                done = conn.execute("UPDATE config SET running = ?, saved = ? WHERE id = 1",
                                    (json.dumps(running), time.time())).rowcount
                if not done:
                    conn.execute("INSERT INTO config (id, running, saved) VALUES (1, ?, ?)",
                                 (json.dumps(running), time.time()))
            conn.execute("DELETE FROM live_changes")
            conn.executemany("INSERT INTO live_changes (seq, change) VALUES (?, ?)",
                             [(i, json.dumps(ch)) for i, ch in enumerate(live)])

    # ---------------------------------------------------------------- MAC table
    def save_fdb(self, macs: list[SavedMac], at: float | None = None) -> None:
        """Replace the saved MAC table (ages as of ``at``, Unix time) in one transaction."""
        at = time.time() if at is None else at
        with self._write() as conn:
            conn.execute("DELETE FROM fdb")
            conn.executemany("INSERT OR REPLACE INTO fdb (vlan, mac, port, age) "
                             "VALUES (?, ?, ?, ?)",
                             [(m.vlan, m.mac, m.port, m.age) for m in macs])
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('fdb_saved_at', ?)",
                         (repr(at),))

    def load_fdb(self) -> tuple[list[SavedMac], float | None]:
        """The saved MAC table and when it was saved (Unix time; None: never)."""
        at = self._meta("fdb_saved_at")
        rows = self._read("SELECT vlan, mac, port, age FROM fdb ORDER BY vlan, mac")
        try:
            macs = [SavedMac(int(v), bytes(m), str(p), float(a)) for v, m, p, a in rows]
            return macs, None if at is None else float(at)
        except (TypeError, ValueError) as err:
            raise StateError(self.path, f"damaged: a saved MAC entry is invalid ({err})") \
                from None

    # ----------------------------------------------------------------- captures
    def _mark_interrupted(self) -> list[CaptureRecord]:
        """Captures another process left running (it died): marked interrupted; returned."""
        found = [c for c in self.captures() if c.state == "running" and c.run != self.run]
        if found:
            with self._write() as conn:
                conn.execute("UPDATE captures SET state = 'interrupted' WHERE state = "
                             "'running' AND run != ?", (self.run,))
        return [CaptureRecord(c.run, c.id, c.spec, c.started, "interrupted", c.ended)
                for c in found]

    def capture_started(self, capture_id: int, spec: dict[str, Any],
                        started: float | None = None) -> None:
        """Record a running capture of this process."""
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO captures (run, id, spec, started, state)"
                         " VALUES (?, ?, ?, ?, 'running')",
                         (self.run, capture_id, json.dumps(spec),
                          time.time() if started is None else started))
            conn.execute(
                "DELETE FROM captures WHERE state != 'running' AND rowid NOT IN (SELECT rowid"
                " FROM captures WHERE state != 'running' ORDER BY started DESC LIMIT ?)",
                (KEEP_CAPTURES,))

    def capture_ended(self, capture_id: int, state: str = "stopped") -> None:
        """A capture of this process stopped."""
        with self._write() as conn:
            conn.execute("UPDATE captures SET state = ?, ended = ? WHERE run = ? AND id = ?",
                         (state, time.time(), self.run, capture_id))

    def captures(self) -> list[CaptureRecord]:
        """Every capture record, oldest first."""
        out = []
        for run, cid, spec, started, state, ended in self._read(
                "SELECT run, id, spec, started, state, ended FROM captures ORDER BY started"):
            data = self._json(spec, "a capture record", self.path)
            out.append(CaptureRecord(str(run), int(cid), data if isinstance(data, dict)
                                     else {}, float(started), str(state),
                                     None if ended is None else float(ended)))
        return out

    # -------------------------------------------------------------------- info
    def info(self) -> dict[str, Any]:
        """What the file holds, for ``vspan show state``."""
        size = sum(os.path.getsize(self.path + s) for s in ("", *SIDE_FILES)
                   if os.path.exists(self.path + s))
        cfg = self._read("SELECT source_path, saved FROM config")
        versions = self._read("SELECT version, applied, vspan FROM schema_version "
                              "ORDER BY version")
        fdb_at = self._meta("fdb_saved_at")
        created = self._meta("created")
        return {
            "path": self.path,
            "schema_version": SCHEMA_VERSION,
            "migrations": [{"version": v, "applied": a, "vspan": s} for v, a, s in versions],
            "bytes": size,
            "created": float(created) if created else None,
            "config_saved": float(cfg[0][1]) if cfg else None,
            "config_source": cfg[0][0] if cfg else None,
            "live_changes": self._read("SELECT COUNT(*) FROM live_changes")[0][0],
            "fdb_saved": float(fdb_at) if fdb_at else None,
            "fdb_entries": self._read("SELECT COUNT(*) FROM fdb")[0][0],
            "captures": [c.as_dict() for c in self.captures()],
        }
