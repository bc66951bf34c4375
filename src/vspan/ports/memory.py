"""Memory port for tests: frames are injected and taken from Python lists.

``inject()`` queues frames the port will "receive"; ``take()`` returns what
the switch sent out of it. ``fileno()`` is an eventfd that is readable while
injected frames wait, so an event loop (epoll) can wait on a memory port like
on any other. By default the port behaves like a NIC without offloads: frames
the switch sends with a vnet header are finalized (checksum completed, GSO
cut into segments, see :mod:`vspan.ports.offload`), so ``take()`` returns
wire frames. ``vnet_hdr=True`` keeps frames exactly as sent instead; with
``gso`` as well it models a device with those offloads: GSO frames it does not
take are cut in software by the same send loop the AF_PACKET port uses.

Thread safety: ``inject`` and ``take`` may be called from another thread than
the one calling ``recv_batch``/``send_batch``.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable, Sequence

from vspan.ports.base import Frame, Port, PortCounters, PortError, PortInfo
from vspan.ports.offload import OffloadError, finalize
from vspan.ports.tx import GsoSupport, send_frames
from vspan.ports.vnet import is_plain


class MemoryPort(Port):
    """A port backed by two in-memory queues (tests, simulations)."""

    def __init__(
        self,
        name: str,
        *,
        mac: bytes = b"",
        mtu: int = 1500,
        vnet_hdr: bool = False,
        gso: GsoSupport | None = None,
    ) -> None:
        self.name = name
        self.counters = PortCounters()
        self.mac = mac
        self.mtu = mtu
        self.vnet_hdr = vnet_hdr
        #: with ``vnet_hdr``: the GSO frames the modelled device takes whole
        self.gso = gso
        self._rx: deque[Frame] = deque()
        self._tx: list[Frame] = []
        self._lock = threading.Lock()
        self._fd = -1
        self._link = True

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        """Create the eventfd that signals waiting frames."""
        if self._fd >= 0:
            return
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        if self._rx:
            self._signal()

    def close(self) -> None:
        """Close the eventfd; queued frames stay (safe to call twice)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def _signal(self) -> None:
        fd = self._fd
        if fd >= 0:
            try:
                os.eventfd_write(fd, 1)
            except OSError:  # closed concurrently or counter saturated: nothing to do
                pass

    # -- test side -----------------------------------------------------------

    def inject(self, *frames: Frame | bytes | bytearray) -> int:
        """Queue frames as if they arrived on the wire; return how many were queued.

        While the link is down, injected frames are lost (counted as rx_dropped).
        """
        if not self._link:
            self.counters.rx_dropped += len(frames)
            return 0
        for f in frames:
            self._rx.append(f if isinstance(f, Frame) else Frame(bytes(f)))
        if frames:
            self._signal()
        return len(frames)

    def inject_many(self, frames: Iterable[Frame | bytes | bytearray]) -> int:
        """:meth:`inject` for an iterable."""
        return self.inject(*frames)

    def take(self) -> list[Frame]:
        """Frames sent out of this port since the last call (oldest first)."""
        with self._lock:
            out, self._tx = self._tx, []
        return out

    def take_bytes(self) -> list[bytes]:
        """Like :meth:`take`, only the frame bytes."""
        return [f.data for f in self.take()]

    @property
    def pending(self) -> int:
        """Injected frames not yet received by the switch."""
        return len(self._rx)

    def set_link(self, up: bool) -> None:
        """Put the link up or down (down: nothing is received or sent)."""
        self._link = up

    # -- switch side ---------------------------------------------------------

    def fileno(self) -> int:
        """The eventfd; readable while injected frames wait."""
        if self._fd < 0:
            raise PortError(f"port {self.name} is not open")
        return self._fd

    def recv_batch(self, max_frames: int = 64) -> list[Frame]:
        """Up to ``max_frames`` injected frames, oldest first."""
        fd = self._fd
        if fd >= 0:
            try:
                os.eventfd_read(fd)  # reset; set again below when frames remain
            except OSError:
                pass
        rx = self._rx
        out: list[Frame] = []
        try:
            while len(out) < max_frames:
                out.append(rx.popleft())
        except IndexError:
            pass
        if rx:
            self._signal()
        self.counters.rx_frames += len(out)
        self.counters.rx_bytes += sum(len(f.data) for f in out)
        return out

    def send_batch(self, frames: Sequence[Frame]) -> int:
        """Record frames (finalized unless ``vnet_hdr``); return how many were accepted."""
        counters = self.counters
        if not self._link:
            counters.tx_errors += len(frames)
            return 0
        if self.vnet_hdr and self.gso is not None:
            return self._send_as_device(frames, self.gso)
        keep: list[Frame] = []
        errors = 0
        for f in frames:
            if self.vnet_hdr or not f.vnet:
                keep.append(f)
                continue
            try:
                keep.extend(Frame(seg, b"", f.ts_ns) for seg in finalize(f))
            except OffloadError:
                errors += 1
        with self._lock:
            self._tx.extend(keep)
        accepted = len(frames) - errors
        counters.tx_frames += len(keep)
        counters.tx_bytes += sum(len(f.data) for f in keep)
        counters.tx_errors += errors
        return accepted

    def _send_as_device(self, frames: Sequence[Frame], gso: GsoSupport) -> int:
        keep: list[Frame] = []

        def write(buf: bytes) -> None:
            vnet, data = buf[:10], buf[10:]
            keep.append(Frame(data, b"" if is_plain(vnet) else vnet))

        def gather(parts: tuple[bytes, bytes]) -> None:
            write(parts[0] + parts[1])

        sent = send_frames(frames, write, gather, counters=self.counters,
                           on_error=lambda exc: None, gso=gso)
        with self._lock:
            self._tx.extend(keep)
        return sent

    # -- state ---------------------------------------------------------------

    def link_up(self) -> bool:
        """The link state set by :meth:`set_link` (up by default)."""
        return self._link

    def info(self) -> PortInfo:
        """Kind ``memory``; the MAC and MTU given to the constructor."""
        return PortInfo(
            kind="memory",
            interface=self.name,
            mac=self.mac,
            mtu=self.mtu,
            vnet_hdr=self.vnet_hdr,
        )
