"""Time-boxed and byte-capped mirror sessions and captures stop by themselves: the datapath
never sends a copy (or writes a packet) past the cap, the watcher disables the session or
closes the capture and audits it as the system, with the reason."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from vspan.capture.pcapng import CaptureReader
from vspan.config.load import parse_config
from vspan.config.model import PortConfig
from vspan.control.agent import Agent, AgentError
from vspan.control.audit import AuditLog
from vspan.control.limits import LimitWatcher
from vspan.packet import build
from vspan.ports.base import Frame, Port
from vspan.ports.memory import MemoryPort

A_IN = {"port": "a", "direction": "ingress"}  # what a sends (the test sends 100-byte frames)


class Rig:
    """An agent on memory ports (engine not started: calls run inline), its watcher and
    audit log."""

    def __init__(self, tmp: Path) -> None:
        self.ports: dict[str, MemoryPort] = {}

        def factory(name: str, _cfg: PortConfig) -> Port:
            self.ports[name] = MemoryPort(name)
            return self.ports[name]

        cfg = parse_config({"switch": {"state_dir": str(tmp / "state")},
                            "ports": {p: {"type": "memory"} for p in ("a", "b", "sniff")}},
                           "test")
        self.agent = Agent(cfg, factory)
        self.agent.engine.open()
        self.audit = AuditLog(str(tmp / "audit.jsonl"))
        self.watcher = LimitWatcher(self.agent, self.audit)

    def send(self, n: int, size: int = 100) -> None:
        """``n`` frames of ``size`` bytes from a to b (b's MAC is learned first)."""
        eng = self.agent.engine
        b_mac, a_mac = "02:00:00:00:00:0b", "02:00:00:00:00:0a"
        eng.process(eng.state.by_name["b"], [Frame(
            build.ethernet(b_mac, a_mac, ethertype=0x88B5).build(b"\x00" * 46))])
        frame = build.ethernet(a_mac, b_mac, ethertype=0x88B5).build(b"\x11" * (size - 14))
        for _ in range(n):
            eng.process(eng.state.by_name["a"], [Frame(frame)])
            eng.flush()

    def sniffed(self) -> list[bytes]:
        return [f.data for f in self.ports["sniff"].take()]

    def session(self, name: str) -> dict[str, object]:
        rows: list[dict[str, object]] = self.agent.show("mirrors")
        return next(r for r in rows if r["name"] == name)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.agent.stop()


def test_byte_capped_session_stops_at_its_cap(rig: Rig) -> None:
    rig.agent.mirror_create("cap", {"sources": [A_IN], "destinations": ["sniff"],
                                    "max_bytes": 1050})
    rig.sniffed()
    assert rig.watcher.check_once() == []
    rig.send(20, size=100)
    copies = rig.sniffed()
    assert len(copies) == 10 and sum(map(len, copies)) == 1000  # the 11th would pass 1050
    row = rig.session("cap")
    counters = row["counters"]
    assert isinstance(counters, dict)
    assert counters["bytes"] == 1000 and counters["capped"] == 10
    stopped = rig.watcher.check_once()
    assert [(s.kind, s.target, s.reason) for s in stopped] == [
        ("mirror", "cap", "max_bytes 1050 reached")]
    stopped_row = rig.session("cap")
    assert stopped_row["enabled"] is False
    assert stopped_row["counters"] == counters  # a stopped session keeps its counters
    (entry,) = rig.audit.read()
    assert (entry.identity, entry.action, entry.target, entry.result) == \
        ("system", "mirror.stop", "cap", "ok")
    assert entry.detail.startswith("max_bytes 1050 reached") and '"bytes": 1000' in entry.detail
    # the live change names the switch as who disabled it
    live = rig.agent.live_changes()["changes"]
    assert any("the switch (max_bytes 1050 reached)" in str(c) for c in live)
    # once stopped, nothing more is stopped
    assert rig.watcher.check_once() == []
    # enabling it again starts a fresh byte budget (the counters go on)
    rig.agent.mirror_enable("cap", True)
    rig.send(12, size=100)
    assert len(rig.sniffed()) == 10
    again = rig.session("cap")["counters"]
    assert isinstance(again, dict) and again["bytes"] == 2000 and again["capped"] == 2
    assert again["cap_bytes"] == 1000  # of this enable's budget


def test_time_boxed_session_stops_when_its_time_is_over(rig: Rig) -> None:
    # a box that is over by the wall clock; the watcher is asked about times around it
    stop_at = datetime.now(UTC) - timedelta(seconds=30)
    rig.agent.mirror_create("box", {"sources": [A_IN], "destinations": ["sniff"],
                                    "stop_at": stop_at.isoformat()})
    rig.send(2)
    assert len(rig.sniffed()) == 2
    assert rig.watcher.check_once(now=stop_at.timestamp() - 1) == []
    assert rig.session("box")["enabled"] is True
    (due,) = rig.watcher.check_once(now=stop_at.timestamp() + 0.1)
    assert (due.kind, due.target, due.reason) == ("mirror", "box", "time box over")
    assert rig.session("box")["enabled"] is False
    rig.send(2)
    assert rig.sniffed() == []
    (entry,) = rig.audit.read()
    assert (entry.identity, entry.role, entry.source, entry.action, entry.result) == \
        ("system", "-", "vspan", "mirror.stop", "ok")
    assert entry.detail.startswith("time box over")
    # enabled again without a new box: the box that is over is dropped, it keeps copying
    rig.agent.mirror_enable("box", True)
    assert rig.agent.config.mirrors["box"].stop_at is None
    assert rig.watcher.check_once(now=stop_at.timestamp() + 60) == []
    # or with a new box
    new_end = datetime.now(UTC) + timedelta(seconds=5)
    rig.agent.mirror_enable("box", True, stop_at=new_end)
    assert rig.agent.config.mirrors["box"].stop_at == new_end
    assert len(rig.watcher.check_once(now=new_end.timestamp() + 1)) == 1


def test_byte_capped_capture_never_passes_its_cap(rig: Rig, tmp_path: Path) -> None:
    path = tmp_path / "cap.pcapng"
    cap = rig.agent.capture_start(["a"], str(path), "in", max_bytes=1500)
    rig.send(30, size=100)
    assert rig.watcher.check_once(now=0) != []  # full: stopped whatever the time
    size = path.stat().st_size
    assert 1500 - 200 < size <= 1500  # another packet block would not have fit
    records = list(CaptureReader(str(path)))
    assert 0 < len(records) < 30
    # an independent reader agrees, and every packet is whole
    assert [bytes(p) for p in rdpcap(str(path))] == [r.data for r in records]
    assert all(len(r.data) == 100 and Ether(r.data).type == 0x88B5 for r in records)
    got = rig.agent.capture_get(cap["id"])
    assert got["running"] is False and got["stopped_by"] == "system"
    assert got["stop_reason"] == "max_bytes 1500 reached" and got["bytes"] == size
    (entry,) = rig.audit.read()
    assert (entry.identity, entry.action, entry.target) == ("system", "capture.stop",
                                                            str(cap["id"]))
    assert entry.detail.startswith("max_bytes 1500 reached")


def test_time_boxed_capture_and_packet_count(rig: Rig, tmp_path: Path) -> None:
    boxed = rig.agent.capture_start(["a"], str(tmp_path / "box.pcapng"), duration=10)
    counted = rig.agent.capture_start(["a"], "counted.pcapng", max_packets=2)
    assert counted["path"] == str(tmp_path / "state" / "captures" / "counted.pcapng")
    rig.send(5)
    stop_at = boxed["stop_at"]
    assert isinstance(stop_at, str)
    end = datetime.fromisoformat(stop_at).timestamp()
    first = rig.watcher.check_once(now=end - 1)
    assert [(s.target, s.reason) for s in first] == [(str(counted["id"]),
                                                     "max_packets 2 reached")]
    second = rig.watcher.check_once(now=end + 1)
    assert [(s.target, s.reason) for s in second] == [(str(boxed["id"]), "time box over")]
    assert rig.agent.captures() == []
    assert [e.target for e in rig.audit.read()] == [str(counted["id"]), str(boxed["id"])]


def test_a_session_stopped_by_a_user_first_is_not_stopped_again(rig: Rig) -> None:
    rig.agent.mirror_create("race", {"sources": [A_IN], "destinations": ["sniff"],
                                     "max_bytes": 150})
    rig.send(3)
    rig.agent.mirror_enable("race", False)  # the user was quicker than the watcher
    assert rig.watcher.check_once() == []
    assert rig.audit.read() == []


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "x.pcapng\n", "-rf", "x" * 129,
                                 "ü.pcapng", "a\x00b"])
