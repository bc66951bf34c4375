"""The native replay (``vspan.datapath._native``) as the fast path sees it.

:class:`NativeTable` mirrors the Python :class:`~vspan.datapath.flowcache.FlowCache`
for the flows the C extension can replay alone: the cache calls
:meth:`NativeTable.install` when it stores a decision under a fast key and
:meth:`NativeTable.forget` whenever it forgets one (every invalidation, eviction and
resize goes through ``FlowCache._forget``: one code path). A decision is compiled
once (it is interned) into a ``Program``; one the C side cannot run alone (checks,
learning, more than 16 length ranges) is not installed, and its frames keep the Python
replay. ERSPAN/GRE copies are encapsulated and sent (sendmmsg, once per run) by the C
side when the session's sender hands over its parameters and sequence number
(:class:`~vspan.datapath.remote.NativeSender`); they are handed back after every run.

:meth:`NativeTable.process` runs a batch: the C loop takes frames while it can,
hands the first it cannot back (the caller replays it in Python, which may install
or forget entries) and continues after it; counters are folded into the Python
counter objects at the end of the batch (``docs/datapath.md``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any
from weakref import WeakKeyDictionary

from vspan.config.values import IN
from vspan.datapath.decision import (
    MIRROR_ERSPAN,
    MIRROR_RSPAN,
    OP_CHECK,
    OP_DROP,
    OP_LEARN,
    OP_MIRROR,
    OP_OUTPUT,
    OP_REFRESH,
    POINT_EGRESS,
    Check,
    Decision,
    Mirror,
)
from vspan.datapath.fdb import FdbEntry
from vspan.datapath.flowcache import FlowCache
from vspan.datapath.reasons import DropReason
from vspan.datapath.remote import NativeSender
from vspan.datapath.state import SwitchState
from vspan.ports.base import Frame

log = logging.getLogger(__name__)

_mod: ModuleType | None
try:
    from vspan.datapath import _native

    _mod = _native
except ImportError:  # not built (no compiler or headers at install): the Python replay
    _mod = None

ENV = "VSPAN_FASTPATH"
MAX_LENGTHS = 16  # length ranges per mirror the C side takes
KIND_LOCAL, KIND_RSPAN, KIND_REMOTE, KIND_ERSPAN = 0, 1, 2, 3
#: what ``Table.take`` returns: hits, port rows, session rows, drop rows, rx drop rows
Taken = tuple[int, list[tuple[int, int, int, int, int, int]],
              list[tuple[int, int, int, int, int, int]], list[tuple[int, int]],
              list[tuple[int, int]]]


def available() -> bool:
    """Whether the C extension was built."""
    return _mod is not None


def wanted(setting: str) -> bool:
    """Whether to use the native replay: ``VSPAN_FASTPATH`` (python|native|auto) overrides
    the config's ``switch.fastpath``; ``auto`` means native when built. Asking for native
    when it was not built logs a warning and uses Python."""
    choice = os.environ.get(ENV, "").strip().lower() or setting
    if choice not in ("auto", "native", "python"):
        log.warning("%s=%r is not python|native|auto; using auto", ENV, choice)
        choice = "auto"
    if choice == "python":
        return False
    if _mod is None:
        if choice == "native":
            log.warning("native fast path asked for but vspan.datapath._native is not built; "
                        "using the Python replay")
        return False
    return True


def key_bytes(fast: tuple[Any, ...]) -> bytes:
    """The native key of a :func:`~vspan.datapath.flowkey.fast_key` tuple (what the C side
    computes from the frame: in_port LE32, the L2 header, proto, addresses, ports)."""
    in_port, l2, proto, addrs, ports = fast
    out: bytes = int(in_port).to_bytes(4, "little") + l2 + bytes((proto,)) + addrs + ports
    return out


def frame_key(data: bytes, in_port: int) -> bytes | None:
    """The native key the C side computes for a frame (for tests)."""
    return _native.key(data, in_port)


def erspan_payload(params: tuple[Any, ...], frame: bytes, egress: bool, truncated: bool,
                   vlan: int, ts_ns: int) -> tuple[bytes, int, bool, int]:
    """What the C side sends for ``frame`` (params as
    :meth:`~vspan.datapath.remote.NativeSender.native_params`; for tests): the GRE payload,
    or with link-layer parameters the whole Ethernet frame; the next GRE sequence number,
    whether the frame was cut, and the next IPv4 identification (-1: no link layer)."""
    return _native.erspan_payload(params, frame, egress, truncated, vlan, ts_ns)


def finalize(data: bytes, vnet: bytes) -> list[bytes] | None:
    """The C side's software GSO/checksum (``None`` where ``offload.finalize`` raises)."""
    return _native.finalize(data, vnet)


def vnet_check(data: bytes, vnet: bytes) -> int:
    """The C side's :func:`vspan.ports.vnetcheck.refusal`: 0 when the header fits the frame,
    1 for ``vnet-header``, 2 for ``gso-segments``."""
    return _native.vnet_check(data, vnet)


