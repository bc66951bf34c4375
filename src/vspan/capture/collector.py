"""ERSPAN / GRE-TEB collector: decapsulate remote mirror traffic into pcapng.

* :func:`decapsulate_gre` / :func:`decapsulate_ip` turn one received packet
  into a :class:`Decapsulated` (sender, kind, session, sequence number,
  direction, original timestamp, the mirrored frame). Pure functions.
* :class:`Collector` keeps per-tunnel sequence state, gives every (sender,
  kind, session, direction) its own pcapng interface, and writes each frame
  with the original timestamp where Type III carries one, the direction in
  ``epb_flags``, and comments for truncation and sequence gaps (a gap is loss
  on the way: it is counted and written as ``epb_dropcount`` too).
* :func:`open_listener` / :func:`run_live` receive on a raw ``IPPROTO_GRE``
  socket; :func:`run_file` decodes a pcap/pcapng of raw ERSPAN traffic.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from vspan.capture.filter import PacketFilter
from vspan.capture.pcapng import (
    DIR_INBOUND,
    DIR_OUTBOUND,
    DIR_UNKNOWN,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    CaptureReader,
    Interface,
    PcapngWriter,
    RotatingPcapngWriter,
    epb_flags,
)
from vspan.packet.errors import PacketError, need
from vspan.packet.erspan import (
    DIR_EGRESS,
    EN_8021Q,
    ERSPAN_VERSION_II,
    ERSPAN_VERSION_III,
    GRA_100NS,
    GRA_100US,
    GRA_IEEE1588,
    PLATF_PORT_UPPER_TS,
    PLATF_SWITCH_PORT_SECONDS,
    PLATF_SWITCH_PORT_SECONDS_6,
    ErspanIII,
)
from vspan.packet.gre import (
    GRE,
    GRE_FLAG_C,
    GRE_FLAG_K,
    GRE_FLAG_R,
    GRE_FLAG_S,
    GRE_FLAG_SSR,
    GRE_PROTO_ERSPAN2,
    GRE_PROTO_ERSPAN3,
    GRE_PROTO_TEB,
    GRE_VERSION_MASK,
    IPPROTO_GRE,
)

KIND_GRE = "gre"
KIND_ERSPAN1 = "erspan1"  # Type I: 0x88BE without sequence number, no ERSPAN header
KIND_ERSPAN2 = "erspan2"
KIND_ERSPAN3 = "erspan3"
_KIND_TEXT = {KIND_GRE: "GRE-TEB", KIND_ERSPAN1: "ERSPAN Type I",
              KIND_ERSPAN2: "ERSPAN Type II", KIND_ERSPAN3: "ERSPAN Type III"}

_NS = 1_000_000_000
_SEQ_MOD = 1 << 32
_REORDER_WINDOW = 4096  # a sequence number this far behind counts as late, further as a restart


class Decapsulated(NamedTuple):
    """One mirrored frame taken out of its GRE/ERSPAN envelope (a tuple: cheap to build)."""

    sender: str
    kind: str
    session_id: int | None  # ERSPAN session id; the GRE key for GRE-TEB (None: no key)
    seq: int | None
    frame: bytes
    truncated: bool = False
    direction: int | None = None  # ERSPAN Type III D bit: 0 ingress, 1 egress
    ts_ns: int | None = None  # original time (Type III); None: use the receive time
    vlan: int = 0  # ERSPAN header VLAN field
    cos: int = 0
    en: int | None = None  # Type II encapsulation bits
    hw_id: int | None = None  # Type III hardware id
    port_index: int | None = None  # Type II port index
    timestamp: int | None = None  # Type III raw timestamp field
    granularity: int | None = None  # Type III Gra bits


def _time3(ts: int, gra: int, platf_id: int, plat_low: int, ref_ns: int) -> int | None:
    """Absolute time of a Type III timestamp (see :func:`erspan3_time`); platf_id -1: none."""
    has_seconds = platf_id in (PLATF_SWITCH_PORT_SECONDS, PLATF_SWITCH_PORT_SECONDS_6)
    if gra == GRA_IEEE1588:
        if ts >= _NS:
            return None
        if has_seconds:
            return plat_low * _NS + ts
        base = ref_ns // _NS
        best = min((base - 1, base, base + 1), key=lambda s: abs(s * _NS + ts - ref_ns))
        return best * _NS + ts
    if gra != GRA_100US and gra != GRA_100NS:
        return None
    tick = 100_000 if gra == GRA_100US else 100
    if platf_id == PLATF_PORT_UPPER_TS or platf_id == 7:
        return ((plat_low << 32) | ts) * tick
    if has_seconds:
        ref_ns = plat_low * _NS + _NS // 2
    ref = ref_ns // tick
    d = (ts - ref) % _SEQ_MOD
    if d >= _SEQ_MOD // 2:
        d -= _SEQ_MOD
    return (ref + d) * tick


def erspan3_time(hdr: ErspanIII, ref_ns: int) -> int | None:
    """The absolute time (ns since the epoch) a Type III header says, or ``None``.

    The 32-bit timestamp wraps (every ~5 days at 100 µs); the epoch is taken
    from a platform subheader when it carries the seconds (ids 5, 6) or the
    upper timestamp bits (ids 3, 7), else the value nearest ``ref_ns`` (the
    receive time) is chosen. IEEE 1588 granularity: nanoseconds within the
    second. User-defined granularity: ``None``.
    """
    plat = hdr.platform
    return _time3(hdr.timestamp, hdr.granularity, -1 if plat is None else plat.platf_id,
                  0 if plat is None else plat.low, ref_ns)


_HH = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_E2 = struct.Struct("!HHI")
_E3 = struct.Struct("!HHIHH")
_PL = struct.Struct("!II")
_GRE_BAD = GRE_FLAG_R | GRE_FLAG_SSR | GRE_VERSION_MASK


def decapsulate_gre(sender: str, data: bytes | memoryview, offset: int = 0,
                    recv_ts_ns: int = 0) -> Decapsulated | None:
    """Decode the GRE packet at ``offset`` of ``data`` (hand-written: this is the hot path).

    ``None`` when it is GRE but carries no mirrored Ethernet frame (another
    protocol); :class:`PacketError` when it is malformed.
    """
    n = len(data)
    need("gre", n, offset, 4)
    flags, proto = _HH.unpack_from(data, offset)
    if flags & _GRE_BAD:
        GRE.parse(data, offset)  # raises the precise error
    off = offset + 4 + (4 if flags & GRE_FLAG_C else 0)
    key = seq = None
    if flags & GRE_FLAG_K:
        need("gre", n, off, 4)
        key = _U32.unpack_from(data, off)[0]
        off += 4
    if flags & GRE_FLAG_S:
        need("gre", n, off, 4)
        seq = _U32.unpack_from(data, off)[0]
        off += 4
    need("gre", n, off, 0)
    if proto == GRE_PROTO_TEB:
        return Decapsulated(sender, KIND_GRE, key, seq, bytes(data[off:]))
    if proto == GRE_PROTO_ERSPAN2:
        if seq is None:  # Type I
            return Decapsulated(sender, KIND_ERSPAN1, None, None, bytes(data[off:]))
        need("erspan2", n, off, 8)
        w0, w1, w2 = _E2.unpack_from(data, off)
        if w0 >> 12 != ERSPAN_VERSION_II:
            raise PacketError("erspan2", f"version field is {w0 >> 12}, expected 1 (Type II)")
        return Decapsulated(sender, KIND_ERSPAN2, w1 & 0x3FF, seq, bytes(data[off + 8:]),
                            truncated=bool(w1 & 0x400), vlan=w0 & 0xFFF, cos=w1 >> 13,
                            en=(w1 >> 11) & 3, port_index=w2 & 0xFFFFF)
    if proto == GRE_PROTO_ERSPAN3:
        need("erspan3", n, off, 12)
        w0, w1, ts, _sgt, w4 = _E3.unpack_from(data, off)
        if w0 >> 12 != ERSPAN_VERSION_III:
            raise PacketError("erspan3", f"version field is {w0 >> 12}, expected 2 (Type III)")
        off += 12
        platf_id = -1
        low = 0
        if w4 & 1:
            need("erspan3-platform", n, off, 8)
            p0, low = _PL.unpack_from(data, off)
            platf_id = p0 >> 26
            off += 8
        gra = (w4 >> 1) & 3
        return Decapsulated(sender, KIND_ERSPAN3, w1 & 0x3FF, seq, bytes(data[off:]),
                            truncated=bool(w1 & 0x400), direction=(w4 >> 3) & 1,
                            ts_ns=_time3(ts, gra, platf_id, low, recv_ts_ns),
                            vlan=w0 & 0xFFF, cos=w1 >> 13, hw_id=(w4 >> 4) & 0x3F,
                            timestamp=ts, granularity=gra)
    return None


def decapsulate_ip(packet: bytes | memoryview, recv_ts_ns: int = 0) -> Decapsulated | None:
    """Decode an IPv4 or IPv6 packet carrying GRE (``None``: not GRE / not a mirror)."""
    n = len(packet)
    if n < 1:
        raise PacketError("ip", "empty packet")
    version = packet[0] >> 4
    if version == 4:
        if n < 20:
            raise PacketError("ipv4", f"truncated: {n} bytes")
        ihl = (packet[0] & 0xF) * 4
        if ihl < 20 or n < ihl:
            raise PacketError("ipv4", f"bad header length {ihl}")
        if packet[9] != IPPROTO_GRE:
            return None
        if (struct.unpack_from("!H", packet, 6)[0] & 0x3FFF) != 0:
            raise PacketError("ipv4", "fragment (reassembly is not done here)")
        total = struct.unpack_from("!H", packet, 2)[0]
        end = min(n, total) if total >= ihl else n
        sender = socket.inet_ntop(socket.AF_INET, packet[12:16])
        return decapsulate_gre(sender, packet[:end], ihl, recv_ts_ns)
    if version == 6:
        if n < 40:
            raise PacketError("ipv6", f"truncated: {n} bytes")
        nh = packet[6]
        off = 40
        while nh in (0, 43, 60):  # hop-by-hop, routing, destination options
            if n < off + 8:
                raise PacketError("ipv6", "truncated extension header")
            nh, off = packet[off], off + 8 + packet[off + 1] * 8
        if nh != IPPROTO_GRE:
            return None
        plen = struct.unpack_from("!H", packet, 4)[0]
        end = min(n, 40 + plen) if plen else n
        sender = socket.inet_ntop(socket.AF_INET6, packet[8:24])
        return decapsulate_gre(sender, packet[:end], off, recv_ts_ns)
    raise PacketError("ip", f"IP version {version}")


def ip_payload_of(linktype: int, data: bytes) -> bytes | None:
    """The IP packet inside a captured link-layer frame (``None`` when not IP)."""
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None
        et = (data[12] << 8) | data[13]
        off = 14
        while et in (0x8100, 0x88A8, 0x9100) and len(data) >= off + 4:
            et = (data[off + 2] << 8) | data[off + 3]
            off += 4
        return data[off:] if et in (0x0800, 0x86DD) else None
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return data
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return data[4:] if len(data) > 4 else None
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            return None
        et = (data[14] << 8) | data[15]
        return data[16:] if et in (0x0800, 0x86DD) else None
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            return None
        et = (data[0] << 8) | data[1]
        return data[20:] if et in (0x0800, 0x86DD) else None
    return None


def header_length(frame: bytes) -> int | None:
    """The length of a cut Ethernet frame as its own IP header states it (behind VLAN tags).

    IPv4 total length or IPv6 payload length, plus the link and IPv6 headers.
    ``None`` when the frame is not IP, the header is cut, an IPv6 jumbogram says
    0, or the headers claim no more than what arrived (the rest is unknown).
    """
    ip = ip_payload_of(LINKTYPE_ETHERNET, frame)
    if ip is None or len(ip) < 20:
        return None
    l2 = len(frame) - len(ip)
    version = ip[0] >> 4
    if version == 4:
        total = l2 + ((ip[2] << 8) | ip[3])
    elif version == 6 and len(ip) >= 40 and (ip[4] or ip[5]):
        total = l2 + 40 + ((ip[4] << 8) | ip[5])
    else:
        return None
    return total if total > len(frame) else None


@dataclass(slots=True)
class CollectorStats:
    """What the collector received and wrote."""

    received: int = 0
    written: int = 0
    ignored: int = 0  # GRE not carrying mirrored Ethernet, or not GRE at all (-r)
    malformed: int = 0
    filtered: int = 0  # other sessions (--session) or not matching --filter
    lost: int = 0  # sum of sequence gaps
    truncated: int = 0  # frames with the ERSPAN T bit
    out_of_order: int = 0
    restarts: int = 0
    per_interface: dict[str, int] = field(default_factory=dict)
    last_error: str = ""


Sink = PcapngWriter | RotatingPcapngWriter


class Collector:
    """Turns decapsulated mirror traffic into pcapng records (one interface per tunnel)."""

    def __init__(self, sink: Sink, *, sessions: frozenset[int] | None = None,
                 packet_filter: PacketFilter | None = None, snaplen: int = 262144) -> None:
        self.sink = sink
        self.sessions = sessions
        self.packet_filter = packet_filter
        self.snaplen = snaplen
        self.stats = CollectorStats()
        self._ifaces: dict[tuple[str, str, int | None, int | None], int] = {}
        self._iface_names: list[str] = []
        self._next_seq: dict[tuple[str, str, int | None], int] = {}
        self._notes: list[str] = []  # comments for the next frame written

    def note(self, text: str) -> None:
        """Comment the next frame written with ``text`` (another thread may call this)."""
        self._notes.append(text)

    # ---- input -------------------------------------------------------------------------

    def handle_ip(self, packet: bytes | memoryview, recv_ts_ns: int) -> bool:
        """Process one received IP packet; ``True`` when a frame was written."""
        self.stats.received += 1
        try:
            d = decapsulate_ip(packet, recv_ts_ns)
        except PacketError as err:
            self.stats.malformed += 1
            self.stats.last_error = str(err)
            return False
        return self.handle(d, recv_ts_ns)

    def handle_gre(self, sender: str, gre_packet: bytes | memoryview, recv_ts_ns: int) -> bool:
        """Process one GRE packet (no IP header: IPv6 raw sockets deliver these)."""
        self.stats.received += 1
        try:
            d = decapsulate_gre(sender, gre_packet, 0, recv_ts_ns)
        except PacketError as err:
            self.stats.malformed += 1
            self.stats.last_error = str(err)
            return False
        return self.handle(d, recv_ts_ns)

    def handle(self, d: Decapsulated | None, recv_ts_ns: int) -> bool:
        """Write one decapsulated frame (after session and filter checks)."""
        st = self.stats
        if d is None:
            st.ignored += 1
            return False
        if self.sessions is not None and d.session_id not in self.sessions:
            st.filtered += 1
            return False
        comments: list[str] = []
        dropcount = self._sequence(d, comments)
        if self.packet_filter is not None and not self.packet_filter.match(d.frame):
            st.filtered += 1
            return False
        orig_len = None
        if d.truncated:
            st.truncated += 1
            orig_len = header_length(d.frame)
            if orig_len is None:
                comments.append("truncated by the sender (ERSPAN T bit): original length unknown")
            else:
                comments.append(f"truncated by the sender (ERSPAN T bit): original length "
                                f"{orig_len} from the frame's IP header")
        if d.vlan and vlan_not_in_frame(d):
            comments.append(f"VLAN {d.vlan} (priority {d.cos}) from the ERSPAN header, "
                            "not in the frame")
        if d.timestamp is not None and d.ts_ns is None:
            comments.append(f"ERSPAN timestamp {d.timestamp} (granularity {d.granularity}) "
                            "not usable: receive time written")
        if self._notes:
            notes, self._notes = self._notes, []
            comments[:0] = notes
        ifid = self._interface(d)
        direction = DIR_UNKNOWN
        if d.direction is not None:
            direction = DIR_OUTBOUND if d.direction == DIR_EGRESS else DIR_INBOUND
        self.sink.write_packet(
            ifid, d.frame, d.ts_ns if d.ts_ns is not None else recv_ts_ns,
            orig_len=orig_len, comments=comments,
            flags=epb_flags(direction) if d.direction is not None else None,
            dropcount=dropcount,
        )
        st.written += 1
        name = self._iface_names[ifid]
        st.per_interface[name] = st.per_interface.get(name, 0) + 1
        return True

    # ---- state -------------------------------------------------------------------------

    def _sequence(self, d: Decapsulated, comments: list[str]) -> int | None:
        """Track the tunnel's GRE sequence; return the gap before this packet (if any)."""
        if d.seq is None:
            return None
        key = (d.sender, d.kind, d.session_id)
        expected = self._next_seq.get(key)
        seq = d.seq
        st = self.stats
        if expected is None or seq == expected:
            self._next_seq[key] = (seq + 1) % _SEQ_MOD
            return None
        ahead = (seq - expected) % _SEQ_MOD
        if ahead < _SEQ_MOD // 2:
            st.lost += ahead
            comments.append(f"sequence gap: {ahead} packet{'s' if ahead != 1 else ''} lost "
                            f"before this one (expected seq {expected}, got {seq})")
            self._next_seq[key] = (seq + 1) % _SEQ_MOD
            return ahead
        behind = (expected - seq) % _SEQ_MOD
        if behind <= _REORDER_WINDOW:
            st.out_of_order += 1
            comments.append(f"out of order: seq {seq} arrived after seq {expected - 1}")
            return None
        st.restarts += 1
        comments.append(f"sequence restarted: expected seq {expected}, got {seq}")
        self._next_seq[key] = (seq + 1) % _SEQ_MOD
        return None

    def _interface(self, d: Decapsulated) -> int:
        key = (d.sender, d.kind, d.session_id, d.direction)
        ifid = self._ifaces.get(key)
        if ifid is not None:
            return ifid
        if d.kind == KIND_GRE:
            name = f"gre-key{d.session_id}@{d.sender}" if d.session_id is not None else (
                f"gre@{d.sender}")
        elif d.session_id is None:
            name = f"{d.kind}@{d.sender}"
        else:
            name = f"{d.kind}-{d.session_id}"
            if d.direction is not None:
                name += "-egress" if d.direction == DIR_EGRESS else "-ingress"
            name += f"@{d.sender}"
        desc = f"{_KIND_TEXT[d.kind]} from {d.sender}"
        if d.session_id is not None:
            desc += f", {'key' if d.kind == KIND_GRE else 'session'} {d.session_id}"
        if d.direction is not None:
            desc += ", egress" if d.direction == DIR_EGRESS else ", ingress"
        ifid = self.sink.add_interface(Interface(name, desc, LINKTYPE_ETHERNET, self.snaplen))
        self._ifaces[key] = ifid
        self._iface_names.append(name)
        return ifid

    @property
    def interface_names(self) -> list[str]:
        """The pcapng interface names, by id."""
        return list(self._iface_names)

    def close(self) -> None:
        """Close the output."""
        self.sink.close()


