"""Predicted polling windows (``datapath/arrivals.py``): which gaps recur, where the
windows go, what is left alone. Pure logic on hand-made times (no clock)."""

from __future__ import annotations

import random

import pytest

from vspan.datapath.arrivals import GAPS, LEAD, MAX_GAP, MAX_WINDOWS, Arrivals

BUSY = 200e-6


def _fed(starts: list[float], busy: float = BUSY) -> Arrivals:
    a = Arrivals(busy)
    for t in starts:
        a.burst(t)
    return a


def test_nothing_is_predicted_before_a_gap_recurs() -> None:
    a = _fed([1.0, 1.010])  # one gap: nothing recurs yet
    assert a.recurring() == [] and a.window(1.010) is None
    a.burst(1.020 + 30e-6)  # the second gap, within half a window of the first
    assert a.recurring() == [pytest.approx(0.010 + 30e-6)]


def test_a_steady_interval_plans_one_window_opening_before_the_next_burst() -> None:
    a = _fed([1.0 + 0.010 * i for i in range(5)])
    last = 1.040
    w = a.window(last)
    assert w is not None
    assert w[0] == pytest.approx(last + 0.010 - LEAD)
    assert w[1] - w[0] == pytest.approx(BUSY)  # at most busy_us of polling


def test_the_lead_is_at_most_half_a_short_window() -> None:
    a = _fed([1.0 + 0.010 * i for i in range(4)], busy=50e-6)
    w = a.window(1.030)
    assert w is not None and w[0] == pytest.approx(1.040 - 25e-6)


def test_two_alternating_gaps_plan_a_window_for_each() -> None:
    """``ping -i 0.01`` on a 250 Hz kernel sends 16 or 20 ms apart: both are planned, the
    shorter first; the window of the shorter one closes before the longer one's opens."""
    t, starts = 1.0, [1.0]
    for gap in (0.016, 0.020, 0.016, 0.016, 0.020, 0.020):
        t += gap
        starts.append(t)
    a = _fed(starts)
    assert sorted(a.recurring()) == [pytest.approx(0.016), pytest.approx(0.020)]
    first = a.window(t)
    assert first is not None and first[0] == pytest.approx(t + 0.016 - LEAD)
    second = a.window(first[1])  # the first window closed: the next one
    assert second is not None and second[0] == pytest.approx(t + 0.020 - LEAD)
    assert a.window(second[1]) is None


def test_at_most_max_windows_the_most_frequent_gaps() -> None:
    t, starts = 1.0, [1.0]
    for gap in (0.011, 0.011, 0.013, 0.013, 0.013, 0.017, 0.017, 0.017):
        t += gap
        starts.append(t)
    a = _fed(starts)
    assert MAX_WINDOWS == 2
    assert sorted(a.recurring()) == [pytest.approx(0.013), pytest.approx(0.017)]


def test_irregular_traffic_plans_no_window() -> None:
    rng = random.Random(7)
    t, starts = 1.0, [1.0]
    for _ in range(GAPS):  # gaps 1-50 ms apart, never two within 100 µs of each other
        t += 0.001 + 0.006 * len(starts) + rng.random() * 1e-4
        starts.append(t)
    a = _fed(starts)
    assert a.recurring() == [] and a.window(t) is None


def test_short_and_long_gaps_are_left_alone() -> None:
    """A gap no longer than a window is the window after traffic's; over MAX_GAP the
    switch should sleep."""
    assert _fed([1.0 + 150e-6 * i for i in range(5)]).recurring() == []
    assert _fed([1.0 + (MAX_GAP + 0.1) * i for i in range(5)]).recurring() == []


def test_only_the_last_gaps_count() -> None:
    starts = [1.0 + 0.010 * i for i in range(4)]  # 10 ms, then a steady 25 ms
    t = starts[-1]
    for _ in range(GAPS):
        t += 0.025
        starts.append(t)
    assert _fed(starts).recurring() == [pytest.approx(0.025)]


def test_a_passed_window_is_dropped_and_a_burst_plans_anew() -> None:
    a = _fed([1.0, 1.010, 1.020])
    w = a.window(1.020)
    assert w is not None
    assert a.window(w[1]) is None  # closed: gone
    a.burst(1.030)  # the next burst plans from its own start
    nxt = a.window(1.030)
    assert nxt is not None and nxt[0] == pytest.approx(1.040 - LEAD)


def test_a_burst_not_after_the_last_one_is_ignored() -> None:
    a = _fed([1.0, 1.010, 1.020])
    before = a.window(1.020)
    a.burst(1.015)  # out of order (a clock that stood still): nothing learned from it
    assert a.window(1.020) == before


def test_reset_and_configure_forget_what_was_learned() -> None:
    a = _fed([1.0, 1.010, 1.020])
    a.reset()
    assert a.window(1.020) is None and a.recurring() == []
    b = _fed([1.0, 1.010, 1.020])
    b.configure(50e-6)
    assert b.window(1.020) is None
    for t in (1.030, 1.040, 1.050):
        b.burst(t)
    w = b.window(1.050)
    assert w is not None and w[1] - w[0] == pytest.approx(50e-6)
