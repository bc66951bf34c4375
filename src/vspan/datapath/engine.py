"""The engine: moves batches of frames from ports through cache/pipeline to ports.

It owns the switch state and is the only thing that touches it while running;
other threads (the control API) hand it work through :meth:`Engine.call`.
Per-frame work on the fast path: key extraction, one dict lookup, appending
to per-port transmit lists; transmit happens once per batch and port.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from vspan.capture.porttap import PortCapture
from vspan.config.diff import ChangeSet, diff
from vspan.config.model import Config, PortConfig
from vspan.datapath.decision import VLAN_KEEP, Decision, Drop, MirrorCopy
from vspan.datapath.flowcache import FlowCache
from vspan.datapath.flowkey import FlowKey, extract, fast_key
from vspan.datapath.mtu import too_big
from vspan.datapath.pipeline import build_pipeline, policy_parts
from vspan.datapath.reasons import DropReason
from vspan.datapath.state import (
    MIRROR_ERSPAN,
    MIRROR_RSPAN,
    MirrorRuntime,
    SwitchState,
)
from vspan.datapath.trace import Tracer
from vspan.datapath.vlanops import apply as vlan_apply
from vspan.mirror.encap import rspan_copy
from vspan.packet.errors import PacketError
from vspan.ports.base import Frame, Port, PortError
from vspan.ports.offload import finalize
from vspan.ports.team import TeamPort
from vspan.ports.vnet import is_plain as vnet_is_plain
from vspan.ports.vnet import shift as vnet_shift

log = logging.getLogger(__name__)

T = TypeVar("T")
BackendFactory = Callable[[str, PortConfig], Port]

HOUSEKEEPING_SECONDS = 1.0


class Engine:
    """A running switch: state, pipeline, flow cache and port backends."""

    def __init__(self, config: Config, backend_factory: BackendFactory,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.state = SwitchState(config)
        self.pipeline, self.policy = build_pipeline(self.state, clock)
        self.cache = FlowCache(config.switch.flow_cache_size)
        self.backend_factory = backend_factory
        self.backends: dict[int, Port] = {}
        self.batch_size = config.switch.batch_size
        self._tx: dict[int, list[Frame]] = {}
        self._fd_port: dict[int, int] = {}
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._calls: list[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = []
        self._calls_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_housekeeping = 0.0
        self.started_at = time.time()
        self.batches = 0
        self._senders: list[Any] = []  # open ERSPAN senders
        self.captures: list[PortCapture] = []  # live `vspan capture` sessions
        self._frame_drops: list[Drop] = []  # drops of the frame in hand (captures only)
        self._capture_ids = 0
        self._pids = itertools.count(1)  # pcapng packet ids shared by a frame's capture points
        self._stamp_ports = False  # a backend (team by Hyper-V port) needs Frame.port

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
        self._sync_senders()
        self._sync_backend_hooks()
        self._refresh_links()

    def _open_backend(self, idx: int, name: str, cfg: PortConfig) -> None:
        backend = self.backend_factory(name, cfg)
        backend.open()
        self.backends[idx] = backend
        self.state.ports[idx].backend = backend
        fd = backend.fileno()
        self._fd_port[fd] = idx
        self._epoll.register(fd, select.EPOLLIN)

    def _close_backend(self, idx: int) -> None:
        backend = self.backends.pop(idx, None)
        if backend is None:
            return
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
        """Stop (if running) and close every backend."""
        self.stop()
        for idx in list(self.backends):
            self._close_backend(idx)
        for sender in self._senders:
            sender.close()
        self._senders.clear()
        for cap in self.captures:
            cap.close()
        self.captures = []
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
        while not self._stop.is_set():
            self.poll_once(HOUSEKEEPING_SECONDS)

    def poll_once(self, timeout: float = 0.0) -> int:
        """Wait up to ``timeout`` s for frames, process what is ready; return frames handled."""
        handled = 0
        try:
            events = self._epoll.poll(timeout)
        except InterruptedError:
            events = []
        for fd, ev in events:
            if fd == self._wake_r:
                try:
                    os.read(self._wake_r, 4096)
                except BlockingIOError:
                    pass
                self._run_calls()
                continue
            idx = self._fd_port.get(fd)
            if idx is None:
                continue
            backend = self.backends.get(idx)
            if backend is None:
                continue
            if ev & (select.EPOLLERR | select.EPOLLHUP) and not ev & select.EPOLLIN:
                self._port_gone(idx, fd)
                continue
            try:
                frames = backend.recv_batch(self.batch_size)
            except OSError as err:
                log.warning("port %s: receive failed: %s", self.state.port_names.get(idx), err)
                continue
            if frames:
                handled += len(frames)
                self.process(idx, frames)
        now = self.clock()
        if now - self._last_housekeeping >= HOUSEKEEPING_SECONDS:
            self._last_housekeeping = now
            self.housekeeping(now)
        return handled

    def _port_gone(self, idx: int, fd: int) -> None:
        """The backend's fd reports only errors (e.g. its TAP netdev was deleted): stop
        polling it and take the port down instead of spinning on the event."""
        log.warning("port %s: its device is gone; port down", self.state.port_names.get(idx))
        self._fd_port.pop(fd, None)
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass
        rt = self.state.ports.get(idx)
        if rt is not None and rt.link:
            rt.link = False
            self.state.fdb.flush_port(idx)
            self.state.bump()

    def housekeeping(self, now: float) -> None:
        """Age the FDB, expire policy sessions/connections, follow link state (once a second)."""
        self.state.fdb.age(now)
        self.policy.expire(now)
        self._refresh_links()
        if any(m.dest_error for m in self.state.mirrors):
            self._sync_senders()  # retry ERSPAN destinations that could not be reached

    def _refresh_links(self) -> None:
        for idx, backend in self.backends.items():
            rt = self.state.ports.get(idx)
            if rt is None:
                continue
            try:
                up = backend.link_up()
            except OSError:
                up = False
            if up != rt.link:
                rt.link = up
                if not up:
                    self.state.fdb.flush_port(idx)
                self.state.bump()

    # -------------------------------------------------------------- fast path
    def process(self, in_port: int, frames: list[Frame]) -> None:
        """Handle one batch of frames received on port index ``in_port``."""
        state = self.state
        rt = state.ports.get(in_port)
        if rt is None:
            return
        now = self.clock()
        cache = self.cache
        cache.sync(state.generation)
        entries = cache.entries
        counters = rt.counters
        counters.rx_frames += len(frames)
        counters.last_rx = now
        if not counters.first_seen:
            counters.first_seen = now
        self.batches += 1
        if self._stamp_ports:
            for f in frames:
                f.port = in_port
        caps = self.captures
        key: FlowKey | None
        for f in frames:
            data = f.data
            counters.rx_bytes += len(data)
            fk = fast_key(data, in_port)
            hit = entries.get(fk) if fk is not None else None
            if hit is not None:
                d, key = hit
                cache.hits += 1
                if d.refresh is not None:
                    d.refresh.last_seen = now
                if d.simple_port and not caps:  # one output, nothing else: the common case
                    q = self._tx.get(d.simple_port)
                    if q is None:
                        self._tx[d.simple_port] = [f]
                    else:
                        q.append(f)
                    continue
            else:
                key = extract(data, in_port)
                hit = entries.get(key) if key is not None else None
                if hit is not None:
                    d = hit[0]
                    cache.hits += 1
                    if d.refresh is not None:
                        d.refresh.last_seen = now
                else:
                    cache.misses += 1
                    d = self.pipeline.run(key, data, in_port)
                    if d.learn is not None:
                        vlan, mac, port = d.learn
                        state.fdb.learn(vlan, mac, port, now, rt.config.mac_limit)
                        cache.sync(state.generation)
                        entries = cache.entries
                    elif key is not None:
                        cache.put(fk if fk is not None else key, (d, key))
            if caps:
                if not f.pid:
                    f.pid = next(self._pids)
                self._frame_drops.clear()
                self._apply(d, f, key, in_port, now)
                for cap in caps:
                    cap.rx(in_port, data, self._frame_drops, f.pid)
            else:
                self._apply(d, f, key, in_port, now)
        if self.policy.replies:
            self._send_replies()
        self.flush()

    def _send_replies(self) -> None:
        """Reject answers (TCP RST / ICMP unreachable) the firewall asked for."""
        for reply in self.policy.take_replies():
            if reply.to_port:
                # delivered to the port's VM: through the port's egress taps
                d = self.pipeline.deliver(reply.port, reply.vlan)
                self._apply(d, Frame(reply.data), None, reply.port, self.clock())
            elif reply.port in self.state.ports:
                # switched as if the port had sent it (its ingress taps), not judged again
                key = extract(reply.data, reply.port)
                d = self.pipeline.run(key, reply.data, reply.port, policy=False)
                self._apply(d, Frame(reply.data), key, reply.port, self.clock())

    def _apply(self, d: Decision, f: Frame, key: FlowKey | None, in_port: int,
               now: float) -> None:
        data = f.data
        if d.ingress_mirrors:
            self._mirror(d.ingress_mirrors, data, f.vnet)
        if d.hooks and key is not None:
            for hook in d.hooks:
                drop = hook(data, key, now)
                if drop is not None:
                    self._count_drop(drop, data, in_port)
                    return
        for drop in d.drops:
            self._count_drop(drop, data, in_port)
        if d.flooded:  # per frame that passed the ingress checks, cache hit or not
            rt = self.state.ports.get(in_port)
            if rt is not None:
                rt.counters.flooded += 1
        tx = self._tx
        for out in d.outputs:
            if out.hooks and key is not None:
                stopped = False
                for hook in out.hooks:
                    drop = hook(data, key, now)
                    if drop is not None:
                        self._count_drop(drop, data, in_port)
                        stopped = True
                        break
                if stopped:
                    continue
            if out.mtu and len(data) - 14 > out.mtu:
                size = too_big(data, f.vnet, out.mtu)
                if size:
                    self._count_drop(Drop(DropReason.MTU, out.port, detail=f"{size} > {out.mtu}"),
                                     data, in_port)
                    continue
            if out.vlan_op == VLAN_KEEP:
                of = f
            else:
                odata, ovnet = vlan_apply(out.vlan_op, out.vid, data, f.vnet)
                of = Frame(odata, ovnet, f.ts_ns, f.port, f.pid)
            q = tx.get(out.port)
            if q is None:
                tx[out.port] = [of]
            else:
                q.append(of)
            if out.mirrors:
                self._mirror(out.mirrors, of.data, of.vnet)

    def _mirror(self, copies: tuple[MirrorCopy, ...], data: bytes, vnet: bytes) -> None:
        mirrors = self.state.mirrors
        for c in copies:
            m = mirrors[c.session]
            if m.filter is not None and not m.filter.match(data):
                continue
            m.seen += 1
            rate = m.config.sampling_rate
            if rate > 1 and m.seen % rate:
                m.sampled_out += 1
                continue
            cdata, cvnet = data, vnet
            if c.point == "rspan" and c.vlan_op != VLAN_KEEP:
                cdata, cvnet = vlan_apply(c.vlan_op, c.vid, cdata, cvnet)
            limit = m.config.mirrored_packet_length
            if cvnet and not vnet_is_plain(cvnet) and (
                    (limit and len(cdata) > limit) or (
                        m.kind == MIRROR_ERSPAN and m.config.erspan is not None
                        and m.config.erspan.offloaded_frames == "segment")):
                # an offloaded frame (partial checksum / GSO super-frame) cannot be cut or
                # encapsulated as it is: make the wire frames first (software GSO/checksum)
                for piece in self._finalize(cdata, cvnet):
                    self._emit(m, c, piece, b"", limit)
            else:
                self._emit(m, c, cdata, cvnet, limit)

    @staticmethod
    def _finalize(data: bytes, vnet: bytes) -> list[bytes]:
        try:
            return finalize(Frame(data, vnet))
        except PacketError:
            return [data]  # a header we cannot segment: mirror it as it came

    def _emit(self, m: MirrorRuntime, c: MirrorCopy, data: bytes, vnet: bytes,
              limit: int | None) -> None:
        """Cut one copy to the session's length and send it the session's way."""
        cut = limit is not None and len(data) > limit
        if cut:
            data = data[:limit]
            vnet = b""  # a cut frame carries no offload work
        cap = m.config.max_bytes
        if cap is not None:
            # the bytes this copy will add (RSPAN: at most one more tag)
            size = (len(data) + 4 if m.kind == MIRROR_RSPAN
                    else len(data) if m.kind == MIRROR_ERSPAN
                    else len(data) * len(m.dest_ports))
            if m.capped or m.bytes - m.cap_base + size > cap:
                m.capped += 1  # the session stops at its byte cap (the agent disables it)
                return
        if cut:
            m.truncated += 1
        if m.kind == MIRROR_ERSPAN:
            self._mirror_erspan(m, data, c.point == "egress", cut, c.vlan)
        elif m.kind == MIRROR_RSPAN:
            self._mirror_rspan(m, data, vnet, c.vlan)
        else:
            self._to_destinations(m, Frame(data, vnet))

    def _to_destinations(self, m: MirrorRuntime, copy: Frame) -> None:
        """Queue one mirror copy to every local destination port of ``m``."""
        ports = self.state.ports
        tx = self._tx
        for dp in m.dest_ports:
            prt = ports.get(dp)
            if prt is None or not prt.enabled:
                m.dropped += 1
                continue
            m.mirrored += 1
            m.bytes += len(copy.data)
            prt.counters.mirrored_out += 1
            q = tx.get(dp)
            if q is None:
                tx[dp] = [copy]
            else:
                q.append(copy)

    def _mirror_erspan(self, m: MirrorRuntime, data: bytes, egress: bool, cut: bool,
                       vlan: int) -> None:
        sender = m.sender
        if sender is None:
            m.dropped += 1
            return
        # the ERSPAN VLAN field: the frame's tag when it has one, else the VLAN it is in
        if sender.send(data, egress=egress, truncated=cut, vlan=vlan or None):
            m.mirrored += 1
            m.bytes += len(data)
        else:
            m.dropped += 1

    def _mirror_rspan(self, m: MirrorRuntime, data: bytes, vnet: bytes, vlan: int) -> None:
        rs = m.config.rspan
        uplink = self.state.ports.get(m.uplink)
        if rs is None or uplink is None or not uplink.enabled or len(data) < 14:
            m.dropped += 1
            return
        copy = rspan_copy(data, rs.vlan, rs.keep_original_tag,
                          original_vlan=vlan if rs.tag_untagged else 0)
        if vnet and len(copy) != len(data):
            vnet = vnet_shift(vnet, len(copy) - len(data))
        m.mirrored += 1
        m.bytes += len(copy)
        uplink.counters.mirrored_out += 1
        q = self._tx.get(m.uplink)
        if q is None:
            self._tx[m.uplink] = [Frame(copy, vnet)]
        else:
            q.append(Frame(copy, vnet))

    def _sync_senders(self) -> None:
        """Open ERSPAN senders for sessions that need one; close those no longer used.

        A destination that cannot be reached (no route, bad source address) does
        not fail the configuration: the session's copies are counted as dropped
        and the reason is shown with the session. The port whose interface
        carries the encapsulated traffic is taken out of the session's sources
        (loop guard).
        """
        from vspan.mirror.encap import (
            EncapType,
            ErspanConfig,
            Granularity,
            RawGreSender,
            route_interface,
        )

        wanted: set[int] = set()
        changed = False
        for m in self.state.mirrors:
            e = m.config.erspan
            if e is None or not m.config.enabled:
                continue
            if m.sender is None:
                cfg = ErspanConfig(
                    remote_ip=e.remote_ip, type=EncapType(e.type.value),
                    session_id=e.session_id, index=e.index, hw_id=e.hw_id,
                    granularity=Granularity(e.timestamp_granularity),
                    platform_subheader=e.platform_subheader, source_ip=e.source_ip,
                    ttl=e.ttl, dscp=e.dscp, mtu=e.mtu)
                sender = RawGreSender(cfg)
                try:
                    sender.open()
                except OSError as err:
                    m.dest_error = f"cannot reach {e.remote_ip}: {err.strerror or err}"
                    log.warning("mirror %s: %s", m.name, m.dest_error)
                    continue
                m.sender = sender
                m.dest_error = ""
            wanted.add(id(m.sender))
            changed |= self._loop_guard(m, route_interface(e.remote_ip))
        for sender in list(self._senders):
            if id(sender) not in wanted:
                sender.close()
                self._senders.remove(sender)
        for m in self.state.mirrors:
            if m.sender is not None and m.sender not in self._senders:
                self._senders.append(m.sender)
        if changed:
            self.state.bump()

    def _loop_guard(self, m: MirrorRuntime, ifname: str | None) -> bool:
        """Keep the port on ``ifname`` (which carries the encapsulated copies) out of ``m``."""
        if ifname is None:
            return False
        for rt in self.state.ports.values():
            if ifname not in rt.config.interfaces(rt.name):
                continue
            if m.index in rt.mirror_ingress or m.index in rt.mirror_egress:
                rt.mirror_ingress = tuple(s for s in rt.mirror_ingress if s != m.index)
                rt.mirror_egress = tuple(s for s in rt.mirror_egress if s != m.index)
                m.loop_guard_port = rt.name
                log.info("mirror %s: port %s carries the encapsulated copies; not mirrored",
                         m.name, rt.name)
                return True
        return False

    def _count_drop(self, drop: Drop, data: bytes, in_port: int = 0) -> None:
        self.state.drops.add(drop.port, drop.reason.value, drop.rule)
        rt = self.state.ports.get(drop.port)
        if rt is not None:
            rt.counters.dropped += 1
        if self.captures:
            self._frame_drops.append(drop)
            for cap in self.captures:
                cap.dropped(drop.port, data, drop, in_port)

    def flush(self) -> None:
        """Send every queued frame (one send_batch per port)."""
        tx = self._tx
        if not tx:
            return
        caps = self.captures
        now = self.clock()
        for idx, frames in tx.items():
            backend = self.backends.get(idx)
            rt = self.state.ports.get(idx)
            if backend is None or rt is None:
                continue
            rt.counters.last_tx = now
            if not rt.counters.first_seen:
                rt.counters.first_seen = now
            if caps:
                for cap in caps:
                    for fr in frames:
                        cap.tx(idx, fr.data, fr.pid)
            sent = backend.send_batch(frames)
            rt.counters.tx_frames += sent
            rt.counters.tx_bytes += sum(len(fr.data) for fr in frames[:sent])
            if sent < len(frames):
                self.state.drops.add(idx, DropReason.TX_ERROR.value, "", len(frames) - sent)
        tx.clear()

    # ---------------------------------------------------------------- control
    def capture_start(self, ports: list[str], path: str, direction: str = "both",
                      drops: bool = False, filter_expr: str | None = None,
                      max_packets: int = 0, max_bytes: int = 0,
                      stop_at: float | None = None) -> PortCapture:
        """Start writing what capture points see (and drops) to a pcapng file (at most
        ``max_packets`` packets and ``max_bytes`` bytes; ``stop_at`` is for the agent).

        ``ports`` are point names (:mod:`vspan.capture.points`): ``PORT``,
        ``TEAM:MEMBER``, ``TEAM:*``.
        """
        from vspan.capture.filter import compile_filter
        from vspan.capture.points import resolve

        teams = {rt.name: rt.config.team.members for rt in self.state.ports.values()
                 if rt.config.team is not None}
        points = resolve(ports, self.state.by_name, teams)  # KeyError names the bad point
        self._capture_ids += 1
        cap = PortCapture(self._capture_ids, path, points.ports, direction, drops,
                          compile_filter(filter_expr) if filter_expr else None, max_packets,
                          max_bytes, stop_at, members=points.members,
                          descriptions=points.descriptions)
        self.captures = [*self.captures, cap]
        self._sync_backend_hooks()
        return cap

    def capture_stop(self, capture_id: int) -> dict[str, object]:
        """Stop a capture; return its summary."""
        for cap in self.captures:
            if cap.id == capture_id:
                self.captures = [c for c in self.captures if c.id != capture_id]
                self._sync_backend_hooks()
                cap.close()
                return cap.summary()
        raise KeyError(f"no capture with id {capture_id}")

    def _sync_backend_hooks(self) -> None:
        """Tell backends what the engine gives them: Frame.port, member capture taps."""
        self._stamp_ports = any(b.wants_source_port for b in self.backends.values())
        tapped = {idx for cap in self.captures for idx, _ in cap.members}
        for idx, backend in self.backends.items():
            if isinstance(backend, TeamPort):
                backend.tap = self._member_tap(idx) if idx in tapped else None

    def _member_tap(self, idx: int) -> Callable[[str, bool, Frame], None]:
        """What a team calls for every frame one of its members moves while captured."""
        def tap(member: str, inbound: bool, f: Frame) -> None:
            if not f.pid:
                f.pid = next(self._pids)
            for cap in self.captures:
                cap.member(idx, member, inbound, f.data, f.pid)
        return tap

    def annotate(self, text: str) -> int:
        """Write ``text`` into every running capture (see :meth:`PortCapture.annotate`)."""
        for cap in self.captures:
            cap.annotate(text)
        return len(self.captures)

    def announce(self, port_name: str, frames: list[bytes]) -> int:
        """Switch ``frames`` as if port ``port_name`` had sent them (a migrated VM's RARP
        announcements, made by the switch on its behalf as QEMU's announce-self makes
        them): learned, forwarded, mirrored and judged like the VM's own frames, but not
        counted as frames the port received. Returns how many were handled."""
        idx = self.state.by_name.get(port_name)
        if idx is None:
            return 0
        now = self.clock()
        for data in frames:
            key = extract(data, idx)
            d = self.pipeline.run(key, data, idx)
            if d.learn is not None:
                vlan, mac, port = d.learn
                rt = self.state.ports[idx]
                self.state.fdb.learn(vlan, mac, port, now, rt.config.mac_limit)
            self._apply(d, Frame(data), key, idx, now)
        self.flush()
        return len(frames)

    def trace(self, port_name: str, data: bytes) -> tuple[Decision, Tracer]:
        """Run the pipeline on ``data`` as if received on ``port_name``, with tracing."""
        idx = self.state.by_name[port_name]
        tracer = Tracer()
        key = extract(data, idx)
        decision = self.pipeline.run(key, data, idx, tracer)
        return decision, tracer

    def reload(self, new: Config, changes: ChangeSet | None = None) -> ChangeSet:
        """Apply ``new`` live. New backends open first: if one fails nothing changes.

        ``changes`` is the change set from the running config to ``new`` when the caller
        already computed it; it drives every part (backends, state, policy).
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
        self.state.apply(new, changes)
        for name in changes.ports_changed:  # e.g. a vxlan port's flood lists and VNI map
            kept = self.backends.get(self.state.by_name[name])
            if kept is not None:
                kept.reconfigure(new.ports[name])
        self.policy.apply(*policy_parts(new), changes)
        for name, backend in opened.items():
            idx = self.state.by_name[name]
            self.backends[idx] = backend
            self.state.ports[idx].backend = backend
            fd = backend.fileno()
            self._fd_port[fd] = idx
            self._epoll.register(fd, select.EPOLLIN)
        self._sync_senders()
        self._sync_backend_hooks()
        self.cache.max_entries = new.switch.flow_cache_size
        self.batch_size = new.switch.batch_size
        self._refresh_links()
        return changes
