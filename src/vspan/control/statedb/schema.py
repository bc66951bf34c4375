"""The state file's tables, its schema version and the migrations between versions.

A state file records every schema version it went through in ``schema_version``
(one row per migration, with the time and the vspan that applied it); its
version is the highest row. :data:`MIGRATIONS` maps each version to the
statements that bring a file from the version before to it: a new vspan that
changes the tables adds the next number, and an older file is migrated in one
transaction when it is opened. A file whose version is above
:data:`SCHEMA_VERSION` was written by a newer vspan and is refused, never
guessed at.
"""

from __future__ import annotations

import sqlite3
import time

from vspan import __version__

SCHEMA_VERSION = 1

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        # which switch the file belongs to, when it was made, when the MACs were saved
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        # the running configuration, and the configuration file as it was last applied
        "CREATE TABLE config (id INTEGER PRIMARY KEY CHECK (id = 1), running TEXT NOT NULL,"
        " source_path TEXT, source_config TEXT, saved REAL NOT NULL)",
        # the live changes (vspan.control.live), oldest first
        "CREATE TABLE live_changes (seq INTEGER PRIMARY KEY, change TEXT NOT NULL)",
        # the learned MAC table: age in seconds when it was saved (meta fdb_saved_at)
        "CREATE TABLE fdb (vlan INTEGER NOT NULL, mac BLOB NOT NULL, port TEXT NOT NULL,"
        " age REAL NOT NULL, PRIMARY KEY (vlan, mac)) WITHOUT ROWID",
        # captures: running ones, and those a crash interrupted
        "CREATE TABLE captures (run TEXT NOT NULL, id INTEGER NOT NULL, spec TEXT NOT NULL,"
        " started REAL NOT NULL, state TEXT NOT NULL, ended REAL,"
        " PRIMARY KEY (run, id))",
    ),
}

VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
    " applied REAL NOT NULL, vspan TEXT NOT NULL)"
)


def file_version(conn: sqlite3.Connection) -> int | None:
    """The schema version of an open file: None when it has no version table."""
    found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND "
                         "name = 'schema_version'").fetchone()
    if found is None:
        return None
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(conn: sqlite3.Connection, current: int, target: int = SCHEMA_VERSION) -> None:
    """Run the migrations after ``current`` up to ``target`` (the caller holds a
    transaction: either all of them happen or none)."""
    conn.execute(VERSION_TABLE)
    for version in range(current + 1, target + 1):
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version, applied, vspan) VALUES (?, ?, ?)",
                     (version, time.time(), __version__))
