"""Link-state notifications (rtnetlink ``RTM_NEWLINK``/``RTM_DELLINK``) and an interval timer.

:class:`LinkWatch` is a non-blocking ``NETLINK_ROUTE`` socket joined to the
``RTMGRP_LINK`` group: the kernel sends a message whenever an interface's flags
or carrier change, so a team learns of a member's carrier loss as soon as the
kernel does, with no polling. Only the fixed ``ifinfomsg`` header is read
(index and flags: ``IFF_UP``, ``IFF_LOWER_UP`` = carrier); attributes are
skipped. If the socket's queue overflowed (``ENOBUFS``) messages were lost, and
:meth:`LinkWatch.read` says so, so the caller re-reads the state itself.

:class:`IntervalTimer` is a ``timerfd`` (through libc: Python 3.11's ``os`` has
no ``timerfd_create``) that becomes readable every ``interval`` seconds; it
lets a backend whose fd sits in the engine's epoll wake up for periodic work
(link polling, ARP probes) without a thread.

Both are control path: a handful of messages or ticks per second.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_ROUTE = 0
RTMGRP_LINK = 1
RTM_NEWLINK = 16
RTM_DELLINK = 17
NLMSG_ERROR = 2
NLMSG_OVERRUN = 4
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RCVBUF = 1 << 20


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """One interface's state as a notification reported it."""

    index: int
    up: bool  # administratively up (IFF_UP)
    carrier: bool  # IFF_LOWER_UP
    deleted: bool = False

    @property
    def usable(self) -> bool:
        """Up with carrier, and not deleted."""
        return self.up and self.carrier and not self.deleted


def parse_link_messages(buf: bytes) -> list[LinkEvent]:
    """The link events in one netlink datagram (malformed tails are ignored)."""
    events: list[LinkEvent] = []
    off = 0
    n = len(buf)
    while off + _NLMSGHDR.size <= n:
        length, mtype, _flags, _seq, _pid = _NLMSGHDR.unpack_from(buf, off)
        if length < _NLMSGHDR.size or off + length > n:
            break
        body = off + _NLMSGHDR.size
        if mtype in (RTM_NEWLINK, RTM_DELLINK) and length >= _NLMSGHDR.size + _IFINFOMSG.size:
            _fam, _type, index, flags, _change = _IFINFOMSG.unpack_from(buf, body)
            events.append(LinkEvent(index, bool(flags & IFF_UP), bool(flags & IFF_LOWER_UP),
                                    mtype == RTM_DELLINK))
        off += (length + 3) & ~3
    return events


class LinkWatch:
    """A netlink socket that reports interface link changes."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None

    def open(self) -> None:
        """Open and join the link group (OSError when netlink is not available)."""
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                             | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            sock.bind((0, RTMGRP_LINK))
        except OSError:
            sock.close()
            raise
        self._sock = sock

    def fileno(self) -> int:
        """Readable when notifications wait."""
        if self._sock is None:
            raise OSError(errno.EBADF, "link watch is not open")
        return self._sock.fileno()

    def read(self) -> tuple[list[LinkEvent], bool]:
        """Every waiting event, and whether some were lost (queue overflow)."""
        events: list[LinkEvent] = []
        lost = False
        sock = self._sock
        if sock is None:
            return events, lost
        while True:
            try:
                buf = sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    lost = True
                    continue
                break
            if not buf:
                break
            events.extend(parse_link_messages(buf))
        return events, lost

    def close(self) -> None:
        """Close the socket (safe to call twice)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class IntervalTimer:
    """A ``timerfd`` that fires every ``interval`` seconds (readable until :meth:`ack`)."""

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        self._fd = -1

    def open(self) -> None:
        """Create and arm the timer (OSError when the kernel refuses)."""
        if self._fd >= 0:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        sec = int(self.interval)
        nsec = round((self.interval - sec) * 1e9)
        spec = _Itimerspec(_Timespec(sec, nsec), _Timespec(sec, nsec))
        if libc.timerfd_settime(fd, 0, ctypes.byref(spec), None) != 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")
        self._fd = fd

    def fileno(self) -> int:
        """Readable once an interval has passed."""
        if self._fd < 0:
            raise OSError(errno.EBADF, "timer is not open")
        return self._fd

    def ack(self) -> int:
        """Consume the expirations; return how many intervals passed (0 if none)."""
        try:
            raw = os.read(self._fd, 8)
        except (BlockingIOError, OSError):
            return 0
        return int.from_bytes(raw, "little") if len(raw) == 8 else 0

    def close(self) -> None:
        """Disarm and close (safe to call twice)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
