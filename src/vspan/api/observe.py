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
``max_rate`` (events per second).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

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


async def events(agent: Agent, obs: Observer, request: Request | None,
                 sse: bool = False) -> AsyncIterator[str]:
    """The stream of one observer until the client leaves; detaches it at the end."""
    loop = asyncio.get_running_loop()
    try:
        yield _line({"type": "started", "observer": obs.summary()}, sse)
        next_report = loop.time() + REPORT_SECONDS
        while request is None or not await request.is_disconnected():
            batch = obs.take()
            for ev in batch:
                yield _line(ev, sse)
            if loop.time() >= next_report:
                next_report = loop.time() + REPORT_SECONDS
                report = obs.suppressed_event()
                if report is not None:
                    yield _line(report, sse)
            if not batch:
                await asyncio.sleep(POLL_SECONDS)
    finally:
        # synchronous on purpose: a cancelled stream cannot await any more
        try:
            agent.observe_stop(obs.id)
        except AgentError:
            pass


def add_observe_routes(app: FastAPI, agent: Agent) -> None:
    """Add ``GET /observe`` (the stream) and ``GET /observers`` (running observers)."""

    @app.get("/observe", response_class=StreamingResponse)
    async def observe(
        request: Request,
        port: list[str] = Query(default=[]),  # noqa: B008
        vm: list[str] = Query(default=[]),  # noqa: B008
        verdict: list[str] = Query(default=[]),  # noqa: B008
        reason: list[str] = Query(default=[]),  # noqa: B008
        filter: str = "",
        sample: int = 1,
        max_rate: float = DEFAULT_MAX_RATE,
        format: str = "ndjson",
    ) -> StreamingResponse:
        """Stream per-frame events (see the module documentation)."""
        if format not in ("ndjson", "sse"):
            raise AgentError(f"format must be ndjson or sse, not {format!r}")
        body = {"ports": port, "vms": vm, "verdicts": verdict, "reasons": reason,
                "filter": filter, "sample": sample, "max_rate": max_rate}
        obs = await run_in_threadpool(agent.observe_start, body)
        sse = format == "sse"
        return StreamingResponse(events(agent, obs, request, sse),
                                 media_type=SSE if sse else NDJSON,
                                 headers={"Cache-Control": "no-cache"})

    @app.get("/observers")
    def observers() -> list[dict[str, Any]]:
        return agent.observers()
