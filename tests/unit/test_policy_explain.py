"""Policy explain: structure, text, JSON, and the ``vspan policy explain`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers.policy_frames import key_of, tcp
from vspan.cli.main import main
from vspan.config.load import parse_config
from vspan.datapath.reasons import DropReason
from vspan.policy.build import SwitchPolicy
from vspan.policy.explain import FlowSpec, explain, synth_frame

CONFIG = """
ports:
  web1:
    type: memory
    policy:
      addresses: [10.0.0.5, "2001:db8::5"]
      acls:
        - {id: a-deny-10, action: deny, direction: both, remote_ip: 10.0.0.0/8}
        - {id: a-allow-10.1, action: allow, direction: both, remote_ip: 10.1.0.0/16}
        - {id: a-mac, action: allow, direction: in, remote_mac: "02:00:00:00:00:99"}
        - {id: m-all, action: meter, direction: both, remote_ip: any}
      extended_acls:
        - {id: x-web, action: allow, direction: in, weight: 100, protocol: tcp, local_port: 80}
        - {id: x-tcp, action: allow, direction: in, weight: 50, protocol: tcp}
        - {id: x-deny, action: deny, direction: in, weight: 10}
        - {id: x-out, action: allow, direction: out, weight: 100, protocol: udp,
           remote_port: 53, stateful: true}
        - {id: x-out-deny, action: deny, direction: out, weight: 1}
      guards: {mac_spoofing: false, macs: ["02:00:00:00:00:01"], router_guard: true}
  web2: {type: memory}
  uplink: {type: memory}
firewall:
  default_action: drop
  exclude: [uplink]
  groups: {web: {ports: [web1]}}
  sections:
    - name: app
      tcp_strict: true
      rules:
        - {id: "1001", name: http, destinations: [web], services: ["tcp/80"], action: allow,
           direction: in}
        - {id: "1002", services: ["tcp/80-90"], action: reject, direction: in}
        - {id: "1003", services: ["udp/53"], action: allow, direction: out}
        - {id: "2000", action: allow, applied_to: [web2]}
