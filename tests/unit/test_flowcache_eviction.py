"""The full flow cache evicts an eighth of its entries at random, each through
``FlowCache._forget``: a working set cycling through more flows than it holds keeps
hitting on the part that stays (evicting the oldest missed every frame)."""

from __future__ import annotations

from typing import Any

from vspan.datapath.decision import Decision, Output
from vspan.datapath.fdb import FdbEntry
from vspan.datapath.flowcache import FlowCache

DECISION = Decision((Output(2),))


class Mirror:
    """A stand-in for the native table: the fast keys it was told of."""

    def __init__(self) -> None:
        self.keys: set[tuple[Any, ...]] = set()

    def install(self, key: tuple[Any, ...], d: Decision, ref: FdbEntry | None) -> None:
        self.keys.add(key)

    def forget(self, key: tuple[Any, ...]) -> None:
        self.keys.remove(key)

    def __len__(self) -> int:
        return len(self.keys)


def cycle(cache: FlowCache, flows: int, passes: int) -> None:
    """Look every flow up in order, ``passes`` times; install each miss."""
    for _ in range(passes):
        for n in range(flows):
            key = (1, n)
            if key in cache.entries:
                cache.hits += 1
            else:
                cache.misses += 1
                cache.put(key, DECISION, None, None)


def test_cycling_more_flows_than_the_cache_holds_still_hits() -> None:
    cache = FlowCache(1024, seed=7)
    cycle(cache, 1600, 1)  # fill it and churn
    hits = cache.hits
    cycle(cache, 1600, 4)
    rate = (cache.hits - hits) / (4 * 1600)
    assert rate > 0.15  # FIFO: 0 (each flow evicted before it comes round again)
    assert len(cache.entries) <= 1024 and cache.evictions > 0


def full(seed: int) -> tuple[FlowCache, Mirror]:
    """A cache of 64 entries, full, its native table mirrored."""
    cache = FlowCache(64, seed=seed)
    mirror = Mirror()
    cache.native = mirror
    for n in range(64):
        cache.put((1, n), DECISION, None, None)
    return cache, mirror


def test_a_full_cache_evicts_an_eighth_at_random_through_forget() -> None:
    cache, mirror = full(1)
    cache.put((1, 999), DECISION, None, None)
    assert len(cache.entries) == 64 - 8 + 1 and cache.evictions == 8
    gone = {(1, n) for n in range(64)} - set(cache.entries)
    assert len(gone) == 8 and gone != {(1, n) for n in range(8)}  # not the oldest eighth
    assert mirror.keys == set(cache.entries)  # the native table followed every eviction


def test_shrinking_evicts_the_excess_through_forget() -> None:
    cache, mirror = full(3)
    cache.resize(10)
    assert len(cache.entries) == 10 and cache.evictions == 54
    assert mirror.keys == set(cache.entries)
    for n in range(100, 140):  # and it keeps its bound afterwards
        cache.put((1, n), DECISION, None, None)
    assert len(cache.entries) <= 10 and mirror.keys == set(cache.entries)
