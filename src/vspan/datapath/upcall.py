"""The slow path: a frame the cache cannot answer goes through the pipeline, and the
decision is installed with what it depends on.

A decision holding a :class:`~vspan.datapath.decision.Learn` is never cached:
learning happens when it is replayed (after the ingress checks), and the next
frame of the flow, now with a known source, gets a decision that is.
"""

from __future__ import annotations

from weakref import WeakValueDictionary

from vspan.datapath.decision import Decision, Drop
from vspan.datapath.flowcache import FlowCache
from vspan.datapath.flowkey import FlowKey
from vspan.datapath.pipeline import Pipeline
from vspan.datapath.reasons import DropReason
from vspan.datapath.upcallbudget import UpcallBudget


class Upcall:
    """Decides misses and installs the decisions."""

    def __init__(self, pipeline: Pipeline, cache: FlowCache, budget: int = 0) -> None:
        self.pipeline = pipeline
        self.cache = cache
        self.upcalls = 0
        self.budget = UpcallBudget(budget)  # misses per second and port (0: unlimited)
        self.budget_drops = 0  # misses dropped by the budget
        self._over: dict[tuple[int, DropReason], Decision] = {}  # over-budget drops
        # one object for equal decisions (the flows of one port pair share theirs): a
        # cached entry then costs its key and a reference
        self._interned: WeakValueDictionary[Decision, Decision] = WeakValueDictionary()

    def decide(self, fast: object, key: FlowKey | None, data: bytes, in_port: int) -> Decision:
        """Run the pipeline for a frame the cache missed; cache the decision when it may be.

        ``fast`` is the frame's fast key (``None`` when it has none): the decision is
        cached under it, or under the full flow ``key``.
        """
        self.upcalls += 1
        d = self.pipeline.run(key, data, in_port)
        if key is not None and d.cacheable and self.cache.max_entries:
            d = self._interned.setdefault(d, d)
            ref = None
            if d.refresh is not None:
                r = d.refresh
                ref = self.pipeline.state.fdb.lookup(r.vlan, r.mac)
            self.cache.put(fast if fast is not None else key, d, key, ref)
        return d

    def over_budget(self, in_port: int, malformed: bool = False) -> Decision:
        """The decision for a miss beyond ``in_port``'s budget: dropped with the reason
        ``upcall-budget``, without running the pipeline; never cached. A ``malformed``
        frame (one that does not parse) is dropped with that reason instead: it says more,
        and the budget would have dropped it all the same."""
        if malformed:
            reason = DropReason.MALFORMED
        else:
            self.budget_drops += 1
            reason = DropReason.UPCALL_BUDGET
        d = self._over.get((in_port, reason))
        if d is None:
            d = self._over[(in_port, reason)] = Decision((Drop(reason, in_port),),
                                                        cacheable=False)
        return d

    def deliver(self, port: int, data: bytes, vlan: int) -> Decision:
        """A frame the switch made for ``port``'s VM (a reject answer): out of the port
        through its egress taps, never cached."""
        return self.pipeline.deliver(port, data, vlan)

    def decide_unjudged(self, key: FlowKey | None, data: bytes, in_port: int) -> Decision:
        """A frame the switch originates on ``in_port``'s behalf (a reject answer): switched,
        not judged by policy, never cached."""
        return self.pipeline.run(key, data, in_port, policy=False)
