"""Whole-frame decoding: Ethernet -> VLAN tags -> ARP/IPv4/IPv6 -> ICMP/ICMPv6/TCP/UDP."""

from __future__ import annotations

from dataclasses import dataclass

from vspan.packet._buf import Buffer, view
from vspan.packet.arp import ARP
from vspan.packet.checksum import internet_checksum, pseudo_header_v4, pseudo_header_v6
from vspan.packet.errors import PacketError
from vspan.packet.ethernet import ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, Ethernet
from vspan.packet.icmp import ICMP, ICMPv6
from vspan.packet.ipv4 import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, IPv4
from vspan.packet.ipv6 import IPv6
from vspan.packet.tcp import TCP
from vspan.packet.udp import UDP

#: Values of :attr:`ParsedFrame.frag` (the same as ``vspan.datapath.flowkey``'s).
FRAG_NONE = 0
FRAG_FIRST = 1
FRAG_LATER = 2

L3Header = ARP | IPv4 | IPv6
L4Header = TCP | UDP | ICMP | ICMPv6


@dataclass(frozen=True, slots=True, eq=False)
class ParsedFrame:
    """A decoded frame. Views share memory with the parsed buffer (nothing is copied).

    * ``l3``/``l4`` are ``None`` when the ethertype/protocol is not understood
      (or for IP fragments after the first, which carry no transport header).
    * ``payload`` is what follows the last decoded header, up to the end given
      by the length fields (IP total/payload length, UDP length).
    * ``trailer`` is whatever comes after that end (Ethernet padding).
    * Offsets are relative to the start of ``data``. ``l4_offset`` is where the
      upper layer of an IP packet starts (after extension headers), decoded or
      not; it is 0 without IP and for fragments after the first.
    """

    data: memoryview
    eth: Ethernet
    l3: L3Header | None
    l4: L4Header | None
    payload: memoryview
    trailer: memoryview
    l3_offset: int
    l4_offset: int
    payload_offset: int
    frag: int = FRAG_NONE

    # -- typed accessors -----------------------------------------------------------------

    @property
    def arp(self) -> ARP | None:
        """The ARP message, if this is ARP."""
        return self.l3 if isinstance(self.l3, ARP) else None

    @property
    def ip(self) -> IPv4 | IPv6 | None:
        """The IP header (either version), if any."""
        return self.l3 if isinstance(self.l3, IPv4 | IPv6) else None

    @property
    def ipv4(self) -> IPv4 | None:
        """The IPv4 header, if any."""
        return self.l3 if isinstance(self.l3, IPv4) else None

    @property
    def ipv6(self) -> IPv6 | None:
        """The IPv6 header, if any."""
        return self.l3 if isinstance(self.l3, IPv6) else None

    @property
    def tcp(self) -> TCP | None:
        """The TCP header, if any."""
        return self.l4 if isinstance(self.l4, TCP) else None

    @property
    def udp(self) -> UDP | None:
        """The UDP header, if any."""
        return self.l4 if isinstance(self.l4, UDP) else None

    @property
    def icmp(self) -> ICMP | None:
        """The ICMP (v4) header, if any."""
        return self.l4 if isinstance(self.l4, ICMP) else None

    @property
    def icmpv6(self) -> ICMPv6 | None:
        """The ICMPv6 header, if any."""
        return self.l4 if isinstance(self.l4, ICMPv6) else None

    @property
    def is_fragment(self) -> bool:
        """True for IPv4/IPv6 fragments (first or later)."""
        return self.frag != FRAG_NONE

    @property
    def proto(self) -> int | None:
        """IP protocol after extension headers (``None`` without IP)."""
        if isinstance(self.l3, IPv4):
            return self.l3.proto
        if isinstance(self.l3, IPv6):
            return self.l3.upper_protocol
        return None

    @property
    def vlan(self) -> int | None:
        """Outer VLAN id, or ``None`` when untagged."""
        return self.eth.vlan

    # -- checksums -----------------------------------------------------------------------

    @property
    def ip_checksum_ok(self) -> bool:
        """IPv4 header checksum is right (True when there is no IPv4 header)."""
        if isinstance(self.l3, IPv4):
            start = self.l3_offset
            return internet_checksum(self.data[start : start + self.l3.header_len]) == 0
        return True

    @property
    def l4_checksum_ok(self) -> bool | None:
        """Transport checksum is right; ``None`` when it cannot be checked.

        (No transport header, or a fragment: the checksum covers the whole datagram.)
        A zero UDP checksum over IPv4 means "none" and counts as right.
        """
        l4, ip = self.l4, self.l3
        if l4 is None or self.frag != FRAG_NONE or not isinstance(ip, IPv4 | IPv6):
            return None
        seg = self.data[self.l4_offset : self.payload_offset + len(self.payload)]
        if isinstance(l4, ICMP):
            return internet_checksum(seg) == 0
        if isinstance(l4, UDP) and l4.checksum == 0 and isinstance(ip, IPv4):
            return True
        if isinstance(ip, IPv4):
            ph = pseudo_header_v4(ip.src, ip.dst, l4.protocol, len(seg))
        else:
            ph = pseudo_header_v6(ip.src, ip.final_destination, l4.protocol, len(seg))
        return internet_checksum(ph, seg) == 0

    def __str__(self) -> str:
        parts = [str(h) for h in (self.eth, self.l3, self.l4) if h is not None]
        if self.payload:
            parts.append(f"{len(self.payload)} bytes")
        return " | ".join(parts)


