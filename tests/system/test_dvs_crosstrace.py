"""``vspan trace --vm A --to-vm B`` on a real distributed switch, checked against the wire.

Real etcd in a router namespace, two host namespaces each running ``vspan agent``,
VXLAN between them, VMs as namespaces (tests/helpers/dvslab.py). The trace's
prediction is compared with what tcpdump sees on the destination VM when the very
same frame is then sent from the source VM: a forwarded frame arrives byte for byte
as the trace said (so MACs and VLAN too), and a frame the destination host's
firewall drops is named with host, stage, reason and rule and never arrives.
Tracing changes nothing on either host.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.dvslab import VM, VSPAN, DvsLab, dvs_lab, wait_until
from tests.helpers.etcd import require_etcd
from tests.helpers.netns import require_tools, requires_root
from tests.system.capture import Capture, tcpdump
from vspan.control.dvs.compile import overlay_supported

pytestmark = [pytest.mark.system, requires_root,
              pytest.mark.skipif(not overlay_supported(),
                                 reason="the vxlan port type is not in this build")]

CONFIG = """\
switch: {name: lab, mtu: 1600}
hosts: {h1: {}, h2: {}}
port_groups:
  web: {vlan: {mode: access, id: 10}}
  db: {vlan: {mode: access, id: 10}}
ports:
  web1: {host: h1, interface: web1, vm: web1, mac: '02:00:00:00:01:01', port_group: web,
      policy: {addresses: [10.0.0.11]}}
  web2: {host: h2, interface: web2, vm: web2, mac: '02:00:00:00:02:01', port_group: web,
      policy: {addresses: [10.0.0.21]}}
  db1: {host: h2, interface: db1, vm: db1, mac: '02:00:00:00:02:02', port_group: db,
      policy: {addresses: [10.0.0.22]}}
  snf: {host: h2, interface: snf}
mirrors:
  watch-web1: {sources: [web1], destinations: [snf]}
firewall:
  default_action: allow
  # the fixture's pings must not expire while a test compares the hosts' state
  timeouts: {icmp_first: 600, icmp_reply: 600}
  sections:
    - name: db
      applied_to: [db]
      rules:
        - {id: no-http-db, sources: [any], destinations: [db], services: [tcp/80],
           action: drop}
