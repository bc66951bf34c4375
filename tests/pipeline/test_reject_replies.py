"""The firewall's reject answers, across VLANs, on memory ports.

A frame rejected on its way *to* a port (direction in) is answered as if that
port's VM had answered: the answer enters the switch from that port, so it must
carry that port's wire tags, not those of the port the rejected frame came from.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP
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
firewall:
  default_action: allow
  exclude: [net, nat]
  sections:
    - name: s
      rules:
        - {id: telnet, services: ["tcp/23"], action: reject, direction: in}
"""


@pytest.fixture
def sw() -> Iterator[Switch]:
    s = make_switch(CONFIG)
    # both VMs are known (their ARP announcements), so frames to them are not flooded
    s.send("vm", bytes(Ether(src=VM_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=VM)))
    s.send("vmt", bytes(Ether(src=VMT_MAC, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=10)
                        / ARP(psrc=VMT)))
    for p in ("vm", "vmt", "net", "nat"):
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
