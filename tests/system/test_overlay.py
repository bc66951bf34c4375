"""The VXLAN overlay port with real namespaces: a Linux kernel VTEP as the peer, and two vspan
hosts with two VLANs on two VNIs (isolation, hostile underlay input).

Every switch runs inside a host namespace with no default route; the underlay is a veth
pair between host namespaces. No kernel bridge device is used anywhere.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from tests.helpers.netns import Lab, lab, require_tools, requires_root
from tests.system.capture import tcpdump
from tests.system.test_switch import ping
from tests.system.test_two_hosts import NsSwitch, wire

pytestmark = [pytest.mark.system, requires_root]

U1, U2, EVIL = "192.0.2.1", "192.0.2.2", "192.0.2.66"


def iperf(the_lab: Lab, server_ns: str, server_ip: str, client_ns: str,
          nbytes: str = "20M") -> dict[str, Any]:
    """A TCP transfer of ``nbytes`` from ``client_ns`` to ``server_ns``; iperf3's JSON result."""
    server = the_lab.popen(server_ns, "iperf3", "-s", "-1", "-B", server_ip,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        the_lab.wait_listening(server_ns, 5201)
        out = the_lab.exec(client_ns, "iperf3", "-c", server_ip, "-n", nbytes, "-J",
                           "--connect-timeout", "3000", timeout=120)
    finally:
        server.kill()
        server.wait()
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def assert_transferred(result: dict[str, Any], nbytes: int = 20 * 1024 * 1024) -> None:
    """iperf3 wrote every byte into a connection that never broke (TCP delivered them; the
    receiver's count stops at the end-of-test message, so it may lag a little)."""
    assert "error" not in result, result["error"]
    assert result["end"]["sum_sent"]["bytes"] >= nbytes
    assert result["end"]["sum_received"]["bytes"] >= nbytes // 2


def kernel_vxlan_available(the_lab: Lab, ns: str) -> None:
    """Skip unless this kernel can make a vxlan device."""
    probe = the_lab.exec(ns, "ip", "link", "add", "vxprobe", "type", "vxlan", "id", "1",
                         "dstport", "4789", check=False)
    if probe.returncode != 0:
        pytest.skip(f"kernel has no vxlan devices: {probe.stderr.strip()}")
    the_lab.exec(ns, "ip", "link", "del", "vxprobe")


# ---------------------------------------------------------------------------------------
# vspan <-> Linux kernel VTEP


@dataclass
class KernelPeer:
    lab: Lab
    h1: str  # runs vspan
    vm: str  # a VM behind vspan (10.66.0.1)
    k: str  # the kernel VTEP's host, its vx0 has 10.66.0.2


@pytest.fixture
def kernel_peer() -> Iterator[KernelPeer]:
    require_tools("bridge", "iperf3", "tcpdump", "ping")
    with lab(prefix=f"vx{secrets.token_hex(2)}") as the_lab:
        h1, vm, k = the_lab.netns("h1"), the_lab.netns("vm"), the_lab.netns("k")
        kernel_vxlan_available(the_lab, k)
        n = the_lab.name
        wire(the_lab, "w1", (h1, n("vm")), (vm, "eth0"), "02:00:08:00:00:01",
             addr_b="10.66.0.1/24")
        the_lab.exec(vm, "ip", "link", "set", "eth0", "mtu", "1450")
        wire(the_lab, "ul", (h1, n("u0")), (k, "u0"), addr_a=f"{U1}/24", addr_b=f"{U2}/24")
        # the kernel VTEP: IANA port (its default is 8472), static head-end entry, no bridge
        the_lab.exec(k, "ip", "link", "add", "vx0", "type", "vxlan", "id", "5000", "dstport",
                     "4789", "local", U2, "nolearning")
        the_lab.exec(k, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", U1)
        the_lab.exec(k, "ip", "link", "set", "vx0", "mtu", "1450", "address",
                     "02:00:08:00:00:02")
        the_lab.exec(k, "ip", "addr", "add", "10.66.0.2/24", "dev", "vx0")
        the_lab.exec(k, "sysctl", "-qw", "net.ipv6.conf.vx0.disable_ipv6=1", check=False)
        the_lab.exec(k, "ip", "link", "set", "vx0", "up")
        yield KernelPeer(the_lab, h1, vm, k)


def kernel_yaml(p: KernelPeer) -> str:
    return f"""\
ports:
  vm: {{interface: {p.lab.name("vm")}}}
  overlay:
    type: vxlan
    vxlan: {{local_ip: {U1}, vnis: {{0: 5000}}, flood: {{0: [{U2}]}}}}
"""


def test_kernel_vtep_is_a_member_of_the_segment(kernel_peer: KernelPeer, tmp_path: Path
                                                 ) -> None:
    p = kernel_peer
    sw = NsSwitch(p.h1, tmp_path / "h1", kernel_yaml(p))
    try:
        sw.start()
        with tcpdump(p.k, "u0", tmp_path / "underlay.pcap", "udp port 4789") as cap:
            ping(p.lab, p.vm, "10.66.0.2", count=3)
        ping(p.lab, p.k, "10.66.0.1", count=3)
        # TCP both ways, default offloads everywhere: GSO super-frames from the VM are cut
        # in software; the kernel's partial checksums and super-packets are passed on
        to_kernel = iperf(p.lab, p.k, "10.66.0.2", p.vm)
        from_kernel = iperf(p.lab, p.vm, "10.66.0.1", p.k)
        fdb = sw.show("fdb")
        vteps = sw.show("vteps")
        ports = {r["name"]: r for r in sw.show("ports")}
        drops = sw.show("counters")["drops"]
        metrics = sw.cli("show", "metrics").stdout
    finally:
        sw.stop()
    assert f'vspan_vtep_total{{counter="rx_frames",port="overlay",vtep="{U2}"}}' in metrics
    for result in (to_kernel, from_kernel):
        assert_transferred(result)
    kernel_mac = [r for r in fdb if r["mac"] == "02:00:08:00:00:02"]
    assert kernel_mac == [dict(kernel_mac[0], port="overlay", vtep=U2)], fdb
    (row,) = vteps["vteps"]
    assert row["vtep"] == U2 and row["tx_frames"] > 10_000 and row["rx_frames"] > 1000
    assert row["rx_drops"] == {} and vteps["ports"][0]["rx_drops"] == {}
    assert ports["overlay"]["mtu"] == 1450 and ports["overlay"]["interface"] == f"{U1}:4789"
    assert not [d for d in drops if d["port"] == "overlay"], drops
    # the wire, decoded by scapy: RFC 7348 header bits, IANA port, per-flow source port
    sent = [pk for pk in cap.packets if pk.haslayer(VXLAN) and pk[IP].src == U1]
    assert len(sent) >= 3, [pk.summary() for pk in cap.packets]
    for pk in sent:
        raw_vx = bytes(pk[UDP].payload)[:8]
        assert raw_vx[0] == 0x08 and raw_vx[1:4] == b"\0\0\0" and raw_vx[7] == 0
        assert pk[VXLAN].vni == 5000 and pk[UDP].dport == 4789
        assert 49152 <= pk[UDP].sport <= 65535 and pk[IP].flags.DF and pk[IP].ttl == 64
        assert pk[UDP].chksum == 0
    pings = [pk for pk in sent if Ether(bytes(pk[VXLAN].payload)).type == 0x0800]
    assert len(pings) == 3
    assert len({pk[UDP].sport for pk in pings}) == 1  # one flow, one source port


def test_frames_too_big_for_the_underlay_are_dropped_and_counted(kernel_peer: KernelPeer,
                                                                  tmp_path: Path) -> None:
    p = kernel_peer
    p.lab.exec(p.vm, "ip", "link", "set", "eth0", "mtu", "1500")  # a VM nobody configured
    sw = NsSwitch(p.h1, tmp_path / "h1", kernel_yaml(p))
    try:
        sw.start()
        ping(p.lab, p.vm, "10.66.0.2", count=2, size=1422)  # 1450-byte IP packets fit
        assert not ping(p.lab, p.vm, "10.66.0.2", count=2, size=1423, check=False)
        mtu_drops = sw.drops("mtu", "overlay")
        frame = raw(Ether(src="02:00:08:00:00:01", dst="02:00:08:00:00:02") /
                    IP(src="10.66.0.1", dst="10.66.0.2") / UDP(sport=9, dport=9) /
                    (b"m" * 1472))  # a 1500-byte IP packet
        trace = sw.cli("trace", "-i", "vm", "--frame", frame.hex()).stdout
        small = raw(Ether(src="02:00:08:00:00:01", dst="02:00:08:00:00:02") /
                    IP(src="10.66.0.1", dst="10.66.0.2") / UDP(sport=9, dport=9) / b"s")
        fits = sw.cli("trace", "-i", "vm", "--frame", small.hex()).stdout
    finally:
        sw.stop()
    assert mtu_drops == 2
    # the decision names the port's MTU; replaying it, this frame's 1500-byte packet is dropped
    assert "has MTU 1450" in trace and "mtu at overlay: 1500 > 1450" in trace, trace
    assert "dropped: mtu at overlay" in trace, trace
    # the trace of a frame that fits names the VNI and the VTEP the kernel's MAC lives behind
    assert f"VXLAN VNI 5000 to VTEP {U2} (where 02:00:08:00:00:02 was learned)" in fits, fits


# ---------------------------------------------------------------------------------------
# vspan <-> vspan, two VLANs on two VNIs


@dataclass
class TwoHosts:
    lab: Lab
    h1: str
    h2: str
    a: str  # h1, VLAN 10, 10.67.0.1
    b: str  # h1, VLAN 20, 10.67.0.11
    c: str  # h2, VLAN 10, 10.67.0.2
    d: str  # h2, VLAN 20, 10.67.0.12


MACS = {"a": "02:00:09:00:00:0a", "b": "02:00:09:00:00:0b", "c": "02:00:09:00:00:0c",
        "d": "02:00:09:00:00:0d"}
IPS = {"a": "10.67.0.1", "b": "10.67.0.11", "c": "10.67.0.2", "d": "10.67.0.12"}


@pytest.fixture
def two_hosts() -> Iterator[TwoHosts]:
    require_tools("iperf3", "tcpdump", "ping")
    with lab(prefix=f"vy{secrets.token_hex(2)}") as the_lab:
        h1, h2 = the_lab.netns("h1"), the_lab.netns("h2")
        vms = {v: the_lab.netns(v) for v in "abcd"}
        n = the_lab.name
        for v, host in (("a", h1), ("b", h1), ("c", h2), ("d", h2)):
            # one subnet for all four: only the VLANs keep them apart
            wire(the_lab, f"w{v}", (host, n(v)), (vms[v], "eth0"), MACS[v],
                 addr_b=f"{IPS[v]}/24")
            the_lab.exec(vms[v], "ip", "link", "set", "eth0", "mtu", "1450")
        wire(the_lab, "ul", (h1, n("u0")), (h2, n("u0")), addr_a=f"{U1}/24",
             addr_b=f"{U2}/24")
        the_lab.exec(h2, "ip", "addr", "add", f"{EVIL}/24", "dev", n("u0"))
        yield TwoHosts(the_lab, h1, h2, vms["a"], vms["b"], vms["c"], vms["d"])


def host_yaml(t: TwoHosts, local: str, remote: str, vms: tuple[str, str]) -> str:
    n = t.lab.name
    return f"""\
ports:
  {vms[0]}: {{interface: {n(vms[0])}, vlan: {{mode: access, id: 10}}}}
  {vms[1]}: {{interface: {n(vms[1])}, vlan: {{mode: access, id: 20}}}}
  overlay:
    type: vxlan
    vxlan:
      local_ip: {local}
      vnis: {{10: 5010, 20: 5020}}
      flood: {{10: [{remote}], 20: [{remote}]}}
"""


@contextmanager
def switches(t: TwoHosts, tmp_path: Path) -> Iterator[tuple[NsSwitch, NsSwitch]]:
    """vspan on h1 (VMs a, b) and h2 (VMs c, d), stopped afterwards."""
    sw1 = NsSwitch(t.h1, tmp_path / "h1", host_yaml(t, U1, U2, ("a", "b")))
    sw2 = NsSwitch(t.h2, tmp_path / "h2", host_yaml(t, U2, U1, ("c", "d")))
    try:
        sw1.start()
        sw2.start()
        yield sw1, sw2
    finally:
        sw1.stop()
        sw2.stop()


HOSTILE = """
import socket, sys
from scapy.compat import raw
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
good, evil, target, attacker = sys.argv[1:5]
arp = Ether(src=attacker, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=attacker, psrc="10.67.0.99",
                                                         pdst="10.67.0.11")
hop = Ether(src=attacker, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=20) / ARP(
    hwsrc=attacker, psrc="10.67.0.99", pdst="10.67.0.11")
cases = [
    (good, raw(VXLAN(vni=7777, flags="Instance") / arp)),        # unknown VNI
    (good, bytes.fromhex("0000000000139200") + raw(arp)),         # I flag clear
    (good, raw(VXLAN(vni=5010, flags="Instance"))[:7]),          # truncated header
    (good, raw(VXLAN(vni=5010, flags="Instance")) + raw(arp)[:9]),  # truncated inner
    (good, raw(VXLAN(vni=5010, flags="Instance") / hop)),         # inner tag: VLAN hop try
    (evil, raw(VXLAN(vni=5020, flags="Instance") / arp)),         # not a known VTEP
]
for src, payload in cases:
    for _ in range(3):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.sendto(payload, (target, 4789))
        s.close()
"""


def test_two_vspan_hosts_two_vnis_isolated_and_hardened(two_hosts: TwoHosts, tmp_path: Path
                                                         ) -> None:
    t = two_hosts
    with switches(t, tmp_path) as (sw1, sw2):
        with tcpdump(t.h2, t.lab.name("u0"), tmp_path / "u.pcap", "udp port 4789") as ucap, \
                tcpdump(t.d, "eth0", tmp_path / "d.pcap") as dcap:
            ping(t.lab, t.a, IPS["c"])  # VLAN 10 <-> VNI 5010 <-> VLAN 10
            ping(t.lab, t.b, IPS["d"])  # VLAN 20 <-> VNI 5020 <-> VLAN 20
            # same subnet, other VLAN: a's ARP for d floods VLAN 10 only
            assert not ping(t.lab, t.a, IPS["d"], count=2, check=False)
        tcp = iperf(t.lab, t.c, IPS["c"], t.a)  # GSO from a's veth, cut before encapsulation
        # hostile underlay input toward h1, from h2's address (a known VTEP) and another one
        with tcpdump(t.b, "eth0", tmp_path / "b.pcap") as bcap:
            t.lab.exec(t.h2, sys.executable, "-c", HOSTILE, U2, EVIL, U1, "02:00:09:00:00:ee",
                       timeout=60)
            time.sleep(0.5)
        vteps1 = sw1.show("vteps")
        fdb1 = sw1.show("fdb")
        fdb2 = sw2.show("fdb")
    assert_transferred(tcp)
    # VLAN isolation: d (VLAN 20) never saw a's frames (VLAN 10)
    assert not [pk for pk in dcap.packets if pk.haslayer(Ether) and pk[Ether].src == MACS["a"]]
    vnis = {(pk[IP].src, pk[VXLAN].vni) for pk in ucap.packets if pk.haslayer(VXLAN)}
    assert {(U1, 5010), (U1, 5020), (U2, 5010), (U2, 5020)} <= vnis, vnis
    # hostile packets: dropped with their reasons; the VLAN-hop attempt reached no one
    stats = vteps1["ports"][0]
    assert stats["rx_drops"] == {"unknown-vni": 3, "bad-flags": 3, "truncated": 6,
                                 "inner-vlan-tag": 3, "unknown-vtep": 3}, stats
    assert stats["last_unknown_vtep"] == EVIL
    assert not [pk for pk in bcap.packets if pk.haslayer(Ether)
                and pk[Ether].src == "02:00:09:00:00:ee"]
    assert not [r for r in fdb1 if r["mac"] == "02:00:09:00:00:ee"]
    remote = {r["mac"]: r for r in fdb1 if r["port"] == "overlay"}
    assert remote[MACS["c"]]["vtep"] == U2 and remote[MACS["c"]]["vlan"] == 10
    remote2 = {r["mac"]: r for r in fdb2 if r["port"] == "overlay"}
    assert remote2[MACS["a"]]["vtep"] == U1 and remote2[MACS["b"]]["vlan"] == 20


def test_overlay_reconfigured_live_keeps_forwarding(two_hosts: TwoHosts, tmp_path: Path
                                                    ) -> None:
    t = two_hosts
    with switches(t, tmp_path) as (sw1, _sw2):
        ping(t.lab, t.a, IPS["c"])
        before = {r["name"]: r for r in sw1.show("ports")}["overlay"]
        # VLAN 20 leaves h1's flood list, a peer is added: applied to the open port
        sw1.config.write_text(sw1.config.read_text().replace(
            f"20: [{U2}]}}", f"20: []}}\n      peers: [{EVIL}]"))
        out = sw1.cli("reload").stdout
        ping(t.lab, t.a, IPS["c"])  # still forwarding, same port, counters kept
        after = {r["name"]: r for r in sw1.show("ports")}["overlay"]
        vteps = {r["vtep"]: r for r in sw1.show("vteps")["vteps"]}
        # b's broadcast ARP for d now floods nowhere over the overlay: counted, not an error
        t.lab.exec(t.b, "ip", "neigh", "flush", "all")
        assert not ping(t.lab, t.b, IPS["d"], count=1, check=False)
        tx_drops = sw1.show("vteps")["ports"][0]["tx_drops"]
    assert "port changed: overlay" in out and "reopened" not in out, out
    assert after["index"] == before["index"]
    assert after["counters"]["tx_frames"] > before["counters"]["tx_frames"]
    assert vteps[EVIL]["roles"] == ["peer"] and vteps[U2]["flood_vlans"] == [10]
    assert tx_drops.get("no-vtep", 0) >= 1
