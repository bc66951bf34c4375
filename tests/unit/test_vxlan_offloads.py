"""Receive-side offload detection, the egress MTU size rule and the overlay MAC table.

scapy computes the reference checksums (an independent implementation).
"""

from __future__ import annotations

import pytest
from scapy.compat import raw
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether

from vspan.datapath.mtu import ip_size, too_big
from vspan.packet.checksum import ones_sum, pseudo_header_v4, pseudo_header_v6
from vspan.ports.base import Frame
from vspan.ports.offload import finalize, receive_offloads
from vspan.ports.vnet import F_NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_TCPV6, VNET_STRUCT
from vspan.ports.vxlan import flow_entropy
from vspan.ports.vxlan_table import RemoteTable

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def _tcp4(payload: int, tagged: bool = False) -> bytes:
    eth = Ether(src=MAC_A, dst=MAC_B) / (Dot1Q(vlan=10) if tagged else Ether().payload)
    pkt = eth / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags="PA",
                                                        seq=1000) / (b"x" * payload)
    return raw(pkt)


def _make_partial(frame: bytes, l3: int) -> bytes:
    """What a kernel sender with checksum offload leaves: the pseudo-header sum."""
    if frame[l3 - 2 : l3] == b"\x08\x00":
        ihl = (frame[l3] & 15) * 4
        proto = frame[l3 + 9]
        l4 = l3 + ihl
        length = int.from_bytes(frame[l3 + 2 : l3 + 4], "big") - ihl
        pseudo = pseudo_header_v4(frame[l3 + 12 : l3 + 16], frame[l3 + 16 : l3 + 20], proto,
                                  length)
    else:
        proto = frame[l3 + 6]
        l4 = l3 + 40
        length = int.from_bytes(frame[l3 + 4 : l3 + 6], "big")
        pseudo = pseudo_header_v6(frame[l3 + 8 : l3 + 24], frame[l3 + 24 : l3 + 40], proto,
                                  length)
    at = l4 + (16 if proto == 6 else 6)
    return frame[:at] + ones_sum(pseudo).to_bytes(2, "big") + frame[at + 2 :]


@pytest.mark.parametrize("tagged", [False, True])
def test_partial_tcp_checksum_is_completed_by_the_next_hop(tagged: bool) -> None:
    good = _tcp4(100, tagged)
    l3 = 18 if tagged else 14
    partial = _make_partial(good, l3)
    assert partial != good
    data, vnet = receive_offloads(partial, l3, 1450)
    assert data == partial
    flags, gso, _hl, _gs, start, off = VNET_STRUCT.unpack(vnet)
    assert (flags, gso, start, off) == (F_NEEDS_CSUM, GSO_NONE, l3 + 20, 16)
    assert finalize(Frame(data, vnet)) == [good]  # scapy's checksum, byte for byte


def test_complete_checksums_and_other_protocols_are_left_alone() -> None:
    good = _tcp4(100)
    assert receive_offloads(good, 14, 1450) == (good, b"")
    udp = raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / b"hi")
    assert receive_offloads(udp, 14, 1450) == (udp, b"")
    no_csum = udp[:40] + b"\0\0" + udp[42:]
    assert receive_offloads(no_csum, 14, 1450) == (no_csum, b"")
    frag = raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / TCP() / b"x")
    assert receive_offloads(_make_partial(frag, 14), 14, 1450)[1] == b""
    arp = bytes.fromhex("ffffffffffff020000000001" "0806") + bytes(28)
    assert receive_offloads(arp, 14, 1450) == (arp, b"")
    assert receive_offloads(good[:30], 14, 1450) == (good[:30], b"")  # truncated


def test_partial_udp_and_ipv6() -> None:
    udp = raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / b"hey")
    data, vnet = receive_offloads(_make_partial(udp, 14), 14, 1450)
    assert vnet and finalize(Frame(data, vnet)) == [udp]
    t6 = raw(Ether() / IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1, dport=2) / (b"z" * 40))
    data, vnet = receive_offloads(_make_partial(t6, 14), 14, 1450)
    assert vnet and finalize(Frame(data, vnet)) == [t6]


