"""The store interface against a real etcd and against the in-process fake: both must
behave the same (revisions, transactions, watches from a revision, compaction, leases).

The etcd case starts a private etcd on loopback (tests/helpers/etcd.py); it needs the
``etcd`` binary but not root.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers.etcd import etcd_server, require_etcd
from vspan.control.store.base import (
    Compare,
    Delete,
    Put,
    Store,
    StoreError,
    StoreUnavailable,
    WatchBatch,
    WatchCompacted,
    prefix_end,
)
from vspan.control.store.etcd import EtcdStore, parse_url
from vspan.control.store.memory import MemoryStore


@pytest.fixture(params=["etcd", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    require_etcd()
    with etcd_server() as server:
        s = EtcdStore(server.url)
        yield s
        s.close()


def collect(store: Store, prefix: str, start: int, n_events: int,
            timeout: float = 10.0) -> list[WatchBatch]:
    """Batches of a watch until ``n_events`` events arrived."""
    watch = store.watch(prefix, prefix_end(prefix), start)
    out: list[WatchBatch] = []
    got = 0
    done = threading.Event()

    def run() -> None:
        nonlocal got
        for batch in watch:
            out.append(batch)
            got += len(batch.events)
            if got >= n_events:
                break
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    done.wait(timeout)
    watch.close()
    t.join(5)
    return out


def test_transactions_are_atomic_and_guarded(store: Store) -> None:
    r1 = store.txn([], [Put("/t/a", b"1"), Put("/t/b", b"2")])
    assert r1.succeeded
    snap = store.get_range("/t/", prefix_end("/t/"))
    assert [kv.key for kv in snap.items] == ["/t/a", "/t/b"]
    assert {kv.mod_revision for kv in snap.items} == {r1.revision}  # one revision
    stale = store.txn([Compare("/t/a", r1.revision - 1)], [Put("/t/a", b"x"), Delete("/t/b")])
    assert not stale.succeeded
    assert store.get_range("/t/", prefix_end("/t/")).as_dict()["/t/a"].value == b"1"
    ok = store.txn([Compare("/t/a", r1.revision), Compare("/t/none", 0)],
                   [Delete("/t/", prefix=True), Put("/u/c", b"4")])
    assert ok.succeeded and ok.revision == r1.revision + 1
    assert store.get_range("/t/", prefix_end("/t/")).items == ()
    with pytest.raises(StoreError, match="duplicate key"):  # etcd refuses it: so does the fake
        store.txn([], [Put("/u/c", b"5"), Delete("/u/", prefix=True)])
    with pytest.raises(StoreError, match="too many operations"):  # etcd's --max-txn-ops 128
        store.txn([], [Put(f"/v/{i}", b"") for i in range(129)])


def test_watch_replays_from_a_revision_and_compaction_cancels_it(store: Store) -> None:
    revs = [store.txn([], [Put(f"/w/{i}", str(i).encode())]).revision for i in range(4)]
    store.txn([], [Put("/other", b"x")])  # outside the range: not seen
    store.txn([], [Delete("/w/0")])
    batches = collect(store, "/w/", revs[1], 4)
    events = [e for b in batches for e in b.events]
    assert [(e.type, e.kv.key) for e in events] == [
        ("put", "/w/1"), ("put", "/w/2"), ("put", "/w/3"), ("delete", "/w/0")]
    store.compact(revs[3])
    with pytest.raises(WatchCompacted) as info:
        for _ in store.watch("/w/", prefix_end("/w/"), revs[1]):
            pass
    assert info.value.compact_revision >= revs[3]
    # after a re-read, watching from its revision + 1 works again
    snap = store.get_range("/w/", prefix_end("/w/"))
    store.txn([], [Put("/w/9", b"9")])
    events = [e for b in collect(store, "/w/", snap.revision + 1, 1) for e in b.events]
    assert [(e.type, e.kv.key) for e in events] == [("put", "/w/9")]


def test_live_watch_sees_new_changes(store: Store) -> None:
    start = store.get_range("/l/", prefix_end("/l/")).revision + 1
    watch = store.watch("/l/", prefix_end("/l/"), start)
    seen: queue.Queue[WatchBatch] = queue.Queue()

    def run() -> None:
        for batch in watch:
            seen.put(batch)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(0.2)
    rev = store.txn([], [Put("/l/x", b"1"), Put("/l/y", b"2")]).revision
    batch = seen.get(timeout=10)
    assert [e.kv.key for e in batch.events] == ["/l/x", "/l/y"]
    assert all(e.kv.mod_revision == rev for e in batch.events)
    watch.close()
    t.join(5)
    assert not t.is_alive()


def test_leases_keep_keys_alive_and_their_end_deletes_them(store: Store) -> None:
    lease = store.grant(30)
    store.txn([], [Put("/lease/h1", b"up", lease)])
    kv = store.get_range("/lease/", prefix_end("/lease/")).items[0]
    assert kv.lease == lease
    assert 0 < store.keepalive(lease) <= 30
    store.revoke(lease)
    assert store.get_range("/lease/", prefix_end("/lease/")).items == ()
    assert store.keepalive(lease) <= 0  # gone: the holder must register again


def test_etcd_lease_expires_on_its_own() -> None:
    require_etcd()
    with etcd_server() as server:
        s = EtcdStore(server.url)
        lease = s.grant(2)
        s.txn([], [Put("/exp/h", b"1", lease)])
        deadline = time.monotonic() + 15
        while s.get_range("/exp/", "/exp0").items and time.monotonic() < deadline:
            time.sleep(0.2)
        assert s.get_range("/exp/", "/exp0").items == ()
        assert s.keepalive(lease) <= 0


def test_etcd_outage_breaks_watches_and_calls_clearly() -> None:
    require_etcd()
    with etcd_server() as server:
        s = EtcdStore(server.url)
        watch = s.watch("/o/", "/o0", 0)
        errors: queue.Queue[BaseException] = queue.Queue()

        def run() -> None:
            try:
                for _ in watch:
                    pass
            except StoreUnavailable as err:
                errors.put(err)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        time.sleep(0.3)
        server.stop()
        assert "etcd" in str(errors.get(timeout=10))
        with pytest.raises(StoreUnavailable, match="unreachable"):
            s.get_range("/o/", "/o0")
        server.start()
        assert s.txn([], [Put("/o/x", b"1")]).succeeded  # the same client works again


def test_parse_url() -> None:
    assert parse_url("http://10.0.0.1:2379") == ("10.0.0.1", 2379, "http")
    assert parse_url("etcd.example:4001") == ("etcd.example", 4001, "http")
    with pytest.raises(ValueError, match="not an etcd URL"):
        parse_url("ftp://x")
