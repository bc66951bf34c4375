"""A test frame described by its fields (what ``vspan trace`` and the console's trace form
take): MACs, 802.1Q tags, IPv4 addresses, protocol and ports."""

from __future__ import annotations

from dataclasses import dataclass

from vspan.packet import build
from vspan.packet.errors import PacketError
from vspan.packet.ethernet import VlanTag

PROTOCOLS = ("icmp", "tcp", "udp", "arp", "raw")
RAW_ETHERTYPE = 0x88B5  # IEEE local experimental: a frame no stage reads past Ethernet
PAYLOAD = b"vspan trace"


@dataclass(frozen=True)
class FrameSpec:
    """The fields of a synthetic frame (``proto`` None: icmp with both IPs, else raw)."""

    src_mac: str = "02:00:00:00:00:01"
    dst_mac: str = "ff:ff:ff:ff:ff:ff"
    src_ip: str | None = None
    dst_ip: str | None = None
    vlan: tuple[int, ...] = ()  # 802.1Q VIDs, outer first (every tag 0x8100)
    proto: str | None = None
    sport: int = 12345
    dport: int = 80
    flags: str = "S"


def synth_frame(spec: FrameSpec) -> bytes:
    """The frame ``spec`` describes, padded to the Ethernet minimum.

    Raises PacketError (a ValueError) for fields that do not make a frame."""
    vlan = [VlanTag(vid=v) for v in spec.vlan] if spec.vlan else None
    proto = spec.proto or ("icmp" if spec.src_ip and spec.dst_ip else "raw")
    if proto not in PROTOCOLS:
        raise PacketError("trace", f"protocol must be one of {', '.join(PROTOCOLS)}")
    if proto == "arp":
        return build.arp_request(spec.src_mac, spec.src_ip or "0.0.0.0",
                                 spec.dst_ip or "0.0.0.0", vlan=vlan, pad=True)
    if proto == "raw":
        eth = build.ethernet(spec.src_mac, spec.dst_mac, vlan, RAW_ETHERTYPE)
        return build.build_frame(eth, payload=PAYLOAD, pad=True, fix_types=False)
    if not (spec.src_ip and spec.dst_ip):
        raise PacketError("trace", f"protocol {proto} needs a source and a destination IP")
    if proto == "icmp":
        return build.icmp_echo(spec.src_mac, spec.dst_mac, spec.src_ip, spec.dst_ip, 1, 1,
                               PAYLOAD, vlan=vlan, pad=True)
    if proto == "tcp":
        return build.tcp_frame(spec.src_mac, spec.dst_mac, spec.src_ip, spec.dst_ip,
                               spec.sport, spec.dport, spec.flags, vlan=vlan, pad=True)
    return build.udp_frame(spec.src_mac, spec.dst_mac, spec.src_ip, spec.dst_ip, spec.sport,
                           spec.dport, PAYLOAD, vlan=vlan, pad=True)
