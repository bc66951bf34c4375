"""vspan.packet: headers as data.

Frozen dataclasses per header (:class:`Ethernet` with its :class:`VlanTag`
stack, :class:`ARP`, :class:`IPv4`, :class:`IPv6` with extension headers,
:class:`ICMP`, :class:`ICMPv6`, :class:`TCP`, :class:`UDP`), each with
``parse(buf, offset) -> (header, next_offset)``, ``pack()`` and ``build(payload)``;
:func:`parse_frame` decodes a whole frame from a memoryview without copying the
payload; :func:`build_frame` and the one-line builders make frames with right
lengths and checksums. Every malformed input raises :class:`PacketError`.
"""

from vspan.packet.addr import (
    BROADCAST_MAC,
    ZERO_MAC,
    IPLike,
    MacLike,
    ip_address,
    ip_bytes,
    mac_bytes,
    mac_str,
)
from vspan.packet.arp import ARP, ARP_REPLY, ARP_REQUEST
from vspan.packet.build import (
    arp_reply,
    arp_request,
    build_frame,
    ethernet,
    icmp_echo,
    icmp_unreachable_for,
    ip_header,
    pad_frame,
    tcp_frame,
    tcp_reset_for,
    udp_frame,
    vlan_tags,
)
from vspan.packet.checksum import (
    internet_checksum,
    ones_sum,
    pseudo_header,
    pseudo_header_v4,
    pseudo_header_v6,
)
from vspan.packet.errors import PacketError
from vspan.packet.ethernet import (
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_ARP,
    ETH_P_IPV4,
    ETH_P_IPV6,
    ETH_P_QINQ1,
    ETH_ZLEN,
    VLAN_TPIDS,
    Ethernet,
    VlanTag,
)
from vspan.packet.frame import (
    FRAG_FIRST,
    FRAG_LATER,
    FRAG_NONE,
    L3Header,
    L4Header,
    ParsedFrame,
    checksum_ok,
    parse_frame,
)
from vspan.packet.icmp import ICMP, ICMPv6, echo_rest
from vspan.packet.ipv4 import (
    IP_DF,
    IP_MF,
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPv4,
)
from vspan.packet.ipv6 import IPv6, IPv6Ext, IPv6Fragment
from vspan.packet.tcp import ACK, CWR, ECE, FIN, NS, PSH, RST, SYN, TCP, URG, flags_str, tcp_flags
from vspan.packet.udp import UDP

__all__ = [
    "ACK",
    "ARP",
    "ARP_REPLY",
    "ARP_REQUEST",
    "BROADCAST_MAC",
    "CWR",
    "ECE",
    "ETH_P_8021AD",
    "ETH_P_8021Q",
    "ETH_P_ARP",
    "ETH_P_IPV4",
    "ETH_P_IPV6",
    "ETH_P_QINQ1",
    "ETH_ZLEN",
    "FIN",
    "FRAG_FIRST",
    "FRAG_LATER",
    "FRAG_NONE",
    "ICMP",
    "IPPROTO_GRE",
    "IPPROTO_ICMP",
    "IPPROTO_ICMPV6",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "IP_DF",
    "IP_MF",
    "NS",
    "PSH",
    "RST",
    "SYN",
    "TCP",
    "UDP",
    "URG",
    "VLAN_TPIDS",
    "ZERO_MAC",
    "Ethernet",
    "ICMPv6",
    "IPLike",
    "IPv4",
    "IPv6",
    "IPv6Ext",
    "IPv6Fragment",
    "L3Header",
    "L4Header",
    "MacLike",
    "PacketError",
    "ParsedFrame",
    "VlanTag",
    "arp_reply",
    "arp_request",
    "build_frame",
    "checksum_ok",
    "echo_rest",
    "ethernet",
    "flags_str",
    "icmp_echo",
    "icmp_unreachable_for",
    "internet_checksum",
    "ip_address",
    "ip_bytes",
    "ip_header",
    "mac_bytes",
    "mac_str",
    "ones_sum",
    "pad_frame",
    "parse_frame",
    "pseudo_header",
    "pseudo_header_v4",
    "pseudo_header_v6",
    "tcp_flags",
    "tcp_frame",
    "tcp_reset_for",
    "udp_frame",
    "vlan_tags",
]
