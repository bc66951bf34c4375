"""pcapng writer and reader (and a classic pcap reader).

The writer emits one Section Header Block, Interface Description Blocks as
interfaces appear, and Enhanced Packet Blocks with nanosecond timestamps,
direction/reception flags, comments, drop counts and verdicts. Every block is
handed to the kernel with a single ``write()`` on an unbuffered descriptor, so
a process killed at any moment leaves a file whose blocks are all whole (at
most the block being written is lost).

:class:`RotatingPcapngWriter` starts new files by size (``-C``, millions of
bytes) and/or time (``-G``, seconds) with tcpdump's naming, and repeats the
interface blocks in every file so interface ids stay the same.

The reader (:func:`read_capture`) yields :class:`PacketRecord` from pcapng
(both byte orders, several sections) and classic pcap (µs and ns), and stops
quietly at a cut last block (``CaptureReader.truncated`` tells).

Format: https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html
"""

from __future__ import annotations

import os
import platform
import stat
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

# link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

# block types
BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_PB = 0x00000002  # obsolete Packet Block
BT_SPB = 0x00000003
BT_NRB = 0x00000004
BT_ISB = 0x00000005
BT_EPB = 0x00000006
BT_DSB = 0x0000000A

BYTE_ORDER_MAGIC = 0x1A2B3C4D

# option codes
OPT_ENDOFOPT = 0
OPT_COMMENT = 1
SHB_HARDWARE = 2
SHB_OS = 3
SHB_USERAPPL = 4
IF_NAME = 2
IF_DESCRIPTION = 3
IF_TSRESOL = 9
IF_OS = 12
IF_TSOFFSET = 14
IF_HARDWARE = 15
EPB_FLAGS = 2
EPB_HASH = 3
EPB_DROPCOUNT = 4
EPB_PACKETID = 5
EPB_QUEUE = 6
EPB_VERDICT = 7
ISB_STARTTIME = 2
ISB_ENDTIME = 3
ISB_IFRECV = 4
ISB_IFDROP = 5
ISB_FILTERACCEPT = 6
ISB_OSDROP = 7
ISB_USRDELIV = 8

# epb_flags bits 0-1: direction
DIR_UNKNOWN = 0
DIR_INBOUND = 1
DIR_OUTBOUND = 2
# epb_flags bits 2-4: reception type
RX_UNSPECIFIED = 0
RX_UNICAST = 1
RX_MULTICAST = 2
RX_BROADCAST = 3
RX_PROMISCUOUS = 4

# epb_verdict types
VERDICT_HARDWARE = 0
VERDICT_LINUX_TC = 1
VERDICT_LINUX_XDP = 2
TC_ACT_OK = 0
TC_ACT_SHOT = 2
XDP_DROP = 1
XDP_PASS = 2

DEFAULT_SNAPLEN = 262144


class CaptureFormatError(ValueError):
    """A file is not pcap/pcapng, or a block in it is malformed."""


# ---- option encoding ---------------------------------------------------------------------


def _opt(code: int, value: bytes) -> bytes:
    pad = (-len(value)) & 3
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _opt_str(code: int, text: str) -> bytes:
    return _opt(code, text.encode("utf-8"))


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def _options(opts: list[bytes]) -> bytes:
    if not opts:
        return b""
    return b"".join(opts) + b"\0\0\0\0"


def epb_flags(direction: int = DIR_UNKNOWN, reception: int = RX_UNSPECIFIED, fcs_len: int = 0,
              link_errors: int = 0) -> int:
    """The 32-bit ``epb_flags`` value: direction, reception type, FCS length, link errors."""
    if not 0 <= direction <= 3 or not 0 <= reception <= 7 or not 0 <= fcs_len <= 15:
        raise ValueError("epb_flags: field out of range")
    return direction | (reception << 2) | (fcs_len << 5) | ((link_errors & 0xFFFF) << 16)


def reception_type(frame: bytes) -> int:
    """Unicast/multicast/broadcast reception type of an Ethernet frame by its destination."""
    if len(frame) < 6:
        return RX_UNSPECIFIED
    if frame[:6] == b"\xff\xff\xff\xff\xff\xff":
        return RX_BROADCAST
    return RX_MULTICAST if frame[0] & 1 else RX_UNICAST


def verdict_hardware(data: bytes) -> bytes:
    """An ``epb_verdict`` value of type Hardware (opaque bytes)."""
    return bytes((VERDICT_HARDWARE,)) + data


