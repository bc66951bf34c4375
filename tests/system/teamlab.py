"""Two vspan switches joined by a two-member team on each side (system tests, bench).

Topology (namespaces carry the lab's random prefix; interface names are local)::

    vm1 (10.30.0.1) ── vm1 ┐ ha: vspan up                 hb: vspan up ┌ vm2 ── vm2 (10.30.0.2)
                           └ team0 = [a1, a2]   a1 ══ b1   team0 = [b1, b2] ┘
                                                a2 ══ b2

No bonding, bridge or team kernel device is involved: each member is a plain veth
end, and the far side of switch A's team is switch B's team.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.netns import Lab, sh
from tests.system.test_two_hosts import NsSwitch, wire
from vspan.cli.client import request

VM1_IP, VM2_IP = "10.30.0.1", "10.30.0.2"
VM1_MAC, VM2_MAC = "02:00:30:00:00:01", "02:00:30:00:00:02"


@dataclass
class TeamLab:
    """The namespaces of the topology and the switches once started."""

    lab: Lab
    ha: str
    hb: str
    vm1: str
    vm2: str
    switches: dict[str, NsSwitch] = field(default_factory=dict)

    def team(self, host: str) -> dict[str, Any]:
        """The team port's ``show ports`` data on switch ``host`` (``a`` or ``b``).

        Asked over the control socket from this process (the same request as the
        CLI's, without starting a Python process each time: fast enough to poll).
        """
        rows = request(self.switches[host].socket, "GET", "/show/ports")
        return next(r for r in rows if r["name"] == "team0")["team"]  # type: ignore[no-any-return]

    def tx(self, host: str) -> dict[str, int]:
        """Frames sent out of each member of ``host``'s team."""
        return {m["name"]: m["counters"]["tx_frames"] for m in self.team(host)["members"]}

    def member(self, host: str, name: str) -> dict[str, Any]:
        """One member's row of :meth:`team`."""
        return next(m for m in self.team(host)["members"] if m["name"] == name)

    def link(self, ns: str, ifname: str, up: bool) -> None:
        """Set a member interface administratively up or down."""
        sh("ip", "-n", ns, "link", "set", ifname, "up" if up else "down")

    def wait_state(self, host: str, name: str, prefix: str, timeout: float = 10) -> None:
        """Wait until member ``name`` on ``host`` reports a state starting with ``prefix``."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.member(host, name)["state"]
            if state.startswith(prefix):
                return
            time.sleep(0.05)
        raise AssertionError(f"{host}:{name} is {state!r}, not {prefix!r}")


def build(lab: Lab) -> TeamLab:
    """Make the namespaces and wires (switches are started by :func:`switches`)."""
    ha, hb = lab.netns("ha"), lab.netns("hb")
    vm1, vm2 = lab.netns("vm1"), lab.netns("vm2")
    wire(lab, "v1", (ha, "vm1"), (vm1, "eth0"), VM1_MAC, addr_b=f"{VM1_IP}/24")
    wire(lab, "v2", (hb, "vm2"), (vm2, "eth0"), VM2_MAC, addr_b=f"{VM2_IP}/24")
    wire(lab, "l1", (ha, "a1"), (hb, "b1"))
    wire(lab, "l2", (ha, "a2"), (hb, "b2"))
    return TeamLab(lab, ha, hb, vm1, vm2)


def team_yaml(vm: str, members: list[str], team: str = "") -> str:
    """A switch with one VM port and a team of ``members`` (``team``: extra team keys)."""
    extra = f", {team}" if team else ""
    return (f"ports:\n  {vm}: {{interface: {vm}}}\n"
            f"  team0: {{type: team, team: {{members: [{', '.join(members)}]{extra}}}}}\n")


@contextmanager
def switches(t: TeamLab, workdir: Path, yaml_a: str, yaml_b: str) -> Iterator[TeamLab]:
    """Run switch A in ``ha`` and switch B in ``hb`` while the body runs."""
    with ExitStack() as stack:
        for host, ns, text in (("a", t.ha, yaml_a), ("b", t.hb, yaml_b)):
            sw = NsSwitch(ns, workdir / host, text)
            stack.callback(sw.stop)
            sw.start()
            t.switches[host] = sw
        yield t
        t.switches.clear()


def iperf3_start(t: TeamLab, seconds: float, streams: int = 1,
                 extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen[str],
                                                       subprocess.Popen[str]]:
    """Start an iperf3 server in vm2 and a client in vm1; return (server, client)."""
    server = t.lab.popen(t.vm2, "iperf3", "-s", "-1", "-B", VM2_IP,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t.lab.wait_listening(t.vm2, 5201)
    client = t.lab.popen(t.vm1, "iperf3", "-c", VM2_IP, "-t", str(seconds), "-P",
                         str(streams), "-J", *extra, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    return server, client


def iperf3_result(server: subprocess.Popen[str], client: subprocess.Popen[str],
                  timeout: float = 120) -> dict[str, Any]:
    """Wait for the client; its JSON result (the server is stopped either way)."""
    try:
        out, err = client.communicate(timeout=timeout)
    finally:
        for proc in (client, server):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert client.returncode == 0, f"iperf3 failed ({client.returncode}): {out[-2000:]} {err}"
    result: dict[str, Any] = json.loads(out)
    assert "error" not in result, result["error"]
    return result
