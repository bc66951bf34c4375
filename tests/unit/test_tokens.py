"""Bearer tokens: shown once, stored only as salted HMAC-SHA256, checked in constant time,
expired and revoked ones refused by name, a newer store refused."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from vspan.config.access import Role
from vspan.control.tokens import (
    SCHEMA_VERSION,
    SqliteTokenStore,
    TokenError,
    TokenState,
    new_token,
)


@pytest.fixture
def store(tmp_path: Path) -> SqliteTokenStore:
    return SqliteTokenStore(str(tmp_path / "auth.db"))


def test_a_token_verifies_and_carries_its_role(store: SqliteTokenStore) -> None:
    token = store.create("ci", Role.MIRROR_ADMIN)
    check = store.verify(token)
    assert check.problem == "" and check.info is not None
    assert (check.info.name, check.info.role) == ("ci", Role.MIRROR_ADMIN)
    assert [t.name for t in store.list()] == ["ci"]


def test_tokens_are_random_and_well_formed() -> None:
    seen = {new_token()[0] for _ in range(200)}
    assert len(seen) == 200
    for token in seen:
        prefix, token_id, secret = token.split("_", 2)
        assert prefix == "vspan" and len(token_id) == 16 and len(secret) == 43


def test_only_a_hash_is_stored(store: SqliteTokenStore, tmp_path: Path) -> None:
    token = store.create("ci", Role.ADMIN)
    secret = token.split("_", 2)[2]
    raw = (tmp_path / "auth.db").read_bytes()
    assert secret.encode() not in raw and token.encode() not in raw
    with sqlite3.connect(tmp_path / "auth.db") as db:
        (digest, salt), = db.execute("SELECT digest, salt FROM tokens").fetchall()
    assert len(digest) == 32 and len(salt) == 16
    assert stat.S_IMODE(os.stat(tmp_path / "auth.db").st_mode) == 0o600


@pytest.mark.parametrize("bad", ["", "vspan_", "Bearer x", "vspan_zz_" + "a" * 43,
                                 "vspan_0123456789abcdef_" + "a" * 42,
                                 "vspan_0123456789abcdef_" + "a" * 43 + "\n"])
def test_malformed_tokens(store: SqliteTokenStore, bad: str) -> None:
    assert store.verify(bad).problem == "malformed"


def test_wrong_secret_and_unknown_id(store: SqliteTokenStore) -> None:
    token = store.create("ci", Role.ADMIN)
    prefix, token_id, secret = token.split("_", 2)
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    wrong = store.verify(f"{prefix}_{token_id}_{flipped}")
    assert wrong.info is None and wrong.problem == "unknown"
    unknown = store.verify(f"vspan_{'0' * 16}_{secret}")
    assert unknown.info is None and unknown.problem == "unknown"


def test_expired_and_revoked(store: SqliteTokenStore) -> None:
    now = time.time()
    short = store.create("short", Role.VIEWER, expires=now + 10)
    assert store.verify(short, now=now + 5).problem == ""
    late = store.verify(short, now=now + 10)
    assert late.problem == "expired" and late.info is not None and late.info.name == "short"
    gone = store.create("gone", Role.ADMIN)
    info = store.revoke("gone")
    assert info.state(time.time()) is TokenState.REVOKED
    check = store.verify(gone)
    assert check.problem == "revoked" and check.info is not None
    # revoking again keeps the first time; an unknown name is an error
    assert store.revoke("gone").revoked == info.revoked
    with pytest.raises(TokenError) as err:
        store.revoke("nobody")
    assert err.value.status == 404


def test_names_are_unique_while_a_token_lives(store: SqliteTokenStore) -> None:
    old = store.create("ci", Role.VIEWER)
    with pytest.raises(TokenError) as err:
        store.create("ci", Role.ADMIN)
    assert err.value.status == 409
    store.revoke("ci")
    new = store.create("ci", Role.OPERATOR)
    assert store.verify(old).info is None  # the old row is gone with its digest
    check = store.verify(new)
    assert check.info is not None and check.info.role is Role.OPERATOR


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 65, "ü", "a/b", "../x"])
def test_bad_names(store: SqliteTokenStore, name: str) -> None:
    with pytest.raises(TokenError) as err:
        store.create(name, Role.VIEWER)
    assert err.value.status == 422


def test_last_used_is_recorded_sparingly(store: SqliteTokenStore) -> None:
    token = store.create("ci", Role.VIEWER)
    now = time.time()
    store.verify(token, now=now)
    store.verify(token, now=now + 1)
    (info,) = store.list()
    assert info.last_used == now  # not rewritten within LAST_USED_EVERY
    store.verify(token, now=now + 61)
    assert store.list()[0].last_used == now + 61


def test_a_newer_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    SqliteTokenStore(str(path))
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(TokenError, match="newer vspan"):
        SqliteTokenStore(str(path))


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        SqliteTokenStore(str(path))
