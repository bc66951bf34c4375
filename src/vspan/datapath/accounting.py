"""The accounting invariant: every frame a port received has exactly one fate.

Per port, between batches (``docs/accounting.md``)::

    rx_frames == forwarded + sum(rx_dropped by reason) + consumed

:func:`port_terms` gives the terms of one port, :func:`check` every port
whose sum is off, with the difference. The fates are counted in one place
(:meth:`~vspan.datapath.counters.SwitchPortCounters.account`, called by the
fast path for every frame it receives); this module only reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vspan.datapath.counters import SwitchPortCounters
from vspan.datapath.state import SwitchState


@dataclass(frozen=True, slots=True)
class PortAccount:
    """The terms of one port's invariant."""

    port: str
    received: int
    forwarded: int
    dropped: dict[str, int]  # by the reason of the frame's first drop
    consumed: int

    @property
    def accounted(self) -> int:
        """Frames with a counted fate."""
        return self.forwarded + sum(self.dropped.values()) + self.consumed

    @property
    def difference(self) -> int:
        """received - accounted: positive when frames went unaccounted, negative when
        some were counted twice."""
        return self.received - self.accounted

    def describe(self) -> str:
        """One line: the terms and, when off, the difference."""
        drops = sum(self.dropped.values())
        text = (f"port {self.port}: received {self.received}, forwarded {self.forwarded} + "
                f"dropped {drops} + consumed {self.consumed} = {self.accounted}")
        return text if not self.difference else f"{text}: difference {self.difference:+d}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"port": self.port, "received": self.received, "forwarded": self.forwarded,
                "dropped": dict(self.dropped), "consumed": self.consumed,
                "difference": self.difference}


def port_terms(name: str, c: SwitchPortCounters) -> PortAccount:
    """One port's terms from its counters."""
    return PortAccount(name, c.rx_frames, c.forwarded, c.rx_dropped_by_reason(), c.consumed)


def accounts(state: SwitchState) -> list[PortAccount]:
    """Every port's terms, in port order. Read on the engine thread (between batches)."""
    return [port_terms(rt.name, rt.counters) for _, rt in sorted(state.ports.items())]


def check(state: SwitchState) -> list[PortAccount]:
    """The ports whose fates do not add up to what they received (empty: the invariant
    holds)."""
    return [a for a in accounts(state) if a.difference]