def verdict_tc(action: int) -> bytes:
    """An ``epb_verdict`` value of type Linux tc (a ``TC_ACT_*`` code: 0 ok, 2 shot)."""
    return bytes((VERDICT_LINUX_TC,)) + struct.pack("<q", action)


def verdict_xdp(action: int) -> bytes:
    """An ``epb_verdict`` value of type Linux XDP (an ``XDP_*`` code: 1 drop, 2 pass)."""
    return bytes((VERDICT_LINUX_XDP,)) + struct.pack("<q", action)


def drop_comment(reason: str, rule: str = "", where: str = "", detail: str = "") -> str:
    """The packet comment of a dropped frame: ``vspan: dropped: acl-deny, rule web-3, at web1``."""
    text = f"vspan: dropped: {reason}"
    if rule:
        text += f", rule {rule}"
    if where:
        text += f", at {where}"
    if detail:
        text += f" ({detail})"
    return text


def drop_verdict(dropped: bool) -> bytes:
    """The ``epb_verdict`` of a frame the switch dropped or delivered.

    pcapng has no switch verdict type; the Linux tc one (``TC_ACT_SHOT`` = drop,
    ``TC_ACT_OK`` = pass) is the closest standard meaning, and Wireshark shows
    it as ``frame.verdict.ebpf_tc``. The drop reason itself goes in the comment.
    """
    return verdict_tc(TC_ACT_SHOT if dropped else TC_ACT_OK)


@dataclass(frozen=True, slots=True)
class Interface:
    """What an Interface Description Block says. Timestamps are always nanoseconds."""

    name: str
    description: str = ""
    linktype: int = LINKTYPE_ETHERNET
    snaplen: int = DEFAULT_SNAPLEN
    os: str = ""
    hardware: str = ""

    def block(self) -> bytes:
        """The IDB bytes."""
        opts = [_opt_str(IF_NAME, self.name)]
        if self.description:
            opts.append(_opt_str(IF_DESCRIPTION, self.description))
        opts.append(_opt(IF_TSRESOL, b"\x09"))
        if self.os:
            opts.append(_opt_str(IF_OS, self.os))
        if self.hardware:
            opts.append(_opt_str(IF_HARDWARE, self.hardware))
        body = struct.pack("<HHI", self.linktype, 0, self.snaplen) + _options(opts)
        return _block(BT_IDB, body)


def section_header(application: str = "vspan", hardware: str = "", os_name: str = "",
                   comment: str = "") -> bytes:
    """A Section Header Block (version 1.0, section length unknown)."""
    opts = []
    if comment:
        opts.append(_opt_str(OPT_COMMENT, comment))
    if hardware:
        opts.append(_opt_str(SHB_HARDWARE, hardware))
    if os_name:
        opts.append(_opt_str(SHB_OS, os_name))
    if application:
        opts.append(_opt_str(SHB_USERAPPL, application))
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1) + _options(opts)
    return _block(BT_SHB, body)


_EPB_HEAD = struct.Struct("<IIIIIII")  # block type, total length, interface, ts hi/lo, lengths
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_FLAGS_ONLY = struct.Struct("<HHII")  # epb_flags option + end of options
_PAD = (b"", b"\0", b"\0\0", b"\0\0\0")


def packet_block(interface_id: int, ts_ns: int, data: bytes, *, orig_len: int | None = None,
                 snaplen: int = DEFAULT_SNAPLEN, comments: Sequence[str] = (),
                 flags: int | None = None, dropcount: int | None = None,
                 verdicts: Sequence[bytes] = (), packet_id: int | None = None,
                 queue: int | None = None) -> bytes:
    """An Enhanced Packet Block (timestamp in nanoseconds since the epoch)."""
    wire_len = len(data) if orig_len is None else max(orig_len, len(data))
    if len(data) > snaplen:
        data = data[:snaplen]
    cap = len(data)
    if comments or dropcount is not None or verdicts or packet_id is not None or (
            queue is not None):
        opts: list[bytes] = [_opt_str(OPT_COMMENT, c) for c in comments]
        if flags is not None:
            opts.append(_opt(EPB_FLAGS, _U32.pack(flags & 0xFFFFFFFF)))
        if dropcount is not None:
            opts.append(_opt(EPB_DROPCOUNT, _U64.pack(dropcount)))
        if packet_id is not None:
            opts.append(_opt(EPB_PACKETID, _U64.pack(packet_id)))
        if queue is not None:
            opts.append(_opt(EPB_QUEUE, _U32.pack(queue)))
        opts.extend(_opt(EPB_VERDICT, v) for v in verdicts)
        tail = _options(opts)
    elif flags is not None:
        tail = _FLAGS_ONLY.pack(EPB_FLAGS, 4, flags & 0xFFFFFFFF, 0)
    else:
        tail = b""
    pad = (-cap) & 3
    total = 32 + cap + pad + len(tail)
    return b"".join((
        _EPB_HEAD.pack(BT_EPB, total, interface_id, (ts_ns >> 32) & 0xFFFFFFFF,
                       ts_ns & 0xFFFFFFFF, cap, wire_len),
        data, _PAD[pad], tail, _U32.pack(total),
    ))


