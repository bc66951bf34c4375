"""Predicted polling windows for ``switch.poll`` ``adaptive`` (``predict: true``).

Traffic that comes in bursts at a steady interval — a ping every 10 ms, a heartbeat, a
periodic request — arrives long after the adaptive window of the previous burst has
closed, so every burst pays the wake-up of a sleeping engine (and its cold caches).
:class:`Arrivals` remembers when the last bursts started, finds the gaps between them
that recur (at least two gaps within the tolerance of each other), and from the start
of the last burst plans one short polling window around each recurring gap: the engine
blocks until shortly before the next burst is due and then polls the rings for at most
``busy_us``, as if the burst had come during the window after traffic.

CPU cost: at most :data:`MAX_WINDOWS` windows of ``busy_us`` per burst (plus the timer
wake-up that opens each), and only while the gaps keep recurring; traffic without a
steady interval plans no windows. Pure logic on a clock the caller passes in.
"""

from __future__ import annotations

from itertools import pairwise

#: gaps between burst starts remembered (the last ``GAPS + 1`` starts)
GAPS = 8
#: recurring gaps a burst plans windows for (the most frequent ones)
MAX_WINDOWS = 2
#: how long before a predicted burst its window opens (the timer's own wake-up and the
#: sender's jitter), at most half the window
LEAD = 100e-6
#: gaps longer than this are not predicted (a quiet switch should sleep)
MAX_GAP = 1.0


class Arrivals:
    """Burst starts and the polling windows they predict (times in seconds)."""

    __slots__ = ("_busy", "_starts", "_windows")

    def __init__(self, busy_s: float) -> None:
        self._busy = busy_s
        self._starts: list[float] = []
        #: planned windows (open, close), in order; passed ones dropped by :meth:`window`
        self._windows: list[tuple[float, float]] = []

    def configure(self, busy_s: float) -> None:
        """A new window length (a live reload): forget what was learned."""
        self._busy = busy_s
        self.reset()

    def reset(self) -> None:
        """Forget the bursts seen and the windows planned."""
        self._starts.clear()
        self._windows.clear()

    def burst(self, t: float) -> None:
        """A burst of frames started at ``t`` (frames after a quiet moment): plan the
        windows of the next one."""
        starts = self._starts
        if starts and t <= starts[-1]:
            return
        starts.append(t)
        if len(starts) > GAPS + 1:
            del starts[0]
        lead = min(LEAD, self._busy / 2)
        self._windows = [(t + gap - lead, t + gap - lead + self._busy)
                         for gap in sorted(self.recurring())]

    def recurring(self) -> list[float]:
        """The recurring gaps between the remembered burst starts: groups of at least two
        gaps each within half a window of the next (sorted), the median of each; the
        :data:`MAX_WINDOWS` largest groups (on a tie the shorter gap). Gaps no longer
        than a window (the window after traffic covers them) or over :data:`MAX_GAP`
        are left out."""
        gaps = sorted(b - a for a, b in pairwise(self._starts) if self._busy < b - a <= MAX_GAP)
        tol = self._busy / 2
        groups: list[list[float]] = []
        for g in gaps:
            if groups and g - groups[-1][-1] <= tol:
                groups[-1].append(g)
            else:
                groups.append([g])
        found = [(len(grp), grp[len(grp) // 2]) for grp in groups if len(grp) >= 2]
        found.sort(key=lambda x: (-x[0], x[1]))
        return [gap for _, gap in found[:MAX_WINDOWS]]

    def window(self, now: float) -> tuple[float, float] | None:
        """The first planned window that has not closed by ``now`` (it may be open
        already), or None."""
        w = self._windows
        while w and w[0][1] <= now:
            del w[0]
        return w[0] if w else None
