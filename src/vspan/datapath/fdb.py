"""The forwarding database: learned MAC addresses per VLAN, with aging and limits."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class LearnResult(enum.Enum):
    """What :meth:`Fdb.learn` did."""

    NEW = "new"
    MOVED = "moved"
    REFRESHED = "refreshed"
    PORT_LIMIT = "port-limit"
    TABLE_FULL = "table-full"
    STATIC = "static"  # a static entry exists; nothing learned


@dataclass(slots=True)
class FdbEntry:
    """Where a MAC lives on one VLAN."""

    port: int
    last_seen: float
    static: bool = False


class Fdb:
    """MAC table keyed by (VLAN, MAC). Any change bumps ``version``."""

    def __init__(self, max_entries: int = 16384, aging_seconds: float = 300.0) -> None:
        self.max_entries = max_entries
        self.aging_seconds = aging_seconds
        self.entries: dict[tuple[int, bytes], FdbEntry] = {}
        self.per_port: dict[int, int] = {}
        self.version = 0
        self.moves = 0
        self.learned = 0

    def lookup(self, vlan: int, mac: bytes) -> FdbEntry | None:
        """The entry for ``mac`` on ``vlan``, if any."""
        return self.entries.get((vlan, mac))

    def check(self, vlan: int, mac: bytes, port: int, port_limit: int) -> LearnResult:
        """What learning ``mac`` on ``port`` would do, without doing it (what :meth:`learn`
        then does: a move onto a port at its MAC limit is refused like a new MAC)."""
        entry = self.entries.get((vlan, mac))
        if entry is not None:
            if entry.static:
                return LearnResult.STATIC
            if entry.port == port:
                return LearnResult.REFRESHED
        if port_limit and self.per_port.get(port, 0) >= port_limit:
            return LearnResult.PORT_LIMIT
        if entry is not None:
            return LearnResult.MOVED
        if len(self.entries) >= self.max_entries:
            return LearnResult.TABLE_FULL
        return LearnResult.NEW

    def learn(self, vlan: int, mac: bytes, port: int, now: float, port_limit: int = 0
              ) -> LearnResult:
        """Learn or refresh ``mac`` on ``port`` as :meth:`check` says; bumps ``version`` on
        any change (NEW or MOVED: the entry of ``(vlan, mac)`` changed)."""
        result = self.check(vlan, mac, port, port_limit)
        key = (vlan, mac)
        if result is LearnResult.REFRESHED:
            self.entries[key].last_seen = now
        elif result is LearnResult.MOVED:
            entry = self.entries[key]
            self.per_port[entry.port] -= 1
            entry.port = port
            entry.last_seen = now
            self.per_port[port] = self.per_port.get(port, 0) + 1
            self.version += 1
            self.moves += 1
        elif result is LearnResult.NEW:
            self.entries[key] = FdbEntry(port, now)
            self.per_port[port] = self.per_port.get(port, 0) + 1
            self.version += 1
            self.learned += 1
        return result

    def remove(self, vlan: int, mac: bytes) -> bool:
        """Forget one entry."""
        entry = self.entries.pop((vlan, mac), None)
        if entry is None:
            return False
        self.per_port[entry.port] -= 1
        self.version += 1
        return True

    def flush_port(self, port: int) -> list[tuple[int, bytes]]:
        """Forget everything learned on ``port`` (port removed, down, or re-VLANed); return
        the (VLAN, MAC) pairs forgotten."""
        doomed = [k for k, e in self.entries.items() if e.port == port]
        for k in doomed:
            del self.entries[k]
        if doomed:
            self.per_port[port] = 0
            self.version += 1
        return doomed

    def flush_vlans(self, vlans: set[int]) -> list[tuple[int, bytes]]:
        """Forget everything learned in ``vlans`` (a private VLAN domain changed); return
        the (VLAN, MAC) pairs forgotten."""
        doomed = [k for k in self.entries if k[0] in vlans]
        for k in doomed:
            entry = self.entries.pop(k)
            self.per_port[entry.port] -= 1
        if doomed:
            self.version += 1
        return doomed

    def age(self, now: float) -> list[tuple[int, bytes]]:
        """Remove dynamic entries idle for longer than the aging time; return their
        (VLAN, MAC) pairs."""
        limit = now - self.aging_seconds
        doomed = [k for k, e in self.entries.items() if not e.static and e.last_seen < limit]
        for k in doomed:
            entry = self.entries.pop(k)
            self.per_port[entry.port] -= 1
        if doomed:
            self.version += 1
        return doomed

    def __len__(self) -> int:
        return len(self.entries)
