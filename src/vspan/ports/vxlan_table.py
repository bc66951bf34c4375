"""The overlay's own forwarding table: which remote VTEP a MAC lives behind, per VLAN.

The switch's FDB only knows "behind the overlay port"; this table knows the
host. Entries are learned from received VXLAN packets (inner source MAC →
outer source address) or pinned by configuration (static). Learned entries
expire after ``aging_seconds`` of silence (checked when looked up, and swept
when the table is full); their number is bounded by ``max_learned`` so a
hostile underlay cannot grow it without limit. Per-VTEP traffic counters
live here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(slots=True)
class RemoteMac:
    """Where one MAC of one VLAN lives."""

    vtep: str
    last_seen: float
    static: bool = False


@dataclass(slots=True)
class VtepCounters:
    """Traffic with one remote VTEP (datagrams on the wire, inner-frame bytes)."""

    tx_frames: int = 0
    tx_bytes: int = 0
    tx_errors: int = 0
    rx_frames: int = 0
    rx_bytes: int = 0
    rx_drops: dict[str, int] = field(default_factory=dict)  # reason -> packets

    def as_dict(self) -> dict[str, object]:
        """Counters as a plain mapping."""
        return {"tx_frames": self.tx_frames, "tx_bytes": self.tx_bytes,
                "tx_errors": self.tx_errors, "rx_frames": self.rx_frames,
                "rx_bytes": self.rx_bytes, "rx_drops": dict(sorted(self.rx_drops.items()))}


class RemoteTable:
    """MAC → VTEP per VLAN, with learning, aging, a size bound and static entries."""

    def __init__(self, aging_seconds: float, max_learned: int) -> None:
        self.aging_seconds = aging_seconds
        self.max_learned = max_learned
        self.entries: dict[tuple[int, bytes], RemoteMac] = {}
        self.learned = 0  # dynamic entries in the table now
        self.moves = 0  # a learned MAC showed up behind another VTEP
        self.full = 0  # MACs not learned because the table was full

    def lookup(self, vlan: int, mac: bytes, now: float) -> str | None:
        """The VTEP of ``mac`` on ``vlan``, or ``None`` (unknown or expired)."""
        e = self.entries.get((vlan, mac))
        if e is None:
            return None
        if not e.static and now - e.last_seen > self.aging_seconds:
            del self.entries[(vlan, mac)]
            self.learned -= 1
            return None
        return e.vtep

    def peek(self, vlan: int, mac: bytes, now: float) -> str | None:
        """Like :meth:`lookup` without forgetting an expired entry (for views)."""
        e = self.entries.get((vlan, mac))
        if e is None or (not e.static and now - e.last_seen > self.aging_seconds):
            return None
        return e.vtep

    def learn(self, vlan: int, mac: bytes, vtep: str, now: float) -> None:
        """Record that ``mac`` on ``vlan`` was just seen behind ``vtep``."""
        key = (vlan, mac)
        e = self.entries.get(key)
        if e is not None:
            if e.static:
                return
            if e.vtep != vtep:
                e.vtep = vtep
                self.moves += 1
            e.last_seen = now
            return
        if self.learned >= self.max_learned and not self.sweep(now):
            self.full += 1
            return
        self.entries[key] = RemoteMac(vtep, now)
        self.learned += 1

    def sweep(self, now: float) -> int:
        """Forget expired learned entries; return how many."""
        limit = now - self.aging_seconds
        doomed = [k for k, e in self.entries.items() if not e.static and e.last_seen < limit]
        for k in doomed:
            del self.entries[k]
        self.learned -= len(doomed)
        return len(doomed)

    def set_static(self, entries: Iterable[tuple[int, bytes, str]]) -> None:
        """Replace every static entry with ``(vlan, mac, vtep)`` triples (they win over
        learned entries for the same MAC)."""
        for k in [k for k, e in self.entries.items() if e.static]:
            del self.entries[k]
        for vlan, mac, vtep in entries:
            if (vlan, mac) in self.entries:
                self.learned -= 1
            self.entries[(vlan, mac)] = RemoteMac(vtep, 0.0, static=True)

    def forget(self, keep: Callable[[int, str], bool]) -> int:
        """Forget learned entries for which ``keep(vlan, vtep)`` is false; return how many."""
        doomed = [k for k, e in self.entries.items() if not e.static and not keep(k[0], e.vtep)]
        for k in doomed:
            del self.entries[k]
        self.learned -= len(doomed)
        return len(doomed)

    def configure(self, aging_seconds: float, max_learned: int) -> None:
        """New aging time and size bound (entries over the bound stay until they expire)."""
        self.aging_seconds = aging_seconds
        self.max_learned = max_learned

    def rows(self, now: float) -> list[dict[str, object]]:
        """The live entries, sorted by VLAN and MAC."""
        out: list[dict[str, object]] = []
        for (vlan, mac), e in sorted(self.entries.items()):
            age = now - e.last_seen
            if not e.static and age > self.aging_seconds:
                continue
            out.append({"vlan": vlan, "mac": ":".join(f"{b:02x}" for b in mac),
                        "vtep": e.vtep, "static": e.static,
                        "age": 0 if e.static else round(age, 1)})
        return out

    def per_vtep(self, now: float) -> dict[str, int]:
        """Live MACs behind each VTEP."""
        out: dict[str, int] = {}
        for e in self.entries.values():
            if e.static or now - e.last_seen <= self.aging_seconds:
                out[e.vtep] = out.get(e.vtep, 0) + 1
        return out

    def __len__(self) -> int:
        return len(self.entries)
