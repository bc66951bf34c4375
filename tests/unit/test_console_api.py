"""The console's files (public, strict CSP, nothing else reachable) and the endpoints it
adds to the API: ``GET /events`` (server-sent events, guarded like every read, the token
checked again before every event, bounded) and ``POST /trace`` with a frame's fields."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vspan.api.access import Guard
from vspan.api.console import CSP, FILES, console_file
from vspan.api.rest import create_app
from vspan.config.access import Role
from vspan.config.load import parse_config
from vspan.config.model import PortConfig
from vspan.control.agent import Agent
from vspan.control.audit import AuditLog
from vspan.control.tokens import SqliteTokenStore
from vspan.packet.synth import FrameSpec, synth_frame
from vspan.ports.base import Port
from vspan.ports.memory import MemoryPort

CONSOLE_DIR = Path(__file__).resolve().parents[2] / "src" / "vspan" / "api" / FILES


def memory(name: str, _cfg: PortConfig) -> Port:
    return MemoryPort(name)


class Api:
    """An in-process API with a token store, an audit log and a token per role."""

    def __init__(self, tmp: Path) -> None:
        cfg = parse_config({
            "switch": {"name": "sw-ui", "state_dir": str(tmp)},
            "ports": {"a": {"type": "memory", "vlan": {"mode": "access", "id": 10},
                            "policy": {"acls": [{"id": "no-ten", "action": "deny",
                                                 "direction": "in",
                                                 "remote_ip": "10.0.0.0/8"}]}},
                      "b": {"type": "memory", "vlan": {"mode": "access", "id": 10},
                            "policy": {"guards": {"dhcp_guard": True}}},
                      "c": {"type": "memory"},
                      "s": {"type": "memory"}},
            "mirrors": {"mon": {"sources": ["a"], "destinations": ["s"]}},
            "firewall": {"exclude": ["s"]}}, "t")
        self.agent = Agent(cfg, memory)
        self.tokens = SqliteTokenStore(str(tmp / "auth.db"))
        self.audit = AuditLog(str(tmp / "audit.jsonl"))
        self.app: FastAPI = create_app(self.agent, Guard(self.tokens, self.audit,
                                                         lambda: cfg.switch.roles, 0))
        self.viewer = self.tokens.create("ui-viewer", Role.VIEWER)
        self.mirror_admin = self.tokens.create("ui-madmin", Role.MIRROR_ADMIN)

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    a = Api(tmp_path)
    try:
        yield a
    finally:
        a.agent.stop()


def events(text: str) -> list[tuple[str, Any]]:
    """(event, data) of every event in a server-sent event stream's text."""
    out = []
    for block in text.split("\n\n"):
        name, data = "message", None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is not None:
            out.append((name, data))
    return out