class NativeTable:
    """The native flow table, its compiled programs and its counters."""

    def __init__(self, state: SwitchState,
                 cells: Callable[[Check], list[Any] | None] | None = None) -> None:
        assert _mod is not None, "vspan.datapath._native is not built"
        self.state = state
        # the checks the C side steps itself: check -> the cell holding the port's
        # connection index (PolicyChecks.native_cell), None for a kind it cannot run
        self.cells = cells
        self.table = _native.Table(Frame)
        self._programs: WeakKeyDictionary[Decision, _native.Program | None] = (
            WeakKeyDictionary())
        self._drop_ids: dict[tuple[int, str, str], int] = {}
        self.drops: list[tuple[int, str, str]] = []
        self.installed = 0
        self.punted = 0  # frames handed back to the Python replay
        self.replayed = 0  # frames the native table replayed
        # isinstance(x, NativeSender) on a runtime-checkable Protocol costs ~8 µs (it
        # inspects every member): asked once per sender class, not twice per batch
        self._native_types: dict[type, bool] = {}

    def __len__(self) -> int:
        return len(self.table)

    # ----------------------------------------------------------- install/forget
    def install(self, key: tuple[Any, ...], d: Decision, ref: FdbEntry | None) -> None:
        """Install ``d`` under the fast key ``key`` when the C side can replay it alone."""
        if d in self._programs:
            prog = self._programs[d]
        else:
            prog = self._programs[d] = self._compile(d)
        if prog is not None:
            self.table.put(key_bytes(key), prog, ref)
            self.installed += 1

    def forget(self, key: tuple[Any, ...]) -> None:
        """Forget the entry of fast key ``key`` (if installed)."""
        self.table.forget(key_bytes(key))

    def clear(self) -> None:
        """Forget every entry."""
        self.table.clear()

    def _drop_id(self, port: int, reason: str, rule: str) -> int:
        k = (port, reason, rule)
        i = self._drop_ids.get(k)
        if i is None:
            i = self._drop_ids[k] = len(self.drops)
            self.drops.append(k)
        return i

    def _compile(self, d: Decision) -> _native.Program | None:
        """The ``Program`` of ``d``, or ``None`` when the C side cannot replay it alone
        (checks, learning, more than :data:`MAX_LENGTHS` length ranges). ERSPAN copies
        compile; a frame is replayed natively only when its session's sender hands its
        encapsulation over (:class:`~vspan.datapath.remote.NativeSender`)."""
        ops: list[tuple[int, ...]] = []
        mirrors: list[tuple[Any, ...]] = []
        checks: list[tuple[Any, ...]] = []

        def check(c: Check) -> bool:
            # every check of a frame is stepped before any effect, and the C side takes the
            # frame only when every one passes (an established connection refreshed): where
            # they sit in the list (top level, in an Output) changes nothing then
            cell = self.cells(c) if self.cells is not None else None
            if cell is None:
                return False
            checks.append((c.port, int(c.direction == IN), cell, int(c.kind)))
            return True

        def mirror(m: Mirror) -> bool:
            if len(m.lengths) > MAX_LENGTHS:
                return False
            mirrors.append((m.session, m.vlan_op, m.vid, m.truncate, m.sample, m.vlan,
                            int(m.point == POINT_EGRESS), len(m.lengths), tuple(m.lengths)))
            return True

        for op, a in d.program:
            if op == OP_LEARN:
                return None
            if op == OP_CHECK:
                if not check(a):
                    return None
            elif op == OP_OUTPUT:
                if not all(check(c) for c in a.checks):
                    return None
                first = len(mirrors)
                if not all(mirror(m) for m in a.mirrors):
                    return None
                ops.append((OP_OUTPUT, a.port, a.vlan_op, a.vid, a.mtu,
                            self._drop_id(a.port, DropReason.MTU.value, ""), first,
                            len(a.mirrors)))
            elif op == OP_MIRROR:
                if not mirror(a):
                    return None
                ops.append((OP_MIRROR, len(mirrors) - 1))
            elif op == OP_REFRESH:
                ops.append((OP_REFRESH,))
            elif op == OP_DROP:
                ops.append((OP_DROP, self._drop_id(a.port, a.reason.value, a.rule)))
        try:
            return _native.Program(tuple(ops), tuple(mirrors), d.flood, tuple(checks))
        except (ValueError, TypeError, OverflowError) as err:
            log.debug("decision not compiled natively: %s", err)
            return None

    # -------------------------------------------------------------------- batch
    def _native_sender(self, sender: object) -> NativeSender | None:
        """``sender`` when it is a :class:`NativeSender` (decided once per class)."""
        if sender is None:
            return None
        cls = type(sender)
        ok = self._native_types.get(cls)
        if ok is None:
            ok = self._native_types[cls] = isinstance(sender, NativeSender)
        return sender if ok else None  # type: ignore[return-value]

    def _push_sessions(self) -> None:
        mirrors = self.state.mirrors
        if not mirrors:
            self.table.sessions([])
            return
        ports = self.state.ports
        specs: list[tuple[Any, ...] | None] = [None] * (max(mirrors) + 1)
        for idx, m in mirrors.items():
            kind = (KIND_REMOTE if m.kind == MIRROR_ERSPAN else
                    KIND_RSPAN if m.kind == MIRROR_RSPAN else KIND_LOCAL)
            encap: tuple[Any, ...] | None = None
            if m.config.max_bytes is not None:
                kind = KIND_REMOTE  # a byte cap: the Python MirrorOut decides every copy
            elif kind == KIND_REMOTE and (ns := self._native_sender(m.sender)) is not None:
                params = ns.native_params()
                e = m.config.erspan
                if params is not None and e is not None:
                    kind = KIND_ERSPAN
                    encap = (params, e.offloaded_frames == "segment")
            dests = tuple((dp, int(p is not None and p.enabled))
                          for dp in m.dest_ports for p in (ports.get(dp),))
            rs = m.config.rspan
            up = ports.get(m.uplink)
            ok = rs is not None and up is not None and up.enabled
            specs[idx] = (kind, m.seen, dests, m.uplink, int(ok),
                          rs.vlan if rs is not None else 0,
                          int(rs.keep_original_tag) if rs is not None else 0,
                          int(rs.tag_untagged) if rs is not None else 1, encap)
        self.table.sessions(specs)

    def _pull_seen(self) -> None:
        mirrors = self.state.mirrors
        for idx, seen, remote in self.table.seen():
            m = mirrors.get(idx)
            if m is None:
                continue
            m.seen = seen
            ns = self._native_sender(m.sender) if remote is not None else None
            if remote is not None and ns is not None:
                seq, sent, sent_bytes, truncated, skipped, errnos, resend, ip_id = remote
                ns.native_update(seq, sent, sent_bytes, truncated, skipped, errnos, ip_id)
                for payload, size in resend:  # refused as too big: the Python retry
                    if ns.resend(payload):
                        m.mirrored += 1
                        m.bytes += size
                    else:
                        m.dropped += 1

    def process(self, in_port: int, frames: list[Frame], tx: dict[int, list[Frame]],
                now: float, python: Callable[[list[Frame]], None],
                first: tuple[int, int] | None = None) -> None:
        """Replay ``frames`` (received on ``in_port``): natively while the table answers,
        each run of other frames through ``python`` (the Python replay), in order.
        ``first``: the result of the batch's first ``Table.run``, already made (by the
        wake path, :mod:`vspan.datapath.wake`, with the sessions pushed)."""
        table = self.table
        mirrored = bool(self.state.mirrors)
        n = len(frames)
        i = 0
        if mirrored and first is None:
            self._push_sessions()
        while True:
            if first is not None:
                (i, j), first = first, None
            else:
                i, j = table.run(frames, i, in_port, tx, now)
            if i >= n:
                break
            if mirrored:
                self._pull_seen()
            self.punted += j - i
            python(frames[i:j])
            i = j
            if i >= n:
                return  # the Python replay had the last word on the sessions' counters
            if mirrored:
                self._push_sessions()
        if mirrored:
            self._pull_seen()

    def push_sessions(self) -> None:
        """Hand the mirror sessions' state to the C side (before a run)."""
        if self.state.mirrors:
            self._push_sessions()

    def pull_seen(self) -> None:
        """Take the sessions' sampling counters and ERSPAN sender state back (after runs)."""
        if self.state.mirrors:
            self._pull_seen()

    def fold(self, cache: FlowCache, in_port: int, taken: Taken | None = None) -> None:
        """Add the native counters' deltas to the Python counters (end of every batch of
        frames received on ``in_port``), the fates of the frames it replayed included;
        ``taken``: the deltas ``Table.take`` already returned (the wake path's report)."""
        hits, ports, sessions, drops, rx_drops = self.table.take() if taken is None else taken
        cache.hits += hits
        self.replayed += hits
        st = self.state
        for idx, rx_bytes, flooded, mirrored_out, forwarded, consumed in ports:
            rt = st.ports.get(idx)
            if rt is not None:
                c = rt.counters
                c.rx_bytes += rx_bytes
                c.flooded += flooded
                c.mirrored_out += mirrored_out
                c.forwarded += forwarded
                c.consumed += consumed
        receiver = st.ports.get(in_port)
        if rx_drops and receiver is not None:
            counters = receiver.counters
            for did, n in rx_drops:
                counters.add_rx_dropped(self.drops[did][1], n)
        for idx, sampled_out, truncated, mirrored, dropped, nbytes in sessions:
            m = st.mirrors.get(idx)
            if m is not None:
                m.sampled_out += sampled_out
                m.truncated += truncated
                m.mirrored += mirrored
                m.dropped += dropped
                m.bytes += nbytes
        for did, n in drops:
            port, reason, rule = self.drops[did]
            st.drops.add(port, reason, rule, n)
            rt = st.ports.get(port)
            if rt is not None:
                rt.counters.dropped += n