@pytest.mark.parametrize("partial", [True, False])
def test_tcp_super_packet_becomes_gso_with_segments_that_fit(partial: bool) -> None:
    big = _tcp4(7000)  # what a kernel VTEP over veth hands the UDP socket in one piece
    frame = _make_partial(big, 14) if partial else big
    data, vnet = receive_offloads(frame, 14, 1450)
    flags, gso, hdr_len, gso_size, start, off = VNET_STRUCT.unpack(vnet)
    assert (flags, gso, hdr_len, gso_size, start, off) == (F_NEEDS_CSUM, GSO_TCPV4, 54, 1410,
                                                          34, 16)
    assert ip_size(data, vnet) == 1450
    segs = finalize(Frame(data, vnet))
    assert len(segs) == 5 and sum(len(s) - 54 for s in segs) == 7000
    for seg in segs:
        pkt = Ether(seg)
        assert pkt[IP].len <= 1450
        sent = raw(pkt)
        del pkt[IP].chksum, pkt[TCP].chksum
        assert raw(Ether(raw(pkt))) == sent  # scapy agrees with every checksum
    six = raw(Ether() / IPv6(src="fd00::1", dst="fd00::2") / TCP() / (b"q" * 3000))
    assert VNET_STRUCT.unpack(receive_offloads(six, 14, 1450)[1])[1] == GSO_TCPV6


def test_ip_size_and_too_big() -> None:
    plain = _tcp4(1460)  # a 1500-byte IP packet
    assert ip_size(plain) == 1500
    assert ip_size(_tcp4(1460, tagged=True)) == 1500  # tags do not count
    assert too_big(plain, b"", 1500) == 0
    assert too_big(plain, b"", 1450) == 1500
    gso = VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, 1460, 34, 16)
    huge = _tcp4(60000)
    assert ip_size(huge, gso) == 1500  # judged by its segments
    assert too_big(huge, gso, 1500) == 0 and too_big(huge, gso, 1450) == 1500
    small_gso = VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, 1410, 34, 16)
    assert too_big(huge, small_gso, 1450) == 0
    assert ip_size(huge, VNET_STRUCT.pack(0, GSO_TCPV4, 0, 0, 0, 0)) == len(huge) - 14


def test_flow_entropy_is_per_flow_and_in_range() -> None:
    a = _tcp4(10)
    b = raw(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2") /
            TCP(sport=1234, dport=80, seq=99999) / b"other payload")
    c = raw(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2") /
            TCP(sport=1235, dport=80))
    assert flow_entropy(a) == flow_entropy(b)  # same 5-tuple, same underlay path
    ports = {flow_entropy(raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") /
                              TCP(sport=p, dport=80))) for p in range(1000, 1100)}
    assert len(ports) > 90 and all(49152 <= p <= 65535 for p in ports)
    assert 49152 <= flow_entropy(c) <= 65535
    assert 49152 <= flow_entropy(b"\x00" * 14) <= 65535


M1, M2 = b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x02"


def test_table_learns_moves_ages_and_pins() -> None:
    t = RemoteTable(aging_seconds=10, max_learned=2)
    t.learn(10, M1, "192.0.2.1", now=0)
    assert t.lookup(10, M1, 5) == "192.0.2.1"
    assert t.lookup(20, M1, 5) is None  # per VLAN
    t.learn(10, M1, "192.0.2.2", now=6)
    assert t.lookup(10, M1, 6) == "192.0.2.2" and t.moves == 1
    assert t.peek(10, M1, 17) is None and len(t) == 1  # peek does not forget
    assert t.lookup(10, M1, 17) is None and len(t) == 0 and t.learned == 0
    t.set_static([(10, M2, "192.0.2.9")])
    t.learn(10, M2, "192.0.2.1", now=20)
    assert t.lookup(10, M2, 1e9) == "192.0.2.9"  # static: never aged, never overwritten
    assert t.rows(20) == [{"vlan": 10, "mac": "02:00:00:00:00:02", "vtep": "192.0.2.9",
                           "static": True, "age": 0}]


def test_table_is_bounded_and_sweeps_before_refusing() -> None:
    t = RemoteTable(aging_seconds=10, max_learned=2)
    for i in range(5):
        t.learn(1, bytes([2, 0, 0, 0, 0, i]), "192.0.2.1", now=0)
    assert t.learned == 2 and t.full == 3
    t.learn(1, b"\x02\0\0\0\0\x09", "192.0.2.1", now=11)  # the old two expired: swept
    assert t.learned == 1 and t.full == 3
    assert t.forget(lambda vlan, vtep: vtep != "192.0.2.1") == 1 and t.learned == 0
    assert t.per_vtep(11) == {}
