"""``GET /events``: the running switch as a stream of server-sent events (the console's live
counters; any client that reads ``text/event-stream`` can use it).

Every ``interval`` seconds one ``snapshot`` event carries the ports (VLAN mode, roles,
counters), the mirror sessions (with their counters) and the drops by reason. The caller's
token is checked again before every event: a token revoked or expired mid-stream ends the
stream with an ``end`` event naming why (audited as a refusal). The number of open streams
is bounded (:data:`MAX_STREAMS`); more are refused with 503.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from vspan.api.access import Guard, Refused
from vspan.config.policy import PortPolicyConfig, active_guards
from vspan.control import views
from vspan.control.agent import Agent, AgentError
from vspan.control.assemble import switch_policy
from vspan.control.audit import utc_text
from vspan.control.roles import Permission

MAX_STREAMS = 16  # open event streams per switch
RETRY_MS = 3000  # what a reconnecting client waits (the SSE `retry` field)
MEDIA_TYPE = "text/event-stream"


class StreamSlots:
    """A bounded number of open streams (thread-safe)."""

    def __init__(self, limit: int = MAX_STREAMS) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Take a slot; False when all are taken."""
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give(self) -> None:
        """Give a slot back."""
        with self._lock:
            self.open -= 1


def snapshot(agent: Agent) -> dict[str, Any]:
    """Ports, mirror sessions and drops of the running switch, read on its engine thread
    in one go (so the numbers belong together)."""

    def read() -> dict[str, Any]:
        engine = agent.engine
        counters = views.counters_view(engine)
        ports = views.ports_view(engine)
        firewall = switch_policy(engine).firewall  # None: no firewall, or disabled
        for row in ports:
            port = agent.config.ports.get(row["name"])
            covered = firewall is not None and firewall.ruleset.covers(row["name"])
            row["policy"] = policy_summary(port.policy if port else None, covered)
        return {"ports": ports, "mirrors": views.mirrors_view(engine),
                "drops": counters["drops"]}

    data = agent.engine.call(read)
    data["time"] = utc_text(time.time())
    return data


def policy_summary(policy: PortPolicyConfig | None, firewall: bool) -> list[str]:
    """What policy applies at a port, as short phrases (``2 ACLs``, ``dhcp-guard``,
    ``firewall``; empty: none); ``firewall``: the distributed firewall is enforced there
    (it is on, and the port is not excluded)."""
    out: list[str] = []
    if policy is not None:
        if policy.acls:
            out.append(f"{len(policy.acls)} ACL" + ("s" if len(policy.acls) > 1 else ""))
        if policy.extended_acls:
            out.append(f"{len(policy.extended_acls)} extended ACL"
                       + ("s" if len(policy.extended_acls) > 1 else ""))
        out += active_guards(policy.guards)
    if firewall:
        out.append("firewall")
    return out


def sse(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One server-sent event (``data`` as one line of JSON)."""
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return (head + "data: " + json.dumps(data, separators=(",", ":")) + "\n\n").encode()


class EventStreamResponse(StreamingResponse):
    """A stream that ends as soon as its client goes (it listens for the disconnect while
    it streams, whatever the server's ASGI version) and then gives its slot back."""

    def __init__(self, content: AsyncIterator[bytes], slots: StreamSlots) -> None:
        super().__init__(content, media_type=MEDIA_TYPE,
                         headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:  # the client went away mid-write
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            self.slots.give()


def event_stream(request: Request, agent: Agent, slots: StreamSlots, interval: float,
                 limit: int | None) -> StreamingResponse:
    """The streaming answer of ``GET /events`` (the caller was admitted already)."""
    if not slots.take():
        raise AgentError(f"too many event streams open ({slots.limit}); close one", 503)
    guard: Guard = request.app.state.guard
    return EventStreamResponse(_events(request, guard, agent, interval, limit), slots)


async def _events(request: Request, guard: Guard, agent: Agent, interval: float,
                  limit: int | None) -> AsyncIterator[bytes]:
    sent = 0
    yield f"retry: {RETRY_MS}\n\n".encode()
    while limit is None or sent < limit:
        refusal = await run_in_threadpool(_still_admitted, guard, request)
        if refusal is not None:
            yield sse("end", {"error": str(refusal), "status": refusal.status})
            return
        data = await run_in_threadpool(snapshot, agent)
        sent += 1
        yield sse("snapshot", data, sent)
        if limit is not None and sent >= limit:
            break
        await asyncio.sleep(interval)
    yield sse("end", {"reason": f"limit of {limit} snapshots reached"})


def _still_admitted(guard: Guard, request: Request) -> Refused | None:
    """None while the caller may still read; else the refusal (audited)."""
    try:
        who = guard.identify(request)
        if not who.may(Permission.READ):
            raise Refused(403, f"{who.name} may no longer read this switch", who,
                          Permission.READ)
    except Refused as refused:
        guard.record(refused.identity, "GET /events", "", "refused", refused.status,
                     f"event stream ended: {refused.detail}")
        return refused
    return None
