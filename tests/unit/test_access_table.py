"""The access table covers every route of the API exactly, every API route is guarded, and the
table says what issue 11 says each role may do. Checked in-process (no root, no sockets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from vspan.api.access import ACCESS, Guard, GuardedRoute, Rule, check_table, route_keys
from vspan.api.rest import create_app
from vspan.config.access import Role
from vspan.config.load import parse_config
from vspan.config.model import PortConfig
from vspan.control.agent import Agent
from vspan.control.audit import AuditLog
from vspan.control.roles import GRANTS, Permission, roles_with
from vspan.control.tokens import SqliteTokenStore
from vspan.ports.base import Port
from vspan.ports.memory import MemoryPort

P = Permission


def memory(name: str, _cfg: PortConfig) -> Port:
    return MemoryPort(name)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    cfg = parse_config({"switch": {"state_dir": str(tmp_path)},
                        "ports": {"a": {"type": "memory"}, "b": {"type": "memory"}}}, "t")
    a = Agent(cfg, memory)
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def app(agent: Agent) -> FastAPI:
    return create_app(agent)


def test_every_route_has_exactly_one_rule(app: FastAPI) -> None:
    keys = route_keys(app.routes)
    assert len(keys) == len(set(keys))
    everywhere = {k for k, r in ACCESS.items() if not r.only_in}
    assert set(keys) == everywhere, (
        f"routes without a rule: {set(keys) - everywhere}; "
        f"rules without a route: {everywhere - set(keys)}")


def test_every_api_route_is_guarded(app: FastAPI) -> None:
    api_routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert api_routes and all(isinstance(r, GuardedRoute) for r in api_routes)
    # the only routes outside the guard are FastAPI's own pages, and they are public
    others = [k for k in route_keys(app.routes)
              if k not in {(m, r.path) for r in api_routes for m in r.methods or ()}]
    assert others and all(ACCESS[k].permission is P.PUBLIC for k in others)


def test_an_app_with_an_unlisted_or_unguarded_route_is_refused(agent: Agent) -> None:
    app = create_app(agent)
    app.router.add_api_route("/sneaky", lambda: {}, methods=["POST"])
    with pytest.raises(RuntimeError, match="without an access rule"):
        check_table(app)
    app2 = create_app(agent)
    app2.router.routes.append(APIRoute("/health", lambda: {}, methods=["PUT"]))
    ACCESS[("PUT", "/health")] = Rule(P.READ)
    try:
        with pytest.raises(RuntimeError, match="not guarded"):
            check_table(app2)
    finally:
        del ACCESS[("PUT", "/health")]


def _who_may(method: str, path: str) -> set[str]:
    return {r.value for r in roles_with(ACCESS[(method, path)].permission)}


def test_the_table_says_what_the_issue_says() -> None:
    everyone = {"viewer", "operator", "mirror-admin", "admin"}
    for (method, path), rule in ACCESS.items():
        if rule.permission in (P.PUBLIC, P.IDENTIFIED):
            continue
        who = _who_may(method, path)
        if path.startswith(("/tokens", "/audit")):
            assert who == {"admin"}, (method, path)  # admin: tokens (and the audit log)
        elif path.startswith(("/mirrors", "/captures")) and (
                method != "GET" or path.endswith("/file")):
            assert who == {"mirror-admin", "admin"}, (method, path)  # seeing traffic
        elif (method, path) == ("GET", "/observe"):
            assert who == {"mirror-admin", "admin"}, (method, path)  # live frame headers
        elif method == "GET" or path in ("/trace", "/policy/explain"):
            assert who == everyone, (method, path)  # viewer: read (trace/explain change nothing)
        else:  # ports, VLANs, ACLs, firewall, reload
            assert who == {"operator", "admin"}, (method, path)
    # every change is audited; no read is
    for (method, path), rule in ACCESS.items():
        # (a capture file's download is audited too: it hands out traffic)
        changes = rule.permission in (P.NETWORK, P.MIRROR) or (
            rule.permission is P.ADMIN and method != "GET")
        assert bool(rule.action) == changes, (method, path)


def test_roles_grant_as_documented() -> None:
    assert GRANTS[Role.VIEWER] == {P.READ}
    assert GRANTS[Role.OPERATOR] == {P.READ, P.NETWORK}
    assert GRANTS[Role.MIRROR_ADMIN] == {P.READ, P.MIRROR}
    assert GRANTS[Role.ADMIN] == {P.READ, P.NETWORK, P.MIRROR, P.ADMIN}


def test_in_process_guard_with_tokens(agent: Agent, tmp_path: Path) -> None:
    tokens = SqliteTokenStore(str(tmp_path / "auth.db"))
    audit = AuditLog(str(tmp_path / "audit.jsonl"))
    app = create_app(agent, Guard(tokens, audit, lambda: agent.config.switch.roles, 0))
    op = tokens.create("op", Role.OPERATOR)
    with TestClient(app) as c:
        h = {"Authorization": f"Bearer {op}"}
        resp = c.post("/ports/a/acls", headers=h, json={"action": "deny", "direction": "in",
                                                         "remote_ip": "10.0.0.9"})
        assert resp.status_code == 200, resp.text
        # a failed change is audited as failed, with the handler's message
        resp = c.post("/ports/nope/acls", headers=h, json={"action": "deny",
                                                            "direction": "in",
                                                            "remote_ip": "10.0.0.9"})
        assert resp.status_code == 404
        bad = c.post("/ports/a/acls", headers=h, json={"action": "sometimes"})
        assert bad.status_code == 422 and "details" in bad.json()
    entries = audit.read()
    got = [(e.action, e.target, e.result, e.status) for e in entries]
    assert got == [("acl.add", "a/a-acl1", "ok", 200), ("acl.add", "nope", "failed", 404),
                   ("acl.add", "a", "failed", 422)]
    assert "no port named 'nope'" in entries[1].detail


def test_the_document_describes_the_access(app: FastAPI) -> None:
    doc: dict[str, Any] = app.openapi()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    op = doc["paths"]["/mirrors/{name}"]["post"]
    assert op["x-vspan-roles"] == ["mirror-admin", "admin"]
    assert op["x-vspan-audit-action"] == "mirror.create"
    assert {"401", "403", "409", "422"} <= set(op["responses"])
