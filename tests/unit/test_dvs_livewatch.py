"""Following a distributed switch's running agents (``vspan observe --dvs``): joins, leaves
(a revoked or expired lease), a new agent process on a host, a store outage, and values
that are not registrations, on the in-memory store."""

from __future__ import annotations

import queue
import threading

from vspan.control.dvs.document import dumps
from vspan.control.dvs.keys import DvsKeys
from vspan.control.dvs.livewatch import (
    JOINED,
    LEFT,
    RESTARTED,
    UNREACHABLE,
    LiveChange,
    watch_live,
)
from vspan.control.store.base import Delete, Put
from vspan.control.store.memory import MemoryStore

KEYS = DvsKeys("lab")


def register(store: MemoryStore, host: str, pid: int, started: float = 1.0,
             lease: int = 0) -> int:
    lease = lease or store.grant(10)
    store.txn([], [Put(KEYS.live(host), dumps({"underlay": f"198.18.0.{pid % 250}",
                                               "pid": pid, "started": started,
                                               "socket": f"/run/{host}.sock"}), lease)])
    return lease


class Watch:
    """``watch_live`` in a thread, its changes on a queue."""

    def __init__(self, store: MemoryStore) -> None:
        self.stop = threading.Event()
        self.changes: queue.Queue[LiveChange] = queue.Queue()
        threading.Thread(target=self._run, args=(store,), daemon=True).start()

    def _run(self, store: MemoryStore) -> None:
        for ch in watch_live(store, "lab", self.stop, retry=0.05):
            self.changes.put(ch)

    def next(self) -> tuple[str, str]:
        ch = self.changes.get(timeout=10)
        return ch.kind, ch.host

    def quiet(self) -> bool:
        try:
            self.changes.get(timeout=0.7)
        except queue.Empty:
            return True
        return False


def test_joins_leaves_restarts_and_outages() -> None:
    store = MemoryStore()
    h1 = register(store, "h1", 101)
    w = Watch(store)
    try:
        assert w.next() == (JOINED, "h1")  # those running when the watch starts
        h2 = register(store, "h2", 102)
        assert w.next() == (JOINED, "h2")
        register(store, "h2", 102, started=2.0, lease=h2)  # the agent put it back
        assert w.quiet()
        store.txn([], [Put(KEYS.live("h1"), b"not json")])  # not a registration: h1 gone
        assert w.next() == (LEFT, "h1")
        register(store, "h1", 201)  # a new process on h1
        assert w.next() == (JOINED, "h1")
        register(store, "h1", 202)
        assert w.next() == (RESTARTED, "h1")
        store.revoke(h2)  # the agent stopped: its lease ends, its registration with it
        assert w.next() == (LEFT, "h2")
        store.set_available(False)
        ch = w.changes.get(timeout=10)
        assert ch.kind == UNREACHABLE and "outage" in ch.detail
        assert w.quiet()  # said once, not once per retry
        store.set_available(True)
        register(store, "h3", 103)  # while the watch comes back
        store.txn([], [Delete(KEYS.live("h1"))])
        assert sorted([w.next(), w.next()]) == [(JOINED, "h3"), (LEFT, "h1")]
        store.revoke(h1)
    finally:
        w.stop.set()
        store.txn([], [Put(KEYS.live("zz"), b"{}")])  # wake the watch so it sees stop
