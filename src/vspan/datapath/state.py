"""The switch's runtime state, compiled from a :class:`vspan.config.model.Config`.

Ports and mirror sessions keep a stable integer index for the life of the
switch (flow keys, the FDB and cached actions refer to them by index); a
removed one's index is never reused. :meth:`SwitchState.apply` says what a
configuration change touched, so the flow cache forgets exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vspan.config.diff import ChangeSet
from vspan.config.model import Config, Direction, MirrorSession, PortConfig, VlanMode
from vspan.config.pvlan import PvlanVlan, pvlan_vlans
from vspan.datapath.counters import DropCounters, SwitchPortCounters
from vspan.datapath.decision import (
    MIRROR_ERSPAN,
    MIRROR_LOCAL,
    MIRROR_RSPAN,
    MIRROR_RSPAN_IN,
)
from vspan.datapath.fdb import Fdb
from vspan.datapath.remote import MirrorSender
from vspan.packet.flowmatch import FlowMatch, compile_match
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
    # private VLAN port: its mode ("" = not one), primary, and every VID of its domain
    # (all leave it untagged; docs/pvlan.md)
    pvlan_mode: str = ""
    pvlan_primary: int = 0
    pvlan_vids: frozenset[int] = frozenset()
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

    def compile_vlan(self, pvlans: dict[int, PvlanVlan] | None = None) -> None:
        """Fill the VLAN membership fields from the port's config (``pvlans``: every VID
        of every private VLAN domain, for a PVLAN port)."""
        v = self.config.vlan
        self.mtu = self.config.effective_mtu() or 0
        vx = self.config.vxlan
        pv = self.config.pvlan
        self.pvlan_mode, self.pvlan_primary, self.pvlan_vids = "", 0, frozenset()
        if pv is not None:  # untagged on the wire; receives its whole domain untagged
            self.pvlan_mode, self.pvlan_primary = pv.mode.value, pv.primary
            self.pvlan_vids = frozenset(
                vid for vid, d in (pvlans or {}).items() if d.primary == pv.primary
            ) | {pv.primary, pv.own_vid}
            self.untagged_vlan = self.egress_untagged = pv.own_vid
            self.tagged_vlans = frozenset()
        elif vx is not None:  # overlay: its VNI map's VLANs, VLAN 0 (untagged network) untagged
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
        members = set(self.tagged_vlans) | self.pvlan_vids
        if self.untagged_vlan != NO_VLAN:
            members.add(self.untagged_vlan)
        self.members = frozenset(members)

    def snapshot(self) -> tuple[object, ...]:
        """Everything of the port a cached decision may have read."""
        return (self.config, self.link, self.untagged_vlan, self.tagged_vlans,
                self.egress_untagged, self.pvlan_vids, self.mirror_dest, self.allow_normal_io,
                self.mirror_ingress, self.mirror_egress, tuple(sorted(self.rspan_in.items())))


@dataclass(slots=True)
class MirrorRuntime:
    """A mirror session as the engine applies it, with its counters."""

    index: int
    name: str
    config: MirrorSession
    dest_ports: tuple[int, ...] = ()
    kind: str = MIRROR_LOCAL
    uplink: int = 0  # RSPAN: the port copies leave by (a receiving session: arrive on)
    filter: FlowMatch | None = None
    sender: MirrorSender | None = None  # ERSPAN: managed by the engine's remote mirrors
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

    def ports(self, by_name: dict[str, int]) -> set[int]:
        """Every port the session names: sources, destinations, RSPAN uplink, the port an
        RSPAN VLAN arrives on (a receiving or relaying session)."""
        c = self.config
        out = {by_name[s.port] for s in c.sources if s.port in by_name}
        out.update(self.dest_ports)
        if self.kind in (MIRROR_RSPAN, MIRROR_RSPAN_IN):
            out.add(self.uplink)
        if c.rspan_source is not None and c.rspan_source.port in by_name:
            out.add(by_name[c.rspan_source.port])
        return out

    def counters(self) -> dict[str, int]:
        """Counters as a mapping."""
        extra: dict[str, int] = {}
        if self.sender is not None:
            sc = self.sender.counters
            extra = {"encap_sent": sc.sent, "encap_truncated": sc.truncated,
                     "encap_errors": sc.errors, "loop_skipped": sc.loop_skipped,
                     "encap_link_layer": sc.link_layer, "encap_unresolved": sc.unresolved}
        return extra | {
            "mirrored": self.mirrored,
            "truncated": self.truncated,
            "dropped": self.dropped,
            "sampled_out": self.sampled_out,
            "offered": self.seen,
            "bytes": self.bytes,
        } | ({"capped": self.capped, "cap_bytes": self.bytes - self.cap_base}
             if self.config.max_bytes is not None else {})


@dataclass(frozen=True, slots=True)
class Touched:
    """What a change of the runtime touched: the flow cache forgets decisions that read it."""

    ports: frozenset[int] = frozenset()  # port indexes whose settings changed
    vlans: frozenset[int] = frozenset()  # VLANs whose member set may have changed
    macs: tuple[tuple[int, bytes], ...] = ()  # (VLAN, MAC) pairs the MAC table forgot

    def __or__(self, other: Touched) -> Touched:
        return Touched(self.ports | other.ports, self.vlans | other.vlans,
                       self.macs + other.macs)


class SwitchState:
    """Ports, FDB, mirror sessions and counters."""

    def __init__(self, config: Config) -> None:
        self.config = Config()
        self.ports: dict[int, PortRuntime] = {}
        self.by_name: dict[str, int] = {}
        self.port_names: dict[int, str] = {}  # every index ever used (for counters)
        self.mirrors: dict[int, MirrorRuntime] = {}
        self.mirror_by_name: dict[str, int] = {}
        self.pvlans: dict[int, PvlanVlan] = {}  # every VID of a private VLAN domain
        self.fdb = Fdb(config.switch.fdb_max_entries, config.switch.fdb_aging_seconds)
        self.drops = DropCounters()
        self._next_index = 1
        self._next_mirror = 0
        from vspan.config.diff import diff

        self.apply(config, diff(self.config, config))

    def port(self, name: str) -> PortRuntime:
        """The runtime port called ``name`` (KeyError if none)."""
        return self.ports[self.by_name[name]]

    def fdb_vlan(self, vlan: int) -> int:
        """The MAC table a frame of ``vlan`` learns in and looks up: a private VLAN's
        secondaries share their primary's (as PVLAN switches do)."""
        pv = self.pvlans.get(vlan)
        return vlan if pv is None else pv.primary

    def touch_ports(self, indexes: set[int]) -> Touched:
        """The ports ``indexes`` changed (link, loop guard): what that touches."""
        vlans: set[int] = set()
        for i in indexes:
            rt = self.ports.get(i)
            if rt is not None:
                vlans |= rt.members
        return Touched(frozenset(indexes), frozenset(vlans))

    def apply(self, new: Config, changes: ChangeSet) -> Touched:
        """Bring the runtime in line with ``new`` as ``changes`` (the change set from the
        running configuration, computed once by the caller) says; backends and policy are
        not touched here. Returns what changed."""
        before = {i: (rt.snapshot(), rt.members) for i, rt in self.ports.items()}
        mirror_ports: set[int] = set()
        for name in (*changes.mirrors_removed, *changes.mirrors_changed):
            m = self.mirrors.get(self.mirror_by_name.get(name, -1))
            if m is not None:
                mirror_ports |= m.ports(self.by_name)
        forgot: list[tuple[int, bytes]] = []
        pvlans = pvlan_vlans({n: p.pvlan for n, p in new.ports.items()})
        # VIDs that joined, left or changed a PVLAN domain: their MAC tables (and the
        # primaries' they share) and every decision in them are stale
        moved = {vid for vid in set(pvlans) | set(self.pvlans)
                 if pvlans.get(vid) != self.pvlans.get(vid)}
        moved |= {d.primary for vid in moved for d in (pvlans.get(vid), self.pvlans.get(vid))
                  if d is not None}
        if moved:
            forgot += self.fdb.flush_vlans(moved)
        self.pvlans = pvlans
        for name in changes.ports_removed:
            idx = self.by_name.pop(name)
            del self.ports[idx]
            forgot += self.fdb.flush_port(idx)
        for name in changes.ports_added:
            idx = self._next_index
            self._next_index += 1
            self.by_name[name] = idx
            self.port_names[idx] = name
            self.ports[idx] = PortRuntime(idx, name, new.ports[name])
        for rt in self.ports.values():
            old = rt.config
            rt.config = new.ports[rt.name]
            old_vnis = old.vxlan.vnis if old.vxlan is not None else None
            new_vnis = rt.config.vxlan.vnis if rt.config.vxlan is not None else None
            if (rt.config.vlan != old.vlan or old_vnis != new_vnis or old.pvlan != rt.config.pvlan
                    or (old.enabled and not rt.config.enabled)):
                forgot += self.fdb.flush_port(rt.index)
            rt.compile_vlan(pvlans)
        self.fdb.aging_seconds = new.switch.fdb_aging_seconds
        self.fdb.max_entries = new.switch.fdb_max_entries
        self._compile_mirrors(new)
        self.config = new
        for name in (*changes.mirrors_added, *changes.mirrors_changed):
            mirror_ports |= self.mirrors[self.mirror_by_name[name]].ports(self.by_name)
        ports = set(mirror_ports)
        vlans: set[int] = set()
        for i in set(before) | set(self.ports):
            old_snap, old_members = before.get(i, (None, frozenset()))
            now_rt = self.ports.get(i)
            if now_rt is None or now_rt.snapshot() != old_snap:
                ports.add(i)
                vlans |= old_members | (now_rt.members if now_rt is not None else frozenset())
        for i, rt in self.ports.items():
            if moved & (rt.members | before.get(i, (None, frozenset()))[1]):
                ports.add(i)
                vlans |= moved
        for i in mirror_ports:
            src_rt = self.ports.get(i)
            if src_rt is not None:
                vlans |= src_rt.members
        return Touched(frozenset(ports), frozenset(vlans), tuple(forgot))

    def _compile_mirrors(self, new: Config) -> None:
        old = {m.name: m for m in self.mirrors.values()}
        self.mirrors = {}
        by_name: dict[str, int] = {}
        for rt in self.ports.values():
            rt.mirror_dest = False
            rt.allow_normal_io = True
            rt.mirror_ingress = ()
            rt.mirror_egress = ()
            rt.rspan_in = {}
        for name, sess in new.mirrors.items():
            prev = old.get(name)
            if prev is not None:
                i = prev.index
            else:
                i = self._next_mirror
                self._next_mirror += 1
            by_name[name] = i
            m = MirrorRuntime(i, name, sess, tuple(self.by_name[d] for d in sess.destinations))
            if sess.rspan is not None:
                m.kind, m.uplink = MIRROR_RSPAN, self.by_name[sess.rspan.port]
            elif sess.erspan is not None:
                m.kind = MIRROR_ERSPAN
            elif sess.rspan_source is not None:
                m.kind, m.uplink = MIRROR_RSPAN_IN, self.by_name[sess.rspan_source.port]
            if sess.filter:
                m.filter = compile_match(sess.filter)
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
            self.mirrors[i] = m
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
        self.mirror_by_name = by_name


_LIFECYCLE = {"enabled": True, "stop_at": None, "max_bytes": None}


def _same_session(old: MirrorSession, new: MirrorSession) -> bool:
    """Whether ``new`` is ``old`` enabled, disabled or with other limits (nothing else)."""
    return old.model_copy(update=_LIFECYCLE) == new.model_copy(update=_LIFECYCLE)
