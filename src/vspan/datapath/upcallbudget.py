"""Fairness of the slow path: a per-port budget of upcalls (cache misses).

Every frame the flow cache cannot answer runs the whole Python pipeline, a hundred
times the cost of a cached frame. A port that sends nothing but misses (a VM churning
source MACs, a scanner opening a new flow per frame) would take the switch's CPU from
every other port's cached flows. As OVS's upcall handlers do, each port gets a token
bucket of misses: ``rate`` per second, up to ``burst`` at once. A miss beyond it is
dropped with the reason ``upcall-budget`` (counted at its port) before the pipeline
runs — or ``malformed`` when the frame does not parse (the more telling reason; the parse
is done for the cache lookup anyway). Frames whose flows are cached never ask the budget.
"""

from __future__ import annotations


class UpcallBudget:
    """Token buckets of misses, one per ingress port (``rate`` 0: no limit)."""

    __slots__ = ("_buckets", "burst", "rate")

    def __init__(self, rate: int) -> None:
        self.rate = 0
        self.burst = 0.0
        self._buckets: dict[int, list[float]] = {}  # port -> [tokens, last refill]
        self.configure(rate)

    def configure(self, rate: int) -> None:
        """Set the budget: ``rate`` misses per second and port; the bucket holds a
        second's worth (at least 64: one full batch); 0 = unlimited."""
        self.rate = rate
        self.burst = float(max(64, rate)) if rate else 0.0
        self._buckets.clear()

    def admit(self, port: int, now: float) -> bool:
        """Whether ``port`` may take one more miss up the slow path at time ``now``."""
        rate = self.rate
        if not rate:
            return True
        b = self._buckets.get(port)
        if b is None:
            self._buckets[port] = [self.burst - 1.0, now]
            return True
        tokens = b[0] + (now - b[1]) * rate
        if tokens > self.burst:
            tokens = self.burst
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return True
        b[0] = tokens
        return False

    def forget(self, port: int) -> None:
        """Drop the bucket of a removed port."""
        self._buckets.pop(port, None)
