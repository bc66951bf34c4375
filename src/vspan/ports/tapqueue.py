"""TAP queue port: vspan holds the ``/dev/net/tun`` fd, the tap netdev is the far end.

This is the side of a TAP that QEMU holds for a VM, so it is NOT what
``type: tap`` ports use (that is :class:`vspan.ports.tap.TapPort`, which
leaves the queue to QEMU and attaches to the netdev). It serves where vspan
itself plays the VM's side: tests and benchmarks stand in for QEMU with it
(the netdev then plays the VM's NIC, e.g. moved into a namespace), and it
is a port for a process that wants a plain netdev whose frames go straight
to the switch.

The device is opened with ``IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`` and a
10-byte virtio-net header, and ``TUNSETOFFLOAD`` tells the kernel that we
accept partial checksums and TSO (and USO where the kernel knows it), so the
netdev side sends 64 KiB GSO frames and the switch passes them on whole.
Frames read from the fd carry their VLAN tags inline (tun inserts them).

The netdev may be moved into another network namespace after :meth:`open`
(that namespace plays the VM); the fd keeps working. A device this port
created disappears when the port closes; a pre-existing persistent device
(``ip tuntap add ...``) stays.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Sequence
from functools import partial

from vspan.ports import constants as c
from vspan.ports import netdev
from vspan.ports.base import Frame, Port, PortCounters, PortError, PortInfo
from vspan.ports.tx import send_frames
from vspan.ports.vnet import F_NEEDS_CSUM, VNET_HDR_LEN

#: Offloads asked for, best first; the first set the kernel accepts is used.
OFFLOAD_CHOICES: tuple[int, ...] = (
    c.TUN_F_CSUM | c.TUN_F_TSO4 | c.TUN_F_TSO6 | c.TUN_F_TSO_ECN | c.TUN_F_USO4 | c.TUN_F_USO6,
    c.TUN_F_CSUM | c.TUN_F_TSO4 | c.TUN_F_TSO6 | c.TUN_F_TSO_ECN,
    c.TUN_F_CSUM,
    0,
)

#: Read buffer: a 64 KiB GSO frame plus Ethernet, VLAN tags and the vnet header.
READ_BUFFER = 128 * 1024
#: Frames longer than this are written with writev([vnet, data]) (saves a copy).
_INT = struct.Struct("=i")


class TapQueuePort(Port):
    """A port on the queue fd of a TAP device (created when missing)."""

    def __init__(
        self,
        name: str,
        ifname: str | None = None,
        *,
        offloads: Sequence[int] = OFFLOAD_CHOICES,
        bring_up: bool = True,
        multi_queue: bool = False,
    ) -> None:
        self.name = name
        self.ifname = ifname or name
        self.counters = PortCounters()
        self._offload_choices = tuple(offloads)
        self._bring_up = bring_up
        self._multi_queue = multi_queue
        self._fd = -1
        self._buf = bytearray(READ_BUFFER)
        self._bufs = [self._buf]
        self._mv = memoryview(self._buf)
        self._info: PortInfo | None = None
        #: the TUN_F_* set the kernel accepted (after :meth:`open`)
        self.offloads = 0
        #: whether the device existed before this port opened it
        self.preexisting = False
        #: errno of the last failed write (debugging aid)
        self.last_tx_errno: int | None = None
        self._netdev_down = False  # the last write failed with EIO (netdev down)
        self._detached = False  # the netdev is gone (EBADFD)

    # -- lifecycle -----------------------------------------------------------

    def open(self) -> None:
        """Open ``/dev/net/tun`` and attach to (or create) the tap device."""
        if self._fd >= 0:
            return
        raw_name = self.ifname.encode()
        if not raw_name or len(raw_name) >= c.IFNAMSIZ or "/" in self.ifname:
            raise PortError(f"{self.ifname!r} is not a valid interface name (1-15 characters)")
        try:
            fd = os.open(c.TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise PortError(f"port {self.name}: cannot open {c.TUN_DEVICE}: {exc}") from exc
        try:
            self._attach(fd, raw_name)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _attach(self, fd: int, raw_name: bytes) -> None:
        try:
            netdev.ifindex(self.ifname)
            self.preexisting = True
        except PortError:
            self.preexisting = False
        flags = c.IFF_TAP | c.IFF_NO_PI | c.IFF_VNET_HDR
        if self._multi_queue:  # one more queue of a multi-queue device
            flags |= c.IFF_MULTI_QUEUE
        try:
            out = fcntl.ioctl(fd, c.TUNSETIFF, c.IFREQ_FLAGS.pack(raw_name, flags))
        except OSError as exc:
            hint = ""
            if exc.errno == errno.EBUSY:
                hint = " (another process holds it)"
            elif exc.errno == errno.EINVAL and self.preexisting:
                hint = " (an interface of that name exists and is not a tap device)"
            raise PortError(
                f"port {self.name}: cannot attach tap {self.ifname!r}: {exc.strerror}{hint}"
            ) from exc
        actual = c.IFREQ_FLAGS.unpack(out)[0].rstrip(b"\0").decode()
        self.ifname = actual or self.ifname
        try:
            fcntl.ioctl(fd, c.TUNSETVNETHDRSZ, _INT.pack(VNET_HDR_LEN))
        except OSError as exc:
            raise PortError(f"port {self.name}: cannot set vnet header size: {exc}") from exc
        self.offloads = self._set_offloads(fd)
        if self._bring_up:
            netdev.set_up(self.ifname)
        self._info = PortInfo(
            kind="tap-queue",
            interface=self.ifname,
            mac=netdev.hwaddr(self.ifname),
            mtu=netdev.mtu(self.ifname),
            vnet_hdr=True,
            extra={
                "offloads": f"0x{self.offloads:02x}",
                "preexisting": str(self.preexisting).lower(),
            },
        )

    def _set_offloads(self, fd: int) -> int:
        for choice in self._offload_choices:
            try:
                fcntl.ioctl(fd, c.TUNSETOFFLOAD, choice)  # the value itself, not a pointer
            except OSError:
                continue
            return choice
        return 0

    def close(self) -> None:
        """Close the fd (the kernel removes a device it created for us); safe twice."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    # -- datapath ------------------------------------------------------------

    def fileno(self) -> int:
        """The tun fd; readable when the netdev side has sent a frame."""
        if self._fd < 0:
            raise PortError(f"port {self.name} is not open")
        return self._fd

    def recv_batch(self, max_frames: int = 64) -> list[Frame]:
        """Read up to ``max_frames`` frames from the fd without blocking."""
        fd = self._fd
        if fd < 0:
            return []
        readv = os.readv
        bufs = self._bufs
        mv = self._mv
        out: list[Frame] = []
        nbytes = 0
        errors = 0
        hdr = VNET_HDR_LEN
        while len(out) < max_frames:
            try:
                n = readv(fd, bufs)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.EBADFD:  # the netdev was deleted under us
                    if not self._detached:
                        errors += 1
                    self._detached = True
                else:
                    errors += 1
                break
            if n < hdr + 14:
                errors += 1
                continue
            vnet = bytes(mv[:hdr]) if mv[0] & F_NEEDS_CSUM or mv[1] else b""
            data = bytes(mv[hdr:n])
            nbytes += n - hdr
            out.append(Frame(data, vnet))
        counters = self.counters
        counters.rx_frames += len(out)
        counters.rx_bytes += nbytes
        counters.rx_errors += errors
        return out

    def send_batch(self, frames: Sequence[Frame]) -> int:
        """Write each frame behind its vnet header; count failures, never raise."""
        fd = self._fd
        if fd < 0:
            self.counters.tx_errors += len(frames)
            return 0
        sent = send_frames(frames, partial(os.write, fd), partial(os.writev, fd),
                           self.counters, self._tx_error)
        if sent:
            self._netdev_down = False
        return sent

    def _tx_error(self, exc: OSError) -> None:
        # EIO (netdev down), EINVAL (bad vnet header/too short), EAGAIN,
        # EBADFD (netdev deleted)
        self.last_tx_errno = exc.errno
        if exc.errno == errno.EIO:
            self._netdev_down = True
        elif exc.errno == errno.EBADFD:
            self._detached = True

    # -- state ---------------------------------------------------------------

    def link_up(self) -> bool:
        """Up while the fd is attached to a netdev that is up.

        While the netdev is in this namespace its operstate decides. Once it
        lives in another namespace its flags cannot be read from here: the
        port is then up while the device exists (``TUNGETIFF`` works) and the
        last write did not fail with EIO (which tun returns for a down netdev).
        """
        fd = self._fd
        if fd < 0 or self._detached:
            return False
        try:
            fcntl.ioctl(fd, c.TUNGETIFF, bytes(c.IFREQ_SIZE))
        except OSError:
            self._detached = True
            return False
        state = netdev.link_state(self.ifname)
        return not self._netdev_down if state is None else state

    def info(self) -> PortInfo:
        """Device name, MAC and MTU (as seen at open), accepted offloads."""
        if self._info is None:
            return PortInfo(kind="tap-queue", interface=self.ifname, vnet_hdr=True)
        return self._info
