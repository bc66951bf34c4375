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
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

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
                     queue: int | None = None) -> int:
        """Write one EPB; return its size in bytes."""
        if not 0 <= interface_id < len(self.interfaces):
            raise ValueError(f"interface id {interface_id} was not added to {self.path}")
        block = packet_block(interface_id, ts_ns, data, orig_len=orig_len,
                             snaplen=self.interfaces[interface_id].snaplen, comments=comments,
                             flags=flags, dropcount=dropcount, verdicts=verdicts,
                             packet_id=packet_id, queue=queue)
        self._write(block)
        self.packets += 1
        return len(block)

    def write_statistics(self, interface_id: int, ts_ns: int, **kw: int | str | None) -> None:
        """Write an ISB (keywords of :func:`statistics_block`)."""
        self._write(statistics_block(interface_id, ts_ns, **kw))  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd is not None:
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


@dataclass
class CaptureReader:
    """Iterates over a pcap or pcapng file. ``truncated`` is set when the last block was cut."""

    path: str
    interfaces: list[InterfaceInfo] = field(default_factory=list)
    truncated: bool = False
    format: str = ""
    section_comments: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[PacketRecord]:
        with open(self.path, "rb") as fh:
            magic = fh.read(4)
            if len(magic) < 4:
                raise CaptureFormatError(f"{self.path}: too short for a capture file")
            if magic == b"\x0a\x0d\x0d\x0a":
                self.format = "pcapng"
                yield from self._pcapng(fh, magic)
            else:
                self.format = "pcap"
                yield from self._pcap(fh, magic)

    # classic pcap
    def _pcap(self, fh: BinaryIO, magic: bytes) -> Iterator[PacketRecord]:
        m_le = struct.unpack("<I", magic)[0]
        m_be = struct.unpack(">I", magic)[0]
        known = {0xA1B2C3D4: 1000, 0xA1B23C4D: 1}
        if m_le in known:
            end, unit = "<", known[m_le]
        elif m_be in known:
            end, unit = ">", known[m_be]
        else:
            raise CaptureFormatError(
                f"{self.path}: not a pcap or pcapng file (magic {magic.hex()})")
        rest = fh.read(20)
        if len(rest) < 20:
            raise CaptureFormatError(f"{self.path}: pcap header cut short")
        _vmaj, _vmin, _tz, _sig, snaplen, linktype = struct.unpack(end + "HHiIII", rest)
        linktype &= 0x0FFFFFFF
        self.interfaces = [InterfaceInfo(linktype, snaplen, units_per_s=1_000_000_000 // unit)]
        rec = struct.Struct(end + "IIII")
        while True:
            head = fh.read(16)
            if not head:
                return
            if len(head) < 16:
                self.truncated = True
                return
            sec, frac, incl, orig = rec.unpack(head)
            if incl > 0x4000000:
                raise CaptureFormatError(f"{self.path}: record of {incl} bytes is not plausible")
            data = fh.read(incl)
            if len(data) < incl:
                self.truncated = True
                return
            yield PacketRecord(0, linktype, sec * 1_000_000_000 + frac * unit, data, orig)

    # pcapng
    def _pcapng(self, fh: BinaryIO, first: bytes) -> Iterator[PacketRecord]:
        end = "<"
        pending = first
        while True:
            head = pending + fh.read(8 - len(pending))
            pending = b""
            if not head:
                return
            if len(head) < 8:
                self.truncated = True
                return
            if head[:4] == b"\x0a\x0d\x0d\x0a":
                bom = fh.read(4)
                if len(bom) < 4:
                    self.truncated = True
                    return
                if bom == b"\x4d\x3c\x2b\x1a":
                    end = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    end = ">"
                else:
                    raise CaptureFormatError(f"{self.path}: bad byte-order magic {bom.hex()}")
                btype, total = struct.unpack(end + "II", head)
                body_len = total - 16
                if total < 28 or total % 4:
                    raise CaptureFormatError(f"{self.path}: bad section header length {total}")
                body = fh.read(body_len)
                tail = fh.read(4)
                if len(body) < body_len or len(tail) < 4:
                    self.truncated = True
                    return
                self.interfaces = []
                self._shb(end, body)
                continue
            btype, total = struct.unpack(end + "II", head)
            if total < 12 or total % 4:
                raise CaptureFormatError(f"{self.path}: block of length {total} is malformed")
            body = fh.read(total - 12)
            tail = fh.read(4)
            if len(body) < total - 12 or len(tail) < 4:
                self.truncated = True
                return
            if struct.unpack(end + "I", tail)[0] != total:
                raise CaptureFormatError(f"{self.path}: block lengths disagree ({total})")
            if btype == BT_IDB:
                self._idb(end, body)
            elif btype in (BT_EPB, BT_PB, BT_SPB):
                rec = self._packet(end, btype, body)
                if rec is not None:
                    yield rec

    def _shb(self, end: str, body: bytes) -> None:
        # body: version (4) section length (8) options
        for code, value in _parse_options(end, body, 12):
            if code == OPT_COMMENT:
                self.section_comments.append(value.decode("utf-8", "replace"))

    def _idb(self, end: str, body: bytes) -> None:
        if len(body) < 8:
            raise CaptureFormatError(f"{self.path}: interface block too short")
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
                r = value[0]
                units = 2 ** (r & 0x7F) if r & 0x80 else 10 ** r
            elif code == IF_TSOFFSET and len(value) >= 8:
                offset = struct.unpack(end + "q", value[:8])[0]
        self.interfaces.append(InterfaceInfo(linktype, snaplen, name, desc, units, offset))

    def _packet(self, end: str, btype: int, body: bytes) -> PacketRecord | None:
        if btype == BT_SPB:
            if len(body) < 4 or not self.interfaces:
                raise CaptureFormatError(f"{self.path}: simple packet block without interface")
            orig = struct.unpack(end + "I", body[:4])[0]
            iface = self.interfaces[0]
            cap = min(orig, iface.snaplen or orig, len(body) - 4)
            return PacketRecord(0, iface.linktype, 0, body[4:4 + cap], orig,
                                interface_name=iface.name)
        if len(body) < 20:
            raise CaptureFormatError(f"{self.path}: packet block too short")
        if btype == BT_EPB:
            ifid, hi, lo, cap, orig = struct.unpack(end + "IIIII", body[:20])
        else:
            ifid, _drops, hi, lo, cap, orig = struct.unpack(end + "HHIIII", body[:20])
        if ifid >= len(self.interfaces):
            raise CaptureFormatError(f"{self.path}: packet refers to unknown interface {ifid}")
        if 20 + cap > len(body):
            raise CaptureFormatError(f"{self.path}: packet data overruns its block")
        iface = self.interfaces[ifid]
        data = body[20:20 + cap]
        ticks = (hi << 32) | lo
        ts = ticks * 1_000_000_000 // iface.units_per_s + iface.tsoffset_s * 1_000_000_000
        comments: list[str] = []
        verdicts: list[bytes] = []
        flags = drops = pid = None
        for code, value in _parse_options(end, body, 20 + cap + ((-cap) & 3)):
            if code == OPT_COMMENT:
                comments.append(value.decode("utf-8", "replace"))
            elif code == EPB_FLAGS and len(value) >= 4:
                flags = struct.unpack(end + "I", value[:4])[0]
            elif code == EPB_DROPCOUNT and len(value) >= 8:
                drops = struct.unpack(end + "Q", value[:8])[0]
            elif code == EPB_PACKETID and len(value) >= 8:
                pid = struct.unpack(end + "Q", value[:8])[0]
            elif code == EPB_VERDICT:
                verdicts.append(value)
        return PacketRecord(ifid, iface.linktype, ts, data, orig, tuple(comments), flags, drops,
                            tuple(verdicts), pid, iface.name)


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
