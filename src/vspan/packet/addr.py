"""Conversions between user-facing addresses and the raw bytes kept in headers."""

from __future__ import annotations

import ipaddress

from vspan.packet.errors import PacketError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPLike = str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address
MacLike = str | bytes

BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6


def mac_bytes(mac: MacLike) -> bytes:
    """6 raw bytes from ``aa:bb:cc:dd:ee:ff``/``aa-bb-..`` text or 6 bytes."""
    if isinstance(mac, bytes | bytearray):
        if len(mac) != 6:
            raise PacketError("mac", f"{bytes(mac)!r} is not 6 bytes")
        return bytes(mac)
    parts = mac.replace("-", ":").split(":")
    try:
        if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
            raise ValueError(mac)
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise PacketError("mac", f"{mac!r} is not a MAC address") from None


def mac_str(mac: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff`` for 6 raw bytes."""
    return ":".join(f"{b:02x}" for b in mac)


def ip_address(addr: IPLike) -> IPAddress:
    """An ``ipaddress`` object from text, 4/16 raw bytes or an address object."""
    try:
        if isinstance(addr, bytes | bytearray):
            if len(addr) not in (4, 16):
                raise ValueError(addr)
            return ipaddress.ip_address(bytes(addr))
        return ipaddress.ip_address(addr)
    except ValueError:
        raise PacketError("ip", f"{addr!r} is not an IPv4 or IPv6 address") from None


def ip_bytes(addr: IPLike) -> bytes:
    """Raw address bytes (4 for IPv4, 16 for IPv6) from any :data:`IPLike`."""
    if isinstance(addr, bytes | bytearray) and len(addr) in (4, 16):
        return bytes(addr)
    return ip_address(addr).packed


def ip_version(addr: IPLike) -> int:
    """4 or 6."""
    return 4 if len(ip_bytes(addr)) == 4 else 6
