"""Port guards: MAC spoofing, DHCP guard, router guard, storm limit."""

from __future__ import annotations

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dhcp6 import DHCP6_Advertise, DHCP6_Solicit
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from tests.helpers.policy_frames import VM_MAC, arp, key_of, na6, ra, redirect6, udp
from vspan.datapath.reasons import DropReason
from vspan.datapath.trace import Tracer
from vspan.policy.common import parse_mac
from vspan.policy.guards import PortGuards, StormClass, StormLimiter, TokenBucket, storm_class

ALL_ON = PortGuards.build(mac_spoofing=False, macs=[parse_mac(VM_MAC)], dhcp_guard=True,
                          router_guard=True)


def dhcp_offer() -> bytes:
    return bytes(Ether(src=VM_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src="10.0.0.5",
                 dst="255.255.255.255") / UDP(sport=67, dport=68) / BOOTP(op=2)
                 / DHCP(options=[("message-type", "offer"), "end"]))


def dhcp_discover() -> bytes:
    return bytes(Ether(src=VM_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0",
                 dst="255.255.255.255") / UDP(sport=68, dport=67) / BOOTP(op=1)
                 / DHCP(options=[("message-type", "discover"), "end"]))


def dhcp6(server: bool) -> bytes:
    if server:
        return bytes(Ether(src=VM_MAC) / IPv6(src="fe80::5", dst="fe80::9")
                     / UDP(sport=547, dport=546) / DHCP6_Advertise())
    return bytes(Ether(src=VM_MAC) / IPv6(src="fe80::5", dst="ff02::1:2")
                 / UDP(sport=546, dport=547) / DHCP6_Solicit())


def icmp_redirect() -> bytes:
    return bytes(Ether(src=VM_MAC) / IP(src="10.0.0.5", dst="10.0.0.9") / ICMP(type=5, code=1)
                 / IP(src="10.0.0.9", dst="8.8.8.8") / UDP())


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (udp("10.0.0.5", "10.0.0.9", 1, 2), None),
        (udp("10.0.0.5", "10.0.0.9", 1, 2, src_mac="02:00:00:00:00:66"), DropReason.MAC_SPOOF),
        (arp(src_mac="02:00:00:00:00:66"), DropReason.MAC_SPOOF),
        (arp(), None),
        (dhcp_offer(), DropReason.DHCP_GUARD),
        (dhcp_discover(), None),
        (dhcp6(server=True), DropReason.DHCP_GUARD),
        (dhcp6(server=False), None),
        (ra(), DropReason.ROUTER_GUARD),
        (redirect6(), DropReason.ROUTER_GUARD),
        (icmp_redirect(), DropReason.ROUTER_GUARD),
        (na6(), None),
    ],
    ids=["plain", "spoofed-ip", "spoofed-arp", "arp", "dhcp-offer", "dhcp-discover",
         "dhcpv6-advertise", "dhcpv6-solicit", "ra", "redirect6", "redirect4", "na"],
)
def test_guards(frame: bytes, reason: DropReason | None) -> None:
    v = ALL_ON.check(key_of(frame))
    assert v.reason == reason and v.ok == (reason is None)
    # with every guard off, everything passes
    assert PortGuards.build().check(key_of(frame)).ok


def test_each_guard_is_independent() -> None:
    only_dhcp = PortGuards.build(dhcp_guard=True)
    assert only_dhcp.check(key_of(ra())).ok
    assert not only_dhcp.check(key_of(dhcp_offer())).ok
    only_router = PortGuards.build(router_guard=True)
    assert only_router.check(key_of(dhcp_offer())).ok
    assert not only_router.check(key_of(ra())).ok


def test_mac_spoofing_detail_and_trace() -> None:
    tr = Tracer()
    v = ALL_ON.check(key_of(arp(src_mac="02:00:00:00:00:66")), tr)
    assert "02:00:00:00:00:66" in v.detail and VM_MAC in v.detail
    assert "mac-spoof" in tr.render()


def test_storm_class() -> None:
    assert storm_class(key_of(arp()), True) is StormClass.BROADCAST
    assert storm_class(key_of(ra()), True) is StormClass.MULTICAST
    k = key_of(udp("10.0.0.5", "10.0.0.9", 1, 2))
    assert storm_class(k, known_unicast=True) is None
    assert storm_class(k, known_unicast=False) is StormClass.UNKNOWN_UNICAST


def test_token_bucket_with_injected_clock() -> None:
    b = TokenBucket(rate=10, burst=5)
    assert [b.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert b.take(0.05) is False  # half a token
    assert b.take(0.1) is True  # one token after 0.1 s at 10/s
    assert b.take(100.0) and b.tokens == 4.0  # refill capped at the burst
    assert b.passed == 7 and b.dropped == 2
    b2 = TokenBucket(rate=10, burst=5)
    b2.take(5.0)
    assert b2.take(4.0)  # a clock going backwards never adds tokens


def test_storm_limiter_per_class() -> None:
    s = StormLimiter({StormClass.BROADCAST: 2})
    assert s.allow(StormClass.BROADCAST, 0.0) and s.allow(StormClass.BROADCAST, 0.0)
    assert not s.allow(StormClass.BROADCAST, 0.0)
    assert all(s.allow(StormClass.MULTICAST, 0.0) for _ in range(100))  # not limited
    assert s.allow(None, 0.0)
    assert s.counters() == {"broadcast": {"passed": 2, "dropped": 1}}
    with pytest.raises(ValueError):
        TokenBucket(0)
