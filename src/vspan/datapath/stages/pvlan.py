"""Private VLANs: who in a PVLAN domain may reach whom (decided per flow, per output).

A frame's role comes from the VLAN it travels on, wherever it entered (a PVLAN
port or a trunk): the primary is promiscuous traffic, a secondary is its
isolated or community VLAN. The output's role is the PVLAN port's mode; a
port that is not a PVLAN port (a trunk) carries the frame on its VID as it is
and the switch behind it applies the rules. See docs/pvlan.md.

| from \\ to    | promiscuous | same community | other community | isolated |
|--------------|-------------|----------------|-----------------|----------|
| primary      | yes         | yes            | yes             | yes      |
| community    | yes         | yes            | no              | no       |
| isolated     | yes         | -              | no              | no       |
"""

from __future__ import annotations

from vspan.config.pvlan import PvlanVlan
from vspan.datapath.decision import Drop
from vspan.datapath.reasons import DropReason
from vspan.datapath.stages.base import StageContext
from vspan.datapath.state import PortRuntime

_PROMISCUOUS = "promiscuous"
_ISOLATED = "isolated"
_COMMUNITY = "community"


def describe(vid: int, pv: PvlanVlan) -> str:
    """``isolated VLAN 201 of primary 200`` and the like."""
    if pv.kind == "primary":
        return f"primary VLAN {vid} (promiscuous traffic)"
    return f"{pv.kind} VLAN {vid} of primary {pv.primary}"


def _port_role(out: PortRuntime) -> str:
    cfg = out.config.pvlan
    if cfg is None:
        return "not a private VLAN port"
    if cfg.mode.value == _PROMISCUOUS:
        return f"promiscuous in primary {cfg.primary}"
    return f"{cfg.mode.value} in VLAN {cfg.own_vid} of primary {cfg.primary}"


def classify(ctx: StageContext) -> None:
    """Say (in a trace) what the frame's VLAN is in its private VLAN, if it is in one."""
    tr = ctx.tracer
    if not tr.enabled:
        return
    pv = ctx.state.pvlans.get(ctx.vlan)
    if pv is None:
        return
    port = ctx.in_port
    where = (f"port {port.name} is {_port_role(port)}" if port.pvlan_mode
             else f"tagged on port {port.name}")
    tr.report("pvlan", f"{where}: the frame is in {describe(ctx.vlan, pv)}; MACs are "
              f"learned and looked up in VLAN {pv.primary}'s table (shared by the domain)",
              vlan=ctx.vlan)


def forbidden(vid: int, pv: PvlanVlan, out: PortRuntime) -> tuple[DropReason, str] | None:
    """Whether the PVLAN rules forbid a frame of ``vid`` (``pv``: what it is in its private
    VLAN) to port ``out``, a member of ``vid``: the drop reason and why, else ``None``."""
    mode = out.pvlan_mode
    if not mode or mode == _PROMISCUOUS or pv.kind == "primary" or (
            mode == _COMMUNITY and out.egress_untagged == vid):
        return None
    if pv.kind == _ISOLATED or mode == _ISOLATED:
        return DropReason.PVLAN_ISOLATED, "an isolated port talks only to promiscuous ports"
    return (DropReason.PVLAN_COMMUNITY,
            "a community talks only to itself and to promiscuous ports")


def flood_left_out(ctx: StageContext, outs: list[PortRuntime]) -> list[PortRuntime]:
    """Tracing only: the members of the frame's VLAN a flood reaches (``outs``) that the
    PVLAN rules leave out, reported in one line per rule (the ports, the reason and why);
    the ports the flood really reaches are ``outs`` without them."""
    pv = ctx.state.pvlans.get(ctx.vlan)
    if pv is None:
        return []
    groups: dict[tuple[DropReason, str], list[PortRuntime]] = {}
    for out in outs:
        rule = forbidden(ctx.vlan, pv, out)
        if rule is not None:
            groups.setdefault(rule, []).append(out)
    for (reason, why), ports in groups.items():
        names = ", ".join(f"{p.name} ({p.pvlan_mode} VLAN {p.egress_untagged})"
                          for p in ports)
        ctx.tracer.report(
            "flood", f"not to {names}: the frame is in {describe(ctx.vlan, pv)} and {why} "
            f"({reason.value})", ports=[p.name for p in ports], reason=reason.value, why=why)
    return [p for ports in groups.values() for p in ports]


def egress(ctx: StageContext, out: PortRuntime) -> Drop | None:
    """The Drop for the copy to ``out`` when the PVLAN rules forbid it, else ``None``.

    ``pvlan-isolated`` when an isolated port is the sender or the receiver,
    ``pvlan-community`` between two different communities. A port that does not
    carry the frame's VID (a trunk that lacks a secondary) is ``vlan-not-allowed``.
    """
    pv = ctx.state.pvlans.get(ctx.vlan)
    if pv is None:
        return None
    tr = ctx.tracer
    vid = ctx.vlan
    if vid not in out.members:
        if tr.enabled:
            tr.report("pvlan", f"port {out.name} does not carry {describe(vid, pv)}: drop")
        return Drop(DropReason.VLAN_NOT_ALLOWED, out.index,
                    detail=f"VID {vid} of private VLAN {pv.primary} not carried")
    mode = out.pvlan_mode
    rule = forbidden(vid, pv, out)
    if rule is None:
        if tr.enabled:
            why = ("a promiscuous port talks to every port of the domain"
                   if pv.kind == "primary" or mode == _PROMISCUOUS
                   else "same community" if mode
                   else "carried tagged; the switch behind it applies the rules")
            tr.report("pvlan", f"{describe(vid, pv)} -> port {out.name} ({_port_role(out)}): "
                      f"allowed ({why})")
        return None
    reason, why = rule
    if tr.enabled:
        tr.report("pvlan", f"{describe(vid, pv)} -> port {out.name} ({_port_role(out)}): "
                  f"{why}: drop ({reason.value})")
    return Drop(reason, out.index, detail=f"VLAN {vid} of primary {pv.primary} to {mode} "
                f"VLAN {out.egress_untagged}")
