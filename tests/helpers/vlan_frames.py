"""Hostile VLAN tag stacks (double tagging, S-tags, priority tags) built with scapy.

Each pattern is what a VM on an access port of VLAN 10 might send to reach
VLAN 20 through a trunk whose native VLAN is 10 (the classic double-tagging
hop), with the drop reason vspan must give it.
"""

from __future__ import annotations

from dataclasses import dataclass

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet

BCAST = "ff:ff:ff:ff:ff:ff"


@dataclass(frozen=True)
class Hostile:
    """One hostile pattern: its name, whether it is sent to broadcast, and the reason."""

    name: str
    broadcast: bool
    reason: str


def _payload(marker: str) -> Packet:
    return IP(src="10.9.0.66", dst="10.9.0.20") / UDP(sport=6666, dport=7) / marker.encode()


def _stack(name: str) -> Packet:
    """The tag stack of pattern ``name`` (outermost first), ending with the payload."""
    p = _payload(name)
    if name.startswith("q10-q20-q10-q20"):
        return Dot1Q(vlan=10) / Dot1Q(vlan=20) / Dot1Q(vlan=10) / Dot1Q(vlan=20) / p
    if name.startswith("q10-q20"):
        return Dot1Q(vlan=10) / Dot1Q(vlan=20) / p
    if name == "prio-q20":
        return Dot1Q(vlan=0) / Dot1Q(vlan=20) / p
    if name == "q10pcp5dei-q20":
        return Dot1Q(vlan=10, prio=5, dei=1) / Dot1Q(vlan=20) / p
    if name == "ad10-q20":
        return Dot1AD(vlan=10) / Dot1Q(vlan=20) / p
    if name == "9100-10-q20":
        return Dot1Q(vlan=10) / Dot1Q(vlan=20) / p  # outer TPID set in frame()
    if name == "q10-ad20":
        return Dot1Q(vlan=10, type=0x88A8) / Dot1AD(vlan=20) / p
    if name == "q10":
        return Dot1Q(vlan=10) / p
    if name == "q20":
        return Dot1Q(vlan=20) / p
    if name == "ad10":
        return Dot1AD(vlan=10) / p
    raise KeyError(name)


def frame(h: Hostile, src: str, dst: str) -> bytes:
    """The bytes of pattern ``h`` from ``src`` to ``dst`` (or broadcast)."""
    stack = _stack(h.name)
    etype = 0x9100 if h.name == "9100-10-q20" else None
    eth = Ether(src=src, dst=BCAST if h.broadcast else dst)
    if etype is not None:
        eth.type = etype
    return bytes(eth / stack)


#: Every pattern the issue reports as leaking from access 10 onto a native-10 trunk as
#: VLAN 20, plus single tags an access port must refuse too.
HOSTILE: tuple[Hostile, ...] = (
    Hostile("q10-q20-bcast", True, "vlan-not-allowed"),
    Hostile("q10-q20-ucast", False, "vlan-not-allowed"),
    Hostile("prio-q20", False, "vlan-inner-tag"),
    Hostile("q10pcp5dei-q20", False, "vlan-not-allowed"),
    Hostile("ad10-q20", False, "vlan-tpid"),
    Hostile("9100-10-q20", False, "vlan-tpid"),
    Hostile("q10-q20-q10-q20", False, "vlan-not-allowed"),
    Hostile("q10-ad20", False, "vlan-not-allowed"),
    Hostile("q10", False, "vlan-not-allowed"),
    Hostile("q20", True, "vlan-not-allowed"),
    Hostile("ad10", True, "vlan-tpid"),
)

#: The drop reasons of the VLAN stage.
VLAN_REASONS = frozenset(("vlan-not-allowed", "vlan-untagged-not-allowed", "vlan-inner-tag",
                          "vlan-tpid"))


def tags_of(data: bytes) -> list[tuple[int, int]]:
    """``(tpid, vid)`` of every VLAN tag at the front of ``data`` (an independent reader)."""
    out: list[tuple[int, int]] = []
    off = 12
    while len(data) >= off + 4 and int.from_bytes(data[off:off + 2], "big") in (
            0x8100, 0x88A8, 0x9100):
        out.append((int.from_bytes(data[off:off + 2], "big"),
                    int.from_bytes(data[off + 2:off + 4], "big") & 0xFFF))
        off += 4
    return out
