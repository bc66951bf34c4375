"""Shared vocabulary of the policy modules: directions, address specs, port ranges
(the value types come from :mod:`vspan.config.values`), and FlowKey helpers.

Direction is always seen **from the port** (the VM's vNIC):

* ``"in"``  — a frame the switch delivers to the port (going *into* the VM);
* ``"out"`` — a frame the port's VM sent into the switch.

"Local" is the port's own side of a frame: the destination on ``"in"``, the
source on ``"out"``; "remote" is the other side. The helpers here turn a
:class:`~vspan.datapath.flowkey.FlowKey` into local/remote fields without
allocating more than the tuple they return.
"""

from __future__ import annotations

import ipaddress

from vspan.config.values import ANY as ANY
from vspan.config.values import DIRECTIONS as DIRECTIONS
from vspan.config.values import IN as IN
from vspan.config.values import OUT as OUT
from vspan.config.values import PROTOCOL_NAMES as PROTOCOL_NAMES
from vspan.config.values import Dir as Dir
from vspan.config.values import IpPrefix as IpPrefix
from vspan.config.values import IpSpec as IpSpec
from vspan.config.values import MacSpec as MacSpec
from vspan.config.values import PortRange as PortRange
from vspan.config.values import mac_str as mac_str
from vspan.config.values import parse_direction as parse_direction
from vspan.config.values import parse_ip_spec as parse_ip_spec
from vspan.config.values import parse_mac as parse_mac
from vspan.config.values import parse_mac_spec as parse_mac_spec
from vspan.config.values import parse_port_range as parse_port_range
from vspan.config.values import parse_protocol as parse_protocol
from vspan.config.values import protocol_str as protocol_str
from vspan.config.values import spec_str as spec_str
from vspan.datapath.flowkey import (
    ETH_P_IPV4,
    ETH_P_IPV6,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    FlowKey,
)


def other(direction: Dir) -> Dir:
    """The opposite direction."""
    return OUT if direction == IN else IN


def family_of(key: FlowKey) -> int:
    """4 or 6 for IP frames, 0 otherwise."""
    if key.eth_type == ETH_P_IPV4:
        return 4
    if key.eth_type == ETH_P_IPV6:
        return 6
    return 0


def local_remote_ip(key: FlowKey, direction: Dir) -> tuple[bytes, bytes]:
    """(local, remote) L3 addresses of ``key`` seen from the port."""
    if direction == IN:
        return key.l3_dst, key.l3_src
    return key.l3_src, key.l3_dst


def local_remote_mac(key: FlowKey, direction: Dir) -> tuple[bytes, bytes]:
    """(local, remote) MAC addresses of ``key`` seen from the port."""
    if direction == IN:
        return key.dst, key.src
    return key.src, key.dst


def has_ports(key: FlowKey) -> bool:
    """Whether ``key.sport``/``key.dport`` are transport ports (TCP/UDP/SCTP with a header)."""
    return key.l4_off != 0 and key.proto in (IPPROTO_TCP, IPPROTO_UDP, 132)


def local_remote_port(key: FlowKey, direction: Dir) -> tuple[int, int]:
    """(local, remote) transport ports seen from the port."""
    if direction == IN:
        return key.dport, key.sport
    return key.sport, key.dport


def is_icmp(proto: int) -> bool:
    """ICMP or ICMPv6."""
    return proto in (IPPROTO_ICMP, IPPROTO_ICMPV6)


def ip_str(addr: bytes) -> str:
    """Text of a 4- or 16-byte address (``?`` for anything else)."""
    if len(addr) in (4, 16):
        return str(ipaddress.ip_address(addr))
    return "?" if addr else "-"


