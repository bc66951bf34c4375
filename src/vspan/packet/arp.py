"""ARP (RFC 826), any hardware/protocol address sizes; IPv4-over-Ethernet helpers."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from vspan.packet._buf import Buffer, as_bytes, view
from vspan.packet.addr import mac_str
from vspan.packet.errors import PacketError, check_uint, need

ARP_REQUEST = 1
ARP_REPLY = 2
RARP_REQUEST = 3  # "request reverse" (RFC 903)
ARPHRD_ETHER = 1
ETH_P_RARP = 0x8035

_FIXED = struct.Struct("!HHBBH")


@dataclass(frozen=True, slots=True)
class ARP:
    """An ARP message. Hardware/protocol lengths are the lengths of the address fields."""

    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes
    htype: int = ARPHRD_ETHER
    ptype: int = 0x0800

    def __post_init__(self) -> None:
        for name in ("sha", "spa", "tha", "tpa"):
            value = getattr(self, name)
            if not isinstance(value, bytes | bytearray | memoryview):
                raise PacketError("arp", f"{name} must be bytes, got {value!r}")
            object.__setattr__(self, name, as_bytes(value))
        if len(self.sha) != len(self.tha) or len(self.sha) > 255:
            raise PacketError("arp", "sha and tha must have the same length (at most 255)")
        if len(self.spa) != len(self.tpa) or len(self.spa) > 255:
            raise PacketError("arp", "spa and tpa must have the same length (at most 255)")
        check_uint("arp", "op", self.op, 16)
        check_uint("arp", "htype", self.htype, 16)
        check_uint("arp", "ptype", self.ptype, 16)

    @property
    def header_len(self) -> int:
        """Length of the message."""
        return 8 + 2 * (len(self.sha) + len(self.spa))

    @property
    def sender_ip(self) -> ipaddress.IPv4Address:
        """Sender protocol address as IPv4 (PacketError unless it is 4 bytes)."""
        return _v4(self.spa)

    @property
    def target_ip(self) -> ipaddress.IPv4Address:
        """Target protocol address as IPv4 (PacketError unless it is 4 bytes)."""
        return _v4(self.tpa)

    @classmethod
    def parse(cls, buf: Buffer, offset: int = 0) -> tuple[ARP, int]:
        """Parse an ARP message at ``offset``; return it and the offset after it."""
        mv = view(buf)
        n = len(mv)
        need("arp", n, offset, 8)
        htype, ptype, hlen, plen, op = _FIXED.unpack_from(mv, offset)
        end = offset + 8 + 2 * (hlen + plen)
        need("arp", n, offset, end - offset)
        p = offset + 8
        sha = bytes(mv[p : p + hlen])
        p += hlen
        spa = bytes(mv[p : p + plen])
        p += plen
        tha = bytes(mv[p : p + hlen])
        p += hlen
        tpa = bytes(mv[p : p + plen])
        return cls(op, sha, spa, tha, tpa, htype, ptype), end

    def pack(self) -> bytes:
        """The message bytes."""
        return (
            _FIXED.pack(self.htype, self.ptype, len(self.sha), len(self.spa), self.op)
            + self.sha + self.spa + self.tha + self.tpa
        )

    build = pack

    def __str__(self) -> str:
        kind = {ARP_REQUEST: "request", ARP_REPLY: "reply"}.get(self.op, f"op {self.op}")
        if len(self.spa) == 4 and len(self.sha) == 6:
            return (f"ARP {kind} who-has {_v4(self.tpa)} tell {_v4(self.spa)} "
                    f"({mac_str(self.sha)})")
        return f"ARP {kind}"


def _v4(raw: bytes) -> ipaddress.IPv4Address:
    if len(raw) != 4:
        raise PacketError("arp", f"protocol address {raw!r} is not IPv4")
    return ipaddress.IPv4Address(raw)


def rarp_announce(mac: bytes) -> bytes:
    """The frame QEMU's ``announce-self`` sends for a NIC that just migrated: a broadcast
    RARP "request reverse" (ethertype 0x8035, opcode 3) from ``mac`` about ``mac``, no
    addresses, padded to the 60-byte minimum. Switches on the way learn where the MAC
    is now."""
    if len(mac) != 6 or mac[0] & 1:
        raise PacketError("rarp", f"{mac!r} is not a unicast MAC address")
    body = ARP(RARP_REQUEST, mac, bytes(4), mac, bytes(4)).pack()
    frame = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_RARP) + body
    return frame + bytes(60 - len(frame))
