"""Port ACLs with Hyper-V semantics (``Add-VMNetworkAdapterAcl``).

An entry names one or two addresses of one kind — IP (``local_ip`` /
``remote_ip``: an IPv4/IPv6 address or prefix, or ``any``) or MAC
(``local_mac`` / ``remote_mac``: an address or ``any``) — a direction
(``in``, ``out`` or ``both``; ``both`` puts one copy of the entry in each
direction's list) and an action: ``allow``, ``deny`` or ``meter``. "Local" is
the port's side: the destination of an inbound frame, the source of an
outbound one. An address left out is ``any``.

Entries are **unordered**: the most specific matching entry decides.

Precedence (first difference decides; documented in ``docs/policy.md``):

1. **Specific MAC entries** (at least one MAC given, not ``any``) beat
   everything else; one naming both MACs beats one naming one; a remote-MAC
   entry beats a local-MAC entry.
2. **Specific IP entries** (at least one prefix, ``0.0.0.0/0`` and ``::/0``
   count as specific to their family) — the entry with more pinned bits
   wins: its score is ``(remote_len + 1) + (local_len + 1)`` with an ``any``
   side counting 0 (so ``0.0.0.0/0`` beats ``any``). At equal score the longer
   remote prefix wins.
3. **IP ``any``** (every address ``any``; it matches IPv4 and IPv6 frames only).
4. **MAC ``any``** (matches every frame, IP or not).

   Rationale: each step matches a subset of the next ones' traffic, so the
   order is "most specific wins" throughout (an ``any`` entry matches fewer
   frames as an IP entry than as a MAC entry).

5. Equal scope (same addresses): ``deny`` beats ``allow``; two entries with the
   same scope and action: the one listed first is reported.

IP entries apply to IPv4/IPv6 frames only; ARP and other non-IP frames are
judged by MAC entries alone (so "deny any IP" does not break ARP). When no
entry matches, the frame is **allowed** (Hyper-V default).

``meter`` entries do not decide: they are resolved separately by the same
precedence, and the winning meter entry counts the frame's packets and bytes
when the ACL allows it.

Lookup is a tuple-space search: entries are grouped by (kind, family, remote
prefix length, local prefix length); each group is a hash from the masked
address pair to its entries; groups are probed in precedence order and the
first hit decides. A lookup costs at most one probe per distinct group shape
present (<= 33 x 33 for IPv4), independent of the number of entries.

The verdict depends only on FlowKey fields, so it is cacheable; the meter
count is the per-frame part (:meth:`AclVerdict.account`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from vspan.datapath.flowkey import FlowKey
from vspan.datapath.reasons import DropReason
from vspan.datapath.trace import NULL_TRACER, Tracer
from vspan.policy.common import (
    DIRECTIONS,
    Dir,
    IpSpec,
    MacSpec,
    family_of,
    local_remote_ip,
    local_remote_mac,
    mac_str,
    spec_str,
)


class AclAction(enum.StrEnum):
    """What a port ACL entry does."""

    ALLOW = "allow"
    DENY = "deny"
    METER = "meter"


KIND_IP = "ip"
KIND_MAC = "mac"


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One port ACL entry. Build with :meth:`ip` or :meth:`mac`."""

    id: str
    action: AclAction
    directions: tuple[Dir, ...]
    kind: str  # KIND_IP or KIND_MAC
    local_ip: IpSpec = None
    remote_ip: IpSpec = None
    local_mac: MacSpec = None
    remote_mac: MacSpec = None

    @classmethod
    def ip(
        cls,
        id: str,
        action: AclAction | str,
        directions: tuple[Dir, ...],
        local: IpSpec = None,
        remote: IpSpec = None,
    ) -> AclEntry:
        """An IP entry; ``None`` means ``any``. Local and remote must be one family."""
        if local is not None and remote is not None and local.family != remote.family:
            raise ValueError(f"ACL {id}: local and remote addresses are of different families")
        return cls(id, AclAction(action), directions, KIND_IP, local_ip=local, remote_ip=remote)

    @classmethod
    def mac(
        cls,
        id: str,
        action: AclAction | str,
        directions: tuple[Dir, ...],
        local: MacSpec = None,
        remote: MacSpec = None,
    ) -> AclEntry:
        """A MAC entry; ``None`` means ``any``."""
        for m in (local, remote):
            if m is not None and len(m) != 6:
                raise ValueError(f"ACL {id}: a MAC address has 6 bytes")
        return cls(id, AclAction(action), directions, KIND_MAC, local_mac=local, remote_mac=remote)

    @property
    def family(self) -> int:
        """4 or 6 for an IP entry pinned to a family, 0 for MAC entries and IP ``any``."""
        for p in (self.local_ip, self.remote_ip):
            if p is not None:
                return p.family
        return 0

    def rank(self) -> tuple[int, int, int]:
        """Precedence key: higher wins (see the module docstring)."""
        if self.kind == KIND_MAC:
            rs, ls = self.remote_mac is not None, self.local_mac is not None
            if rs or ls:
                return (3, int(rs) + int(ls), int(rs))
            return (0, 0, 0)
        rlen = -1 if self.remote_ip is None else self.remote_ip.length
        llen = -1 if self.local_ip is None else self.local_ip.length
        if rlen < 0 and llen < 0:
            return (1, 0, 0)
        return (2, (rlen + 1) + (llen + 1), rlen)

    def describe(self) -> str:
        """One-line text: ``deny remote_ip=10.0.0.0/8``."""
        if self.kind == KIND_MAC:
            parts = [
                f"local_mac={'any' if self.local_mac is None else mac_str(self.local_mac)}",
                f"remote_mac={'any' if self.remote_mac is None else mac_str(self.remote_mac)}",
            ]
        else:
            parts = [f"local_ip={spec_str(self.local_ip)}", f"remote_ip={spec_str(self.remote_ip)}"]
        return f"{self.action.value} {' '.join(parts)}"