# ----------------------------------------------------------------------------- the files
class Page(HTMLParser):
    """What an HTML page loads and whether it has inline script or style."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            if not a.get("src"):
                self.inline.append("<script> without src")
            else:
                self.loads.append(str(a["src"]))
        if tag == "link" and a.get("rel") == "stylesheet":
            self.loads.append(str(a["href"]))
        if tag == "style":
            self.inline.append("<style>")
        for k, _ in attrs:
            if k == "style" or k.startswith("on"):
                self.inline.append(f"{tag} {k}=")


def test_the_page_is_public_and_strict(api: Api) -> None:
    with TestClient(api.app) as c:
        resp = c.get("/console")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/html")
        assert resp.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["x-frame-options"] == "DENY"
        page = Page()
        page.feed(resp.text)
        assert page.inline == []
        assert page.loads and all(u.startswith("/console/") for u in page.loads)
        for url in page.loads:
            asset = c.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["content-security-policy"] == CSP
        js = c.get("/console/main.js")
        assert js.headers["content-type"].startswith("text/javascript")
        root = c.get("/", follow_redirects=False)
        assert root.status_code == 307 and root.headers["location"] == "/console"


def test_every_module_the_scripts_import_is_served(api: Api) -> None:
    with TestClient(api.app) as c:
        for js in CONSOLE_DIR.glob("*.js"):
            for name in re.findall(r'from "\./([a-z-]+\.js)"', js.read_text()):
                assert c.get(f"/console/{name}").status_code == 200, (js.name, name)


def test_switch_data_never_becomes_markup() -> None:
    """Names come from the configuration (and from whoever made a session): the scripts
    put them into the page as text only."""
    for js in CONSOLE_DIR.glob("*.js"):
        text = js.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                     "eval(", "new Function"):
            assert sink not in text, (js.name, sink)


@pytest.mark.parametrize("path", [
    "/console/nope.js", "/console/console.py", "/console/..%2Fconsole.py",
    "/console/%2e%2e%2frest.py", "/console/.hidden.js", "/console/Main.JS",
    "/console/__init__.py", "/console/api.js%00.css"])
def test_nothing_but_the_console_files_is_served(api: Api, path: str) -> None:
    with TestClient(api.app) as c:
        resp = c.get(path)
        assert resp.status_code in (404, 422), (path, resp.status_code)
        assert "error" in resp.json()
    assert console_file("../console.py") is None
    assert console_file("api.js") is not None


# ------------------------------------------------------------------------ GET /events
def test_events_need_a_token_in_the_header(api: Api) -> None:
    with TestClient(api.app) as c:
        assert c.get("/events?limit=1").status_code == 401
        in_url = c.get(f"/events?limit=1&token={api.viewer}")
        assert in_url.status_code == 401 and "never in the URL" in in_url.json()["error"]
        bad = c.get("/events?limit=1", headers=api.auth(api.viewer[:-2] + "xx"))
        assert bad.status_code == 401
    refused = [e for e in api.audit.read() if e.result == "refused"]
    assert [e.action for e in refused] == ["GET /events"] * 3


def test_a_viewer_follows_the_switch(api: Api) -> None:
    with TestClient(api.app) as c:
        resp = c.get("/events?limit=2&interval=0.25", headers=api.auth(api.viewer))
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["cache-control"] == "no-store"
        assert resp.text.startswith("retry: ")
        got = events(resp.text)
    assert [name for name, _ in got] == ["snapshot", "snapshot", "end"]
    snap = got[0][1]
    ports = {p["name"]: p for p in snap["ports"]}
    assert set(ports) == {"a", "b", "c", "s"}
    assert ports["a"]["vlan"] == "access 10"
    assert ports["a"]["policy"] == ["1 ACL", "firewall"]
    assert ports["b"]["policy"] == ["dhcp-guard", "firewall"]
    assert ports["c"]["policy"] == ["firewall"] and ports["s"]["policy"] == []  # excluded
    assert ports["s"]["role"].startswith("mirror-dest") and ports["a"]["role"] == "mirror-src"
    assert set(ports["a"]["counters"]) >= {"rx_frames", "tx_frames", "dropped"}
    assert [m["name"] for m in snap["mirrors"]] == ["mon"]
    assert snap["mirrors"][0]["destinations"] == ["s"]
    assert isinstance(snap["drops"], list) and snap["time"].endswith("Z")
    assert got[2][1] == {"reason": "limit of 2 snapshots reached"}


def test_events_counters_move(api: Api) -> None:
    """Frames switched while the stream runs show in its later snapshots."""
    api.agent.start()
    backend = api.agent.engine.backends[api.agent.engine.state.by_name["b"]]
    assert isinstance(backend, MemoryPort)
    frame = synth_frame(FrameSpec("02:00:00:00:00:0a", "ff:ff:ff:ff:ff:ff", "10.1.0.1",
                                  "10.1.0.2"))

    def rx(s: dict[str, Any]) -> int:
        return int(next(p for p in s["ports"] if p["name"] == "b")["counters"]["rx_frames"])

    seen: list[int] = []
    injected = False
    with TestClient(api.app) as c, c.stream("GET", "/events?limit=40&interval=0.25",
                                            headers=api.auth(api.viewer)) as resp:
        text = ""
        for chunk in resp.iter_text():
            text += chunk
            seen = [rx(d) for n, d in events(text) if n == "snapshot"]
            if seen and not injected:
                injected = backend.inject(frame, frame, frame) == 3
            if seen and seen[-1] >= seen[0] + 3:
                break
    assert seen[0] == 0 and seen[-1] == 3, seen


def test_events_input_is_checked(api: Api) -> None:
    with TestClient(api.app) as c:
        h = api.auth(api.viewer)
        for query in ("interval=0.01", "interval=61", "limit=0", "interval=x", "limit=1&x=1",
                      "limit=1&limit=2"):
            resp = c.get(f"/events?{query}", headers=h)
            assert resp.status_code == 422, (query, resp.text)
            assert "error" in resp.json()


def test_a_revoked_token_ends_the_stream(api: Api) -> None:
    doomed = api.tokens.create("ui-doomed", Role.VIEWER)
    with TestClient(api.app) as c, c.stream("GET", "/events?limit=50&interval=0.25",
                                            headers=api.auth(doomed)) as resp:
        assert resp.status_code == 200
        text = ""
        for chunk in resp.iter_text():
            text += chunk
            if "event: snapshot" in text and "revoked" not in text:
                api.tokens.revoke("ui-doomed")
            if "event: end" in text:
                break
    got = events(text)
    assert got[-1][0] == "end"
    assert got[-1][1]["status"] == 401 and "revoked" in got[-1][1]["error"]
    assert len([n for n, _ in got if n == "snapshot"]) < 50
    ended = [e for e in api.audit.read() if e.identity == "token:ui-doomed"]
    assert ended and ended[-1].result == "refused" and "event stream ended" in ended[-1].detail


def test_open_streams_are_bounded(api: Api) -> None:
    api.app.state.event_slots.limit = 0
    with TestClient(api.app) as c:
        resp = c.get("/events?limit=1", headers=api.auth(api.viewer))
        assert resp.status_code == 503
        assert "too many event streams" in resp.json()["error"]
    api.app.state.event_slots.limit = 1
    with TestClient(api.app) as c:
        assert c.get("/events?limit=1", headers=api.auth(api.viewer)).status_code == 200
        # the slot was given back when the stream ended
        assert api.app.state.event_slots.open == 0
        assert c.get("/events?limit=1", headers=api.auth(api.viewer)).status_code == 200


# ------------------------------------------------------------------- POST /trace fields
def test_trace_from_fields_is_the_trace_of_the_frame(api: Api) -> None:
    packet = {"src_mac": "02:00:00:00:00:0a", "dst_mac": "02:00:00:00:00:0b",
              "src_ip": "10.1.0.1", "dst_ip": "10.1.0.2", "proto": "tcp", "dport": 443,
              "vlan": []}
    frame = synth_frame(FrameSpec("02:00:00:00:00:0a", "02:00:00:00:00:0b", "10.1.0.1",
                                  "10.1.0.2", (), "tcp", 12345, 443, "S"))
    with TestClient(api.app) as c:
        h = api.auth(api.viewer)
        by_fields = c.post("/trace", headers=h, json={"port": "b", "packet": packet})
        by_hex = c.post("/trace", headers=h, json={"port": "b", "frame": frame.hex()})
    assert by_fields.status_code == 200, by_fields.text
    assert by_fields.json() == by_hex.json()
    result = by_fields.json()
    assert result["frame_len"] == len(frame)
    assert result["verdict"].startswith("verdict: ")
    assert result["trace"] and all("stage" in n for n in result["trace"])


@pytest.mark.parametrize(("body", "says"), [
    ({"port": "b"}, "one of them"),
    ({"port": "b", "frame": "00" * 60, "packet": {}}, "one of them"),
    ({"port": "b", "packet": {"src_ip": "10.0.0.300", "dst_ip": "10.0.0.1"}}, "10.0.0.300"),
    ({"port": "b", "packet": {"proto": "tcp"}}, "needs a source and a destination IP"),
    ({"port": "b", "packet": {"vlan": [4096]}}, "vlan"),
    ({"port": "b", "packet": {"src_mac": "02-00-00-00-00-01"}}, "src_mac"),
    ({"port": "b", "packet": {"flags": "<script>"}}, "flags"),
    ({"port": "b", "packet": {"sneaky": 1}}, "sneaky"),
])
def test_trace_fields_are_checked(api: Api, body: dict[str, Any], says: str) -> None:
    with TestClient(api.app) as c:
        resp = c.post("/trace", headers=api.auth(api.viewer), json=body)
    assert resp.status_code == 422, resp.text
    assert says in json.dumps(resp.json())


def test_policy_explain_takes_fields_too(api: Api) -> None:
    packet = {"src_mac": "02:00:00:00:00:0a", "dst_mac": "02:00:00:00:00:0b",
              "src_ip": "10.1.0.1", "dst_ip": "10.1.0.2", "proto": "udp", "dport": 53}
    frame = synth_frame(FrameSpec("02:00:00:00:00:0a", "02:00:00:00:00:0b", "10.1.0.1",
                                  "10.1.0.2", (), "udp", 12345, 53))
    with TestClient(api.app) as c:
        h = api.auth(api.viewer)
        by_fields = c.post("/policy/explain", headers=h,
                           json={"port": "a", "direction": "in", "packet": packet})
        by_hex = c.post("/policy/explain", headers=h,
                        json={"port": "a", "direction": "in", "frame": frame.hex()})
    assert by_fields.status_code == 200, by_fields.text
    assert by_fields.json() == by_hex.json()
