"""`vspan observe` against a real switch: ping and a firewall-denied TCP connect between two
namespaces show up as forwarded and dropped events; the rate cap holds under a flood."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.switchproc import SwitchProcess, running_switch
from tests.system.test_switch import MACS, hosts, ping, ports_yaml

pytestmark = pytest.mark.system

FIREWALL = """
firewall:
  default_action: allow
  sections:
    - name: lab
      rules:
        - {id: no-5555, services: ["tcp/5555"], action: drop}
"""


class Stream:
    """A running `vspan observe --json`: its lines read in a thread."""

    def __init__(self, sw: SwitchProcess, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vspan.cli.main", "observe", "--json", *args,
             "--socket", sw.socket], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        first = self.next(20)
        assert first is not None and first["type"] == "started", first

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def until(self, done: Any, timeout: float = 20, idle: float = 0) -> list[dict[str, Any]]:
        """Events until ``done(events)`` holds, or (``idle``) nothing came for that long, or
        the time is up (the caller's asserts say what was missing)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        while not done(out) and time.monotonic() < deadline:
            ev = self.next(0.5)
            if ev is not None:
                out.append(ev)
                quiet_since = time.monotonic()
            elif idle and time.monotonic() - quiet_since >= idle:
                break
        return out

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=20)
        self.thread.join(timeout=5)
        assert self.proc.returncode == 0, err
        return err


def _tcp_connect(lab: Lab, ns: str, dst: str, port: int) -> bool:
    code = ("import socket,sys\n"
            f"try:\n socket.create_connection(({dst!r}, {port}), timeout=1.5)\n"
            "except OSError:\n sys.exit(1)\n")
    return lab.exec(ns, sys.executable, "-c", code, check=False).returncode == 0


