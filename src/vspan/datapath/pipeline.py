"""The pipeline: runs the stages on one frame and returns a :class:`Decision`.

port rx -> ingress tap -> guards -> VLAN classify -> policy (in) -> L2 forward
-> per output: VLAN egress -> policy (out) -> egress tap -> port tx

The same code serves the datapath (tracer disabled) and ``vspan trace``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from vspan.datapath.decision import VLAN_KEEP, Decision, Drop, Output
from vspan.datapath.flowkey import ETH_P_8021Q, FlowKey, mac_str
from vspan.datapath.mtu import ip_size
from vspan.datapath.reasons import DropReason
from vspan.datapath.stages import forward, mirror, vlan
from vspan.datapath.stages.base import EgressStage, IngressStage, StageContext
from vspan.datapath.state import PortRuntime, SwitchState
from vspan.datapath.trace import NULL_TRACER, Tracer

if TYPE_CHECKING:
    from vspan.policy.build import SwitchPolicy

_RESERVED_PREFIX = b"\x01\x80\xc2\x00\x00"


class Pipeline:
    """Decides what happens to frames; holds no per-frame state of its own."""

    def __init__(self, state: SwitchState, clock: Callable[[], float] = time.monotonic) -> None:
        self.state = state
        self.clock = clock
        self.ingress_stages: list[IngressStage] = []
        self.egress_stages: list[EgressStage] = []

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
            return Decision(drops=(Drop(DropReason.PORT_DOWN, in_port, detail="no such port"),),
                            cacheable=False)
        if tr.enabled:
            tr.report("port", f"received on port {port.name} ({port.config.type.value} "
                      f"{port.config.ifname(port.name)}), {len(data)} bytes")
        if port.rspan_in and key is not None and key.vlan in port.rspan_in \
                and key.tpid == ETH_P_8021Q:
            return mirror.rspan_delivery(port, key.vlan, state.mirrors, state.port_names, tr)
        taps = mirror.ingress_copies(port, state.mirrors, state.port_names, tr)
        if key is None:
            if tr.enabled:
                tr.report("drop", "malformed frame (headers cut short or invalid)")
            return Decision(taps, drops=(Drop(DropReason.MALFORMED, in_port),), cacheable=False)
        if not port.enabled:
            if tr.enabled:
                tr.report("drop", f"port {port.name} is down or disabled")
            return Decision(taps, drops=(Drop(DropReason.PORT_DOWN, in_port),))
        if port.mirror_dest and not port.allow_normal_io:
            if tr.enabled:
                tr.report("drop", f"port {port.name} is a mirror destination without normal "
                          "I/O: frames it sends are dropped")
            return Decision(taps, drops=(Drop(DropReason.MIRROR_DEST_PORT, in_port),))
        if key.src[0] & 1:
            if tr.enabled:
                tr.report("drop", f"source MAC {mac_str(key.src)} is a group address")
            return Decision(taps, drops=(Drop(DropReason.SOURCE_MULTICAST, in_port),))
        ctx = StageContext(key, data, port, state, tr, self.clock())
        drop = vlan.classify(ctx)
        if drop is not None:
            return Decision(taps, drops=(drop,))
        taps = mirror.with_vlan(taps, ctx.vlan)  # copies carry the VLAN (ERSPAN, RSPAN)
        for stage in self.ingress_stages if policy else ():
            drop = stage.ingress(ctx)
            if drop is not None:
                return Decision(taps, tuple(ctx.hooks), drops=(drop,))
        if key.dst[:5] == _RESERVED_PREFIX and key.dst[5] < 0x10:
            if tr.enabled:
                tr.report("drop", f"{mac_str(key.dst)} is IEEE link-local: never forwarded")
            return Decision(taps, tuple(ctx.hooks),
                            drops=(Drop(DropReason.RESERVED_MULTICAST, in_port),))
        drop, learn, refresh = forward.learn(ctx)
        if drop is not None:
            return Decision(taps, tuple(ctx.hooks), drops=(drop,))
        outs, drop, flooded = forward.lookup(ctx)
        outputs: list[Output] = []
        drops: list[Drop] = [drop] if drop is not None else []
        copied = {c.session for c in taps}
        for out in outs:
            node = tr.report("output", f"port {out.name}") if tr.enabled else None
            if node is not None:
                tr.push(node)
            result = self._egress(ctx, out, copied, policy)
            if node is not None:
                tr.pop()
            if isinstance(result, Drop):
                drops.append(result)
            else:
                outputs.append(result)
        if tr.enabled and not outputs and not drops:
            tr.report("drop", "no output")
        return Decision(taps, tuple(ctx.hooks), tuple(outputs), tuple(drops), learn, refresh,
                        cacheable=learn is None, flooded=flooded and bool(outs))

    def deliver(self, port: int, vlan: int, tracer: Tracer = NULL_TRACER) -> Decision:
        """Deliver a frame the switch itself made (a reject answer) to port ``port``.

        The frame is already in the port's wire format and is not judged by
        policy; it passes the port's egress taps like any frame the port
        receives (its copies carry ``vlan``).
        """
        out = self.state.ports.get(port)
        if out is None or not out.enabled:
            if tracer.enabled:
                tracer.report("drop", f"port {port} is gone or down")
            return Decision(drops=(Drop(DropReason.PORT_DOWN, port),), cacheable=False)
        copies = mirror.egress_copies(out, self.state.mirrors, self.state.port_names, set(),
                                      VLAN_KEEP, 0, tracer, vlan)
        return Decision(outputs=(Output(port, mirrors=copies),), cacheable=False)

    def _egress(self, ctx: StageContext, out: PortRuntime, copied: set[int],
                policy: bool = True) -> Output | Drop:
        ctx.out_hooks = []
        op_vid = vlan.egress(ctx, out)  # structural: before policy keeps state for a copy
        if isinstance(op_vid, Drop):
            return op_vid
        op, vid = ctx.out_vlan = op_vid
        for stage in self.egress_stages if policy else ():
            drop = stage.egress(ctx, out)
            if drop is not None:
                return drop
        tr = ctx.tracer
        if out.mtu and tr.enabled:  # the engine checks every frame; a trace says the verdict
            size = ip_size(ctx.data)
            if size > out.mtu:
                tr.report("mtu", f"port {out.name} has MTU {out.mtu} (largest packet after "
                          f"the Ethernet header); this one has {size}: drop")
                return Drop(DropReason.MTU, out.index, detail=f"{size} > {out.mtu}")
            tr.report("mtu", f"{size}-byte packet fits port {out.name}'s MTU {out.mtu}")
        if tr.enabled and out.backend is not None:
            where = out.backend.explain_tx(ctx.vlan, ctx.data)
            if where:
                tr.report("port-out", where)  # e.g. the overlay's VNI and VTEPs
        copies = mirror.egress_copies(out, self.state.mirrors, self.state.port_names, copied,
                                      op, vid, ctx.tracer, ctx.vlan)
        return Output(out.index, op, vid, tuple(ctx.out_hooks), copies, out.mtu)


def build_pipeline(state: SwitchState, clock: Callable[[], float] = time.monotonic
                   ) -> tuple[Pipeline, SwitchPolicy]:
    """A pipeline with the policy stage (guards, ACLs, firewall) for ``state.config``."""
    from vspan.policy.build import SwitchPolicy
    from vspan.policy.stage import install

    pipeline = Pipeline(state, clock)
    policy = SwitchPolicy.from_config(state.config.port_policies(), state.config.firewall)
    install(pipeline, policy)
    return pipeline, policy
