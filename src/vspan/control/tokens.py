"""Bearer tokens for the TCP API: created once, stored hashed, listed, revoked.

A token reads ``vspan_<id>_<secret>``: ``id`` (8 random bytes, hex) finds the
row, ``secret`` (32 random bytes, base64url) is what proves possession. The
store keeps only ``HMAC-SHA256(salt, secret)`` with a per-token random salt; a
256-bit random secret cannot be guessed, so a slow KDF would add nothing, and
the salt keeps equal secrets from having equal digests. Digests are compared
with :func:`hmac.compare_digest`; an unknown id still costs one HMAC, so the
time of a refusal says nothing about which part was wrong.

:class:`TokenStore` is the interface; :class:`SqliteTokenStore` keeps tokens in
one SQLite file (the switch's state store may host the same table later).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from vspan.config.access import Role

TOKEN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")  # fullmatch only
_TOKEN_RE = re.compile(r"vspan_([0-9a-f]{16})_([A-Za-z0-9_\-]{43})")  # fullmatch only
SCHEMA_VERSION = 1
LAST_USED_EVERY = 60.0  # seconds between last-used updates of one token (no write per request)


class TokenError(Exception):
    """A token operation was refused; ``status`` is the HTTP status that fits."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class TokenState(enum.StrEnum):
    """Whether a token may be used."""

    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class TokenInfo:
    """A stored token, without its secret."""

    name: str
    role: Role
    created: float  # Unix time
    expires: float | None = None
    revoked: float | None = None
    last_used: float | None = None

    def state(self, now: float) -> TokenState:
        """Revoked, expired or active at ``now``."""
        if self.revoked is not None:
            return TokenState.REVOKED
        if self.expires is not None and now >= self.expires:
            return TokenState.EXPIRED
        return TokenState.ACTIVE


@dataclass(frozen=True)
class TokenCheck:
    """The outcome of :meth:`TokenStore.verify`: the token, or why there is none."""

    info: TokenInfo | None
    problem: str = ""  # "malformed", "unknown", "expired", "revoked" (empty when valid)


class TokenStore(Protocol):
    """Where tokens live."""

    def create(self, name: str, role: Role, expires: float | None = None) -> str:
        """Make a token called ``name``; return the token itself (shown once, never stored)."""
        ...

    def list(self) -> list[TokenInfo]:
        """Every token (revoked and expired ones too), by name."""
        ...

    def revoke(self, name: str) -> TokenInfo:
        """Revoke the token called ``name`` (TokenError 404 when there is none)."""
        ...

    def verify(self, token: str, now: float | None = None) -> TokenCheck:
        """Check a presented token."""
        ...


def _digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode("ascii"), hashlib.sha256).digest()


def new_token() -> tuple[str, str, str]:
    """(token, id, secret) of a fresh random token."""
    token_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    return f"vspan_{token_id}_{secret}", token_id, secret


def check_name(name: str) -> None:
    """TokenError unless ``name`` is a valid token name."""
    if not TOKEN_NAME_RE.fullmatch(name):
        raise TokenError(f"{name!r} is not a token name (1-64 letters, digits, _ . -, "
                         "starting with a letter or digit)", 422)


class SqliteTokenStore:
    """Tokens in one SQLite file (created mode 0600)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._dummy_salt = secrets.token_bytes(16)
        self._init()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        old = os.umask(0o177)
        try:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        finally:
            os.umask(old)
        try:
            yield conn
        finally:
            conn.close()

    def _init(self) -> None:
        with self._db() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise TokenError(f"{self.path} was written by a newer vspan (token schema "
                                 f"{version}, this one knows {SCHEMA_VERSION})", 500)
            db.execute("BEGIN IMMEDIATE")
            db.execute("""CREATE TABLE IF NOT EXISTS tokens (
                name TEXT PRIMARY KEY, id TEXT UNIQUE NOT NULL, role TEXT NOT NULL,
                salt BLOB NOT NULL, digest BLOB NOT NULL, created REAL NOT NULL,
                expires REAL, revoked REAL, last_used REAL)""")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")

    @staticmethod
    def _info(row: tuple[str, str, float, float | None, float | None, float | None]
              ) -> TokenInfo:
        name, role, created, expires, revoked, last_used = row
        return TokenInfo(name, Role(role), created, expires, revoked, last_used)

    _COLUMNS = "name, role, created, expires, revoked, last_used"

    def create(self, name: str, role: Role, expires: float | None = None) -> str:
        """Make a token; a revoked or expired token of the same name is replaced."""
        check_name(name)
        token, token_id, secret = new_token()
        salt = secrets.token_bytes(16)
        now = time.time()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT revoked, expires FROM tokens WHERE name = ?",
                                 (name,)).fetchone()
                if row is not None:
                    revoked, old_expires = row
                    if revoked is None and (old_expires is None or old_expires > now):
                        raise TokenError(f"a token named {name!r} exists (revoke it first)",
                                         409)
                    db.execute("DELETE FROM tokens WHERE name = ?", (name,))
                db.execute("INSERT INTO tokens (name, id, role, salt, digest, created, expires)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (name, token_id, role.value, salt, _digest(salt, secret), now,
                            expires))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return token

    def list(self) -> list[TokenInfo]:
        """Every token, by name."""
        with self._db() as db:
            rows = db.execute(f"SELECT {self._COLUMNS} FROM tokens ORDER BY name").fetchall()
        return [self._info(r) for r in rows]

    def revoke(self, name: str) -> TokenInfo:
        """Mark the token revoked (it stays listed, so refusals can name it)."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE tokens SET revoked = ? WHERE name = ? AND revoked IS NULL",
                       (time.time(), name))
            row = db.execute(f"SELECT {self._COLUMNS} FROM tokens WHERE name = ?",
                             (name,)).fetchone()
            db.execute("COMMIT")
        if row is None:
            raise TokenError(f"no token named {name!r}", 404)
        return self._info(row)

    def verify(self, token: str, now: float | None = None) -> TokenCheck:
        """The token's info when ``token`` is one of ours, active at ``now``."""
        now = time.time() if now is None else now
        m = _TOKEN_RE.fullmatch(token)
        if m is None:
            return TokenCheck(None, "malformed")
        token_id, secret = m.groups()
        with self._db() as db:
            row = db.execute(f"SELECT {self._COLUMNS}, salt, digest FROM tokens WHERE id = ?",
                             (token_id,)).fetchone()
            if row is None:
                _digest(self._dummy_salt, secret)  # the same work as for a known id
                return TokenCheck(None, "unknown")
            info = self._info(row[:6])
            salt, digest = row[6], row[7]
            if not hmac.compare_digest(_digest(salt, secret), digest):
                return TokenCheck(None, "unknown")
            state = info.state(now)
            if state is not TokenState.ACTIVE:
                return TokenCheck(info, state.value)
            if info.last_used is None or now - info.last_used >= LAST_USED_EVERY:
                db.execute("UPDATE tokens SET last_used = ? WHERE id = ?", (now, token_id))
        return TokenCheck(info)
