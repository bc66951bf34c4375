"""The switch's runtime state, compiled from a :class:`vspan.config.model.Config`.

Ports keep a stable integer index for the life of the switch (the flow key and
the FDB refer to ports by index); a removed port's index is never reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vspan.capture.filter import PacketFilter, compile_filter
from vspan.config.diff import ChangeSet, diff
from vspan.config.model import Config, Direction, MirrorSession, PortConfig, VlanMode
from vspan.datapath.counters import DropCounters, SwitchPortCounters
from vspan.datapath.fdb import Fdb
from vspan.ports.base import Port

NO_VLAN = -1  # "untagged frames are not accepted" / "no VLAN leaves untagged"
UNTAGGED_NET = 0  # the internal VLAN of the untagged network


@dataclass(slots=True)
class PortRuntime:
    """One port as the pipeline sees it."""

    index: int
    name: str
    config: PortConfig
    backend: Port | None = None
    link: bool = True
    # VLAN membership compiled from config.vlan
    untagged_vlan: int = UNTAGGED_NET  # VLAN untagged ingress frames join (NO_VLAN: dropped)
    tagged_vlans: frozenset[int] = frozenset()  # VIDs accepted tagged on ingress
    egress_untagged: int = UNTAGGED_NET  # VLAN that leaves this port untagged
    members: frozenset[int] = frozenset()
    mtu: int = 0  # largest IP packet the port carries (0: not checked by the switch)
    # mirror roles
    mirror_dest: bool = False
    allow_normal_io: bool = True
    mirror_ingress: tuple[int, ...] = ()  # sessions copying what this port sends
    mirror_egress: tuple[int, ...] = ()  # sessions copying what this port receives
    rspan_in: dict[int, int] = field(default_factory=dict)  # mirror VLAN -> session (receiver)
    counters: SwitchPortCounters = field(default_factory=SwitchPortCounters)

    @property
    def enabled(self) -> bool:
        """Administratively enabled and link up."""
        return self.config.enabled and self.link

    def compile_vlan(self) -> None:
        """Fill the VLAN membership fields from the port's config."""
        v = self.config.vlan
        self.mtu = self.config.effective_mtu() or 0
        vx = self.config.vxlan
        if vx is not None:  # overlay: its VNI map's VLANs, VLAN 0 (untagged network) untagged
            self.untagged_vlan = UNTAGGED_NET if UNTAGGED_NET in vx.vnis else NO_VLAN
            self.tagged_vlans = frozenset(vid for vid in vx.vnis if vid != UNTAGGED_NET)
            self.egress_untagged = self.untagged_vlan
        elif v.mode is VlanMode.UNTAGGED:
            self.untagged_vlan = UNTAGGED_NET
            self.tagged_vlans = frozenset()
            self.egress_untagged = UNTAGGED_NET
        elif v.mode is VlanMode.ACCESS:
            assert v.id is not None
            self.untagged_vlan = v.id
            self.tagged_vlans = frozenset()  # untagged on the wire: no tag, not even its own
            self.egress_untagged = v.id
        else:
            native = v.native if v.native is not None else NO_VLAN
            self.untagged_vlan = native
            self.tagged_vlans = frozenset(v.allowed) | (
                frozenset((native,)) if native != NO_VLAN else frozenset()
            )
            self.egress_untagged = native
        members = set(self.tagged_vlans)
        if self.untagged_vlan != NO_VLAN:
            members.add(self.untagged_vlan)
        self.members = frozenset(members)


MIRROR_LOCAL = "local"
MIRROR_RSPAN = "rspan"
MIRROR_ERSPAN = "erspan"
MIRROR_RSPAN_IN = "rspan-destination"


@dataclass(slots=True)
class MirrorRuntime:
    """A mirror session as the engine applies it, with its counters."""

    index: int
    name: str
    config: MirrorSession
    dest_ports: tuple[int, ...] = ()
    kind: str = MIRROR_LOCAL
    uplink: int = 0  # RSPAN: the port copies leave by (a receiving session: arrive on)
    filter: PacketFilter | None = None
    sender: Any = None  # ERSPAN: a vspan.mirror.encap.RawGreSender, managed by the engine
    dest_error: str = ""  # why the destination cannot be used (copies are dropped)
    loop_guard_port: str = ""  # source port left out: it carries the encapsulated copies
    mirrored: int = 0  # copies delivered
    truncated: int = 0
    dropped: int = 0  # copies lost at the destination (down, tx error)
    sampled_out: int = 0
    seen: int = 0  # frames offered (drives 1-in-n sampling)
    bytes: int = 0  # bytes of the copies sent (as cut; ERSPAN: without the encapsulation)
    capped: int = 0  # copies not sent because config.max_bytes was reached
    cap_base: int = 0  # ``bytes`` when the session was last enabled (max_bytes counts on)

    @property
    def cap_reached(self) -> bool:
        """Whether the session stopped copying at its ``max_bytes``."""
        return self.capped > 0

    @property
    def enabled(self) -> bool:
        """Whether the session copies anything."""
        return self.config.enabled

    def counters(self) -> dict[str, int]:
        """Counters as a mapping."""
        extra: dict[str, int] = {}
        if self.sender is not None:
            sc = self.sender.counters
            extra = {"encap_sent": sc.sent, "encap_truncated": sc.truncated,
                     "encap_errors": sc.errors, "loop_skipped": sc.loop_skipped}
        return extra | {
            "mirrored": self.mirrored,
            "truncated": self.truncated,
            "dropped": self.dropped,
            "sampled_out": self.sampled_out,
            "offered": self.seen,
            "bytes": self.bytes,
        } | ({"capped": self.capped, "cap_bytes": self.bytes - self.cap_base}
             if self.config.max_bytes is not None else {})


