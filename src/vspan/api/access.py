"""Who may call which endpoint: one table, enforced for every route in one place.

:data:`ACCESS` maps each endpoint (method, path template) to a :class:`Rule`:
the :class:`~vspan.control.roles.Permission` it needs and, for endpoints that
change something, the audit action. Every route of the API is a
:class:`GuardedRoute`, whose handler first runs :meth:`Guard.admit` — who is
asking (the control socket's peer uid, or a bearer token on TCP), may they —
and writes the audit entry of the request afterwards. A route missing from the
table is refused (and :func:`check_table` makes the app refuse to start).

The guard runs before the request body is read: an anonymous or unprivileged
request never gets its body parsed, and cannot learn anything from
validation errors (a FastAPI dependency would run only after the body).

Handlers that must demand more for some inputs (a reload from another file, a
capture written outside the capture directory) call :func:`demand`, whose
refusal is answered and audited the same way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Route

from vspan.api.peercred import scope_peer
from vspan.config.access import RolesConfig
from vspan.config.load import ConfigError
from vspan.control.agent import AgentError
from vspan.control.audit import AuditLog
from vspan.control.roles import Identity, Permission, anonymous, peer_identity, roles_with
from vspan.control.tokens import TokenError, TokenStore

log = logging.getLogger(__name__)

P = Permission


@dataclass(frozen=True)
class Rule:
    """What an endpoint needs, and how it is audited."""

    permission: Permission
    action: str = ""  # audit action when called (changes, starts, stops); "" = a read
    target: str = ""  # the audit target, from the path parameters (str.format)
    extra: str = ""  # what the handler demands beyond the permission, for some inputs
    only_in: str = ""  # the command whose app alone has this route ("" = every app)


ACCESS: dict[tuple[str, str], Rule] = {
    # served by FastAPI itself: the API's description, no switch data
    ("GET", "/openapi.json"): Rule(P.PUBLIC),
    ("GET", "/docs"): Rule(P.PUBLIC),
    ("GET", "/docs/oauth2-redirect"): Rule(P.PUBLIC),
    ("GET", "/redoc"): Rule(P.PUBLIC),
    # the web console's files (no switch data: the page asks the API with the user's token)
    ("GET", "/"): Rule(P.PUBLIC),
    ("GET", "/console"): Rule(P.PUBLIC),
    ("GET", "/console/{asset}"): Rule(P.PUBLIC),
    # who am I, what may whom
    ("GET", "/auth/whoami"): Rule(P.IDENTIFIED),
    ("GET", "/auth/access"): Rule(P.READ),
    # reading the switch
    ("GET", "/health"): Rule(P.READ),
    ("GET", "/config"): Rule(P.READ),
    ("GET", "/show/{what}"): Rule(P.READ),
    ("GET", "/live"): Rule(P.READ),
    ("GET", "/state"): Rule(P.READ),
    ("GET", "/metrics"): Rule(P.READ),
    ("GET", "/events"): Rule(P.READ),
    ("POST", "/trace"): Rule(P.READ),
    ("POST", "/policy/explain"): Rule(P.READ),
    ("GET", "/ports/{port}/acls"): Rule(P.READ),
    ("GET", "/firewall"): Rule(P.READ),
    ("GET", "/captures"): Rule(P.READ),
    ("GET", "/captures/{capture_id}"): Rule(P.READ),
    # network policy
    ("POST", "/reload"): Rule(P.NETWORK, "reload", "configuration",
                              extra="admin to reload from a file other than the switch's own"),
    ("POST", "/ports/{port}/acls"): Rule(P.NETWORK, "acl.add", "{port}"),
    ("DELETE", "/ports/{port}/acls/{entry_id}"): Rule(P.NETWORK, "acl.remove",
                                                      "{port}/{entry_id}"),
    ("POST", "/firewall/sections/{section}/rules"): Rule(P.NETWORK, "firewall.rule.add",
                                                         "{section}"),
    ("DELETE", "/firewall/rules/{rule_id}"): Rule(P.NETWORK, "firewall.rule.remove",
                                                  "{rule_id}"),
    # seeing traffic
    ("POST", "/mirrors/{name}"): Rule(P.MIRROR, "mirror.create", "{name}"),
    ("DELETE", "/mirrors/{name}"): Rule(P.MIRROR, "mirror.delete", "{name}"),
    ("POST", "/mirrors/{name}/enable"): Rule(P.MIRROR, "mirror.enable", "{name}"),
    ("POST", "/mirrors/{name}/disable"): Rule(P.MIRROR, "mirror.disable", "{name}"),
    ("POST", "/captures"): Rule(P.MIRROR, "capture.start",
                                extra="admin to write the file outside the capture directory"),
    ("DELETE", "/captures/{capture_id}"): Rule(P.MIRROR, "capture.stop", "{capture_id}"),
    ("GET", "/captures/{capture_id}/file"): Rule(P.MIRROR, "capture.download",
                                                 "{capture_id}"),
    ("GET", "/observe"): Rule(P.MIRROR, "observe"),  # live per-frame events (headers)
    ("GET", "/observers"): Rule(P.READ),
    # administration
    ("GET", "/tokens"): Rule(P.ADMIN),
    ("POST", "/tokens"): Rule(P.ADMIN, "token.create"),
    ("DELETE", "/tokens/{name}"): Rule(P.ADMIN, "token.revoke", "{name}"),
    ("GET", "/audit"): Rule(P.ADMIN),
    # added by `vspan agent` (a distributed switch's host agent)
    ("GET", "/dvs/status"): Rule(P.READ, only_in="vspan agent"),
}


def access_rows() -> list[dict[str, Any]]:
    """The table as data (``GET /auth/access``, the docs, the tests)."""
    return [{"method": m, "path": p, "permission": r.permission.value,
             "roles": [x.value for x in roles_with(r.permission)],
             "audited": bool(r.action), "action": r.action or None, "extra": r.extra or None,
             "only_in": r.only_in or None}
            for (m, p), r in ACCESS.items()]


def document_access(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the access rules to an OpenAPI document: the bearer scheme, and for each
    operation its ``security`` and ``x-vspan-permission`` / ``x-vspan-roles``."""
    schema.setdefault("components", {})["securitySchemes"] = {"bearer": {
        "type": "http", "scheme": "bearer",
        "description": "a token from `vspan token create`, required over TCP; on the "
                       "control socket the caller's uid is its identity instead"}}
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            rule = ACCESS.get((method.upper(), path))
            if rule is None:
                continue
            op["security"] = [] if rule.permission is P.PUBLIC else [{"bearer": []}]
            op["x-vspan-permission"] = rule.permission.value
            op["x-vspan-roles"] = [r.value for r in roles_with(rule.permission)]
            if rule.action:
                op["x-vspan-audit-action"] = rule.action
    return schema


