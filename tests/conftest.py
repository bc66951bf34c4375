"""Shared fixtures, and the ``fastpath_independent`` rule for the second CI pass."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.helpers.netns import Lab, is_root, lab

# scripts/test.sh runs the suite twice: with the native fast path and with
# VSPAN_FASTPATH=python. A module marked ``fastpath_independent`` runs only in the first:
# its tests never build a switch, an engine or an AF_PACKET port, so the choice cannot change
# what they do. Two checks keep the mark honest: such a module may not name the things that
# reach the fast path (FORBIDDEN, checked at collection), and while its tests run (in the
# native pass) the only two places that read the choice fail the test if they are called.
MARK = "fastpath_independent"
FORBIDDEN = ("vspan.datapath.native", "vspan.datapath.engine", "vspan.ports", "netlab",
             "switchproc", "apiswitch", "pipeline.harness", "\"run\"")


def python_pass() -> bool:
    """Whether this is the VSPAN_FASTPATH=python pass."""
    return os.environ.get("VSPAN_FASTPATH", "").strip().lower() == "python"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SKIPPED] = 0
    # A suite started in the background by a non-interactive shell (`nohup ... &`) inherits
    # SIGINT ignored, and so would every process a test starts: a Python program then
    # never sees KeyboardInterrupt, and the tests that stop `vspan observe`, `capture` or
    # `collect` with SIGINT (Ctrl-C) wait for nothing. Caught here, it is back to its
    # default in the children (exec resets a caught signal, not an ignored one).
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


SKIPPED = pytest.StashKey[int]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    checked: set[Path] = set()
    for item in items:
        if item.get_closest_marker(MARK) is None:
            continue
        if item.path not in checked:
            checked.add(item.path)
            text = item.path.read_text()
            named = [word for word in FORBIDDEN if word in text]
            if named:
                raise pytest.UsageError(f"{item.path} is marked {MARK} but names {named}, "
                                        "which reach the fast path")
        if python_pass():
            config.stash[SKIPPED] += 1
            item.add_marker(pytest.mark.skip(
                reason=f"{MARK}: ran in the native pass; never reaches the fast path"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    skipped = terminalreporter.config.stash.get(SKIPPED, 0)
    if skipped:
        terminalreporter.write_line(
            f"{MARK}: {skipped} tests skipped in this VSPAN_FASTPATH=python pass (they ran in "
            "the native pass, where they never reached native.wanted or ringio.enabled)")


@pytest.fixture(autouse=True)
def fastpath_untouched(request: pytest.FixtureRequest,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """In a ``fastpath_independent`` test, reading the fast-path choice fails the test."""
    if request.node.get_closest_marker(MARK) is None:
        return
    from vspan.datapath import native
    from vspan.ports import ringio

    def reached(*_args: object) -> NoReturn:
        raise AssertionError(f"a test marked {MARK} reached the fast-path choice; "
                             "remove the mark")

    monkeypatch.setattr(native, "wanted", reached)
    monkeypatch.setattr(ringio, "enabled", reached)


@pytest.fixture
def netlab() -> Iterator[Lab]:
    """A namespace lab with a unique prefix, removed after the test (root only)."""
    if not is_root():
        pytest.skip("needs root to create network namespaces and veth pairs")
    with lab() as the_lab:
        yield the_lab