"""

SEND = """\
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
s.send(bytes.fromhex(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def dlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DvsLab]:
    """One lab for the module (~15 s to build): the tests only trace (which changes
    nothing, as one of them checks) and send one frame each, and compare counts before
    and after what they do."""
    require_etcd()
    require_tools("ping", "tcpdump")
    with dvs_lab(tmp_path_factory.mktemp("xt"), prefix=f"xt{secrets.token_hex(2)}") as dl:
        for h in ("h1", "h2"):
            dl.add_host(h, mtu=1600)
        dl.add_vm("h1", "web1", "10.0.0.11", "02:00:00:00:01:01")
        dl.add_vm("h2", "web2", "10.0.0.21", "02:00:00:00:02:01")
        dl.add_vm("h2", "db1", "10.0.0.22", "02:00:00:00:02:02")
        dl.add_vm("h2", "snf", "10.0.9.9", "02:00:00:00:09:09")
        # fixed neighbours: no ARP at all, so no unicast ARP probe ~5 s after the pings
        # below (a mirrored frame that would change h1's counters between two states)
        peers = [dl.hosts[h].vms[v] for h, v in (("h1", "web1"), ("h2", "web2"),
                                                 ("h2", "db1"))]
        for vm in peers:
            for other in peers:
                if other is not vm:
                    dl.lab.exec(vm.ns, "ip", "neigh", "replace", other.ip, "lladdr",
                                other.mac, "dev", "eth0", "nud", "permanent")
        dl.apply(CONFIG)
        for h in ("h1", "h2"):
            dl.start_agent(h)
        wait_until(lambda: dl.in_sync("h1", "h2"), 20, "h1, h2 in sync")
        wait_until(lambda: "overlay" in dl.host_ports("h1") and "overlay" in
                   dl.host_ports("h2"), 20, "overlay ports")
        vms = dl.hosts["h1"].vms | dl.hosts["h2"].vms
        # MACs learned on both hosts and behind both VTEPs
        wait_until(lambda: dl.ping(vms["web1"], vms["web2"], count=1, check=False), 20,
                   "web1 -> web2")
        dl.ping(vms["web1"], vms["db1"], count=1)
        yield dl


def trace(dl: DvsLab, *args: str) -> dict[str, Any]:
    """``vspan trace --json ARGS`` run where etcd is reachable (the agents' sockets are
    files of this machine)."""
    proc = subprocess.run(["ip", "netns", "exec", dl.router, *VSPAN, "trace", "--json",
                           "--etcd", dl.etcd_url, "--dvs", dl.dvs, *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def state(dl: DvsLab, host: str) -> dict[str, Any]:
    """What a trace must not change: learned MACs (both tables), firewall connections,
    drops, mirror counts."""
    fdb = {(r["vlan"], r["mac"], r["port"], r["vtep"]) for r in dl.local(host, "GET",
                                                                          "/show/fdb")}
    vteps = dl.local(host, "GET", "/show/vteps")
    drops = dl.local(host, "GET", "/show/counters")["drops"]
    mirrors = {m["name"]: m["counters"] for m in dl.local(host, "GET", "/show/mirrors")}
    conns = dl.local(host, "GET", "/firewall")["connections"]
    return {"fdb": fdb, "connections": conns, "table": sorted(json.dumps(r["mac"]) + r["vtep"]
                                        for r in vteps["table"]),
            "drops": drops, "mirrors": mirrors}


def sniff_while_sending(dl: DvsLab, src: VM, dst: VM, frame: str, bpf: str, tmp: Path,
                        until: Callable[[Capture], bool]) -> list[bytes]:
    """Send ``frame`` (hex) out of ``src``'s eth0; the frames tcpdump sees on ``dst`` once
    ``until(capture)`` held (a generous deadline: a loaded machine is slow, not wrong)."""
    pcap = tmp / f"{dst.name}.pcap"
    with tcpdump(dst.ns, "eth0", pcap, bpf) as cap:
        dl.lab.exec(src.ns, "python3", "-c", SEND, frame)
        wait_until(lambda: until(cap), 20, "the frame to be delivered or dropped")
    return [bytes(p) for p in cap.packets]


def test_forwarded_frame_arrives_as_the_trace_said(dlab: DvsLab, tmp_path: Path) -> None:
    before = {h: state(dlab, h) for h in ("h1", "h2")}
    path = trace(dlab, "--vm", "web1", "--to-vm", "web2", "--proto", "udp", "--dport", "5555")
    assert {h: state(dlab, h) for h in ("h1", "h2")} == before, "the trace changed state"
    # one path: h1's pipeline, the overlay, h2's pipeline, delivered to web2
    assert [(p["host"], p["role"], p["in_port"]) for p in path["hosts"]] == [
        ("h1", "source", "web1"), ("h2", "destination", "overlay")]
    hop, = path["overlay"]
    assert (hop["from_host"], hop["to_host"], hop["vni"], hop["vlan"]) == ("h1", "h2",
                                                                          10010, 10)
    assert (hop["outer_src"], hop["outer_dst"]) == (dlab.hosts["h1"].underlay,
                                                    dlab.hosts["h2"].underlay)
    assert hop["fits"] and hop["underlay_mtu"] == 1600 and hop["via"] == "learned"
    assert hop["outer_ip_bytes"] == 20 + 8 + 8 + path["frame_len"]
    assert path["drops"] == []
    # each host answered what it would do now (per-frame checks peeked), not only its
    # cached decision
    assert all(p["outcome"] is not None for p in path["hosts"])
    delivered, = path["delivered"]
    assert (delivered["host"], delivered["port"], delivered["vm"]) == ("h2", "web2", "web2")
    assert path["hosts"][1]["arrival"]["vlan"] == 10
    # the mirror session on h1 copies a's frame to the sniffer on h2 over the overlay
    assert any(c["host"] == "h1" and c["session"] == "watch-web1" and c["to"] == ["snf (h2)"]
               for c in path["copies"]), path["copies"]
    # now for real: the same bytes out of web1; web2 gets exactly what the trace delivered
    vms = dlab.hosts["h1"].vms | dlab.hosts["h2"].vms
    seen = sniff_while_sending(dlab, vms["web1"], vms["web2"], path["frame"], "udp port 5555",
                               tmp_path, lambda cap: cap.count() >= 1)
    assert seen == [bytes.fromhex(delivered["frame"])]
    assert seen[0][:6] == bytes.fromhex("020000000201")  # to web2's MAC
    assert seen[0][6:12] == bytes.fromhex("020000000101")  # from web1's MAC
    assert seen[0][12:14] == b"\x08\x00"  # untagged at the VM (access VLAN 10 popped)
    # from a captured frame: the capture tcpdump wrote, traced as web1 sending it again
    again = trace(dlab, "--pcap", str(tmp_path / "web2.pcap"), "--frame", "1", "--vm", "web1")
    assert again["frame"] == path["frame"]
    assert [(d["host"], d["port"], d["frame"]) for d in again["delivered"]] == [
        ("h2", "web2", delivered["frame"])]


def test_frame_dropped_by_the_destination_firewall(dlab: DvsLab, tmp_path: Path) -> None:
    path = trace(dlab, "--vm", "web1", "--to-vm", "db1", "--proto", "tcp", "--dport", "80")
    assert path["delivered"] == []
    drop, = path["drops"]
    assert (drop["host"], drop["stage"], drop["reason"], drop["rule"], drop["port"]) == (
        "h2", "firewall", "firewall-deny", "no-http-db", "db1")
    assert "dropped at host h2, stage firewall: firewall-deny, rule no-http-db" in \
        path["verdict"]
    vms = dlab.hosts["h1"].vms | dlab.hosts["h2"].vms

    def dropped() -> int:
        return sum(d["frames"] for d in dlab.local("h2", "GET", "/show/counters")["drops"]
                   if d["rule"] == "no-http-db")

    before = dropped()
    # h2 counted the drop: the frame is gone (the capture settles a while after that)
    assert sniff_while_sending(dlab, vms["web1"], vms["db1"], path["frame"], "tcp port 80",
                               tmp_path, lambda _cap: dropped() >= before + 1) == []
    assert dropped() == before + 1
    # the human form names the same
    proc = subprocess.run(["ip", "netns", "exec", dlab.router, *VSPAN, "trace", "--etcd",
                           dlab.etcd_url, "--vm", "web1", "--to-vm", "db1", "--proto", "tcp",
                           "--dport", "80"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "host h2 (destination), into port overlay from VTEP" in proc.stdout
    assert "verdict: dropped at host h2, stage firewall: firewall-deny, rule no-http-db" \
        in proc.stdout
