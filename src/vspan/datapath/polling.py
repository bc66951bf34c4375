"""How long the engine's loop may block waiting for frames (``switch.poll``), and what
polling cost.

A sleeping engine thread is woken by the kernel when a frame lands in a ring; on a
virtual CPU that wake-up (and the cold caches after it) is most of a frame's latency
through the switch at low load. Busy polling trades CPU for it:

* ``off`` — always block (until frames come, a control call, or housekeeping is due);
* ``adaptive`` — after a wait that brought frames, keep polling without blocking for
  ``busy_us``; every poll that brings frames starts the window again; when it passes
  with nothing, block again. An idle switch costs nothing; a switch with traffic
  spends up to ``busy_us`` of CPU after each burst;
* ``always`` — never block: one CPU busy for as long as the switch runs.

With ``adaptive`` and ``predict`` (the default), bursts that recur at a steady interval
(a ping every 10 ms) also get a short polling window shortly before the next one is due
(:mod:`vspan.datapath.arrivals`): the engine is awake and polling when it comes.

The window is timed with the real monotonic clock (never the engine's injected clock,
which tests stop). :class:`Poller` keeps the counters ``vspan show counters`` and
``/metrics`` report.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from typing import Any

from vspan.config.poll import PollConfig
from vspan.datapath.arrivals import Arrivals

#: the longest a non-blocking wait of mode ``always`` polls in C before the Python loop
#: runs again (its counters, timers)
ALWAYS_SPIN = 0.001
#: prctl(2) option: the calling thread's timer slack in ns
PR_SET_TIMERSLACK = 29


def tight_timers() -> None:
    """Ask the kernel to fire the calling thread's timeouts on time (timer slack 1 ns
    instead of the default 50 µs): a predicted window opens ~100 µs before its burst is
    due. Best effort (nothing happens where ``prctl`` is missing)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Poller:
    """Decides each wait's timeout from the mode and the last traffic; counts the waits."""

    __slots__ = ("_ahead", "_arrivals", "_busy_s", "_deadline", "_in_window", "_now", "_window",
                 "busy_frames",
                 "busy_polls", "busy_us", "empty_polls", "empty_seconds", "mode",
                 "predicted_frames", "predicted_windows", "waits")

    def __init__(self, config: PollConfig,
                 now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now
        self._deadline = 0.0  # busy-poll (adaptive) until this time
        self.mode = config.mode
        self.busy_us = config.busy_us
        self._busy_s = config.busy_us / 1e6
        #: the bursts' recurring gaps (adaptive with ``predict``), else None
        self._arrivals = Arrivals(self._busy_s) if config.predict else None
        self._window: tuple[float, float] | None = None  # the predicted window polled last
        self._ahead = False  # the last timeout() ends where a predicted window opens
        self._in_window = False  # the wait planned polls a predicted window
        #: predicted windows polled, and frames found in them (each skipped a wake-up)
        self.predicted_windows = 0
        self.predicted_frames = 0
        #: blocking waits (each one may sleep: a wake-up when frames come)
        self.waits = 0
        #: non-blocking polls of the rings
        self.busy_polls = 0
        #: ... of which found no frames, and the time they took (the CPU polling cost)
        self.empty_polls = 0
        self.empty_seconds = 0.0
        #: frames found by non-blocking polls (each one skipped a wake-up)
        self.busy_frames = 0

    def configure(self, config: PollConfig) -> None:
        """Take a new ``switch.poll`` (a live reload); counters are kept."""
        self.mode = config.mode
        self.busy_us = config.busy_us
        self._busy_s = config.busy_us / 1e6
        self._arrivals = Arrivals(self._busy_s) if config.predict else None
        self._window = None
        if self.mode != "adaptive":
            self._deadline = 0.0

    def timeout(self, block: float) -> float:
        """Seconds the next wait may block (0: poll without blocking); ``block`` is the
        longest wait the loop allows (until housekeeping)."""
        mode = self.mode
        self._ahead = self._in_window = False
        if mode == "always":
            return 0.0
        if mode == "adaptive":
            now = self._now()
            if now < self._deadline:
                return 0.0
            w = self._predicted(now)
            if w is not None:
                if now >= w[0]:
                    self._in_window = True
                    return 0.0
                if w[0] - now <= block:
                    self._ahead = True
                    return w[0] - now
        return block

    def _predicted(self, now: float, ahead: bool = False) -> tuple[float, float] | None:
        """The predicted window not yet closed at ``now``, counted when first polled (open
        at ``now``, or ``ahead``: polled when the wait that ends at its opening ends)."""
        if self._arrivals is None:
            return None
        w = self._arrivals.window(now)
        if w is not None and (ahead or now >= w[0]) and w != self._window:
            self._window = w
            self.predicted_windows += 1
        return w

    def done(self, timeout: float, handled: int, started: float, since: float = 0.0) -> None:
        """Account one wait: the ``timeout`` it had, the frames it ``handled``, and when
        it ``started`` (this poller's clock); open the adaptive window after frames.
        ``since``: seconds from the wait's wake-up to now (the native wake path says;
        0: now), for the time a burst started."""
        now = self._now()
        predicted = self._in_window and timeout == 0.0
        self._in_window = False
        self._count(timeout, handled, now - started, now, now - since, predicted)

    def spin(self) -> float:
        """Seconds the wait :meth:`timeout` planned may keep polling before it returns
        (the native wake path polls that long in C): with a timeout of 0, the rest of the
        ``adaptive`` window (after traffic, or a predicted one), up to
        :data:`ALWAYS_SPIN` with ``always``; with a timeout that ends where a predicted
        window opens, that window's length (polled once the timeout passes); else 0."""
        if self.mode == "always":
            return ALWAYS_SPIN
        if self.mode == "adaptive":
            now = self._now()
            end = self._deadline
            w = self._predicted(now, self._ahead)
            if w is not None:
                if self._ahead:
                    self._in_window = True
                    return w[1] - w[0]
                if now >= w[0]:
                    end = max(end, w[1])
            return max(0.0, end - now)
        return 0.0

    def waited(self) -> None:
        """Account a blocking wait that ended with nothing where a predicted window
        opened (the native wake path then polled the window in the same call: its polls
        are counted by :meth:`spun` and :meth:`done`, with a timeout of 0)."""
        self.waits += 1

    def spun(self, polls: int, seconds: float) -> None:
        """Account ``polls`` empty busy polls that took ``seconds`` in all (made before the
        poll :meth:`done` counts, by the native wake path's C loop)."""
        self.busy_polls += polls
        self.empty_polls += polls
        self.empty_seconds += seconds

    def rounds(self, block: float, rounds: list[tuple[int, float]]) -> None:
        """Account the further polls the native wake path made in the same call after the
        one :meth:`done` counted (``(frames handled, seconds)`` each, in order): each is
        the poll this loop would have made next, counted with the timeout it would have
        had (``block``: the loop's longest wait)."""
        for handled, seconds in rounds:
            self._count(self.timeout(block), handled, seconds, self._now())

    def _count(self, timeout: float, handled: int, seconds: float, now: float,
               woke: float | None = None, predicted: bool = False) -> None:
        if timeout > 0.0:
            self.waits += 1
        else:
            self.busy_polls += 1
            if handled:
                self.busy_frames += handled
            else:
                self.empty_polls += 1
                self.empty_seconds += seconds
        if handled and self.mode == "adaptive":
            if now >= self._deadline and self._arrivals is not None:
                # frames after a quiet moment: a burst starts (learn its gap)
                if predicted:  # found by polling a predicted window
                    self.predicted_frames += handled
                self._window = None
                self._arrivals.burst(now if woke is None else woke)
            self._deadline = now + self._busy_s

    def clock(self) -> float:
        """This poller's clock (``started`` for :meth:`done`)."""
        return self._now()

    def stats(self) -> dict[str, Any]:
        """Mode, window and counters, for ``vspan show counters`` and ``/metrics``."""
        return {
            "mode": self.mode,
            "busy_us": self.busy_us,
            "waits": self.waits,
            "busy_polls": self.busy_polls,
            "busy_frames": self.busy_frames,
            "empty_polls": self.empty_polls,
            "empty_seconds": round(self.empty_seconds, 6),
            "predict": self._arrivals is not None,
            "predicted_windows": self.predicted_windows,
            "predicted_frames": self.predicted_frames,
        }
