"""What the datapath needs to send remote mirror copies (ERSPAN/GRE), as protocols; the
mirror layer implements them (:mod:`vspan.mirror.senders`)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from vspan.config.model import MirrorSession


class SenderStats(Protocol):
    """Counters of a remote mirror sender."""

    @property
    def sent(self) -> int:
        """Copies sent."""
        ...

    @property
    def truncated(self) -> int:
        """Copies cut to fit the path MTU."""
        ...

    @property
    def errors(self) -> int:
        """Sends refused."""
        ...

    @property
    def loop_skipped(self) -> int:
        """Own encapsulated output offered for mirroring, skipped."""
        ...

    @property
    def link_layer(self) -> int:
        """Of the copies sent, those written as Ethernet frames (AF_PACKET, cached header)."""
        ...

    @property
    def unresolved(self) -> int:
        """Of the copies sent, those the raw socket took while the next hop was unresolved."""
        ...


class MirrorSender(Protocol):
    """Sends one remote mirror session's copies (encapsulated) to its collector."""

    @property
    def counters(self) -> SenderStats:
        """What it did."""
        ...

    def send(self, frame: bytes, *, egress: bool = False, truncated: bool = False,
             ts_ns: int | None = None, vlan: int | None = None, cos: int = 0) -> bool:
        """Encapsulate and send one copy; False when it could not be sent (counted)."""
        ...

    def close(self) -> None:
        """Release the socket."""
        ...


class RemoteMirrors(Protocol):
    """Opens senders for remote mirror sessions."""

    def open(self, session: MirrorSession) -> MirrorSender:
        """A connected sender for ``session`` (OSError when its collector is unreachable)."""
        ...

    def route_interface(self, session: MirrorSession) -> str | None:
        """The interface the session's encapsulated copies leave by (loop guard)."""
        ...


@runtime_checkable
class NativeSender(Protocol):
    """A sender whose encapsulation the native replay can do itself (``docs/datapath.md``):
    it hands over its parameters and takes back what was sent for it."""

    def native_params(self) -> tuple[Any, ...] | None:
        """The encapsulation parameters and socket, or ``None`` to keep sending in Python
        (closed socket, an injected clock)."""
        ...

    def native_update(self, seq: int, sent: int, sent_bytes: int, truncated: int,
                      loop_skipped: int, errnos: list[int], ip_id: int = -1) -> None:
        """Take back the next sequence number (and, ``ip_id`` >= 0, the next IPv4 id of
        the link-layer path) and count what the native side did."""
        ...

    def resend(self, payload: bytes) -> bool:
        """Send again a payload the kernel refused as too big (the path MTU shrank)."""
        ...
