"""The flow cache: flow key -> (Decision, FlowKey), dropped whole when the generation moves.

Keys are either a :func:`~vspan.datapath.flowkey.fast_key` (common IPv4 frames)
or the full :class:`~vspan.datapath.flowkey.FlowKey`; the value carries the
FlowKey so per-frame hooks get it without parsing again.
"""

from __future__ import annotations

from vspan.datapath.decision import Decision
from vspan.datapath.flowkey import FlowKey


class FlowCache:
    """A bounded dict of decisions tagged with the switch generation they were made in."""

    __slots__ = ("entries", "evictions", "generation", "hits", "invalidations", "max_entries",
                 "misses")

    def __init__(self, max_entries: int = 65536) -> None:
        self.entries: dict[object, tuple[Decision, FlowKey]] = {}
        self.max_entries = max_entries
        self.generation = -1
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self.evictions = 0

    def sync(self, generation: int) -> None:
        """Forget every entry if the switch changed since they were made."""
        if generation != self.generation:
            if self.entries:
                self.entries.clear()
                self.invalidations += 1
            self.generation = generation

    def put(self, key: object, value: tuple[Decision, FlowKey]) -> None:
        """Remember a decision (when caching is on and the decision is cacheable)."""
        if not self.max_entries or not value[0].cacheable:
            return
        if len(self.entries) >= self.max_entries:
            self.entries.clear()  # simple and bounded; refills from the pipeline
            self.evictions += 1
        self.entries[key] = value

    def stats(self) -> dict[str, int]:
        """Counters for show/metrics."""
        return {
            "entries": len(self.entries),
            "hits": self.hits,
            "misses": self.misses,
            "invalidations": self.invalidations,
            "evictions": self.evictions,
            "generation": self.generation,
        }
