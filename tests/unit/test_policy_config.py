"""Policy configuration: shapes, normalisation, error paths, compilation."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.helpers.policy_frames import key_of, tcp, udp
from vspan.config.load import ConfigError, parse_config
from vspan.config.policy import (
    AclActionName,
    AclEntryConfig,
    ExtendedAclConfig,
    FirewallConfig,
    PortPolicyConfig,
    ServiceConfig,
)
from vspan.policy.build import SwitchPolicy, build_acl, build_ext_acl, build_ruleset
from vspan.policy.firewall import FwAction

GOOD = """
ports:
  web1:
    policy:
      addresses: [10.0.0.5, "2001:db8::5"]
      acls:
        - {id: a1, action: deny, direction: both, remote_ip: 10.0.0.0/8}
        - {action: allow, direction: inbound, remote_mac: "02-00-00-00-00-09"}
        - {id: m, action: meter, direction: out, remote_ip: any}
      extended_acls:
        - {id: x1, action: allow, direction: out, weight: 100, protocol: TCP,
           remote_port: "443", stateful: true, idle_timeout: 60}
        - {action: deny, direction: both, weight: 1}
      guards:
        mac_spoofing: false
        macs: ["02:00:00:00:00:01"]
        dhcp_guard: true
        router_guard: true
        storm: {broadcast: 100}
  web2: {policy: {addresses: [10.0.0.6]}}
  uplink: {}
firewall:
  default_action: drop
  exclude: [uplink]
  groups:
    web: {ports: [web1, web2], addresses: [192.168.5.0/24]}
  sections:
    - name: s1
      tcp_strict: true
      applied_to: [web]
      rules:
        - {id: 1001, sources: [any], destinations: [web], services: ["tcp/80,443"],
           action: allow, direction: in}
        - {sources: ["group:web"], services: [icmp/8], action: allow}
        - {id: parked, action: drop, disabled: true}
    - name: s2
      rules:
        - {id: r, destinations: [10.9.0.0/16], services: [{protocol: udp, ports: [53]}],
           action: reject, direction: out, applied_to: [web2]}