def statistics_block(interface_id: int, ts_ns: int, *, comment: str = "",
                     ifrecv: int | None = None, ifdrop: int | None = None,
                     osdrop: int | None = None, usrdeliv: int | None = None,
                     starttime_ns: int | None = None) -> bytes:
    """An Interface Statistics Block."""
    opts: list[bytes] = []
    if comment:
        opts.append(_opt_str(OPT_COMMENT, comment))
    for code, value in ((ISB_STARTTIME, starttime_ns), (ISB_ENDTIME, ts_ns)):
        if value is not None:
            opts.append(_opt(code, struct.pack("<II", (value >> 32) & 0xFFFFFFFF,
                                               value & 0xFFFFFFFF)))
    for code, value in ((ISB_IFRECV, ifrecv), (ISB_IFDROP, ifdrop), (ISB_OSDROP, osdrop),
                        (ISB_USRDELIV, usrdeliv)):
        if value is not None:
            opts.append(_opt(code, _U64.pack(value)))
    body = struct.pack("<III", interface_id, (ts_ns >> 32) & 0xFFFFFFFF, ts_ns & 0xFFFFFFFF)
    return _block(BT_ISB, body + _options(opts))


def with_comments(block: bytes, opt_off: int, byte_order: str, comments: Sequence[str]) -> bytes:
    """A block as read (options from ``opt_off``) with more ``opt_comment`` options added.

    The existing options are kept in their order and byte order; works for
    section headers (``opt_off`` 24) and packet blocks.
    """
    if len(block) < opt_off + 4:
        raise CaptureFormatError("block too short for its options")
    opts = bytearray()
    values = [(c, v) for c, v in _parse_options(byte_order, block[:-4], opt_off)]
    values.extend((OPT_COMMENT, text.encode("utf-8")) for text in comments)
    for code, value in values:
        opts += struct.pack(byte_order + "HH", code, len(value)) + value
        opts += _PAD[(-len(value)) & 3]
    if opts:
        opts += b"\0\0\0\0"
    total = opt_off + len(opts) + 4
    u32 = byte_order + "I"
    return block[:4] + struct.pack(u32, total) + block[8:opt_off] + bytes(opts) + (
        struct.pack(u32, total))


def copied_section_header(block: bytes, byte_order: str, comment: str = "") -> bytes:
    """A Section Header Block as read, made fit to start a filtered copy of its section.

    The section length becomes -1 (unknown: the copy has other blocks), the
    options stay as they were (in the section's byte order) and ``comment``
    is added as one more ``opt_comment``.
    """
    if len(block) < 28:
        raise CaptureFormatError("section header block too short")
    block = block[:16] + b"\xff" * 8 + block[24:]
    return with_comments(block, 24, byte_order, [comment] if comment else [])


def _default_hardware() -> str:
    return platform.machine()


def _default_os() -> str:
    u = os.uname()
    return f"{u.sysname} {u.release}"


