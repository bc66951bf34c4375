"""The REST API of a running switch (FastAPI), served on a Unix socket by ``vspan up``."""

from __future__ import annotations

from typing import Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, generate_latest

from vspan.api.metrics import SwitchCollector
from vspan.config.diff import ChangeSet
from vspan.config.load import ConfigError
from vspan.control.agent import Agent, AgentError, LiveChangesError


def _changes(cs: ChangeSet) -> dict[str, Any]:
    return {"changes": cs.summary(), "empty": cs.empty}


def _registry(agent: Agent) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SwitchCollector(agent))
    return registry


def _metrics_text(registry: CollectorRegistry) -> PlainTextResponse:
    return PlainTextResponse(generate_latest(registry).decode(),
                             media_type="text/plain; version=0.0.4")


def create_metrics_app(agent: Agent) -> FastAPI:
    """The read-only part for TCP (``vspan up --metrics``): ``/metrics`` and ``/health``.

    Everything that changes or reveals traffic stays on the control socket, whose
    file mode decides who may use it.
    """
    app = FastAPI(title="vspan metrics", version="0.1.0", docs_url=None, redoc_url=None,
                  openapi_url=None)
    registry = _registry(agent)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "switch": agent.config.switch.name,
                "running": agent.engine.running}

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        return _metrics_text(registry)

    return app


def create_app(agent: Agent) -> FastAPI:
    """Build the API for ``agent`` (served on the control socket)."""
    app = FastAPI(title="vspan", version="0.1.0")
    registry = _registry(agent)

    @app.exception_handler(ConfigError)
    async def config_error(_req: Request, err: ConfigError) -> JSONResponse:
        return JSONResponse(status_code=422,
                            content={"error": "invalid configuration", "source": err.source,
                                     "details": err.errors})

    @app.exception_handler(AgentError)
    async def agent_error(_req: Request, err: AgentError) -> JSONResponse:
        return JSONResponse(status_code=err.status, content={"error": str(err)})

    @app.exception_handler(LiveChangesError)
    async def live_error(_req: Request, err: LiveChangesError) -> JSONResponse:
        return JSONResponse(status_code=err.status,
                            content={"error": str(err), "live_changes": err.lines})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "switch": agent.config.switch.name,
                "running": agent.engine.running}

    @app.get("/config")
    def config() -> dict[str, Any]:
        return agent.config.model_dump(mode="json")

    @app.get("/show/{what}")
    def show(what: str) -> Any:
        return agent.show(what)

    @app.post("/reload")
    def reload(body: dict[str, Any] = Body(default_factory=dict)) -> dict[str, Any]:  # noqa: B008
        """``{"path": FILE, "live": "refuse"|"keep"|"drop"}`` (both optional)."""
        result = agent.reload(body.get("path"), str(body.get("live", "refuse")))
        return _changes(result.changes) | {"live_kept": list(result.live_kept),
                                            "live_dropped": list(result.live_dropped)}

    @app.get("/live")
    def live() -> dict[str, Any]:
        return agent.live_changes()

    @app.post("/mirrors/{name}")
    def mirror_create(name: str, spec: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        return _changes(agent.mirror_create(name, spec))

    @app.delete("/mirrors/{name}")
    def mirror_delete(name: str) -> dict[str, Any]:
        return _changes(agent.mirror_delete(name))

    @app.post("/mirrors/{name}/enable")
    def mirror_enable(name: str) -> dict[str, Any]:
        return _changes(agent.mirror_enable(name, True))

    @app.post("/mirrors/{name}/disable")
    def mirror_disable(name: str) -> dict[str, Any]:
        return _changes(agent.mirror_enable(name, False))

    @app.post("/trace")
    def trace(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        try:
            frame = bytes.fromhex(str(body["frame"]))
            port = str(body["port"])
        except (KeyError, ValueError) as err:
            raise AgentError(f"trace needs 'port' and 'frame' (hex): {err}") from err
        return agent.trace(port, frame)

    @app.post("/policy/explain")
    def policy_explain(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        try:
            frame = bytes.fromhex(str(body["frame"]))
            port, direction = str(body["port"]), str(body["direction"])
        except (KeyError, ValueError) as err:
            raise AgentError(f"explain needs 'port', 'direction' and 'frame' (hex): {err}") \
                from err
        return agent.policy_explain(port, direction, frame)

    @app.get("/ports/{port}/acls")
    def acl_show(port: str) -> dict[str, Any]:
        return agent.acl_show(port)

    @app.post("/ports/{port}/acls")
    def acl_add(port: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        extended = bool(body.pop("extended", False))
        return _changes(agent.acl_add(port, body, extended))

    @app.delete("/ports/{port}/acls/{entry_id}")
    def acl_remove(port: str, entry_id: str) -> dict[str, Any]:
        return _changes(agent.acl_remove(port, entry_id))

    @app.get("/firewall")
    def firewall_show() -> dict[str, Any]:
        return agent.firewall_show()

    @app.post("/firewall/sections/{section}/rules")
    def fw_rule_add(section: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        position = body.pop("position", None)
        return _changes(agent.firewall_rule_add(section, body, position))

    @app.delete("/firewall/rules/{rule_id}")
    def fw_rule_remove(rule_id: str) -> dict[str, Any]:
        return _changes(agent.firewall_rule_remove(rule_id))

    @app.post("/captures")
    def capture_start(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        return agent.capture_start(
            list(body.get("ports", [])), str(body.get("path", "")),
            str(body.get("direction", "both")), bool(body.get("drops", False)),
            body.get("filter") or None, int(body.get("max_packets", 0)))

    @app.get("/captures")
    def captures() -> list[dict[str, Any]]:
        return agent.captures()

    @app.delete("/captures/{capture_id}")
    def capture_stop(capture_id: int) -> dict[str, Any]:
        return agent.capture_stop(capture_id)

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        return _metrics_text(registry)

    return app
