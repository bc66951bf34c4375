"""VLAN classification on ingress and the VLAN operation on egress (Hyper-V semantics)."""

from __future__ import annotations

from vspan.datapath.decision import (
    VLAN_KEEP,
    VLAN_POP,
    VLAN_PUSH,
    VLAN_SET,
    Drop,
)
from vspan.datapath.flowkey import UNTAGGED
from vspan.datapath.reasons import DropReason
from vspan.datapath.stages.base import StageContext
from vspan.datapath.state import NO_VLAN, PortRuntime


def vlan_name(vlan: int) -> str:
    """Human name of an internal VLAN."""
    return "untagged network (VLAN 0)" if vlan == 0 else f"VLAN {vlan}"


def classify(ctx: StageContext) -> Drop | None:
    """Set ``ctx.vlan`` from the frame's outer tag and the port's mode, or drop."""
    port = ctx.in_port
    tr = ctx.tracer
    tag = ctx.key.vlan
    mode = port.config.vlan.mode.value
    if tag == UNTAGGED or tag == 0:  # untagged or priority-tagged
        kind = "untagged" if tag == UNTAGGED else "priority-tagged"
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
            tr.report("vlan", f"tagged VID {tag} allowed on {mode} port: {vlan_name(tag)}",
                      vlan=tag)
        return None
    if tr.enabled:
        allowed = ",".join(str(v) for v in sorted(port.tagged_vlans)) or "none"
        tr.report("vlan", f"tagged VID {tag} not allowed on {mode} port (allowed: {allowed}): drop")
    return Drop(DropReason.VLAN_NOT_ALLOWED, port.index, detail=f"VID {tag}")


def egress_op(tag: int, vlan: int, out: PortRuntime) -> tuple[int, int]:
    """The VLAN operation to deliver a frame of ``vlan`` (ingress outer tag ``tag``) to ``out``."""
    in_tagged = tag != UNTAGGED
    if vlan == out.egress_untagged:
        return (VLAN_POP, 0) if in_tagged else (VLAN_KEEP, 0)
    if not in_tagged:
        return (VLAN_PUSH, vlan)
    if tag == vlan:
        return (VLAN_KEEP, 0)
    return (VLAN_SET, vlan)
