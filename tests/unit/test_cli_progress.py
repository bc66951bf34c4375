"""The progress bar of dedup/flows and the duration options."""

from __future__ import annotations

import io

import pytest

from vspan.cli.progress import Progress, parse_duration_ns


def test_durations() -> None:
    assert parse_duration_ns("5ms") == 5_000_000
    assert parse_duration_ns("250us") == parse_duration_ns("250 µs") == 250_000
    assert parse_duration_ns("0.5") == parse_duration_ns("0.5s") == 500_000_000
    assert parse_duration_ns("100ns") == 100
    for bad in ("soon", "-1ms", "5 min", ""):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration_ns(bad)


def test_bar_only_on_a_terminal_and_cleared_at_the_end() -> None:
    out = io.StringIO()
    bar = Progress("vspan dedup", 1000, out)  # a StringIO is not a terminal
    bar(500)
    bar.close()
    assert out.getvalue() == ""
    bar = Progress("vspan dedup", 1000, out, force=True, interval=0)
    bar(250)
    bar(1000)
    bar.close()
    text = out.getvalue()
    assert " 25.0%" in text and "100.0%" in text and text.endswith("\r\033[K")
