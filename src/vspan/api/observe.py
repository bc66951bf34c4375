"""``GET /observe``: the live stream of per-frame events (``vspan observe``, the web console).

The answer is a streaming response, one JSON object per event: newline-delimited
JSON (``application/x-ndjson``, the default) or server-sent events
(``format=sse``, ``text/event-stream``: ``event: <type>`` + ``data: <json>``,
what a browser's ``EventSource`` reads). The first object is
``{"type": "started", "observer": {...}}`` (the observer is attached: frames from
now on are seen); then events as they come (``docs/observe.md`` lists their
fields), and at most once a second a ``suppressed`` object when sampling, the
rate cap or a slow reader left events out. The observer is detached when the
client goes away.

Query parameters (each list parameter may repeat or hold a comma list):
``port``, ``vm``, ``verdict`` (received, forwarded, mirrored, dropped, all),
``reason``, ``filter`` (the capture filter language), ``sample`` (1 in N),
``max_rate`` (events per second), ``count`` and ``duration`` (end the stream after so many
events or seconds; 0, the default: when the client leaves), ``format``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from vspan.capture.observe import DEFAULT_MAX_RATE, Observer
from vspan.control.agent import Agent, AgentError

POLL_SECONDS = 0.05  # how often an idle stream looks for new events
REPORT_SECONDS = 1.0  # how often suppressed counts are reported (when they changed)
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


def _line(obj: dict[str, Any], sse: bool) -> str:
    text = json.dumps(obj, separators=(",", ":"))
    return f"event: {obj.get('type', 'message')}\ndata: {text}\n\n" if sse else text + "\n"


async def events(agent: Agent, obs: Observer, request: Request | None, sse: bool = False,
                 count: int = 0, duration: float = 0.0) -> AsyncIterator[str]:
    """The stream of one observer until the client leaves (or ``count`` events, or
    ``duration`` seconds); detaches it at the end."""
    loop = asyncio.get_running_loop()
    end = loop.time() + duration if duration > 0 else None
    sent = 0
    try:
        yield _line({"type": "started", "observer": obs.summary()}, sse)
        next_report = loop.time() + REPORT_SECONDS
        while request is None or not await request.is_disconnected():
            batch = obs.take()
            for ev in batch:
                yield _line(ev, sse)
                sent += 1
                if count and sent >= count:
                    return
            now = loop.time()
            last = end is not None and now >= end
            if now >= next_report or last:
                next_report = now + REPORT_SECONDS
                report = obs.suppressed_event()
                if report is not None:
                    yield _line(report, sse)
            if last:
                return
            if not batch:
                await asyncio.sleep(POLL_SECONDS)
    finally:
        # synchronous on purpose: a cancelled stream cannot await any more
        try:
            agent.observe_stop(obs.id)
        except AgentError:
            pass


def add_observe_routes(app: FastAPI, agent: Agent,
                       errors: dict[int | str, dict[str, Any]],
                       refused: dict[int | str, dict[str, Any]]) -> None:
    """Add ``GET /observe`` (the stream; ``errors``: its documented error answers) and
    ``GET /observers`` (running observers; ``refused``: its documented refusals)."""

    @app.get("/observe", response_class=StreamingResponse, responses=errors | {200: {
        "description": "the events: one JSON object per line (ndjson) or server-sent events",
        "content": {NDJSON: {"schema": {"type": "string"}},
                    SSE: {"schema": {"type": "string"}}}}})
    async def observe(
        request: Request,
        port: Annotated[list[str], Query(max_length=256)] = [],  # noqa: B006
        vm: Annotated[list[str], Query(max_length=256)] = [],  # noqa: B006
        verdict: Annotated[list[str], Query(max_length=16)] = [],  # noqa: B006
        reason: Annotated[list[str], Query(max_length=64)] = [],  # noqa: B006
        filter: Annotated[str, Query(max_length=1024)] = "",
        sample: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        max_rate: Annotated[float, Query(gt=0, le=1e9)] = DEFAULT_MAX_RATE,
        count: Annotated[int, Query(ge=0, description="stop after N events (0: never)")] = 0,
        duration: Annotated[float, Query(ge=0, le=86400,
                                         description="stop after S seconds (0: never)")] = 0,
        format: Literal["ndjson", "sse"] = "ndjson",
    ) -> StreamingResponse:
        """Stream per-frame events until the client leaves (``docs/observe.md``)."""
        body = {"ports": port, "vms": vm, "verdicts": verdict, "reasons": reason,
                "filter": filter, "sample": sample, "max_rate": max_rate}
        obs = await run_in_threadpool(agent.observe_start, body)
        sse = format == "sse"
        return StreamingResponse(events(agent, obs, request, sse, count, duration),
                                 media_type=SSE if sse else NDJSON,
                                 headers={"Cache-Control": "no-cache"})

    @app.get("/observers", responses=refused)
    def observers() -> list[dict[str, Any]]:
        """The observers attached now, with their counts."""
        return agent.observers()
