"""The REST API of a running switch (FastAPI): on the control socket, and over TCP
(``vspan up --listen``) with bearer tokens.

Every route is a :class:`~vspan.api.access.GuardedRoute`: who may call it is
the table in :mod:`vspan.api.access`, enforced before the handler runs, and
every change is audited there. Handlers here only do the work.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CollectorRegistry, generate_latest
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from vspan.api import models as m
from vspan.api.access import (
    Guard,
    GuardedRoute,
    access_rows,
    check_table,
    demand,
    document_access,
    set_audit,
)
from vspan.api.console import add_console
from vspan.api.events import MEDIA_TYPE, StreamSlots, event_stream
from vspan.api.metrics import SwitchCollector
from vspan.api.observe import add_observe_routes
from vspan.config.diff import ChangeSet
from vspan.config.load import ConfigError
from vspan.control.agent import Agent, AgentError, LiveChangesError
from vspan.control.audit import AuditEntry, AuditFilter, parse_time, utc_text
from vspan.control.roles import Permission
from vspan.control.tokens import TokenError, TokenInfo
from vspan.packet.synth import FrameSpec, synth_frame

log = logging.getLogger(__name__)

NAME = Annotated[str, Path(min_length=1, max_length=64)]
PCAPNG = "application/x-pcapng"

_REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"model": m.RefusalOut, "description": "no identity: a bearer token is needed"},
    403: {"model": m.RefusalOut, "description": "the caller's roles do not allow this"},
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of an endpoint: refusals plus ``codes``."""
    what = {400: "bad request (e.g. a body that is not UTF-8 JSON)", 404: "no such thing",
            409: "conflict", 422: "invalid input (the message names the path)",
            503: "too many event streams open"}
    return _REFUSED | {c: {"model": m.ErrorOut, "description": what[c]} for c in codes}


def _errors_as_json(*codes: int) -> dict[int | str, dict[str, Any]]:
    """:func:`_errors` for an endpoint whose own answer is not JSON (its errors are)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code, r in _errors(*codes).items():
        name = r["model"].__name__
        out[code] = {"description": r["description"], "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{name}"}}}}
    return out


def _changes(cs: ChangeSet) -> dict[str, Any]:
    return {"changes": cs.summary(), "empty": cs.empty}


def _registry(agent: Agent) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SwitchCollector(agent))
    return registry


def _metrics_text(registry: CollectorRegistry) -> PlainTextResponse:
    return PlainTextResponse(generate_latest(registry).decode(),
                             media_type="text/plain; version=0.0.4")


def _health(agent: Agent) -> dict[str, Any]:
    return {"status": "ok", "switch": agent.config.switch.name, "running": agent.engine.running}


def create_metrics_app(agent: Agent) -> FastAPI:
    """The read-only part for TCP (``vspan up --metrics``): ``/metrics`` and ``/health``,
    without a token (no configuration and no traffic is shown there)."""
    app = FastAPI(title="vspan metrics", version="0.1.0", docs_url=None, redoc_url=None,
                  openapi_url=None)
    registry = _registry(agent)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return _health(agent)

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        return _metrics_text(registry)

    return app


def _token_out(info: TokenInfo, now: float) -> dict[str, Any]:
    def t(x: float | None) -> str | None:
        return None if x is None else utc_text(x)

    return {"name": info.name, "role": info.role.value, "state": info.state(now).value,
            "created": utc_text(info.created), "expires": t(info.expires),
            "revoked": t(info.revoked), "last_used": t(info.last_used)}


def _error_answer(request: Request, err: Exception, status: int, content: dict[str, Any],
                  headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON answer to a handled error. A 500 (the switch's own failure) is also logged
    with its traceback, since the caller sees only its message (unless it was logged where
    it happened: ``AgentError.logged``); another 5xx (503: too busy, a documented refusal)
    is logged in one line."""
    if status == 500 and not getattr(err, "logged", False):
        log.error("%s %s answered %d: %s", request.method, request.url.path, status, err,
                  exc_info=err)
    elif status > 500:
        log.warning("%s %s answered %d: %s", request.method, request.url.path, status, err)
    return JSONResponse(status_code=status, content=content, headers=headers)


