"""Private VLAN configuration: what is accepted, and each rejection with its path."""

from __future__ import annotations

import pytest

from vspan.config.load import ConfigError, load_text
from vspan.config.pvlan import PvlanVlan, pvlan_vlans

GOOD = """
ports:
  p: {type: memory, pvlan: {primary: 200, mode: promiscuous, secondaries: [205]}}
  i: {type: memory, pvlan: {primary: 200, mode: isolated, secondary: 201}}
  c: {type: memory, pvlan: {primary: 200, mode: community, secondary: 202}}
  t: {type: memory, vlan: {mode: trunk, allowed: [200-205]}}
"""


def test_domains_of_a_valid_config() -> None:
    cfg = load_text(GOOD)
    assert pvlan_vlans({n: p.pvlan for n, p in cfg.ports.items()}) == {
        200: PvlanVlan(200, "primary"), 201: PvlanVlan(200, "isolated"),
        202: PvlanVlan(200, "community"), 205: PvlanVlan(200, "secondary")}


BAD = [
    ("  x: {type: memory, pvlan: {primary: 300, mode: isolated}}",
     "ports.x.pvlan: an isolated port needs its 'secondary' VLAN"),
    ("  x: {type: memory, pvlan: {primary: 300, mode: community, secondary: 300}}",
     "ports.x.pvlan: the secondary VLAN of a community port cannot be its primary (300)"),
    ("  x: {type: memory, pvlan: {primary: 300, mode: promiscuous, secondary: 301}}",
     "ports.x.pvlan: a promiscuous port's secondary is its primary (300) or left out"),
    ("  x: {type: memory, pvlan: {primary: 300, mode: isolated, secondary: 301, "
     "secondaries: [302]}}", "ports.x.pvlan: 'secondaries' is only for promiscuous ports"),
    ("  x: {type: memory, pvlan: {primary: 300, mode: sneaky, secondary: 301}}",
     "ports.x.pvlan.mode:"),
    ("  x: {type: memory, pvlan: {primary: 5000, mode: promiscuous}}",
     "ports.x.pvlan.primary: 5000 is not a VLAN id"),
    ("  x: {type: memory, vlan: {mode: access, id: 201}}",
     "ports.x.vlan.id: VLAN 201 is a secondary VLAN of primary 200 (port 'i')"),
    ("  x: {type: memory, vlan: {mode: access, id: 200}}",
     "ports.x.vlan.id: VLAN 200 is the primary of a private VLAN"),
    ("  x: {type: memory, vlan: {mode: trunk, allowed: [10], native: 202}}",
     "ports.x.vlan.native: VLAN 202 is a secondary VLAN of primary 200"),
    ("  x: {type: memory, pvlan: {primary: 200, mode: community, secondary: 201}}",
     "ports.x.pvlan.secondary: VLAN 201 is an isolated VLAN of primary 200 (port 'i'), "
     "not a community VLAN"),
    ("  x: {type: memory, pvlan: {primary: 300, mode: isolated, secondary: 202}}",
     "ports.x.pvlan.secondary: VLAN 202 already belongs to the private VLAN of primary 200"),
    ("  x: {type: memory, pvlan: {primary: 300, mode: promiscuous, secondaries: [201]}}",
     "ports.x.pvlan.secondaries: VLAN 201 already belongs to the private VLAN of primary 200"),
    ("  x: {type: memory, pvlan: {primary: 201, mode: promiscuous}}",
     "ports.i.pvlan.secondary: VLAN 201 is the primary of another private VLAN (port 'x')"),
    ("  x: {type: memory, vlan: {mode: access, id: 5}, pvlan: {primary: 200, "
     "mode: promiscuous}}", "ports.x: pvlan: a private VLAN port is untagged on the wire"),
    ("  x: {type: memory, pvlan: {primary: 200, mode: promiscuous, bogus: 1}}",
     "ports.x.pvlan.bogus: unknown key"),
    # a trunk carrying a secondary without its primary: the secondary's hosts behind it
    # would never hear from a promiscuous port (its frames travel on the primary)
    ("  x: {type: memory, vlan: {mode: trunk, allowed: [10, 201]}}",
     "ports.x.vlan.allowed: the trunk carries secondary VLAN 201 (isolated, port 'i') of the "
     "private VLAN of primary 200 but not the primary 200: frames from promiscuous ports "
     "travel on VLAN 200"),
    ("  x: {type: memory, vlan: {mode: trunk, allowed: [202], native: 10}}",
     "ports.x.vlan.allowed: the trunk carries secondary VLAN 202 (community, port 'c')"),
    ("  x: {type: memory, vlan: {mode: trunk, allowed: [205]}}",
     "ports.x.vlan.allowed: the trunk carries secondary VLAN 205 (secondary, port 'p')"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m for _, m in BAD])
def test_rejected_with_path(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(GOOD + extra + "\n")
    assert any(e.startswith(message) or message in e for e in err.value.errors), \
        err.value.errors


def test_trunk_without_the_primary_one_error_naming_every_secondary() -> None:
    with pytest.raises(ConfigError) as err:
        load_text(GOOD + "  x: {type: memory, vlan: {mode: trunk, allowed: [201-205]}}\n")
    assert err.value.errors == [
        "ports.x.vlan.allowed: the trunk carries secondary VLANs 201 (isolated, port 'i'), "
        "202 (community, port 'c'), 205 (secondary, port 'p') of the private VLAN of primary "
        "200 but not the primary 200: frames from promiscuous ports travel on VLAN 200, so "
        "hosts behind the trunk in the secondary VLANs would get no answer from them (add 200 "
        "to 'allowed', or leave the secondary VLANs out)"]


def test_trunk_with_the_primary_alone_or_with_some_secondaries_is_valid() -> None:
    for allowed in ("[200]", "[200, 201]", "[10, 200-202]"):
        trunk = f"  x: {{type: memory, vlan: {{mode: trunk, allowed: {allowed}}}}}\n"
        cfg = load_text(GOOD + trunk)
        assert "x" in cfg.ports


def test_the_running_config_as_data_parses_again() -> None:
    """Live changes (``vspan acl add``, ``POST /mirrors/...``) edit the running config dumped
    as data and parse it again: the dump carries every port's default ``vlan``, which a
    PVLAN port must accept (a live change on a switch with PVLAN ports was refused with
    "leave 'vlan' out")."""
    from vspan.config.load import parse_config
    from vspan.control.live import config_data

    cfg = load_text(GOOD)
    assert parse_config(config_data(cfg), "again") == cfg
