"""Datapath counters: per port and per drop reason (and deciding rule)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SwitchPortCounters:
    """What the switch did with a port's traffic (as opposed to backend wire counters)."""

    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    flooded: int = 0  # frames from this port flooded in their VLAN (once per frame)
    mirrored_out: int = 0  # mirror copies delivered to this port (as destination)
    dropped: int = 0
    # when the port last received / was sent a frame, and first did either on this switch
    # (the engine's clock; 0: never) -- a migration's switch-over is measured with them
    last_rx: float = 0.0
    last_tx: float = 0.0
    first_seen: float = 0.0

    def carry(self, values: dict[str, int]) -> None:
        """Continue from counts made elsewhere (a port that migrated here keeps them)."""
        for name in ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "flooded",
                     "mirrored_out", "dropped"):
            setattr(self, name, getattr(self, name) + int(values.get(name, 0)))

    def as_dict(self) -> dict[str, int]:
        """Plain mapping for JSON/metrics."""
        return {
            "rx_frames": self.rx_frames,
            "rx_bytes": self.rx_bytes,
            "tx_frames": self.tx_frames,
            "tx_bytes": self.tx_bytes,
            "flooded": self.flooded,
            "mirrored_out": self.mirrored_out,
            "dropped": self.dropped,
        }


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
