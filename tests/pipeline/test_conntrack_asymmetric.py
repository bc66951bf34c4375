"""The metro-cluster case: a flow's two directions use different uplinks.

Traffic from the client reaches the VM through uplink ``up1`` (router R1 in
DC1) while the VM answers through its local gateway R2 on uplink ``up2``
(DC2). A firewall per uplink (a perimeter firewall) sees only one half of the
flow and, when strict, drops it. vspan keeps the state at the VM's port, so
the flow is one connection there, judged on both directions, wherever the
frames travel - even when the inbound path moves mid-flow.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.policy_frames import VM_MAC, arp, key_of, tcp
from tests.pipeline.policy_harness import PolicySwitch, make_policy_switch
from vspan.policy.common import Dir
from vspan.policy.conntrack import ConnTrack, CtClass
from vspan.policy.tcp import TcpStateName

R1_MAC, R2_MAC = "02:00:00:00:d1:01", "02:00:00:00:d2:01"
VM, CLIENT = "10.0.0.5", "198.51.100.7"

POLICY = """
ports:
  vm: {addresses: [10.0.0.5]}
firewall:
  default_action: drop
  exclude: [up1, up2]
  groups: {app: {ports: [vm]}}
  sections:
    - name: app
      tcp_strict: true
      applied_to: [app]
      rules:
        - {id: https, destinations: [app], services: ["tcp/443"], action: allow, direction: in}
"""


@pytest.fixture
def ps() -> Iterator[PolicySwitch]:
    s = make_policy_switch(["vm", "up1", "up2"], POLICY)
    # the routers make themselves known on their uplinks (ARP passes the firewall)
    s.send("up1", arp(src_mac=R1_MAC, psrc="10.0.0.1", pdst=VM))
    s.send("up2", arp(src_mac=R2_MAC, psrc="10.0.0.2", pdst=VM))
    s.send("vm", arp(src_mac=VM_MAC, psrc=VM, pdst="10.0.0.2"))
    for p in ("vm", "up1", "up2"):
        s.got(p)
    yield s
    s.close()


def client(seq: int, ack: int, flags: str, payload: bytes = b"", via: str = "up1") -> bytes:
    router = R1_MAC if via == "up1" else R2_MAC
    return tcp(CLIENT, VM, 50000, 443, flags, seq, ack, 65535, payload, src_mac=router,
               dst_mac=VM_MAC)


def server(seq: int, ack: int, flags: str, payload: bytes = b"") -> bytes:
    # the VM's default gateway is R2 (local egress in DC2)
    return tcp(VM, CLIENT, 443, 50000, flags, seq, ack, 65535, payload, src_mac=VM_MAC,
               dst_mac=R2_MAC)


CONVERSATION: list[tuple[str, bytes]] = [
    ("in", client(100, 0, "S")),
    ("out", server(900, 101, "SA")),
    ("in", client(101, 901, "A")),
    ("in", client(101, 901, "PA", b"hello")),
    ("out", server(901, 106, "PA", b"world!")),
    ("in", client(106, 907, "FA")),
    ("out", server(907, 107, "FA")),
    ("in", client(107, 908, "A")),
]


def test_asymmetric_paths_are_one_connection_at_the_port(ps: PolicySwitch) -> None:
    for direction, frame in CONVERSATION:
        if direction == "in":
            ps.send("up1", frame)
            assert ps.got("vm") == [frame]
        else:
            ps.send("vm", frame)
            assert ps.got("up2") == [frame]  # leaves through the other data centre
            assert ps.got("up1") == []
    (conn,) = ps.conns("vm")
    assert conn.state == TcpStateName.TIME_WAIT
    assert conn.packets == [5, 3]
    assert ps.drops("firewall-state-invalid") == 0
    assert ps.drops("firewall-deny") == 0


def test_inbound_path_moves_mid_flow(ps: PolicySwitch) -> None:
    for direction, frame in CONVERSATION[:3]:
        ps.send("up1" if direction == "in" else "vm", frame)
    ps.got("vm"), ps.got("up2")
    # the client's traffic now arrives through DC2 (e.g. after a routing change)
    moved = client(101, 901, "PA", b"hello", via="up2")
    ps.send("up2", moved)
    assert ps.got("vm") == [moved]
    (conn,) = ps.conns("vm")
    assert conn.state == TcpStateName.ESTABLISHED
    assert ps.drops("firewall-state-invalid") == 0


def test_state_is_per_port_not_per_in_port(ps: PolicySwitch) -> None:
    # the same flow key on different uplinks maps to one connection: in_port is not part of it
    for direction, frame in CONVERSATION[:2]:
        ps.send("up1" if direction == "in" else "vm", frame)
    ct = ps.policy.firewall.port("vm").conntrack  # type: ignore[union-attr]
    k1 = key_of(client(101, 901, "A"), in_port=2)
    k2 = key_of(client(101, 901, "A"), in_port=3)
    assert k1 != k2
    data = client(101, 901, "A")
    assert ct.lookup(k1, data, "in", ps.clock.now) is ct.lookup(k2, data, "in", ps.clock.now)


def test_a_firewall_per_uplink_breaks_the_same_flow() -> None:
    """What the seed describes for perimeter firewalls: each sees half the flow."""
    dc1, dc2 = ConnTrack(), ConnTrack()  # "in" at an uplink = towards the VM

    def feed(ct: ConnTrack, frame: bytes, d: Dir) -> CtClass:
        k = key_of(frame)
        r = ct.classify(k, frame, d, 0.0)
        if r.cls is CtClass.NEW:
            r = ct.create(k, frame, d, 0.0, "https", strict=True)
        return r.cls

    seen = []
    for direction, frame in CONVERSATION:
        if direction == "in":
            seen.append(feed(dc1, frame, "in"))  # DC1 only sees the client's half
        else:
            seen.append(feed(dc2, frame, "out"))  # DC2 only sees the server's half
    assert seen[0] is CtClass.ESTABLISHED  # the SYN starts a connection at DC1
    assert seen[1] is CtClass.INVALID  # DC2: a SYN-ACK out of nowhere
    assert seen[2] is CtClass.INVALID  # DC1: the handshake never completed
    assert CtClass.INVALID in seen[3:]
