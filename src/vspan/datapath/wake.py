"""The native wake path: the engine's wait, drain, replay and send in one C call.

A frame that wakes a sleeping engine used to pass through the Python loop between
``epoll_wait`` returning and ``sendmmsg``: the event loop, ``recv_batch``, the batch
bookkeeping, the fold of the native counters, ``flush`` and ``send_frames`` — all of it
run cold after a quiet moment (``docs/datapath.md``, "A sleeping engine's first frame").
:class:`WakePath` hands that turn of the loop to ``_native.Waker.wait``
(``datapath/_wake.h``): the wait (GIL released), the drain of each woken AF_PACKET
ring, the native replay and the send of the transmit queues happen in C; further polls
follow in the same call while they bring frames (a ping's echo reply is in the ring
when the request's send returns). Only then does Python run, and it does everything
the Python loop would have done, in the same order, from the call's report: port and
switch counters, the native counters taken per batch, the poll counters of each poll.

Whatever the C side cannot finish alone comes back to the engine's Python loop: events
of other file descriptors (the control pipe, TAP, VXLAN and team ports), a batch with a
frame the native table cannot answer (its first run result goes with it:
:meth:`FastPath.process` continues), a queue for a port without a native sender or one
``_ring.send`` left unfinished, timeouts. The engine uses it only while the native fast
path is on, with no capture or observer running and no backend asking for
``Frame.port``; ``VSPAN_WAKE=python`` turns it off (the Python loop, for comparison).
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from typing import Any

from vspan.datapath.fastpath import FastPath
from vspan.datapath.native import NativeTable
from vspan.datapath.state import SwitchState
from vspan.ports import ringio
from vspan.ports.afpacket import AfPacketPort
from vspan.ports.base import Frame, Port
from vspan.ports.tx import count_native_send

ENV = "VSPAN_WAKE"
#: polls one call may make (the first may block; the others follow while frames come)
ROUNDS = 8

Event = tuple[int, int]
#: one poll of a call: frames it handled, seconds it took (for :class:`Poller`)
Round = tuple[int, float]


def wanted() -> bool:
    """Whether the wake path may be used (``VSPAN_WAKE=python`` says no)."""
    return os.environ.get(ENV, "").strip().lower() != "python"


class WakePath:
    """Runs the engine's waits through ``_native.Waker`` and applies its reports."""

    def __init__(self, table: NativeTable, epoll: select.epoll, state: SwitchState,
                 fastpath: FastPath, backends: dict[int, Port], tx: dict[int, list[Frame]],
                 clock: Callable[[], float]) -> None:
        from vspan.datapath import _native

        assert ringio._mod is not None, "vspan.ports._ring is not built"
        self.table = table
        self.state = state
        self.fastpath = fastpath
        self.backends = backends
        self.tx = tx
        self.clock = clock
        self.waker = _native.Waker(table.table, epoll.fileno(), ringio._mod.drain,
                                   ringio._mod.send, Frame, clock)
        self._ports: dict[int, tuple[int, AfPacketPort]] | None = None
        self._senders: dict[int, AfPacketPort] = {}
        #: frames received in batches the C side answered and sent whole
        self.frames = 0

    def changed(self) -> None:
        """The backends changed (opened, closed, a device gone): look them up again."""
        self._ports = None

    def _registry(self) -> dict[int, tuple[int, AfPacketPort]]:
        ports: dict[int, tuple[int, AfPacketPort]] = {}
        senders: dict[int, AfPacketPort] = {}
        for idx, backend in self.backends.items():
            if type(backend) is AfPacketPort:
                senders[idx] = backend
                try:
                    ports[backend.fileno()] = (idx, backend)
                except OSError:
                    continue
        self._senders = senders
        self._ports = ports
        return ports

    def usable(self) -> bool:
        """Whether this wait may take the wake path (nothing watches frames one by one)."""
        fp = self.fastpath
        return not (fp.captures or fp.observers or fp.stamp_ports)

    def wait(self, timeout: float, batch: int, count_empty: bool, spin: float = 0.0
             ) -> tuple[list[Round], list[Event], tuple[Any, ...] | None,
                        tuple[int, float, float, bool]]:
        """One call: wait up to ``timeout`` s and handle what the C side can. Returns the
        polls made, the events for the Python loop, and the batch it continues (the
        counters of everything handled are applied before this returns). ``count_empty``:
        a poll after frames that finds nothing counts as a busy poll (``adaptive`` and
        ``always``; with ``off`` the loop blocks instead). ``spin``: with ``timeout`` 0,
        keep polling in C up to that many seconds (the GIL released) until something
        comes; the empty polls before the last are returned as ``(polls, seconds,
        since, polled)``, ``since`` the seconds from the first poll's wake-up to this
        method's return. A timeout under a second is waited to the microsecond (``epoll_pwait2``)
        and, with ``spin``, followed by a window of ``spin`` s polled in C when it ends
        with nothing (a predicted window, ``datapath/arrivals.py``: ``polled`` True); a
        longer timeout is waited to the ms."""
        ports = self._ports if self._ports is not None else self._registry()
        ms = -1 if timeout < 0 else int(timeout * 1000 + 0.999)
        self.table.push_sessions()
        fine = int(timeout * 1e9) if 0 < timeout < 1.0 else 0
        spin_ns = int(spin * 1e9) if timeout == 0 or fine else 0
        rounds, rest, partial, spun = self.waker.wait(ms, ports, self._senders, batch,
                                                      self.tx, ROUNDS, count_empty, spin_ns,
                                                      fine)
        back = time.perf_counter()
        out: list[Round] = []
        for handled, seconds, batches in rounds:
            for b in batches:
                self._account(*b)
            out.append((handled, seconds))
        self.table.pull_seen()
        polls, seconds, since, polled = spun
        since += time.perf_counter() - back  # (the accounting above)
        return out, rest, partial, (polls, seconds, since, bool(polled))

    def received(self, in_port: int, n: int, nbytes: int, errors: int, losing: bool) -> None:
        """What ``recv_batch`` counts on the backend for a drain the C side made."""
        backend = self.backends.get(in_port)
        if backend is None:
            return
        c = backend.counters
        c.rx_frames += n
        c.rx_bytes += nbytes
        c.rx_errors += errors
        if losing and isinstance(backend, AfPacketPort):
            backend.refresh_drops()

    def _account(self, in_port: int, now: float, n: int, nbytes: int, errors: int,
                 losing: bool, taken: Any, sends: list[tuple[Any, ...]]) -> None:
        """FastPath.process + flush's bookkeeping for a batch answered and sent in C."""
        self.received(in_port, n, nbytes, errors, bool(losing))
        if not n:
            return
        self.frames += n
        fp = self.fastpath
        fp.received(in_port, n, now)
        self.table.fold(fp.cache, in_port, taken)
        if fp.policy.replies:  # (a check's reject answer; none comes from a native batch)
            fp.send_replies(now)
        if not sends:
            if self.tx:
                fp.flush()
            return
        when = self.clock()
        for idx, frames, nxt, sent, wire, wbytes, segmented, segments, failed in sends:
            backend = self.backends.get(idx)
            if backend is None or idx not in self.state.ports:
                continue
            if nxt >= 0:  # what send_frames counts for the C send loop's part
                count_native_send(backend.counters, wire, wbytes, segmented, segments, failed)
            if nxt < 0:
                sent = backend.send_batch(frames)
            elif nxt < len(frames):
                assert isinstance(backend, AfPacketPort)
                sent += backend.send_rest(frames[nxt:])
            # the C loop sent every frame as it is (nothing cut in software): the bytes it
            # wrote are the frames' lengths, no need to sum them again frame by frame
            whole = nxt == len(frames) and not segmented
            fp.sent(idx, frames, sent, when, wbytes if whole else None)
        if self.tx:  # a reject answer queued above
            fp.flush()

    def gil(self) -> dict[str, float]:
        """Frames this path answered and sent whole, and the wake-ups after which the
        engine waited more than 20 µs for the GIL (another thread held it): how many,
        total and longest seconds."""
        waits, total, longest = self.waker.gil()
        return {"wake_frames": self.frames, "gil_waits": waits,
                "gil_wait_seconds": total / 1e9, "gil_wait_max_seconds": longest / 1e9}
