"""``GET /events`` on a real ``vspan up --listen``: the stream flows through uvicorn as it is
made (not buffered), the number of open streams is bounded, and a client that goes away
gives its slot back at once (not at the stream's next event)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from tests.helpers.netns import is_root
from tests.system.apiswitch import ApiSwitch, api_switch
from vspan.api.events import MAX_STREAMS

pytestmark = pytest.mark.system

YAML = "ports: {a: {type: memory}, b: {type: memory}}\n"
SLOW = "/events?interval=60"  # one snapshot, then a minute of silence


@pytest.fixture(scope="module")
def switch() -> Iterator[tuple[ApiSwitch, str]]:
    if not is_root():
        pytest.skip("needs root to run a switch")
    with api_switch("wc-events-", YAML) as sw:
        yield sw, sw.token("ev-viewer", "viewer")


def first_event(resp: httpx.Response) -> tuple[str, Iterator[str]]:
    """Read the stream until its first snapshot (the next one is a minute away); the
    reader is returned too: the caller keeps it (a reader dropped closes the stream)."""
    text = ""
    reader = resp.iter_text()
    for chunk in reader:
        text += chunk
        if "event: snapshot" in text and text.endswith("\n\n"):
            return text, reader
    raise AssertionError(f"the stream ended early: {text!r}")


def test_streams_are_bounded_and_freed_when_clients_go(
        switch: tuple[ApiSwitch, str]) -> None:
    sw, token = switch
    with ExitStack() as stack:
        clients = [stack.enter_context(sw.client(token)) for _ in range(MAX_STREAMS)]
        streams = [stack.enter_context(c.stream("GET", SLOW)) for c in clients]
        readers = []
        for resp in streams:
            assert resp.status_code == 200
            text, reader = first_event(resp)  # flushed as made, not held back
            assert "event: snapshot" in text
            readers.append(reader)
        with sw.client(token) as extra:
            refused = extra.get("/events?limit=1")
            assert refused.status_code == 503, refused.text
            assert "too many event streams" in refused.json()["error"]
        streams[0].close()
        clients[0].close()
        # the slot comes back when the client goes, long before the stream's next event
        deadline = time.monotonic() + 20
        with sw.client(token) as again:
            while True:
                resp = again.get("/events?limit=1")
                if resp.status_code == 200:
                    break
                assert resp.status_code == 503
                assert time.monotonic() < deadline, "the slot was not given back"
                time.sleep(0.2)
            assert "event: end" in resp.text
    # every client gone: all slots free again
    with sw.client(token) as c:
        with ExitStack() as stack:
            for _ in range(MAX_STREAMS):
                resp = stack.enter_context(sw.client(token)).get("/events?limit=1")
                assert resp.status_code == 200
        assert c.get("/events?limit=1").status_code == 200


def test_a_stream_refused_without_a_role(switch: tuple[ApiSwitch, str]) -> None:
    sw, _ = switch
    with sw.client(None) as c:
        resp = c.get("/events?limit=1")
    assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Bearer")
    refused = [e for e in sw.audit() if e["action"] == "GET /events"]
    assert refused and refused[-1]["result"] == "refused" and refused[-1]["status"] == 401
