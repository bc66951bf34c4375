"""Durations (``90``, ``30s``, ``10m``, ``2h``, ``7d``) and sizes (``1500``, ``64k``, ``10M``,
``1G``: powers of 1024) on the command line, as argparse types."""

from __future__ import annotations

import argparse
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$", re.IGNORECASE)
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SHIFT = {"b": 0, "k": 10, "m": 20, "g": 30, "t": 40}


def duration(text: str) -> float:
    """Seconds in ``text`` (a number of seconds, or with s/m/h/d); must be positive."""
    m = _DURATION.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (like 90, 30s, 10m, 2h, "
                                         "7d)")
    seconds = float(m.group(1)) * _SECONDS[(m.group(2) or "s").lower()]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be more than 0")
    return seconds


def size(text: str) -> int:
    """Bytes in ``text`` (a number, or with k/M/G/T meaning KiB, MiB, ...); must be > 0."""
    m = _SIZE.match(text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (like 1500, 64k, 10M, 1G)")
    n = int(m.group(1)) << _SHIFT[(m.group(2) or "b")[0].lower()]
    if n <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a size must be more than 0")
    return n
