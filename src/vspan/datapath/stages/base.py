"""What a pipeline stage sees, and the protocols policy stages implement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from vspan.datapath.decision import Drop, Hook
from vspan.datapath.flowkey import FlowKey
from vspan.datapath.state import PortRuntime, SwitchState
from vspan.datapath.trace import Tracer


@dataclass(slots=True)
class StageContext:
    """Per-frame working state while the pipeline decides (slow path only)."""

    key: FlowKey
    data: bytes
    in_port: PortRuntime
    state: SwitchState
    tracer: Tracer
    now: float
    vlan: int = -1  # classified VLAN (-1 until the VLAN stage ran)
    hooks: list[Hook] = field(default_factory=list)  # per-frame ingress checks
    out_hooks: list[Hook] = field(default_factory=list)  # per-frame checks for one output
    out_vlan: tuple[int, int] = (0, 0)  # (VLAN op, VID) delivering to the output being judged


class IngressStage(Protocol):
    """A policy stage that may drop a frame entering the switch from ``ctx.in_port``.

    Called after VLAN classification. Decisions must depend only on FlowKey
    fields (they are cached); per-frame state goes into ``ctx.hooks``.
    """

    name: str

    def ingress(self, ctx: StageContext) -> Drop | None:
        """Return a Drop to stop the frame."""
        ...


class EgressStage(Protocol):
    """A policy stage that may stop the copy of a frame to one output port."""

    name: str

    def egress(self, ctx: StageContext, out: PortRuntime) -> Drop | None:
        """Return a Drop to stop delivery to ``out``; per-frame checks go in ``ctx.out_hooks``."""
        ...
