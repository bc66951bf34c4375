"""The audit log: one JSON line per entry, private, filtered by time/identity/action/result,
rotated by size, robust against foreign lines and hostile field contents."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from vspan.control.audit import AuditFilter, AuditLog, parse_time, utc_text


def fill(log: AuditLog) -> None:
    log.record("uid:0(root)", "admin", "unix:pid=1", "mirror.create", "spy", "ok", 200, "",
               now=1000.0)
    log.record("token:ci", "viewer", "tcp:127.0.0.1:5", "mirror.create", "spy", "refused",
               403, "needs mirror-admin", now=2000.0)
    log.record("system", "-", "vspan", "mirror.stop", "spy", "ok", None, "time box over",
               now=3000.0)
    log.record("token:ci", "viewer", "tcp:127.0.0.1:6", "capture.start", "1", "refused", 403,
               now=4000.0)


def test_lines_are_json_objects_with_every_field(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "audit.jsonl"))
    fill(log)
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 4
    first = json.loads(lines[0])
    assert first == {"time": "1970-01-01T00:16:40.000Z", "identity": "uid:0(root)",
                     "role": "admin", "source": "unix:pid=1", "action": "mirror.create",
                     "target": "spy", "result": "ok", "status": 200, "detail": ""}
    assert stat.S_IMODE(os.stat(tmp_path / "audit.jsonl").st_mode) == 0o600


def test_filters(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "audit.jsonl"))
    fill(log)

    def actions(flt: AuditFilter, limit: int = 0) -> list[str]:
        return [f"{e.identity} {e.action}" for e in log.read(flt, limit)]

    assert actions(AuditFilter(identity="token:ci")) == ["token:ci mirror.create",
                                                         "token:ci capture.start"]
    assert actions(AuditFilter(identity="token:")) == actions(AuditFilter(identity="token:ci"))
    assert actions(AuditFilter(identity="token")) == []  # a prefix must end in ":"
    assert actions(AuditFilter(action="mirror.")) == ["uid:0(root) mirror.create",
                                                      "token:ci mirror.create",
                                                      "system mirror.stop"]
    assert actions(AuditFilter(since=2500.0)) == ["system mirror.stop", "token:ci capture.start"]
    assert actions(AuditFilter(result="refused", action="capture.start")) == \
        ["token:ci capture.start"]
    assert actions(AuditFilter(), limit=1) == ["token:ci capture.start"]


def test_hostile_field_contents_stay_one_line(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "audit.jsonl"))
    evil = 'x"\n{"identity": "uid:0(root)"}\r\n\u2028' + "y" * 10_000
    log.record("anonymous", "-", "tcp:1.2.3.4:5", "mirror.create", evil, "refused", 401, evil)
    lines = (tmp_path / "audit.jsonl").read_bytes().split(b"\n")
    assert len(lines) == 2 and lines[1] == b""
    (entry,) = log.read()
    assert entry.identity == "anonymous"
    assert len(entry.target) == 256 and entry.target.endswith("...")
    assert len(entry.detail) == 1024


def test_foreign_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    fill(log)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"time": "x"}\n[1, 2]\nnot json\n{"time": "2020-01-01T00:00:00.000Z", "iden')
    assert len(log.read()) == 4


def test_rotation_keeps_the_newest_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), max_bytes=400, keep=2)
    for i in range(30):
        log.record("uid:0(root)", "admin", "unix:pid=1", "acl.add", f"p/{i}", "ok", 200)
    files = log.files()
    assert files == [f"{path}.2", f"{path}.1", str(path)]
    targets = [e.target for e in log.read()]
    assert targets == sorted(targets, key=lambda t: int(t.split("/")[1]))  # oldest first
    assert targets[-1] == "p/29" and "p/0" not in targets  # the oldest file was dropped
    assert all(os.path.getsize(f) <= 400 + 200 for f in files)


def test_bad_result_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        AuditLog(str(tmp_path / "a")).record("x", "-", "y", "z", "", "maybe")


def test_time_text_round_trips() -> None:
    assert utc_text(0.123) == "1970-01-01T00:00:00.123Z"
    assert parse_time("1970-01-01T00:00:00.123Z") == pytest.approx(0.123)
    assert parse_time("1970-01-01T01:00:00+01:00") == 0.0
    assert parse_time("1970-01-01T00:00:10") == 10.0  # naive is UTC