class SwitchState:
    """Ports, FDB, mirror sessions and counters; ``generation`` bumps on any change."""

    def __init__(self, config: Config) -> None:
        self.config = Config()
        self.ports: dict[int, PortRuntime] = {}
        self.by_name: dict[str, int] = {}
        self.port_names: dict[int, str] = {}  # every index ever used (for counters)
        self.mirrors: list[MirrorRuntime] = []
        self.fdb = Fdb(config.switch.fdb_max_entries, config.switch.fdb_aging_seconds)
        self.drops = DropCounters()
        self._next_index = 1
        self._config_generation = 0
        self.apply(config, diff(self.config, config))

    @property
    def generation(self) -> int:
        """Changes whenever a cached decision may be stale."""
        return self._config_generation + self.fdb.version

    def bump(self) -> None:
        """Invalidate cached decisions (e.g. a port's link changed)."""
        self._config_generation += 1

    def port(self, name: str) -> PortRuntime:
        """The runtime port called ``name`` (KeyError if none)."""
        return self.ports[self.by_name[name]]

    def apply(self, new: Config, changes: ChangeSet) -> None:
        """Bring the runtime in line with ``new``, as ``changes`` (the change set from the
        running config to ``new``, computed once by the caller) says; backends and policy
        are not touched here."""
        for name in changes.ports_removed:
            idx = self.by_name.pop(name)
            del self.ports[idx]
            self.fdb.flush_port(idx)
        for name in changes.ports_added:
            idx = self._next_index
            self._next_index += 1
            self.by_name[name] = idx
            self.port_names[idx] = name
            self.ports[idx] = PortRuntime(idx, name, new.ports[name])
        for name in (*changes.ports_changed, *changes.ports_reopened):
            rt = self.port(name)
            old_vlan = rt.config.vlan
            old_vnis = rt.config.vxlan.vnis if rt.config.vxlan is not None else None
            rt.config = new.ports[name]
            new_vnis = rt.config.vxlan.vnis if rt.config.vxlan is not None else None
            if rt.config.vlan != old_vlan or old_vnis != new_vnis or not rt.config.enabled:
                self.fdb.flush_port(rt.index)
        for rt in self.ports.values():
            rt.config = new.ports[rt.name]  # also policy-only changes (the port keeps its MACs)
            rt.compile_vlan()
        self.fdb.aging_seconds = new.switch.fdb_aging_seconds
        self.fdb.max_entries = new.switch.fdb_max_entries
        self._compile_mirrors(new)
        self.config = new
        self._config_generation += 1

    def _compile_mirrors(self, new: Config) -> None:
        old = {m.name: m for m in self.mirrors}
        self.mirrors = []
        for rt in self.ports.values():
            rt.mirror_dest = False
            rt.allow_normal_io = True
            rt.mirror_ingress = ()
            rt.mirror_egress = ()
            rt.rspan_in = {}
        for i, (name, sess) in enumerate(new.mirrors.items()):
            prev = old.get(name)
            m = MirrorRuntime(i, name, sess, tuple(self.by_name[d] for d in sess.destinations))
            if sess.rspan is not None:
                m.kind, m.uplink = MIRROR_RSPAN, self.by_name[sess.rspan.port]
            elif sess.erspan is not None:
                m.kind = MIRROR_ERSPAN
            elif sess.rspan_source is not None:
                m.kind, m.uplink = MIRROR_RSPAN_IN, self.by_name[sess.rspan_source.port]
            if sess.filter:
                m.filter = compile_filter(sess.filter)
            if prev is not None and _same_session(prev.config, sess):
                # the same session (perhaps enabled, disabled or given other limits):
                # its counters go on
                m.mirrored, m.truncated, m.dropped = prev.mirrored, prev.truncated, prev.dropped
                m.sampled_out, m.seen = prev.sampled_out, prev.seen
                m.bytes, m.capped, m.cap_base = prev.bytes, prev.capped, prev.cap_base
                if (sess.enabled and not prev.config.enabled) or \
                        sess.max_bytes != prev.config.max_bytes:
                    m.capped, m.cap_base = 0, m.bytes  # a new byte budget from here
            if prev is not None and prev.config == sess:
                m.sender = prev.sender
                m.dest_error = prev.dest_error
            self.mirrors.append(m)
            if not sess.enabled:
                continue
            if sess.rspan_source is not None:  # a receiving (or relaying) session
                rx = self.ports[self.by_name[sess.rspan_source.port]]
                rx.rspan_in[sess.rspan_source.vlan] = i
            for d in m.dest_ports:
                rt = self.ports[d]
                if not rt.mirror_dest:
                    rt.mirror_dest = True
                    rt.allow_normal_io = sess.allow_normal_io
                else:
                    rt.allow_normal_io = rt.allow_normal_io and sess.allow_normal_io
            for src in sess.sources:
                rt = self.ports[self.by_name[src.port]]
                if src.direction in (Direction.INGRESS, Direction.BOTH):
                    rt.mirror_ingress = (*rt.mirror_ingress, i)
                if src.direction in (Direction.EGRESS, Direction.BOTH):
                    rt.mirror_egress = (*rt.mirror_egress, i)


_LIFECYCLE = {"enabled": True, "stop_at": None, "max_bytes": None}


def _same_session(old: MirrorSession, new: MirrorSession) -> bool:
    """Whether ``new`` is ``old`` enabled, disabled or with other limits (nothing else)."""
    return old.model_copy(update=_LIFECYCLE) == new.model_copy(update=_LIFECYCLE)
