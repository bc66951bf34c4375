"""What happened to one frame, recorded while someone observes (``vspan observe``).

Only while a :class:`~vspan.datapath.plugins.FrameObserver` is attached does the
fast path replay frames through :class:`Recorder`: the committing effects of
the fast path, wrapped to note each output (port and VLAN operation), each
mirror copy actually made (sampled-out and length-filtered offers are not
copies) and each drop. Without observers nothing here runs: the fast path
never builds a :class:`Seen`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vspan.datapath.decision import Check, CheckOutcome, Decision, Drop, Learn, Mirror, Refresh
from vspan.datapath.flowkey import FlowKey
from vspan.datapath.replay import Effects
from vspan.datapath.state import SwitchState
from vspan.ports.base import Frame

SOURCE_FAST = "cache"  # a cached decision replayed
SOURCE_SLOW = "upcall"  # decided by the slow path for this frame
SOURCE_REPLY = "reply"  # a frame the switch made (a firewall reject answer)


@dataclass(slots=True)
class Seen:
    """One frame's fate: where it came from, where it went, which copies, which drops.

    ``outputs``: (port index, VLAN op, VID) per delivery; ``mirrors``: session
    indexes that made a copy; ``drops``: every drop the frame met (a frame
    flooded to three ports may be delivered to two and dropped at the third).
    """

    in_port: int
    data: bytes
    ts_ns: int
    source: str
    outputs: list[tuple[int, int, int]] = field(default_factory=list)
    mirrors: list[int] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)

    @property
    def dropped(self) -> bool:
        """Whether the frame met a drop anywhere."""
        return bool(self.drops)


class Recorder:
    """Effects that commit through ``inner`` (the fast path) and note what happened."""

    tx = None  # outputs go through :meth:`output` (noted), not straight into the queues

    def __init__(self, inner: Effects, state: SwitchState) -> None:
        self.inner = inner
        self.state = state
        self.seen: Seen = Seen(0, b"", 0, SOURCE_FAST)
        self.decision: Decision | None = None

    def start(self, d: Decision, in_port: int, f: Frame, ts_ns: int, source: str) -> Seen:
        """Begin recording the replay of ``d`` for frame ``f``."""
        self.decision = d
        self.seen = Seen(in_port, f.data, ts_ns, source)
        return self.seen

    def check(self, check: Check, data: bytes, key: FlowKey, now: float,
              wire: tuple[int, int]) -> CheckOutcome:
        """Run the check (committing)."""
        return self.inner.check(check, data, key, now, wire)

    def mirror(self, copy: Mirror, frame: Frame) -> None:
        """Offer the copy; note it when the session made one."""
        m = self.state.mirrors.get(copy.session)
        before = (m.mirrored + m.dropped) if m is not None else 0
        self.inner.mirror(copy, frame)
        if m is not None and m.mirrored + m.dropped != before:
            self.seen.mirrors.append(copy.session)

    def learn(self, learn: Learn, now: float) -> None:
        """Learn (committing)."""
        self.inner.learn(learn, now)

    def refresh(self, refresh: Refresh, now: float) -> None:
        """Refresh (committing)."""
        self.inner.refresh(refresh, now)

    def drop(self, drop: Drop, data: bytes, in_port: int) -> None:
        """Count the drop and note it."""
        self.inner.drop(drop, data, in_port)
        self.seen.drops.append(drop)

    def flood(self, in_port: int) -> None:
        """Count the flood."""
        self.inner.flood(in_port)

    def output(self, port: int, frame: Frame) -> None:
        """Queue the frame and note the port with the VLAN operation the decision gave it."""
        self.inner.output(port, frame)
        op = vid = 0
        d = self.decision
        if d is not None:
            for a in d.outputs:
                if a.port == port:
                    op, vid = a.vlan_op, a.vid
                    break
        self.seen.outputs.append((port, op, vid))