def checksum_ok(frame: ParsedFrame) -> bool:
    """True unless the IPv4 header or the transport checksum of ``frame`` is wrong."""
    return frame.ip_checksum_ok and frame.l4_checksum_ok is not False


def parse_frame(data: Buffer) -> ParsedFrame:
    """Decode an Ethernet frame. Raises :class:`PacketError` for truncated/garbage input.

    Unknown ethertypes and IP protocols are kept as raw ``payload``. IPv4
    fragments and IPv6 fragment headers set ``frag``. First fragments still get
    their transport header decoded (without a UDP length check) when it fits;
    a tiny first fragment that cuts it keeps raw ``payload``. Later fragments
    are raw.
    """
    mv = view(data)
    n = len(mv)
    eth, l3_off = Ethernet.parse(mv, 0)
    etype = eth.ethertype
    if etype == ETH_P_ARP:
        arp, end = ARP.parse(mv, l3_off)
        return ParsedFrame(mv, eth, arp, None, mv[end:end], mv[end:], l3_off, 0, end)
    if etype == ETH_P_IPV4:
        ip4, l4_off = IPv4.parse(mv, l3_off)
        if ip4.total_length < ip4.header_len:
            raise PacketError("ipv4", f"total length {ip4.total_length} is below the header "
                              f"length {ip4.header_len}")
        ip_end = l3_off + ip4.total_length
        if ip_end > n:
            raise PacketError("ipv4", f"truncated: total length {ip4.total_length}, "
                              f"{n - l3_off} bytes present")
        frag = FRAG_NONE
        if ip4.is_fragment:
            frag = FRAG_LATER if ip4.frag_offset else FRAG_FIRST
        ip: IPv4 | IPv6 = ip4
        proto = ip4.proto
    elif etype == ETH_P_IPV6:
        ip6, l4_off = IPv6.parse(mv, l3_off)
        ip_end = l3_off + 40 + ip6.payload_length
        if ip_end > n:
            raise PacketError("ipv6", f"truncated: payload length {ip6.payload_length}, "
                              f"{n - l3_off - 40} bytes present")
        frag = FRAG_NONE
        fh = ip6.fragment
        if fh is not None:
            frag = FRAG_LATER if fh.offset else FRAG_FIRST
        ip = ip6
        proto = ip6.upper_protocol
    else:
        return ParsedFrame(mv, eth, None, None, mv[l3_off:], mv[n:], l3_off, 0, l3_off)

    l4: L4Header | None = None
    end = ip_end
    pay_off = l4_off
    if frag == FRAG_NONE:
        l4, pay_off, end = _parse_l4(mv[:ip_end], l4_off, proto, ip, check_udp_length=True)
    elif frag == FRAG_FIRST:
        try:
            l4, pay_off, end = _parse_l4(mv[:ip_end], l4_off, proto, ip, check_udp_length=False)
        except PacketError:  # a tiny first fragment: its transport header continues later
            l4, pay_off, end = None, l4_off, ip_end
    return ParsedFrame(mv, eth, ip, l4, mv[pay_off:end], mv[end:], l3_off,
                       0 if frag == FRAG_LATER else l4_off, pay_off, frag)


def _parse_l4(
    mv: memoryview, off: int, proto: int, ip: IPv4 | IPv6, *, check_udp_length: bool
) -> tuple[L4Header | None, int, int]:
    """Transport header at ``off`` of ``mv`` (which ends with the IP datagram).

    Returns the header (``None`` for protocols not decoded), the payload offset
    and the payload end.
    """
    end = len(mv)
    if proto == IPPROTO_TCP:
        tcp, pay_off = TCP.parse(mv, off)
        return tcp, pay_off, end
    if proto == IPPROTO_UDP:
        udp, pay_off = UDP.parse(mv, off)
        if check_udp_length:
            if udp.length < 8 or off + udp.length > end:
                raise PacketError("udp", f"length {udp.length} does not fit the "
                                  f"{end - off} bytes of the IP payload")
            end = off + udp.length
        return udp, pay_off, end
    if proto == IPPROTO_ICMP and isinstance(ip, IPv4):
        icmp, pay_off = ICMP.parse(mv, off)
        return icmp, pay_off, end
    if proto == IPPROTO_ICMPV6 and isinstance(ip, IPv6):
        icmp6, pay_off = ICMPv6.parse(mv, off)
        return icmp6, pay_off, end
    return None, off, end
