"""The evidence a demo promises, and whether it was actually observed.

A demo states each piece of evidence as an expectation: what the user should
see and, if it is not there, why that matters. The demo succeeds only when
every expectation held.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class DemoError(Exception):
    """The demo cannot run here, or a step it depends on failed (the reason is the text)."""


@dataclass
class Evidence:
    """Observed and missing evidence of one demo run."""

    seen: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def expect(self, ok: bool, seen: str, missing: str) -> bool:
        """Record ``seen`` when ``ok``, else ``missing``; return ``ok``."""
        (self.seen if ok else self.missing).append(seen if ok else missing)
        return ok

    @property
    def ok(self) -> bool:
        """Whether something was observed and nothing is missing."""
        return bool(self.seen) and not self.missing
