"""The team's transmit hashes against a reference written here from bonding.rst.

The reference (``ref_*``) follows Documentation/networking/bonding.rst's formulas
and works on the header FIELDS as scapy decodes them (addresses as strings,
ports as integers), not on byte offsets, so it shares no code or parsing with
``vspan.ports.teamhash``. Where the text leaves a detail open the reference
states the kernel's choice (bond_main.c): an IPv4 address or the port pair
enters the XOR as the u32 the kernel loads from network-order bytes on a
little-endian host, IPv6 addresses are first folded by ``ipv6_addr_hash``.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from vspan.ports.teamhash import layer2, layer2_3, layer3_4


def le_u32(raw: bytes) -> int:
    """What a u32 load of these 4 bytes gives on a little-endian machine."""
    return int.from_bytes(raw, "little")


def ref_ip(addr: str) -> int:
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return le_u32(ip.packed)
    words = [le_u32(ip.packed[i:i + 4]) for i in range(0, 16, 4)]
    return words[0] ^ words[1] ^ words[2] ^ words[3]  # ipv6_addr_hash


def ref_fold(h: int) -> int:
    h ^= h >> 16  # hash = hash XOR (hash RSHIFT 16)
    h ^= h >> 8  # hash = hash XOR (hash RSHIFT 8)
    return h


def inner_ether_type(pkt: Packet) -> int:
    """The packet type ID: the ethertype after any VLAN tag (the kernel sees tags aside)."""
    layer = pkt.getlayer(Dot1Q, 2) or pkt.getlayer(Dot1Q, 1)
    return int(layer.type) if layer is not None else int(pkt[Ether].type)


def ref_layer2(pkt: Packet) -> int:
    """hash = source MAC[5] XOR destination MAC[5] XOR packet type ID."""
    src = int(pkt[Ether].src.split(":")[5], 16)
    dst = int(pkt[Ether].dst.split(":")[5], 16)
    return src ^ dst ^ inner_ether_type(pkt)


def _l3(pkt: Packet) -> Packet | None:
    for cls in (IP, IPv6):
        if cls in pkt:
            layer: Packet = pkt[cls]
            return layer
    return None


def ref_layer2_3(pkt: Packet) -> int:
    """layer2 value XOR source IP XOR destination IP, folded."""
    ip = _l3(pkt)
    if ip is None:
        return ref_layer2(pkt)
    if ICMP in pkt and IPerror in pkt:  # an ICMP error hashes the packet it quotes
        ip = pkt[IPerror]
    return ref_fold(ref_layer2(pkt) ^ ref_ip(ip.src) ^ ref_ip(ip.dst))


def ref_layer3_4(pkt: Packet) -> int:
    """Ports (as in the header) XOR source IP XOR destination IP, folded, then >> 1."""
    ip = _l3(pkt)
    if ip is None:
        return ref_layer2(pkt)
    h = 0
    fragment = IP in pkt and (pkt[IP].frag or pkt[IP].flags.MF)
    if ICMP in pkt and IPerror in pkt:
        ip = pkt[IPerror]
        if TCPerror in pkt:
            h = le_u32(struct.pack("!HH", pkt[TCPerror].sport, pkt[TCPerror].dport))
    elif ICMP in pkt and pkt[ICMP].type in (0, 8, 13, 14):  # echo and timestamp carry an id
        icmp = pkt[ICMP]
        h = icmp.type | (icmp.code << 8) | ((icmp.id or 1) << 16)
    elif not fragment:
        for l4 in (TCP, UDP):
            if l4 in pkt:
                h = le_u32(struct.pack("!HH", pkt[l4].sport, pkt[l4].dport))
    return ref_fold(h ^ ref_ip(ip.src) ^ ref_ip(ip.dst)) >> 1


A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
PACKETS: list[tuple[str, Packet]] = [
    ("tcp", Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000,
                                                                          dport=5201)),
    ("tcp-other-port", Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2")
     / TCP(sport=40001, dport=5201)),
    ("udp", Ether(src=A, dst=B) / IP(src="192.168.7.9", dst="10.20.30.40")
     / UDP(sport=53, dport=33333) / Raw(b"x" * 20)),
    ("icmp-echo", Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2")
     / ICMP(type=8, id=0x1234, seq=1)),
    ("icmp-echo-id0", Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2")
     / ICMP(type=8, id=0, seq=1)),
    ("icmp-unreachable", Ether(src=B, dst=A) / IP(src="10.0.0.9", dst="10.0.0.1")
     / ICMP(type=3, code=3) / IPerror(src="10.0.0.1", dst="10.0.0.2")
     / TCPerror(sport=40000, dport=5201)),
    ("fragment", Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF")
     / UDP(sport=1, dport=2) / Raw(b"y" * 30)),
    ("ipv6-tcp", Ether(src=A, dst=B) / IPv6(src="2001:db8::1", dst="2001:db8::2")
     / TCP(sport=12345, dport=80)),
    ("vlan-tcp", Ether(src=A, dst=B) / Dot1Q(vlan=10) / IP(src="10.0.0.1", dst="10.0.0.3")
     / TCP(sport=40000, dport=22)),
    ("qinq-udp", Ether(src=A, dst=B) / Dot1Q(vlan=100) / Dot1Q(vlan=10)
     / IP(src="10.0.0.1", dst="10.0.0.3") / UDP(sport=5, dport=6)),
    ("arp", Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.0.1", pdst="10.0.0.2")),
]


@pytest.mark.parametrize(("name", "pkt"), PACKETS, ids=[n for n, _ in PACKETS])
def test_hashes_match_the_documented_formulas(name: str, pkt: Packet) -> None:
    data = bytes(pkt)
    assert layer2(data) == ref_layer2(pkt)
    assert layer2_3(data) == ref_layer2_3(pkt)
    assert layer3_4(data) == ref_layer3_4(pkt)


def test_known_values_worked_by_hand() -> None:
    """One TCP packet worked through the formulas by hand (pins the byte order)."""
    pkt = bytes(PACKETS[0][1])
    # layer2: 0x0a ^ 0x0b ^ 0x0800 = 0x0801
    assert layer2(pkt) == 0x0801
    # 10.0.0.1 as loaded on x86 = 0x0100000a, 10.0.0.2 = 0x0200000a; XOR = 0x03000000
    # layer2+3: 0x0801 ^ 0x03000000 = 0x03000801; ^ (h >> 16 = 0x0300) -> 0x03000b01;
    # ^ (h >> 8 = 0x0003000b) -> 0x03030b0a
    assert layer2_3(pkt) == 0x03030B0A
    # layer3+4: ports 40000 (9c 40), 5201 (14 51) load as 0x5114409c; ^ 0x03000000 ->
    # 0x5214409c; ^ (h >> 16) -> 0x52141288; ^ (h >> 8) -> 0x5246069a; >> 1 -> 0x2923034d
    assert layer3_4(pkt) == 0x2923034D


def test_layer3_4_spreads_connections_layer2_does_not() -> None:
    flows = [bytes(Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2")
                   / TCP(sport=40000 + i, dport=5201)) for i in range(64)]
    assert {layer2(f) % 2 for f in flows} == {layer2(flows[0]) % 2}
    per_member = [sum(1 for f in flows if layer3_4(f) % 2 == m) for m in (0, 1)]
    assert min(per_member) >= 16, per_member


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_hostile_bytes_never_raise(data: bytes) -> None:
    for fn in (layer2, layer2_3, layer3_4):
        assert 0 <= fn(data) < 1 << 32


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 65535),
       st.integers(0, 65535), st.booleans())
def test_random_flows_match_reference(src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address,
                                      sport: int, dport: int, udp: bool) -> None:
    l4 = UDP(sport=sport, dport=dport) if udp else TCP(sport=sport, dport=dport)
    pkt = Ether(src=A, dst=B) / IP(src=str(src), dst=str(dst)) / l4
    data = bytes(pkt)
    assert layer2_3(data) == ref_layer2_3(pkt)
    assert layer3_4(data) == ref_layer3_4(pkt)
