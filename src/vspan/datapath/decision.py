"""What the pipeline decides for one flow: a plain action list, replayed for every frame.

A :class:`Decision` holds a tuple of actions executed in order (the format is
described in ``docs/datapath.md``; a native replay and a kernel offload read the
same lists):

* :class:`Mirror` — copy the frame to a mirror session (filter-by-length,
  1-in-n sampling and truncation are parameters of the action);
* :class:`Check` — a per-frame stateful check (firewall connection tracking,
  stateful extended ACL sessions, storm limit, meter) named by data; when it
  fails, the frame goes no further;
* :class:`Learn` / :class:`Refresh` — learn a source MAC (slow path only) or
  refresh its age (per frame), after the ingress checks passed;
* :class:`Drop` — count a drop (reason, port, deciding rule);
* :class:`Output` — deliver to a port with a VLAN operation, guarded by its
  own egress checks (a failing one stops this output only), followed by the
  egress copies of the frame as delivered.

Everything is data (ints, bytes, strings, tuples): no closures.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from vspan.datapath.reasons import DropReason

# VLAN operations applied to a frame on its way out of a port
VLAN_KEEP = 0  # deliver the frame's tags as they are
VLAN_POP = 1  # remove the outer tag
VLAN_PUSH = 2  # add an 802.1Q tag with ``vid``
VLAN_SET = 3  # rewrite the outer tag's VID (priority-tagged frames)

VLAN_OP_NAMES = {VLAN_KEEP: "keep", VLAN_POP: "pop", VLAN_PUSH: "push", VLAN_SET: "set"}

# where a mirror copy is taken
POINT_INGRESS = "ingress"  # the frame as the source port sent it (before any policy)
POINT_EGRESS = "egress"  # the frame as delivered to the source port
POINT_RSPAN = "rspan"  # a frame of an RSPAN VLAN received on the uplink (remote destination)

# how a mirror session carries its copies
MIRROR_LOCAL = "local"
MIRROR_RSPAN = "rspan"
MIRROR_ERSPAN = "erspan"
MIRROR_RSPAN_IN = "rspan-destination"


@dataclass(frozen=True, slots=True)
class Drop:
    """One frame (or one copy of it) not delivered, and why."""

    reason: DropReason
    port: int  # where it was dropped (ingress port, or the output port for egress drops)
    rule: str = ""  # id of the deciding rule, when a rule decided
    detail: str = ""


class CheckKind(enum.IntEnum):
    """The per-frame stateful checks the policy layer implements."""

    STORM = 1  # token bucket of a traffic class at a port (rule = class name)
    METER = 2  # ACL meter entry counting packets and bytes (rule = entry id; never drops)
    EXT_ACL = 3  # stateful extended ACL sessions (rule = deciding rule id or "")
    FIREWALL = 4  # connection tracking of the distributed firewall (rule = rule for NEW)


class Check(NamedTuple):
    """A per-frame stateful check identified by data.

    ``kind`` says which; ``port`` is the index of the port whose state it reads and changes,
    ``direction`` is seen from that port (``in``: delivered to it; ``out``: sent
    by it), ``rule`` names the deciding rule or entry, ``flags`` and ``param``
    carry the rest of the cacheable decision (their meaning is per kind, see
    ``docs/datapath.md``).
    """

    kind: CheckKind
    port: int
    direction: str
    rule: str = ""
    flags: int = 0
    param: int = 0
    vlan: int = 0  # the VLAN the checked frame is switched in (what answers' copies carry)


@dataclass(frozen=True, slots=True)
class Reply:
    """A frame a check wants sent (a firewall reject answer).

    ``to_port`` True: deliver out of ``port`` (to its VM, through its egress
    taps); False: switch it as if ``port`` had sent it (not judged by policy
    again). ``vlan``: the VLAN the answered frame was switched in (the answer's
    mirror copies carry it).
    """

    port: int
    to_port: bool
    data: bytes
    vlan: int = 0


class CheckOutcome(NamedTuple):
    """What one check did (commit) or would do (peek) with one frame. Committing checks
    may leave ``note`` and ``effects`` empty (only a peek needs them)."""

    drop: Drop | None = None  # the frame stops here
    note: str = ""  # one line for the trace
    effects: tuple[tuple[object, ...], ...] = ()  # (table, port, key, state after | None)
    reply: Reply | None = None  # an answer to the frame's sender (queued when committed)


PASS = CheckOutcome()

ALL_LENGTHS: tuple[tuple[int, int], ...] = ()  # a mirror copy not limited by frame length


@dataclass(frozen=True, slots=True)
class Mirror:
    """Copy the frame into mirror session ``session``.

    ``lengths``: the session filter passes this flow's frames only when their
    length (as seen here) lies in one of these inclusive ranges (empty: any
    length). ``sample``: 1 in n of the frames the session is offered is copied.
    ``truncate``: copies are cut to this many bytes (0: whole). ``vlan_op``/``vid``
    apply to the copy (RSPAN delivery strips the mirror VLAN's tag). ``vlan`` is
    what ERSPAN headers and RSPAN copies say the frame's VLAN was.
    """

    session: int  # index into the switch's mirror sessions
    point: str  # POINT_INGRESS / POINT_EGRESS / POINT_RSPAN
    encap: str = MIRROR_LOCAL  # MIRROR_LOCAL / MIRROR_RSPAN / MIRROR_ERSPAN (the session's)
    vlan_op: int = VLAN_KEEP
    vid: int = 0
    truncate: int = 0
    sample: int = 1
    lengths: tuple[tuple[int, int], ...] = ALL_LENGTHS
    vlan: int = 0  # the VLAN the frame is switched in (0: untagged network / not classified)

    @property
    def plain(self) -> bool:
        """A whole copy of every frame, as it is (no filter length, sampling, cut, tag op)."""
        return (not self.lengths and self.sample <= 1 and not self.truncate
                and self.vlan_op == VLAN_KEEP)


@dataclass(frozen=True, slots=True)
class Learn:
    """Learn ``mac`` on ``port`` in ``vlan`` (new or moved): never cached."""

    vlan: int
    mac: bytes
    port: int


@dataclass(frozen=True, slots=True)
class Refresh:
    """Refresh the age of the learned ``mac`` (known on ``port``) in ``vlan``."""

    vlan: int
    mac: bytes
    port: int


@dataclass(frozen=True, slots=True)
class Output:
    """Deliver to one port with a VLAN operation, if its egress checks pass."""

    port: int
    vlan_op: int = VLAN_KEEP
    vid: int = 0
    checks: tuple[Check, ...] = ()  # a failing check stops this output only
    mirrors: tuple[Mirror, ...] = ()  # egress copies of the frame as delivered
    mtu: int = 0  # largest IP packet the port takes (checked per frame); 0 = unchecked
    wire: tuple[int, int] = field(default=(VLAN_KEEP, 0), init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wire", (self.vlan_op, self.vid))  # what its checks get


Action = Mirror | Check | Learn | Refresh | Drop | Output

# opcodes of the actions (Decision.program): what a replay dispatches on
OP_OUTPUT, OP_CHECK, OP_MIRROR, OP_REFRESH, OP_DROP, OP_LEARN = range(6)
_OPCODES: Mapping[type, int] = MappingProxyType({
    Output: OP_OUTPUT, Check: OP_CHECK, Mirror: OP_MIRROR, Refresh: OP_REFRESH, Drop: OP_DROP,
    Learn: OP_LEARN})


@dataclass(frozen=True, slots=True)
class Deps:
    """What a decision read, so it is forgotten exactly when that changes.

    ``macs``: (VLAN, MAC) pairs looked up in the MAC table, found or not;
    ``ports``: ports whose settings it used (ingress, outputs, egress drops);
    ``flood_vlan``: the VLAN it flooded in (depends on the VLAN's members);
    ``fdb_room``: decided by a full MAC table or a port's MAC limit.
    """

    macs: tuple[tuple[int, bytes], ...] = ()
    ports: frozenset[int] = frozenset()
    flood_vlan: int | None = None
    fdb_room: bool = False


NO_DEPS = Deps()


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Decision:
    """Everything the switch does with frames of one flow (equal decisions of different
    flows are one object in the flow cache: see :class:`~vspan.datapath.upcall.Upcall`)."""

    actions: tuple[Action, ...] = ()
    cacheable: bool = True
    deps: Deps = NO_DEPS
    flood: bool = False  # the frame is flooded (counted per frame on the ingress port)
    simple_port: int = field(default=0, init=False, compare=False)  # one plain output
    needs_key: bool = field(default=False, init=False, compare=False)  # checks read the key
    refresh: Refresh | None = field(default=None, init=False, compare=False)
    program: tuple[tuple[int, Any], ...] = field(default=(), init=False, compare=False)

    def __post_init__(self) -> None:
        out: Output | None = None
        others = 0
        checks = False
        for a in self.actions:
            if isinstance(a, Output):
                checks = checks or bool(a.checks)
                out = a
                others += 1
            elif isinstance(a, Refresh):
                object.__setattr__(self, "refresh", a)
            else:
                checks = checks or isinstance(a, Check)
                others += 1
        object.__setattr__(self, "needs_key", checks)
        object.__setattr__(self, "program", tuple((_OPCODES[type(a)], a) for a in self.actions))
        if (out is not None and others == 1 and not self.flood and out.vlan_op == VLAN_KEEP
                and not out.checks and not out.mirrors and not out.mtu):
            object.__setattr__(self, "simple_port", out.port)

    @property
    def outputs(self) -> tuple[Output, ...]:
        """The outputs, in order."""
        return tuple(a for a in self.actions if type(a) is Output)

    @property
    def drops(self) -> tuple[Drop, ...]:
        """The static drops (those decided per flow), in order."""
        return tuple(a for a in self.actions if type(a) is Drop)

    @property
    def learn(self) -> Learn | None:
        """The learning this decision asks for, if any."""
        return next((a for a in self.actions if type(a) is Learn), None)

    def mirrors(self) -> tuple[Mirror, ...]:
        """Every mirror copy, ingress and egress."""
        out: list[Mirror] = []
        for a in self.actions:
            if type(a) is Mirror:
                out.append(a)
            elif type(a) is Output:
                out.extend(a.mirrors)
        return tuple(out)
