"""``vspan dvs`` against a private etcd on loopback (no root needed): apply with
path-precise errors and nothing written, dry run, set/add/remove, export round trip,
show, list, delete, and the refusal while etcd is down."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers.etcd import EtcdServer, etcd_server, require_etcd

VSPAN = [sys.executable, "-m", "vspan.cli.main"]

FILE = """\
switch: {name: prod}
hosts: {esx1: {}, esx2: {}}
port_groups:
  web: {vlan: {mode: access, id: 10}}
ports:
  web1: {host: esx1, interface: vnet1, vm: web1, mac: "02:00:00:00:00:01", port_group: web}
  web2: {host: esx2, interface: vnet2, vm: web2, mac: "02:00:00:00:00:02", port_group: web}
mirrors:
  m: {sources: [{port_group: web}], erspan: {remote_ip: 192.0.2.9}}
"""


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    require_etcd()
    with etcd_server() as server:
        yield server


def dvs(etcd: EtcdServer, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*VSPAN, "dvs", *args, "--etcd", etcd.url], capture_output=True,
                          text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"vspan dvs {' '.join(args)}: {proc.stderr}")
    return proc


def test_apply_show_edit_export(etcd: EtcdServer, tmp_path: Path) -> None:
    path = tmp_path / "prod.yaml"
    path.write_text(FILE.replace("id: 10", "id: 5000"), encoding="utf-8")
    bad = dvs(etcd, "apply", str(path), check=False)
    assert bad.returncode == 1
    assert f"{path}: port_groups.web.vlan.id: 5000 is not a VLAN id (1-4094)" in bad.stderr
    assert dvs(etcd, "list").stdout == ""  # nothing was written
    path.write_text(FILE, encoding="utf-8")
    dry = dvs(etcd, "apply", str(path), "--dry-run").stdout
    assert "port web1 added" in dry and "dry run: nothing written" in dry
    assert dvs(etcd, "list").stdout == ""
    out = dvs(etcd, "apply", str(path)).stdout
    assert "distributed switch prod created" in out and "generation 1" in out
    assert "no changes" in dvs(etcd, "apply", str(path)).stdout
    assert dvs(etcd, "list").stdout.split() == ["prod"]

    ports = {r["port"]: r for r in json.loads(dvs(etcd, "show", "ports", "--json").stdout)}
    assert ports["web1"]["vlan"] == "access 10" and ports["web1"]["state"] == "down"
    ids = {n: r["port_id"] for n, r in ports.items()}
    assert len(set(ids.values())) == 2
    hosts = json.loads(dvs(etcd, "show", "hosts", "--json").stdout)
    assert [(h["host"], h["status"]) for h in hosts] == [("esx1", "down"), ("esx2", "down")]
    table = dvs(etcd, "show", "ports", "--host", "esx2").stdout
    assert "web2" in table and "web1" not in table

    assert "port group web changed" in dvs(etcd, "set", "port-group", "web", "vlan.id=20").stdout
    dvs(etcd, "add", "port", "web3", "host=esx1", "port_group=web", "mac=02:00:00:00:00:03",
        "interface=vnet3")
    bad_edit = dvs(etcd, "set", "port", "web3", "host=esx9", check=False)
    assert bad_edit.returncode == 1 and "ports.web3.host: no host named 'esx9'" in bad_edit.stderr
    dup = dvs(etcd, "add", "port", "web3", "host=esx1", check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    pg = json.loads(dvs(etcd, "show", "port-groups", "--json").stdout)
    assert pg[0]["vlan"] == "access 20" and pg[0]["ports"] == ["web1", "web2", "web3"]
    mirrors = json.loads(dvs(etcd, "show", "mirrors", "--json").stdout)
    assert mirrors[0]["sources"] == ["group:web:both"]

    # export gives back a file that applies as "no changes", with every port id
    exported = dvs(etcd, "export").stdout
    data = yaml.safe_load(exported)
    assert {n: str(p["port_id"]) for n, p in data["ports"].items()
            if n != "web3"} == ids
    path.write_text(exported, encoding="utf-8")
    assert "no changes" in dvs(etcd, "apply", str(path)).stdout

    dvs(etcd, "remove", "port", "web3")
    assert "web3" not in dvs(etcd, "show", "ports").stdout
    refused = dvs(etcd, "delete", "prod", check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    dvs(etcd, "delete", "prod", "--yes")
    assert dvs(etcd, "list").stdout == ""


def test_changes_are_refused_clearly_while_etcd_is_down(etcd: EtcdServer,
                                                        tmp_path: Path) -> None:
    path = tmp_path / "prod.yaml"
    path.write_text(FILE, encoding="utf-8")
    dvs(etcd, "apply", str(path))
    etcd.stop()
    for args in (("apply", str(path)), ("set", "port-group", "web", "vlan.id=30", "--dvs",
                                        "prod"), ("show", "hosts", "--dvs", "prod")):
        proc = dvs(etcd, *args, check=False)
        assert proc.returncode == 1
        assert "is unreachable" in proc.stderr and "nothing was changed" in proc.stderr
    etcd.start()
    assert "port group web changed" in dvs(etcd, "set", "port-group", "web",
                                           "vlan.id=30").stdout
