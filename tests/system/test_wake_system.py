"""The native wake path (``datapath/_wake.h``, ``datapath/wake.py``) on real veth ports:
an in-process engine, so every counter can be compared with the backends' own. No timed
assertions: its latency is measured by ``bench/bench_latency.py``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.helpers.netns import Lab, require_tools
from tests.system.test_switch import hosts, ping, ports_yaml
from vspan.config.load import load_text
from vspan.control.assemble import build_engine
from vspan.datapath import accounting, native
from vspan.datapath.engine import Engine
from vspan.ports import ringio
from vspan.ports.factory import open_backend

pytestmark = pytest.mark.system


def _need_native() -> None:
    if not (native.wanted("auto") and ringio.enabled()):
        pytest.skip("the native wake path needs the C extensions and VSPAN_FASTPATH not python")


@contextmanager
def engine(lab: Lab, poll: str, start: bool = True) -> Iterator[tuple[Engine, dict[str, str]]]:
    """An in-process switch on two veth hosts a (10.71.0.1) and b (10.71.0.2)."""
    h = hosts(lab, {"a": "10.71.0.1/24", "b": "10.71.0.2/24"})
    cfg = load_text(f"switch: {{poll: {{mode: {poll}}}}}\n" + ports_yaml(h))
    eng = build_engine(cfg, open_backend)
    eng.open()
    try:
        if start:
            eng.start()
        yield eng, {k: v[0] for k, v in h.items()}
    finally:
        eng.close()


def _exact(eng: Engine) -> None:
    """Every switch port's frame counters equal its backend's, and every received frame
    was forwarded, dropped or consumed."""
    for idx, rt in eng.state.ports.items():
        b = eng.backends[idx].counters
        c = rt.counters
        assert (c.rx_frames, c.tx_frames, c.tx_bytes) == (b.rx_frames, b.tx_frames,
                                                          b.tx_bytes), rt.name
    bad = [a for a in accounting.accounts(eng.state) if a.difference]
    assert not bad, bad


@pytest.mark.parametrize("poll", ["off", "adaptive", "always"])
def test_pings_cross_the_wake_path_with_exact_counters(netlab: Lab, poll: str) -> None:
    """The first frames of a flow are misses handed back to the Python replay (they
    install the flow); the rest are answered and sent by the C call. Port counters equal
    the backends', the accounting holds, every native hit is counted, and the poll
    counters keep their meaning (``off`` never busy-polls, ``always`` never blocks)."""
    _need_native()
    require_tools("ping")
    with engine(netlab, poll) as (eng, ns):
        ping(netlab, ns["a"], "10.71.0.2", count=20, interval="0.02")
        stats = eng.call(eng.poll_stats)
        eng.stop()
        cache = eng.cache.stats()
        _exact(eng)
        nat = eng.fastpath.native
        assert nat is not None
    assert stats["wake"] == "native"
    assert stats["wake_frames"] >= 30  # requests and replies after the first
    assert cache["misses"] >= 2 and eng.upcall.upcalls >= 2  # handed back, decided
    assert cache["hits"] >= stats["wake_frames"] and nat.replayed >= stats["wake_frames"]
    if poll == "off":
        assert stats["busy_polls"] == stats["empty_polls"] == 0 and stats["waits"] > 0
    elif poll == "always":
        assert stats["waits"] == 0 and stats["busy_frames"] >= 30
    else:
        assert stats["waits"] > 0 and stats["busy_frames"] > 0


def test_control_calls_and_timeouts_come_back_and_the_gil_is_released(netlab: Lab) -> None:
    """A wait of the C call blocks without the GIL: while it waits (a 20 s timeout) this
    thread runs Python and wakes it through the engine's control pipe, and the call hands
    that event back to the Python loop, which answers a control call. An idle wait with
    a short timeout comes back with nothing (timers and housekeeping run then)."""
    _need_native()
    with engine(netlab, "off", start=False) as (eng, _ns):
        wake = eng.wake
        assert wake is not None
        rounds, rest, partial, (spun, secs, since, _) = wake.wait(0.01, eng.batch_size, False)
        assert (rounds, rest, partial, spun, secs) == ([(0, rounds[0][1])], [], None, 0, 0.0)
        assert since >= 0.0  # from the timeout's return to the call's
        # a timeout under a millisecond (epoll_pwait2: the predicted windows) comes back
        # empty too
        rounds, rest, partial, _ = wake.wait(0.0003, eng.batch_size, False)
        assert ([h for h, _ in rounds], rest, partial) == ([0], [], None)
        entered = threading.Event()
        got: list[tuple[list[tuple[int, float]], list[tuple[int, int]]]] = []

        def waiter() -> None:
            entered.set()
            r, e, _, _ = wake.wait(20.0, eng.batch_size, False)
            got.append((r, e))

        t = threading.Thread(target=waiter)
        t.start()
        assert entered.wait(10)
        time.sleep(0.05)  # (lets it reach epoll_wait; a wake-up before would prove nothing)
        work = sum(range(200_000))  # Python work while the other thread is in epoll_wait
        eng._wake()
        t.join(30)
        assert work == 19_999_900_000 and got
        r, e = got[0]
        assert [fd for fd, _ in e] == [eng._wake_r]  # the control pipe, for Python
        assert r[0][0] == 0
        eng.start()  # the loop answers a control call from another thread
        assert eng.call(lambda: threading.current_thread().name) == "vspan-engine"


def test_the_busy_poll_window_is_polled_in_c_without_the_gil(netlab: Lab) -> None:
    """With timeout 0 and a spin (the rest of the adaptive window) the call keeps polling
    in C, the GIL released: an idle window ends with its empty polls counted; a long one
    (20 s) ends at once when this thread, running Python meanwhile, wakes the engine."""
    _need_native()
    with engine(netlab, "adaptive", start=False) as (eng, _ns):
        wake = eng.wake
        assert wake is not None
        rounds, rest, partial, (spun, seconds, _, _) = wake.wait(0.0, eng.batch_size, True, 0.005)
        assert [h for h, _ in rounds] == [0] and rest == [] and partial is None
        assert spun > 0 and seconds > 0
        # a predicted window: a timed wait (2 ms, epoll_pwait2), then 1 ms polled in the
        # same call (how many polls fit in it depends on the CPU: not asserted)
        rounds, rest, partial, (_, _, _, polled) = wake.wait(0.002, eng.batch_size, True,
                                                             0.001)
        assert [h for h, _ in rounds] == [0] and rest == [] and partial is None
        assert polled
        # without a spin a timed wait polls nothing after it
        *_, (spun, seconds, _, polled) = wake.wait(0.002, eng.batch_size, True)
        assert (spun, seconds, polled) == (0, 0.0, False)
        entered = threading.Event()
        got: list[tuple[list[tuple[int, int]], int]] = []

        def waiter() -> None:
            entered.set()
            _r, e, _p, (n, _s, _w, _) = wake.wait(0.0, eng.batch_size, True, 20.0)
            got.append((e, n))

        t = threading.Thread(target=waiter)
        t.start()
        assert entered.wait(10)
        time.sleep(0.05)  # (lets it start polling)
        work = sum(range(200_000))  # Python work while the other thread polls
        eng._wake()
        t.join(30)
        assert work == 19_999_900_000 and got
        events, _polls = got[0]
        assert [fd for fd, _ in events] == [eng._wake_r]
