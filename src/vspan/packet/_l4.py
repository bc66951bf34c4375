"""Shared pieces of the transport headers (internal)."""

from __future__ import annotations

from vspan.packet.checksum import pseudo_header_v4, pseudo_header_v6
from vspan.packet.errors import PacketError
from vspan.packet.ipv4 import IPv4
from vspan.packet.ipv6 import IPv6

IPHeader = IPv4 | IPv6


def pseudo(header: str, ip: IPHeader | None, proto: int, length: int) -> bytes:
    """The pseudo-header for ``ip`` (PacketError when ``ip`` is missing)."""
    if ip is None:
        raise PacketError(header, "the checksum needs the IP header (pass ip=...)")
    if isinstance(ip, IPv4):
        return pseudo_header_v4(ip.src, ip.dst, proto, length)
    return pseudo_header_v6(ip.src, ip.final_destination, proto, length)


def fill_checksum(segment: bytes, at: int, value: int) -> bytes:
    """``segment`` with the 16-bit checksum at ``at`` replaced by ``value``."""
    return segment[:at] + value.to_bytes(2, "big") + segment[at + 2 :]

