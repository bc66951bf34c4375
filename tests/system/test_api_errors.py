"""Requests that once made a real ``vspan up`` answer 500 (found by the schemathesis run of
test_api_schema): each is now refused with a documented 4xx that says why, audited with the
status the caller got, and leaves no traceback in the switch's log. A failure that is the
switch's own (its state file cannot be written) is still a 500, but logged with its
traceback: a 500 nobody can explain from the log is a bug of its own."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.netns import is_root
from tests.system.apiswitch import ApiSwitch, api_switch

pytestmark = pytest.mark.system

YAML = "ports: {a: {type: memory}, b: {type: memory}}\n"
NUL_PATH_ERROR = "String should match pattern"


@pytest.fixture(scope="module")
def switch() -> Iterator[tuple[ApiSwitch, str]]:
    if not is_root():
        pytest.skip("needs root to run a switch")
    with api_switch("au-errors-", YAML) as sw:
        yield sw, sw.token("errors-admin", "admin")


@pytest.fixture
def sw(switch: tuple[ApiSwitch, str]) -> Iterator[ApiSwitch]:
    """The switch; afterwards its log must hold no traceback written during the test."""
    api, _ = switch
    start = api.log.stat().st_size
    yield api
    logged = api.log.read_bytes()[start:].decode(errors="replace")
    assert "Traceback" not in logged, logged


def post(switch: tuple[ApiSwitch, str], path: str, body: Any = None,
         content: bytes | None = None) -> tuple[int, Any]:
    """POST as admin; (status, JSON answer)."""
    api, token = switch
    with api.client(token) as c:
        if content is not None:
            resp = c.post(path, content=content, headers={"Content-Type": "application/json"})
        else:
            resp = c.post(path, json=body)
    return resp.status_code, resp.json()


def last_audit(sw: ApiSwitch) -> dict[str, Any]:
    return sw.audit()[-1]


def test_reload_from_a_path_with_a_nul_byte_is_refused(sw: ApiSwitch,
                                                       switch: tuple[ApiSwitch, str]) -> None:
    # os.path.realpath raised ValueError (embedded null byte): 500
    status, body = post(switch, "/reload", {"path": f"{sw.workdir}/x\x00y.yaml"})
    assert status == 422, body
    assert body["details"] == [f"body.path: {NUL_PATH_ERROR} '^[^\\x00]*$'"]
    entry = last_audit(sw)
    assert (entry["action"], entry["status"], entry["result"]) == ("reload", 422, "failed")


def test_reload_from_a_file_that_is_not_utf8_is_refused(sw: ApiSwitch,
                                                        switch: tuple[ApiSwitch, str]) -> None:
    # reading it raised UnicodeDecodeError: 500
    binary = sw.workdir / "binary.yaml"
    binary.write_bytes(b"switch: {name: t}\n# \xff\xfe not text\n")
    before = sw.show("config")
    status, body = post(switch, "/reload", {"path": str(binary)})
    assert status == 422, body
    assert body["source"] == str(binary)
    assert body["details"] == ["not UTF-8 text (byte 20: invalid start byte)"]
    assert sw.show("config") == before
    entry = last_audit(sw)
    assert (entry["target"], entry["status"]) == (str(binary), 422)


def test_capture_to_a_path_with_a_nul_byte_is_refused(sw: ApiSwitch,
                                                      switch: tuple[ApiSwitch, str]) -> None:
    # was answered "filter: embedded null byte" (the path's error blamed on the filter)
    for path in (f"{sw.workdir}/x\x00.pcapng", "x\x00.pcapng"):
        status, body = post(switch, "/captures", {"ports": ["a"], "path": path})
        assert status == 422, body
        assert body["details"] == [f"body.path: {NUL_PATH_ERROR} '^[^\\x00]*$'"]
    api, token = switch
    with api.client(token) as c:
        assert c.get("/captures").json() == []


def test_a_body_that_is_not_utf8_is_audited_with_the_status_sent(
        sw: ApiSwitch, switch: tuple[ApiSwitch, str]) -> None:
    # the answer was 400 but the audit entry said 500 (Starlette's HTTPException was not
    # recognised, so the error counted as unexpected)
    status, body = post(switch, "/mirrors/m1", content=b'{"sources": ["\xff"]}')
    assert status == 400, body
    assert body == {"error": "There was an error parsing the body"}
    entry = last_audit(sw)
    assert (entry["action"], entry["target"], entry["status"], entry["result"],
            entry["detail"]) == ("mirror.create", "m1", 400, "failed",
                                 "There was an error parsing the body")


@pytest.mark.parametrize(("path", "body"), [
    ("/tokens", {"name": "d", "role": "viewer", "expires_in": True}),
    ("/captures", {"ports": ["a"], "max_packets": True}),
    ("/mirrors/m2", {"sources": [{"port": "a"}], "destination": {"port": "b"},
                     "sampling_rate": True}),
])
def test_a_boolean_where_a_number_belongs_is_refused(
        sw: ApiSwitch, switch: tuple[ApiSwitch, str], path: str, body: dict[str, Any]) -> None:
    # {"expires_in": true} made a token that expired after 1 s (schemathesis, ST201)
    status, answer = post(switch, path, body)
    assert status == 422, answer
    assert any("boolean" in detail or "valid integer" in detail or "valid number" in detail
               for detail in answer["details"]), answer
    entry = last_audit(sw)
    assert (entry["status"], entry["result"]) == (422, "failed")


def test_a_state_file_that_cannot_be_written_is_a_logged_500(
        switch: tuple[ApiSwitch, str]) -> None:
    """The switch's own failure: the change is undone, the answer says why, and the log
    has the traceback (it had nothing: the 500 came from an error handler)."""
    api, _ = switch
    start = api.log.stat().st_size
    before = api.show("config")
    # another writer holds the state file's write lock until the switch gives up (5 s)
    holder = sqlite3.connect(api.state_dir / "state.db", isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN IMMEDIATE")
        status, body = post(switch, "/mirrors/held", {"sources": ["a"],
                                                      "destinations": ["b"]})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert status == 500, body
    assert body["error"].startswith("not changed: the change could not be saved to the "
                                    "state file"), body
    assert "database is locked" in body["error"]
    assert api.show("config") == before
    logged = api.log.read_bytes()[start:].decode(errors="replace")
    assert "POST /mirrors/held answered 500" in logged, logged
    assert "Traceback" in logged and "StateWriteError" in logged, logged
    entry = last_audit(api)
    assert (entry["action"], entry["status"], entry["result"]) == ("mirror.create", 500,
                                                                  "failed")