def vlan_not_in_frame(d: Decapsulated) -> bool:
    """Whether the header's VLAN is one the frame does not carry (tag removed before mirroring)."""
    if d.en == EN_8021Q:
        return True
    frame = d.frame
    return not (len(frame) >= 14 and ((frame[12] << 8) | frame[13]) in (0x8100, 0x88A8, 0x9100))


# ---- live reception ----------------------------------------------------------------------


def open_listener(listen: str, rcvbuf: int = 8 << 20) -> socket.socket:
    """A non-blocking raw ``IPPROTO_GRE`` socket bound to ``listen`` (an IPv4/IPv6 address)."""
    addr = ipaddress.ip_address(listen)
    fam = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    sock = socket.socket(fam, socket.SOCK_RAW, IPPROTO_GRE)
    try:
        for opt in (33, socket.SO_RCVBUF):  # 33 = SO_RCVBUFFORCE (root), then the plain one
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, rcvbuf)
                break
            except OSError:
                continue
        sock.bind((listen, 0))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def kernel_drops(sock: socket.socket) -> int | None:
    """Packets the kernel dropped for ``sock`` (receive buffer full), from /proc/net/raw."""
    try:
        inode = os.fstat(sock.fileno()).st_ino
    except OSError:
        return None
    path = "/proc/net/raw" if sock.family == socket.AF_INET else "/proc/net/raw6"
    try:
        with open(path, encoding="ascii") as fh:
            lines = fh.read().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        f = line.split()
        if len(f) >= 12 and f[9] == str(inode):
            try:
                return int(f[-1])
            except ValueError:
                return None
    return None


