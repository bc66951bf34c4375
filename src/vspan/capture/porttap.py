"""Capture on live switch ports: pcapng with one interface per port, direction
flags, and (optionally) dropped frames with their reason and deciding rule.

The engine calls :meth:`PortCapture.rx`, :meth:`tx` and :meth:`dropped`
only while a capture is active; the writer flushes each block whole, so a
killed capture loses at most the packet being written. Team member points
(:mod:`vspan.capture.points`) are fed by the team backend through
:meth:`PortCapture.member`. A frame's packet id (``epb_packetid``) is the same
at every point that saw it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vspan.capture.filter import PacketFilter
from vspan.capture.pcapng import (
    DIR_INBOUND,
    DIR_OUTBOUND,
    Interface,
    PcapngWriter,
    drop_comment,
    drop_verdict,
    epb_flags,
    reception_type,
)
from vspan.datapath.decision import Drop


@dataclass
class PortCapture:
    """One running capture on one or more ports."""

    id: int
    path: str
    ports: dict[int, str]  # port index -> name
    direction: str = "both"  # in = frames the port sends into the switch; out = frames it gets
    drops: bool = False
    filter: PacketFilter | None = None
    max_packets: int = 0  # 0 = unlimited
    max_bytes: int = 0  # the file never grows past this (0 = unlimited)
    stop_at: float | None = None  # Unix time the switch stops it (time-boxed)
    snaplen: int = 262144
    members: dict[tuple[int, str], str] = field(default_factory=dict)  # team member points
    descriptions: dict[str, str] = field(default_factory=dict)  # point name -> IDB text
    writer: PcapngWriter = field(init=False)
    iface_ids: dict[int, int] = field(default_factory=dict)
    member_ids: dict[tuple[int, str], int] = field(default_factory=dict)
    capped: bool = False  # a packet did not fit under max_bytes
    packets: int = 0
    dropped_written: int = 0
    started: float = field(default_factory=time.time)
    notes: list[str] = field(default_factory=list)  # comments for the next packet written
    annotations: int = 0

    def __post_init__(self) -> None:
        # captured traffic is for the one who captured it: owner-only
        self.writer = PcapngWriter(self.path, comment="vspan capture", mode=0o600)
        points: dict[str, int | tuple[int, str]] = {n: i for i, n in self.ports.items()}
        points.update({n: k for k, n in self.members.items()})
        order = [n for n in self.descriptions if n in points]
        order += [n for n in points if n not in self.descriptions]
        for name in order:  # interface blocks in the order the points were named
            iface = self.writer.add_interface(Interface(
                name=name, description=self.descriptions.get(name, f"vspan switch port {name}"),
                snaplen=self.snaplen))
            key = points[name]
            if isinstance(key, tuple):
                self.member_ids[key] = iface
            else:
                self.iface_ids[key] = iface

    @property
    def full(self) -> bool:
        """Whether the packet or byte limit is reached."""
        return self.capped or (bool(self.max_packets) and self.packets >= self.max_packets)

    def stop_reason(self, now: float) -> str:
        """Why the switch should stop this capture by itself now ("" = it should not)."""
        if self.capped:
            return f"max_bytes {self.max_bytes} reached"
        if self.max_packets and self.packets >= self.max_packets:
            return f"max_packets {self.max_packets} reached"
        if self.stop_at is not None and now >= self.stop_at:
            return "time box over"
        return ""

    def _write(self, iface: int, data: bytes, direction: int, drop: Drop | None,
               where: str = "", pid: int = 0) -> None:
        if self.full or (self.filter is not None and not self.filter.match(data)):
            return
        comments: tuple[str, ...] = ()
        if drop is not None:
            comments = (drop_comment(drop.reason.value, drop.rule, where, drop.detail),)
        if self.notes:
            comments = (*self.notes, *comments)
        written = self.writer.write_packet(
            iface, data, time.time_ns(),
            flags=epb_flags(direction, reception_type(data)),
            comments=comments,
            verdicts=(drop_verdict(drop is not None),) if self.drops else (),
            packet_id=pid or None, limit=self.max_bytes or None)
        if not written:
            self.capped = True
            return
        self.notes = []
        if drop is not None:
            self.dropped_written += 1
        self.packets += 1

    def rx(self, idx: int, data: bytes, frame_drops: list[Drop], pid: int = 0) -> None:
        """A frame port ``idx`` sent into the switch, with the drops it met."""
        if idx not in self.iface_ids or self.direction == "out":
            return
        drop = next((d for d in frame_drops if d.port == idx), None)
        if drop is not None and not self.drops:
            drop = None  # without --drops a dropped frame is still what the port sent
        self._write(self.iface_ids[idx], data, DIR_INBOUND, drop, self.ports[idx], pid)

    def tx(self, idx: int, data: bytes, pid: int = 0) -> None:
        """A frame the switch delivered to port ``idx``."""
        if idx in self.iface_ids and self.direction != "in":
            self._write(self.iface_ids[idx], data, DIR_OUTBOUND, None, pid=pid)

    def member(self, idx: int, member: str, inbound: bool, data: bytes, pid: int) -> None:
        """A frame team ``idx`` received on (or sent out of) its member ``member``."""
        iface = self.member_ids.get((idx, member))
        if iface is None or self.direction == ("out" if inbound else "in"):
            return
        self._write(iface, data, DIR_INBOUND if inbound else DIR_OUTBOUND, None, pid=pid)

    def dropped(self, idx: int, data: bytes, drop: Drop, in_port: int) -> None:
        """A frame bound for port ``idx`` that was dropped there (egress drop)."""
        if not self.drops or idx not in self.iface_ids or idx == in_port \
                or self.direction == "in":
            return
        self._write(self.iface_ids[idx], data, DIR_OUTBOUND, drop, self.ports[idx])

    def annotate(self, text: str) -> None:
        """Say ``text`` in the capture: now, as a comment of an interface statistics block
        (of the capture's first port), and again on the next packet written (e.g. "VM web1
        migrated from esx1 to esx2 at ...")."""
        if self.writer.closed:
            return
        first = next(iter(self.iface_ids.values()), None)
        if first is not None:
            self.writer.write_statistics(first, time.time_ns(), comment=text)
        self.notes.append(text)
        self.annotations += 1

    def summary(self) -> dict[str, object]:
        """What was captured."""
        return {"id": self.id, "path": self.path,
                "ports": [*self.ports.values(), *self.members.values()],
                "packets": self.packets, "dropped_frames": self.dropped_written,
                "bytes": self.writer.bytes_written, "seconds": round(time.time() - self.started, 1),
                "max_packets": self.max_packets, "max_bytes": self.max_bytes,
                "stop_at": None if self.stop_at is None else
                datetime.fromtimestamp(self.stop_at, UTC).isoformat()}

    def close(self) -> None:
        """Close the file."""
        self.writer.close()
