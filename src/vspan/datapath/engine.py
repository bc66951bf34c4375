"""The engine: a running switch — ports, the poll loop, housekeeping, live reload.

It owns the switch state and is the only thing that touches it while running;
other threads (the control API) hand it work through :meth:`Engine.call`.
The work is split by job:

* :mod:`~vspan.datapath.fastpath` — the replay loop over batches of frames;
* :mod:`~vspan.datapath.upcall` — the slow path (pipeline, install);
* :mod:`~vspan.datapath.mirrorout` — mirror copies and the remote senders
  (ERSPAN, injected as :class:`~vspan.datapath.plugins.RemoteMirrors`);
* captures and observers — injected :class:`~vspan.datapath.plugins.CaptureTap` and
  :class:`~vspan.datapath.plugins.FrameObserver` objects;
* this module — backends, the poll loop, links, housekeeping and reload,
  each telling the flow cache exactly what changed.

The pieces (state, pipeline with its stages, policy, remote mirrors) are
assembled outside the datapath (:mod:`vspan.control.assemble`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from vspan.config.diff import ChangeSet, diff
from vspan.config.model import Config, PortConfig
from vspan.datapath import native
from vspan.datapath.decision import Decision
from vspan.datapath.fastpath import FastPath
from vspan.datapath.flowcache import FlowCache
from vspan.datapath.flowkey import extract
from vspan.datapath.mirrorout import MirrorOut
from vspan.datapath.pipeline import Pipeline
from vspan.datapath.plugins import CaptureTap, FrameObserver, Policy, RemoteMirrors
from vspan.datapath.polling import Poller, tight_timers
from vspan.datapath.predict import Outcome, predict
from vspan.datapath.replay import replay
from vspan.datapath.state import SwitchState, Touched
from vspan.datapath.trace import Tracer
from vspan.datapath.upcall import Upcall
from vspan.datapath.wake import Round, WakePath
from vspan.datapath.wake import wanted as wake_wanted
from vspan.ports import ringio
from vspan.ports.base import Frame, Port, PortError
from vspan.ports.team import TeamPort

log = logging.getLogger(__name__)

T = TypeVar("T")
BackendFactory = Callable[[str, PortConfig], Port]

HOUSEKEEPING_SECONDS = 1.0


class Engine:
    """A running switch: state, pipeline, flow cache and port backends."""

    def __init__(self, state: SwitchState, pipeline: Pipeline, policy: Policy,
                 backend_factory: BackendFactory, remote: RemoteMirrors | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.state = state
        self.pipeline = pipeline
        self.policy = policy
        config = state.config
        self.cache = FlowCache(config.switch.flow_cache_size)
        self.backend_factory = backend_factory
        self.backends: dict[int, Port] = {}
        self.batch_size = config.switch.batch_size
        self.poller = Poller(config.switch.poll)  # block, or busy-poll after traffic
        self._tx: dict[int, list[Frame]] = {}
        self.mirror_out = MirrorOut(state, self._tx, remote)
        self.upcall = Upcall(pipeline, self.cache, config.switch.upcall_budget)
        self.fastpath = FastPath(state, self.cache, policy, self.upcall, self.mirror_out,
                                 self._tx, self.backends, clock)
        self._fd_port: dict[int, int] = {}
        self._epoll = select.epoll()
        self.wake: WakePath | None = None  # the native wake path (wait, drain, replay, send)
        self._spun: tuple[int, float] = (0, 0.0)  # its last call's empty polls in C
        self._polled = False  # ... and whether it polled a predicted window after a wait
        self._woke_at = 0.0  # ... and when it woke up (time.perf_counter; 0: not known)
        if native.wanted(config.switch.fastpath):
            table = native.NativeTable(state, getattr(policy.checker, "native_cell", None))
            self.cache.native = table
            self.fastpath.native = table
            if ringio.enabled() and wake_wanted():
                self.wake = WakePath(table, self._epoll, state, self.fastpath, self.backends,
                                     self._tx, clock)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._calls: list[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = []
        self._calls_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_housekeeping = 0.0
        self.started_at = time.time()

    @property
    def batches(self) -> int:
        """Batches of frames processed."""
        return self.fastpath.batches

    @property
    def captures(self) -> list[CaptureTap]:
        """Running captures."""
        return self.fastpath.captures

    # ----------------------------------------------------------------- lifecycle
    def open(self) -> None:
        """Open every configured port's backend (all or nothing)."""
        opened: list[int] = []
        try:
            for idx, rt in self.state.ports.items():
                self._open_backend(idx, rt.name, rt.config)
                opened.append(idx)
        except Exception:
            for idx in opened:
                self._close_backend(idx)
            raise
        self._changed(self.state.touch_ports(self.mirror_out.sync_senders()))
        self._sync_backend_hooks()
        self._refresh_links()

    def _open_backend(self, idx: int, name: str, cfg: PortConfig) -> None:
        backend = self.backend_factory(name, cfg)
        backend.open()
        self._attach(idx, backend)

    def _attach(self, idx: int, backend: Port) -> None:
        self.backends[idx] = backend
        self.state.ports[idx].backend = backend
        fd = backend.fileno()
        self._fd_port[fd] = idx
        self._epoll.register(fd, select.EPOLLIN)
        if self.wake is not None:
            self.wake.changed()

    def _close_backend(self, idx: int) -> None:
        backend = self.backends.pop(idx, None)
        if backend is None:
            return
        if self.wake is not None:
            self.wake.changed()
        try:
            fd = backend.fileno()
            self._fd_port.pop(fd, None)
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass
        except (OSError, ValueError):
            pass
        backend.close()
        self._tx.pop(idx, None)

    def close(self) -> None:
        """Stop (if running) and close every backend, sender and capture."""
        self.stop()
        for idx in list(self.backends):
            self._close_backend(idx)
        self.mirror_out.close()
        for cap in self.captures:
            cap.close()
        self.captures.clear()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._epoll.close()

    def start(self) -> None:
        """Run the datapath loop in a background thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vspan-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end and wait for it."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake()
        self._thread.join(timeout=5)
        self._thread = None

    @property
    def running(self) -> bool:
        """Whether the background loop runs."""
        return self._thread is not None and self._thread.is_alive()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass

    def poll_stats(self) -> dict[str, Any]:
        """The poll counters (:meth:`Poller.stats`), which loop waits (``wake``: ``native``
        when the native wake path is on, else ``python``) and how often a wake-up then
        waited for the GIL (more than 20 µs: another thread held it)."""
        stats = self.poller.stats()
        wake = self.wake
        stats["wake"] = "native" if wake is not None else "python"
        stats.update(wake.gil() if wake is not None else
                     {"wake_frames": 0, "gil_waits": 0, "gil_wait_seconds": 0.0,
                      "gil_wait_max_seconds": 0.0})
        return stats

    # ------------------------------------------------------------ control calls
    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the engine thread (or right here when not running)."""
        if not self.running or threading.current_thread() is self._thread:
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._calls_lock:
            self._calls.append((fn, fut))
        self._wake()
        return fut.result(timeout=timeout)

    def _run_calls(self) -> None:
        with self._calls_lock:
            calls, self._calls = self._calls, []
        for fn, fut in calls:
            try:
                fut.set_result(fn())
            except BaseException as err:  # handed to the caller's thread
                fut.set_exception(err)

    # -------------------------------------------------------------------- loop
    def _run(self) -> None:
        poller = self.poller
        stop = self._stop
        tight_timers()  # the predicted windows' timeouts (switch.poll adaptive)
        while not stop.is_set():
            timeout = poller.timeout(HOUSEKEEPING_SECONDS)
            spin = poller.spin()
            started = poller.clock()
            rounds = self._poll(timeout, spin)
            if self._polled:  # a timed wait, then the predicted window polled in C
                poller.waited()
                timeout = 0.0
            if self._spun[0]:  # empty polls the wake path made in C before the last
                poller.spun(*self._spun)
                started = poller.clock() - rounds[0][1]  # the last poll's own time
            # from the wake-up to now (a burst's start: predict)
            since = time.perf_counter() - self._woke_at if self._woke_at else 0.0
            poller.done(timeout, rounds[0][0], started, since)
            if len(rounds) > 1:  # the wake path's further polls, counted as this loop's
                poller.rounds(HOUSEKEEPING_SECONDS, rounds[1:])

    def poll_once(self, timeout: float = 0.0) -> int:
        """Wait up to ``timeout`` s for frames, process what is ready; return frames handled."""
        return sum(handled for handled, _ in self._poll(timeout))

    def _poll(self, timeout: float, spin: float = 0.0) -> list[Round]:
        """:meth:`poll_once`, per poll made: the first waited up to ``timeout``; the native
        wake path makes further ones in the same call while frames come, and with
        ``timeout`` 0 keeps polling up to ``spin`` s in C (its empty polls before the first
        that counts are left in ``_spun``)."""
        wake = self.wake
        self._spun = (0, 0.0)
        self._woke_at = 0.0
        self._polled = False
        if wake is not None and wake.usable():
            rounds = self._wake_once(wake, timeout, spin)
        else:
            handled = 0
            try:
                events = self._epoll.poll(timeout)
            except InterruptedError:
                events = []
            for fd, ev in events:
                handled += self._event(fd, ev)
            rounds = [(handled, 0.0)]
        now = self.clock()
        if now - self._last_housekeeping >= HOUSEKEEPING_SECONDS:
            self._last_housekeeping = now
            self.housekeeping(now)
        return rounds

    def _wake_once(self, wake: WakePath, timeout: float, spin: float) -> list[Round]:
        """:meth:`poll_once`'s wait by the native wake path; what it hands back is handled
        here as the Python loop would have, in order."""
        rounds, rest, partial, (polls, seconds, since, polled) = wake.wait(
            timeout, self.batch_size, self.poller.mode != "off", spin)
        self._spun = (polls, seconds)
        self._woke_at = time.perf_counter() - since if since else 0.0
        self._polled = polled
        last = 0
        if partial is not None:
            in_port, frames, i, j, now, nbytes, errors, losing = partial
            wake.received(in_port, len(frames), nbytes, errors, bool(losing))
            self.fastpath.process(in_port, frames, now, (i, j))
            last += len(frames)
        for fd, ev in rest:
            last += self._event(fd, ev)
        if not rounds:
            return [(last, 0.0)]
        if last:
            handled, seconds = rounds[-1]
            rounds[-1] = (handled + last, seconds)
        return rounds

    def _event(self, fd: int, ev: int) -> int:
        """Handle one epoll event of the Python loop; return the frames it brought."""
        if fd == self._wake_r:
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass
            self._run_calls()
            return 0
        idx = self._fd_port.get(fd)
        if idx is None:
            return 0
        backend = self.backends.get(idx)
        if backend is None:
            return 0
        if ev & (select.EPOLLERR | select.EPOLLHUP) and not ev & select.EPOLLIN:
            self._port_gone(idx, fd)
            return 0
        try:
            frames = backend.recv_batch(self.batch_size)
        except OSError as err:
            log.warning("port %s: receive failed: %s", self.state.port_names.get(idx), err)
            return 0
        if frames:
            self.fastpath.process(idx, frames)
        return len(frames)

    def process(self, in_port: int, frames: list[Frame]) -> None:
        """Handle one batch of frames received on port index ``in_port``."""
        self.fastpath.process(in_port, frames)

    def _port_gone(self, idx: int, fd: int) -> None:
        """The backend's fd reports only errors (e.g. its TAP netdev was deleted): stop
        polling it and take the port down instead of spinning on the event."""
        log.warning("port %s: its device is gone; port down", self.state.port_names.get(idx))
        self._fd_port.pop(fd, None)
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass
        if self.wake is not None:
            self.wake.changed()
        self._set_link(idx, False)

    def _set_link(self, idx: int, up: bool) -> None:
        rt = self.state.ports.get(idx)
        if rt is None or rt.link == up:
            return
        rt.link = up
        touched = self.state.touch_ports({idx})
        if not up:
            touched = touched | Touched(macs=tuple(self.state.fdb.flush_port(idx)))
        self._changed(touched)

    def housekeeping(self, now: float) -> None:
        """Age the FDB, expire policy sessions/connections, follow link state (once a second)."""
        aged = self.state.fdb.age(now)
        if aged:
            self.cache.mac_changed(aged, room=True)
        self.policy.expire(now)
        self._refresh_links()
        if any(m.dest_error for m in self.state.mirrors.values()):
            # retry ERSPAN destinations that could not be reached
            self._changed(self.state.touch_ports(self.mirror_out.sync_senders()))

    def _refresh_links(self) -> None:
        for idx, backend in list(self.backends.items()):
            try:
                up = backend.link_up()
            except OSError:
                up = False
            self._set_link(idx, up)

    def _changed(self, t: Touched) -> None:
        """Tell the flow cache what changed."""
        if t.ports or t.vlans:
            self.cache.ports_changed(t.ports, t.vlans)
        if t.macs:
            self.cache.mac_changed(t.macs, room=True)

    def flush(self) -> None:
        """Send every queued frame (one send_batch per port)."""
        self.fastpath.flush()

    # ---------------------------------------------------------------- control
    def add_capture(self, cap: CaptureTap) -> None:
        """Start feeding a capture."""
        self.fastpath.captures.append(cap)
        self._sync_backend_hooks()

    def remove_capture(self, capture_id: int) -> CaptureTap:
        """Stop feeding a capture (KeyError if unknown); the caller closes it."""
        caps = self.fastpath.captures
        for cap in caps:
            if cap.id == capture_id:
                caps.remove(cap)
                self._sync_backend_hooks()
                return cap
        raise KeyError(f"no capture with id {capture_id}")

    def _sync_backend_hooks(self) -> None:
        """Tell backends what the engine gives them: Frame.port, member capture taps."""
        self.fastpath.stamp_ports = any(b.wants_source_port for b in self.backends.values())
        tapped = {idx for cap in self.captures for idx, _ in cap.members}
        for idx, backend in self.backends.items():
            if isinstance(backend, TeamPort):
                backend.tap = self._member_tap(idx) if idx in tapped else None

    def _member_tap(self, idx: int) -> Callable[[str, bool, Frame], None]:
        """What a team calls for every frame one of its members moves while captured."""
        def tap(member: str, inbound: bool, f: Frame) -> None:
            if not f.pid:
                f.pid = next(self.fastpath.pids)
            for cap in self.captures:
                cap.member(idx, member, inbound, f.data, f.pid)
        return tap

    def annotate(self, text: str) -> int:
        """Write ``text`` into every running capture (see :meth:`CaptureTap.annotate`)."""
        for cap in self.captures:
            cap.annotate(text)
        return len(self.captures)

    def announce(self, port_name: str, frames: list[bytes]) -> int:
        """Switch ``frames`` as if port ``port_name`` had sent them (a migrated VM's RARP
        announcements, made by the switch on its behalf as QEMU's announce-self makes
        them): learned, forwarded, mirrored and judged like the VM's own frames, but not
        counted as frames the port received (and not cached). Returns how many were
        handled."""
        idx = self.state.by_name.get(port_name)
        if idx is None:
            return 0
        now = self.clock()
        fp = self.fastpath
        for data in frames:
            key = extract(data, idx)
            replay(self.pipeline.run(key, data, idx), Frame(data), key, idx, now, fp)
        if self.policy.replies:
            fp.send_replies(now)
        fp.flush()
        return len(frames)
    def add_observer(self, obs: FrameObserver) -> None:
        """Start telling an observer every frame's fate (``vspan observe``)."""
        self.fastpath.observers.append(obs)

    def remove_observer(self, observer_id: int) -> FrameObserver:
        """Stop telling an observer (KeyError if unknown). With none left, frames take the
        short way again: observing costs nothing when nobody observes."""
        observers = self.fastpath.observers
        for obs in observers:
            if obs.id == observer_id:
                observers.remove(obs)
                return obs
        raise KeyError(f"no observer with id {observer_id}")

    @property
    def observers(self) -> list[FrameObserver]:
        """Running observers."""
        return self.fastpath.observers

    def trace(self, port_name: str, data: bytes) -> tuple[Decision, Outcome, Tracer]:
        """What the switch would do with ``data`` received on ``port_name`` now: the
        decision, its trace and the predicted outcome. Changes nothing."""
        idx = self.state.by_name[port_name]
        return predict(self.state, self.pipeline, self.policy.checker, self.mirror_out, idx,
                       data, self.clock())

    def reload(self, new: Config, changes: ChangeSet | None = None) -> ChangeSet:
        """Apply ``new`` live. New backends open first: if one fails nothing changes.

        ``changes`` is the change set from the running config to ``new`` when the
        caller already computed it; it drives every part (backends, state, policy,
        and what the flow cache forgets).
        """
        if changes is None:
            changes = diff(self.state.config, new)
        opened: dict[str, Port] = {}
        try:
            for name in (*changes.ports_added, *changes.ports_reopened):
                backend = self.backend_factory(name, new.ports[name])
                backend.open()
                opened[name] = backend
        except Exception as err:
            for backend in opened.values():
                backend.close()
            raise PortError(f"reload aborted, nothing changed: {err}") from err
        for name in (*changes.ports_removed, *changes.ports_reopened):
            self._close_backend(self.state.by_name[name])
        old_switch = self.state.config.switch
        touched = self.state.apply(new, changes)
        for name in changes.ports_changed:  # e.g. a vxlan port's flood lists and VNI map
            kept = self.backends.get(self.state.by_name[name])
            if kept is not None:
                kept.reconfigure(new.ports[name])
        names = self.policy.apply(new, changes)
        touched = touched | self.state.touch_ports(
            {self.state.by_name[n] for n in names if n in self.state.by_name})
        for name, backend in opened.items():
            self._attach(self.state.by_name[name], backend)
        touched = touched | self.state.touch_ports(self.mirror_out.sync_senders())
        self._sync_backend_hooks()
        self._changed(touched)
        if (new.switch.fdb_max_entries, new.switch.fdb_aging_seconds) != (
                old_switch.fdb_max_entries, old_switch.fdb_aging_seconds):
            self.cache.room_changed()
        self.cache.resize(new.switch.flow_cache_size)
        if new.switch.upcall_budget != self.upcall.budget.rate:
            self.upcall.budget.configure(new.switch.upcall_budget)
        self.batch_size = new.switch.batch_size
        self.poller.configure(new.switch.poll)
        self._refresh_links()
        return changes
