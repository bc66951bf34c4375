"""AF_PACKET port: a veth end or a NIC, read through a TPACKET_V2 rx ring.

What this backend does for the switch (see PERF-NOTES for why):

* ``PACKET_VNET_HDR`` is on, so frames keep their pending offloads: a TCP
  stream from a namespace with default veth offloads arrives as 64 KiB GSO
  super-frames with partial checksums, and leaves the same way through
  :meth:`AfPacketPort.send_batch`. Ring slots are sized for such frames.
* The kernel strips the outer 802.1Q tag before AF_PACKET sees a frame and
  reports it in ``tp_vlan_tci``; the tag is put back inline (and the vnet
  header offsets moved by 4).
* ``PACKET_IGNORE_OUTGOING``: the port never receives what it (or the host)
  sends out of the interface. ``PACKET_QDISC_BYPASS`` (default on) skips the
  qdisc; a consequence is that other packet sockets on the same interface
  (``tcpdump -i <if>``) do not see frames the switch sends into it.
* Frames leave by a second, send-only socket (bound with protocol 0: it
  receives nothing and is in no epoll set). Every sent skb that is freed
  calls its socket's ``sk_write_space``; on the ring socket, which the engine
  waits on with epoll, that meant a wait-queue walk under a spinlock per frame
  (~0.18 µs of a ~1.3 µs send on veth: bench/PROFILE.md, "A local mirror on the
  shared machine"); on a socket nobody waits on it is a barrier and a test.
* Ring slots go back to the kernel with ONE aligned 32-bit store
  (``memoryview.cast("I")`` item assignment), never ``struct.pack_into``.
* On a veth, the interface's receive queues get RPS steering while the port
  receives in bulk (:mod:`vspan.ports.rxsteer`, ``rx_steering``): a TCP
  sender's frames, sent from two CPUs, then reach the ring in the order they
  were sent.
"""

from __future__ import annotations

import mmap
import socket
import struct
import time
from collections.abc import Sequence

from vspan.ports import constants as c
from vspan.ports import ethtool, netdev, ringio
from vspan.ports.base import Frame, Port, PortCounters, PortError, PortInfo
from vspan.ports.rxsteer import RxSteering
from vspan.ports.tx import DEFAULT_GSO_MAX_SIZE, NO_GSO, GsoSupport, send_frames
from vspan.ports.vnet import F_NEEDS_CSUM, VNET_HDR_LEN, shift

#: Default slot size: a 64 KiB GSO super-frame (plus Ethernet, a restored VLAN
#: tag, the vnet header and the tpacket header) fits; 15 slots fill a 1 MiB block
#: exactly, so the ring wastes almost nothing.
DEFAULT_FRAME_SIZE = 69904
DEFAULT_RING_FRAMES = 256
MIN_FRAME_SIZE = 256
MAX_BLOCK_SIZE = 4 << 20
#: Seconds between two reads of an interface's offload features (see ``link_up``).
FEATURES_INTERVAL = 1.0
#: Frames longer than this are sent with sendmsg([vnet, data]) (saves a copy);
#: shorter ones with send(vnet + data) (cheaper call).

_HDR = c.TPACKET2_HDR
_PAGE = mmap.PAGESIZE
_SLOT_OVERHEAD = 128  # tpacket2_hdr + sockaddr_ll + alignment + vnet header, rounded up


