"""kill -9 of a real switch with live ACLs, a firewall rule, a mirror session and learned
MACs; the restarted switch has them all (asserted through the CLI) and forwards a unicast
frame to a learned MAC to its port only (tcpdump on a third port sees nothing), copies it
to the mirror destination and enforces the restored ACL."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP
from scapy.layers.l2 import Ether

from tests.helpers.netns import Lab, require_tools
from tests.system.capture import tcpdump
from tests.system.switchproc import SwitchProcess
from tests.system.test_switch import MACS, hosts, ping, ports_yaml, static_neighbors

pytestmark = pytest.mark.system

IPS = {"a": "10.43.0.1", "b": "10.43.0.2", "c": "10.43.0.3", "d": "10.43.0.4"}


def wait_saved(sw: SwitchProcess, macs: set[str], timeout: float = 20) -> dict[str, object]:
    """Wait until a periodic save of the MAC table holds ``macs``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state: dict[str, object] = sw.show("state")
        if isinstance(state["fdb_entries"], int) and state["fdb_entries"] >= len(macs):
            return state
        time.sleep(0.3)
    raise AssertionError(f"the MAC table with {macs} was not saved within {timeout} s")


def test_kill_9_restart_restores_policy_sessions_and_macs(netlab: Lab, tmp_path: Path
                                                         ) -> None:
    require_tools("ping", "tcpdump")
    h = hosts(netlab, {k: v + "/24" for k, v in IPS.items()})
    static_neighbors(netlab, h, IPS)  # no ARP: the only frames are the pings
    sw = SwitchProcess(tmp_path, ports_yaml(h))
    # save the MAC table every second (the default is 10 s)
    sw.config.write_text(sw.config.read_text().replace("state_dir:",
                                                       "fdb_save_seconds: 1, state_dir:"))
    try:
        sw.start()
        ping(netlab, h["a"][0], IPS["b"], count=2)  # learns a and b
        sw.cli("acl", "add", "b", "--action", "deny", "--direction", "in", "--remote-ip",
               f"{IPS['c']}/32", "--id", "no-c")
        sw.cli("firewall", "rule", "add", "--section", "lab", "--id", "icmp-ok", "--action",
               "allow", "--service", "icmp")
        sw.cli("mirror", "create", "mon", "--source", "a", "--dest", "d")
        wait_saved(sw, {MACS["a"], MACS["b"]})
        before = {(e["mac"], e["port"]): e["age"] for e in sw.show("fdb")}
        sw.kill()

        sw.start()
        # through the CLI
        fdb = {(e["mac"], e["port"]): e["age"] for e in sw.show("fdb")}
        assert {(MACS["a"], "a"), (MACS["b"], "b")} <= set(fdb)
        for key in ((MACS["a"], "a"), (MACS["b"], "b")):
            assert fdb[key] >= before[key]  # ages went on, they did not restart at 0
        acl = json.loads(sw.cli("acl", "show", "b", "--json").stdout)
        assert [e["id"] for e in acl["acls"]] == ["no-c"]
        (mon,) = sw.show("mirrors")
        assert mon["name"] == "mon" and mon["sources"] == ["a:both"] and \
            mon["destinations"] == ["d"]
        assert "firewall rule icmp-ok" in sw.cli("show", "live").stdout
        state = sw.show("state")
        assert state["started"]["how"] == "restored"
        assert state["started"]["fdb"]["restored"] >= 2
        # by traffic: a -> b is known unicast from the first frame on; c sees none of it,
        # the mirror destination gets the copies
        with tcpdump(h["c"][0], "eth0", tmp_path / "c.pcap", "icmp") as third, \
                tcpdump(h["d"][0], "eth0", tmp_path / "d.pcap", "icmp") as mirror:
            ping(netlab, h["a"][0], IPS["b"], count=3)
        assert [p.summary() for p in third.packets] == []
        requests = [p for p in mirror.packets if p.haslayer(ICMP) and p[ICMP].type == 8
                    and p[Ether].src == MACS["a"]]
        assert len(requests) == 3
        assert sw.show("counters")["ports"]["a"]["flooded"] == 0
        # the restored ACL holds
        assert not ping(netlab, h["c"][0], IPS["b"], count=1, check=False)
        assert sw.drops("acl-deny", "b") >= 1
    finally:
        sw.stop()
