"""A distributed switch document gets the single-host configuration's private VLAN
cross-checks over all its hosts' ports (a private VLAN spans hosts), path-precise, before
`vspan dvs apply` writes anything."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from vspan.cli import dvs_cmd
from vspan.config.dvs import DvsConfig
from vspan.config.load import ConfigError, parse_model, read_yaml
from vspan.control.dvs.admin import DvsAdmin
from vspan.control.store.memory import MemoryStore

GOOD = """\
switch: {name: pv}
hosts: {h1: {}, h2: {}}
port_groups:
  uplinks: {vlan: {mode: trunk, allowed: [10, 200-202]}}
ports:
  router: {host: h1, pvlan: {primary: 200, mode: promiscuous}}
  web1: {host: h1, pvlan: {primary: 200, mode: community, secondary: 202}}
  guest1: {host: h2, pvlan: {primary: 200, mode: isolated, secondary: 201}}
  up1: {host: h2, port_group: uplinks}
"""


def load(text: str) -> DvsConfig:
    return parse_model(DvsConfig, read_yaml(text, "dvs.yaml"), "dvs.yaml")


def test_a_valid_private_vlan_over_two_hosts_is_accepted() -> None:
    dvs = load(GOOD)
    assert dvs.ports["guest1"].pvlan is not None


BAD = [
    # a trunk carrying a secondary without its primary (the secondary on another host)
    ("  t: {host: h1, vlan: {mode: trunk, allowed: [10, 201]}}",
     "ports.t.vlan.allowed: the trunk carries secondary VLAN 201 (isolated, port 'guest1') of "
     "the private VLAN of primary 200 but not the primary 200"),
    ("  a: {host: h2, vlan: {mode: access, id: 201}}",
     "ports.a.vlan.id: VLAN 201 is a secondary VLAN of primary 200 (port 'guest1')"),
    ("  a: {host: h1, vlan: {mode: trunk, allowed: [10], native: 200}}",
     "ports.a.vlan.native: VLAN 200 is the primary of a private VLAN"),
    ("  c: {host: h2, pvlan: {primary: 200, mode: community, secondary: 201}}",
     "ports.c.pvlan.secondary: VLAN 201 is an isolated VLAN of primary 200 (port 'guest1'), "
     "not a community VLAN"),
    ("  c: {host: h2, pvlan: {primary: 300, mode: isolated, secondary: 202}}",
     "ports.c.pvlan.secondary: VLAN 202 already belongs to the private VLAN of primary 200"),
    ("  p: {host: h2, pvlan: {primary: 201, mode: promiscuous}}",
     "ports.guest1.pvlan.secondary: VLAN 201 is the primary of another private VLAN (port "
     "'p')"),
    ("  i: {host: h1, pvlan: {primary: 300, mode: isolated}}",
     "ports.i.pvlan: an isolated port needs its 'secondary' VLAN"),
    ("  i: {host: h1, port_group: uplinks, pvlan: {primary: 300, mode: promiscuous}}",
     "ports.i.pvlan: a private VLAN port is untagged on the wire and its VLANs come from "
     "'pvlan', but its port group 'uplinks' sets 'vlan'"),
    ("  i: {host: h1, pvlan: {primary: 4001, mode: promiscuous}}",
     "ports.i.pvlan: VLAN 4001 is reserved for mirror copies between hosts"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m[:60] for _, m in BAD])
def test_refused_with_its_path_and_nothing_written(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(GOOD + extra + "\n")
    assert any(message in e for e in err.value.errors), err.value.errors


def test_a_port_groups_trunk_is_refused_once_at_the_group() -> None:
    text = GOOD.replace("port_groups:\n", "port_groups:\n"
                        "  bad: {vlan: {mode: trunk, allowed: [10, 202]}}\n")
    with pytest.raises(ConfigError) as err:
        load(text + "  t1: {host: h1, port_group: bad}\n  t2: {host: h2, port_group: bad}\n")
    assert err.value.errors == [
        "port_groups.bad.vlan.allowed: the trunk carries secondary VLAN 202 (community, port "
        "'web1') of the private VLAN of primary 200 but not the primary 200: frames from "
        "promiscuous ports travel on VLAN 200, so hosts behind the trunk in the secondary "
        "VLAN would get no answer from them (add 200 to 'allowed', or leave the secondary "
        "VLAN out)"]


def test_cli_apply_refuses_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`vspan dvs apply` of a bad document: the error with its path, the store untouched."""
    store = MemoryStore()
    DvsAdmin(store, "pv").apply(load(GOOD))
    revision = store.revision
    monkeypatch.setattr(dvs_cmd, "open_store", lambda _etcd: store)
    bad = tmp_path / "dvs.yaml"
    bad.write_text(GOOD + "  t: {host: h1, vlan: {mode: trunk, allowed: [201]}}\n")
    args = argparse.Namespace(file=str(bad), etcd="unused", dry_run=False)
    assert dvs_cmd.run_apply(args) != 0
    assert f"{bad}: ports.t.vlan.allowed: the trunk carries secondary VLAN 201" \
        in capsys.readouterr().err
    assert store.revision == revision
    good = tmp_path / "good.yaml"  # the same path takes a good document
    good.write_text(GOOD + "  t: {host: h1, vlan: {mode: trunk, allowed: [200, 201]}}\n")
    assert dvs_cmd.run_apply(argparse.Namespace(file=str(good), etcd="unused",
                                                dry_run=False)) == 0
    assert store.revision > revision
