"""Frames made in C without running ``Frame.__init__`` (``datapath/_slots.h``).

The C side fills a :class:`Frame`'s five slots directly only when the class has exactly the
layout it checked (and has not changed since); any other class is called as before. These
tests hold the C-made frame to the Python-made one slot by slot, make the C side fall back
for every kind of class it must not fill directly, and check that references are right:
nothing leaks over 100 000 frames drained from a ring.
"""

from __future__ import annotations

import gc
import mmap
import socket
import sys
import tracemalloc
import types
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vspan.ports import constants as c
from vspan.ports import ringio
from vspan.ports.afpacket import RingGeometry
from vspan.ports.base import Frame

pytestmark = pytest.mark.skipif(ringio._mod is None, reason="vspan.ports._ring was not built")

SLOTS = ("data", "vnet", "ts_ns", "port", "pid")
ETH = bytes.fromhex("0200000000020200000000010800")


def _ring() -> Any:
    assert ringio._mod is not None
    return ringio._mod


def _slots(f: object) -> tuple[object, ...]:
    return tuple(getattr(f, name) for name in SLOTS)


ints = st.integers(min_value=-(2**70), max_value=2**70)


@given(data=st.binary(max_size=64), vnet=st.binary(max_size=12), ts=ints, port=ints, pid=ints,
       nargs=st.integers(min_value=1, max_value=5))
def test_c_made_frame_equals_the_python_made_one(data: bytes, vnet: bytes, ts: int, port: int,
                                                 pid: int, nargs: int) -> None:
    args: tuple[Any, ...] = (data, vnet, ts, port, pid)[:nargs]
    made, direct = _ring().make_frame(Frame, *args)
    assert direct
    assert type(made) is Frame
    assert _slots(made) == _slots(Frame(*args))
    for name, value in zip(SLOTS, args, strict=False):  # the very objects given
        assert getattr(made, name) is value


def test_made_frames_hold_exactly_one_reference_to_each_value() -> None:
    data, vnet, ts = ETH + b"refcount", b"v" * 10, 10**30
    # Frame's own count moves whenever a frame left behind by an earlier test is
    # collected: collect those first, and let no collection run while counting
    gc.collect()
    gc.disable()
    try:
        before = [sys.getrefcount(x) for x in (data, vnet, ts, Frame)]
        frames = [_ring().make_frame(Frame, data, vnet, ts)[0] for _ in range(1000)]
        during = [sys.getrefcount(x) for x in (data, vnet, ts, Frame)]
        assert [d - b for d, b in zip(during, before, strict=True)] == [1000] * 4
        del frames
        assert [sys.getrefcount(x) for x in (data, vnet, ts, Frame)] == before
    finally:
        gc.enable()


def test_made_frames_are_ordinary_frames() -> None:
    f, _ = _ring().make_frame(Frame, ETH)
    f.port = 3
    f.data = b"other"
    assert (f.data, f.port, repr(f)) == (b"other", 3, "Frame(len=5, vnet=-)")
    assert gc.is_tracked(f)  # the GC sees it like one made by Python
    with pytest.raises(AttributeError):
        f.unknown = 1


class SubFrame(Frame):
    """A subclass: its own __init__ must run."""

    __slots__ = ("extra",)

    def __init__(self, data: bytes, vnet: bytes = b"", ts_ns: int = 0, port: int = 0,
                 pid: int = 0) -> None:
        super().__init__(data, vnet, ts_ns, port, pid)
        self.extra = "ran"


class EmptySubFrame(Frame):
    """A subclass with the same slots: still not Frame."""

    __slots__ = ()


class Validating:
    """Same slots, another __init__ (it checks and converts)."""

    __slots__ = ("data", "pid", "port", "ts_ns", "vnet")

    def __init__(self, data: bytes, vnet: bytes = b"", ts_ns: int = 0, port: int = 0,
                 pid: int = 0) -> None:
        self.data = bytes(data)
        self.vnet = vnet
        self.ts_ns = int(ts_ns) + 1
        self.port = port
        self.pid = pid


class WithDict:
    """Frame's own __init__, but instances have a __dict__."""

    __init__ = Frame.__init__


class OtherDefaults:
    """The same slots and __init__ code, another default (pid=9)."""

    __slots__ = ("data", "pid", "port", "ts_ns", "vnet")
    __init__ = types.FunctionType(Frame.__init__.__code__, Frame.__init__.__globals__,
                                  "__init__", (b"", 0, 0, 9))


class LikeFrame:
    """The same layout and __init__ as Frame, in another class: filled directly too."""

    __slots__ = ("data", "pid", "port", "ts_ns", "vnet")
    __init__ = Frame.__init__


@pytest.mark.parametrize("cls", [SubFrame, EmptySubFrame, Validating, WithDict, OtherDefaults],
                         ids=lambda cls: cls.__name__)
def test_another_layout_calls_the_class(cls: type) -> None:
    made, direct = _ring().make_frame(cls, bytearray(ETH), b"", 4)
    assert not direct
    expected = cls(bytearray(ETH), b"", 4)
    assert type(made) is cls
    assert _slots(made) == _slots(expected)
    assert getattr(made, "extra", None) == getattr(expected, "extra", None)


