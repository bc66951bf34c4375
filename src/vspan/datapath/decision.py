"""What the pipeline decides for one flow: data only, applied by the engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vspan.datapath.fdb import FdbEntry
from vspan.datapath.flowkey import FlowKey
from vspan.datapath.reasons import DropReason

# VLAN operations applied to a frame on its way out of a port
VLAN_KEEP = 0  # deliver the frame's tags as they are
VLAN_POP = 1  # remove the outer tag
VLAN_PUSH = 2  # add an 802.1Q tag with ``vid``
VLAN_SET = 3  # rewrite the outer tag's VID (priority-tagged frames)

VLAN_OP_NAMES = {VLAN_KEEP: "keep", VLAN_POP: "pop", VLAN_PUSH: "push", VLAN_SET: "set"}


@dataclass(frozen=True, slots=True)
class Drop:
    """One frame (or one copy of it) not delivered, and why."""

    reason: DropReason
    port: int  # where it was dropped (ingress port, or the output port for egress drops)
    rule: str = ""  # id of the deciding rule, when a rule decided
    detail: str = ""


# A per-frame check: runs for every frame of a cached flow (stateful policy,
# rate limits). Returns a Drop to stop the frame (or the copy to one port).
Hook = Callable[[bytes, FlowKey, float], Drop | None]


@dataclass(frozen=True, slots=True)
class MirrorCopy:
    """Copy the frame (as seen at ``point``) into mirror session ``session``."""

    session: int  # index into the state's mirror sessions
    point: str  # "ingress" or "egress"
    vlan_op: int = VLAN_KEEP  # egress copies: the frame as delivered to the source port
    vid: int = 0
    vlan: int = 0  # the VLAN the frame is switched in (0: untagged network / not classified)


@dataclass(frozen=True, slots=True)
class Output:
    """Deliver to one port with a VLAN operation, after per-frame hooks pass."""

    port: int
    vlan_op: int = VLAN_KEEP
    vid: int = 0
    hooks: tuple[Hook, ...] = ()
    mirrors: tuple[MirrorCopy, ...] = ()  # egress taps of this port
    mtu: int = 0  # largest IP packet the port takes (checked per frame); 0 = unchecked


@dataclass(frozen=True, slots=True)
class Decision:
    """Everything the engine does with frames of one flow."""

    ingress_mirrors: tuple[MirrorCopy, ...] = ()
    hooks: tuple[Hook, ...] = ()  # per-frame ingress checks (after ingress taps)
    outputs: tuple[Output, ...] = ()
    drops: tuple[Drop, ...] = ()  # static drops (counted per frame)
    learn: tuple[int, bytes, int] | None = None  # (vlan, mac, port) to learn
    refresh: FdbEntry | None = None  # entry whose age is refreshed per frame
    cacheable: bool = True
    flooded: bool = False  # sent to every other port of the VLAN (counted per frame)
    simple_port: int = field(default=0, init=False)  # set when the frame just goes to one port

    def __post_init__(self) -> None:
        if (len(self.outputs) == 1 and not self.ingress_mirrors and not self.hooks
                and not self.drops and not self.flooded):
            o = self.outputs[0]
            if o.vlan_op == VLAN_KEEP and not o.hooks and not o.mirrors and not o.mtu:
                object.__setattr__(self, "simple_port", o.port)
