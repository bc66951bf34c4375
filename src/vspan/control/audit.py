"""The audit log: one JSON line per change, per mirror/capture start and stop, per refusal.

Each line is a JSON object with ``time`` (UTC, ISO 8601, milliseconds),
``identity``, ``role``, ``source``, ``action``, ``target``, ``result``
(``ok``, ``refused`` or ``failed``), ``status`` (the HTTP status, or null for
the switch's own actions) and ``detail``. Lines are appended whole (one
``write()`` on an ``O_APPEND`` descriptor) to a file of mode 0600; a change is
on disk (fsync) before its answer is sent. When the file passes ``max_bytes``
it is renamed to ``.1`` (older ones to ``.2`` ...; ``keep`` of them are kept).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

MAX_TARGET = 256
MAX_DETAIL = 1024
RESULTS = ("ok", "refused", "failed")


def utc_text(ts: float) -> str:
    """``ts`` (Unix time) as the log writes it: ``2024-05-01T12:00:00.123Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str) -> float:
    """Unix time of an ISO 8601 text (``Z`` or an offset; naive means UTC)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    time: str
    identity: str
    role: str
    source: str
    action: str
    target: str
    result: str
    status: int | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        """The entry as the JSON object written."""
        return asdict(self)


@dataclass(frozen=True)
class AuditFilter:
    """Which entries :meth:`AuditLog.read` returns (every condition must hold)."""

    since: float | None = None  # Unix time
    identity: str | None = None  # exact, or a prefix ending in ":" ("token:", "uid:")
    action: str | None = None  # exact, or a prefix ending in "." ("mirror.")
    result: str | None = None

    def match(self, e: AuditEntry) -> bool:
        """Whether ``e`` passes."""
        if self.since is not None:
            try:
                if parse_time(e.time) < self.since:
                    return False
            except ValueError:
                return False
        if self.identity is not None and not _matches(e.identity, self.identity, ":"):
            return False
        if self.action is not None and not _matches(e.action, self.action, "."):
            return False
        return self.result is None or e.result == self.result


def _matches(value: str, wanted: str, sep: str) -> bool:
    return value == wanted or (wanted.endswith(sep) and value.startswith(wanted))


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


class AuditLog:
    """Appends entries to ``path`` and reads them back (with the rotated files)."""

    def __init__(self, path: str, max_bytes: int = 64 << 20, keep: int = 4) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()

    def record(self, identity: str, role: str, source: str, action: str, target: str,
               result: str, status: int | None = None, detail: str = "", *,
               now: float | None = None, sync: bool = True) -> AuditEntry:
        """Append one entry (``sync``: on disk before returning) and return it."""
        if result not in RESULTS:
            raise ValueError(f"audit result must be one of {RESULTS}, not {result!r}")
        entry = AuditEntry(utc_text(time.time() if now is None else now), identity, role,
                           source, action, _clip(target, MAX_TARGET), result, status,
                           _clip(detail, MAX_DETAIL))
        line = (json.dumps(entry.as_dict(), ensure_ascii=True, separators=(",", ":"))
                + "\n").encode("ascii")
        with self._lock:
            self._rotate_if_big()
            old = os.umask(0o177)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                             0o600)
            finally:
                os.umask(old)
            try:
                os.write(fd, line)
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def _rotate_if_big(self) -> None:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return
        if size < self.max_bytes:
            return
        for i in range(self.keep - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        if self.keep > 0:
            os.replace(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)

    def files(self) -> list[str]:
        """The log's files, oldest first."""
        rotated = [f"{self.path}.{i}" for i in range(self.keep, 0, -1)]
        return [p for p in (*rotated, self.path) if os.path.exists(p)]

    def entries(self) -> Iterator[AuditEntry]:
        """Every readable entry, oldest first (lines that are not entries are skipped)."""
        for path in self.files():
            yield from read_entries(path)

    def read(self, flt: AuditFilter = AuditFilter(), limit: int = 0) -> list[AuditEntry]:
        """The entries passing ``flt``, oldest first; with ``limit``, the newest ``limit``."""
        out = [e for e in self.entries() if flt.match(e)]
        return out[-limit:] if limit else out


def read_entries(path: str) -> Iterator[AuditEntry]:
    """The entries of one audit file (a truncated or foreign line is skipped)."""
    fields = set(AuditEntry.__dataclass_fields__)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if not isinstance(data, dict) or set(data) != fields:
                continue
            try:
                yield AuditEntry(**data)
            except TypeError:
                continue
