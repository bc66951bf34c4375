"""The one interface every kind of port implements, and the frame it moves.

A :class:`Frame` is a whole Ethernet frame with its VLAN tags inline (the
AF_PACKET backend puts back the tag the kernel strips) plus the virtio-net
header that describes pending offloads (partial checksum, GSO). ``vnet`` is
``b""`` for a complete frame that needs no further work.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from vspan.config.model import PortConfig


class Frame:
    """One frame on its way through the switch.

    ``port`` is the index of the switch port the frame came in by, set by the
    engine only while a backend needs it (a team balancing by Hyper-V port);
    ``pid`` links the copies of one frame seen at several capture points (the
    pcapng ``epb_packetid``), set only while a capture runs. Both are 0 otherwise.
    """

    __slots__ = ("data", "pid", "port", "ts_ns", "vnet")

    def __init__(self, data: bytes, vnet: bytes = b"", ts_ns: int = 0, port: int = 0,
                 pid: int = 0) -> None:
        self.data = data
        self.vnet = vnet
        self.ts_ns = ts_ns
        self.port = port
        self.pid = pid

    def __repr__(self) -> str:
        return f"Frame(len={len(self.data)}, vnet={self.vnet.hex() or '-'})"


@dataclass(slots=True)
class PortCounters:
    """Traffic counters kept by a port backend (what crossed the wire)."""

    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    rx_errors: int = 0
    tx_errors: int = 0
    rx_dropped: int = 0  # the kernel ring reported drops or the ring was full
    tx_segmented: int = 0  # GSO super-frames the device could not take (software GSO)
    tx_segments: int = 0  # pieces vspan cut itself (in tx_frames; the kernel's are not)

    def as_dict(self) -> dict[str, int]:
        """Counters as a plain mapping (for JSON and metrics)."""
        return {
            "rx_frames": self.rx_frames,
            "rx_bytes": self.rx_bytes,
            "tx_frames": self.tx_frames,
            "tx_bytes": self.tx_bytes,
            "rx_errors": self.rx_errors,
            "tx_errors": self.tx_errors,
            "rx_dropped": self.rx_dropped,
            "tx_segmented": self.tx_segmented,
            "tx_segments": self.tx_segments,
        }


@dataclass(slots=True)
class PortInfo:
    """Static facts about an opened port."""

    kind: str
    interface: str
    mac: bytes = b""
    mtu: int = 1500
    vnet_hdr: bool = False
    extra: dict[str, str] = field(default_factory=dict)


class PortError(Exception):
    """A port could not be opened or used (the message says which and why)."""


class Port(abc.ABC):
    """A switch port backend: something frames come from and go to (``with port:`` opens
    and closes it)."""

    name: str
    counters: PortCounters
    #: the engine sets Frame.port (the ingress switch port) on frames only if some
    #: backend says it needs it (a team balancing by Hyper-V port)
    wants_source_port: bool = False

    @abc.abstractmethod
    def open(self) -> None:
        """Acquire the underlying resource (socket, tap fd, ...)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the resource; safe to call twice."""

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def fileno(self) -> int:
        """A file descriptor that becomes readable when frames wait."""

    @abc.abstractmethod
    def recv_batch(self, max_frames: int = 64) -> list[Frame]:
        """Return up to ``max_frames`` waiting frames without blocking."""

    @abc.abstractmethod
    def send_batch(self, frames: Sequence[Frame]) -> int:
        """Send frames; return how many were accepted. Never raises for one bad frame."""

    @abc.abstractmethod
    def link_up(self) -> bool:
        """Whether the port can carry traffic now."""

    @abc.abstractmethod
    def info(self) -> PortInfo:
        """Static facts about the port."""

    def explain_tx(self, vlan: int, frame: bytes) -> str | None:
        """For ``vspan trace``: where the backend would send ``frame`` of ``vlan`` (no side
        effects); ``None`` when there is nothing to say beyond "out of the port"."""
        return None

    def reconfigure(self, cfg: PortConfig) -> None:  # noqa: B027 (optional hook)
        """Apply changed settings of an open port (the backend key stayed the same).

        Most backends have nothing to change; the VXLAN port takes new VNI maps,
        flood lists and static entries here without reopening its sockets.
        """
