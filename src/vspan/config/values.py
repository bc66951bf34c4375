"""Value types of the policy configuration: directions, address and MAC specs, port
ranges, protocols, parsed from and printed to their configuration text.

They sit below every layer that reads configuration (policy compiles them into
matchers; the configuration models validate with them). Direction is always
seen **from the port** (the VM's vNIC): ``"in"`` is a frame the switch
delivers to the port, ``"out"`` a frame the port's VM sent into the switch.
"""

from __future__ import annotations

import ipaddress
from typing import Final, Literal, NamedTuple

Dir = Literal["in", "out"]
IN: Final[Dir] = "in"
OUT: Final[Dir] = "out"
DIRECTIONS: Final[tuple[Dir, Dir]] = (IN, OUT)

ANY: Final = "any"
"""Wildcard marker used by address and protocol specs."""


def parse_direction(text: str) -> tuple[Dir, ...]:
    """``in``/``inbound`` -> (in,), ``out``/``outbound`` -> (out,), ``both`` -> (in, out)."""
    t = text.strip().lower()
    if t in ("in", "inbound"):
        return (IN,)
    if t in ("out", "outbound"):
        return (OUT,)
    if t in ("both", "in_out", "inout", "in-out"):
        return (IN, OUT)
    raise ValueError(f"{text!r} is not a direction (in, out, both)")


class IpPrefix(NamedTuple):
    """An IPv4 or IPv6 prefix as integers (``value`` has its host bits cleared)."""

    family: int  # 4 or 6
    value: int
    length: int

    @property
    def width(self) -> int:
        """Address width in bits."""
        return 32 if self.family == 4 else 128

    def contains(self, addr: bytes) -> bool:
        """Whether the address (4 or 16 bytes) lies inside the prefix."""
        width = len(addr) * 8
        if width != self.width:
            return False
        return (int.from_bytes(addr, "big") >> (width - self.length)) == (
            self.value >> (width - self.length)
        )

    def __str__(self) -> str:
        if self.family == 4:
            return str(ipaddress.IPv4Network((self.value, self.length)))
        return str(ipaddress.IPv6Network((self.value, self.length)))


IpSpec = IpPrefix | None
"""A prefix, or ``None`` for ANY (any IPv4 or IPv6 address)."""


def parse_ip_spec(text: str) -> IpSpec:
    """Parse ``"any"``, an address or a CIDR prefix. Host bits must be clear.

    ``any`` matches IPv4 and IPv6; ``0.0.0.0/0`` and ``::/0`` match one family.
    """
    t = text.strip()
    if t.lower() in (ANY, "*"):
        return None
    try:
        net = ipaddress.ip_network(t, strict=True)
    except ValueError as err:
        raise ValueError(f"{text!r} is not an IP address or prefix ({err})") from None
    return IpPrefix(net.version, int(net.network_address), net.prefixlen)


def spec_str(spec: IpSpec) -> str:
    """Text form of an IP spec."""
    return "any" if spec is None else str(spec)


MacSpec = bytes | None
"""Six bytes, or ``None`` for ANY."""


def parse_mac_spec(text: str) -> MacSpec:
    """Parse ``"any"`` or ``aa:bb:cc:dd:ee:ff`` / ``aa-bb-cc-dd-ee-ff`` / ``aabbccddeeff``."""
    t = text.strip()
    if t.lower() in (ANY, "*"):
        return None
    return parse_mac(t)


def parse_mac(text: str) -> bytes:
    """Six bytes from a MAC address in the usual notations; ValueError otherwise."""
    t = text.strip().replace("-", ":").replace(".", "")
    if ":" not in t and len(t) == 12:
        t = ":".join(t[i : i + 2] for i in range(0, 12, 2))
    parts = t.split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"{text!r} is not a MAC address")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r} is not a MAC address") from None


def mac_str(mac: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff``."""
    return ":".join(f"{b:02x}" for b in mac)


class PortRange(NamedTuple):
    """An inclusive range of transport ports."""

    lo: int
    hi: int

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.lo <= port <= self.hi

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


def parse_port_range(value: int | str) -> PortRange:
    """``80``, ``"80"`` or ``"1000-2000"`` -> PortRange; ValueError if out of 0-65535."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a port")
    if isinstance(value, int):
        lo = hi = value
    else:
        text = value.strip()
        try:
            if "-" in text:
                a, _, b = text.partition("-")
                lo, hi = int(a), int(b)
            else:
                lo = hi = int(text)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a port or port range (like 80 or 1000-2000)"
            ) from None
    if not (0 <= lo <= 65535 and 0 <= hi <= 65535):
        raise ValueError(f"{value!r} is not a port (0-65535)")
    if lo > hi:
        raise ValueError(f"{value!r} is an empty port range")
    return PortRange(lo, hi)


PROTOCOL_NAMES: Final[dict[str, int]] = {
    "icmp": 1,
    "tcp": 6,
    "udp": 17,
    "icmpv6": 58,
    "ipv6-icmp": 58,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "sctp": 132,
}


def parse_protocol(value: int | str) -> int | None:
    """``tcp``/``udp``/``icmp``/... or a number 0-255 -> int; ``any`` -> None."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a protocol")
    if isinstance(value, int):
        if not 0 <= value <= 255:
            raise ValueError(f"{value} is not an IP protocol number (0-255)")
        return value
    t = value.strip().lower()
    if t in (ANY, "*"):
        return None
    if t in PROTOCOL_NAMES:
        return PROTOCOL_NAMES[t]
    try:
        n = int(t)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a protocol (tcp, udp, icmp, icmpv6, any or a number)"
        ) from None
    return parse_protocol(n)


def protocol_str(proto: int | None) -> str:
    """Name of a protocol number (or ``any``)."""
    if proto is None:
        return "any"
    for name, num in PROTOCOL_NAMES.items():
        if num == proto:
            return name
    return str(proto)
