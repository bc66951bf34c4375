"""Follow which host agents of a distributed switch are running (their registrations).

:func:`watch_live` reads the registrations (``hosts/HOST``, each attached to its
agent's lease), then watches that key range from the revision after the read, and
turns what changes into :class:`LiveChange` values: a host ``joined`` (an agent
registered), ``left`` (its registration ended: the agent stopped and revoked its
lease, or the lease expired), ``restarted`` (another agent process took over the
host, or its control socket moved). When the store cannot be reached, or the watch's
revision was compacted, it reads again and reports only what changed meanwhile.
Used by ``vspan observe --dvs``; it changes nothing in the store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from vspan.control.dvs.document import LiveHost, StoredDataError
from vspan.control.dvs.keys import DvsKeys
from vspan.control.store.base import KeyValue, Store, StoreError, WatchCompacted, prefix_end

JOINED = "joined"
LEFT = "left"
RESTARTED = "restarted"
UNREACHABLE = "unreachable"  # the store: registrations unknown until it answers again


@dataclass(frozen=True)
class LiveChange:
    """One change of the running agents (``UNREACHABLE``: ``host`` empty, ``detail`` why)."""

    kind: str
    host: str = ""
    registration: LiveHost | None = None
    detail: str = ""


def _same_agent(a: LiveHost, b: LiveHost) -> bool:
    """Whether two registrations are one agent process (a new lease after an outage is)."""
    return (a.pid, a.boot_id, a.socket) == (b.pid, b.boot_id, b.socket)


def diff(known: Mapping[str, LiveHost], now: Mapping[str, LiveHost]) -> list[LiveChange]:
    """The changes that turn ``known`` into ``now`` (hosts in name order)."""
    out: list[LiveChange] = []
    for host in sorted(set(known) | set(now)):
        old, new = known.get(host), now.get(host)
        if old is None and new is not None:
            out.append(LiveChange(JOINED, host, new))
        elif new is None and old is not None:
            out.append(LiveChange(LEFT, host, old))
        elif old is not None and new is not None and not _same_agent(old, new):
            out.append(LiveChange(RESTARTED, host, new))
    return out


def watch_live(store: Store, name: str, stop: threading.Event,
               retry: float = 1.0) -> Iterator[LiveChange]:
    """The running agents of switch ``name``: first every live host as ``joined``, then
    each change as it happens, until ``stop`` is set (checked between store answers)."""
    keys = DvsKeys(name)
    start, end = keys.live_prefix, prefix_end(keys.live_prefix)
    known: dict[str, LiveHost] = {}
    reachable = True

    def decode(kv: KeyValue) -> dict[str, LiveHost]:
        """``{host: registration}``; empty for a value that is not a registration."""
        host = kv.key[len(start):]
        try:
            return {host: LiveHost.decode(kv, host)}
        except (StoredDataError, ValueError, TypeError, AttributeError):
            return {}

    while not stop.is_set():
        try:
            snap = store.get_range(start, end)
            now = {h: r for kv in snap.items for h, r in decode(kv).items()}
            reachable = True
            yield from diff(known, now)
            known = now
            stream = store.watch(start, end, snap.revision + 1)
            try:
                for batch in stream:
                    if stop.is_set():
                        return
                    for ev in batch.events:
                        after = dict(known)
                        after.pop(ev.kv.key[len(start):], None)
                        if ev.type == "put":
                            after.update(decode(ev.kv))
                        yield from diff(known, after)
                        known = after
            finally:
                stream.close()
        except WatchCompacted:
            continue
        except StoreError as err:
            if reachable:
                reachable = False
                yield LiveChange(UNREACHABLE, detail=str(err))
            stop.wait(retry)
