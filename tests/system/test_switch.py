"""The foundation switch with real namespaces, veth pairs, ping, tcpdump and iperf3."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tests.helpers.fakevm import QemuStandIn
from tests.helpers.netns import Lab, require_tools, sh
from tests.system.capture import tcpdump
from tests.system.switchproc import running_switch

pytestmark = pytest.mark.system

MACS = {n: f"02:00:00:00:01:{i:02x}" for i, n in enumerate("abcdefgh", start=1)}


def hosts(lab: Lab, spec: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Make one namespace per entry (name -> address); return name -> (ns, root-side veth)."""
    out = {}
    for name, addr in spec.items():
        ns = lab.netns(name)
        veth = lab.veth(f"v{name}", ns, addr=addr, mac=MACS[name])
        out[name] = (ns, veth)
    return out


def ports_yaml(h: dict[str, tuple[str, str]], extra: dict[str, str] | None = None) -> str:
    lines = ["ports:"]
    for name, (_ns, veth) in h.items():
        opts = (extra or {}).get(name, "")
        lines.append(f"  {name}: {{interface: {veth}{', ' + opts if opts else ''}}}")
    return "\n".join(lines) + "\n"


def static_neighbors(lab: Lab, h: dict[str, tuple[str, str]], ips: dict[str, str]) -> None:
    """No ARP: every host knows every other's MAC (keeps captures deterministic)."""
    for a, (ns, _) in h.items():
        for b in h:
            if a != b and b in ips:
                lab.exec(ns, "ip", "neigh", "replace", ips[b], "lladdr", MACS[b], "dev", "eth0",
                         "nud", "permanent")