def rank_text(rank: tuple[int, int, int]) -> str:
    """Human words for a precedence key."""
    tier = rank[0]
    if tier == 3:
        return "MAC entry (both MACs)" if rank[1] == 2 else "MAC entry"
    if tier == 2:
        return f"IP entry (specificity {rank[1]})"
    if tier == 1:
        return "IP any"
    return "MAC any"


@dataclass(slots=True)
class MeterCounter:
    """Packets and bytes counted by one meter entry in one direction."""

    rule_id: str
    direction: Dir
    packets: int = 0
    bytes: int = 0

    def add(self, nbytes: int) -> None:
        """Count one frame of ``nbytes``."""
        self.packets += 1
        self.bytes += nbytes


class AclCandidate(NamedTuple):
    """A matching entry and what became of it (for explain and trace)."""

    entry: AclEntry
    won: bool
    why: str


class AclVerdict(NamedTuple):
    """Result of a port ACL lookup (cacheable per FlowKey and direction)."""

    allowed: bool
    rule_id: str | None  # deciding entry; None = no entry matched (default allow)
    direction: Dir
    meter: MeterCounter | None
    probes: int  # hash probes made (decision + meter tables)
    candidates: tuple[AclCandidate, ...] = ()  # filled when explaining / tracing
    meter_candidates: tuple[AclCandidate, ...] = ()

    @property
    def reason(self) -> DropReason | None:
        """Drop reason when denied."""
        return None if self.allowed else DropReason.ACL_DENY

    def account(self, nbytes: int) -> None:
        """Per-frame hook: count the frame on the meter entry (only if allowed)."""
        if self.meter is not None and self.allowed:
            self.meter.add(nbytes)


def why_lost(loser: AclEntry, winner: AclEntry) -> str:
    """Why ``loser`` did not decide although it matched."""
    lr, wr = loser.rank(), winner.rank()
    if lr != wr:
        if wr[0] != lr[0]:
            words = {
                (3, 2): "a MAC entry beats an IP entry",
                (3, 1): "a MAC entry beats an IP any entry",
                (3, 0): "a specific MAC entry beats MAC any",
                (2, 1): "a specific IP entry beats IP any",
                (2, 0): "a specific IP entry beats MAC any",
                (1, 0): "IP any is more specific than MAC any (it matches IP frames only)",
            }
            return words.get((wr[0], lr[0]), "less specific")
        if wr[0] == 3:
            if wr[1] != lr[1]:
                return "an entry naming both MACs beats one naming one"
            return "at equal specificity a remote-MAC entry beats a local-MAC entry"
        if wr[1] != lr[1]:
            return (
                f"{winner.id} is more specific ({_ip_scope(winner)} beats {_ip_scope(loser)})"
            )
        return "equal specificity: the longer remote prefix wins"
    if loser.action != winner.action:
        return "same addresses: deny beats allow"
    return f"same addresses and action as {winner.id}, which is listed first"


