"""The accounting invariant checked on a running switch before a test stops it
(``docs/accounting.md``): every frame a port received was forwarded, dropped or consumed.

The switch's counters are exact between batches, so the check is exact even while
frames arrive; it still waits for the traffic to stop (the received totals unchanged
over a short interval) so that what it reports is the test's whole traffic.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

Reader = Callable[[], dict[str, Any] | None]  # GET /show/accounting (None: no answer)


def _received(view: dict[str, Any]) -> dict[str, int]:
    return {p["port"]: int(p["received"]) for p in view["ports"]}


def quiesced(read: Reader, settle: float = 0.3, timeout: float = 5.0) -> dict[str, Any] | None:
    """The accounting view once the received counters stopped moving (or after
    ``timeout``); ``None`` when the switch does not answer."""
    view = read()
    deadline = time.monotonic() + timeout
    while view is not None and time.monotonic() < deadline:
        time.sleep(settle)
        again = read()
        if again is None or _received(again) == _received(view):
            return again
        view = again
    return view


def failures(read: Reader, who: str) -> list[str]:
    """What is wrong with the switch's accounting (empty: it holds, or the switch does not
    answer — a switch that died fails its test by other means)."""
    view = quiesced(read)
    if view is None or view["ok"]:
        return []
    return [f"{who}: {line}" for line in view["failures"]]


def failing() -> bool:
    """Whether an exception is propagating (a test already failing: do not mask it)."""
    return sys.exc_info()[0] is not None


def raise_if(problems: list[str]) -> None:
    """Fail the test naming every port whose frames do not add up."""
    if problems:
        raise AssertionError("accounting invariant fails (received != forwarded + dropped + "
                             "consumed): " + "; ".join(problems))