def ping(lab: Lab, ns: str, dst: str, count: int = 3, size: int = 56, interval: str = "0.1",
         check: bool = True) -> bool:
    """``ping -c COUNT``; whether a reply came (``check``: assert it): ping's exit status
    is 0 once any reply came. -W is how long it waits while none has come yet (iputils;
    after a reply it waits only max(2 RTTs, the interval) for the last one): 3 s for a ping
    expected to succeed, so that a first ARP request lost on a busy machine (1 s to its
    retransmit) does not fail it; 1 s for one expected to fail."""
    proc = lab.exec(ns, "ping", "-c", str(count), "-i", interval, "-W", "3" if check else "1",
                    "-s", str(size), dst, check=False, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.returncode == 0


def test_ping_across_switch(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    h = hosts(netlab, {"a": "10.1.0.1/24", "b": "10.1.0.2/24"})
    with running_switch(tmp_path, ports_yaml(h)) as sw:
        ping(netlab, h["a"][0], "10.1.0.2")
        fdb = sw.show("fdb")
        assert {(e["mac"], e["port"]) for e in fdb} >= {(MACS["a"], "a"), (MACS["b"], "b")}


def test_learning_stops_flooding(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping", "tcpdump")
    ips = {"a": "10.2.0.1", "b": "10.2.0.2", "c": "10.2.0.3"}
    h = hosts(netlab, {k: v + "/24" for k, v in ips.items()})
    static_neighbors(netlab, h, ips)
    with running_switch(tmp_path, ports_yaml(h)), \
            tcpdump(h["c"][0], "eth0", tmp_path / "c.pcap", "icmp", expect=1) as cap:
        ping(netlab, h["a"][0], ips["b"], count=5)
    icmp = [p for p in cap.packets if p.haslayer(ICMP)]
    # only the very first request was unknown unicast (flooded); after b replied, the
    # switch knew both MACs and c saw nothing more
    assert len(icmp) == 1, [p.summary() for p in icmp]
    assert icmp[0][ICMP].type == 8 and icmp[0][Ether].dst == MACS["b"]


def test_vlan_isolation_between_access_ports(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping", "tcpdump")
    h = hosts(netlab, {"a": "10.3.0.1/24", "b": "10.3.0.2/24", "c": "10.3.0.3/24"})
    vlans = {"a": "vlan: {mode: access, id: 10}", "b": "vlan: {mode: access, id: 10}",
             "c": "vlan: {mode: access, id: 20}"}
    with running_switch(tmp_path, ports_yaml(h, vlans)), \
            tcpdump(h["c"][0], "eth0", tmp_path / "c.pcap") as cap:
        ping(netlab, h["a"][0], "10.3.0.2")
        assert not ping(netlab, h["a"][0], "10.3.0.3", count=2, check=False)
    leaked = [p for p in cap.packets if p[Ether].src in (MACS["a"], MACS["b"])]
    assert leaked == [], [p.summary() for p in leaked]


SEND_TAGGED = """
import sys
from scapy.all import Ether, Dot1Q, IP, ICMP, sendp
src, dst, vid, sip, dip = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
frames = [Ether(src=src, dst=dst) / Dot1Q(vlan=vid) / IP(src=sip, dst=dip) / ICMP(id=77, seq=i)
          for i in range(3)]
sendp(frames, iface="eth0", inter=0.1, verbose=False)
"""


def test_trunk_tagged_and_native(netlab: Lab, tmp_path: Path) -> None:
    """Tagged VLANs and the native VLAN on a trunk port.

    The kernel here has no 802.1Q devices (CONFIG_VLAN_8021Q unset), so the trunk
    namespace's "VLAN sub-interfaces" are played by scapy: it sends tagged echo
    requests on eth0 and tcpdump there sees the tagged replies of the real hosts.
    """
    import sys

    require_tools("ping", "tcpdump")
    t_ns = netlab.netns("t")
    t_veth = netlab.veth("vt", t_ns, addr="10.30.0.1/24", mac=MACS["h"])
    h = hosts(netlab, {"a": "10.10.0.2/24", "b": "10.20.0.2/24", "c": "10.30.0.2/24"})
    for name, t_ip in (("a", "10.10.0.1"), ("b", "10.20.0.1")):
        netlab.exec(h[name][0], "ip", "neigh", "replace", t_ip, "lladdr", MACS["h"], "dev",
                    "eth0", "nud", "permanent")
    cfg = ports_yaml(h, {"a": "vlan: {mode: access, id: 10}", "b": "vlan: {mode: access, id: 20}",
                         "c": "vlan: {mode: access, id: 30}"})
    trunk = "vlan: {mode: trunk, allowed: [10, 20], native: 30}"
    cfg += f"  trunk: {{interface: {t_veth}, {trunk}}}\n"
    script = tmp_path / "send_tagged.py"
    script.write_text(SEND_TAGGED, encoding="utf-8")
    with running_switch(tmp_path, cfg) as sw, \
            tcpdump(t_ns, "eth0", tmp_path / "t.pcap") as cap:
        for name, vid, dip in (("a", 10, "10.10.0.2"), ("b", 20, "10.20.0.2")):
            netlab.exec(t_ns, sys.executable, str(script), MACS["h"], MACS[name], str(vid),
                        f"10.{vid}.0.1", dip)
        ping(netlab, t_ns, "10.30.0.2", count=2)  # native VLAN 30: untagged both ways
        # a tag outside the allowed list is dropped with its reason
        netlab.exec(t_ns, sys.executable, str(script), MACS["h"], MACS["a"], "99",
                    "10.10.0.1", "10.10.0.2")
        assert sw.drops("vlan-not-allowed", port="trunk") == 3
        assert not ping(netlab, h["a"][0], "10.20.0.2", count=1, check=False)
    replies = [p for p in cap.packets if p.haslayer(ICMP) and p[ICMP].type == 0]
    by_src: dict[str, set[int | None]] = {}
    for p in replies:
        by_src.setdefault(p[Ether].src, set()).add(p[Dot1Q].vlan if p.haslayer(Dot1Q) else None)
    assert by_src == {MACS["a"]: {10}, MACS["b"]: {20}, MACS["c"]: {None}}
    counts = {src: sum(1 for p in replies if p[Ether].src == src) for src in by_src}
    assert counts[MACS["a"]] == 3 and counts[MACS["b"]] == 3


MIRROR_IPS = {"a": "10.4.0.1", "b": "10.4.0.2", "s": "10.4.0.9"}


@pytest.fixture
def mirror_lab(netlab: Lab) -> dict[str, tuple[str, str]]:
    require_tools("ping", "tcpdump")
    MACS["s"] = "02:00:00:00:01:99"
    h = hosts(netlab, {k: v + "/24" for k, v in MIRROR_IPS.items()})
    static_neighbors(netlab, h, MIRROR_IPS)
    return h


@pytest.mark.parametrize(("direction", "types"), [
    ("ingress", {8}), ("egress", {0}), ("both", {0, 8}),
])
def test_mirror_direction(netlab: Lab, tmp_path: Path, mirror_lab: dict[str, tuple[str, str]],
                          direction: str, types: set[int]) -> None:
    h = mirror_lab
    with running_switch(tmp_path, ports_yaml(h)) as sw:
        sw.cli("mirror", "create", "mon", "-s", f"a:{direction}", "-d", "s")
        with tcpdump(h["s"][0], "eth0", tmp_path / "s.pcap", "icmp",
                     expect=5 * len(types)) as cap:
            ping(netlab, h["a"][0], MIRROR_IPS["b"], count=5)
        mirrors = sw.show("mirrors")
    icmp = [p for p in cap.packets if p.haslayer(ICMP)]
    assert {p[ICMP].type for p in icmp} == types
    assert len(icmp) == 5 * len(types)
    assert mirrors[0]["counters"]["mirrored"] == 5 * len(types)


def test_mirror_truncation(netlab: Lab, tmp_path: Path,
                           mirror_lab: dict[str, tuple[str, str]]) -> None:
    h = mirror_lab
    with running_switch(tmp_path, ports_yaml(h)) as sw:
        sw.cli("mirror", "create", "mon", "-s", "a:both", "-d", "s", "--truncate", "100")
        with tcpdump(h["s"][0], "eth0", tmp_path / "s.pcap", expect=8) as cap:
            ping(netlab, h["a"][0], MIRROR_IPS["b"], count=4, size=500)
        m = sw.show("mirrors")[0]["counters"]
    assert len(cap.packets) == 8
    assert {len(p) for p in cap.packets} == {100}
    assert m["truncated"] == 8


def test_mirror_sampling(netlab: Lab, tmp_path: Path,
                         mirror_lab: dict[str, tuple[str, str]]) -> None:
    h = mirror_lab
    with running_switch(tmp_path, ports_yaml(h)) as sw:
        sw.cli("mirror", "create", "mon", "-s", "a:both", "-d", "s", "--sample", "4")
        with tcpdump(h["s"][0], "eth0", tmp_path / "s.pcap", "icmp", expect=10) as cap:
            ping(netlab, h["a"][0], MIRROR_IPS["b"], count=20, interval="0.02")
        m = sw.show("mirrors")[0]["counters"]
    # 40 frames crossed the source port; 1 in 4 copied
    assert m["offered"] == 40 and m["mirrored"] == 10 and m["sampled_out"] == 30
    assert len(cap.packets) == 10


def test_mirror_destination_cannot_send(netlab: Lab, tmp_path: Path,
                                        mirror_lab: dict[str, tuple[str, str]]) -> None:
    h = mirror_lab
    with running_switch(tmp_path, ports_yaml(h)) as sw:
        sw.cli("mirror", "create", "mon", "-s", "a:both", "-d", "s")
        assert not ping(netlab, h["s"][0], MIRROR_IPS["b"], count=3, check=False)
        assert sw.drops("mirror-dest-port", port="s") >= 3
        sw.cli("mirror", "delete", "mon")
        ping(netlab, h["s"][0], MIRROR_IPS["b"], count=2)  # a normal port again


def test_tap_port_vm_pings_veth_namespace(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    h = hosts(netlab, {"a": "10.5.0.1/24"})
    vm = netlab.netns("vm")
    tap = netlab.name("tap")
    cfg = ports_yaml(h) + f"  vm: {{type: tap, interface: {tap}}}\n"
    with running_switch(tmp_path, cfg) as sw, \
            QemuStandIn(netlab, tap, vm, "10.5.0.7/24", MACS["g"]):
        # vspan made the TAP; the stand-in attaches to its queue as QEMU does
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ping(netlab, vm, "10.5.0.1", count=1,
                                                       check=False):
            time.sleep(0.2)  # the switch notices the link within a second
        ping(netlab, vm, "10.5.0.1", count=3)
        ports = {p["name"]: p for p in sw.show("ports")}
        assert ports["vm"]["counters"]["rx_frames"] >= 3 and ports["vm"]["type"] == "tap"


def test_iperf3_tcp_with_default_offloads(netlab: Lab, tmp_path: Path) -> None:
    require_tools("iperf3")
    h = hosts(netlab, {"a": "10.6.0.1/24", "b": "10.6.0.2/24"})
    # offloads stay at the veth defaults (tx checksum offload on, TSO on): no ethtool here
    with running_switch(tmp_path, ports_yaml(h)):
        server = netlab.popen(h["b"][0], "iperf3", "-s", "-1", "-B", "10.6.0.2")
        try:
            netlab.wait_listening(h["b"][0], 5201)
            out = netlab.exec(h["a"][0], "iperf3", "-c", "10.6.0.2", "-t", "3", "-J",
                              timeout=60)
        finally:
            server.kill()
    result = json.loads(out.stdout)
    bps = result["end"]["sum_received"]["bits_per_second"]
    assert result["end"]["sum_received"]["bytes"] > 1_000_000
    assert bps > 0


def test_reload_broken_file_changes_nothing(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    h = hosts(netlab, {"a": "10.7.0.1/24", "b": "10.7.0.2/24"})
    with running_switch(tmp_path, ports_yaml(h)) as sw:
        ping(netlab, h["a"][0], "10.7.0.2", count=2)
        before = sw.show("config")
        broken = tmp_path / "broken.yaml"
        broken.write_text(ports_yaml(h) + "  c: {interface: x, vlan: {mode: trunk, "
                          "allowed: [5000]}}\n", encoding="utf-8")
        proc = sw.cli("reload", str(broken), check=False)
        assert proc.returncode != 0
        assert "ports.c.vlan.allowed: 5000 is not a VLAN id (1-4094)" in proc.stderr
        missing_if = tmp_path / "missing.yaml"
        missing_if.write_text(ports_yaml(h) + "  c: {interface: vt-nosuchif}\n",
                              encoding="utf-8")
        proc = sw.cli("reload", str(missing_if), check=False)
        assert proc.returncode != 0 and "nothing changed" in proc.stderr
        assert sw.show("config") == before
        ping(netlab, h["a"][0], "10.7.0.2", count=2)
        # a good file applies live, without touching the running ports
        good = tmp_path / "good.yaml"
        good.write_text(ports_yaml(h) + "mirrors:\n  m: {sources: [a], destinations: [b], "
                        "allow_normal_io: true}\n", encoding="utf-8")
        proc = sw.cli("reload", str(good))
        assert "mirror added: m" in proc.stdout
        ping(netlab, h["a"][0], "10.7.0.2", count=2)


def test_arp_resolution_through_switch(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping", "tcpdump")
    h = hosts(netlab, {"a": "10.8.0.1/24", "b": "10.8.0.2/24", "c": "10.8.0.3/24"})
    with running_switch(tmp_path, ports_yaml(h)), \
            tcpdump(h["c"][0], "eth0", tmp_path / "c.pcap", "arp") as cap:
        ping(netlab, h["a"][0], "10.8.0.2", count=1)
    # the broadcast request was flooded to c; the unicast reply was not
    ops = sorted(p[ARP].op for p in cap.packets if p.haslayer(ARP))
    assert ops and set(ops) == {1}


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2")
def test_check_config_cli_reports_path(tmp_path: Path) -> None:
    import subprocess
    import sys
    bad = tmp_path / "bad.yaml"
    bad.write_text("ports:\n  web1: {vlan: {mode: trunk, allowed: [5000]}, colour: red}\n")
    proc = subprocess.run([sys.executable, "-m", "vspan.cli.main", "check-config", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "ports.web1.vlan.allowed: 5000 is not a VLAN id (1-4094)" in proc.stderr
    assert "ports.web1.colour: unknown key" in proc.stderr


def test_deleted_tap_device_takes_port_down(netlab: Lab, tmp_path: Path) -> None:
    require_tools("ping")
    h = hosts(netlab, {"a": "10.13.0.1/24", "b": "10.13.0.2/24"})
    tap = netlab.name("tap")
    cfg = ports_yaml(h) + f"  vm: {{type: tap, interface: {tap}}}\n"
    with running_switch(tmp_path, cfg) as sw:
        sh("ip", "link", "del", tap)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ports = {p["name"]: p for p in sw.show("ports")}
            if ports["vm"]["link"] == "down":
                break
            time.sleep(0.2)
        assert ports["vm"]["link"] == "down"
        ping(netlab, h["a"][0], "10.13.0.2", count=2)  # the rest of the switch carries on
