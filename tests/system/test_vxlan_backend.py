"""The VXLAN port backend with real sockets on loopback (root: the send socket is raw).

Two or three VTEPs on 127.0.0.x with one random UDP port; frames go in with
``send_batch`` and come out of the peer's ``recv_batch``; hostile packets are
written with a plain UDP socket bound to the address they claim to come from.
scapy dissects what a plain UDP listener receives (the VXLAN bits).
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.layers.vxlan import VXLAN

from tests.helpers.netns import requires_root
from vspan.config.load import load_text
from vspan.config.model import PortConfig
from vspan.ports.base import Frame, PortError
from vspan.ports.vnet import F_NEEDS_CSUM, GSO_TCPV4, VNET_STRUCT
from vspan.ports.vxlan import VxlanPort

pytestmark = [pytest.mark.system, requires_root]

A, B, C, EVIL = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.66"
MAC_A, MAC_B, MAC_X = "02:00:00:00:0a:01", "02:00:00:00:0b:01", "02:00:00:00:0c:01"
BCAST = "ff:ff:ff:ff:ff:ff"


def _port_cfg(local: str, port: int, flood: dict[int, list[str]], extra: str = "") -> PortConfig:
    fl = ", ".join(f"{v}: [{', '.join(ips)}]" for v, ips in flood.items())
    text = (f"ports: {{ov: {{type: vxlan, vxlan: {{local_ip: {local}, udp_port: {port}, "
            f"vnis: {{0: 5000, 10: 5010, 20: 5020}}, flood: {{{fl}}}{extra}}}}}}}")
    return load_text(text).ports["ov"]


class Vteps:
    """Ports A and B (flooding to each other and to a plain listener C)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.a = VxlanPort("ov", _cfg(_port_cfg(A, port, {0: [B], 10: [B, C], 20: [B]})))
        self.b = VxlanPort("ov", _cfg(_port_cfg(B, port, {0: [A], 10: [A], 20: [A]})))
        self.c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.c.bind((C, port))
        self.c.settimeout(2)

    def close(self) -> None:
        self.a.close()
        self.b.close()
        self.c.close()


def _cfg(pc: PortConfig) -> Any:
    assert pc.vxlan is not None
    return pc.vxlan


@pytest.fixture
def vteps() -> Iterator[Vteps]:
    for _ in range(20):
        v = Vteps(random.randint(20000, 60000))
        try:
            v.a.open()
            v.b.open()
        except PortError:
            v.close()
            continue
        try:
            yield v
        finally:
            v.close()
        return
    pytest.skip("no free UDP port on 127.0.0.1-3")


def recv(port: VxlanPort, want: int = 1, timeout: float = 5.0) -> list[Frame]:
    out: list[Frame] = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        got = port.recv_batch(64)
        out.extend(got)
        if not got:
            time.sleep(0.01)
    return out


def eth(src: str, dst: str, vlan: int | None = None, payload: bytes = b"hello") -> bytes:
    e = Ether(src=src, dst=dst)
    return raw(e / Dot1Q(vlan=vlan) / payload if vlan else e / payload)


def test_flood_learn_unicast_and_vlan_tags(vteps: Vteps) -> None:
    a, b = vteps.a, vteps.b
    # broadcast on VLAN 10 from A: replicated to B and to C
    frame = eth(MAC_A, BCAST, 10, b"\x08\x06" + b"arp-ish payload")
    assert a.send_batch([Frame(frame)]) == 1
    got = recv(b)
    assert [f.data for f in got] == [frame]  # the tag of B's VLAN for VNI 5010 pushed back
    data, (src, sport) = vteps.c.recvfrom(2048)
    assert src == A and 49152 <= sport <= 65535
    vx = VXLAN(data)
    assert int(vx.flags) == 0x08 and vx.vni == 5010 and vx.reserved2 == 0
    assert data[1:4] == b"\0\0\0"
    inner = raw(vx.payload)
    assert Dot1Q not in Ether(inner)  # the tag never crosses the wire
    assert inner == frame[:12] + frame[16:]
    assert b.remote_vtep(10, bytes.fromhex(MAC_A.replace(":", ""))) == A
    assert b.explain_tx(10, eth(MAC_B, MAC_A)) == (
        f"VXLAN VNI 5010 to VTEP {A} (where {MAC_A} was learned)")
    assert a.explain_tx(10, eth(MAC_A, MAC_B)) == (
        f"VXLAN VNI 5010, head-end replication to {B}, {C}")
    assert a.explain_tx(30, frame) == "VLAN 30 has no VNI here: not sent"
    # B answers A's MAC unicast: learned, so only A gets it (C, in VLAN 10's list, does not)
    reply = eth(MAC_B, MAC_A, 10, b"\x08\x00reply")
    assert b.send_batch([Frame(reply)]) == 1
    assert [f.data for f in recv(a)] == [reply]
    with pytest.raises(TimeoutError):
        vteps.c.settimeout(0.3)
        vteps.c.recvfrom(2048)
    # VLAN 0, the untagged network, travels untagged both ways
    plain = eth(MAC_A, BCAST, None, b"\x08\x06untagged")
    assert a.send_batch([Frame(plain)]) == 1
    assert [f.data for f in recv(b)] == [plain]
    assert (a.vteps[B].tx_frames, a.vteps[C].tx_frames, a.vteps[B].rx_frames) == (2, 1, 1)
    assert b.vteps[A].rx_frames == 2
    rows = {r["vtep"]: r for r in a.vtep_rows()}
    assert rows[B]["flood_vlans"] == [0, 10, 20] and rows[C]["flood_vlans"] == [10]
    assert rows[B]["macs"] == 1  # MAC_B learned behind B


