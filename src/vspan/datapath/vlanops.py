"""Apply a VLAN operation to frame bytes (and move the virtio-net header offsets); tag
RSPAN copies."""

from __future__ import annotations

import struct

from vspan.datapath.decision import VLAN_KEEP, VLAN_POP, VLAN_PUSH, VLAN_SET
from vspan.packet.errors import PacketError
from vspan.ports import vnet as vnetmod

_TPIDS = (0x8100, 0x88A8, 0x9100)


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


def frame_vlan(frame: bytes) -> tuple[int, int] | None:
    """``(vid, pcp)`` of the outer VLAN tag of ``frame``, or ``None`` when untagged."""
    if len(frame) >= 18 and ((frame[12] << 8) | frame[13]) in _TPIDS:
        tci = (frame[14] << 8) | frame[15]
        return tci & 0xFFF, tci >> 13
    return None


def rspan_copy(frame: bytes, vlan: int, keep_original_tag: bool, pcp: int | None = None,
               original_vlan: int = 0) -> bytes:
    """The RSPAN copy of ``frame``: carried in VLAN ``vlan``.

    An untagged frame gets an 802.1Q tag. A tagged frame keeps its tag under a
    new outer RSPAN tag when ``keep_original_tag``, otherwise its outer tag's
    VID is replaced. ``pcp`` defaults to the frame's own priority (0 untagged).

    ``original_vlan`` is the VLAN the switch carried the frame in (0: the
    untagged network). With ``keep_original_tag`` the copy keeps that VLAN as
    its inner tag even where the frame was untagged on the wire (an access
    port, a trunk's native VLAN) or priority-tagged, as a trunk would carry it.
    """
    if not 1 <= vlan <= 4094:
        raise PacketError("rspan", f"vlan {vlan} is not a VLAN id (1-4094)")
    if pcp is not None and not 0 <= pcp <= 7:
        raise PacketError("rspan", f"pcp {pcp} is not a priority (0-7)")
    if not 0 <= original_vlan <= 4094:
        raise PacketError("rspan", f"original_vlan {original_vlan} is not a VLAN id (0-4094)")
    if len(frame) < 14:
        raise PacketError("rspan", f"frame of {len(frame)} bytes is too short for Ethernet")
    tag = frame_vlan(frame)
    if keep_original_tag and original_vlan:
        if tag is None:
            frame = frame[:12] + struct.pack("!HH", 0x8100, original_vlan) + frame[12:]
            tag = (original_vlan, 0)
        elif tag[0] == 0:
            tci = ((frame[14] & 0xF0) << 8) | original_vlan
            frame = frame[:12] + struct.pack("!HH", 0x8100, tci) + frame[16:]
    if tag is None or keep_original_tag:
        prio = pcp if pcp is not None else (tag[1] if tag else 0)
        return frame[:12] + struct.pack("!HH", 0x8100, (prio << 13) | vlan) + frame[12:]
    old_tci = (frame[14] << 8) | frame[15]
    prio = pcp if pcp is not None else old_tci >> 13
    tci = (prio << 13) | (old_tci & 0x1000) | vlan
    return frame[:12] + struct.pack("!HH", 0x8100, tci) + frame[16:]
