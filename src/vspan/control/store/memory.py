"""An in-process store with etcd's semantics, for unit tests and benchmarks.

Revisions, one revision per transaction, watches that replay history from a
revision (and fail with :class:`WatchCompacted` below the compaction point),
leases whose expiry deletes their keys, and an ``available`` switch that
simulates an outage (calls raise :class:`StoreUnavailable`, watches break).
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from vspan.control.store.base import (
    Compare,
    Delete,
    Event,
    KeyValue,
    Put,
    Snapshot,
    StoreError,
    StoreUnavailable,
    TxnResult,
    WatchBatch,
    WatchCompacted,
    prefix_end,
)


@dataclass
class _Lease:
    ttl: int
    deadline: float
    keys: set[str] = field(default_factory=set)


class MemoryStore:
    """:class:`vspan.control.store.base.Store` in memory (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_txn_ops: int = 128) -> None:
        self.clock = clock
        self.max_txn_ops = max_txn_ops  # etcd's --max-txn-ops default
        self._lock = threading.Condition()
        self._revision = 1
        self._compacted = 0
        self._data: dict[str, KeyValue] = {}
        self._history: list[tuple[int, tuple[Event, ...]]] = []  # (revision, events)
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(0x1000)
        self._available = True
        self._epoch = 0  # bumped on each outage: open watches break

    # ---------------------------------------------------------------- helpers
    def set_available(self, available: bool) -> None:
        """Simulate an outage (False) or its end (True)."""
        with self._lock:
            if self._available and not available:
                self._epoch += 1
            self._available = available
            self._lock.notify_all()

    def _check(self) -> None:
        if not self._available:
            raise StoreUnavailable("the store is unreachable (simulated outage)")
        self._expire()

    def _expire(self) -> None:
        now = self.clock()
        gone = [lid for lid, lease in self._leases.items() if lease.deadline <= now]
        for lid in gone:
            lease = self._leases.pop(lid)
            self._commit([Delete(k) for k in sorted(lease.keys)])

    def _commit(self, ops: Sequence[Put | Delete]) -> int:
        """Apply ops as one revision (lock held); return the revision."""
        rev = self._revision + 1
        events: list[Event] = []
        for op in ops:
            if isinstance(op, Put):
                old = self._data.get(op.key)
                if op.lease and op.lease not in self._leases:
                    raise StoreError(f"lease {op.lease:x} not found")
                if old is not None and old.lease and old.lease in self._leases:
                    self._leases[old.lease].keys.discard(op.key)
                kv = KeyValue(op.key, op.value, rev, old.create_revision if old else rev,
                              (old.version if old else 0) + 1, op.lease)
                self._data[op.key] = kv
                if op.lease:
                    self._leases[op.lease].keys.add(op.key)
                events.append(Event("put", kv))
            else:
                end = prefix_end(op.key) if op.prefix else None
                keys = [k for k in self._data if (op.key <= k < end if end else k == op.key)]
                for k in sorted(keys):
                    old = self._data.pop(k)
                    if old.lease in self._leases:
                        self._leases[old.lease].keys.discard(k)
                    events.append(Event("delete", KeyValue(k, b"", rev)))
        if not events:
            return self._revision
        self._revision = rev
        self._history.append((rev, tuple(events)))
        self._lock.notify_all()
        return rev

    # ------------------------------------------------------------------ store
    @property
    def revision(self) -> int:
        """The current revision."""
        with self._lock:
            return self._revision

    def get_range(self, start: str, end: str) -> Snapshot:
        """Keys in ``[start, end)``."""
        with self._lock:
            self._check()
            items = tuple(kv for k, kv in sorted(self._data.items()) if start <= k < end)
            return Snapshot(self._revision, items)

    def txn(self, compares: Sequence[Compare], ops: Sequence[Put | Delete]) -> TxnResult:
        """Compares on mod revisions, then all ops in one revision (a key changed twice
        in one transaction is refused, as etcd does)."""
        puts = [op.key for op in ops if isinstance(op, Put)]
        ranges = [(op.key, prefix_end(op.key) if op.prefix else op.key + "\0")
                  for op in ops if isinstance(op, Delete)]
        if len(set(puts)) != len(puts) or any(lo <= k < hi for k in puts for lo, hi in ranges):
            raise StoreError("duplicate key given in txn request")
        if len(ops) > self.max_txn_ops:
            raise StoreError("too many operations in txn request")
        with self._lock:
            self._check()
            for c in compares:
                kv = self._data.get(c.key)
                if (kv.mod_revision if kv else 0) != c.mod_revision:
                    return TxnResult(False, self._revision)
            return TxnResult(True, self._commit(ops))

    def watch(self, start: str, end: str, start_revision: int) -> MemoryWatch:
        """A watch over ``[start, end)`` from ``start_revision``."""
        with self._lock:
            self._check()
            return MemoryWatch(self, start, end, start_revision, self._epoch)

    def grant(self, ttl: int) -> int:
        """A lease of ``ttl`` seconds."""
        with self._lock:
            self._check()
            lid = next(self._lease_ids)
            self._leases[lid] = _Lease(ttl, self.clock() + ttl)
            return lid

    def keepalive(self, lease: int) -> int:
        """Refresh: the TTL, or -1 when the lease is gone."""
        with self._lock:
            self._check()
            entry = self._leases.get(lease)
            if entry is None:
                return -1
            entry.deadline = self.clock() + entry.ttl
            return entry.ttl

    def revoke(self, lease: int) -> None:
        """End a lease now."""
        with self._lock:
            self._check()
            entry = self._leases.pop(lease, None)
            if entry is not None:
                self._commit([Delete(k) for k in sorted(entry.keys)])

    def compact(self, revision: int) -> None:
        """Drop history before ``revision``."""
        with self._lock:
            self._check()
            if revision > self._revision:
                raise StoreError("required revision is a future revision")
            self._compacted = max(self._compacted, revision)
            cut = bisect.bisect_left([r for r, _ in self._history], revision)
            del self._history[:cut]
            self._lock.notify_all()

    def expire(self) -> None:
        """Expire overdue leases now (normally done on every call)."""
        with self._lock:
            self._expire()

    def close(self) -> None:
        """Nothing to release."""


class MemoryWatch:
    """A watch on a :class:`MemoryStore`."""

    def __init__(self, store: MemoryStore, start: str, end: str, start_revision: int,
                 epoch: int) -> None:
        self.store = store
        self.start, self.end = start, end
        self.next_revision = start_revision or store._revision + 1
        self.epoch = epoch
        self.closed = False

    def __iter__(self) -> Iterator[WatchBatch]:
        st = self.store
        while True:
            with st._lock:
                while True:
                    if self.closed:
                        return
                    if st._epoch != self.epoch:
                        raise StoreUnavailable("watch broke (simulated outage)")
                    if self.next_revision <= st._compacted:
                        raise WatchCompacted(st._compacted)
                    if st._revision >= self.next_revision:
                        break
                    st._lock.wait(0.5)
                    if st._available:
                        st._expire()
                revs = [r for r, _ in st._history]
                i = bisect.bisect_left(revs, self.next_revision)
                events = [replace(ev) for _, evs in st._history[i:] for ev in evs
                          if self.start <= ev.kv.key < self.end]
                head = st._revision
                self.next_revision = head + 1
            if events:
                yield WatchBatch(head, tuple(events))

    def close(self) -> None:
        """End the watch."""
        with self.store._lock:
            self.closed = True
            self.store._lock.notify_all()