def test_capture_names_stay_in_the_capture_directory(rig: Rig, bad: str) -> None:
    with pytest.raises(AgentError) as err:
        rig.agent.capture_path(bad, ["a"])
    assert err.value.status == 422


def test_a_capture_file_is_handed_out_only_as_written(rig: Rig, tmp_path: Path) -> None:
    cap = rig.agent.capture_start(["a"], "handout.pcapng")
    with pytest.raises(AgentError) as err:
        rig.agent.capture_file(cap["id"])
    assert err.value.status == 409  # still running
    rig.agent.capture_stop(cap["id"])
    fd = rig.agent.capture_file(cap["id"])
    try:
        assert os.read(fd, 4) == b"\x0a\x0d\x0d\x0a"
    finally:
        os.close(fd)
    # the name now leads elsewhere: a symlink, or another file put in its place
    path = Path(cap["path"])
    secret = tmp_path / "secret"
    secret.write_text("not traffic")
    path.unlink()
    path.symlink_to(secret)
    with pytest.raises(AgentError) as err:
        rig.agent.capture_file(cap["id"])
    assert err.value.status == 404
    path.unlink()
    path.write_bytes(b"\x0a\x0d\x0d\x0a other file")
    with pytest.raises(AgentError, match="no longer the file"):
        rig.agent.capture_file(cap["id"])


