"""A running ``vspan observe``: filter, sample and rate-cap frame fates; events for a reader.

:class:`Observer` is a :class:`~vspan.datapath.plugins.FrameObserver`. On the
engine thread it does only the cheap part, per frame: which of the frame's
events pass the filters (port, verdict, reason, then the capture filter
language on the frame), 1-in-N sampling of matching frames, a token bucket of
``max_rate`` events per second, and a bounded queue. What does not pass the
sampling, the cap or the queue is counted (``suppressed``), never silently
lost. The reader (the API's streaming response) takes the queued frames and
builds the JSON events (:mod:`vspan.capture.events`) on its own thread.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from vspan.capture.events import (
    DROPPED,
    FORWARDED,
    KINDS,
    MIRRORED,
    RECEIVED,
    SUPPRESSED,
    Names,
    build,
)
from vspan.capture.filter import PacketFilter
from vspan.datapath.flowkey import extract
from vspan.datapath.observed import SOURCE_FAST, Seen
from vspan.datapath.reasons import DropReason
from vspan.packet.flowmatch import ALL_LENGTHS, NO_LENGTHS, Spans
from vspan.ports.base import Frame

DEFAULT_MAX_RATE = 1000.0  # events per second
DEFAULT_KINDS = frozenset((FORWARDED, MIRRORED, DROPPED))  # `received` only when asked
QUEUE_FRAMES = 4096  # frames admitted but not yet read
FLOW_SPANS = 65536  # flows whose capture-filter verdict an observer remembers


class ObserveError(ValueError):
    """A bad observe request (the message says what)."""


@dataclass(frozen=True)
class ObserveSpec:
    """What an observer wants. ``ports``: port indexes (``None``: every port); an event
    matches when its ingress port or the port it names (output, drop) is one of them."""

    ports: frozenset[int] | None = None
    kinds: frozenset[str] = DEFAULT_KINDS
    reasons: frozenset[str] = frozenset()
    filter: PacketFilter | None = None
    sample: int = 1
    max_rate: float = DEFAULT_MAX_RATE

    def __post_init__(self) -> None:
        bad = sorted(set(self.kinds) - set(KINDS))
        if bad:
            raise ObserveError(f"verdict must be one of {', '.join(KINDS)}, not {bad[0]!r}")
        known = {r.value for r in DropReason}
        bad = sorted(set(self.reasons) - known)
        if bad:
            raise ObserveError(f"no drop reason {bad[0]!r} (see `vspan explain-reason --all`)")
        if self.sample < 1:
            raise ObserveError(f"sample must be at least 1, not {self.sample}")
        if not self.max_rate > 0:
            raise ObserveError(f"max_rate must be positive, not {self.max_rate}")


def parse_kinds(values: list[str], reasons: list[str]) -> frozenset[str]:
    """The event kinds for ``--verdict`` values (comma lists allowed; ``all``): none given
    means forwarded, mirrored and dropped, or only dropped when reasons are given."""
    kinds = {k.strip().lower() for v in values for k in v.split(",") if k.strip()}
    if "all" in kinds:
        return frozenset(KINDS)
    if kinds:
        return frozenset(kinds)
    return frozenset((DROPPED,)) if reasons else DEFAULT_KINDS


class Observer:
    """Frames' fates in, events out; bounded on both sides."""

    def __init__(self, observer_id: int, spec: ObserveSpec, names: Names, switch: str = "",
                 host: str = "", now: float | None = None,
                 queue_frames: int = QUEUE_FRAMES) -> None:
        self.id = observer_id
        self.spec = spec
        self.names = names
        self.switch = switch
        self.host = host
        self._queue: deque[tuple[int, Seen, tuple[tuple[str, Any], ...]]] = deque()
        self._queue_frames = queue_frames
        self._tokens = spec.max_rate  # a burst of one second's worth
        self._last = time.monotonic() if now is None else now  # the engine's clock
        self._frames = 0  # frames that passed the filters (numbers the frames)
        # the events of a simple forward (in port, out port): computed once per port pair
        self._simple: dict[int, tuple[tuple[str, Any], ...]] = {}
        self._spans: dict[object, Spans] = {}  # fast flow key -> lengths the filter passes
        # counted on the engine thread only (no lock on the forwarding path); the reader
        # reads them (each a plain int), matched is their sum
        self.sampled_out = 0  # events of frames the 1-in-N sampling skipped
        self.rate_limited = 0  # events over the rate cap
        self.queue_full = 0  # events of frames the reader did not take in time
        self.emitted = 0  # events handed to the reader
        self._reported = (0, 0, 0)

    # ---------------------------------------------------- engine thread
    def _kinds(self, seen: Seen) -> tuple[tuple[str, Any], ...]:
        spec = self.spec
        ports = spec.ports
        kinds = spec.kinds
        in_match = ports is None or seen.in_port in ports
        out: list[tuple[str, Any]] = []
        if RECEIVED in kinds and in_match:
            out.append((RECEIVED, None))
        if FORWARDED in kinds and seen.outputs and (
                in_match or any(p in ports for p, _, _ in seen.outputs)):  # type: ignore[operator]
            out.append((FORWARDED, None))
        if MIRRORED in kinds and in_match:
            out.extend((MIRRORED, s) for s in seen.mirrors)
        if DROPPED in kinds:
            reasons = spec.reasons
            for d in seen.drops:
                if (not reasons or d.reason.value in reasons) and (
                        in_match or d.port in ports):  # type: ignore[operator]
                    out.append((DROPPED, d))
        return tuple(out)

    def observe(self, seen: Seen, now: float) -> None:
        """Judge one recorded frame (engine thread; ``now``: the engine's clock)."""
        kinds = self._kinds(seen)
        if kinds:
            self._offer(seen.data, kinds, now, seen)

    def simple(self, in_port: int, frames: list[tuple[Frame, int, object]],
               now: float) -> None:
        """Judge a batch's simple forwards, (frame, output port) each (engine thread): the
        common case, kept cheap — one call per batch, the tokens refilled once, the
        judging of :meth:`_offer` written out in one loop over locals, no record unless
        admitted, the capture filter decided once per flow (the frame lengths it passes,
        as mirror filters are), and a whole batch counted at once when the cap is reached
        and nothing but the cap would judge it."""
        self._refill(0, now)
        tokens = self._tokens
        spec = self.spec
        flt = spec.filter
        sample = spec.sample
        if tokens < 1 and flt is None and sample == 1 and spec.ports is None:
            n = len(self._simple_kinds(in_port, frames[0][1]))  # the same for every frame
            if n:
                self._frames += len(frames)
                self.rate_limited += len(frames) * n
            return
        table = self._simple
        base = in_port << 32
        queue = self._queue
        room = self._queue_frames - len(queue)
        number = self._frames
        sampled = limited = full = emitted = 0
        spans_of = self._spans
        for f, out_port, fk in frames:
            kinds = table.get(base | out_port)
            if kinds is None:
                kinds = self._simple_kinds(in_port, out_port)
            if not kinds:
                continue
            if flt is not None:
                spans = spans_of.get(fk)
                if spans is None:
                    spans = self._flow_spans(fk, f.data, in_port)
                if not spans:  # the filter refuses the flow
                    continue
                if spans is not ALL_LENGTHS:
                    n = len(f.data)
                    if not any(lo <= n <= hi for lo, hi in spans):
                        continue
            n = len(kinds)
            number += 1
            if sample > 1 and (number - 1) % sample:
                sampled += n
            elif tokens < n:
                limited += n
            elif room <= 0:
                tokens -= n
                full += n
            else:
                tokens -= n
                emitted += n
                room -= 1
                queue.append((number, Seen(in_port, f.data, f.ts_ns or time.time_ns(),
                                           SOURCE_FAST, [(out_port, 0, 0)]), kinds))
        self._tokens = tokens
        self._frames = number
        self.sampled_out += sampled
        self.rate_limited += limited
        self.queue_full += full
        self.emitted += emitted

    def _flow_spans(self, fk: object, data: bytes, in_port: int) -> Spans:
        """The frame lengths the capture filter passes for the flow of ``data`` (``fk`` its
        fast key), remembered (at most :data:`FLOW_SPANS` flows, then forgotten at once)."""
        flt = self.spec.filter
        assert flt is not None
        key = extract(data, in_port)
        if key is None:  # no flow key (not so for a frame with a fast key): this frame only
            return ALL_LENGTHS if flt.match(data) else NO_LENGTHS
        spans = flt.lengths(key)
        if len(self._spans) >= FLOW_SPANS:
            self._spans.clear()
        self._spans[fk] = spans
        return spans

    def _simple_kinds(self, in_port: int, out_port: int) -> tuple[tuple[str, Any], ...]:
        """The events of a simple forward from ``in_port`` to ``out_port`` (remembered)."""
        kinds = self._simple.get((in_port << 32) | out_port)
        if kinds is None:
            kinds = self._kinds(Seen(in_port, b"", 0, SOURCE_FAST, [(out_port, 0, 0)]))
            self._simple[(in_port << 32) | out_port] = kinds
        return kinds

    def _refill(self, n: int, now: float) -> bool:
        """Add the tokens earned since the last refill (at most once per batch: ``now`` is
        the batch's); whether ``n`` are there now."""
        if now != self._last:
            rate = self.spec.max_rate
            self._tokens = min(rate, self._tokens + (now - self._last) * rate)
            self._last = now
        return self._tokens >= n

    def _offer(self, data: bytes, kinds: tuple[tuple[str, Any], ...], now: float,
               seen: Seen) -> None:
        """The capture filter, sampling, the rate cap and the queue, in that order."""
        spec = self.spec
        if spec.filter is not None and not spec.filter.match(data):
            return
        n = len(kinds)
        self._frames += 1
        if spec.sample > 1 and (self._frames - 1) % spec.sample:
            self.sampled_out += n
            return
        if self._tokens < n and not self._refill(n, now):  # refill only when short
            self.rate_limited += n
            return
        self._tokens -= n
        if len(self._queue) >= self._queue_frames:
            self.queue_full += n
            return
        self.emitted += n
        self._queue.append((self._frames, seen, kinds))

    # ---------------------------------------------------- reader thread
    def take(self, limit: int = 256) -> list[dict[str, Any]]:
        """Up to ``limit`` queued frames' events, oldest first."""
        out: list[dict[str, Any]] = []
        q = self._queue
        for _ in range(limit):
            try:
                frame, seen, kinds = q.popleft()
            except IndexError:
                break
            out.extend(build(seen, kinds, frame, self.names, self.switch, self.host))
        return out

    @property
    def pending(self) -> int:
        """Frames queued for the reader."""
        return len(self._queue)

    def counters(self) -> dict[str, int]:
        """Totals since the observer started (``matched``: events that passed the filters)."""
        c = {"emitted": self.emitted, "sampled_out": self.sampled_out,
             "rate_limited": self.rate_limited, "queue_full": self.queue_full}
        return {"matched": sum(c.values())} | c

    def suppressed_event(self) -> dict[str, Any] | None:
        """A ``suppressed`` event with the counts since the last one (``None``: none since);
        ``total`` carries the totals."""
        c = self.counters()
        now = (c["sampled_out"], c["rate_limited"], c["queue_full"])
        if now == self._reported:
            return None
        last, self._reported = self._reported, now
        return {"type": SUPPRESSED, "switch": self.switch, "host": self.host,
                "sampled_out": now[0] - last[0], "rate_limited": now[1] - last[1],
                "queue_full": now[2] - last[2], "total": c}

    def summary(self) -> dict[str, Any]:
        """What the observer is and did."""
        spec = self.spec
        return {"id": self.id, "kinds": sorted(spec.kinds), "reasons": sorted(spec.reasons),
                "ports": None if spec.ports is None else sorted(
                    self.names.port(p) for p in spec.ports),
                "filter": spec.filter.expression if spec.filter is not None else "",
                "sample": spec.sample, "max_rate": spec.max_rate, **self.counters()}
