"""Every pipeline test ends with the accounting invariant checked on the switches it made
(``docs/accounting.md``): each frame a port received was forwarded, dropped or consumed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pipeline import harness
from vspan.datapath import accounting


@pytest.fixture(autouse=True)
def accounting_holds() -> Iterator[None]:
    """Check the invariant on every switch the test made (between batches, where it is
    exact), failing the test with the port and the difference."""
    harness.MADE.clear()
    yield
    made, harness.MADE[:] = list(harness.MADE), []
    for sw in made:
        bad = accounting.check(sw.engine.state)
        assert not bad, "accounting invariant fails: " + "; ".join(b.describe() for b in bad)