class PcapngWriter:
    """Writes one pcapng file; each block reaches the kernel whole (one ``write()``)."""

    def __init__(self, path: str, *, application: str = "vspan", comment: str = "",
                 mode: int = 0o644) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                       mode)
        self.final: tuple[int, int, int, int] | None = None  # see close()
        self.bytes_written = 0
        self.packets = 0
        self.interfaces: list[Interface] = []
        self._write(section_header(application, _default_hardware(), _default_os(), comment))

    def _write(self, block: bytes) -> None:
        fd = self._fd
        if fd is None:
            raise ValueError(f"{self.path}: writer is closed")
        view = memoryview(block)
        while view:  # a regular file takes it whole; loop only for the pathological case
            n = os.write(fd, view)
            view = view[n:]
        self.bytes_written += len(block)

    def add_interface(self, iface: Interface) -> int:
        """Write an IDB; return the interface id packets refer to."""
        self._write(iface.block())
        self.interfaces.append(iface)
        return len(self.interfaces) - 1

    def write_packet(self, interface_id: int, data: bytes, ts_ns: int, *,
                     orig_len: int | None = None, comments: Sequence[str] = (),
                     flags: int | None = None, dropcount: int | None = None,
                     verdicts: Sequence[bytes] = (), packet_id: int | None = None,
                     queue: int | None = None, limit: int | None = None) -> int:
        """Write one EPB; return its size in bytes (0, and nothing written, when it would
        take the file past ``limit`` bytes)."""
        if not 0 <= interface_id < len(self.interfaces):
            raise ValueError(f"interface id {interface_id} was not added to {self.path}")
        block = packet_block(interface_id, ts_ns, data, orig_len=orig_len,
                             snaplen=self.interfaces[interface_id].snaplen, comments=comments,
                             flags=flags, dropcount=dropcount, verdicts=verdicts,
                             packet_id=packet_id, queue=queue)
        if limit is not None and self.bytes_written + len(block) > limit:
            return 0
        self._write(block)
        self.packets += 1
        return len(block)

    def write_statistics(self, interface_id: int, ts_ns: int, **kw: int | str | None) -> None:
        """Write an ISB (keywords of :func:`statistics_block`)."""
        self._write(statistics_block(interface_id, ts_ns, **kw))  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the file (idempotent); :attr:`final` then identifies the file as written
        (device, inode, size, modification time in ns), whatever its name becomes."""
        if self._fd is not None:
            st = os.fstat(self._fd)
            self.final = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fd is None

    def __enter__(self) -> PcapngWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rotated_name(pattern: str, *, index: int, period_start: float | None) -> str:
    """tcpdump's file name: strftime of ``pattern`` with ``-G``, then a count with ``-C``.

    ``index`` 0 is the plain name; later files of the same period get ``1``,
    ``2``... appended (tcpdump ``-C``). Without ``%`` in the pattern, ``-G``
    files are numbered too (tcpdump would overwrite the same file instead).
    """
    name = pattern
    if period_start is not None and "%" in pattern:
        name = time.strftime(pattern, time.localtime(period_start))
    return name if index == 0 else f"{name}{index}"


class RotatingPcapngWriter:
    """A pcapng writer that starts a new file by size and/or time (tcpdump ``-C``/``-G``).

    Interface blocks are repeated at the start of every file in the same order,
    so an interface id means the same interface in all files.
    """

    def __init__(self, pattern: str, *, max_bytes: int | None = None,
                 max_seconds: float | None = None, application: str = "vspan",
                 clock: Callable[[], float] = time.time,
                 on_rotate: Callable[[str], None] | None = None) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if max_seconds is not None and max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        self.pattern = pattern
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.application = application
        self._clock = clock
        self._on_rotate = on_rotate
        self.interfaces: list[Interface] = []
        self.files: list[str] = []
        self.packets = 0
        self.bytes_written = 0
        self._index = 0
        self._period_start = clock()
        self._writer = self._open(self._name())

    def _name(self) -> str:
        period = self._period_start if self.max_seconds is not None else None
        name = rotated_name(self.pattern, index=self._index, period_start=period)
        if self.max_seconds is not None and "%" not in self.pattern and self.files:
            name = rotated_name(self.pattern, index=len(self.files), period_start=None)
        return name

    def _open(self, name: str) -> PcapngWriter:
        w = PcapngWriter(name, application=self.application)
        for iface in self.interfaces:
            w.add_interface(iface)
        self.files.append(name)
        return w

    @property
    def current(self) -> str:
        """The file being written."""
        return self._writer.path

    def _rotate(self, *, new_period: bool) -> None:
        self.bytes_written += self._writer.bytes_written
        self._writer.close()
        if new_period:
            self._period_start = self._clock()
            self._index = 0
        else:
            self._index += 1
        name = self._name()
        if name in self.files:  # never overwrite a file of this capture
            name = rotated_name(self.pattern, index=len(self.files), period_start=None)
        self._writer = self._open(name)
        if self._on_rotate is not None:
            self._on_rotate(name)

    def maybe_rotate(self) -> None:
        """Start a new file when the time period is over (call it also when idle)."""
        if self.max_seconds is not None and self._clock() - self._period_start >= self.max_seconds:
            self._rotate(new_period=True)

    def add_interface(self, iface: Interface) -> int:
        """Add an interface to the current and every later file; return its id."""
        self.interfaces.append(iface)
        return self._writer.add_interface(iface)

    def write_packet(self, interface_id: int, data: bytes, ts_ns: int, *,
                     orig_len: int | None = None, comments: Sequence[str] = (),
                     flags: int | None = None, dropcount: int | None = None,
                     verdicts: Sequence[bytes] = (), packet_id: int | None = None,
                     queue: int | None = None) -> int:
        """Write one EPB (see :meth:`PcapngWriter.write_packet`), rotating first if due."""
        self.maybe_rotate()
        w = self._writer
        if (self.max_bytes is not None and w.packets
                and w.bytes_written + 64 + len(data) > self.max_bytes):
            self._rotate(new_period=False)
            w = self._writer
        n = w.write_packet(interface_id, data, ts_ns, orig_len=orig_len, comments=comments,
                           flags=flags, dropcount=dropcount, verdicts=verdicts,
                           packet_id=packet_id, queue=queue)
        self.packets += 1
        return n

    def close(self) -> None:
        """Close the current file."""
        if not self._writer.closed:
            self.bytes_written += self._writer.bytes_written
            self._writer.close()

    def write_statistics(self, interface_id: int, ts_ns: int, **kw: int | str | None) -> None:
        """Write an ISB into the current file."""
        self._writer.write_statistics(interface_id, ts_ns, **kw)

    def __enter__(self) -> RotatingPcapngWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- reading -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    """An interface as read from a file."""

    linktype: int
    snaplen: int
    name: str = ""
    description: str = ""
    units_per_s: int = 1_000_000  # timestamp units per second (if_tsresol)
    tsoffset_s: int = 0


@dataclass(frozen=True, slots=True)
class PacketRecord:
    """One packet read from a capture file."""

    interface_id: int
    linktype: int
    ts_ns: int
    data: bytes
    orig_len: int
    comments: tuple[str, ...] = ()
    flags: int | None = None
    dropcount: int | None = None
    verdicts: tuple[bytes, ...] = ()
    packet_id: int | None = None
    interface_name: str = ""

    @property
    def direction(self) -> int:
        """``DIR_*`` from the flags (``DIR_UNKNOWN`` when absent)."""
        return (self.flags or 0) & 3


class RawPacket(NamedTuple):
    """One packet as :class:`CaptureScanner` found it (a tuple: cheap to make).

    ``block`` is the whole packet block exactly as read, in the byte order of
    its section (``None`` for classic pcap); its options start at ``opt_off``
    (``len(block) - 4`` when none). ``ts_ns`` is -1 for a Simple Packet Block,
    which has no timestamp.
    """

    interface_id: int
    ts_ns: int
    data: bytes
    orig_len: int
    packet_id: int | None  # epb_packetid (option 5)
    block: bytes | None
    opt_off: int


class RawBlock(NamedTuple):
    """A block that is not a packet (section header, interface, statistics...), as read."""

    btype: int
    block: bytes


_CHUNK = 1 << 20
_SHB_MAGIC = b"\x0a\x0d\x0d\x0a"
_MAX_RECORD = 0x4000000


def _tsresol(value: bytes) -> int:
    r = value[0]
    return int(2 ** (r & 0x7F) if r & 0x80 else 10 ** r)


def _ts_converter(iface: InterfaceInfo) -> tuple[int, int, int]:
    """(multiplier, divisor, offset ns) turning ticks into ns: ticks * m // d + o."""
    units = iface.units_per_s
    off = iface.tsoffset_s * 1_000_000_000
    if units <= 1_000_000_000 and 1_000_000_000 % units == 0:
        return 1_000_000_000 // units, 1, off
    return 1_000_000_000, units, off