@dataclass(slots=True)
class RunLimits:
    """When :func:`run_live` stops (all optional)."""

    count: int | None = None  # frames written
    duration: float | None = None  # seconds
    should_stop: Callable[[], bool] = lambda: False


def run_live(sock: socket.socket, collector: Collector, limits: RunLimits,
             on_tick: Callable[[], None] | None = None, tick_interval: float = 1.0,
             batch: int = 512) -> None:
    """Receive until a limit is reached; call ``on_tick`` about every ``tick_interval``."""
    v4 = sock.family == socket.AF_INET
    buf = bytearray(65536)
    mv = memoryview(buf)
    recv = sock.recvfrom_into
    recv4 = sock.recv_into
    clock = time.time_ns
    start = time.monotonic()
    next_tick = start + tick_interval
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    sink = collector.sink
    rotating = isinstance(sink, RotatingPcapngWriter)
    count = limits.count
    deadline = None if limits.duration is None else start + limits.duration
    st = collector.stats
    while True:
        if limits.should_stop() or (count is not None and st.written >= count):
            return
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return
        timeout = min(next_tick, deadline if deadline is not None else next_tick) - now
        poller.poll(max(int(timeout * 1000), 0) + 1)
        for _ in range(batch):
            try:
                # IPv4 raw sockets deliver the IP header (the sender is in it); IPv6 ones do not
                if v4:
                    n = recv4(buf)
                    addr = None
                else:
                    n, addr = recv(buf)
            except (BlockingIOError, InterruptedError):
                break
            ts = clock()
            if addr is None:
                collector.handle_ip(mv[:n], ts)  # frames are copied out; the buffer is reused
            else:
                collector.handle_gre(addr[0], mv[:n], ts)
            if count is not None and st.written >= count:
                return
        now = time.monotonic()
        if now >= next_tick:
            next_tick = now + tick_interval
            if rotating:
                assert isinstance(sink, RotatingPcapngWriter)
                sink.maybe_rotate()
            if on_tick is not None:
                on_tick()


def run_file(path: str, collector: Collector, limits: RunLimits | None = None) -> CaptureReader:
    """Decode every GRE/ERSPAN packet of a pcap/pcapng file (times from the file)."""
    reader = CaptureReader(path)
    count = limits.count if limits is not None else None
    for rec in reader:
        if limits is not None and limits.should_stop():
            break
        ip = ip_payload_of(rec.linktype, rec.data)
        if ip is None:
            collector.stats.received += 1
            collector.stats.ignored += 1
            continue
        collector.handle_ip(ip, rec.ts_ns)
        if count is not None and collector.stats.written >= count:
            break
    return reader
