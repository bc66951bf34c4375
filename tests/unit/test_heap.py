"""``vspan up`` keeps freed frame buffers in its heap (glibc trim threshold)."""

from __future__ import annotations

import ctypes
import platform

import pytest

from vspan.cli.heap import ENV, M_TRIM_THRESHOLD, TRIM_BYTES, keep_freed_memory


class FakeLibc:
    """A C library whose ``mallopt`` records its calls."""

    def __init__(self, result: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.result = result

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.result


def test_sets_the_trim_threshold() -> None:
    libc = FakeLibc()
    assert keep_freed_memory(libc, env={})
    assert libc.calls == [(M_TRIM_THRESHOLD, TRIM_BYTES)]


def test_the_users_environment_wins() -> None:
    libc = FakeLibc()
    assert not keep_freed_memory(libc, env={ENV: "131072"})
    assert libc.calls == []


def test_a_libc_without_mallopt_or_refusing_is_left_alone() -> None:
    assert not keep_freed_memory(object(), env={})
    refusing = FakeLibc(result=0)
    assert not keep_freed_memory(refusing, env={})
    assert refusing.calls == [(M_TRIM_THRESHOLD, TRIM_BYTES)]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_glibc_takes_it() -> None:
    assert keep_freed_memory(ctypes.CDLL(None), env={})