def test_a_frame_like_class_is_filled_directly() -> None:
    made, direct = _ring().make_frame(LikeFrame, ETH, b"", 4)
    assert direct and type(made) is LikeFrame and _slots(made) == (ETH, b"", 4, 0, 0)


def test_a_class_changed_at_run_time_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    original = LikeFrame.__init__

    def counting(self: LikeFrame, data: bytes, vnet: bytes = b"", ts_ns: int = 0,
                 port: int = 0, pid: int = 0) -> None:
        calls.append(data)
        original(self, data, vnet, ts_ns, port, pid)

    calls: list[bytes] = []
    monkeypatch.setattr(LikeFrame, "__init__", counting)
    made, direct = _ring().make_frame(LikeFrame, ETH)
    assert not direct and calls == [ETH] and made.data == ETH
    monkeypatch.undo()
    assert _ring().make_frame(LikeFrame, ETH)[1]


def test_not_a_class_is_called() -> None:
    def factory(data: bytes, vnet: bytes = b"", ts_ns: int = 0) -> tuple[bytes, bytes, int]:
        return (data, vnet, ts_ns)

    assert _ring().make_frame(factory, ETH, b"", 3) == ((ETH, b"", 3), False)


# ------------------------------------------------------------------ through the ring drain

SLOTS_N = 64


@pytest.fixture
def ring() -> Iterator[tuple[mmap.mmap, tuple[int, ...]]]:
    """A 64-slot ring in an anonymous mapping, every slot holding one frame (user's)."""
    g = RingGeometry(SLOTS_N, 2048)
    buf = mmap.mmap(-1, g.size)
    offs = tuple(g.offsets())
    for i, off in enumerate(offs):
        data = ETH + bytes([i]) * 46
        c.TPACKET2_HDR.pack_into(buf, off, c.TP_STATUS_USER, len(data), len(data), 82, 96, 5,
                                 7, 0, 0)
        buf[off + 82 : off + 82 + len(data)] = data
    yield buf, offs
    buf.close()


def _refill(buf: mmap.mmap, offs: tuple[int, ...]) -> None:
    status = memoryview(buf).cast("I")
    for off in offs:
        status[off >> 2] = c.TP_STATUS_USER
    status.release()


@pytest.mark.parametrize("cls", [Frame, SubFrame, Validating], ids=lambda cls: cls.__name__)
def test_drain_makes_the_frames_the_class_makes(ring: tuple[mmap.mmap, tuple[int, ...]],
                                                cls: type) -> None:
    buf, offs = ring
    frames, head, nbytes, errors, _ = _ring().drain(buf, offs, 0, SLOTS_N, 2048, cls)
    assert (len(frames), head, errors) == (SLOTS_N, 0, 0)
    assert all(type(f) is cls for f in frames)
    want = [cls(ETH + bytes([i]) * 46, b"", 5_000_000_007) for i in range(SLOTS_N)]
    assert [_slots(f) for f in frames] == [_slots(w) for w in want]
    assert nbytes == sum(len(f.data) for f in frames)
    assert [getattr(f, "extra", None) for f in frames] == [getattr(w, "extra", None)
                                                           for w in want]


def test_no_leak_over_100k_drained_frames(ring: tuple[mmap.mmap, tuple[int, ...]]) -> None:
    buf, offs = ring
    drain = _ring().drain

    def batch() -> None:
        _refill(buf, offs)
        frames, *_ = drain(buf, offs, 0, SLOTS_N, 2048, Frame)
        assert len(frames) == SLOTS_N

    for _ in range(50):  # warm up (free lists, caches)
        batch()
    gc.collect()
    refs = sys.getrefcount(Frame)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(100_000 // SLOTS_N + 1):
            batch()
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sys.getrefcount(Frame) == refs
    assert end - start < 64 * 1024  # 100k frames of ~150 bytes each would be ~15 MB


# ------------------------------------------------------------------ slots read in C


class Duck:
    """Not a Frame: read through the generic attribute protocol."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.vnet = b""


class Shifted:
    """Slotted too, the same names at other offsets: the cache must not read Frame's."""

    __slots__ = ("a", "b", "c", "data", "vnet")

    def __init__(self, data: bytes) -> None:
        self.a = self.b = self.c = b"wrong"
        self.data = data
        self.vnet = b""


def test_send_reads_frames_and_other_objects_and_reports_unset_slots() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        plain = ETH + b"x" * 20
        unset = Frame(ETH + b"y" * 20)
        del unset.vnet
        frames: list[object] = [Frame(plain), Duck(plain + b"d"), Frame(plain + b"f"),
                                Shifted(plain + b"s"), Shifted(plain + b"t"), Frame(plain)]
        want = [plain, plain + b"d", plain + b"f", plain + b"s", plain + b"t", plain]
        for _ in range(2):  # the second time through the slot caches
            nxt, sent, *_ = _ring().send(a.fileno(), frames, 0, bytes(256), 65536, True)
            assert (nxt, sent) == (6, 6)
            assert [b.recv(4096)[10:] for _ in range(6)] == want
        with pytest.raises(AttributeError, match="vnet"):
            _ring().send(a.fileno(), [unset], 0, bytes(256), 65536, True)
    finally:
        a.close()
        b.close()