def test_hostile_underlay_input_is_dropped_and_counted(vteps: Vteps) -> None:
    a = vteps.a
    inner = eth(MAC_X, MAC_A, None, b"\x08\x00attack")
    tagged_inner = eth(MAC_X, MAC_A, 20, b"\x08\x00hop to vlan 20")
    good_hdr = raw(VXLAN(vni=5000, flags="Instance"))
    cases = [
        (B, raw(VXLAN(vni=7777, flags="Instance")) + inner, "unknown-vni"),
        (B, bytes.fromhex("0000000000138800") + inner, "bad-flags"),  # I clear
        (B, good_hdr[:6], "truncated"),
        (B, good_hdr + inner[:10], "truncated"),
        (B, raw(VXLAN(vni=5010, flags="Instance")) + tagged_inner, "inner-vlan-tag"),
        (EVIL, good_hdr + inner, "unknown-vtep"),
    ]
    for src, payload, _ in cases:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((src, 0))
            s.sendto(payload, (A, vteps.port))
    # reserved bits set but I set: accepted (RFC 7348: ignored on receipt)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((B, 0))
        s.sendto(bytes.fromhex("0fabcdef001388ff") + inner, (A, vteps.port))
    got = recv(a, 1)
    assert [f.data for f in got] == [inner]
    time.sleep(0.2)
    assert a.recv_batch(64) == []  # nothing else got through
    assert a.rx_drops == {"unknown-vni": 1, "bad-flags": 1, "truncated": 2,
                          "inner-vlan-tag": 1, "unknown-vtep": 1}
    assert a.vteps[B].rx_drops == {"unknown-vni": 1, "bad-flags": 1, "truncated": 2,
                                   "inner-vlan-tag": 1}
    assert a.last_unknown_vtep == EVIL
    assert a.counters.rx_errors == 6 and a.counters.rx_frames == 1
    assert a.remote_vtep(0, bytes.fromhex(MAC_X.replace(":", ""))) == B  # learned: accepted one


def test_gso_is_segmented_and_mtu_enforced(vteps: Vteps) -> None:
    a, b = vteps.a, vteps.b
    payload = bytes(range(256)) * 40  # 10240 bytes
    big = raw(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=20) /
              IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=5, dport=6, flags="PA") / payload)
    vnet = VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 58, 1410, 38, 16)
    assert a.send_batch([Frame(big, vnet)]) == 1
    segs = recv(b, 8)
    assert len(segs) == 8
    total = b""
    for f in segs:
        pkt = Ether(f.data)
        assert pkt[Dot1Q].vlan == 20 and pkt[IP].len <= 1450
        sent = raw(pkt)
        del pkt[IP].chksum, pkt[TCP].chksum
        assert raw(Ether(raw(pkt))) == sent  # every segment's checksums are right
        total += bytes(pkt[TCP].payload)
    assert total == payload
    # a plain frame whose IP packet is bigger than underlay_mtu - 50: not sent, counted
    too_big = raw(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2") /
                  (b"x" * 1500))
    assert a.send_batch([Frame(too_big)]) == 0
    assert a.tx_drops["mtu"] == 1
    # a frame with a second tag after the VLAN tag, and one on a VLAN without VNI
    double = raw(Ether(src=MAC_A, dst=BCAST) / Dot1Q(vlan=10) / Dot1Q(vlan=20) / b"x")
    unmapped = eth(MAC_A, BCAST, 30, b"\x08\x06x")
    assert a.send_batch([Frame(double), Frame(unmapped), Frame(b"short")]) == 0
    assert (a.tx_drops["inner-vlan-tag"], a.tx_drops["unmapped-vlan"],
            a.tx_drops["malformed"]) == (1, 1, 1)


def test_reconfigure_live(vteps: Vteps) -> None:
    a, b = vteps.a, vteps.b
    fd = b.fileno()
    # B learns MAC_A behind A (A floods VLAN 10 to B and to C's listener)
    a.send_batch([Frame(eth(MAC_A, BCAST, 10, b"\x08\x06x"))])
    recv(b)
    assert vteps.c.recvfrom(2048)[1][0] == A
    mac_a = bytes.fromhex(MAC_A.replace(":", ""))
    assert b.remote_vtep(10, mac_a) == A
    # B's flood list for VLAN 10 now names C only; static entry pins MAC_X to C;
    # A is still accepted as a peer, so what B learned from it stays
    b.reconfigure(_port_cfg(B, vteps.port, {0: [A], 10: [C], 20: [A]},
                            f", peers: [{A}], static: [{{mac: '{MAC_X}', vlan: 20, vtep: {C}}}]"
                            ", ttl: 7"))
    assert b.fileno() == fd and b.link_up()  # the sockets were kept
    assert b.remote_vtep(10, mac_a) == A
    assert b.remote_vtep(20, bytes.fromhex(MAC_X.replace(":", ""))) == C
    b.send_batch([Frame(eth(MAC_B, BCAST, 10, b"\x08\x06y"))])
    data, (src, _) = vteps.c.recvfrom(2048)
    assert src == B and VXLAN(data).vni == 5010
    assert recv(a, 1, timeout=0.3) == []  # A is no longer in VLAN 10's flood list
    # A dropped from every list: what was learned behind it is forgotten
    b.reconfigure(_port_cfg(B, vteps.port, {0: [C]}))
    assert b.remote_vtep(10, mac_a) is None
    assert A not in b.vteps
    with pytest.raises(PortError):
        b.reconfigure(_port_cfg(B, vteps.port + 1, {}))
