"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.netns import Lab, is_root, lab


@pytest.fixture
def netlab() -> Iterator[Lab]:
    """A namespace lab with a unique prefix, removed after the test (root only)."""
    if not is_root():
        pytest.skip("needs root to create network namespaces and veth pairs")
    with lab() as the_lab:
        yield the_lab