"""


@pytest.fixture
def policy() -> SwitchPolicy:
    cfg = parse_config(yaml.safe_load(CONFIG))
    ports, fw = cfg.port_policies(), cfg.firewall
    return SwitchPolicy.from_config(ports, fw)


def inbound(remote: str, dport: int = 80, flags: str = "S",
            remote_mac: str = "02:00:00:00:00:02") -> bytes:
    return synth_frame(FlowSpec(remote, "10.0.0.5", "tcp", 40000, dport, remote_mac,
                                "02:00:00:00:00:01", flags))


def test_allowed_flow_names_every_deciding_rule(policy: SwitchPolicy) -> None:
    e = explain(policy, "web1", "in", inbound("10.1.2.3"))
    assert e.allowed and e.decider is None
    by = {s.stage: s for s in e.stages}
    assert [s.stage for s in e.stages] == ["acl", "ext-acl", "firewall"]  # no guards inbound
    assert by["acl"].rule == "a-allow-10.1"
    assert by["ext-acl"].rule == "x-web"
    assert by["firewall"].rule == "1001"
    acl_lines = {ln.rule: ln for ln in by["acl"].lines}
    assert acl_lines["a-deny-10"].outcome == "loses"
    assert "more specific" in acl_lines["a-deny-10"].why
    assert acl_lines["m-all"].outcome == "meter"
    fw_lines = {ln.rule: ln for ln in by["firewall"].lines}
    assert fw_lines["1002"].outcome == "shadowed" and "1001 comes first" in fw_lines["1002"].why
    assert fw_lines["2000"].outcome == "not-applied"
    assert fw_lines["default"].outcome == "not reached"
    ext_lines = {ln.rule: ln for ln in by["ext-acl"].lines}
    assert ext_lines["x-tcp"].outcome == "shadowed"


def test_dropped_flow_says_where_and_why(policy: SwitchPolicy) -> None:
    e = explain(policy, "web1", "in", inbound("10.2.3.4", dport=22))
    d = e.decider
    assert d is not None and d.stage == "acl" and d.rule == "a-deny-10"
    assert d.reason is DropReason.ACL_DENY
    text = e.render()
    assert "verdict: DROPPED at acl rule a-deny-10 (acl-deny)" in text
    assert "(not reached: dropped before)" in text
    fw = e.stages[-1]
    assert fw.rule == "default" and fw.reason is DropReason.FIREWALL_DENY


def test_mac_entry_and_reject(policy: SwitchPolicy) -> None:
    e = explain(policy, "web1", "in", inbound("10.2.3.4", dport=85,
                                              remote_mac="02:00:00:00:00:99"))
    by = {s.stage: s for s in e.stages}
    assert by["acl"].allowed and by["acl"].rule == "a-mac"
    assert by["firewall"].reason is DropReason.FIREWALL_REJECT and by["firewall"].rule == "1002"
    assert "RST" in by["firewall"].summary


def test_tcp_strict_mid_stream_segment(policy: SwitchPolicy) -> None:
    e = explain(policy, "web1", "in", inbound("10.1.2.3", flags="A"))
    fw = e.stages[-1]
    assert fw.reason is DropReason.FIREWALL_STATE_INVALID and "TCP strict" in fw.summary


def test_guards_on_outbound(policy: SwitchPolicy) -> None:
    spoofed = synth_frame(FlowSpec("10.0.0.5", "10.1.1.1", "udp", 5000, 53,
                                   "02:00:00:00:00:66", "02:00:00:00:00:02"))
    e = explain(policy, "web1", "out", spoofed)
    assert e.stages[0].stage == "guards"
    assert e.decider is not None and e.decider.reason is DropReason.MAC_SPOOF


def test_stateful_session_and_connection_are_shown(policy: SwitchPolicy) -> None:
    q = synth_frame(FlowSpec("10.0.0.5", "10.1.9.9", "udp", 5000, 53))
    e = explain(policy, "web1", "out", q)
    assert e.allowed
    ext = e.stages[2]
    assert "opens a session" in ext.summary
    # run the frame through the real evaluators (as the datapath would) ...
    pol = policy.ports["web1"]
    k = key_of(q)
    pol.sessions.process(k, "out", pol.ext.match(k, "out"), 0.0)
    fw = policy.firewall
    assert fw is not None
    pf = fw.port("web1")
    assert pf is not None
    assert pf.process(k, q, "out", pf.match(k, "out").decision, 0.0).allowed
    # ... and the answer is now explained as admitted by state
    a = synth_frame(FlowSpec("10.1.9.9", "10.0.0.5", "udp", 53, 5000, "02:00:00:00:00:02",
                             "02:00:00:00:00:01"))
    e2 = explain(policy, "web1", "in", a, now=1.0)
    by = {s.stage: s for s in e2.stages}
    assert by["ext-acl"].allowed and "live session of stateful rule x-out" in by["ext-acl"].summary
    assert by["firewall"].allowed and "tracked connection" in by["firewall"].summary


def test_non_ip_and_uncovered_port(policy: SwitchPolicy) -> None:
    e = explain(policy, "uplink", "in", inbound("10.1.2.3"))
    assert e.allowed and e.stages == []
    assert any("excluded" in n for n in e.notes) and any("no ACLs" in n for n in e.notes)


def test_explain_does_not_change_state(policy: SwitchPolicy) -> None:
    explain(policy, "web1", "in", inbound("10.1.2.3"))
    fw = policy.firewall
    assert fw is not None
    assert all(len(pf.conntrack) == 0 for pf in fw.ports().values())
    assert len(policy.ports["web1"].sessions) == 0
    assert all(m.packets == 0 for m in policy.ports["web1"].acl.meters())


def test_ipv6_flow(policy: SwitchPolicy) -> None:
    f = synth_frame(FlowSpec("2001:db8:1::1", "2001:db8::5", "tcp", 40000, 80))
    e = explain(policy, "web1", "in", f)
    assert e.stages[0].rule is None  # IPv4 entries do not apply; meter any does
    assert "metered by m-all" in e.stages[0].summary
    assert e.allowed


# -- the command ---------------------------------------------------------------------------

@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    p = tmp_path / "switch.yaml"
    p.write_text(CONFIG)
    return p


def test_cli_explain_text(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["policy", "explain", "-c", str(config_file), "--port", "web1", "-d", "in",
               "--remote-ip", "10.1.2.3", "--local-port", "80"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "flow tcp 10.1.2.3:40000 -> 10.0.0.5:80" in out
    assert "[firewall] rule 1001 allows" in out
    assert "verdict: ALLOWED" in out


def test_cli_explain_json_and_drop_exit_code(config_file: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["policy", "explain", "-c", str(config_file), "--port", "web1", "-d", "in",
               "--src-ip", "10.9.9.9", "--dst-ip", "10.0.0.5", "--dport", "22", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 3
    assert data["allowed"] is False
    assert data["decided_by"] == {"stage": "acl", "rule": "a-deny-10", "reason": "acl-deny"}


def test_cli_explain_outbound_udp_v6(config_file: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["policy", "explain", "-c", str(config_file), "--port", "web1", "-d", "out",
               "--remote-ip", "2001:db8:9::9", "--proto", "udp", "--remote-port", "53"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "2001:db8::5:40000 -> 2001:db8:9::9:53" in out


def test_cli_errors(config_file: Path, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "explain", "-c", str(config_file), "--port", "nope", "-d", "in",
                 "--remote-ip", "10.1.1.1"]) == 1
    assert "no port named 'nope'" in capsys.readouterr().err
    assert main(["policy", "explain", "-c", str(config_file), "--port", "web2", "-d", "in",
                 "--remote-ip", "10.1.1.1"]) == 2
    assert "give --local-ip" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("ports: {p: {policy: {acls: [{action: deny, direction: in, "
                   "remote_ip: 10.0.0.1/8}]}}}")
    assert main(["policy", "explain", "-c", str(bad), "--port", "p", "-d", "in",
                 "--remote-ip", "10.1.1.1"]) == 1
    assert "ports.p.policy.acls.0.remote_ip:" in capsys.readouterr().err


def test_synth_frame_rejects_any_protocol() -> None:
    with pytest.raises(ValueError):
        synth_frame(FlowSpec("10.0.0.1", "10.0.0.2", "any"))
    assert key_of(synth_frame(FlowSpec("10.0.0.1", "10.0.0.2", "gre"))).proto == 47


def test_tcp_helper_matches_synth() -> None:
    a = key_of(tcp("10.0.0.1", "10.0.0.2", 1, 2, "S"))
    b = key_of(synth_frame(FlowSpec("10.0.0.1", "10.0.0.2", "tcp", 1, 2)))
    assert a[1:] == b[1:]
