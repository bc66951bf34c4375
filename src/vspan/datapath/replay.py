"""The one interpreter of cached action lists.

:func:`replay` runs a :class:`~vspan.datapath.decision.Decision`'s actions on
one frame, in order, through an :class:`Effects` object. Forwarding passes
effects that commit (send, count, update state: :mod:`vspan.datapath.fastpath`);
``vspan trace`` passes effects that peek and record
(:mod:`vspan.datapath.predict`). Both walk the same list with the same code,
so what a trace predicts for a frame is what forwarding does with it.

Order and scope (``docs/datapath.md``):

* top-level actions run in order; a failing top-level :class:`Check` stops
  the frame (its drop is counted; nothing after it runs: no learning, no
  output, no later copy);
* :class:`Learn` and :class:`Refresh` follow the ingress checks: the switch
  learns only from frames its ingress policy admits;
* an :class:`Output` runs its own checks first (one failing stops that
  output only), then delivers with its VLAN operation, then its egress
  copies of the frame as delivered.

The replay also says what became of the frame (its *fate*, counted on the
ingress port by the caller: ``docs/accounting.md``): forwarded when at least
one output delivered it, else dropped (the first :class:`Drop` it counted),
else consumed (a decision with neither: the switch took the frame, e.g. RSPAN
VLAN traffic handed to a session).
"""

from __future__ import annotations

from typing import Protocol

from vspan.datapath.counters import CONSUMED, FORWARDED, Fate
from vspan.datapath.decision import (
    OP_CHECK,
    OP_DROP,
    OP_MIRROR,
    OP_OUTPUT,
    OP_REFRESH,
    VLAN_KEEP,
    Check,
    CheckOutcome,
    Decision,
    Drop,
    Learn,
    Mirror,
    Refresh,
)
from vspan.datapath.fdb import FdbEntry
from vspan.datapath.flowkey import FlowKey
from vspan.datapath.mtu import too_big
from vspan.datapath.reasons import DropReason
from vspan.datapath.vlanops import apply as vlan_apply
from vspan.ports.base import Frame

_INGRESS_WIRE = (VLAN_KEEP, 0)


class Effects(Protocol):
    """What replaying a decision does to the world (committed or recorded).

    ``tx``: transmit queues by port that outputs are appended to directly (what
    :meth:`output` would do, without the call); ``None`` to have :meth:`output`
    called.
    """

    @property
    def tx(self) -> dict[int, list[Frame]] | None:
        """Transmit queues outputs go to directly, or ``None``."""
        ...

    def check(self, check: Check, data: bytes, key: FlowKey, now: float,
              wire: tuple[int, int]) -> CheckOutcome:
        """Run one per-frame check."""
        ...

    def mirror(self, copy: Mirror, frame: Frame) -> None:
        """Offer the frame (as seen at the copy's point) to a mirror session."""
        ...

    def learn(self, learn: Learn, now: float) -> None:
        """Learn a source MAC."""
        ...

    def refresh(self, refresh: Refresh, now: float) -> None:
        """Refresh a learned MAC's age."""
        ...

    def drop(self, drop: Drop, data: bytes, in_port: int) -> None:
        """Count a drop."""
        ...

    def flood(self, in_port: int) -> None:
        """Count a flooded frame."""
        ...

    def output(self, port: int, frame: Frame) -> None:
        """Deliver a frame to a port."""
        ...


def replay(d: Decision, f: Frame, key: FlowKey | None, in_port: int, now: float,
           fx: Effects, refresh: FdbEntry | None = None) -> Fate:
    """Run ``d``'s actions on frame ``f`` (received on ``in_port``) through ``fx``.

    ``key`` is the frame's flow key; it may be ``None`` only when the decision
    holds no checks (``d.needs_key`` false). ``refresh`` is the MAC-table entry
    the decision's :class:`Refresh` names, when the caller resolved it already
    (the flow cache does, once per flow).

    Returns the frame's fate: :data:`~vspan.datapath.counters.FORWARDED`, the
    first :class:`Drop` of a frame delivered nowhere, or
    :data:`~vspan.datapath.counters.CONSUMED`.
    """
    data = f.data
    tx = fx.tx
    sent = False
    first: Drop | None = None
    for op, a in d.program:  # (opcode, action): an int compare per action, not isinstance
        if op == OP_OUTPUT:
            if a.checks:
                assert key is not None
                stopped = False
                for c in a.checks:
                    out = fx.check(c, data, key, now, a.wire)
                    if out.drop is not None:
                        fx.drop(out.drop, data, in_port)
                        if first is None:
                            first = out.drop
                        stopped = True
                        break
                if stopped:
                    continue
            if a.mtu and len(data) - 14 > a.mtu:
                size = too_big(data, f.vnet, a.mtu)
                if size:
                    big = Drop(DropReason.MTU, a.port, detail=f"{size} > {a.mtu}")
                    fx.drop(big, data, in_port)
                    if first is None:
                        first = big
                    continue
            if a.vlan_op == VLAN_KEEP:
                of = f
            else:
                odata, ovnet = vlan_apply(a.vlan_op, a.vid, data, f.vnet)
                of = Frame(odata, ovnet, f.ts_ns, f.port, f.pid)
            if tx is None:
                fx.output(a.port, of)
            else:  # the committing effects' transmit queues, filled right here
                q = tx.get(a.port)
                if q is None:
                    tx[a.port] = [of]
                else:
                    q.append(of)
            sent = True
            for m in a.mirrors:
                fx.mirror(m, of)
        elif op == OP_CHECK:
            assert key is not None
            out = fx.check(a, data, key, now, _INGRESS_WIRE)
            if out.drop is not None:
                fx.drop(out.drop, data, in_port)
                if sent:  # (the pipeline puts ingress checks before outputs)
                    return FORWARDED
                return out.drop if first is None else first
        elif op == OP_MIRROR:
            fx.mirror(a, f)
        elif op == OP_REFRESH:
            if refresh is not None:
                refresh.last_seen = now
            else:
                fx.refresh(a, now)
        elif op == OP_DROP:
            fx.drop(a, data, in_port)
            if first is None:
                first = a
        else:
            fx.learn(a, now)
    if d.flood:
        fx.flood(in_port)
    if sent:
        return FORWARDED
    return CONSUMED if first is None else first
