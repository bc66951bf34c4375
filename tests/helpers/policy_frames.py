"""Frame builders for policy tests (scapy as an independent generator)."""

from __future__ import annotations

import ipaddress

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    IPv6,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from vspan.datapath.flowkey import FlowKey, extract

VM_MAC = "02:00:00:00:00:01"
PEER_MAC = "02:00:00:00:00:02"


def _ip(src: str, dst: str) -> Packet:
    if ipaddress.ip_address(src).version == 6:
        return IPv6(src=src, dst=dst)
    return IP(src=src, dst=dst)


def ether(src_mac: str = VM_MAC, dst_mac: str = PEER_MAC, vlan: int | None = None) -> Packet:
    """An Ethernet header (optionally 802.1Q-tagged)."""
    e = Ether(src=src_mac, dst=dst_mac)
    return e / Dot1Q(vlan=vlan) if vlan is not None else e


def tcp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    flags: str = "S",
    seq: int = 0,
    ack: int = 0,
    win: int = 65535,
    payload: bytes = b"",
    wscale: int | None = None,
    src_mac: str = VM_MAC,
    dst_mac: str = PEER_MAC,
    vlan: int | None = None,
) -> bytes:
    """A TCP segment in an Ethernet frame."""
    opts = [("WScale", wscale)] if wscale is not None else []
    p = ether(src_mac, dst_mac, vlan) / _ip(src, dst) / TCP(
        sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=win, options=opts
    )
    if payload:
        p = p / Raw(payload)
    return bytes(p)


def udp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    payload: bytes = b"x",
    src_mac: str = VM_MAC,
    dst_mac: str = PEER_MAC,
) -> bytes:
    """A UDP datagram in an Ethernet frame."""
    return bytes(ether(src_mac, dst_mac) / _ip(src, dst) / UDP(sport=sport, dport=dport)
                 / Raw(payload))


def echo(
    src: str,
    dst: str,
    ident: int = 1,
    reply: bool = False,
    seq: int = 1,
    src_mac: str = VM_MAC,
    dst_mac: str = PEER_MAC,
) -> bytes:
    """ICMP / ICMPv6 echo request or reply."""
    if ipaddress.ip_address(src).version == 6:
        icmp6: Packet = (ICMPv6EchoReply if reply else ICMPv6EchoRequest)(id=ident, seq=seq)
        return bytes(ether(src_mac, dst_mac) / IPv6(src=src, dst=dst) / icmp6)
    return bytes(ether(src_mac, dst_mac) / IP(src=src, dst=dst)
                 / ICMP(type=0 if reply else 8, id=ident, seq=seq))


def icmp_error_about(
    router: str, frame: bytes, type_: int = 3, code: int = 1,
    src_mac: str = PEER_MAC, dst_mac: str = VM_MAC,
) -> bytes:
    """An ICMP (v4 or v6) error from ``router`` quoting the IP packet inside ``frame``."""
    inner = Ether(frame).payload
    if isinstance(inner, IPv6):
        err = ether(src_mac, dst_mac) / IPv6(src=router, dst=inner.src) / ICMPv6DestUnreach(
            code=code) / bytes(inner)
        return bytes(err)
    return bytes(ether(src_mac, dst_mac) / IP(src=router, dst=inner.src)
                 / ICMP(type=type_, code=code) / bytes(inner)[:28])


def arp(src_mac: str = VM_MAC, psrc: str = "10.0.0.5", pdst: str = "10.0.0.1") -> bytes:
    """ARP request (broadcast)."""
    return bytes(Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff")
                 / ARP(hwsrc=src_mac, psrc=psrc, pdst=pdst))


def ra(src: str = "fe80::1", src_mac: str = VM_MAC) -> bytes:
    """ICMPv6 router advertisement."""
    return bytes(Ether(src=src_mac, dst="33:33:00:00:00:01") / IPv6(src=src, dst="ff02::1")
                 / ICMPv6ND_RA())


def redirect6(src: str = "fe80::1", src_mac: str = VM_MAC) -> bytes:
    """ICMPv6 redirect."""
    return bytes(Ether(src=src_mac, dst=PEER_MAC) / IPv6(src=src, dst="fe80::2")
                 / ICMPv6ND_Redirect(tgt="fe80::3", dst="2001:db8::1"))


def na6(src: str = "fe80::1", src_mac: str = VM_MAC) -> bytes:
    """ICMPv6 neighbour advertisement."""
    return bytes(Ether(src=src_mac, dst=PEER_MAC) / IPv6(src=src, dst="fe80::2")
                 / ICMPv6ND_NA(tgt=src))


def key_of(frame: bytes, in_port: int = 1) -> FlowKey:
    """The flow key of a frame (asserts it parses)."""
    k = extract(frame, in_port)
    assert k is not None, "frame did not parse"
    return k
