"""How the agent answers a change that fails while it is applied: an expected failure (a
port whose backend does not open) is the caller's 4xx with the reason; an unexpected one
(a bug) is logged with its traceback and answered 500, saying so, never a silent 400."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vspan.api.access import Guard
from vspan.api.rest import create_app
from vspan.config.access import Role
from vspan.config.load import parse_config
from vspan.config.model import Config, PortConfig
from vspan.control.agent import Agent, AgentError
from vspan.control.tokens import SqliteTokenStore
from vspan.datapath.engine import Engine
from vspan.ports.base import Port, PortError
from vspan.ports.memory import MemoryPort

RUNNING = {"ports": {"a": {"type": "memory"}, "b": {"type": "memory"}}}


def factory(name: str, _cfg: PortConfig) -> Port:
    if name == "broken":
        raise PortError("interface broken0 does not exist")
    return MemoryPort(name)


@pytest.fixture
def agent() -> Iterator[Agent]:
    a = Agent(parse_config(RUNNING, "t"), factory)
    a.start()
    try:
        yield a
    finally:
        a.stop()


def _with_port(name: str) -> Config:
    return parse_config({"ports": {**RUNNING["ports"], name: {"type": "memory"}}}, "t")


def _bug(self: Engine, new: Config, changes: object = None) -> object:
    raise RuntimeError("a bug in reload")


def test_unexpected_error_is_logged_with_traceback_and_is_a_500(
        agent: Agent, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(Engine, "reload", _bug)
    with caplog.at_level(logging.ERROR, logger="vspan.control.agent"), \
            pytest.raises(AgentError) as info:
        agent.apply(_with_port("c"))
    assert info.value.status == 500
    assert "internal error" in str(info.value) and "a bug in reload" in str(info.value)
    logged = [r for r in caplog.records if r.name == "vspan.control.agent"]
    assert logged and logged[0].exc_info is not None
    assert isinstance(logged[0].exc_info[1], RuntimeError)  # the traceback is in the log


def test_expected_error_stays_a_4xx_without_traceback(
        agent: Agent, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="vspan.control.agent"), \
            pytest.raises(AgentError) as info:
        agent.apply(_with_port("broken"))
    assert info.value.status == 400
    assert "interface broken0 does not exist" in str(info.value)
    assert not [r for r in caplog.records if r.exc_info]
    assert set(agent.config.ports) == {"a", "b"}  # nothing changed


def test_api_answers_500_and_logs_the_traceback_once(
        agent: Agent, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        tmp_path: Path) -> None:
    monkeypatch.setattr(Engine, "reload", _bug)
    tokens = SqliteTokenStore(str(tmp_path / "auth.db"))
    admin = tokens.create("t-admin", Role.ADMIN)
    client = TestClient(create_app(agent, Guard(tokens, None, lambda: agent.config.switch.roles,
                                                0)))
    with caplog.at_level(logging.ERROR):
        res = client.post("/mirrors/m", json={"sources": ["a"], "destinations": ["b"]},
                          headers={"Authorization": f"Bearer {admin}"})
    assert res.status_code == 500
    assert "internal error" in res.json()["error"]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
