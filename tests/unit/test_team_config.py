"""Team configuration: errors name their path; a changed team reopens its backend."""

from __future__ import annotations

import pytest

from vspan.capture.points import CapturePointError, resolve
from vspan.config.diff import diff
from vspan.config.load import ConfigError, load_text
from vspan.config.team import LoadBalancing, TeamMode

T = "ports: {t0: {type: team, team: {members: [eth1, eth2]%s}}%s}"

BAD = [
    ("ports: {t0: {type: team}}", "ports.t0.team: a port of type team needs team.members"),
    ("ports: {t0: {type: team, interface: eth1, team: {members: [eth1]}}}",
     "ports.t0.interface: a team port has no interface"),
    ("ports: {a: {team: {members: [eth1]}}}",
     "ports.a.team: only for ports of type team (this port is afpacket)"),
    ("ports: {t0: {type: team, team: {members: []}}}",
     "ports.t0.team.members: a team has 1 to 32 members, not 0"),
    ((T % ("", "")).replace("eth2", "eth1"), "ports.t0.team.members: member listed twice: eth1"),
    ((T % ("", "")).replace("eth2", "much-too-long-name"),
     "ports.t0.team.members.1: 'much-too-long-name' is not an interface name"),
    (T % (", mode: ring", ""), "ports.t0.team.mode: Input should be 'switch-independent' or"),
    (T % (", load_balancing: round-robin", ""), "ports.t0.team.load_balancing: Input should be"),
    (T % (", mode: active-standby, primary: eth3", ""),
     "ports.t0.team.primary: 'eth3' is not a member (members: eth1, eth2)"),
    (T % (", primary: eth1", ""), "ports.t0.team: primary is only for active-standby mode"),
    (T % (", mode: active-standby, load_balancing: layer2", ""),
     "ports.t0.team: load_balancing is not used in active-standby mode"),
    (T % (", dynamic_idle_ms: 10", ""),
     "ports.t0.team: dynamic_idle_ms is only for load_balancing: dynamic"),
    (T % (", miimon_ms: -1", ""), "ports.t0.team.miimon_ms: Input should be greater"),
    (T % (", arp_monitor: {targets: [10.0.0.300]}", ""),
     "ports.t0.team.arp_monitor.targets.0: '10.0.0.300' is not an IPv4 address"),
    (T % (", arp_monitor: {targets: []}", ""),
     "ports.t0.team.arp_monitor.targets: give 1 to 16 targets, not 0"),
    (T % (", arp_monitor: {targets: [10.0.0.1], interval_ms: 5}", ""),
     "ports.t0.team.arp_monitor.interval_ms: Input should be greater than or equal to 10"),
    (T % (", arp_monitor: {targets: [0.0.0.0]}", ""),
     "ports.t0.team.arp_monitor.targets: 0.0.0.0 cannot be an ARP target"),
    (T % (", arp_monitor: {targets: [10.0.0.1], colour: red}", ""),
     "ports.t0.team.arp_monitor.colour: unknown key"),
    (T % ("", ", eth2: {}"), "ports.eth2.interface: 'eth2' is already used by port 't0'"),
    (T % ("", ", t1: {type: team, team: {members: [eth3, eth1]}}"),
     "ports.t1.team.members.1: 'eth1' is already used by port 't0'"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_team_errors_name_their_path(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(text, "switch.yaml")
    assert any(expected in e for e in info.value.errors), info.value.errors


def test_a_full_team_config() -> None:
    cfg = load_text("""
ports:
  uplink:
    type: team
    team:
      members: [eth1, eth2]
      mode: active-standby
      primary: eth2
      miimon_ms: 50
      arp_monitor: {targets: [192.0.2.1, 192.0.2.2], interval_ms: 200, missed_max: 3}
    vlan: {mode: trunk, allowed: [10, 20], native: 1}
  web1: {vlan: {mode: access, id: 10}}
  a-very-long-team-port-name: {type: team, team: {members: [eth3], load_balancing: dynamic,
                                                  dynamic_idle_ms: 5}}
""")
    up = cfg.ports["uplink"]
    assert up.team is not None and up.team.mode is TeamMode.ACTIVE_STANDBY
    assert up.interfaces("uplink") == ("eth1", "eth2")
    assert cfg.ports["web1"].interfaces("web1") == ("web1",)
    lb = cfg.ports["a-very-long-team-port-name"].team
    assert lb is not None and lb.load_balancing is LoadBalancing.DYNAMIC


def test_a_changed_team_reopens_and_a_vlan_change_does_not() -> None:
    old = load_text(T % ("", ""))
    assert diff(old, load_text(T % (", load_balancing: layer2", ""))).ports_reopened == ("t0",)
    assert diff(old, load_text((T % ("", "")).replace("eth2", "eth3"))).ports_reopened == ("t0",)
    vlan = load_text("ports: {t0: {type: team, team: {members: [eth1, eth2]}, "
                     "vlan: {mode: trunk, allowed: [5]}}}")
    cs = diff(old, vlan)
    assert cs.ports_changed == ("t0",) and not cs.ports_reopened


def test_capture_points_resolve() -> None:
    by_name = {"web1": 1, "team0": 2}
    teams = {"team0": ("eth1", "eth2")}
    pts = resolve(["team0:eth1", "team0", "web1"], by_name, teams)
    assert pts.names == ["team0:eth1", "team0", "web1"]
    assert pts.ports == {2: "team0", 1: "web1"} and pts.members == {(2, "eth1"): "team0:eth1"}
    assert "member eth1" in pts.descriptions["team0:eth1"]
    assert "members eth1, eth2" in pts.descriptions["team0"]
    assert resolve(["team0:*"], by_name, teams).names == ["team0:eth1", "team0:eth2"]
    assert pts.teams == {2}
    for bad, msg in (("nope", "no port named 'nope'"),
                     ("web1:eth0", "port 'web1' is not a team"),
                     ("team0:eth9", "team 'team0' has no member 'eth9' (members: eth1, eth2)")):
        with pytest.raises(CapturePointError) as info:
            resolve([bad], by_name, teams)
        assert msg in str(info.value)
