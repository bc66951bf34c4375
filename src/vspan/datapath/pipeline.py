"""The pipeline: runs the stages on one frame and returns a :class:`Decision`.

port rx -> ingress taps -> port checks -> VLAN classify (and its PVLAN) -> ingress stages (policy)
-> link-local filter -> source MAC (limit; learn or refresh) -> L2 forward
-> per output: private VLAN rules -> VLAN egress -> egress stages (policy) -> egress taps -> port tx

The stages are handed in (``Pipeline(state, ingress=[...], egress=[...])``) by
whoever assembles the switch (:mod:`vspan.control.assemble`); the datapath
knows them only by their protocols. The result is a plain action list (see
:mod:`vspan.datapath.decision`) and what it depends on; the same code serves
the datapath (tracer disabled) and ``vspan trace``.

Order of static decisions and learning (one rule, for trace and forwarding):
taps see every frame; a frame dropped by a static (per-flow) decision — VLAN,
guards, ACLs, firewall rules without state, the port's MAC limit, link-local
destinations — teaches the switch nothing; otherwise the per-frame ingress
checks run first and the source MAC is learned or refreshed only if they pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from vspan.datapath.decision import (
    VLAN_KEEP,
    Action,
    Decision,
    Deps,
    Drop,
    Learn,
    Mirror,
    Output,
)
from vspan.datapath.flowkey import ETH_P_8021Q, FlowKey, extract, mac_str
from vspan.datapath.reasons import DropReason
from vspan.datapath.stages import forward, mirror, pvlan, vlan
from vspan.datapath.stages.base import EgressStage, IngressStage, StageContext
from vspan.datapath.state import PortRuntime, SwitchState
from vspan.datapath.trace import NULL_TRACER, Tracer

_RESERVED_PREFIX = b"\x01\x80\xc2\x00\x00"


class Pipeline:
    """Decides what happens to frames; holds no per-frame state of its own."""

    def __init__(self, state: SwitchState, ingress: Sequence[IngressStage] = (),
                 egress: Sequence[EgressStage] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.state = state
        self.ingress_stages = tuple(ingress)
        self.egress_stages = tuple(egress)
        self.clock = clock

    def run(self, key: FlowKey | None, data: bytes, in_port: int,
            tracer: Tracer = NULL_TRACER, policy: bool = True) -> Decision:
        """Decide for one frame that arrived on port index ``in_port``.

        ``policy=False`` skips the policy stages: for frames the switch itself
        originates on a port's behalf (firewall reject answers).
        """
        state = self.state
        tr = tracer
        port = state.ports.get(in_port)
        if port is None:
            return Decision((Drop(DropReason.PORT_DOWN, in_port, detail="no such port"),),
                            cacheable=False)
        if tr.enabled:
            tr.report("port", f"received on port {port.name} ({port.config.type.value} "
                      f"{port.config.ifname(port.name)}), {len(data)} bytes")
        only_port = Deps(ports=frozenset((in_port,)))
        if port.rspan_in and key is not None and key.vlan in port.rspan_in \
                and key.tpid == ETH_P_8021Q:
            acts = mirror.rspan_delivery(port, key.vlan, state.mirrors, state.port_names, key,
                                         data, tr)
            return Decision(tuple(acts), deps=only_port)
        taps = mirror.ingress_copies(port, state.mirrors, state.port_names, key, data, tr)
        if key is None:
            if tr.enabled:
                tr.report("drop", "malformed frame (headers cut short or invalid)")
            return Decision((*taps, Drop(DropReason.MALFORMED, in_port)), cacheable=False)
        drop = self._port_drop(port, key, tr)
        if drop is not None:
            return Decision((*taps, drop), deps=only_port)
        ctx = StageContext(key, data, port, state, tr, self.clock())
        ctx.ports.add(in_port)
        drop = vlan.classify(ctx)
        if drop is not None:
            return self._decision(ctx, [*taps, drop])
        pvlan.classify(ctx)
        taps = mirror.with_vlan(taps, ctx.vlan)  # copies carry the VLAN (ERSPAN, RSPAN)
        for stage in self.ingress_stages if policy else ():
            drop = stage.ingress(ctx)
            if drop is not None:
                return self._decision(ctx, [*taps, drop])
        if key.dst[:5] == _RESERVED_PREFIX and key.dst[5] < 0x10:
            if tr.enabled:
                tr.report("drop", f"{mac_str(key.dst)} is IEEE link-local: never forwarded")
            return self._decision(ctx, [*taps, *ctx.checks,
                                        Drop(DropReason.RESERVED_MULTICAST, in_port)])
        src, room = forward.learn(ctx)
        if isinstance(src, Drop):
            return self._decision(ctx, [*taps, src], room=room)
        actions: list[Action] = [*taps, *ctx.checks]
        if src is not None:
            actions.append(src)
        outs, drop, flooded = forward.lookup(ctx)
        copied = {c.session for c in taps}
        for out in outs:
            node = tr.report("output", f"port {out.name}") if tr.enabled else None
            if node is not None:
                tr.push(node)
            actions.append(self._egress(ctx, out, copied, policy))
            if node is not None:
                tr.pop()
        if drop is not None:
            actions.append(drop)
        if tr.enabled and not outs and drop is None:
            tr.report("drop", "no output")
        return self._decision(ctx, actions, flood=flooded and bool(outs), room=room,
                              cacheable=not isinstance(src, Learn))

    @staticmethod
    def _port_drop(port: PortRuntime, key: FlowKey, tr: Tracer) -> Drop | None:
        """Drops decided by the ingress port alone."""
        if not port.enabled:
            if tr.enabled:
                tr.report("drop", f"port {port.name} is down or disabled")
            return Drop(DropReason.PORT_DOWN, port.index)
        if port.mirror_dest and not port.allow_normal_io:
            if tr.enabled:
                tr.report("drop", f"port {port.name} is a mirror destination without normal "
                          "I/O: frames it sends are dropped")
            return Drop(DropReason.MIRROR_DEST_PORT, port.index)
        if key.src[0] & 1:
            if tr.enabled:
                tr.report("drop", f"source MAC {mac_str(key.src)} is a group address")
            return Drop(DropReason.SOURCE_MULTICAST, port.index)
        return None

    @staticmethod
    def _decision(ctx: StageContext, actions: list[Action], flood: bool = False,
                  room: bool = False, cacheable: bool = True) -> Decision:
        ports = set(ctx.ports)
        for a in actions:
            if isinstance(a, (Output, Drop)):
                ports.add(a.port)
        deps = Deps(tuple(dict.fromkeys(ctx.macs)), frozenset(ports),
                    ctx.vlan if flood else None, room)
        return Decision(tuple(actions), cacheable, deps, flood)

    def deliver(self, port: int, data: bytes, vlan: int,
                tracer: Tracer = NULL_TRACER) -> Decision:
        """Deliver a frame the switch itself made (a reject answer) to port ``port``.

        The frame is already in the port's wire format and is not judged by
        policy; it passes the port's egress taps like any frame the port
        receives (its copies carry ``vlan``). Never cached.
        """
        out = self.state.ports.get(port)
        if out is None or not out.enabled:
            if tracer.enabled:
                tracer.report("drop", f"port {port} is gone or down")
            return Decision((Drop(DropReason.PORT_DOWN, port),), cacheable=False)
        copies = mirror.egress_copies(out, self.state.mirrors, self.state.port_names, set(),
                                      extract(data, port), data, VLAN_KEEP, 0, vlan, tracer)
        return Decision((Output(port, mirrors=copies),), cacheable=False)

    def _egress(self, ctx: StageContext, out: PortRuntime, copied: set[int],
                policy: bool = True) -> Output | Drop:
        tr = ctx.tracer
        ctx.out_checks = []
        drop = pvlan.egress(ctx, out)  # the private VLAN rules (no-op outside a PVLAN)
        if drop is not None:
            return drop
        op_vid = vlan.egress(ctx, out)  # structural: before policy keeps state for a copy
        if isinstance(op_vid, Drop):
            return op_vid
        op, vid = ctx.out_vlan = op_vid
        for stage in self.egress_stages if policy else ():
            drop = stage.egress(ctx, out)
            if drop is not None:
                return drop
        if out.mtu and tr.enabled:  # checked per frame; the trace's replay says the verdict
            tr.report("mtu", f"port {out.name} has MTU {out.mtu} (largest packet after the "
                      "Ethernet header), checked per frame")
        if tr.enabled and out.backend is not None:
            where = out.backend.explain_tx(ctx.vlan, ctx.data)
            if where:
                tr.report("port-out", where)  # e.g. the overlay's VNI and VTEPs
        copies: tuple[Mirror, ...] = mirror.egress_copies(
            out, self.state.mirrors, self.state.port_names, copied, ctx.key, ctx.data, op,
            vid, ctx.vlan, tr)
        return Output(out.index, op, vid, tuple(ctx.out_checks), copies, out.mtu)