def _ip_scope(e: AclEntry) -> str:
    parts = []
    if e.remote_ip is not None:
        parts.append(f"remote /{e.remote_ip.length}")
    if e.local_ip is not None:
        parts.append(f"local /{e.local_ip.length}")
    return " + ".join(parts) or "any"


class _Group:
    """Entries of one shape; hash from masked (remote, local) to entries."""

    __slots__ = ("buckets", "kind", "llen", "lshift", "rank", "rlen", "rshift")

    def __init__(self, kind: str, family: int, rlen: int, llen: int, rank: tuple[int, int, int]):
        width = 32 if family == 4 else 128
        self.kind = kind
        self.rlen = rlen
        self.llen = llen
        self.rshift = width - rlen if rlen >= 0 else 0
        self.lshift = width - llen if llen >= 0 else 0
        self.rank = rank
        self.buckets: dict[tuple[object, object], list[tuple[int, AclEntry]]] = {}


def _entry_shape(e: AclEntry) -> tuple[str, int, int, int]:
    if e.kind == KIND_MAC:
        return (KIND_MAC, 0, int(e.remote_mac is not None), int(e.local_mac is not None))
    rlen = -1 if e.remote_ip is None else e.remote_ip.length
    llen = -1 if e.local_ip is None else e.local_ip.length
    return (KIND_IP, e.family, rlen, llen)


def _entry_hkey(e: AclEntry, g: _Group) -> tuple[object, object]:
    if e.kind == KIND_MAC:
        return (e.remote_mac or b"", e.local_mac or b"")
    r = -1 if e.remote_ip is None else e.remote_ip.value >> g.rshift
    loc = -1 if e.local_ip is None else e.local_ip.value >> g.lshift
    return (r, loc)


class _Table:
    """One direction, one action class (deciding entries or meter entries)."""

    __slots__ = ("_by_family", "size")

    def __init__(self, entries: Iterable[tuple[int, AclEntry]]) -> None:
        groups: dict[tuple[str, int, int, int], _Group] = {}
        self.size = 0
        for order, e in entries:
            shape = _entry_shape(e)
            g = groups.get(shape)
            if g is None:
                g = groups[shape] = _Group(shape[0], shape[1], shape[2], shape[3], e.rank())
            g.buckets.setdefault(_entry_hkey(e, g), []).append((order, e))
            self.size += 1
        for g in groups.values():
            for bucket in g.buckets.values():
                bucket.sort(key=lambda oe: (oe[1].action != AclAction.DENY, oe[0]))
        ordered = sorted(groups.values(), key=lambda g: g.rank, reverse=True)
        by_shape = {id(g): shape for shape, g in groups.items()}
        self._by_family: dict[int, tuple[_Group, ...]] = {}
        for fam in (0, 4, 6):
            self._by_family[fam] = tuple(
                g
                for g in ordered
                if g.kind == KIND_MAC or (fam != 0 and by_shape[id(g)][1] in (0, fam))
            )

    def groups(self, family: int) -> int:
        """How many groups a frame of ``family`` may probe (the lookup bound)."""
        return len(self._by_family[family])

    def lookup(
        self, key: FlowKey, direction: Dir, want_all: bool
    ) -> tuple[AclEntry | None, int, list[AclEntry]]:
        """(winner, probes, all matches in precedence order when ``want_all``)."""
        fam = family_of(key)
        order = self._by_family[fam]
        if not order:
            return None, 0, []
        lmac, rmac = local_remote_mac(key, direction)
        r = loc = 0
        if fam:
            lb, rb = local_remote_ip(key, direction)
            loc = int.from_bytes(lb, "big")
            r = int.from_bytes(rb, "big")
        probes = 0
        found: list[AclEntry] = []
        for g in order:
            probes += 1
            hk: tuple[object, object]
            if g.kind == KIND_MAC:
                hk = (rmac if g.rlen else b"", lmac if g.llen else b"")
            else:
                hk = (r >> g.rshift if g.rlen >= 0 else -1, loc >> g.lshift if g.llen >= 0 else -1)
            bucket = g.buckets.get(hk)
            if bucket:
                if not want_all:
                    return bucket[0][1], probes, found
                found.extend(e for _, e in bucket)
        return (found[0] if found else None), probes, found


