"""A real :class:`~vspan.mirror.encap.RawGreSender` whose sockets are ``AF_UNIX`` datagram
socket pairs (no root, no network): what it sends — by the raw GRE socket (the GRE
payload) or by the link-layer path (the whole Ethernet + IPv4 frame, ``mirror.l2path``)
— is read back byte for byte. The native replay sends through the same descriptors
(``native_params``), so a native and a Python switch can be compared on the wire."""

from __future__ import annotations

import socket
import time
from typing import Any

from vspan.mirror.encap import ErspanConfig, RawGreSender
from vspan.mirror.l2path import L2Header, NextHop, PathState

LOCAL = bytes((10, 99, 0, 1))
SRC_MAC = bytes.fromhex("02000000e001")
DST_MAC = bytes.fromhex("02000000e002")
_BUF = 4 << 20


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUF)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUF)
        s.setblocking(False)
    return a, b


class WireRecorder:
    """A sender for one session and what reached its two sockets, in order of arrival
    per socket (``take``); ERSPAN III timestamps are zeroed (the native side reads the
    clock itself)."""

    def __init__(self, config: ErspanConfig, *, link: bool = True) -> None:
        s = self.sender = RawGreSender(config)
        raw, self._raw_rx = _pair()
        s._sock = raw  # what open() would have connected
        s._local = LOCAL
        self._l2_rx: socket.socket | None = None
        if link:
            l2, self._l2_rx = _pair()
            hop = NextHop("wire0", 1, SRC_MAC, DST_MAC, None)
            s._l2_sock = l2
            s._l2 = L2Header(hop, local=LOCAL, remote=s._remote, ttl=config.ttl,
                             tos=config.dscp << 2)
            s._l2_state = PathState.RESOLVED
        s._l2_checked = time.monotonic()
        s.refresh_interval = float("inf")  # never re-read the host's tables
        self._ts = config.type == "erspan3"
        self.taken: dict[str, int] = {"raw": 0, "link": 0}  # copies read back, by socket

    def _drain(self, rx: socket.socket, skip: int) -> list[bytes]:
        out: list[bytes] = []
        while True:
            try:
                pkt = rx.recv(1 << 17)
            except BlockingIOError:
                return out
            if self._ts and len(pkt) >= skip + 16:
                pkt = pkt[:skip + 12] + bytes(4) + pkt[skip + 16:]
            out.append(pkt)

    def take(self) -> list[Any]:
        """What was sent since the last call: ("raw", GRE payload) and ("link", frame)."""
        out: list[Any] = [("raw", p) for p in self._drain(self._raw_rx, 0)]
        if self._l2_rx is not None:
            out += [("link", p) for p in self._drain(self._l2_rx, 34)]
        for how, _ in out:
            self.taken[how] += 1
        return out

    def close(self) -> None:
        """Close every socket."""
        self.sender.close()
        self._raw_rx.close()
        if self._l2_rx is not None:
            self._l2_rx.close()
