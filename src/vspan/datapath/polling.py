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

The window is timed with the real monotonic clock (never the engine's injected clock,
which tests stop). :class:`Poller` keeps the counters ``vspan show counters`` and
``/metrics`` report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from vspan.config.poll import PollConfig

#: the longest a non-blocking wait of mode ``always`` polls in C before the Python loop
#: runs again (its counters, timers)
ALWAYS_SPIN = 0.001


class Poller:
    """Decides each wait's timeout from the mode and the last traffic; counts the waits."""

    __slots__ = ("_busy_s", "_deadline", "_now", "busy_frames", "busy_polls", "busy_us",
                 "empty_polls", "empty_seconds", "mode", "waits")

    def __init__(self, config: PollConfig,
                 now: Callable[[], float] = time.perf_counter) -> None:
        self._now = now
        self._deadline = 0.0  # busy-poll (adaptive) until this time
        self.mode = config.mode
        self.busy_us = config.busy_us
        self._busy_s = config.busy_us / 1e6
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
        if self.mode != "adaptive":
            self._deadline = 0.0

    def timeout(self, block: float) -> float:
        """Seconds the next wait may block (0: poll without blocking); ``block`` is the
        longest wait the loop allows (until housekeeping)."""
        mode = self.mode
        if mode == "always":
            return 0.0
        if mode == "adaptive" and self._now() < self._deadline:
            return 0.0
        return block

    def done(self, timeout: float, handled: int, started: float) -> None:
        """Account one wait: the ``timeout`` it had, the frames it ``handled``, and when
        it ``started`` (this poller's clock); open the adaptive window after frames."""
        now = self._now()
        self._count(timeout, handled, now - started, now)

    def spin(self) -> float:
        """Seconds a non-blocking wait may keep polling before it returns (the native wake
        path polls that long in C): the rest of the ``adaptive`` window, up to
        :data:`ALWAYS_SPIN` with ``always``, else 0."""
        if self.mode == "always":
            return ALWAYS_SPIN
        if self.mode == "adaptive":
            return max(0.0, self._deadline - self._now())
        return 0.0

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

    def _count(self, timeout: float, handled: int, seconds: float, now: float) -> None:
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
        }