def _candidates(found: list[AclEntry]) -> tuple[AclCandidate, ...]:
    if not found:
        return ()
    win = found[0]
    out = [AclCandidate(win, True, f"most specific match ({rank_text(win.rank())})")]
    out.extend(AclCandidate(e, False, why_lost(e, win)) for e in found[1:])
    return tuple(out)


@dataclass(slots=True)
class _DirTables:
    decide: _Table
    meter: _Table
    meters: dict[str, MeterCounter] = field(default_factory=dict)


class PortAcl:
    """The port ACL of one port: one table per direction (plus meter tables)."""

    __slots__ = ("_dirs", "entries")

    def __init__(self, entries: Iterable[AclEntry] = ()) -> None:
        self.entries: tuple[AclEntry, ...] = tuple(entries)
        seen: set[str] = set()
        for e in self.entries:
            if e.id in seen:
                raise ValueError(f"duplicate ACL id {e.id!r}")
            seen.add(e.id)
        self._dirs: dict[Dir, _DirTables] = {}
        for d in DIRECTIONS:
            mine = [(i, e) for i, e in enumerate(self.entries) if d in e.directions]
            tables = _DirTables(
                _Table((i, e) for i, e in mine if e.action != AclAction.METER),
                _Table((i, e) for i, e in mine if e.action == AclAction.METER),
            )
            for _, e in mine:
                if e.action == AclAction.METER:
                    tables.meters[e.id] = MeterCounter(e.id, d)
            self._dirs[d] = tables

    def __len__(self) -> int:
        return len(self.entries)

    def probe_bound(self, direction: Dir, family: int) -> int:
        """Most hash probes a lookup can make for a frame of ``family`` (0 = non-IP)."""
        t = self._dirs[direction]
        return t.decide.groups(family) + t.meter.groups(family)

    def meter(self, rule_id: str, direction: Dir) -> MeterCounter | None:
        """The counter of meter entry ``rule_id`` in one direction."""
        return self._dirs[direction].meters.get(rule_id)

    def meters(self, direction: Dir | None = None) -> list[MeterCounter]:
        """Meter counters (of one direction or both)."""
        dirs = DIRECTIONS if direction is None else (direction,)
        return [m for d in dirs for m in self._dirs[d].meters.values()]

    def evaluate(
        self,
        key: FlowKey,
        direction: Dir,
        tracer: Tracer = NULL_TRACER,
        explain: bool = False,
    ) -> AclVerdict:
        """Decide ``key`` in ``direction``; cacheable per (FlowKey, direction)."""
        t = self._dirs[direction]
        want_all = explain or tracer.enabled
        win, p1, found = t.decide.lookup(key, direction, want_all)
        mwin, p2, mfound = t.meter.lookup(key, direction, want_all)
        allowed = win is None or win.action == AclAction.ALLOW
        meter = t.meters[mwin.id] if mwin is not None else None
        verdict = AclVerdict(
            allowed,
            None if win is None else win.id,
            direction,
            meter,
            p1 + p2,
            _candidates(found) if want_all else (),
            _candidates(mfound) if want_all else (),
        )
        if tracer.enabled:
            _trace(tracer, verdict)
        return verdict


def _trace(tracer: Tracer, v: AclVerdict) -> None:
    if v.rule_id is None:
        head = f"port ACL {v.direction}: no entry matches -> allow (default)"
    else:
        head = f"port ACL {v.direction}: entry {v.rule_id} -> {'allow' if v.allowed else 'deny'}"
    node = tracer.report("acl", head, rule=v.rule_id, allowed=v.allowed, probes=v.probes)
    tracer.push(node)
    for c in v.candidates:
        tag = "wins" if c.won else "loses"
        tracer.report("acl", f"{c.entry.id} [{c.entry.describe()}] {tag}: {c.why}", rule=c.entry.id)
    if v.meter is not None:
        tracer.report("acl", f"metered by {v.meter.rule_id}", meter=v.meter.rule_id)
    tracer.pop()
