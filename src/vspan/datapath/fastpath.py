"""The replay loop: batches of frames through the flow cache, committing cached actions.

Per frame on a hit: one key, one dict lookup, and either a queue append (a
decision with one plain output: the common case) or :func:`~vspan.datapath.replay.replay`
of the cached action list with the committing effects implemented here.
A miss goes up to the slow path (:class:`~vspan.datapath.upcall.Upcall`),
whose decision is replayed by the same code. Transmit happens once per batch
and port (:meth:`FastPath.flush`).

This is the loop a native replay (phase B, ``docs/datapath.md``) takes over:
it reads the same action lists and calls up here for everything else.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from operator import attrgetter

from vspan.datapath.counters import Fate, SwitchPortCounters
from vspan.datapath.decision import (
    Check,
    CheckOutcome,
    Decision,
    Drop,
    Learn,
    Mirror,
    Refresh,
)
from vspan.datapath.fdb import FdbEntry, LearnResult
from vspan.datapath.flowcache import FlowCache
from vspan.datapath.flowkey import FlowKey, extract, fast_key
from vspan.datapath.mirrorout import MirrorOut
from vspan.datapath.native import NativeTable
from vspan.datapath.observed import SOURCE_FAST, SOURCE_REPLY, SOURCE_SLOW, Recorder
from vspan.datapath.plugins import CaptureTap, Checker, FrameObserver, Policy
from vspan.datapath.reasons import DropReason
from vspan.datapath.replay import replay
from vspan.datapath.state import SwitchState
from vspan.datapath.upcall import Upcall
from vspan.ports.base import Frame, Port
from vspan.ports.vnet import EMPTY_VNET
from vspan.ports.vnetcheck import Refusal, refusal

#: a frame's bytes (the per-port tx byte count sums them without a Python-level loop)
_DATA = attrgetter("data")


class FastPath:
    """Forwards batches: cache hits replayed, misses decided by the upcall. Implements the
    committing :class:`~vspan.datapath.replay.Effects`."""

    def __init__(self, state: SwitchState, cache: FlowCache, policy: Policy, upcall: Upcall,
                 mirror_out: MirrorOut, tx: dict[int, list[Frame]],
                 backends: dict[int, Port], clock: Callable[[], float]) -> None:
        self.state = state
        self.cache = cache
        self.policy = policy
        self.checker: Checker = policy.checker
        self.upcall = upcall
        self.mirror_out = mirror_out
        self.tx = tx
        self.backends = backends
        self.clock = clock
        self.captures: list[CaptureTap] = []  # live `vspan capture` sessions
        self.frame_drops: list[Drop] = []  # drops of the frame in hand (captures only)
        self.observers: list[FrameObserver] = []  # live `vspan observe` streams
        self.recorder = Recorder(self, state)  # replays frames while someone observes
        self.batches = 0
        self.pids = itertools.count(1)  # pcapng packet ids shared by a frame's capture points
        self.stamp_ports = False  # a backend (team by Hyper-V port) needs Frame.port
        self.native: NativeTable | None = None  # the native replay, when used
        # the two effects every policed or mirrored frame calls: bound once
        self.check = self.checker.commit  # type: ignore[method-assign]
        self.mirror = mirror_out.emit  # type: ignore[method-assign,assignment]

    # ------------------------------------------------------------------ batches
    def received(self, in_port: int, n: int, now: float) -> SwitchPortCounters | None:
        """Count a batch of ``n`` frames received on ``in_port`` (its counters, or ``None``
        when the port is gone)."""
        rt = self.state.ports.get(in_port)
        if rt is None:
            return None
        counters = rt.counters
        counters.rx_frames += n
        counters.last_rx = now
        if not counters.first_seen:
            counters.first_seen = now
        self.batches += 1
        return counters

    def process(self, in_port: int, frames: list[Frame], now: float | None = None,
                first: tuple[int, int] | None = None) -> None:
        """Handle one batch of frames received on port index ``in_port``. The wake path
        (:mod:`vspan.datapath.wake`) passes the time it took and ``first``, the batch's
        first native run it already made."""
        if now is None:
            now = self.clock()
        counters = self.received(in_port, len(frames), now)
        if counters is None:
            return
        if self.stamp_ports:
            for f in frames:
                f.port = in_port
        nat = self.native
        if nat is not None and not self.captures and not self.observers:
            # the native replay takes every frame it can; the others come back here, in order
            # (while captures or observers watch, every frame takes the Python replay)
            nat.process(in_port, frames, self.tx, now,
                        lambda run: self._replay(in_port, run, now, counters), first)
            nat.fold(self.cache, in_port)
        else:
            self._replay(in_port, frames, now, counters)
        if self.policy.replies:
            self.send_replies(now)
        self.flush()

    def _replay(self, in_port: int, frames: Iterable[Frame], now: float,
                counters: SwitchPortCounters) -> None:
        """The Python replay of frames received on ``in_port``; every frame's fate is
        counted on the port (``docs/accounting.md``)."""
        account = counters.account
        cache = self.cache
        entries = cache.entries
        caps = self.captures
        observers = self.observers
        watch = bool(caps or observers)  # anyone watching: frames the long way, but ...
        simple: list[tuple[Frame, int, object]] = []  # ... simple forwards, told per batch
        tx = self.tx
        forwarded = 0  # frames forwarded by a one-output hit (counted after the loop)
        upcall = self.upcall
        over = 0  # misses over the port's budget, not watched
        malformed = 0  # ... of them, frames that do not parse (counted as malformed)
        key: FlowKey | None
        ref: FdbEntry | None
        for f in frames:
            data = f.data
            counters.rx_bytes += len(data)
            vnet = f.vnet
            if vnet and vnet != EMPTY_VNET:  # a header to check (the native side checks too)
                bad = refusal(data, vnet)
                if bad is not None:
                    if simple:
                        simple = self._tell_simple(in_port, simple, now)
                    account(self.refuse(bad, f, in_port, now))
                    continue
            fk = fast_key(data, in_port)
            hit = entries.get(fk) if fk is not None else None
            if hit is not None:
                d, key, ref = hit
                cache.hits += 1
                source = SOURCE_FAST
                if d.simple_port and not caps:  # one output, nothing else: the common case
                    if ref is not None:
                        ref.last_seen = now
                    q = tx.get(d.simple_port)
                    if q is None:
                        tx[d.simple_port] = [f]
                    else:
                        q.append(f)
                    forwarded += 1
                    if observers:  # ... these: their fate is known without recording
                        simple.append((f, d.simple_port, fk))
                    continue
            else:
                # a frame with a fast key is cached under it only: no full key to look up
                key = extract(data, in_port) if fk is None else None
                hit = entries.get(key) if key is not None else None
                if hit is not None:
                    d, _, ref = hit
                    cache.hits += 1
                    source = SOURCE_FAST
                else:
                    cache.misses += 1
                    if upcall.budget.admit(in_port, now):
                        if fk is not None:
                            key = extract(data, in_port)
                        d = upcall.decide(fk, key, data, in_port)
                    elif watch:  # over the port's slow-path budget: the frame with its drop
                        d = upcall.over_budget(in_port, fk is None and key is None)
                    elif fk is None and key is None:  # ... malformed: its own reason
                        malformed += 1
                        continue
                    else:  # ... counted once per batch (the cheapest path)
                        over += 1
                        continue
                    ref = None
                    source = SOURCE_SLOW
            if watch:
                if simple:  # observers get the frames in order
                    simple = self._tell_simple(in_port, simple, now)
                account(self.watched(d, f, key, in_port, now, ref, source))
            else:
                account(replay(d, f, key, in_port, now, self, ref))
        counters.forwarded += forwarded
        if simple:
            self._tell_simple(in_port, simple, now)
        if over:  # frames of misses over the budget: each dropped at its port, its fate
            upcall.budget_drops += over
            self._drop_at(in_port, counters, DropReason.UPCALL_BUDGET, over)
        if malformed:
            self._drop_at(in_port, counters, DropReason.MALFORMED, malformed)

    def _tell_simple(self, in_port: int, simple: list[tuple[Frame, int, object]],
                     now: float) -> list[tuple[Frame, int, object]]:
        """Tell the observers the simple forwards of ``in_port``'s batch so far (before a
        frame told on its own, or at the batch's end: they see the frames in order);
        returns a fresh list for the next ones (an observer may keep the one it got)."""
        for obs in self.observers:
            obs.simple(in_port, simple, now)
        return []

    def _drop_at(self, in_port: int, counters: SwitchPortCounters, reason: DropReason,
                 n: int) -> None:
        """Count ``n`` frames received on ``in_port`` dropped for ``reason`` before the
        pipeline (misses over the port's budget), as their replay would have."""
        self.state.drops.add(in_port, reason.value, "", n)
        counters.dropped += n
        counters.add_rx_dropped(reason.value, n)

    def watched(self, d: Decision, f: Frame, key: FlowKey | None, in_port: int, now: float,
                ref: FdbEntry | None, source: str, received: bool = True) -> Fate:
        """Replay one frame while captures or observers run: captures get the frame with its
        drops (``received``: a frame a port sent, not one the switch made), observers what
        became of it (:class:`~vspan.datapath.observed.Seen`). Returns the frame's fate."""
        caps = self.captures
        if caps and not f.pid:
            f.pid = next(self.pids)
        self.frame_drops.clear()
        observers = self.observers
        if observers:
            rec = self.recorder
            seen = rec.start(d, in_port, f, f.ts_ns or time.time_ns(), source)
            fate = replay(d, f, key, in_port, now, rec, ref)
            for obs in observers:
                obs.observe(seen, now)
        else:
            fate = replay(d, f, key, in_port, now, self, ref)
        if received:
            for cap in caps:
                cap.rx(in_port, f.data, self.frame_drops, f.pid)
        return fate

    def refuse(self, bad: Refusal, f: Frame, in_port: int, now: float) -> Fate:
        """Drop a frame whose virtio-net header does not fit it (counted on its port with the
        reason, shown to captures and observers; never mirrored: a copy would have to be cut
        as the header says). Returns its fate (the drop)."""
        d = Decision((Drop(DropReason(bad.reason), in_port, detail=bad.detail),),
                     cacheable=False)
        if self.captures or self.observers:
            return self.watched(d, f, None, in_port, now, None, SOURCE_SLOW)
        return replay(d, f, None, in_port, now, self)

    def send_replies(self, now: float) -> None:
        """Reject answers (TCP RST / ICMP unreachable) committed checks asked for.

        The switch made them: no port received them, so their fate is not
        accounted (their outputs count as transmitted, their drops as drops)."""
        for reply in self.policy.take_replies():
            if reply.to_port:
                # delivered to the port's VM: through the port's egress taps
                d = self.upcall.deliver(reply.port, reply.data, reply.vlan)
                key = None
            elif reply.port in self.state.ports:
                # switched as if the port had sent it (its ingress taps), not judged again
                key = extract(reply.data, reply.port)
                d = self.upcall.decide_unjudged(key, reply.data, reply.port)
            else:
                continue
            if self.observers:
                self.watched(d, Frame(reply.data), key, reply.port, now, None, SOURCE_REPLY,
                             received=False)
            else:
                replay(d, Frame(reply.data), key, reply.port, now, self)

    def flush(self) -> None:
        """Send every queued frame (one send_batch per port)."""
        tx = self.tx
        if not tx:
            return
        caps = self.captures
        now = self.clock()
        for idx, frames in tx.items():
            backend = self.backends.get(idx)
            if backend is None or idx not in self.state.ports:
                continue
            if caps:
                for cap in caps:
                    for fr in frames:
                        cap.tx(idx, fr.data, fr.pid)
            self.sent(idx, frames, backend.send_batch(frames), now)
        tx.clear()

    def sent(self, idx: int, frames: list[Frame], sent: int, now: float,
             nbytes: int | None = None) -> None:
        """Count a transmit queue of port ``idx`` of which ``sent`` frames went out (the
        rest are drops for ``tx-error``); ``nbytes``, when the caller knows it, is the
        length of those frames' data (else summed here, frame by frame)."""
        rt = self.state.ports.get(idx)
        if rt is None:
            return
        rt.counters.last_tx = now
        if not rt.counters.first_seen:
            rt.counters.first_seen = now
        rt.counters.tx_frames += sent
        rt.counters.tx_bytes += nbytes if nbytes is not None else sum(
            map(len, map(_DATA, frames if sent == len(frames) else frames[:sent])))
        if sent < len(frames):
            self.state.drops.add(idx, DropReason.TX_ERROR.value, "", len(frames) - sent)

    # ------------------------------------------------------ effects (commit)
    def check(self, check: Check, data: bytes, key: FlowKey, now: float,
              wire: tuple[int, int]) -> CheckOutcome:
        """Do the check."""
        return self.checker.commit(check, data, key, now, wire)

    def mirror(self, copy: Mirror, frame: Frame) -> None:
        """Copy into the session."""
        self.mirror_out.emit(copy, frame)

    def learn(self, learn: Learn, now: float) -> None:
        """Learn the MAC; forget the cached flows that looked it up."""
        rt = self.state.ports.get(learn.port)
        limit = rt.config.mac_limit if rt is not None else 0
        res = self.state.fdb.learn(learn.vlan, learn.mac, learn.port, now, limit)
        if res is LearnResult.NEW or res is LearnResult.MOVED:
            self.cache.mac_changed(((learn.vlan, learn.mac),), room=res is LearnResult.MOVED)

    def refresh(self, refresh: Refresh, now: float) -> None:
        """Refresh the MAC's age."""
        entry = self.state.fdb.lookup(refresh.vlan, refresh.mac)
        if entry is not None and entry.port == refresh.port:
            entry.last_seen = now

    def drop(self, drop: Drop, data: bytes, in_port: int) -> None:
        """Count a drop (and show it to captures)."""
        self.state.drops.add(drop.port, drop.reason.value, drop.rule)
        rt = self.state.ports.get(drop.port)
        if rt is not None:
            rt.counters.dropped += 1
        if self.captures:
            self.frame_drops.append(drop)
            for cap in self.captures:
                cap.dropped(drop.port, data, drop, in_port)

    def flood(self, in_port: int) -> None:
        """Count a flooded frame on its ingress port."""
        rt = self.state.ports.get(in_port)
        if rt is not None:
            rt.counters.flooded += 1

    def output(self, port: int, frame: Frame) -> None:
        """Queue for transmission at the end of the batch."""
        q = self.tx.get(port)
        if q is None:
            self.tx[port] = [frame]
        else:
            q.append(frame)
