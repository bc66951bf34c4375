"""What the datapath needs from the layers above it, as protocols.

``datapath/`` never imports ``policy/``, ``capture/`` or ``mirror/``: the control
layer (:mod:`vspan.control.assemble`) builds the implementations and hands
them in.

* :class:`IngressStage` / :class:`EgressStage` (in :mod:`~vspan.datapath.stages.base`)
  — policy stages the pipeline runs;
* :class:`Checker` — runs the per-frame :class:`~vspan.datapath.decision.Check`
  actions those stages put in decisions: ``peek`` for trace, ``commit`` for
  forwarding (one code path in the implementation);
* :class:`Policy` — the whole policy layer as the engine drives it
  (configuration, housekeeping, reject answers);
* :class:`MirrorSender` and :class:`RemoteMirrors` (:mod:`~vspan.datapath.remote`) —
  ERSPAN/GRE senders;
* :class:`CaptureTap` — a running ``vspan capture``;
* :class:`FrameObserver` — a running ``vspan observe`` (per-frame events).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from vspan.config.diff import ChangeSet
from vspan.config.model import Config
from vspan.datapath.decision import PASS, Check, CheckOutcome, Drop, Reply
from vspan.datapath.flowkey import FlowKey
from vspan.datapath.observed import Seen
from vspan.datapath.remote import MirrorSender as MirrorSender
from vspan.datapath.remote import RemoteMirrors as RemoteMirrors
from vspan.datapath.remote import SenderStats as SenderStats
from vspan.datapath.stages.base import EgressStage, IngressStage
from vspan.ports.base import Frame


class Checker(Protocol):
    """Executes per-frame checks. ``wire`` is the VLAN operation (op, VID) that puts the
    judged frame in its port's wire format (egress checks; ``(0, 0)`` on ingress).

    A checker may also offer ``native_cell(check) -> list | None`` (the policy layer's
    :class:`~vspan.policy.checks.PolicyChecks` does): the cell through which the native
    replay steps the check itself (``docs/datapath.md``, "Stateful checks"); without it
    every frame with a check takes the Python replay."""

    def peek(self, check: Check, data: bytes, key: FlowKey, now: float,
             wire: tuple[int, int]) -> CheckOutcome:
        """What the check would do with this frame; changes nothing."""
        ...

    def commit(self, check: Check, data: bytes, key: FlowKey, now: float,
               wire: tuple[int, int]) -> CheckOutcome:
        """Do the check: update its state, count, queue answers."""
        ...


class Policy(Protocol):
    """The policy layer as the engine drives it."""

    @property
    def checker(self) -> Checker:
        """Runs the checks the stages put in decisions."""
        ...

    @property
    def ingress(self) -> Sequence[IngressStage]:
        """Stages judging frames a port sends."""
        ...

    @property
    def egress(self) -> Sequence[EgressStage]:
        """Stages judging frames delivered to a port."""
        ...

    @property
    def replies(self) -> list[Reply]:
        """Reject answers queued by committed checks (the engine drains them)."""
        ...

    def apply(self, new: Config, changes: ChangeSet) -> frozenset[str]:
        """Install ``new``'s policy as ``changes`` says; return the names of the ports whose
        cached decisions it may change."""
        ...

    def expire(self, now: float) -> None:
        """Housekeeping: forget idle sessions and connections."""
        ...

    def take_replies(self) -> list[Reply]:
        """Reject answers queued by committed checks (and forget them)."""
        ...

    def counters(self) -> dict[str, Any]:
        """Policy counters for show/metrics."""
        ...


class NoPolicy:
    """No policy at all (a switch assembled without the policy layer)."""

    ingress: Sequence[IngressStage] = ()
    egress: Sequence[EgressStage] = ()

    def __init__(self) -> None:
        self.checker: Checker = _NoChecks()
        self.replies: list[Reply] = []

    def apply(self, new: Config, changes: ChangeSet) -> frozenset[str]:
        """Nothing to install."""
        return frozenset()

    def expire(self, now: float) -> None:
        """Nothing to expire."""

    def take_replies(self) -> list[Reply]:
        """Never any."""
        return []

    def counters(self) -> dict[str, Any]:
        """Empty."""
        return {}


class _NoChecks:
    """Without stages no decision holds a check: every check passes."""

    def peek(self, check: Check, data: bytes, key: FlowKey, now: float,
             wire: tuple[int, int]) -> CheckOutcome:
        return PASS

    commit = peek


class CaptureTap(Protocol):
    """A running capture on switch ports (``vspan capture``)."""

    id: int
    members: dict[tuple[int, str], str]  # team member points: (team index, member) -> name

    @property
    def full(self) -> bool:
        """Whether it has written all it may."""
        ...

    def rx(self, idx: int, data: bytes, frame_drops: list[Drop], pid: int = 0) -> None:
        """A frame port ``idx`` sent into the switch, with the drops it met (``pid``: the
        frame's packet id, shared by every point that sees it)."""
        ...

    def tx(self, idx: int, data: bytes, pid: int = 0) -> None:
        """A frame the switch delivered to port ``idx``."""
        ...

    def member(self, idx: int, member: str, inbound: bool, data: bytes, pid: int) -> None:
        """A frame team ``idx`` received on (or sent out of) its member ``member``."""
        ...

    def dropped(self, idx: int, data: bytes, drop: Drop, in_port: int) -> None:
        """A frame bound for port ``idx`` dropped there."""
        ...

    def annotate(self, text: str) -> None:
        """Say ``text`` in the capture (e.g. that a VM migrated)."""
        ...

    def stop_reason(self, now: float) -> str:
        """Why the switch should stop this capture by itself now ("" = it should not)."""
        ...

    def close(self) -> None:
        """Finish the file."""
        ...

    def summary(self) -> dict[str, object]:
        """What was captured."""
        ...


class FrameObserver(Protocol):
    """A running ``vspan observe``: told every frame's fate while it is attached.

    Called on the engine thread for every frame (cache hits, upcalls and the
    switch's own reject answers alike); it must stay cheap: filter, sample and
    rate-limit here, format elsewhere.
    """

    id: int

    def observe(self, seen: Seen, now: float) -> None:
        """One frame and what the switch did with it (``now``: the engine's clock for the
        frame's batch)."""
        ...

    def simple(self, in_port: int, frames: list[tuple[Frame, int, object]],
               now: float) -> None:
        """Frames of one batch that cached decisions delivered unchanged to one port each
        and did nothing else with: the common case, told once per batch as (frame, output
        port, fast flow key — equal keys, equal flow keys) without a :class:`Seen`."""
        ...