def test_a_stop_the_agent_refuses_is_tried_once(rig: Rig,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A host agent's configuration belongs to the distributed switch: the switch cannot
    disable its session, says so once, and does not retry four times a second."""
    rig.agent.mirror_create("managed", {"sources": [A_IN], "destinations": ["sniff"],
                                        "max_bytes": 150})
    rig.send(3)
    rig.agent.managed_by = "dvs test"
    with caplog.at_level("WARNING", logger="vspan.control.limits"):
        for _ in range(3):
            assert rig.watcher.check_once() == []
    said = [r for r in caplog.records if "not stopped by the switch" in r.getMessage()]
    assert len(said) == 1 and "managed by dvs test" in said[0].getMessage()
    assert rig.session("managed")["enabled"] is True
    assert rig.sniffed() and rig.audit.read() == []


def test_made_up_capture_names_fit_team_points(rig: Rig) -> None:
    path = rig.agent.capture_path("", ["team0:*", "team0:eth1", "a"])
    name = os.path.basename(path)
    assert os.path.dirname(path) == rig.agent.capture_dir
    assert name.startswith("team0__-team0_eth1-a-") and name.endswith(".pcapng")


def test_trace_predicts_the_byte_cap(rig: Rig) -> None:
    """The trace peeks at the cap like forwarding commits it: a copy while the budget
    lasts, none after, and tracing counts nothing."""
    rig.agent.mirror_create("cap", {"sources": [A_IN], "destinations": ["sniff"],
                                    "max_bytes": 250})
    eng = rig.agent.engine
    frame = build.ethernet("02:00:00:00:00:0a", "02:00:00:00:00:0b",
                           ethertype=0x88B5).build(b"\x11" * 86)
    predicted = []
    for _ in range(4):
        before = rig.session("cap")["counters"]
        _d, outcome, _t = eng.trace("a", frame)
        assert rig.session("cap")["counters"] == before  # the trace changed nothing
        predicted.append(len(outcome.copies))
        rig.send(1, size=100)
    assert predicted == [1, 1, 0, 0]  # 100 + 100 fit in 250, a third copy would not
    assert len(rig.sniffed()) == 2
