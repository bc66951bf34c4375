"""Private VLANs with real namespaces and real ping: the reachability matrix on one switch,
and across a veth trunk between two vspan switches (each a real ``vspan up``)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.helpers.netns import Lab, require_tools, sh
from tests.system.switchproc import running_switch
from tests.system.test_switch import ping

pytestmark = pytest.mark.system

# name -> (mode, secondary); one domain, primary 200
ROLES = {
    "p": ("promiscuous", 200),
    "i1": ("isolated", 201),
    "i2": ("isolated", 201),
    "c1": ("community", 202),
    "c2": ("community", 202),
    "d1": ("community", 203),
}
ADDR = {n: f"10.77.0.{i}" for i, n in enumerate(ROLES, start=1)}


def reachable(a: str, b: str) -> bool:
    """The field notes' table."""
    (ma, sa), (mb, sb) = ROLES[a], ROLES[b]
    if "promiscuous" in (ma, mb):
        return True
    return ma == mb == "community" and sa == sb


def port_line(name: str, ifname: str) -> str:
    mode, sec = ROLES[name]
    extra = "" if mode == "promiscuous" else f", secondary: {sec}"
    return f"  {name}: {{interface: {ifname}, pvlan: {{primary: 200, mode: {mode}{extra}}}}}\n"


def hosts(lab: Lab) -> dict[str, tuple[str, str]]:
    out = {}
    for i, name in enumerate(ROLES, start=1):
        ns = lab.netns(name)
        out[name] = (ns, lab.veth(f"v{name}", ns, addr=ADDR[name] + "/24",
                                  mac=f"02:00:00:00:07:{i:02x}"))
    return out


def matrix(lab: Lab, hs: dict[str, tuple[str, str]]) -> dict[tuple[str, str], bool]:
    """Ping every ordered pair once (ARP included: broadcasts obey the rules too)."""
    return {(a, b): ping(lab, hs[a][0], ADDR[b], count=1, check=False)
            for a in ROLES for b in ROLES if a != b}


def expected() -> dict[tuple[str, str], bool]:
    return {(a, b): reachable(a, b) for a in ROLES for b in ROLES if a != b}


def test_pvlan_matrix_on_one_switch(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    hs = hosts(netlab)
    cfg = "ports:\n" + "".join(port_line(n, hs[n][1]) for n in ROLES)
    with running_switch(tmp_path, cfg) as sw:
        got = matrix(netlab, hs)
        assert got == expected()
        assert sw.drops("pvlan-isolated") > 0 and sw.drops("pvlan-community") > 0
        vlans = {e["vlan"] for e in sw.show("fdb")}
        assert vlans == {200}, "the domain shares the primary's MAC table"


def test_pvlan_matrix_across_a_veth_trunk(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    hs = hosts(netlab)
    left, right = ["p", "i1", "c1", "d1"], ["i2", "c2"]
    ta = netlab.veth("trk")  # both ends in the root namespace: the trunk cable
    tb = netlab.name("trkp")
    sh("sysctl", "-qw", f"net.ipv6.conf.{tb}.disable_ipv6=1", check=False)
    sh("ip", "link", "set", tb, "up")
    trunk = "  t: {{interface: {}, vlan: {{mode: trunk, allowed: [200-203]}}}}\n"
    cfg_a = "ports:\n" + "".join(port_line(n, hs[n][1]) for n in left) + trunk.format(ta)
    # switch B has no promiscuous port: it knows the domain from its own ports only
    cfg_b = "ports:\n" + "".join(port_line(n, hs[n][1]) for n in right) + trunk.format(tb)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with ExitStack() as stack:
        sw_a = stack.enter_context(running_switch(tmp_path / "a", cfg_a))
        sw_b = stack.enter_context(running_switch(tmp_path / "b", cfg_b))
        got = matrix(netlab, hs)
        assert got == expected()
        # i1 -> i2 crossed the trunk on the isolated VID and was refused at B
        assert sw_b.drops("pvlan-isolated", "i2") > 0
        assert sw_a.drops("pvlan-isolated") > 0


def test_trunk_without_the_primary_refused_live_running_config_intact(
        netlab: Lab, tmp_path: Path) -> None:
    """A reload (``POST /reload``, the REST API's live change of the configuration file)
    whose trunk carries secondary VLANs without their primary is refused with the key's
    path and the reason; the running configuration, a live change made through the API
    and the PVLAN traffic all stay as they were."""
    from tests.system.apiswitch import ApiSwitch

    require_tools("ping")
    hs = hosts(netlab)
    used = ["p", "i1", "i2", "c1"]
    trunk = netlab.veth("trk")
    good = ("ports:\n" + "".join(port_line(n, hs[n][1]) for n in used)
            + f"  t: {{interface: {trunk}, vlan: {{mode: trunk, allowed: [200-203]}}}}\n")
    sw = ApiSwitch(tmp_path, good)
    sw.start()
    try:
        token = sw.token("pv-admin", "admin")
        assert ping(netlab, hs["i1"][0], ADDR["p"], count=1)
        assert not ping(netlab, hs["i1"][0], ADDR["i2"], count=1, check=False)
        with sw.client(token) as c:
            # a live change through the API (not in the file)
            made = c.post("/ports/p/acls", json={"id": "no-lab", "action": "deny",
                                                  "direction": "both",
                                                  "remote_ip": "10.98.0.0/16"})
            assert made.status_code == 200, made.text
            before = c.get("/config").json()
            text = sw.config.read_text(encoding="utf-8")
            sw.config.write_text(text.replace("allowed: [200-203]", "allowed: [201-203]"),
                                 encoding="utf-8")
            other = tmp_path / "other.yaml"
            other.write_text(sw.config.read_text(encoding="utf-8"), encoding="utf-8")
            for body in ({"live": "keep"}, {"live": "drop"}, {"path": str(other),
                                                               "live": "keep"}):
                resp = c.post("/reload", json=body)
                assert resp.status_code in (400, 422), (body, resp.text)
                answer = resp.json()
                want = ("ports.t.vlan.allowed: the trunk carries secondary VLANs 201 "
                        "(isolated, port 'i1'), 202 (community, port 'c1') of the private "
                        "VLAN of primary 200 but not the primary 200")
                assert any(want in d for d in answer["details"]), answer
                assert c.get("/config").json() == before
            assert "no-lab" in json.dumps(c.get("/ports/p/acls").json()), \
                "the live change was lost"
        # the switch still runs the old configuration: the trunk still carries 200
        ports = {r["name"]: r for r in sw.show("ports")}
        assert "200" in json.dumps(ports["t"]), ports["t"]
        assert ping(netlab, hs["i1"][0], ADDR["p"], count=1)
        assert ping(netlab, hs["c1"][0], ADDR["p"], count=1)
        assert not ping(netlab, hs["i1"][0], ADDR["c1"], count=1, check=False)
        # and the CLI says the same
        cli = sw.cli("reload", check=False)
        assert cli.returncode != 0 and "ports.t.vlan.allowed: the trunk carries" in cli.stderr
    finally:
        sw.stop()