class RingGeometry:
    """Sizes of a TPACKET_V2 ring as the kernel wants them (``struct tpacket_req``)."""

    __slots__ = ("block_nr", "block_size", "frame_nr", "frame_size", "frames_per_block")

    def __init__(self, ring_frames: int, frame_size: int) -> None:
        if ring_frames < 1:
            raise PortError(f"ring_frames must be at least 1, not {ring_frames}")
        if frame_size < MIN_FRAME_SIZE or frame_size > MAX_BLOCK_SIZE:
            raise PortError(
                f"frame_size must be between {MIN_FRAME_SIZE} and {MAX_BLOCK_SIZE}, "
                f"not {frame_size}"
            )
        align = c.TPACKET_ALIGNMENT
        frame_size = (frame_size + align - 1) // align * align
        # smallest power-of-two block (pages) that wastes at most 1/16, else the best one
        best: tuple[float, int] | None = None
        block = _PAGE
        while block <= MAX_BLOCK_SIZE:
            if block >= frame_size:
                waste = (block % frame_size) / block
                if best is None or waste < best[0]:
                    best = (waste, block)
                if waste <= 1 / 16:
                    break
            block <<= 1
        assert best is not None  # frame_size <= MAX_BLOCK_SIZE
        self.block_size = best[1]
        self.frame_size = frame_size
        self.frames_per_block = self.block_size // frame_size
        self.block_nr = -(-ring_frames // self.frames_per_block)
        self.frame_nr = self.block_nr * self.frames_per_block

    @property
    def size(self) -> int:
        """Bytes of the whole mapping."""
        return self.block_size * self.block_nr

    def offsets(self) -> list[int]:
        """Byte offset of every slot in ring order."""
        return [
            b * self.block_size + f * self.frame_size
            for b in range(self.block_nr)
            for f in range(self.frames_per_block)
        ]

    def request(self) -> bytes:
        """The ``struct tpacket_req`` for ``PACKET_RX_RING``."""
        return c.TPACKET_REQ.pack(self.block_size, self.block_nr, self.frame_size, self.frame_nr)


class RxRing:
    """Reader of a TPACKET_V2 rx ring laid out in a shared mapping.

    The kernel fills slots and sets ``TP_STATUS_USER``; :meth:`drain` copies
    frames out, restores the stripped VLAN tag, attaches the vnet header and
    hands each slot back with one 32-bit store. Works on the ``mmap`` of a
    packet socket or, for tests, on an anonymous ``mmap`` with hand-written
    slots. (Slicing the mmap object copies straight into ``bytes``, several
    times cheaper than ``bytes(memoryview[a:b])``.)
    """

    __slots__ = ("_frame_size", "_head", "_map", "_mv", "_offsets", "_status", "losing",
                 "native")

    def __init__(self, buf: mmap.mmap, geometry: RingGeometry) -> None:
        if len(buf) < geometry.size:
            raise PortError(f"ring buffer of {len(buf)} bytes is smaller than {geometry.size}")
        self._map = buf
        self._mv = memoryview(buf)
        self._status = self._mv.cast("I")  # item assignment = one aligned 32-bit store
        self._offsets = tuple(geometry.offsets())
        self._frame_size = geometry.frame_size
        self._head = 0
        #: set when a slot carried TP_STATUS_LOSING (the kernel dropped frames)
        self.losing = False
        #: drain with the C loop (vspan.ports._ring) instead of the Python one
        self.native = ringio.enabled()

    def release(self) -> None:
        """Drop the views on the buffer (needed before an mmap can be closed)."""
        self._status.release()
        self._mv.release()

    def drain(self, max_frames: int, counters: PortCounters) -> list[Frame]:
        """Take up to ``max_frames`` ready frames out of the ring."""
        if self.native and ringio._mod is not None:
            frames: list[Frame]
            frames, self._head, nbytes, errors, losing = ringio._mod.drain(
                self._map, self._offsets, self._head, max_frames, self._frame_size, Frame)
            self.losing = self.losing or losing
            counters.rx_frames += len(frames)
            counters.rx_bytes += nbytes
            counters.rx_errors += errors
            return frames
        m = self._map
        mv = self._mv
        status_words = self._status
        offsets = self._offsets
        nslots = len(offsets)
        frame_size = self._frame_size
        head = self._head
        unpack = _HDR.unpack_from
        tag = _TAG.pack
        out: list[Frame] = []
        append = out.append
        nbytes = 0
        errors = 0
        count = 0
        while count < max_frames:
            off = offsets[head]
            word = off >> 2
            status = status_words[word]
            if not status & _USER:
                break
            _, tp_len, snaplen, mac, _, sec, nsec, tci, tpid = unpack(mv, off)
            if status & _LOSING:
                self.losing = True
            start = off + mac
            end = start + snaplen
            if snaplen != tp_len or mac < _MIN_MAC or mac + snaplen > frame_size:
                # cut to fit the slot (or a corrupt header): forwarding a piece is wrong
                errors += 1
            else:
                vnet = (
                    m[start - 10 : start] if m[start - 10] & F_NEEDS_CSUM or m[start - 9] else b""
                )
                if (status & _VLAN_VALID or tci) and snaplen >= 12:
                    if not status & _TPID_VALID or not tpid:
                        tpid = 0x8100
                    if snaplen > _JOIN_MIN:  # one big copy instead of two
                        data = b"".join(
                            (m[start : start + 12], tag(tpid, tci), mv[start + 12 : end])
                        )
                    else:
                        data = m[start : start + 12] + tag(tpid, tci) + m[start + 12 : end]
                    if vnet:
                        vnet = shift(vnet, 4)
                    nbytes += snaplen + 4
                else:
                    data = m[start:end]
                    nbytes += snaplen
                append(Frame(data, vnet, sec * 1_000_000_000 + nsec))
                count += 1
            status_words[word] = 0  # TP_STATUS_KERNEL: hand the slot back, one store
            head += 1
            if head == nslots:
                head = 0
        self._head = head
        counters.rx_frames += count
        counters.rx_bytes += nbytes
        counters.rx_errors += errors
        return out


_USER = c.TP_STATUS_USER
_LOSING = c.TP_STATUS_LOSING
_VLAN_VALID = c.TP_STATUS_VLAN_VALID
_TPID_VALID = c.TP_STATUS_VLAN_TPID_VALID
_MIN_MAC = c.TPACKET2_HDRLEN + VNET_HDR_LEN
_JOIN_MIN = 2048
_TAG = struct.Struct(">HH")


class AfPacketPort(Port):
    """A switch port on an existing interface, through an AF_PACKET socket.

    ``AfPacketPort(name, ifname)`` then :meth:`open`. The rx ring has at least
    ``ring_frames`` slots of ``frame_size`` bytes (rounded up so whole slots
    fill power-of-two blocks). The default slot holds a 64 KiB GSO frame; 256
    slots become 18 blocks of 1 MiB with 15 slots each (270 slots, 18 MiB).
    Frames larger than a slot (BIG TCP, MTU above ~69 KB) are counted as
    ``rx_errors`` and dropped.

    GSO super-frames go out whole on the bypass path only while the interface
    segments TCP itself (its offload features, read at open and again by
    :meth:`link_up`); otherwise the port sends through the qdisc, where the
    kernel segments and checksums them in software (see :mod:`vspan.ports.tx`;
    counted in ``tx_segmented``). When the interface disappears and comes
    back (a VM or container restarted), :meth:`link_up` binds the socket to the
    new device; with ``wait_for_interface`` the port also opens while the
    interface does not exist yet (link down until it appears).
    """

    def __init__(
        self,
        name: str,
        ifname: str | None = None,
        *,
        ring_frames: int = DEFAULT_RING_FRAMES,
        frame_size: int = DEFAULT_FRAME_SIZE,
        promisc: bool = True,
        qdisc_bypass: bool = True,
        ignore_outgoing: bool = True,
        bring_up: bool = True,
        wait_for_interface: bool = False,
        kind: str = "afpacket",
        rx_steering: str = "auto",
    ) -> None:
        self.name = name
        self.ifname = ifname or name
        self.counters = PortCounters()
        self.geometry = RingGeometry(ring_frames, frame_size)
        self._promisc = promisc
        self._qdisc_bypass = qdisc_bypass
        self._bypass_now = False  # PACKET_QDISC_BYPASS as set on the socket now
        self._ignore_outgoing = ignore_outgoing
        self._bring_up = bring_up
        self._wait = wait_for_interface
        self._kind = kind
        self._sock: socket.socket | None = None
        self._tx: socket.socket | None = None  # send-only twin of _sock (see the module doc)
        self._map: mmap.mmap | None = None
        self._ring: RxRing | None = None
        self._info: PortInfo | None = None
        self._index = 0  # ifindex the socket is bound to (0: not bound)
        self._feature_names: tuple[str, ...] | None = None
        self._features_read = 0.0
        self._link = False  # link state at the last link_up()
        #: GSO frames the interface takes whole (the rest are cut in software)
        self.gso: GsoSupport = NO_GSO
        #: errno of the last failed send (debugging aid)
        self.last_tx_errno: int | None = None
        self._native_tx = ringio.enabled()  # send runs of frames with sendmmsg (C)
        self._steering = RxSteering(rx_steering)  # RPS on a veth's rx queues (keeps order)

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        """Create the socket and the ring and attach to the interface."""
        if self._sock is not None:
            return
        try:
            index = netdev.ifindex(self.ifname)
        except PortError:
            if not self._wait:
                raise
            index = 0
        # protocol 0: nothing is queued before the ring exists and bind() says ETH_P_ALL
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except OSError as exc:
            raise PortError(f"port {self.name}: cannot open AF_PACKET socket: {exc}") from exc
        try:
            self._tx = self._open_tx()
            self._setup(sock)
            if index:
                self._attach(sock, index)
        except BaseException:
            self._sock = None
            self._teardown(sock)
            raise
        self._sock = sock

    def _open_tx(self) -> socket.socket:
        """The send-only socket: protocol 0 (no receive hook), virtio-net headers."""
        try:
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except OSError as exc:
            raise PortError(f"port {self.name}: cannot open AF_PACKET socket: {exc}") from exc
        try:
            self._opt(tx, c.PACKET_VNET_HDR, 1, "PACKET_VNET_HDR (send socket)")
        except BaseException:
            tx.close()
            raise
        tx.setblocking(False)
        return tx

    def _opt(self, sock: socket.socket, option: int, value: int | bytes, what: str) -> None:
        try:
            sock.setsockopt(c.SOL_PACKET, option, value)
        except OSError as exc:
            raise PortError(
                f"port {self.name} ({self.ifname}): cannot set {what}: {exc.strerror}"
            ) from exc

    def _setup(self, sock: socket.socket) -> None:
        opt = self._opt
        opt(sock, c.PACKET_VNET_HDR, 1, "PACKET_VNET_HDR")  # must precede the ring
        opt(sock, c.PACKET_VERSION, c.TPACKET_V2, "TPACKET_V2")
        opt(sock, c.PACKET_RX_RING, self.geometry.request(), "a TPACKET_V2 rx ring")
        if self._ignore_outgoing:
            opt(sock, c.PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING")
        try:
            self._map = mmap.mmap(
                sock.fileno(),
                self.geometry.size,
                mmap.MAP_SHARED,
                mmap.PROT_READ | mmap.PROT_WRITE,
            )
        except OSError as exc:
            raise PortError(f"port {self.name}: cannot map the rx ring: {exc}") from exc
        self._ring = RxRing(self._map, self.geometry)
        sock.setblocking(False)

    def _attach(self, sock: socket.socket, index: int) -> None:
        """Bind to interface ``index`` (again, after it was re-created): up, promisc, features."""
        if self._bring_up:
            netdev.set_up(self.ifname)
        if self._promisc:
            mreq = c.PACKET_MREQ.pack(index, c.PACKET_MR_PROMISC, 0, b"")
            self._opt(sock, c.PACKET_ADD_MEMBERSHIP, mreq, "promiscuous mode")
        try:
            sock.bind((self.ifname, c.ETH_P_ALL))
            if self._tx is not None:
                # protocol 0: sends through the device, no receive hook (the kernel
                # takes the frame's protocol from its Ethernet header, as for ETH_P_ALL)
                self._tx.bind((self.ifname, 0))
        except OSError as exc:
            raise PortError(
                f"port {self.name}: cannot bind to interface {self.ifname!r}: {exc.strerror}"
            ) from exc
        self._index = index
        self._feature_names = None  # a new device may be of another kind
        self._sock = sock
        self.refresh_offloads()
        self._steering.attach(self.ifname)
        self._info = PortInfo(
            kind=self._kind,
            interface=self.ifname,
            mac=netdev.hwaddr(self.ifname),
            mtu=netdev.mtu(self.ifname),
            vnet_hdr=True,
            extra={
                "ifindex": str(index),
                "ring_frames": str(self.geometry.frame_nr),
                "frame_size": str(self.geometry.frame_size),
            },
        )

    def refresh_offloads(self) -> GsoSupport:
        """Read which GSO frames the interface takes whole (``ethtool -k``); keep and return it.

        Turns ``PACKET_QDISC_BYPASS`` on (when asked for) while the interface
        takes TCP GSO frames, off otherwise. An interface whose features cannot
        be read is treated as taking none.
        """
        try:
            if self._feature_names is None:
                self._feature_names = ethtool.feature_names(self.ifname)
            active = ethtool.active_features(self.ifname, self._feature_names)
        except (OSError, PortError):
            self._feature_names = None
            self.gso = NO_GSO
        else:
            size = netdev.read_sysfs(self.ifname, "gso_max_size")
            self.gso = GsoSupport.from_features(
                active, int(size) if size and size.isdigit() else DEFAULT_GSO_MAX_SIZE)
        self._features_read = time.monotonic()
        self._set_bypass(self._qdisc_bypass and self.gso.takes_tcp())
        return self.gso

    def _set_bypass(self, on: bool) -> None:
        sock = self._tx
        if sock is None or on == self._bypass_now:
            return
        try:
            sock.setsockopt(c.SOL_PACKET, c.PACKET_QDISC_BYPASS, int(on))
        except OSError:
            return  # keep what is set; frames the device refuses are cut in software
        self._bypass_now = on

    def _teardown(self, sock: socket.socket | None) -> None:
        self._steering.restore()
        if self._ring is not None:
            self._ring.release()
            self._ring = None
        if self._map is not None:
            self._map.close()
            self._map = None
        if sock is not None:
            sock.close()
        tx, self._tx = self._tx, None
        if tx is not None:
            tx.close()
        self._index = 0
        self._bypass_now = False

    def close(self) -> None:
        """Unmap the ring and close the socket; safe to call twice."""
        sock, self._sock = self._sock, None
        self._teardown(sock)

    # -- datapath ------------------------------------------------------------

    def fileno(self) -> int:
        """The socket; readable (POLLIN) when a ring slot is ready."""
        if self._sock is None:
            raise PortError(f"port {self.name} is not open")
        return self._sock.fileno()

    def recv_batch(self, max_frames: int = 64) -> list[Frame]:
        """Drain up to ``max_frames`` frames from the rx ring (never blocks)."""
        ring = self._ring
        if ring is None:
            return []
        frames = ring.drain(max_frames, self.counters)
        if ring.losing:
            ring.losing = False
            self.refresh_drops()
        if not frames and self._sock is not None:
            # woken without frames: clear a pending socket error (ENETDOWN after the
            # link went down) so poll/epoll does not report it forever
            self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        return frames

    def refresh_drops(self) -> int:
        """Add the kernel's ring-full drops since the last call to ``rx_dropped``."""
        if self._sock is None:
            return 0
        try:
            raw = self._sock.getsockopt(c.SOL_PACKET, c.PACKET_STATISTICS, c.TPACKET_STATS.size)
        except OSError:
            return 0
        _, drops = c.TPACKET_STATS.unpack(raw)
        self.counters.rx_dropped += drops
        return int(drops)

    def send_batch(self, frames: Sequence[Frame], python_first: bool = False) -> int:
        """Send each frame with its vnet header (zeros when plain); count failures.

        GSO frames the interface cannot segment are segmented in software (by
        the kernel on the qdisc path, else here); on the bypass path a GSO
        frame the kernel refuses (``ENOBUFS``: the features changed since they
        were read) is cut here and sent again.
        """
        sock = self._tx
        if sock is None or not self._index:
            self.counters.tx_errors += len(frames)
            return 0
        bypass = self._bypass_now
        return send_frames(frames, sock.send, sock.sendmsg, self.counters, self._tx_error,
                           self.gso, kernel_gso=not bypass, retry_in_software=bypass,
                           fd=sock.fileno() if self._native_tx else None,
                           python_first=python_first)

    def send_rest(self, frames: Sequence[Frame]) -> int:
        """:meth:`send_batch` for the frames the C send loop (``_ring.send``, called by the
        engine's native wake path with this port's ``_sock``, ``_index``, ``_native_tx``,
        ``_bypass_now`` and ``gso``) stopped at: ``frames[0]`` takes the Python loop first."""
        return self.send_batch(frames, python_first=True)

    def _tx_error(self, exc: OSError) -> None:
        # ENOBUFS/EAGAIN (queue full), EMSGSIZE (too big, not GSO),
        # EINVAL (bad vnet header), ENETDOWN/ENXIO (link gone)
        self.last_tx_errno = exc.errno

    # -- state ---------------------------------------------------------------

    def link_up(self) -> bool:
        """Whether the interface is up with carrier (``operstate``).

        Also follows the device: binds to it again when it was re-created
        (or appears for the first time) and re-reads its offload features
        when the link state changes and at most once every
        :data:`FEATURES_INTERVAL` seconds; the engine calls this once a second.
        """
        sock = self._sock
        if sock is None:
            return False
        try:
            index = socket.if_nametoindex(self.ifname)
        except OSError:
            index = 0
        if index != self._index:
            self._index = 0
            if not index:
                return False
            try:
                self._attach(sock, index)
            except PortError:
                self._index = 0
                return False
        up = bool(netdev.link_state(self.ifname))
        now = time.monotonic()
        if up != self._link or now - self._features_read >= FEATURES_INTERVAL:
            self.refresh_offloads()  # a VM attaching to a TAP sets its offloads then
        self._steering.update(self.counters.rx_bytes, now)
        self._link = up
        return up

    def info(self) -> PortInfo:
        """Interface name, MAC, MTU, ring geometry and the GSO frames it takes whole."""
        if self._info is None:
            return PortInfo(kind=self._kind, interface=self.ifname, vnet_hdr=True)
        self._info.extra["gso"] = self.gso.describe()
        self._info.extra["qdisc_bypass"] = str(self._bypass_now).lower()
        self._info.extra["rx_steering"] = self._steering.reason
        return self._info
