"""ACL and firewall rules changed on the running switch with the CLI, checked with real ping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.switchproc import running_switch
from tests.system.test_switch import hosts, ping, ports_yaml

pytestmark = pytest.mark.system


def test_acl_add_show_remove_live(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    h = hosts(netlab, {"a": "10.11.0.1/24", "b": "10.11.0.2/24"})
    with running_switch(tmp_path, ports_yaml(h)) as sw:
        ping(netlab, h["a"][0], "10.11.0.2", count=1)
        out = sw.cli("acl", "add", "b", "--action", "deny", "--direction", "in",
                     "--remote-ip", "10.11.0.1/32", "--id", "no-a").stdout
        assert "acl added: b/no-a" in out
        assert not ping(netlab, h["a"][0], "10.11.0.2", count=2, check=False)
        assert sw.drops("acl-deny") >= 2
        rules = {d["rule"] for d in sw.show("counters")["drops"] if d["reason"] == "acl-deny"}
        assert rules == {"no-a"}
        # a more specific allow wins over the deny (longest prefix... here: MAC beats IP)
        sw.cli("acl", "add", "b", "--action", "allow", "--direction", "in", "--remote-mac",
               "02:00:00:00:01:01", "--id", "a-mac")
        ping(netlab, h["a"][0], "10.11.0.2", count=1)
        shown = json.loads(sw.cli("acl", "show", "b", "--json").stdout)
        assert {e["id"] for e in shown["acls"]} == {"no-a", "a-mac"}
        table = sw.cli("acl", "show", "b").stdout
        assert "no-a" in table and "10.11.0.1/32" in table
        # a bad entry is refused with its path; nothing changes
        bad = sw.cli("acl", "add", "b", "--action", "deny", "--direction", "in",
                     "--remote-ip", "10.11.0.300/32", check=False)
        assert bad.returncode != 0 and "ports.b.policy.acls.2.remote_ip" in bad.stderr
        sw.cli("acl", "remove", "b", "a-mac")
        assert not ping(netlab, h["a"][0], "10.11.0.2", count=1, check=False)
        sw.cli("acl", "remove", "b", "no-a")
        ping(netlab, h["a"][0], "10.11.0.2", count=1)
        explain = sw.cli("policy", "explain", "--port", "b", "--direction", "in",
                         "--remote-ip", "10.11.0.1", "--local-ip", "10.11.0.2",
                         "--proto", "icmp", check=False)
        assert explain.returncode == 0, explain.stderr


def test_firewall_rule_add_remove_live(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    h = hosts(netlab, {"a": "10.12.0.1/24", "b": "10.12.0.2/24"})
    cfg = ports_yaml(h) + "firewall: {default_action: drop}\n"
    with running_switch(tmp_path, cfg) as sw:
        assert not ping(netlab, h["a"][0], "10.12.0.2", count=1, check=False)
        sw.cli("firewall", "rule", "add", "--section", "lab", "--id", "icmp-ok",
               "--action", "allow", "--service", "icmp")
        ping(netlab, h["a"][0], "10.12.0.2", count=2)
        shown = json.loads(sw.cli("firewall", "show", "--json").stdout)
        assert shown["rule_hits"].get("icmp-ok", 0) >= 1
        sw.cli("firewall", "rule", "remove", "icmp-ok")
        assert not ping(netlab, h["a"][0], "10.12.0.2", count=1, check=False)
        drops = sw.show("counters")["drops"]
        assert any(d["reason"] == "firewall-deny" for d in drops), drops
