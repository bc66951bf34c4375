"""Count how often a configuration change set is computed (it must be once per change)."""

from __future__ import annotations

from types import ModuleType

import pytest

from vspan.config import diff as diff_mod
from vspan.config.diff import ChangeSet
from vspan.config.model import Config


def count_diffs(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> list[str]:
    """Replace ``diff`` in :mod:`vspan.config.diff` and ``modules`` by a counting wrapper;
    the returned list grows by one entry per call."""
    calls: list[str] = []
    real = diff_mod.diff

    def counting(old: Config, new: Config) -> ChangeSet:
        calls.append("diff")
        return real(old, new)

    for module in (diff_mod, *modules):
        monkeypatch.setattr(module, "diff", counting, raising=False)
    return calls