def test_ping_forwarded_and_denied_connect_dropped_with_reason_and_rule(
        netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    h = hosts(netlab, {"a": "10.31.0.1/24", "b": "10.31.0.2/24"})
    with running_switch(tmp_path, ports_yaml(h) + FIREWALL) as sw:
        stream = Stream(sw)
        try:
            ping(netlab, h["a"][0], "10.31.0.2", count=2)
            assert not _tcp_connect(netlab, h["a"][0], "10.31.0.2", 5555)

            def seen_both(evs: list[dict[str, Any]]) -> bool:
                return (any(e["type"] == "dropped" for e in evs)
                        and any(e["type"] == "forwarded"
                                and e["summary"].get("icmp_type") == 0 for e in evs))

            events = stream.until(seen_both)
        finally:
            err = stream.stop()
    echo = [e for e in events if e["type"] == "forwarded"
            and e["summary"].get("proto") == "icmp" and e["summary"].get("icmp_type") == 8]
    assert echo, events
    assert echo[0]["in_port"] == "a" and echo[0]["outputs"][0]["port"] == "b"
    assert echo[0]["summary"]["src_ip"] == "10.31.0.1"
    assert echo[0]["summary"]["src_mac"] == MACS["a"] and echo[0]["switch"] == "t"
    drops = [e for e in events if e["type"] == "dropped"]
    assert drops, events
    d = drops[0]
    assert (d["reason"], d["rule"], d["stage"]) == ("firewall-deny", "no-5555", "firewall")
    assert d["rule_text"] == ("section lab: {id: no-5555, action: drop, services: "
                              "[{protocol: tcp, ports: [5555]}]}")
    assert d["summary"]["dport"] == 5555 and d["summary"]["tcp_flags"] == "S"
    assert d["in_port"] == "a" and d["explanation"]
    assert "events shown" in err


def test_rate_cap_holds_under_a_flood_and_suppressed_events_are_counted(
        netlab: Lab, tmp_path: Path) -> None:
    require_tools("trafgen")
    h = hosts(netlab, {"a": "10.32.0.1/24", "b": "10.32.0.2/24"})
    frames = 20000
    cap = 100
    cfg = tmp_path / "flood.cfg"
    cfg.write_text("{\n"
                   f"  eth(da={MACS['b']}, sa={MACS['a']}),\n"
                   "  ipv4(da=10.32.0.2, sa=10.32.0.1, ttl=64),\n"
                   "  udp(sp=40000, dp=9),\n"
                   "  fill(0x00, 18)\n"
                   "}\n", encoding="utf-8")
    with running_switch(tmp_path, ports_yaml(h)) as sw:
        # b is learned first, so the flood is forwarded, not flooded
        ping(netlab, h["b"][0], "10.32.0.1", count=1)
        t0 = time.monotonic()
        stream = Stream(sw, "--verdict", "forwarded", "--port", "a", "--max-rate", str(cap))
        try:
            netlab.exec(h["a"][0], "trafgen", "-o", "eth0", "-i", str(cfg), "-n", str(frames),
                        "-P", "1", "--no-sock-mem", "--notouch-irq", timeout=120)
            # the stream reports suppressed counts once a second while they change: read
            # until it has been quiet for a while after the flood
            events = stream.until(lambda _evs: False, timeout=60, idle=3)
        finally:
            stream.stop()
        elapsed = time.monotonic() - t0
    reports = [e for e in events if e["type"] == "suppressed"]
    assert reports, "no suppressed report in the stream"
    total = reports[-1]["total"]
    assert total["rate_limited"] > 0, total  # the flood went over the cap
    assert total["matched"] == (total["emitted"] + total["sampled_out"] + total["rate_limited"]
                                + total["queue_full"])
    forwarded = [e for e in events if e["type"] == "forwarded"]
    # a token bucket of `cap` events/s with a one-second burst never emits more than this,
    # however fast or slow the machine (the report's totals are a snapshot: events emitted
    # after it without a new suppression come without a new report)
    assert total["emitted"] <= len(forwarded) <= cap * (elapsed + 1)
    assert sum(r["rate_limited"] for r in reports) == total["rate_limited"]


def test_the_stream_as_server_sent_events_for_a_browser(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    h = hosts(netlab, {"a": "10.33.0.1/24", "b": "10.33.0.2/24"})
    with running_switch(tmp_path, ports_yaml(h)) as sw:
        transport = httpx.HTTPTransport(uds=sw.socket)
        timeout = httpx.Timeout(10.0, read=20.0)
        with httpx.Client(transport=transport, base_url="http://vspan", timeout=timeout) as c, \
                c.stream("GET", "/observe", params={"format": "sse", "port": "b"}) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.iter_lines()
            assert next(lines) == "event: started"
            assert json.loads(next(lines).removeprefix("data: "))["type"] == "started"
            ping(netlab, h["a"][0], "10.33.0.2", count=1)
            got: list[str] = []
            for line in lines:
                got.append(line)
                if line.startswith("data: ") and '"forwarded"' in line:
                    break
            ev = json.loads(got[-1].removeprefix("data: "))
            assert got[-2] == "event: forwarded"
            assert ev["outputs"][0]["port"] == "b" or ev["in_port"] == "b"
        with httpx.Client(transport=transport, base_url="http://vspan") as c:
            bad = c.get("/observe", params={"reason": "nope"})
            assert bad.status_code == 400 and "no drop reason 'nope'" in bad.json()["error"]
            for params in ({"sample": 0}, {"max_rate": 0}, {"max_rate": "x"}, {"count": -1},
                           {"duration": 1e9}, {"format": "xml"}, {"filter": "tcp port"},
                           {"port": "nosuch"}, {"verdict": "maybe"}, {"filter": "x" * 2000}):
                bad = c.get("/observe", params=params)
                assert bad.status_code in (400, 422), (params, bad.text)
                assert "error" in bad.json(), params
            # a stream the switch ends: duration and count
            with c.stream("GET", "/observe", params={"duration": 0.3}) as resp:
                types = [json.loads(x)["type"] for x in resp.iter_lines()]  # it ends
                assert types[0] == "started"
            # the observer of the closed stream is detached (soon: the server notices the
            # client left when it next looks)
            deadline = time.monotonic() + 10
            while c.get("/observers").json() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert c.get("/observers").json() == []


def test_one_merged_stream_from_two_switches(netlab: Lab, tmp_path: Path) -> None:
    """`--also`: the events of another switch (a distributed switch's other host) in the same
    stream, each naming its switch and host."""
    require_tools("ping")
    h = hosts(netlab, {"a": "10.34.0.1/24", "b": "10.34.0.2/24",
                       "c": "10.35.0.1/24", "d": "10.35.0.2/24"})
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with running_switch(tmp_path / "one", ports_yaml({k: h[k] for k in "ab"})) as one, \
            running_switch(tmp_path / "two", ports_yaml({k: h[k] for k in "cd"})) as two:
        stream = Stream(one, "--also", two.socket)
        try:
            second = stream.next(20)  # the other switch's `started`
            assert second is not None and second["type"] == "started"
            ping(netlab, h["a"][0], "10.34.0.2", count=1)
            ping(netlab, h["c"][0], "10.35.0.2", count=1)
            events = stream.until(lambda evs: {"a", "c"} <= {e.get("in_port") for e in evs})
        finally:
            stream.stop()
    by_port = {e["in_port"]: e for e in events if e["type"] == "forwarded"}
    assert by_port["a"]["outputs"][0]["port"] == "b"
    assert by_port["c"]["outputs"][0]["port"] == "d"
    assert all(e["host"] for e in by_port.values())
