"""A team port inside the engine (memory members): one logical port for learning and
flooding, split horizon between members, Hyper-V port balancing, capture points."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from tests.pipeline.harness import FakeClock
from vspan.capture.pcapng import DIR_INBOUND, DIR_OUTBOUND, CaptureReader
from vspan.config.load import load_text
from vspan.config.model import PortConfig, PortType
from vspan.control.assemble import build_engine, open_capture
from vspan.datapath.engine import Engine
from vspan.ports.base import Port
from vspan.ports.memory import MemoryPort
from vspan.ports.team import TeamPort

VM1, VM2, FAR = "02:00:00:00:01:01", "02:00:00:00:01:02", "02:00:00:00:09:09"
BCAST = "ff:ff:ff:ff:ff:ff"


@dataclass
class TeamSwitch:
    engine: Engine
    ports: dict[str, MemoryPort]  # vm ports and team members by name

    def pump(self) -> None:
        for _ in range(5):
            self.engine.poll_once(0)

    def got(self, name: str) -> list[bytes]:
        return self.ports[name].take_bytes()


def build(team_yaml: str = "{members: [m1, m2]}", vm_extra: str = "",
          team_extra: str = "", more: str = "") -> TeamSwitch:
    cfg = load_text(f"""
ports:
  vm1: {{type: memory{vm_extra}}}
  vm2: {{type: memory{vm_extra}}}
  team0: {{type: team, team: {team_yaml}{team_extra}}}
{more}""")
    ports: dict[str, MemoryPort] = {}

    def member(team: str, ifname: str) -> Port:
        ports[ifname] = MemoryPort(ifname)
        return ports[ifname]

    def factory(name: str, pc: PortConfig) -> Port:
        if pc.type is PortType.TEAM:
            assert pc.team is not None
            return TeamPort(name, pc.team, member)
        ports[name] = MemoryPort(name)
        return ports[name]

    engine = build_engine(cfg, factory, clock=FakeClock())
    engine.open()
    return TeamSwitch(engine, ports)


@pytest.fixture
def sw() -> Iterator[TeamSwitch]:
    s = build()
    yield s
    s.engine.close()


def udp(src: str, dst: str, n: int) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2")
                 / UDP(sport=1000 + n, dport=2000 + n))


def test_a_flooded_frame_leaves_by_exactly_one_member(sw: TeamSwitch) -> None:
    frames = [udp(VM1, BCAST, i) for i in range(30)]
    sw.ports["vm1"].inject(*frames)
    sw.pump()
    m1, m2 = sw.got("m1"), sw.got("m2")
    assert sorted(m1 + m2) == sorted(frames)  # each exactly once over both members
    assert m1 and m2  # and spread by the layer3+4 hash
    assert sw.got("vm2") == frames


def test_a_frame_from_one_member_never_leaves_by_another(sw: TeamSwitch) -> None:
    frames = [udp(FAR, BCAST, i) for i in range(20)]
    sw.ports["m1"].inject(*frames[:10])
    sw.ports["m2"].inject(*frames[10:])
    sw.pump()
    assert sw.got("m1") == [] and sw.got("m2") == []
    assert sorted(sw.got("vm1")) == sorted(frames) == sorted(sw.got("vm2"))
    # FAR was learnt on the team (one port, whichever member brought it): no MAC moves
    fdb = sw.engine.state.fdb
    team_idx = sw.engine.state.by_name["team0"]
    assert fdb.moves == 0 and any(e.port == team_idx for e in fdb.entries.values())
    sw.ports["vm1"].inject(udp(VM1, FAR, 1))
    sw.pump()
    assert len(sw.got("m1") + sw.got("m2")) == 1 and sw.got("vm2") == []


@pytest.mark.parametrize("tagged", [False, True], ids=["untagged", "vlan-pushed"])
def test_hyperv_port_balances_by_the_ingress_port(tagged: bool) -> None:
    # tagged: the VMs are access ports of VLAN 10 and the team a trunk, so every frame
    # to the team is a new frame with the tag pushed - it must keep its ingress port
    s = build("{members: [m1, m2], load_balancing: hyperv-port}",
              ", vlan: {mode: access, id: 10}" if tagged else "",
              ", vlan: {mode: trunk, allowed: [10]}" if tagged else "")
    try:
        st = s.engine.state
        s.ports["vm1"].inject(*[udp(VM1, BCAST, i) for i in range(10)])
        s.ports["vm2"].inject(*[udp(VM2, BCAST, i) for i in range(10)])
        s.pump()
        got = {m: [Ether(f) for f in s.got(m)] for m in ("m1", "m2")}
        assert all((Dot1Q in f) == tagged for fs in got.values() for f in fs)
        by_member = {m: {f.src for f in fs} for m, fs in got.items()}
        want = {st.by_name["vm1"] % 2: VM1, st.by_name["vm2"] % 2: VM2}
        assert by_member == {"m1": {want[0]}, "m2": {want[1]}}
    finally:
        s.engine.close()


def test_erspan_loop_guard_knows_team_members(sw: TeamSwitch) -> None:
    from vspan.config.model import MirrorSession
    from vspan.datapath.state import MirrorRuntime

    team = sw.engine.state.port("team0")
    m = MirrorRuntime(0, "s", MirrorSession.model_validate(
        {"sources": ["team0"], "erspan": {"remote_ip": "192.0.2.9"}}))
    team.mirror_ingress = team.mirror_egress = (0,)
    assert sw.engine.mirror_out._loop_guard(m, "m2")  # the copies would leave by member m2
    assert not team.mirror_ingress and not team.mirror_egress
    assert m.loop_guard_port == "team0"


def test_capture_points_share_packet_ids(sw: TeamSwitch, tmp_path: Path) -> None:
    out = tmp_path / "points.pcapng"
    cap = open_capture(sw.engine, ["team0:*", "team0", "vm1"], str(out), 1)
    inbound = udp(FAR, VM1, 1)
    sw.ports["vm1"].inject(udp(VM1, FAR, 0))  # learn VM1 first
    sw.pump()
    sw.ports["m2"].inject(inbound)  # FAR -> VM1 through member m2
    sw.pump()
    sw.engine.remove_capture(cap.id).close()
    reader = CaptureReader(str(out))
    recs = list(reader)
    assert [i.name for i in reader.interfaces] == ["team0:m1", "team0:m2", "team0", "vm1"]
    assert "member m1" in reader.interfaces[0].description
    by_pid: dict[int | None, list[tuple[str, int]]] = {}
    for r in recs:
        by_pid.setdefault(r.packet_id, []).append((r.interface_name, r.direction))
    assert None not in by_pid and len(by_pid) == 2
    first, second = (by_pid[p] for p in sorted(by_pid, key=lambda p: p or 0))
    # vm1's frame: in at vm1, flooded out of the team and one of its members
    assert first[0] == ("vm1", DIR_INBOUND) and ("team0", DIR_OUTBOUND) in first
    assert len([p for p in first if p[0].startswith("team0:")]) == 1
    # FAR's frame: in at member m2, in at the team, out at vm1 - the seed's "every
    # packet twice" (member + team), linked by one packet id
    assert second == [("team0:m2", DIR_INBOUND), ("team0", DIR_INBOUND), ("vm1", DIR_OUTBOUND)]
    assert {r.data for r in recs if r.packet_id == max(by_pid, key=lambda p: p or 0)} \
        == {inbound}
    # no capture left: the team's tap is gone
    team = sw.engine.backends[sw.engine.state.by_name["team0"]]
    assert isinstance(team, TeamPort) and team.tap is None


def test_show_ports_json_metrics_and_table_list_members(
        sw: TeamSwitch, capsys: pytest.CaptureFixture[str]) -> None:
    from vspan.api.metrics import team_metrics
    from vspan.cli.show_cmd import render
    from vspan.control.views import ports_view

    sw.ports["vm1"].inject(*[udp(VM1, BCAST, i) for i in range(8)])
    sw.pump()
    sw.ports["m2"].set_link(False)
    team = sw.engine.backends[sw.engine.state.by_name["team0"]]
    assert isinstance(team, TeamPort) and team.poll_links()
    rows = ports_view(sw.engine)
    row = next(r for r in rows if r["name"] == "team0")
    assert row["interface"] == "m1,m2" and "team" not in rows[0]
    members = {m["name"]: m for m in row["team"]["members"]}
    assert members["m2"]["state"] == "down (no carrier)" and members["m1"]["active"]
    sent = members["m1"]["counters"]["tx_frames"] + members["m2"]["counters"]["tx_frames"]
    assert sent == 8 == row["backend_counters"]["tx_frames"]
    fams = {f.name: f for f in team_metrics(rows)}
    up = {tuple(s.labels.values()): s.value for s in fams["vspan_team_member_up"].samples}
    assert up == {("team0", "m1"): 1, ("team0", "m2"): 0}
    tx = sum(s.value for s in fams["vspan_team_member_tx_frames"].samples
             if s.name.endswith("_total"))
    assert tx == 8
    render("ports", rows)
    out = capsys.readouterr().out
    assert "team0:m2" in out and "down (no carrier)" in out and "member" in out
    assert "team team0: switch-independent layer3+4; active: m1; failovers 1 (m1 0, m2 1); " \
           "frames with no member to go to 0\n" in out, out


def test_team_as_rspan_uplink_and_as_mirror_source() -> None:
    s = build(vm_extra=", vlan: {mode: access, id: 10}",
              team_extra=", vlan: {mode: trunk, allowed: [10, 999]}", more="""\
  snf: {type: memory}
mirrors:
  out: {sources: [vm1], rspan: {port: team0, vlan: 999}}
  in: {sources: [{port: team0, direction: ingress}], destinations: [snf]}
""")
    try:
        frames = [udp(VM1, BCAST, i) for i in range(12)]
        s.ports["vm1"].inject(*frames)
        s.pump()
        out = [Ether(f) for f in s.got("m1") + s.got("m2")]
        # each frame flooded once (tagged 10) and mirrored once (tagged 999), each of the
        # 24 out of exactly one member of the team
        assert sorted(f[Dot1Q].vlan for f in out) == [10] * 12 + [999] * 12
        for vid in (10, 999):
            assert sorted(bytes(f[Dot1Q].payload) for f in out if f[Dot1Q].vlan == vid) == \
                sorted(f[14:] for f in frames)
        far = [bytes(Ether(src=FAR, dst=VM1) / Dot1Q(vlan=10) / IP() / UDP(dport=7 + i))
               for i in range(6)]
        s.ports["m1"].inject(*far[:3])
        s.ports["m2"].inject(*far[3:])
        s.pump()
        assert sorted(s.got("snf")) == sorted(far)  # what came in by either member
        assert len(s.got("vm1")) == 6
    finally:
        s.engine.close()
