"""The typed change set: ports, mirrors, per-port policy and the firewall in one diff."""

from __future__ import annotations

from vspan.config.diff import diff
from vspan.config.load import load_text

BASE = """
ports:
  a: {policy: {addresses: [10.0.0.1], acls: [{id: no-ten, action: deny, direction: both,
      remote_ip: 10.0.0.0/8}]}}
  b: {policy: {addresses: [10.0.0.2]}}
firewall:
  default_action: drop
  groups: {web: {ports: [a]}}
  sections:
    - name: app
      rules:
        - {id: web-in, action: allow, destinations: [web], services: [tcp/80]}
        - {id: ssh, action: allow, services: [tcp/22]}
"""


def test_firewall_rule_added_is_a_change() -> None:
    old = load_text(BASE)
    new = load_text(BASE.replace(
        "        - {id: ssh,",
        "        - {id: dns, action: allow, services: [udp/53]}\n        - {id: ssh,"))
    cs = diff(old, new)
    assert not cs.empty
    assert cs.firewall.rules.added == ("dns",)
    assert not cs.firewall.rules.changed and not cs.firewall.sections.changed
    assert cs.summary() == ["firewall rule added: dns"]
    assert not cs.ports_changed and not cs.policy


def test_firewall_default_groups_sections_and_order() -> None:
    old = load_text(BASE)
    new = load_text(BASE.replace("default_action: drop", "default_action: reject")
                    .replace("groups: {web: {ports: [a]}}",
                             "groups: {web: {ports: [a, b]}, db: {addresses: [10.9.0.0/16]}}")
                    .replace("    - name: app\n", "    - name: app\n      tcp_strict: true\n"))
    cs = diff(old, new)
    fw = cs.firewall
    assert fw.settings == ("default_action",) and fw.default_changed
    assert fw.groups.added == ("db",) and fw.groups.changed == ("web",)
    assert fw.sections.changed == ("app",) and not fw.rules
    assert "firewall setting changed: default_action" in cs.summary()
    # reordering rules changes the section, not the rules
    swapped = load_text(BASE.replace(
        "        - {id: web-in, action: allow, destinations: [web], services: [tcp/80]}\n"
        "        - {id: ssh, action: allow, services: [tcp/22]}",
        "        - {id: ssh, action: allow, services: [tcp/22]}\n"
        "        - {id: web-in, action: allow, destinations: [web], services: [tcp/80]}"))
    cs = diff(old, swapped)
    assert cs.firewall.sections.changed == ("app",) and not cs.firewall.rules
    assert cs.summary() == ["firewall section changed: app"]


def test_group_changes_when_a_member_port_changes_its_addresses() -> None:
    old = load_text(BASE)
    new = load_text(BASE.replace("addresses: [10.0.0.1]", "addresses: [10.0.0.11]"))
    cs = diff(old, new)
    assert cs.firewall.groups.changed == ("web",)
    pc = cs.policy_of("a")
    assert pc is not None and pc.addresses and not pc.acls and not pc.guards
    assert cs.policy_of("b") is None
    assert "addresses changed: a" in cs.summary()
    assert not cs.ports_changed  # a policy change is not a port settings change


def test_firewall_appears_and_disappears() -> None:
    none = load_text("ports: {a: {}}")
    some = load_text("ports: {a: {}}\nfirewall: {sections: [{name: lab, rules: "
                     "[{id: icmp-ok, action: allow, services: [icmp]}]}]}")
    cs = diff(none, some)
    assert cs.firewall.added and cs.firewall.rules.added == ("icmp-ok",)
    assert cs.summary() == ["firewall added", "firewall section added: lab",
                            "firewall rule added: icmp-ok"]
    back = diff(some, none)
    assert back.firewall.removed and back.firewall.rules.removed == ("icmp-ok",)
    assert diff(some, some).empty


def test_port_policy_changes_are_itemised() -> None:
    old = load_text(BASE)
    new = load_text(BASE.replace(
        "remote_ip: 10.0.0.0/8}]}}",
        "remote_ip: 10.0.0.0/8}, {id: m, action: allow, direction: in,"
        " remote_mac: '02:00:00:00:00:09'}],"
        " extended_acls: [{id: x1, action: allow, direction: both, weight: 10}],"
        " guards: {dhcp_guard: true}}}"))
    cs = diff(old, new)
    pc = cs.policy_of("a")
    assert pc is not None
    assert pc.acls.added == ("m",) and not pc.acls.changed
    assert pc.extended_acls.added == ("x1",) and pc.guards and not pc.addresses
    assert cs.summary() == ["acl added: a/m", "extended acl added: a/x1", "guards changed: a"]
    assert not cs.ports_changed and not cs.firewall


def test_port_settings_and_policy_reported_apart() -> None:
    old = load_text("ports: {a: {}}")
    new = load_text("ports: {a: {mac_limit: 5, policy: {acls: [{id: d, action: deny,"
                    " direction: in, remote_ip: any}]}}}")
    cs = diff(old, new)
    assert cs.ports_changed == ("a",)
    assert cs.summary() == ["port changed: a", "acl added: a/d"]


def test_rx_steering_change_reopens_the_port() -> None:
    old = load_text("ports: {a: {}}")
    for value in ("never", "off", "always"):  # YAML reads a bare off as false: never
        cs = diff(old, load_text(f"ports: {{a: {{rx_steering: {value}}}}}"))
        assert cs.ports_reopened == ("a",)
    assert not diff(old, load_text("ports: {a: {rx_steering: auto}}")).ports_reopened
