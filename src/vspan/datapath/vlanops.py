"""Apply a VLAN operation to frame bytes (and move the virtio-net header offsets)."""

from __future__ import annotations

from vspan.datapath.decision import VLAN_KEEP, VLAN_POP, VLAN_PUSH, VLAN_SET
from vspan.ports import vnet as vnetmod


def apply(op: int, vid: int, data: bytes, vnet: bytes) -> tuple[bytes, bytes]:
    """Return ``(data, vnet)`` after ``op``; KEEP returns the inputs unchanged."""
    if op == VLAN_KEEP:
        return data, vnet
    if op == VLAN_POP:
        return data[:12] + data[16:], vnetmod.shift(vnet, -4)
    if op == VLAN_PUSH:
        tag = bytes((0x81, 0x00, (vid >> 8) & 0x0F, vid & 0xFF))
        return data[:12] + tag + data[12:], vnetmod.shift(vnet, 4)
    if op == VLAN_SET:
        # an 802.1Q tag whatever TPID came (the pipeline only sets 802.1Q tags); keep PCP/DEI
        tci = ((data[14] & 0xF0) << 8) | vid
        return data[:12] + bytes((0x81, 0x00, tci >> 8, tci & 0xFF)) + data[16:], vnet
    raise ValueError(f"unknown VLAN operation {op}")