class CaptureScanner:
    """Fast sequential reader of a pcap or pcapng file (the hot path of the analysis tools).

    Yields :class:`RawPacket` for every packet (with its whole block unless
    ``packet_blocks=False``) and, with ``blocks=True``,
    :class:`RawBlock` for every other pcapng block in file order (a section
    header, then its interface blocks, ...), so a filter can copy a file
    block by block. ``interfaces`` always describes the current section (the
    list is updated in place), ``byte_order`` is its ``struct`` prefix, and
    ``position`` counts the bytes consumed so far (for progress). The file is
    read in large chunks and parsed with ``struct.unpack_from``; a cut last
    block ends the iteration quietly with ``truncated`` set.
    """

    def __init__(self, path: str, *, blocks: bool = False, packet_blocks: bool = True,
                 chunk: int = _CHUNK) -> None:
        self.path = path
        self.blocks = blocks
        self.packet_blocks = packet_blocks  # False: RawPacket.block is None (cheaper)
        self._opt_hdr = struct.Struct("<HH")
        self.chunk = max(chunk, 64)
        self.format = ""
        self.byte_order = "<"
        self.interfaces: list[InterfaceInfo] = []
        self.section_comments: list[str] = []
        self.truncated = False
        self.position = 0
        self.sections = 0
        self.pcap_nanoseconds = False
        self._conv: list[tuple[int, int, int]] = []

    def _error(self, text: str) -> CaptureFormatError:
        return CaptureFormatError(f"{self.path}: {text}")

    def __iter__(self) -> Iterator[RawPacket | RawBlock]:
        with open(self.path, "rb", buffering=0) as fh:
            head = fh.read(self.chunk)
            if len(head) < 4:
                raise self._error("too short for a capture file")
            if head[:4] == _SHB_MAGIC:
                self.format = "pcapng"
                yield from self._pcapng(fh, head)
            else:
                self.format = "pcap"
                yield from self._pcap(fh, head)

    # classic pcap
    def _pcap(self, fh: BinaryIO, buf: bytes) -> Iterator[RawPacket | RawBlock]:
        magic = buf[:4]
        m_le = struct.unpack("<I", magic)[0]
        m_be = struct.unpack(">I", magic)[0]
        known = {0xA1B2C3D4: 1000, 0xA1B23C4D: 1}
        if m_le in known:
            end, unit = "<", known[m_le]
        elif m_be in known:
            end, unit = ">", known[m_be]
        else:
            raise self._error(f"not a pcap or pcapng file (magic {magic.hex()})")
        if len(buf) < 24:
            raise self._error("pcap header cut short")
        self.byte_order = end
        self.pcap_nanoseconds = unit == 1
        _vmaj, _vmin, _tz, _sig, snaplen, linktype = struct.unpack_from(end + "HHiIII", buf, 4)
        linktype &= 0x0FFFFFFF
        self.interfaces[:] = [InterfaceInfo(linktype, snaplen,
                                            units_per_s=1_000_000_000 // unit)]
        rec = struct.Struct(end + "IIII")
        unpack = rec.unpack_from
        pos = 24
        consumed = 0
        while True:
            avail = len(buf) - pos
            need = 16
            if avail >= 16:
                sec, frac, incl, orig = unpack(buf, pos)
                if incl > _MAX_RECORD:
                    raise self._error(f"record of {incl} bytes is not plausible")
                need = 16 + incl
            if avail < need:
                grown = self._grow(fh, buf, pos, consumed, need - avail)
                if grown is None:
                    return
                consumed += pos
                buf, pos = grown, 0
                continue
            start = pos + 16
            pos = start + incl
            self.position = consumed + pos
            yield RawPacket(0, sec * 1_000_000_000 + frac * unit, buf[start:pos], orig, None,
                            None, 0)

    # pcapng
    @staticmethod
    def _left(fh: BinaryIO) -> int:
        """Bytes not read yet (a lying length must not make us read gigabytes)."""
        try:
            st = os.fstat(fh.fileno())
        except OSError:
            return _MAX_RECORD
        if not stat.S_ISREG(st.st_mode):
            return _MAX_RECORD
        return st.st_size - fh.tell()

    def _grow(self, fh: BinaryIO, buf: bytes, pos: int, consumed: int,
              missing: int) -> bytes | None:
        """``buf[pos:]`` and at least ``missing`` more bytes; ``None`` at the end of the file
        (then ``position`` and ``truncated`` say where and whether a record was cut)."""
        more = fh.read(max(self.chunk, missing)) if missing <= self._left(fh) else b""
        if more:
            return buf[pos:] + more
        self.position = consumed + len(buf)
        self.truncated = len(buf) > pos
        return None

    def _pcapng(self, fh: BinaryIO, buf: bytes) -> Iterator[RawPacket | RawBlock]:
        blocks = self.blocks
        keep = self.packet_blocks
        conv = self._conv
        pos = 0
        consumed = 0
        hdr = struct.Struct("<II")
        epb = struct.Struct("<IIIII")
        u32 = struct.Struct("<I")
        while True:
            avail = len(buf) - pos
            if avail >= 12:
                btype, total = hdr.unpack_from(buf, pos)
                if btype == BT_SHB:  # a palindrome: the same in both byte orders
                    hdr, epb, u32 = self._section_structs(buf[pos + 8:pos + 12])
                    total = hdr.unpack_from(buf, pos)[1]
                    if total < 28 or total % 4:
                        raise self._error(f"bad section header length {total}")
                elif total < 12 or total % 4:
                    raise self._error(f"block of length {total} is malformed")
                if total > _MAX_RECORD:
                    raise self._error(f"block of {total} bytes is not plausible")
            else:
                total = 12
            if avail < total:
                grown = self._grow(fh, buf, pos, consumed, total - avail)
                if grown is None:
                    return
                consumed += pos
                buf, pos = grown, 0
                continue
            start = pos
            pos += total
            self.position = consumed + pos
            if u32.unpack_from(buf, pos - 4)[0] != total:
                raise self._error(f"block lengths disagree ({total})")
            if btype == BT_EPB:
                if total < 32:
                    raise self._error("packet block too short")
                ifid, hi, lo, cap, orig = epb.unpack_from(buf, start + 8)
                data_end = start + 28 + cap
                if data_end > pos - 4:
                    raise self._error("packet data overruns its block")
                if ifid >= len(conv):
                    raise self._error(f"packet refers to unknown interface {ifid}")
                mul, div, off = conv[ifid]
                ts = (((hi << 32) | lo) * mul) // div + off
                opt = 28 + cap + ((-cap) & 3)
                pid = None
                if opt < total - 4:
                    pid = self._packet_id(buf, start + opt, pos - 4)
                yield RawPacket(ifid, ts, buf[start + 28:data_end], orig, pid,
                                buf[start:pos] if keep else None, opt)
            elif btype in (BT_PB, BT_SPB):
                yield self._old_packet(btype, buf[start:pos])
            else:
                body = buf[start + 8:pos - 4]
                if btype == BT_SHB:
                    self.sections += 1
                    self.interfaces.clear()
                    conv.clear()
                    self._shb(body)
                elif btype == BT_IDB:
                    self._idb(body)
                if blocks:
                    yield RawBlock(btype, buf[start:pos])

    def _section_structs(self, bom: bytes) -> tuple[struct.Struct, struct.Struct, struct.Struct]:
        """The byte order of a new section, from its byte-order magic."""
        if bom == b"\x4d\x3c\x2b\x1a":
            end = "<"
        elif bom == b"\x1a\x2b\x3c\x4d":
            end = ">"
        else:
            raise self._error(f"bad byte-order magic {bom.hex()}")
        self.byte_order = end
        self._opt_hdr = struct.Struct(end + "HH")
        return struct.Struct(end + "II"), struct.Struct(end + "IIIII"), struct.Struct(end + "I")

    def _packet_id(self, buf: bytes, off: int, end: int) -> int | None:
        """``epb_packetid`` among the options in ``buf[off:end]`` (``None``: absent)."""
        unpack = self._opt_hdr.unpack_from
        while off + 4 <= end:
            code, length = unpack(buf, off)
            if code == OPT_ENDOFOPT:
                return None
            if code == EPB_PACKETID and length >= 8 and off + 12 <= end:
                pid: int = struct.unpack_from(self.byte_order + "Q", buf, off + 4)[0]
                return pid
            off += 4 + length + ((-length) & 3)
        return None

    def _shb(self, body: bytes) -> None:
        # body: byte-order magic (4) version (4) section length (8) options
        for code, value in _parse_options(self.byte_order, body, 16):
            if code == OPT_COMMENT:
                self.section_comments.append(value.decode("utf-8", "replace"))

    def _idb(self, body: bytes) -> None:
        end = self.byte_order
        if len(body) < 8:
            raise self._error("interface block too short")
        linktype, _res, snaplen = struct.unpack(end + "HHI", body[:8])
        name = desc = ""
        units = 1_000_000
        offset = 0
        for code, value in _parse_options(end, body, 8):
            if code == IF_NAME:
                name = value.decode("utf-8", "replace")
            elif code == IF_DESCRIPTION:
                desc = value.decode("utf-8", "replace")
            elif code == IF_TSRESOL and value:
                units = _tsresol(value)
            elif code == IF_TSOFFSET and len(value) >= 8:
                offset = struct.unpack(end + "q", value[:8])[0]
        iface = InterfaceInfo(linktype, snaplen, name, desc, units, offset)
        self.interfaces.append(iface)
        self._conv.append(_ts_converter(iface))

    def _old_packet(self, btype: int, block: bytes) -> RawPacket:
        end = self.byte_order
        body = block[8:-4]
        if btype == BT_SPB:
            if len(body) < 4 or not self.interfaces:
                raise self._error("simple packet block without interface")
            orig = struct.unpack(end + "I", body[:4])[0]
            iface = self.interfaces[0]
            cap = min(orig, iface.snaplen or orig, len(body) - 4)
            return RawPacket(0, -1, body[4:4 + cap], orig, None, block, len(block) - 4)
        if len(body) < 20:
            raise self._error("packet block too short")
        ifid, _drops, hi, lo, cap, orig = struct.unpack(end + "HHIIII", body[:20])
        if ifid >= len(self._conv):
            raise self._error(f"packet refers to unknown interface {ifid}")
        if 20 + cap > len(body):
            raise self._error("packet data overruns its block")
        mul, div, off = self._conv[ifid]
        return RawPacket(ifid, (((hi << 32) | lo) * mul) // div + off, body[20:20 + cap], orig,
                         None, block, 28 + cap + ((-cap) & 3))


def block_comments(block: bytes, opt_off: int, byte_order: str) -> list[str]:
    """The ``opt_comment`` texts of a block as read (options from ``opt_off``)."""
    if opt_off >= len(block) - 4:
        return []
    return [v.decode("utf-8", "replace") for c, v in _parse_options(byte_order, block[:-4], opt_off)
            if c == OPT_COMMENT]


def packet_options(raw: RawPacket, byte_order: str) -> Iterator[tuple[int, bytes]]:
    """The options (code, value) of a packet read by :class:`CaptureScanner`."""
    block = raw.block
    if block is None or raw.opt_off >= len(block) - 4:
        return iter(())
    return _parse_options(byte_order, block[:-4], raw.opt_off)


@dataclass
class CaptureReader:
    """Iterates over a pcap or pcapng file. ``truncated`` is set when the last block was cut."""

    path: str
    interfaces: list[InterfaceInfo] = field(default_factory=list)
    truncated: bool = False
    format: str = ""
    section_comments: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[PacketRecord]:
        scan = CaptureScanner(self.path)
        self.interfaces = scan.interfaces  # the scanner keeps it current
        self.section_comments = scan.section_comments
        for raw in scan:
            assert isinstance(raw, RawPacket)
            self.format = scan.format
            iface = scan.interfaces[raw.interface_id]
            if raw.block is None or raw.opt_off >= len(raw.block) - 4:
                yield PacketRecord(raw.interface_id, iface.linktype, max(raw.ts_ns, 0), raw.data,
                                   raw.orig_len, interface_name=iface.name)
                continue
            yield _record_with_options(raw, iface, scan.byte_order)
        self.format = scan.format
        self.truncated = scan.truncated


def _record_with_options(raw: RawPacket, iface: InterfaceInfo, end: str) -> PacketRecord:
    comments: list[str] = []
    verdicts: list[bytes] = []
    flags = drops = None
    for code, value in packet_options(raw, end):
        if code == OPT_COMMENT:
            comments.append(value.decode("utf-8", "replace"))
        elif code == EPB_FLAGS and len(value) >= 4:
            flags = struct.unpack(end + "I", value[:4])[0]
        elif code == EPB_DROPCOUNT and len(value) >= 8:
            drops = struct.unpack(end + "Q", value[:8])[0]
        elif code == EPB_VERDICT:
            verdicts.append(value)
    return PacketRecord(raw.interface_id, iface.linktype, raw.ts_ns, raw.data, raw.orig_len,
                        tuple(comments), flags, drops, tuple(verdicts), raw.packet_id, iface.name)


def _parse_options(end: str, body: bytes, off: int) -> Iterator[tuple[int, bytes]]:
    n = len(body)
    hdr = struct.Struct(end + "HH")
    while off + 4 <= n:
        code, length = hdr.unpack_from(body, off)
        off += 4
        if code == OPT_ENDOFOPT:
            return
        if off + length > n:
            raise CaptureFormatError(f"option {code} of {length} bytes overruns its block")
        yield code, body[off:off + length]
        off += length + ((-length) & 3)


def read_capture(path: str) -> Iterator[PacketRecord]:
    """Every packet of a pcap or pcapng file, in file order."""
    return iter(CaptureReader(path))