def route_keys(routes: list[BaseRoute]) -> list[tuple[str, str]]:
    """(method, path) of every route (HEAD left out: Starlette adds it to GETs)."""
    keys: list[tuple[str, str]] = []
    for r in routes:
        if isinstance(r, APIRoute | Route):
            keys += [(m, r.path) for m in sorted(r.methods or ()) if m != "HEAD"]
    return keys


def check_table(app: FastAPI) -> None:
    """Refuse an app with a route the table does not cover, or a route not guarded."""
    missing = [k for k in route_keys(app.routes) if k not in ACCESS]
    if missing:
        raise RuntimeError(f"routes without an access rule: {missing}")
    unguarded = [r.path for r in app.routes
                 if isinstance(r, APIRoute) and not isinstance(r, GuardedRoute)]
    if unguarded:
        raise RuntimeError(f"API routes not guarded: {unguarded}")


class Refused(Exception):
    """A request refused for who made it (401: unknown, 403: not allowed)."""

    def __init__(self, status: int, message: str, identity: Identity,
                 needs: Permission | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.identity = identity
        self.needs = needs
        self.detail = detail or message

    def response(self) -> JSONResponse:
        """The JSON answer (with ``WWW-Authenticate`` for 401)."""
        body: dict[str, Any] = {"error": str(self), "identity": self.identity.name,
                                "roles": sorted(r.value for r in self.identity.roles)}
        if self.needs is not None:
            body["needs"] = [r.value for r in roles_with(self.needs)]
        headers = {"WWW-Authenticate": 'Bearer realm="vspan"'} if self.status == 401 else None
        return JSONResponse(status_code=self.status, content=body, headers=headers)


_BEARER = re.compile(r"Bearer[ ]+([^ ]+)[ ]*", re.IGNORECASE)  # fullmatch only
_TOKEN_LIKE = re.compile(r"vspan_[0-9a-f]{16}_")
_TOKEN_PARAMS = {"token", "access_token", "bearer", "api_key", "apikey", "auth", "authorization"}


def _source(request: Request) -> str:
    client = request.scope.get("client")
    if client:
        host, port = client[0], client[1]
        return f"tcp:[{host}]:{port}" if ":" in str(host) else f"tcp:{host}:{port}"
    return "tcp:?"


class Guard:
    """Decides who a request comes from and whether they may; writes the audit log."""

    def __init__(self, tokens: TokenStore | None, audit: AuditLog | None,
                 roles: Callable[[], RolesConfig], owner_uid: int) -> None:
        self.tokens = tokens
        self.audit = audit
        self.roles = roles  # the running configuration's switch.roles (follows reloads)
        self.owner_uid = owner_uid

    # ----------------------------------------------------------------- identity
    def identify(self, request: Request) -> Identity:
        """The identity of ``request`` (Refused 401 when a token is wrong or misplaced)."""
        peer = scope_peer(request.scope)
        if peer is not None:  # the control socket: the kernel says who it is
            return peer_identity(peer, self.roles(), self.owner_uid)
        source = _source(request)
        for key, value in request.query_params.multi_items():
            if key.lower() in _TOKEN_PARAMS or _TOKEN_LIKE.search(value):
                raise Refused(401, "a token is accepted only in the Authorization header "
                              "(Bearer), never in the URL; a token that was sent in a URL "
                              "should be revoked", anonymous(source),
                              detail=f"token in the query string ({key})")
        header = request.headers.get("authorization")
        if header is None:
            raise Refused(401, "this API needs a bearer token (Authorization: Bearer TOKEN; "
                          "`vspan token create`)", anonymous(source), detail="no token")
        m = _BEARER.fullmatch(header)
        if m is None:
            raise Refused(401, "the Authorization header must be 'Bearer TOKEN'",
                          anonymous(source), detail="not a bearer token")
        if self.tokens is None:
            raise Refused(401, "this switch has no token store", anonymous(source),
                          detail="no token store")
        check = self.tokens.verify(m.group(1))
        if check.info is None:
            raise Refused(401, "invalid token", anonymous(source), detail=f"{check.problem} token")
        who = Identity(f"token:{check.info.name}", frozenset({check.info.role}), source)
        if check.problem:
            raise Refused(401, f"token {check.info.name!r} is {check.problem}",
                          Identity(who.name, frozenset(), source), detail=f"{check.problem} token")
        return who

    # -------------------------------------------------------------------- admit
    def admit(self, request: Request, rule: Rule | None) -> Identity:
        """The identity of ``request`` if it may use the endpoint (else Refused)."""
        if rule is not None and rule.permission is P.PUBLIC:
            return anonymous("public")
        identity = self.identify(request)
        if rule is None:
            raise Refused(403, "this endpoint has no access rule", identity,
                          detail="no access rule")
        if not identity.may(rule.permission):
            raise Refused(403, _not_allowed(identity, rule.permission), identity, rule.permission)
        return identity

    # -------------------------------------------------------------------- audit
    def record(self, identity: Identity, action: str, target: str, result: str,
               status: int | None, detail: str = "") -> None:
        """One audit entry (synced to disk for changes; refusals are written unsynced)."""
        if self.audit is None:
            return
        try:
            self.audit.record(identity.name, identity.role_text, identity.source, action,
                              target, result, status, detail, sync=result != "refused")
        except OSError as err:
            log.error("audit log %s: cannot write: %s", self.audit.path, err)


def _not_allowed(identity: Identity, needs: Permission) -> str:
    roles = ", ".join(r.value for r in roles_with(needs))
    have = identity.role_text if identity.roles else "no role"
    return f"{identity.name} ({have}) may not do this: it needs one of the roles {roles}"


def demand(request: Request, permission: Permission, what: str) -> None:
    """Refuse (403, audited) unless the caller may also do ``permission``; for inputs that
    need more than the endpoint's own rule (``what`` says which)."""
    identity: Identity = request.state.identity
    if not identity.may(permission):
        raise Refused(403, f"{what}: " + _not_allowed(identity, permission), identity,
                      permission)


def current_identity(request: Request) -> Identity:
    """The guarded request's identity (for handlers: ``Depends(current_identity)``)."""
    identity: Identity = request.state.identity
    return identity


def set_audit(request: Request, target: str | None = None, detail: str | None = None) -> None:
    """Let a handler name its audit entry's target or add a detail (e.g. the capture id)."""
    if target is not None:
        request.state.audit_target = target
    if detail is not None:
        request.state.audit_detail = detail


def _error_of(err: Exception) -> tuple[int, str]:
    """The status and message an exception will be answered with."""
    if isinstance(err, AgentError | TokenError):
        return err.status, str(err)
    if isinstance(err, ConfigError):
        return 422, "; ".join(err.errors[:3])
    if isinstance(err, RequestValidationError):
        return 422, "invalid request"
    if isinstance(err, StarletteHTTPException):  # FastAPI's HTTPException is one too
        return err.status_code, str(err.detail)
    return 500, f"{type(err).__name__}: {err}"


def _result(status: int) -> str:
    if status < 400:
        return "ok"
    return "refused" if status in (401, 403) else "failed"


class GuardedRoute(APIRoute):
    """An API route whose handler is admitted by the app's :class:`Guard` first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        known_query = frozenset(p.alias for p in self.dependant.query_params)
        methods = sorted(m for m in self.methods or () if m != "HEAD")
        rule = ACCESS.get((methods[0], self.path)) if len(methods) == 1 else None

        async def guarded(request: Request) -> Response:
            guard: Guard = request.app.state.guard
            action = rule.action if rule is not None and rule.action else \
                f"{request.method} {self.path}"
            target = _target(rule, request)
            try:
                identity = await run_in_threadpool(guard.admit, request, rule)
            except Refused as refused:
                await run_in_threadpool(guard.record, refused.identity, action, target,
                                        "refused", refused.status, refused.detail)
                return refused.response()
            request.state.identity = identity
            audited = rule is not None and bool(rule.action)
            try:
                _check_query(request, known_query)
                response = await handler(request)
            except Refused as refused:
                await run_in_threadpool(guard.record, refused.identity, action, target,
                                        "refused", refused.status, refused.detail)
                return refused.response()
            except Exception as err:
                if audited:
                    status, message = _error_of(err)
                    await run_in_threadpool(
                        guard.record, identity, action,
                        getattr(request.state, "audit_target", target), _result(status),
                        status, message)
                raise
            if audited:
                await run_in_threadpool(
                    guard.record, identity, action,
                    getattr(request.state, "audit_target", target),
                    _result(response.status_code), response.status_code,
                    getattr(request.state, "audit_detail", ""))
            return response

        return guarded


def _check_query(request: Request, known: frozenset[str]) -> None:
    """Refuse query parameters the endpoint does not take, or takes once but got twice
    (no endpoint takes a list): they would be ignored, silently."""
    keys = [k for k, _ in request.query_params.multi_items()]
    unknown = sorted({k for k in keys if k not in known})
    if unknown:
        raise AgentError(f"unknown query parameter: {', '.join(unknown)}", 422)
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise AgentError(f"give each query parameter once ({', '.join(twice)})", 422)


def _target(rule: Rule | None, request: Request) -> str:
    if rule is None or not rule.target:
        return ""
    try:
        return rule.target.format(**request.path_params)
    except (KeyError, IndexError, ValueError):
        return rule.target
