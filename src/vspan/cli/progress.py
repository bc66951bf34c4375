"""A progress bar on stderr for commands that read large files (only on a terminal)."""

from __future__ import annotations

import os
import re
import sys
import time
from typing import TextIO

_UNITS = {"": 1_000_000_000, "s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "µs": 1_000,
          "ns": 1}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|ms|us|µs|ns)?\s*$")


def parse_duration_ns(text: str) -> int:
    """``5ms``, ``250us``, ``0.5`` (seconds), ``2s``, ``100ns`` into nanoseconds."""
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 5ms, 250us, 0.01, 2s)")
    return round(float(m.group(1)) * _UNITS[m.group(2) or ""])


class Progress:
    """``done`` of ``total`` bytes, redrawn at most every ``interval`` seconds.

    Draws only when ``stream`` is a terminal (or ``force``); :meth:`close`
    clears the line so the report that follows starts clean.
    """

    def __init__(self, label: str, total: int, stream: TextIO | None = None, *,
                 force: bool | None = None, interval: float = 0.2, width: int = 30) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force if force is not None else self.stream.isatty()
        self.interval = interval
        self.width = width
        self._start = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int) -> None:
        """Report ``done`` bytes read."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.interval and done < self.total:
            return
        self._last = now
        frac = min(done / self.total, 1.0)
        fill = int(frac * self.width)
        elapsed = max(now - self._start, 1e-6)
        rate = done / elapsed / 1e6
        eta = (self.total - done) / (done / elapsed) if done else 0.0
        self.stream.write(f"\r{self.label} [{'#' * fill}{' ' * (self.width - fill)}] "
                          f"{frac * 100:5.1f}%  {done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB  "
                          f"{rate:,.1f} MB/s  eta {eta:4.0f}s ")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Clear the bar."""
        if self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False


def file_progress(command: str, path: str, quiet: bool) -> Progress | None:
    """A bar for reading ``path``; ``None`` (after saying why on stderr) when it is unreadable."""
    try:
        size = os.path.getsize(path)
    except OSError as err:
        sys.stderr.write(f"{command}: cannot read {path}: {err.strerror}\n")
        return None
    return Progress(command, size, force=False if quiet else None)
