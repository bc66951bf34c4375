"""VLAN classification on ingress and the VLAN operation on egress (Hyper-V semantics)."""

from __future__ import annotations

from vspan.config.model import VlanMode
from vspan.datapath.decision import (
    VLAN_KEEP,
    VLAN_OP_NAMES,
    VLAN_POP,
    VLAN_PUSH,
    VLAN_SET,
    Drop,
)
from vspan.datapath.flowkey import ETH_P_8021Q, UNTAGGED
from vspan.datapath.reasons import DropReason
from vspan.datapath.stages.base import StageContext
from vspan.datapath.state import NO_VLAN, PortRuntime


def vlan_name(vlan: int) -> str:
    """Human name of an internal VLAN."""
    return "untagged network (VLAN 0)" if vlan == 0 else f"VLAN {vlan}"


def classify(ctx: StageContext) -> Drop | None:
    """Set ``ctx.vlan`` from the frame's outer tag and the port's mode, or drop.

    vspan is an 802.1Q switch: an outer tag announced by 0x88a8 (802.1ad) or
    0x9100 is not a VLAN tag it classifies, and the frame is dropped on every
    port (``vlan-tpid``). A priority tag (802.1Q, VID 0) counts as untagged
    unless another tag follows it (``vlan-inner-tag``). Access and untagged
    ports are untagged on the wire: any other tag is ``vlan-not-allowed``.
    """
    port = ctx.in_port
    tr = ctx.tracer
    key = ctx.key
    tag = key.vlan
    mode = f"{port.pvlan_mode} private VLAN" if port.pvlan_mode else port.config.vlan.mode.value
    if tag != UNTAGGED and key.tpid != ETH_P_8021Q:
        if tr.enabled:
            tr.report("vlan", f"outer tag has TPID 0x{key.tpid:04x}, not 802.1Q (0x8100): "
                      "vspan is an 802.1Q switch and does not classify S-tags: drop")
        return Drop(DropReason.VLAN_TPID, port.index, detail=f"TPID 0x{key.tpid:04x}")
    if tag == UNTAGGED or tag == 0:  # untagged or priority-tagged
        kind = "untagged" if tag == UNTAGGED else "priority-tagged"
        if key.inner_vlan != UNTAGGED:
            if tr.enabled:
                tr.report("vlan", f"priority tag over an inner tag (VID {key.inner_vlan}): the "
                          "inner tag would pass for the frame's VLAN: drop")
            return Drop(DropReason.VLAN_INNER_TAG, port.index,
                        detail=f"inner VID {key.inner_vlan} behind a priority tag")
        if port.untagged_vlan == NO_VLAN:
            if tr.enabled:
                tr.report("vlan", f"{kind} frame on {mode} port without native VLAN: drop")
            return Drop(DropReason.VLAN_UNTAGGED_NOT_ALLOWED, port.index,
                        detail=f"{mode} port has no native VLAN")
        ctx.vlan = port.untagged_vlan
        if tr.enabled:
            tr.report("vlan", f"{kind} frame on {mode} port joins {vlan_name(ctx.vlan)}",
                      vlan=ctx.vlan)
        return None
    if tag in port.tagged_vlans:
        ctx.vlan = tag
        if tr.enabled:
            inner = f" (inner VID {key.inner_vlan} carried)" if key.inner_vlan != UNTAGGED else ""
            tr.report("vlan", f"tagged VID {tag} allowed on {mode} port: {vlan_name(tag)}{inner}",
                      vlan=tag)
        return None
    if tr.enabled:
        if port.config.vlan.mode is VlanMode.TRUNK:
            allowed = ",".join(str(v) for v in sorted(port.tagged_vlans)) or "none"
            tr.report("vlan", f"tagged VID {tag} not allowed on trunk port (allowed: {allowed}): "
                      "drop")
        else:
            tr.report("vlan", f"tagged VID {tag} on {mode} port, which is untagged on the wire "
                      "(only untagged or priority-tagged frames): drop")
    return Drop(DropReason.VLAN_NOT_ALLOWED, port.index, detail=f"VID {tag}")


def egress_op(tag: int, vlan: int, out: PortRuntime) -> tuple[int, int]:
    """The VLAN operation to deliver a frame of ``vlan`` (ingress outer tag ``tag``) to ``out``."""
    in_tagged = tag != UNTAGGED
    if vlan == out.egress_untagged or vlan in out.pvlan_vids:  # a PVLAN port: all untagged
        return (VLAN_POP, 0) if in_tagged else (VLAN_KEEP, 0)
    if not in_tagged:
        return (VLAN_PUSH, vlan)
    if tag == vlan:
        return (VLAN_KEEP, 0)
    return (VLAN_SET, vlan)


def egress(ctx: StageContext, out: PortRuntime) -> tuple[int, int] | Drop:
    """The VLAN operation delivering the frame to ``out``, or the Drop for that output.

    When ``ctx.vlan`` leaves ``out`` untagged and the frame carries an inner tag
    behind its outer one (Q-in-Q arriving on a trunk), popping the outer tag
    would make the inner tag pass for the frame's VLAN on the far side: that
    copy is dropped (``vlan-inner-tag``). Tagged egress carries the stack as it is.
    """
    key = ctx.key
    tr = ctx.tracer
    op, vid = egress_op(key.vlan, ctx.vlan, out)
    if op == VLAN_POP and key.inner_vlan != UNTAGGED:
        if tr.enabled:
            tr.report("vlan-out", f"{vlan_name(ctx.vlan)} leaves untagged, but popping the outer "
                      f"tag would expose the inner tag VID {key.inner_vlan}: drop")
        return Drop(DropReason.VLAN_INNER_TAG, out.index,
                    detail=f"inner VID {key.inner_vlan} on untagged egress")
    if tr.enabled:
        how = ("untagged" if ctx.vlan == out.egress_untagged or ctx.vlan in out.pvlan_vids
               else f"tagged VID {ctx.vlan}")
        tr.report("vlan-out", f"leaves {how} (tag op: {VLAN_OP_NAMES[op]})")
    return op, vid
