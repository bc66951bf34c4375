"""The flow cache: flow key -> cached decision, forgotten exactly when what it read changes.

Keys are either a :func:`~vspan.datapath.flowkey.fast_key` (common IPv4 frames)
or the full :class:`~vspan.datapath.flowkey.FlowKey`. A value is a tuple
``(decision, flow key or None, MAC-table entry to refresh or None)``: the flow
key is kept only when per-frame checks need it, and the refresh target is the
:class:`~vspan.datapath.fdb.FdbEntry` the decision's ``Refresh`` action names,
resolved once at install.

Invalidation follows each decision's :class:`~vspan.datapath.decision.Deps`
(as Open vSwitch's revalidators do with the facts a megaflow was built from):

* a MAC learned, moved or forgotten on a VLAN forgets the entries that looked
  that (VLAN, MAC) up, found or not (an index kept per pair);
* the MAC table gaining room (an entry forgotten or moved) forgets the few
  entries decided by a full table or a port's MAC limit;
* a port whose settings or link changed forgets the entries that read it and
  the floods of the VLANs it belongs or belonged to (a scan: configuration
  changes are rare).

Nothing else empties the cache: a VM churning source MACs invalidates nothing
but its own misses. When full, an eighth of the entries, chosen at random, is
evicted: a working set cycling through more flows than the cache holds keeps
hitting on the part that stays (about 30 % of frames for 100 000 flows in 65 536
entries, where evicting the oldest — or the least recently used — misses every
frame), and a hot flow is evicted as seldom as under FIFO (one round in eight).
Random needs nothing on the hit path, which the native replay does not report.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable
from itertools import islice
from typing import Any, Protocol

from vspan.datapath.decision import Decision, Deps
from vspan.datapath.fdb import FdbEntry
from vspan.datapath.flowkey import FlowKey

CacheValue = tuple[Decision, FlowKey | None, FdbEntry | None]
MacDep = tuple[int, bytes]

EVICT_FRACTION = 8  # a full cache evicts 1/8 of its entries, chosen at random


class Mirrored(Protocol):
    """A table that follows the cache's fast-key entries (the native replay's)."""

    def install(self, key: tuple[Any, ...], d: Decision, ref: FdbEntry | None) -> None:
        """An entry was stored under fast key ``key``."""
        ...

    def forget(self, key: tuple[Any, ...]) -> None:
        """The entry of fast key ``key`` was forgotten."""
        ...

    def __len__(self) -> int:
        ...


class FlowCache:
    """A bounded mapping of flow keys to decisions, with dependency-based invalidation."""

    __slots__ = ("_by_mac", "_random", "_room", "entries", "evictions", "hits", "invalidated",
                 "invalidations", "max_entries", "misses", "native")

    def __init__(self, max_entries: int = 65536, seed: int | None = None) -> None:
        self.entries: dict[object, CacheValue] = {}
        self.max_entries = max_entries
        self._by_mac: dict[MacDep, set[object]] = {}
        self._room: set[object] = set()
        self.hits = 0
        self.misses = 0
        self.invalidations = 0  # invalidation events that forgot at least one entry
        self.invalidated = 0  # entries forgotten by invalidation
        self.evictions = 0  # entries evicted for room
        # the native replay's table: told of every fast-key install and forget
        self.native: Mirrored | None = None
        self._random = random.Random(seed)  # which entries an eviction picks

    # ----------------------------------------------------------------- install
    def put(self, key: object, decision: Decision, flow: FlowKey | None,
            refresh: FdbEntry | None) -> None:
        """Remember a cacheable decision (a no-op when caching is off or it is not)."""
        if not self.max_entries or not decision.cacheable:
            return
        if key in self.entries:
            self._forget(key)
        elif len(self.entries) >= self.max_entries:
            self._evict(max(1, self.max_entries // EVICT_FRACTION))
        self.entries[key] = (decision, flow if decision.needs_key else None, refresh)
        deps = decision.deps
        for dep in deps.macs:
            keys = self._by_mac.get(dep)
            if keys is None:
                self._by_mac[dep] = {key}
            else:
                keys.add(key)
        if deps.fdb_room:
            self._room.add(key)
        if self.native is not None and type(key) is tuple:  # a fast key (FlowKey: Python)
            self.native.install(key, decision, refresh)

    def _forget(self, key: object) -> None:
        value = self.entries.pop(key, None)
        if value is None:
            return
        if self.native is not None and type(key) is tuple:
            self.native.forget(key)  # every invalidation, eviction and resize passes here
        deps = value[0].deps
        for dep in deps.macs:
            keys = self._by_mac.get(dep)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_mac[dep]
        if deps.fdb_room:
            self._room.discard(key)

    def _evict(self, n: int) -> None:
        """Forget ``n`` entries picked at random (one walk over the table: O(entries) per
        eviction, paid once per ``n`` installs)."""
        size = len(self.entries)
        if n <= 0:
            return
        if n >= size:
            doomed = list(self.entries)
        else:
            picks = sorted(self._random.sample(range(size), n))
            doomed = []
            want = picks[0]
            j = 0
            for i, key in enumerate(self.entries):
                if i == want:
                    doomed.append(key)
                    j += 1
                    if j == n:
                        break
                    want = picks[j]
        for key in doomed:
            self._forget(key)
        self.evictions += len(doomed)

    def resize(self, max_entries: int) -> None:
        """Change the bound, evicting entries at random if needed."""
        self.max_entries = max_entries
        excess = len(self.entries) - max_entries
        if excess > 0:
            self._evict(excess)

    # ------------------------------------------------------------- invalidation
    def _drop(self, keys: Iterable[object]) -> int:
        n = 0
        for key in list(keys):
            if key in self.entries:
                self._forget(key)
                n += 1
        if n:
            self.invalidations += 1
            self.invalidated += n
        return n

    def mac_changed(self, macs: Iterable[MacDep], room: bool = False) -> int:
        """(VLAN, MAC) pairs learned, moved or forgotten: forget the entries that looked them
        up; ``room``: the table or a port gained room (forget those decided by a limit)."""
        doomed: set[object] = set()
        for dep in macs:
            keys = self._by_mac.get(dep)
            if keys:
                doomed |= keys
        if room and self._room:
            doomed |= self._room
        return self._drop(doomed)

    def ports_changed(self, ports: Iterable[int], vlans: Iterable[int] = ()) -> int:
        """Ports whose settings or link changed: forget the entries that read one of them,
        and the floods in ``vlans`` (the VLANs those ports belong or belonged to)."""
        ps, vs = frozenset(ports), frozenset(vlans)
        if not ps and not vs:
            return 0
        return self._drop(k for k, v in self.entries.items() if _touches(v[0].deps, ps, vs))

    def room_changed(self) -> int:
        """The MAC table's limits changed: forget the entries a limit decided."""
        return self._drop(self._room)

    def clear(self) -> int:
        """Forget everything (a change that every decision may depend on)."""
        return self._drop(self.entries)

    # ------------------------------------------------------------------- report
    def memory(self, sample: int = 64) -> int:
        """Estimated bytes per entry: its key, value and index share (sampled)."""
        n = len(self.entries)
        if not n:
            return 0
        seen: set[int] = set()
        total = 0
        taken = 0
        for key, value in islice(self.entries.items(), sample):
            taken += 1
            total += _deep_size(key, seen) + _deep_size(value, seen)
        per_entry = total / taken
        slots = sys.getsizeof(self.entries) / n
        index = sum(sys.getsizeof(s) for s in islice(self._by_mac.values(), sample))
        index_share = (index / min(sample, len(self._by_mac)) * len(self._by_mac) / n
                       if self._by_mac else 0.0)
        return int(per_entry + slots + index_share)

    def stats(self) -> dict[str, int]:
        """Counters for show/metrics."""
        per_entry = self.memory()
        return {
            "entries": len(self.entries),
            "max_entries": self.max_entries,
            "hits": self.hits,
            "misses": self.misses,
            "invalidations": self.invalidations,
            "invalidated": self.invalidated,
            "evictions": self.evictions,
            "bytes_per_entry": per_entry,
            "bytes": per_entry * len(self.entries),
            "native_entries": len(self.native) if self.native is not None else 0,
        }


def _touches(deps: Deps, ports: frozenset[int], vlans: frozenset[int]) -> bool:
    if deps.flood_vlan is not None and deps.flood_vlan in vlans:
        return True
    return not ports.isdisjoint(deps.ports)


def _deep_size(obj: object, seen: set[int]) -> int:
    """Bytes of ``obj`` and what it holds, each object counted once across calls (shared
    decisions and interned values are counted for the first entry that holds them)."""
    if id(obj) in seen or obj is None or (isinstance(obj, (bool, int)) and -5 <= int(obj) <= 256):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, (tuple, list, set, frozenset)):
        size += sum(_deep_size(x, seen) for x in obj)
    elif isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    elif hasattr(obj, "__slots__") and not isinstance(obj, (str, bytes)):
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    size += _deep_size(getattr(obj, name), seen)
    return size
