"""The firewall's reject answers, across VLANs, on memory ports.

A frame rejected on its way *to* a port (direction in) is answered as if that
port's VM had answered: the answer enters the switch from that port, so it must
carry that port's wire tags, not those of the port the rejected frame came from.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tests.helpers.policy_frames import tcp
from tests.helpers.vlan_frames import tags_of
from tests.pipeline.harness import Switch, make_switch

VM_MAC, VMT_MAC, CLIENT_MAC = "02:00:00:00:00:05", "02:00:00:00:00:06", "02:00:00:00:00:0c"
VM, VMT, CLIENT = "10.0.0.5", "10.0.0.6", "10.0.0.99"

CONFIG = """
ports:
  vm: {type: memory, vlan: {mode: access, id: 10}, policy: {addresses: [10.0.0.5]}}
  vmt: {type: memory, vlan: {mode: trunk, allowed: [10]}, policy: {addresses: [10.0.0.6]}}
  net: {type: memory, vlan: {mode: trunk, allowed: [10]}}
  nat: {type: memory, vlan: {mode: trunk, native: 10}}
  sniff: {type: memory}
  up: {type: memory, vlan: {mode: trunk, allowed: [999]}}
mirrors:
  mon: {sources: [vm], destinations: [sniff]}
  rmon: {sources: [vm], rspan: {port: up, vlan: 999, keep_original_tag: true}}
firewall:
  default_action: allow
  exclude: [net, nat, sniff, up]
  sections:
    - name: s
      rules:
        - {id: telnet, services: ["tcp/23"], action: reject, direction: in}
        - {id: out-telnet, services: ["tcp/2323"], action: reject, direction: out}
        - {id: out-discard, services: ["udp/9"], action: reject, direction: out}
"""


@pytest.fixture
def sw() -> Iterator[Switch]:
    s = make_switch(CONFIG)
    # both VMs are known (their ARP announcements), so frames to them are not flooded
    s.send("vm", bytes(Ether(src=VM_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=VM)))
    s.send("vmt", bytes(Ether(src=VMT_MAC, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=10)
                        / ARP(psrc=VMT)))
    for p in ("vm", "vmt", "net", "nat", "sniff", "up"):
        s.got(p)
    yield s
    s.engine.close()


def _rst(data: bytes, src: str, dst: str) -> None:
    p = Ether(data)
    assert p[IP].src == src and p[IP].dst == dst
    assert p[TCP].sport == 23 and p[TCP].flags == "RA"


def test_reject_answer_from_an_access_port_to_a_tagged_client(sw: Switch) -> None:
    """The SYN came tagged 10 from a trunk; the access port's VM answers untagged."""
    sw.send("net", tcp(CLIENT, VM, 40000, 23, src_mac=CLIENT_MAC, dst_mac=VM_MAC, vlan=10))
    assert sw.got("vm") == []
    (data,) = sw.got("net")
    assert tags_of(data) == [(0x8100, 10)]
    _rst(data, VM, CLIENT)
    assert sw.drops("firewall-reject") == 1 and sw.engine.state.drops.total() == 1


def test_reject_answer_from_a_tagged_port_to_an_untagged_client(sw: Switch) -> None:
    """The SYN came untagged (native 10); the answer enters from a trunk without native
    VLAN, so it must enter tagged 10 (it used to be dropped as untagged there)."""
    sw.send("nat", tcp(CLIENT, VMT, 40000, 23, src_mac=CLIENT_MAC, dst_mac=VMT_MAC))
    assert sw.got("vmt") == []
    (data,) = sw.got("nat")
    assert tags_of(data) == []
    _rst(data, VMT, CLIENT)
    assert sw.drops("vlan-untagged-not-allowed") == 0
    assert sw.drops("firewall-reject") == 1 and sw.engine.state.drops.total() == 1


def test_reject_answer_keeps_the_priority(sw: Switch) -> None:
    frame = bytes(Ether(src=CLIENT_MAC, dst=VMT_MAC) / Dot1Q(vlan=10, prio=4)
                  / IP(src=CLIENT, dst=VMT) / TCP(sport=40001, dport=23, flags="S"))
    sw.send("net", frame)
    (data,) = sw.got("net")
    assert tags_of(data) == [(0x8100, 10)] and data[14] >> 5 == 4
    _rst(data, VMT, CLIENT)


# ---- mirrors see the switch's own answers (issue 7, item 11) ------------------------------


def _mirrored(sw: Switch) -> tuple[list[Ether], list[bytes]]:
    """What the local session copied to ``sniff``, and the RSPAN copies on ``up``."""
    return [Ether(f) for f in sw.got("sniff")], sw.got("up")


def test_answer_to_what_the_vm_sent_is_mirrored_as_received(sw: Switch) -> None:
    """The VM's SYN is rejected as it leaves (direction out): the RST is delivered to the
    VM, so the session mirroring the VM's port copies it (egress), with its VLAN."""
    sw.send("net", tcp(CLIENT, VM, 1, 2, "A", src_mac=CLIENT_MAC, dst_mac=VM_MAC, vlan=10))
    sw.got("vm"), _mirrored(sw)  # the client is learned (its frame to the VM mirrored too)
    mon = next(m for m in sw.engine.state.mirrors.values() if m.name == "mon")
    before = mon.mirrored
    syn = tcp(VM, CLIENT, 40000, 2323, src_mac=VM_MAC, dst_mac=CLIENT_MAC)
    sw.send("vm", syn)
    assert sw.got("net") == []
    (rst,) = sw.got("vm")
    _rst_to_vm(rst)
    local, rspan = _mirrored(sw)
    assert [bytes(p) for p in local] == [syn, rst]  # ingress copy of the SYN, egress of the RST
    assert len(rspan) == 2
    assert tags_of(rspan[1]) == [(0x8100, 999), (0x8100, 10)]  # the VM's VLAN kept inside
    assert rspan[1][:12] + rspan[1][20:] == rst
    assert mon.mirrored - before == 2


def test_icmp_answer_to_what_the_vm_sent_is_mirrored(sw: Switch) -> None:
    dgram = bytes(Ether(src=VM_MAC, dst=CLIENT_MAC) / IP(src=VM, dst=CLIENT)
                  / UDP(sport=5555, dport=9) / b"x")
    sw.send("vm", dgram)
    (unreach,) = sw.got("vm")
    assert Ether(unreach)[ICMP].type == 3
    local, _ = _mirrored(sw)
    assert [bytes(p) for p in local] == [dgram, unreach]


def test_answer_sent_as_if_the_vm_had_answered_is_mirrored_as_sent(sw: Switch) -> None:
    """The client's SYN is rejected on its way to the VM (direction in): the RST enters
    the switch from the VM's port, so the session copies it (ingress)."""
    sw.send("net", tcp(CLIENT, VM, 40000, 23, src_mac=CLIENT_MAC, dst_mac=VM_MAC, vlan=10))
    assert sw.got("vm") == []
    (rst,) = sw.got("net")
    local, rspan = _mirrored(sw)
    assert len(local) == 1
    _rst(bytes(local[0]), VM, CLIENT)
    assert tags_of(bytes(local[0])) == []  # as the VM would have sent it
    assert bytes(local[0]) == rst[:12] + rst[16:]  # the same answer, tagged 10 on the trunk
    (copy,) = rspan
    assert tags_of(copy) == [(0x8100, 999), (0x8100, 10)]


def _rst_to_vm(data: bytes) -> None:
    p = Ether(data)
    assert p[IP].src == CLIENT and p[IP].dst == VM
    assert p[TCP].dport == 40000 and p[TCP].flags.R
    assert tags_of(data) == []
