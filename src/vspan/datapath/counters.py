"""Datapath counters: per port and per drop reason (and deciding rule).

Every frame received on a port has exactly one *fate*, counted on that port
(``docs/accounting.md``): forwarded (delivered to at least one output),
dropped (delivered nowhere; counted under the reason of its first drop) or
consumed (taken by the switch itself: frames of an RSPAN VLAN handed to the
session's destinations). :meth:`SwitchPortCounters.account` is the one place a
fate is counted; :mod:`vspan.datapath.accounting` checks the sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from vspan.datapath.decision import Drop

#: fates that are not a drop (a dropped frame's fate is its first :class:`Drop`)
CONSUMED: Final = 0  # neither delivered nor dropped: taken by the switch itself
FORWARDED: Final = 1  # delivered to at least one output

Fate = Drop | int


@dataclass(slots=True)
class SwitchPortCounters:
    """What the switch did with a port's traffic (as opposed to backend wire counters).

    ``rx_frames`` = ``forwarded`` + sum(``rx_dropped``) + ``consumed`` (the
    accounting invariant) between batches. ``dropped`` counts drops *at* this
    port: frames received here and dropped, and outputs to this port dropped
    (egress policy, MTU, transmit errors); one frame flooded to several ports
    can add to several ports' ``dropped`` and still count as forwarded once.
    """

    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    flooded: int = 0  # frames from this port flooded in their VLAN (once per frame)
    mirrored_out: int = 0  # mirror copies delivered to this port (as destination)
    dropped: int = 0  # drops at this port (ingress and per-output, see above)
    forwarded: int = 0  # frames received here delivered to at least one output
    consumed: int = 0  # frames received here taken by the switch (RSPAN VLAN traffic)
    rx_dropped: dict[str, int] = field(default_factory=dict)  # received, delivered nowhere
    # when the port last received / was sent a frame, and first did either on this switch
    # (the engine's clock; 0: never) -- a migration's switch-over is measured with them
    last_rx: float = 0.0
    last_tx: float = 0.0
    first_seen: float = 0.0

    def account(self, fate: Fate) -> None:
        """Count the fate of one frame received on this port."""
        if type(fate) is int:
            if fate:
                self.forwarded += 1
            else:
                self.consumed += 1
        else:
            assert isinstance(fate, Drop)
            self.add_rx_dropped(fate.reason.value)

    def add_rx_dropped(self, reason: str, n: int = 1) -> None:
        """Count ``n`` frames received here and delivered nowhere, under ``reason`` (their
        first drop's)."""
        self.rx_dropped[reason] = self.rx_dropped.get(reason, 0) + n

    def export(self) -> dict[str, Any]:
        """The counts, for :meth:`carry` elsewhere (``as_dict`` plus the drops of
        received frames by reason)."""
        return {**self.as_dict(), "rx_dropped": self.rx_dropped_by_reason()}

    def carry(self, values: Mapping[str, Any]) -> None:
        """Continue from counts made elsewhere (a port that migrated here keeps them):
        :meth:`export` of the port there. The accounting terms come along with
        ``rx_frames``, so received = forwarded + dropped + consumed holds here too."""
        for name in ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "flooded",
                     "mirrored_out", "dropped", "forwarded", "consumed"):
            setattr(self, name, getattr(self, name) + int(values.get(name, 0)))
        by_reason = values.get("rx_dropped", {})
        if isinstance(by_reason, Mapping):
            for reason, n in by_reason.items():
                self.add_rx_dropped(str(reason), int(n))

    def as_dict(self) -> dict[str, int]:
        """Plain mapping for JSON/metrics (``rx_dropped`` as its total; see
        :meth:`rx_dropped_by_reason`)."""
        return {
            "rx_frames": self.rx_frames,
            "rx_bytes": self.rx_bytes,
            "tx_frames": self.tx_frames,
            "tx_bytes": self.tx_bytes,
            "flooded": self.flooded,
            "mirrored_out": self.mirrored_out,
            "dropped": self.dropped,
            "forwarded": self.forwarded,
            "rx_dropped": sum(self.rx_dropped.values()),
            "consumed": self.consumed,
        }

    def rx_dropped_by_reason(self) -> dict[str, int]:
        """Frames received here and delivered nowhere, by the reason of their first drop."""
        return dict(sorted(self.rx_dropped.items()))


@dataclass(slots=True)
class DropCounters:
    """Dropped frames keyed by (port index, reason, rule id)."""

    by_key: dict[tuple[int, str, str], int] = field(default_factory=dict)

    def add(self, port: int, reason: str, rule: str = "", n: int = 1) -> None:
        """Count ``n`` drops."""
        key = (port, reason, rule)
        self.by_key[key] = self.by_key.get(key, 0) + n

    def total(self, reason: str | None = None) -> int:
        """All drops, or those of one reason."""
        return sum(v for (_, r, _), v in self.by_key.items() if reason is None or r == reason)

    def for_port(self, port: int) -> dict[tuple[str, str], int]:
        """(reason, rule) -> count for one port."""
        return {(r, rule): v for (p, r, rule), v in self.by_key.items() if p == port}
