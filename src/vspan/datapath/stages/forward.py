"""L2 forwarding: learning decision, FDB lookup, flooding within the VLAN."""

from __future__ import annotations

from vspan.datapath.decision import Drop, Learn, Refresh
from vspan.datapath.fdb import LearnResult
from vspan.datapath.flowkey import mac_str
from vspan.datapath.reasons import DropReason
from vspan.datapath.stages import pvlan
from vspan.datapath.stages.base import StageContext
from vspan.datapath.stages.vlan import vlan_name
from vspan.datapath.state import PortRuntime

# how many ports outside the frame's VLAN a trace names one by one
TRACE_OUTSIDE_PORTS = 4


def learn(ctx: StageContext) -> tuple[Drop | Learn | Refresh | None, bool]:
    """What the source MAC does to the MAC table: a drop (the port's MAC limit), a
    :class:`Learn` (new or moved; done per frame once the ingress checks passed), a
    :class:`Refresh`, or nothing; and whether that answer depends on the table's room
    (a full table or a port's limit)."""
    port = ctx.in_port
    src = ctx.key.src
    tr = ctx.tracer
    table = ctx.state.fdb_vlan(ctx.vlan)  # a PVLAN's secondaries learn in the primary's
    ctx.macs.append((table, src))
    res = ctx.state.fdb.check(table, src, port.index, port.config.mac_limit)
    if res is LearnResult.NEW or res is LearnResult.MOVED:
        if tr.enabled:
            verb = "learn" if res is LearnResult.NEW else "move"
            tr.report("learn", f"{verb} {mac_str(src)} on VLAN {table} -> port {port.name} "
                      "(once the frame passes the ingress checks)")
        return Learn(table, src, port.index), False
    if res is LearnResult.REFRESHED:
        if tr.enabled:
            tr.report("learn", f"{mac_str(src)} already known on port {port.name} (refresh age)")
        return Refresh(table, src, port.index), False
    if res is LearnResult.PORT_LIMIT:
        if tr.enabled:
            tr.report("learn", f"{mac_str(src)}: port {port.name} reached its limit of "
                      f"{port.config.mac_limit} MACs: drop")
        return Drop(DropReason.MAC_LIMIT, port.index,
                    detail=f"limit {port.config.mac_limit}"), True
    if tr.enabled:
        why = "table full" if res is LearnResult.TABLE_FULL else "static entry elsewhere"
        tr.report("learn", f"{mac_str(src)} not learned ({why})")
    return None, res is LearnResult.TABLE_FULL


def may_receive(out: PortRuntime) -> bool:
    """Whether normal (non-mirror) traffic may be delivered to ``out``."""
    return out.enabled and (not out.mirror_dest or out.allow_normal_io)


def lookup(ctx: StageContext) -> tuple[list[PortRuntime], Drop | None, bool]:
    """Destination ports for the frame: (ports, drop, flooded)."""
    key = ctx.key
    tr = ctx.tracer
    state = ctx.state
    port = ctx.in_port
    dst = key.dst
    if not dst[0] & 1:
        table = state.fdb_vlan(ctx.vlan)  # a PVLAN's secondaries share the primary's
        entry = ctx.fdb_lookup(table, dst)
        if entry is not None:
            out = state.ports.get(entry.port)
            if out is None:
                if tr.enabled:
                    tr.report("lookup", f"{mac_str(dst)} learned on a removed port: flood")
            elif out.index == port.index:
                if tr.enabled:
                    tr.report("lookup",
                              f"{mac_str(dst)} lives on the ingress port {port.name}: drop")
                return [], Drop(DropReason.SAME_PORT, port.index), False
            elif not out.enabled:
                if tr.enabled:
                    tr.report("lookup", f"{mac_str(dst)} on port {out.name}, which is down: drop")
                return [], Drop(DropReason.PORT_DOWN, out.index), False
            elif not may_receive(out):
                if tr.enabled:
                    tr.report("lookup", f"{mac_str(dst)} on port {out.name}, a mirror "
                              "destination without normal I/O: drop")
                return [], Drop(DropReason.MIRROR_DEST_PORT, out.index), False
            else:
                if tr.enabled:
                    tr.report("lookup", f"{mac_str(dst)} on VLAN {table} learned on port "
                              f"{out.name}")
                return [out], None, False
        elif tr.enabled:
            tr.report("lookup", f"{mac_str(dst)} unknown on VLAN {table}"
                      f"{_known_elsewhere(ctx, dst)}: flood in VLAN {ctx.vlan}")
    elif tr.enabled:
        kind = "broadcast" if dst == b"\xff" * 6 else "multicast"
        tr.report("lookup", f"{kind} {mac_str(dst)}: flood in VLAN {ctx.vlan}")
    outs = [
        p for p in state.ports.values()
        if p.index != port.index and ctx.vlan in p.members and may_receive(p)
    ]
    if not outs:
        if tr.enabled:
            _report_outside(ctx)
            tr.report("flood", f"no other port in VLAN {ctx.vlan}: drop")
        return [], Drop(DropReason.NO_DESTINATION, port.index), True
    if tr.enabled:
        node = tr.report("flood", "")
        left = pvlan.flood_left_out(ctx, outs)  # the private VLAN's rules leave out
        reached = [p.name for p in outs if p not in left]
        node.message = ("to " + ", ".join(reached) if reached
                        else "to no port: the private VLAN rules leave every member out")
        node.data["ports"] = reached
        _report_outside(ctx)
    return outs, None, True


def _vlans_text(port: PortRuntime) -> str:
    """The VLANs a port is a member of, for a trace line."""
    if not port.members:
        return "no VLAN"
    names = [vlan_name(v) for v in sorted(port.members)]
    if len(names) > 6:
        return f"{len(names)} VLANs"
    return ", ".join(names)


def _known_elsewhere(ctx: StageContext, mac: bytes) -> str:
    """Tracing only: where ``mac`` was learned on other VLANs (" (learned on ...)" or "")."""
    where = [f"{vlan_name(vlan)} at port {ctx.state.ports[e.port].name}"
             for (vlan, m), e in ctx.state.fdb.entries.items()
             if m == mac and vlan != ctx.vlan and e.port in ctx.state.ports]
    return f" (learned on {', '.join(where)}: another VLAN)" if where else ""


def _report_outside(ctx: StageContext) -> None:
    """Tracing only: the ports a flood leaves out because they are not in its VLAN (the
    frame does not match their VLAN filter)."""
    outside = [p for p in ctx.state.ports.values()
               if p.index != ctx.in_port.index and ctx.vlan not in p.members
               and may_receive(p)]
    for p in outside[:TRACE_OUTSIDE_PORTS]:
        ctx.tracer.report("flood", f"not to {p.name}: not a member of {vlan_name(ctx.vlan)} "
                          f"(member of: {_vlans_text(p)})")
    if len(outside) > TRACE_OUTSIDE_PORTS:
        ctx.tracer.report("flood", f"not to {len(outside) - TRACE_OUTSIDE_PORTS} more ports "
                          f"outside {vlan_name(ctx.vlan)}")
