"""Who is on the other end of a control-socket connection, as the kernel says.

uvicorn does not put a Unix peer's credentials into the ASGI scope, so the
control socket is served by :class:`PeerCredProtocol`: when a connection is
made it reads ``SO_PEERCRED`` (pid, uid, gid) and ``SO_PEERGROUPS`` (the
supplementary groups at ``connect()``) and hands them to every request of
that connection as ``scope["extensions"]["vspan.peer"]``. They come from the
kernel, never from the request, so a client cannot claim another identity. A
connection whose credentials cannot be read is closed.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from vspan.control.roles import PeerCred

log = logging.getLogger(__name__)

PEER_KEY = "vspan.peer"
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13
_GROUPS_BUFLEN = 1024  # CPython's getsockopt limit: room for 256 groups

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def peer_cred(sock: Any) -> PeerCred:
    """The peer of the connected Unix socket ``sock`` (OSError if the kernel will not say)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    groups: tuple[int, ...] = ()
    try:
        graw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _GROUPS_BUFLEN)
        groups = struct.unpack(f"{len(graw) // 4}I", graw[: len(graw) // 4 * 4])
    except OSError as err:  # ERANGE: more than 256 groups; ENOPROTOOPT: old kernel
        log.warning("control socket peer pid %d: supplementary groups unknown (%s); only "
                    "its primary group counts", pid, err.strerror)
    return PeerCred(pid, uid, gid, tuple(groups))


def _with_peer(app: ASGIApp, peer: PeerCred) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), PEER_KEY: peer}
        await app(scope, receive, send)

    return wrapped


class PeerCredProtocol(H11Protocol):
    """uvicorn's h11 protocol, with the peer's credentials in every request's scope."""

    def connection_made(self, transport: Any) -> None:
        """Read the peer's credentials; close the connection when they cannot be read."""
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        try:
            if sock is None or sock.family != socket.AF_UNIX:
                raise OSError("not a Unix socket")
            peer = peer_cred(sock)
        except OSError as err:
            log.warning("control socket: refusing a connection whose peer is unknown: %s", err)
            transport.close()
            return
        self.app = _with_peer(self.app, peer)


def scope_peer(scope: Scope) -> PeerCred | None:
    """The peer a :class:`PeerCredProtocol` connection put into ``scope`` (None on TCP)."""
    ext = scope.get("extensions") or {}
    peer = ext.get(PEER_KEY)
    return peer if isinstance(peer, PeerCred) else None
