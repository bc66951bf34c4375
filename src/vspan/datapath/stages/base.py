"""What a pipeline stage sees, and the protocols policy stages implement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from vspan.datapath.decision import Check, Drop
from vspan.datapath.flowkey import FlowKey
from vspan.datapath.trace import Tracer

if TYPE_CHECKING:  # state imports the plug-in protocols, which name the stages
    from vspan.datapath.fdb import FdbEntry
    from vspan.datapath.state import PortRuntime, SwitchState


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
    checks: list[Check] = field(default_factory=list)  # per-frame ingress checks
    out_checks: list[Check] = field(default_factory=list)  # per-frame checks for one output
    out_vlan: tuple[int, int] = (0, 0)  # (VLAN op, VID) delivering to the output being judged
    macs: list[tuple[int, bytes]] = field(default_factory=list)  # MAC-table lookups made
    ports: set[int] = field(default_factory=set)  # ports whose settings were read

    def fdb_lookup(self, vlan: int, mac: bytes) -> FdbEntry | None:
        """Look ``mac`` up in ``vlan``, recording that the decision depends on the answer."""
        self.macs.append((vlan, mac))
        return self.state.fdb.lookup(vlan, mac)


class IngressStage(Protocol):
    """A policy stage that may drop a frame entering the switch from ``ctx.in_port``.

    Called after VLAN classification. Decisions must depend only on FlowKey
    fields and on what the context records (they are cached); per-frame state
    is reached through :class:`~vspan.datapath.decision.Check` actions added to
    ``ctx.checks``.
    """

    name: str

    def ingress(self, ctx: StageContext) -> Drop | None:
        """Return a Drop to stop the frame."""
        ...


class EgressStage(Protocol):
    """A policy stage that may stop the copy of a frame to one output port."""

    name: str

    def egress(self, ctx: StageContext, out: PortRuntime) -> Drop | None:
        """Return a Drop to stop delivery to ``out``; per-frame checks go in
        ``ctx.out_checks``."""
        ...
