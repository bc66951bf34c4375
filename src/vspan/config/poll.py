"""How the engine waits for frames (``switch.poll``): block until frames come, or keep
polling the rings for a while after traffic (busy polling) to skip the wake-up of a
sleeping thread. See docs/datapath.md, "Waiting for frames"."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from vspan.config.base import Strict

PollMode = Literal["off", "adaptive", "always"]
#: the busy window's longest allowed value (1 s): longer is ``always`` in all but name
MAX_BUSY_US = 1_000_000


class PollConfig(Strict):
    """``switch.poll``: ``off`` blocks until frames come; ``adaptive`` keeps polling the
    rings without blocking for ``busy_us`` after the last frame (and, with ``predict``,
    for up to ``busy_us`` around the time a burst that recurs at a steady interval is due
    next); ``always`` never blocks (one CPU kept busy while the switch runs)."""

    mode: PollMode = "adaptive"
    busy_us: int = Field(default=200, ge=1, le=MAX_BUSY_US)
    predict: bool = True

    @field_validator("mode", mode="before")
    @classmethod
    def _unquoted_off(cls, value: Any) -> Any:
        """YAML 1.1 reads an unquoted ``off`` as ``false``: take it as the mode ``off``."""
        return "off" if value is False else value
