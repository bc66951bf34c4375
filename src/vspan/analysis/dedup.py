"""Remove the copies of one frame captured at several points, streaming.

A NIC team member and the team adapter, the ingress of one switch port and
the egress of another, two ERSPAN sessions: each shows the same frame, and
analysis tools count every copy as a retransmission. :func:`dedup_file`
copies a pcap/pcapng file without them.

Two packets are copies when their comparison keys are equal (the whole frame
by default; see :mod:`vspan.analysis.normalize` for ignoring fields that
change from hop to hop) and the later one is at most ``window`` after the
first copy; or when they carry the same pcapng ``epb_packetid`` within the
window (copies by definition; two different packet ids are never copies).
Order in the file does not matter, only time: copies far apart in the file
but close in time are found (``editcap -d`` looks at the previous four
packets only). A retransmission is never a copy: it has another IP ID, or
comes later than the window.

Streaming with bounded memory: packets wait in a delay buffer until the
newest timestamp read is ``hold`` (window plus tolerated reordering) past
theirs, so a copy from a preferred capture point (``keep_points``) that
arrives later in the file can still replace the first copy; the index of
recent keys forgets groups older than that. Memory depends on the packet
rate times the hold time, never on the file size, and a byte cap
(``max_held_bytes``) bounds it even for files whose timestamps stand still.

The output is pcapng: for pcapng input every block is copied as read
(section headers, interface blocks with their options, statistics, name
resolution, packet options and comments), only the removed packets are
missing and each section header gets a comment saying what was done; a
classic pcap becomes one interface.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from vspan.analysis.normalize import Key, Normalizer
from vspan.capture.pcapng import (
    BT_EPB,
    BT_IDB,
    BT_PB,
    BT_SHB,
    CaptureFormatError,
    CaptureScanner,
    Interface,
    RawBlock,
    RawPacket,
    block_comments,
    copied_section_header,
    packet_block,
    section_header,
    with_comments,
)

DEFAULT_WINDOW_NS = 5_000_000
REASON_IDENTICAL = "identical"  # the same bytes at another capture point
REASON_REPEATED = "repeated"  # the same bytes twice at one capture point
REASON_PACKET_ID = "packet-id"  # the same epb_packetid
_UNLIMITED_SNAP = 1 << 31


class DedupError(ValueError):
    """Bad options or paths (the input is left alone, no output is written)."""


@dataclass(frozen=True, slots=True)
class DedupOptions:
    """What counts as a copy and which one is kept."""

    window_ns: int = DEFAULT_WINDOW_NS
    ignore: frozenset[str] = frozenset()
    keep_points: tuple[str, ...] = ()  # interface names or ids, most preferred first
    reorder_ns: int | None = None  # how far file order may lag time order (default: window)
    max_held_bytes: int = 256 << 20  # delay buffer and index of recent frames together
    comment: bool = True  # add a comment to each section header
    annotate: bool = False  # comment on each kept packet which copies were removed

    @property
    def hold_ns(self) -> int:
        """How long (in capture time) a packet waits in the delay buffer."""
        reorder = self.window_ns if self.reorder_ns is None else self.reorder_ns
        return self.window_ns + reorder

    def describe(self) -> str:
        """One line for the section comment and the report."""
        text = f"window {self.window_ns / 1e6:g} ms"
        if self.ignore:
            text += f", ignoring {','.join(sorted(self.ignore))}"
        if self.keep_points:
            text += f", keeping copies from {','.join(self.keep_points)}"
        return text


@dataclass
class DedupStats:
    """What :func:`dedup_file` read, wrote and removed."""

    packets_in: int = 0
    packets_out: int = 0
    removed: int = 0
    removed_by: dict[tuple[str, str], int] = field(default_factory=dict)  # (iface, reason)
    packets_by_interface: dict[str, int] = field(default_factory=dict)
    replaced_by_keep_point: int = 0  # a preferred copy replaced one read before it
    preference_missed: int = 0  # the preferred copy came after the first was written
    forced: int = 0  # written before their hold time was over (byte cap reached)
    forgotten: int = 0  # frames dropped from the index early (byte cap): copies may remain
    untimed: int = 0  # packets without a timestamp (simple packet blocks): never removed
    blocks: int = 0  # other blocks copied
    sections: int = 0
    peak_held: int = 0  # most packets waiting at once
    truncated: bool = False  # the input's last block was cut
    input_format: str = ""
    unknown_keep_points: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "packets_in": self.packets_in, "packets_out": self.packets_out,
            "removed": self.removed,
            "removed_by": [{"interface": i, "reason": r, "packets": n}
                           for (i, r), n in sorted(self.removed_by.items())],
            "packets_by_interface": dict(sorted(self.packets_by_interface.items())),
            "replaced_by_keep_point": self.replaced_by_keep_point,
            "preference_missed": self.preference_missed, "forced": self.forced,
            "forgotten": self.forgotten,
            "untimed": self.untimed, "blocks": self.blocks, "sections": self.sections,
            "peak_held": self.peak_held, "truncated": self.truncated,
            "input_format": self.input_format,
            "unknown_keep_points": list(self.unknown_keep_points),
        }


class Held:
    """One packet or block waiting in the delay buffer."""

    __slots__ = ("data", "iface", "linktype", "name", "notes", "opt_off", "orig_len", "out",
                 "rank", "removed", "ts", "written")

    def __init__(self, ts: int, out: bytes | None, data: bytes = b"", orig_len: int = 0,
                 iface: int = -1, name: str = "", linktype: int = 1, rank: int = 0,
                 opt_off: int = 0) -> None:
        self.ts = ts
        self.out = out  # bytes to write as they are; None: build an EPB (pcap input)
        self.data = data
        self.orig_len = orig_len
        self.iface = iface  # -1: not a packet
        self.name = name
        self.linktype = linktype
        self.rank = rank
        self.opt_off = opt_off  # where the options of ``out`` start
        self.removed = False
        self.written = False
        self.notes: list[str] | None = None  # comments to add when written (annotate)


def _held_cost(held: Held) -> int:
    """Bytes a waiting packet costs (its block, its data, the object)."""
    return (len(held.out) if held.out is not None else 0) + len(held.data) + 200


class CopyGroup:
    """The copies of one frame seen so far: when the first came, and the one kept."""

    __slots__ = ("keeper", "key", "pid", "t0")

    def __init__(self, t0: int, keeper: Held | None, key: Key, pid: int | None) -> None:
        self.t0 = t0
        self.keeper = keeper
        self.key = key
        self.pid = pid


_GROUP_COST = 400  # bytes a group costs besides its key (objects, dict and deque slots)


def _key_size(key: Key) -> int:
    return len(key) if isinstance(key, bytes) else len(key[1]) + 64


class CopyIndex:
    """Recent frames by comparison key and packet id, forgotten after ``horizon_ns``.

    :meth:`match` answers whether a packet is a copy of one seen at most
    ``window_ns`` from the first copy; :meth:`expire` forgets groups whose
    first copy is older than the newest time minus the horizon, and the
    oldest ones while the index holds more than ``max_bytes``: memory is
    bounded by time and by that cap, never by the file size.
    """

    def __init__(self, window_ns: int, horizon_ns: int, max_bytes: int) -> None:
        self.window = window_ns
        self.horizon = horizon_ns
        self.max_bytes = max_bytes
        self.bytes = 0
        self.forgotten = 0  # groups dropped for the byte cap before their time was over
        self._index: dict[Key, CopyGroup] = {}
        self._by_pid: dict[int, CopyGroup] = {}
        self._ages: deque[CopyGroup] = deque()

    def match(self, key: Key, pid: int | None, t: int) -> tuple[CopyGroup | None, str]:
        """The group this packet is a copy of (and ``"packet-id"`` when the id decided)."""
        window = self.window
        if pid is not None:
            g = self._by_pid.get(pid)
            if g is not None and abs(t - g.t0) <= window:
                return g, REASON_PACKET_ID
        g = self._index.get(key)
        if g is not None and abs(t - g.t0) <= window and (
                pid is None or g.pid is None or pid == g.pid):
            if pid is not None and g.pid is None:
                g.pid = pid
                self._by_pid[pid] = g
            return g, ""
        return None, ""

    def add(self, key: Key, pid: int | None, t: int, keeper: Held | None = None) -> CopyGroup:
        """Start a group with this packet as its first copy."""
        g = CopyGroup(t, keeper, key, pid)
        self._index[key] = g
        if pid is not None:
            self._by_pid[pid] = g
        self._ages.append(g)
        self.bytes += _key_size(key) + _GROUP_COST
        return g

    def due(self, frontier: int) -> bool:
        """Whether :meth:`expire` has anything to do (cheap: looks at the oldest group)."""
        ages = self._ages
        return bool(ages) and (ages[0].t0 < frontier - self.horizon
                               or self.bytes > self.max_bytes)

    def expire(self, frontier: int) -> None:
        """Forget groups that can no longer gain copies."""
        ages = self._ages
        limit = frontier - self.horizon
        while ages and (ages[0].t0 < limit or self.bytes > self.max_bytes):
            g = ages.popleft()
            self.bytes -= _key_size(g.key) + _GROUP_COST
            if g.t0 >= limit:
                self.forgotten += 1
            if self._index.get(g.key) is g:
                del self._index[g.key]
            if g.pid is not None and self._by_pid.get(g.pid) is g:
                del self._by_pid[g.pid]

    def clear(self) -> None:
        """Forget everything (a new section)."""
        self._index.clear()
        self._by_pid.clear()
        self._ages.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._ages)


class Deduplicator:
    """The streaming decision: feed packets and blocks in file order, get them back in order
    (minus the copies) through ``emit``."""

    def __init__(self, opts: DedupOptions, emit: Callable[[Held], None],
                 stats: DedupStats | None = None, byte_order: str = "<") -> None:
        if opts.window_ns < 0 or (opts.reorder_ns is not None and opts.reorder_ns < 0):
            raise DedupError("window and reorder tolerance must not be negative")
        self.opts = opts
        self.stats = stats if stats is not None else DedupStats()
        self.normalizer = Normalizer(opts.ignore)
        self._emit = emit
        self.byte_order = byte_order  # of the packet blocks (for annotations)
        self._hold = opts.hold_ns
        self._fifo: deque[Held] = deque()
        self._held_bytes = 0
        self._held_packets = 0
        # a quarter for the delay buffer (when full, only the keep-point preference
        # suffers), the rest for the index of recent frames (which finds the copies)
        self._max_buffer = opts.max_held_bytes // 4
        self.copies = CopyIndex(opts.window_ns, opts.hold_ns,
                                opts.max_held_bytes - self._max_buffer)
        self._frontier = -1

    # ---- input -------------------------------------------------------------------------

    def block(self, held: Held) -> None:
        """A non-packet block: it keeps its place among the packets."""
        held.ts = self._frontier
        self._push(held)

    def packet(self, held: Held, key: Key, pid: int | None) -> None:
        """One packet with its comparison key and packet id."""
        st = self.stats
        st.packets_in += 1
        st.packets_by_interface[held.name] = st.packets_by_interface.get(held.name, 0) + 1
        t = held.ts
        if t < 0:  # no timestamp: nothing to compare with
            st.untimed += 1
            held.ts = self._frontier
            self._push(held)
            return
        if t > self._frontier:
            self._frontier = t
        group, reason = self.copies.match(key, pid, t)
        if group is None or group.keeper is None:
            self.copies.add(key, pid, t, held)
            self._push(held)
            return
        keeper = group.keeper
        if held.rank < keeper.rank:
            if not keeper.written:
                self._remove(keeper, held, reason)
                group.keeper = held
                st.replaced_by_keep_point += 1
                self._push(held)
                return
            st.preference_missed += 1
        self._remove(held, keeper, reason)
        self._expire()

    def flush(self) -> None:
        """Write everything still waiting and forget all groups (end of file or section)."""
        while self._fifo:
            self._pop()
        self.copies.clear()
        self._frontier = -1

    # ---- internals ---------------------------------------------------------------------

    def _reason(self, removed: Held, kept: Held) -> str:
        diff = self.normalizer.differing(removed.linktype, removed.data, kept.linktype,
                                         kept.data)
        if diff:
            return "ignoring " + "+".join(diff)
        return REASON_REPEATED if removed.iface == kept.iface else REASON_IDENTICAL

    def _remove(self, removed: Held, kept: Held, reason: str) -> None:
        removed.removed = True
        st = self.stats
        st.removed += 1
        why = reason or self._reason(removed, kept)
        k = (removed.name, why)
        st.removed_by[k] = st.removed_by.get(k, 0) + 1
        if self.opts.annotate and not kept.written:
            self._annotate(removed, kept, why)

    def _annotate(self, removed: Held, kept: Held, why: str) -> None:
        """Note on the kept copy that ``removed`` was removed (and carry its comments)."""
        notes = kept.notes if kept.notes is not None else []
        notes.append(f"vspan dedup: copy at {removed.name} removed ({why}, "
                     f"{(removed.ts - kept.ts) / 1000:+.3f} us)")
        if removed.notes:
            notes.extend(removed.notes)
        if removed.out is not None:
            try:
                comments = block_comments(removed.out, removed.opt_off, self.byte_order)
            except CaptureFormatError:  # a malformed option: the comments are not carried
                comments = []
            notes.extend(f"{removed.name}: {c}" for c in comments)
        kept.notes = notes

    def _push(self, held: Held) -> None:
        self._fifo.append(held)
        self._held_bytes += _held_cost(held)
        if held.iface >= 0:
            self._held_packets += 1
            if self._held_packets > self.stats.peak_held:
                self.stats.peak_held = self._held_packets
        self._expire()

    def _pop(self) -> None:
        held = self._fifo.popleft()
        self._held_bytes -= _held_cost(held)
        if held.iface >= 0:
            self._held_packets -= 1
        if held.removed:
            return
        held.written = True
        if held.iface >= 0:
            self.stats.packets_out += 1
        else:
            self.stats.blocks += 1
        self._emit(held)
        held.out = None  # written: the group needs only its data (for reasons)
        held.notes = None

    def _expire(self) -> None:
        fifo = self._fifo
        limit = self._frontier - self._hold
        while fifo and fifo[0].ts < limit:
            self._pop()
        cap = self._max_buffer
        while fifo and self._held_bytes > cap:
            if fifo[0].iface >= 0 and not fifo[0].removed:
                self.stats.forced += 1
            self._pop()
        self.copies.expire(self._frontier)


# ---- files -------------------------------------------------------------------------------


class _Output:
    """A buffered output file that appears under its name only when complete."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        self.tmp = os.path.join(directory, f".{os.path.basename(path)}.vspan-partial")
        self._fh = open(self.tmp, "wb", buffering=1 << 20)  # noqa: SIM115 (closed in commit/abort)
        self.write = self._fh.write

    def commit(self) -> None:
        self._fh.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._fh.close()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _rank(points: tuple[str, ...], ifid: int, name: str) -> int:
    for i, p in enumerate(points):
        if p == name or p == str(ifid):
            return i
    return len(points)


