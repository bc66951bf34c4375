"""The small store interface the distributed switch needs (etcd's model: MVCC revisions,
range reads, one-transaction writes, watches from a revision, leases).

:class:`vspan.control.store.etcd.EtcdStore` implements it over etcd's JSON gateway;
:class:`vspan.control.store.memory.MemoryStore` in process (unit tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol


class StoreError(Exception):
    """A store operation failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (nothing was written)."""


class WatchCompacted(StoreError):
    """A watch's start revision was compacted away: re-read, then watch again."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"watch revision compacted (oldest kept: {compact_revision})")
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class KeyValue:
    """One stored key."""

    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0
    version: int = 0
    lease: int = 0


@dataclass(frozen=True)
class Event:
    """A change seen by a watch (a delete carries the key and its deletion revision)."""

    type: Literal["put", "delete"]
    kv: KeyValue


@dataclass(frozen=True)
class WatchBatch:
    """The events of one watch response; ``revision`` is the store's revision then
    (an empty batch is a progress notification)."""

    revision: int
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """A range read: the keys and the store revision they were read at."""

    revision: int
    items: tuple[KeyValue, ...] = ()

    def as_dict(self) -> dict[str, KeyValue]:
        """Keys to values."""
        return {kv.key: kv for kv in self.items}


@dataclass(frozen=True)
class Compare:
    """A transaction guard: ``key``'s mod revision equals ``mod_revision`` (0: absent)."""

    key: str
    mod_revision: int


@dataclass(frozen=True)
class Put:
    """Write ``value`` at ``key`` (attached to ``lease`` when non-zero)."""

    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    """Delete ``key`` (every key starting with it when ``prefix``)."""

    key: str
    prefix: bool = False


@dataclass(frozen=True)
class TxnResult:
    """Whether the compares held (and the operations ran), and the revision after."""

    succeeded: bool
    revision: int
    notes: tuple[str, ...] = field(default=())


def prefix_end(prefix: str) -> str:
    """The range end that covers every key starting with ``prefix``."""
    data = bytearray(prefix.encode())
    while data:
        if data[-1] < 0xFF:
            data[-1] += 1
            return bytes(data).decode("latin-1")
        data.pop()
    return "\0"


class WatchStream(Protocol):
    """Batches of events in revision order; raises :class:`WatchCompacted` or
    :class:`StoreUnavailable` when the watch ends."""

    def __iter__(self) -> Iterator[WatchBatch]:
        """Block for the next batches."""
        ...

    def close(self) -> None:
        """End the watch (another thread may call this; iteration then stops)."""
        ...


class Store(Protocol):
    """What the distributed switch asks of its store."""

    def get_range(self, start: str, end: str) -> Snapshot:
        """Keys in ``[start, end)`` and the revision read at."""
        ...

    def txn(self, compares: Sequence[Compare], ops: Sequence[Put | Delete]) -> TxnResult:
        """All ``ops`` in one revision when every compare holds; none otherwise."""
        ...

    def watch(self, start: str, end: str, start_revision: int) -> WatchStream:
        """Changes in ``[start, end)`` from ``start_revision`` (inclusive) on."""
        ...

    def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its id."""
        ...

    def keepalive(self, lease: int) -> int:
        """Refresh ``lease``; its new TTL (``<= 0``: the lease is gone)."""
        ...

    def revoke(self, lease: int) -> None:
        """End ``lease`` now (its keys are deleted)."""
        ...

    def compact(self, revision: int) -> None:
        """Forget history before ``revision``."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
