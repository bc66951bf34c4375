"""Firewall changes are reported, a reload does not silently undo live changes, and the
running configuration saved with `vspan show config` round-trips (real switch, real ping)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.switchproc import VSPAN, running_switch
from tests.system.test_switch import hosts, ping, ports_yaml

pytestmark = pytest.mark.system


def test_firewall_changes_are_reported_and_live_changes_survive_reload(
        netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    h = hosts(netlab, {"a": "10.31.0.1/24", "b": "10.31.0.2/24"})
    fw = "firewall:\n  default_action: drop\n  sections:\n    - name: base\n      rules:\n"
    base = ports_yaml(h) + fw + "        - {id: ssh, action: allow, services: [tcp/22]}\n"
    with running_switch(tmp_path, base) as sw:
        assert not ping(netlab, h["a"][0], "10.31.0.2", count=1, check=False)
        # a firewall rule added to the file: reported, not "no changes"
        with_icmp = tmp_path / "icmp.yaml"
        with_icmp.write_text(sw.config.read_text(encoding="utf-8")
                             + "        - {id: icmp-file, action: allow, services: [icmp]}\n",
                             encoding="utf-8")
        out = sw.cli("reload", str(with_icmp)).stdout
        assert out.splitlines() == ["firewall rule added: icmp-file"]
        ping(netlab, h["a"][0], "10.31.0.2", count=2)
        # a rule and an ACL added live: reported
        out = sw.cli("firewall", "rule", "add", "--section", "lab", "--id", "web-ok",
                     "--action", "allow", "--service", "tcp/80").stdout
        assert out.splitlines() == ["firewall section added: lab", "firewall rule added: web-ok"]
        out = sw.cli("acl", "add", "b", "--action", "deny", "--direction", "in",
                     "--remote-ip", "10.31.0.1/32", "--id", "no-a").stdout
        assert out.splitlines() == ["acl added: b/no-a"]
        assert not ping(netlab, h["a"][0], "10.31.0.2", count=1, check=False)
        # a plain reload refuses to undo them, lists them, changes nothing
        proc = sw.cli("reload", check=False)
        assert proc.returncode == 1 and proc.stdout == ""
        assert "reload would undo 2 live changes" in proc.stderr
        assert "removes firewall rule web-ok (added with 'vspan firewall rule add' at " \
            in proc.stderr
        assert "removes acl b/no-a (added with 'vspan acl add' at " in proc.stderr
        assert "--keep-live" in proc.stderr and "--force" in proc.stderr
        assert not ping(netlab, h["a"][0], "10.31.0.2", count=1, check=False)
        live = sw.cli("show", "live").stdout
        assert "acl b/no-a" in live and "not in file" in live
        # --keep-live: the file's own change applies, the live ones stay
        out = sw.cli("reload", "--keep-live").stdout
        assert "kept live change: acl b/no-a (added with 'vspan acl add' at " in out
        # show config -> check-config -> reload: "no changes", and nothing live is left
        yaml_text = sw.cli("show", "config").stdout
        assert "#   acl b/no-a (added with 'vspan acl add' at " in yaml_text
        saved = tmp_path / "saved.yaml"
        saved.write_text(yaml_text, encoding="utf-8")
        check = subprocess.run([*VSPAN, "check-config", str(saved)], capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        assert sw.cli("reload", str(saved)).stdout == "no changes\n"
        assert "no live changes" in sw.cli("show", "live").stdout
        assert not ping(netlab, h["a"][0], "10.31.0.2", count=1, check=False)
        # --force undoes a live change and says so
        sw.cli("acl", "remove", "b", "no-a")
        ping(netlab, h["a"][0], "10.31.0.2", count=1)
        lines = sw.cli("reload", "--force").stdout.splitlines()
        assert len(lines) == 2 and lines[0] == "acl added: b/no-a"
        assert lines[1].startswith("live change undone: restores acl b/no-a (removed with "
                                   "'vspan acl remove' at ")
        assert not ping(netlab, h["a"][0], "10.31.0.2", count=1, check=False)