def dedup_file(src: str, dst: str, opts: DedupOptions,
               progress: Callable[[int], None] | None = None,
               progress_every: int = 1 << 16) -> DedupStats:
    """Copy ``src`` (pcap/pcapng) to ``dst`` (pcapng) without the copies; return the stats.

    ``progress`` is called with the number of input bytes consumed every
    ``progress_every`` packets and at the end. The output appears only when
    complete; on any error it is not written and the error is raised.
    """
    if _same_file(src, dst):
        raise DedupError(f"{dst}: the output would overwrite the input")
    stats = DedupStats()
    out = _Output(dst)

    def emit(h: Held) -> None:
        if h.out is None:
            out.write(packet_block(0, h.ts, h.data, orig_len=h.orig_len, comments=h.notes or (),
                                   snaplen=_UNLIMITED_SNAP))
        elif h.notes and _has_options(h.out, dd.byte_order):
            out.write(with_comments(h.out, h.opt_off, dd.byte_order, h.notes))
        else:
            out.write(h.out)

    dd = Deduplicator(opts, emit, stats)
    key = dd.normalizer.key
    points = opts.keep_points
    names: list[tuple[str, int, int]] = []  # per interface of the section: name, linktype, rank
    seen_names: set[str] = set()
    comment = f"vspan dedup: {opts.describe()}" if opts.comment else ""
    scan = CaptureScanner(src, blocks=True)
    try:
        n = 0
        for item in scan:
            if type(item) is RawPacket:
                if not names and scan.format == "pcap":  # one interface, written as pcapng
                    names = _pcap_start(scan, out, comment, points)
                    seen_names.add(names[0][0])
                name, linktype, rank = names[item.interface_id]
                h = Held(item.ts_ns, item.block, item.data, item.orig_len, item.interface_id,
                         name, linktype, rank, item.opt_off)
                dd.packet(h, key(linktype, item.data), item.packet_id)
                n += 1
                if progress is not None and n % progress_every == 0:
                    progress(scan.position)
                continue
            assert isinstance(item, RawBlock)
            if item.btype == BT_SHB:
                dd.flush()
                names = []
                stats.sections += 1
                dd.byte_order = scan.byte_order
                out.write(copied_section_header(item.block, scan.byte_order, comment))
                continue
            if item.btype == BT_IDB:
                iface = scan.interfaces[-1]
                ifid = len(scan.interfaces) - 1
                name = iface.name or f"#{ifid}"
                names.append((name, iface.linktype, _rank(points, ifid, iface.name)))
                seen_names.add(iface.name)
                seen_names.add(str(ifid))
            dd.block(Held(0, item.block))
        dd.flush()
        stats.forgotten = dd.copies.forgotten
        stats.truncated = scan.truncated
        stats.input_format = scan.format
        if scan.format == "pcap" and not names:  # an empty pcap still gives a valid pcapng
            _pcap_start(scan, out, comment, points)
        stats.unknown_keep_points = tuple(p for p in points if p not in seen_names)
        if progress is not None:
            progress(scan.position)
    except BaseException:
        out.abort()
        raise
    out.commit()
    return stats


def _has_options(block: bytes, byte_order: str) -> bool:
    """Whether a packet block can carry options (enhanced and obsolete ones; not simple)."""
    btype = int.from_bytes(block[:4], "little" if byte_order == "<" else "big")
    return btype in (BT_EPB, BT_PB)


def _pcap_start(scan: CaptureScanner, out: _Output, comment: str,
                points: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """Section and interface block standing for a classic pcap file."""
    info = scan.interfaces[0]
    out.write(section_header(comment=comment))
    out.write(Interface(name="", description="from a classic pcap file", linktype=info.linktype,
                        snaplen=info.snaplen).block())
    return [("#0", info.linktype, _rank(points, 0, ""))]