"""


def load(text: str) -> Any:
    cfg = parse_config(yaml.safe_load(text), "test.yaml")
    return cfg.port_policies(), cfg.firewall


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load(text)
    return exc.value.errors


def test_good_config_loads_and_normalises() -> None:
    ports, fw = load(GOOD)
    assert ports["uplink"] is None
    web1 = ports["web1"]
    assert web1.acls[1].remote_mac == "02:00:00:00:00:09"
    assert web1.acls[1].direction == "in"
    assert web1.extended_acls[0].protocol == "tcp"
    assert web1.extended_acls[0].remote_port == "443"
    assert fw is not None and fw.sections[0].rules[0].id == "1001"
    assert fw.sections[0].rules[0].services[0].ports == ("80", "443")


def test_compiled_policy() -> None:
    ports, fw = load(GOOD)
    acl = build_acl(ports["web1"])
    assert {e.id for e in acl.entries} == {"a1", "acl1", "m"}
    ext = build_ext_acl(ports["web1"])
    assert [r.id for r in ext.ordered("out")] == ["x1", "ext1"]
    assert [r.id for r in ext.ordered("in")] == ["ext1"]
    rs = build_ruleset(fw, ports)
    assert rs.default_action is FwAction.DROP
    assert not rs.covers("uplink") and rs.covers("web1")
    ids = [r.id for r in rs.all_rules()]
    assert ids == ["1001", "s1/2", "r"]  # the disabled rule is left out
    r1002 = rs.all_rules()[1]
    assert r1002.applied_to == frozenset({"web1", "web2"}) and r1002.strict
    assert r1002.sources is not None
    # group addresses: its own plus the member ports' addresses
    assert r1002.sources.contains(bytes([192, 168, 5, 7]))
    assert r1002.sources.contains(bytes([10, 0, 0, 6]))
    assert not r1002.sources.contains(bytes([10, 0, 0, 7]))
    assert [r.id for r in rs.rules_for("web1", "out")] == ["s1/2"]
    assert [r.id for r in rs.rules_for("web2", "out")] == ["s1/2", "r"]


def test_switch_policy_update_keeps_state() -> None:
    ports, fw = load(GOOD)
    sp = SwitchPolicy.from_config(ports, fw)
    assert sp.firewall is not None
    pf = sp.firewall.port("web1")
    assert pf is not None and sp.firewall.port("uplink") is None
    syn = tcp("10.7.7.7", "10.0.0.5", 40000, 80, "S")
    k = key_of(syn)
    assert pf.process(k, syn, "in", pf.match(k, "in").decision, 0.0).allowed
    web1 = sp.ports["web1"]
    sp.update(ports, fw)
    assert sp.ports["web1"] is web1  # unchanged config: same object, same sessions
    pf2 = sp.firewall.port("web1")
    assert pf2 is not None and len(pf2.conntrack) == 1
    fewer = {k: v for k, v in ports.items() if k != "web1"}
    fw_fewer = fw.model_copy(update={"groups": {}, "sections": ()})
    sp.update(fewer, fw_fewer)
    assert "web1" not in sp.firewall.ports() and "web1" not in sp.ports
    sp.update(ports, None)
    assert sp.firewall is None


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"acls": [{"action": "deny", "direction": "in", "remote_ip": "10.0.0.1/8"}]},
         "ports.p.policy.acls.0.remote_ip: '10.0.0.1/8' is not an IP address or prefix"),
        ({"acls": [{"action": "deny", "direction": "sideways", "remote_ip": "any"}]},
         "ports.p.policy.acls.0.direction: 'sideways' is not a direction"),
        ({"acls": [{"action": "deny", "direction": "in"}]},
         "ports.p.policy.acls.0: give local_ip, remote_ip, local_mac or remote_mac"),
        ({"acls": [{"action": "deny", "direction": "in", "remote_ip": "any",
                    "local_mac": "any"}]},
         "ports.p.policy.acls.0: an entry is either IP"),
        ({"acls": [{"action": "deny", "direction": "in", "remote_ip": "::/0",
                    "local_ip": "10.0.0.5"}]},
         "ports.p.policy.acls.0: local_ip and remote_ip are of different IP versions"),
        ({"acls": [{"action": "permit", "direction": "in", "remote_ip": "any"}]},
         "ports.p.policy.acls.0.action: Input should be 'allow', 'deny' or 'meter'"),
        ({"acls": [{"action": "deny", "direction": "in", "remote_mac": "02:00:00:00:00"}]},
         "ports.p.policy.acls.0.remote_mac: '02:00:00:00:00' is not a MAC address"),
        ({"acls": [{"id": "x", "action": "deny", "direction": "in", "remote_ip": "any"},
                   {"id": "x", "action": "allow", "direction": "in", "remote_ip": "any"}]},
         "ports.p.policy.acls.1.id: 'x' is already used by acls.0"),
        ({"acls": [{"action": "deny", "direction": "in", "remote_ip": "any", "colour": 1}]},
         "ports.p.policy.acls.0.colour: unknown key"),
        ({"extended_acls": [{"action": "allow", "direction": "out", "weight": 1,
                             "protocol": "icmp", "remote_port": 80}]},
         "ports.p.policy.extended_acls.0: ports need protocol tcp or udp"),
        ({"extended_acls": [{"action": "allow", "direction": "out", "weight": 1,
                             "protocol": "tcp", "remote_port": "90-80"}]},
         "ports.p.policy.extended_acls.0.remote_port: '90-80' is an empty port range"),
        ({"extended_acls": [{"action": "allow", "direction": "out", "weight": 1,
                             "protocol": "tcp", "remote_port": 70000}]},
         "ports.p.policy.extended_acls.0.remote_port: 70000 is not a port (0-65535)"),
        ({"extended_acls": [{"action": "allow", "direction": "out", "weight": 1,
                             "protocol": "bogus"}]},
         "ports.p.policy.extended_acls.0.protocol: 'bogus' is not a protocol"),
        ({"extended_acls": [{"action": "allow", "direction": "both", "weight": 5},
                            {"action": "deny", "direction": "in", "weight": 5}]},
         "ports.p.policy.extended_acls.1.weight: weight 5 is already used for direction in "
         "by extended_acls.0"),
        ({"extended_acls": [{"action": "allow", "direction": "out"}]},
         "ports.p.policy.extended_acls.0.weight: Field required"),
        ({"guards": {"mac_spoofing": False}},
         "ports.p.policy.guards: mac_spoofing: false needs 'macs'"),
        ({"guards": {"macs": ["01:00:5e:00:00:01"]}},
         "ports.p.policy.guards.macs.0: '01:00:5e:00:00:01' is a group (multicast) address"),
        ({"guards": {"storm": {"broadcast": 0}}},
         "ports.p.policy.guards.storm.broadcast: Input should be greater than or equal to 1"),
        ({"addresses": ["any"]}, "ports.p.policy.addresses.0: 'any' is not an address here"),
    ],
)
def test_port_policy_errors_have_paths(patch: dict[str, Any], expected: str) -> None:
    errs = errors_of(yaml.safe_dump({"ports": {"p": {"policy": patch}}}))
    assert any(e.startswith(expected) for e in errs), errs


@pytest.mark.parametrize(
    ("fw", "expected"),
    [
        ({"groups": {"g": {"ports": ["nope"]}}}, "firewall.groups.g.ports.0: no port named 'nope'"),
        ({"exclude": ["ghost"]}, "firewall.exclude.0: no port or group named 'ghost'"),
        ({"sections": [{"name": "s", "rules": [{"action": "allow", "sources": ["wat"]}]}]},
         "firewall.sections.0.rules.0.sources.0: 'wat' is neither an address"),
        ({"sections": [{"name": "s", "rules": [{"action": "allow",
                                                "applied_to": ["p", "zz"]}]}]},
         "firewall.sections.0.rules.0.applied_to.1: no port or group named 'zz'"),
        ({"sections": [{"name": "s", "rules": [{"id": 1, "action": "allow"}]},
                       {"name": "t", "rules": [{"id": "1", "action": "drop"}]}]},
         "firewall.sections.1.rules.0.id: rule id '1' is already used by "
         "firewall.sections.0.rules.0"),
        ({"sections": [{"name": "s"}, {"name": "s"}]},
         "firewall.sections.1.name: section 's' is already defined"),
        ({"sections": [{"name": "s", "rules": [{"id": "default", "action": "allow"}]}]},
         "firewall.sections.0.rules.0.id: 'default' is reserved"),
        ({"sections": [{"name": "s", "rules": [{"action": "accept"}]}]},
         "firewall.sections.0.rules.0.action: Input should be 'allow', 'drop' or 'reject'"),
        ({"sections": [{"name": "s", "rules": [{"action": "allow",
                                                "services": ["icmp/x"]}]}]},
         "firewall.sections.0.rules.0.services.0: 'icmp/x': ICMP type must be a number"),
        ({"sections": [{"name": "s", "rules": [{"action": "allow",
                                                "services": [{"protocol": "udp",
                                                              "icmp_type": 3}]}]}]},
         "firewall.sections.0.rules.0.services.0: icmp_type needs protocol icmp"),
        ({"timeouts": {"tcp_established": 0}},
         "firewall.timeouts.tcp_established: Input should be greater than 0"),
        ({"groups": {"p": {}}}, "firewall.groups.p: a port has the same name"),
        ({"groups": {"10.0.0.1": {}}}, "firewall.groups.10.0.0.1: a group name must not look"),
    ],
)
def test_firewall_errors_have_paths(fw: dict[str, Any], expected: str) -> None:
    errs = errors_of(yaml.safe_dump({"ports": {"p": {}}, "firewall": fw}))
    assert any(e.startswith(expected) for e in errs), errs


def test_models_are_frozen_and_strict() -> None:
    a = AclEntryConfig.model_validate({"action": "deny", "direction": "in", "remote_ip": "any"})
    with pytest.raises(ValueError):
        a.action = AclActionName.ALLOW
    assert ExtendedAclConfig.model_validate(
        {"action": "deny", "direction": "out", "weight": 3}).protocol == "any"
    assert ServiceConfig.model_validate({"protocol": 6}).protocol == "tcp"
    assert FirewallConfig().default_action.value == "allow"
    assert PortPolicyConfig().guards.mac_spoofing is True


def test_udp_service_shorthand_matches() -> None:
    ports, fw = load(GOOD)
    rs = build_ruleset(fw, ports)
    r = rs.all_rules()[2]
    assert r.services[0].mismatch(key_of(udp("10.0.0.6", "10.9.1.1", 5353, 53))) is None
    assert r.services[0].mismatch(key_of(udp("10.0.0.6", "10.9.1.1", 5353, 54))) is not None