def _validation_details(err: RequestValidationError) -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()))
        out.append(f"{loc}: {e.get('msg', 'invalid')}")
    return out


def create_app(agent: Agent, guard: Guard | None = None) -> FastAPI:
    """Build the API for ``agent``; ``guard`` decides who may do what (default: no token
    store and no audit log; control-socket peers by their uid)."""
    app = FastAPI(title="vspan", version="0.1.0",
                  description="The API of a vspan switch. On the control socket the caller's "
                              "uid is its identity; over TCP a bearer token is. "
                              "`GET /auth/access` lists which roles may call what.")
    app.router.route_class = GuardedRoute
    app.state.guard = guard or Guard(None, None, lambda: agent.config.switch.roles,
                                     os.geteuid())
    registry = _registry(agent)
    slots = app.state.event_slots = StreamSlots()
    add_console(app)

    @app.exception_handler(ConfigError)
    async def config_error(_req: Request, err: ConfigError) -> JSONResponse:
        return JSONResponse(status_code=422,
                            content={"error": "invalid configuration", "source": err.source,
                                     "details": err.errors})

    @app.exception_handler(AgentError)
    async def agent_error(req: Request, err: AgentError) -> JSONResponse:
        return _error_answer(req, err, err.status, {"error": str(err)})

    @app.exception_handler(LiveChangesError)
    async def live_error(req: Request, err: LiveChangesError) -> JSONResponse:
        return _error_answer(req, err, err.status,
                             {"error": str(err), "live_changes": err.lines})

    @app.exception_handler(TokenError)
    async def token_error(req: Request, err: TokenError) -> JSONResponse:
        return _error_answer(req, err, err.status, {"error": str(err)})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(req: Request, err: StarletteHTTPException) -> JSONResponse:
        return _error_answer(req, err, err.status_code, {"error": str(err.detail)},
                             err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_req: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": "invalid request",
                                                      "details": _validation_details(err)})

    # ------------------------------------------------------------------ identity
    @app.get("/auth/whoami", response_model=m.WhoAmI, responses=_REFUSED)
    def whoami(request: Request) -> dict[str, Any]:
        """The caller as the switch sees it: identity, roles, permissions."""
        who = request.state.identity
        return {"identity": who.name, "roles": sorted(r.value for r in who.roles),
                "permissions": sorted(p.value for p in who.permissions),
                "source": who.source}

    @app.get("/auth/access", response_model=list[m.AccessRow], responses=_REFUSED)
    def access() -> list[dict[str, Any]]:
        """Every endpoint with the permission it needs and the roles that grant it."""
        return access_rows()

    # --------------------------------------------------------------------- reads
    @app.get("/health", response_model=m.HealthOut, responses=_REFUSED)
    def health() -> dict[str, Any]:
        """The switch answers (and whether its datapath runs)."""
        return _health(agent)

    @app.get("/config", responses=_REFUSED)
    def config() -> dict[str, Any]:
        """The running configuration (with live changes)."""
        return agent.config.model_dump(mode="json")

    @app.get("/show/{what}", responses=_errors(404))
    def show(what: NAME) -> Any:
        """Ports, MAC table (fdb), mirror sessions, counters or VTEPs (``what``)."""
        return agent.show(what)

    @app.get("/live", responses=_REFUSED)
    def live() -> dict[str, Any]:
        """Changes made on the running switch that its file does not carry."""
        return agent.live_changes()

    @app.get("/state", responses=_REFUSED)
    def state() -> dict[str, Any]:
        """The state file: what it holds, what this start restored, the saves since."""
        return agent.state_info()

    @app.get("/metrics", response_class=PlainTextResponse, responses=_errors_as_json())
    def metrics() -> PlainTextResponse:
        """Prometheus metrics."""
        return _metrics_text(registry)

    @app.get("/events", response_class=StreamingResponse,
             responses=_errors_as_json(422, 503) | {200: {
                 "description": "server-sent events: `snapshot` (ports, mirror sessions, "
                                "drops) every `interval` seconds; `end` when the stream "
                                "ends (its `limit`, or the token no longer valid)",
                 "content": {MEDIA_TYPE: {"schema": {"type": "string"}}}}})
    def events(request: Request,
               interval: Annotated[float, Query(ge=0.25, le=60)] = 1.0,
               limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
               ) -> StreamingResponse:
        """Live counters: the ports, mirror sessions and drops as a stream of server-sent
        events (the token is checked again before every event)."""
        return event_stream(request, agent, slots, interval, limit)

    @app.post("/trace", responses=_errors(400, 404, 422))
    def trace(body: m.TraceIn) -> dict[str, Any]:
        """Trace a frame (hex, or built from its fields) as if received on a port: every
        stage's decision, and what an overlay port does with it (``from_vtep``: the frame is
        a VXLAN payload arriving from that VTEP)."""
        return agent.trace(body.port, _frame(body), body.from_vtep)

    @app.post("/policy/explain", responses=_errors(400, 404, 422))
    def policy_explain(body: m.ExplainIn) -> dict[str, Any]:
        """Which rule decides a frame at a port, against the live connection state."""
        return agent.policy_explain(body.port, body.direction, _frame(body))

    @app.get("/ports/{port}/acls", responses=_errors(404))
    def acl_show(port: NAME) -> dict[str, Any]:
        """A port's ACL entries and extended ACL rules with their counters."""
        return agent.acl_show(port)

    @app.get("/firewall", responses=_REFUSED)
    def firewall_show() -> dict[str, Any]:
        """The firewall configuration with rule hits and connections."""
        return agent.firewall_show()

    @app.get("/captures", response_model=list[m.CaptureOut], responses=_REFUSED)
    def captures() -> list[dict[str, Any]]:
        """Running captures."""
        return agent.captures()

    @app.get("/captures/{capture_id}", response_model=m.CaptureOut, responses=_errors(404))
    def capture_get(capture_id: int) -> dict[str, Any]:
        """A running or recently stopped capture (who stopped it, why)."""
        return agent.capture_get(capture_id)

    # ------------------------------------------------------------ network policy
    @app.post("/reload", response_model=m.ReloadOut, responses=_errors(400, 409, 422))
    def reload(request: Request,
               body: Annotated[m.ReloadIn | None, Body()] = None) -> dict[str, Any]:
        """Apply the switch's configuration file (or, admin only, another file) live."""
        body = body or m.ReloadIn()
        if body.path is not None and os.path.realpath(body.path) != agent.config_path:
            demand(request, Permission.ADMIN, "reload from another file")
            set_audit(request, target=body.path)
        result = agent.reload(body.path, body.live)
        return _changes(result.changes) | {"live_kept": list(result.live_kept),
                                            "live_dropped": list(result.live_dropped)}

    @app.post("/ports/{port}/acls", response_model=m.ChangesOut,
              responses=_errors(400, 404, 409, 422))
    def acl_add(request: Request, port: NAME, body: m.AclIn) -> dict[str, Any]:
        """Add an ACL entry (or an extended ACL rule) to a port."""
        entry = body.model_dump(exclude={"extended"}, exclude_none=True)
        result = _changes(agent.acl_add(port, entry, body.extended))
        set_audit(request, target=f"{port}/{entry.get('id', '')}")
        return result

    @app.delete("/ports/{port}/acls/{entry_id}", response_model=m.ChangesOut,
                responses=_errors(404))
    def acl_remove(port: NAME, entry_id: NAME) -> dict[str, Any]:
        """Remove an ACL entry or extended ACL rule by id."""
        return _changes(agent.acl_remove(port, entry_id))

    @app.post("/firewall/sections/{section}/rules", response_model=m.ChangesOut,
              responses=_errors(400, 409, 422))
    def fw_rule_add(section: NAME, body: m.FirewallRuleIn) -> dict[str, Any]:
        """Add a firewall rule to a section (made at the end when new)."""
        rule = body.model_dump(exclude={"position"}, exclude_none=True)
        return _changes(agent.firewall_rule_add(section, rule, body.position))

    @app.delete("/firewall/rules/{rule_id}", response_model=m.ChangesOut,
                responses=_errors(404))
    def fw_rule_remove(rule_id: NAME) -> dict[str, Any]:
        """Remove a firewall rule by id."""
        return _changes(agent.firewall_rule_remove(rule_id))

    # ------------------------------------------------------------ seeing traffic
    @app.post("/mirrors/{name}", response_model=m.ChangesOut,
              responses=_errors(400, 404, 409, 422))
    def mirror_create(name: NAME, body: m.MirrorCreate) -> dict[str, Any]:
        """Create a mirror session (as ``mirrors.<name>`` in the configuration); with
        ``duration``/``stop_at`` and ``max_bytes`` it stops by itself."""
        spec = body.model_dump(mode="json", exclude_unset=True, exclude={"duration"})
        if body.duration is not None:
            spec["stop_at"] = (datetime.now(UTC) + timedelta(seconds=body.duration)).isoformat()
        return _changes(agent.mirror_create(name, spec))

    @app.delete("/mirrors/{name}", response_model=m.ChangesOut, responses=_errors(404))
    def mirror_delete(name: NAME) -> dict[str, Any]:
        """Delete a mirror session."""
        return _changes(agent.mirror_delete(name))

    @app.post("/mirrors/{name}/enable", response_model=m.ChangesOut,
              responses=_errors(400, 404, 422))
    def mirror_enable(name: NAME,
                      body: Annotated[m.Limits | None, Body()] = None) -> dict[str, Any]:
        """Enable a session; ``duration``/``max_bytes`` set new limits (left out: a byte cap
        stays, a time box that is over is dropped)."""
        kw: dict[str, Any] = {}
        if body is not None and "duration" in body.model_fields_set:
            kw["stop_at"] = None if body.duration is None else \
                datetime.now(UTC) + timedelta(seconds=body.duration)
        if body is not None and "max_bytes" in body.model_fields_set:
            kw["max_bytes"] = body.max_bytes
        return _changes(agent.mirror_enable(name, True, **kw))

    @app.post("/mirrors/{name}/disable", response_model=m.ChangesOut, responses=_errors(404))
    def mirror_disable(name: NAME) -> dict[str, Any]:
        """Disable a session (it keeps its configuration)."""
        return _changes(agent.mirror_enable(name, False))

    @app.post("/captures", response_model=m.CaptureOut, responses=_errors(400, 404, 422))
    def capture_start(request: Request, body: m.CaptureIn) -> dict[str, Any]:
        """Start a capture written by the switch; it stops by itself at ``max_packets``,
        ``max_bytes`` or after ``duration`` seconds."""
        if os.path.isabs(body.path):
            demand(request, Permission.ADMIN,
                   "a capture file outside the capture directory (give a file name, or none, "
                   "and fetch it with GET /captures/{id}/file or `vspan capture -o`)")
        cap = agent.capture_start(body.ports, body.path, body.direction, body.drops,
                                  body.filter, body.max_packets, body.max_bytes, body.duration)
        set_audit(request, target=str(cap["id"]),
                  detail=f"ports {','.join(body.ports)} to {cap['path']}")
        return cap

    @app.get("/captures/{capture_id}/file", response_class=FileResponse,
             responses=_errors_as_json(404, 409) | {200: {
                 "description": "the capture file (pcapng)",
                 "content": {PCAPNG: {"schema": {"type": "string", "format": "binary"}}}}})
    def capture_file(capture_id: int) -> FileResponse:
        """The pcapng file of a stopped capture (seeing traffic: mirror-admin)."""
        fd = agent.capture_file(capture_id)
        return FileResponse(f"/proc/self/fd/{fd}", media_type=PCAPNG,
                            filename=f"vspan-capture-{capture_id}.pcapng",
                            background=BackgroundTask(os.close, fd))

    @app.delete("/captures/{capture_id}", response_model=m.CaptureOut, responses=_errors(404))
    def capture_stop(request: Request, capture_id: int) -> dict[str, Any]:
        """Stop a capture; its summary."""
        return agent.capture_stop(capture_id, request.state.identity.name, "stopped")

    # ------------------------------------------------------------ administration
    @app.get("/tokens", response_model=list[m.TokenOut], responses=_errors(400))
    def tokens_list(request: Request) -> list[dict[str, Any]]:
        """Every token (without secrets)."""
        now = time.time()
        return [_token_out(t, now) for t in _tokens(request).list()]

    @app.post("/tokens", response_model=m.TokenCreated, status_code=201,
              responses=_errors(400, 409, 422))
    def token_create(request: Request, body: m.TokenIn) -> dict[str, Any]:
        """Make a token; the answer carries it, this once (only its hash is kept)."""
        set_audit(request, target=body.name, detail=f"role {body.role.value}")
        now = time.time()
        expires = now + body.expires_in if body.expires_in else None
        store = _tokens(request)
        token = store.create(body.name, body.role, expires)
        info = next(t for t in store.list() if t.name == body.name)
        return _token_out(info, now) | {"token": token}

    @app.delete("/tokens/{name}", response_model=m.TokenOut, responses=_errors(400, 404))
    def token_revoke(request: Request, name: NAME) -> dict[str, Any]:
        """Revoke a token (it stays listed as revoked)."""
        return _token_out(_tokens(request).revoke(name), time.time())

    @app.get("/audit", response_model=list[AuditEntry], responses=_errors(400, 422))
    def audit(request: Request,
              since: Annotated[str | None, Query(max_length=64)] = None,
              identity: Annotated[str | None, Query(max_length=256)] = None,
              action: Annotated[str | None, Query(max_length=64)] = None,
              result: Literal["ok", "refused", "failed"] | None = None,
              limit: Annotated[int, Query(ge=0, le=100_000)] = 1000) -> list[dict[str, Any]]:
        """Audit entries, oldest first (the newest ``limit``); ``since`` is ISO 8601;
        ``identity``/``action`` match exactly, or as a prefix ending in ``:``/``.``."""
        log = request.app.state.guard.audit
        if log is None:
            raise AgentError("this switch keeps no audit log", 400)
        try:
            since_ts = parse_time(since) if since else None
        except ValueError:
            raise AgentError(f"since: {since!r} is not an ISO 8601 time", 422) from None
        flt = AuditFilter(since_ts, identity, action, result)
        return [e.as_dict() for e in log.read(flt, limit)]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_access(get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes))
        return app.openapi_schema

    add_observe_routes(app, agent, _errors_as_json(400, 422), _REFUSED)

    app.openapi = openapi  # type: ignore[method-assign]
    check_table(app)
    return app


def _frame(body: m.FrameIn) -> bytes:
    """The frame a trace or explain request gives (hex, or fields to build it from)."""
    if body.frame is not None:
        return bytes.fromhex(body.frame)
    assert body.packet is not None  # the model demands one of them
    p = body.packet
    try:
        return synth_frame(FrameSpec(p.src_mac, p.dst_mac, p.src_ip, p.dst_ip, tuple(p.vlan),
                                     p.proto, p.sport, p.dport, p.flags))
    except ValueError as err:  # PacketError, or an address out of range
        raise AgentError(f"packet: {err}", 422) from None


def _tokens(request: Request) -> Any:
    store = request.app.state.guard.tokens
    if store is None:
        raise AgentError("this switch has no token store", 400)
    return store
