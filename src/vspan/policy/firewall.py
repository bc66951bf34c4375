"""Distributed firewall (the NSX DFW model), enforced at each port.

Rules live in **sections**, evaluated top to bottom, rules in order; the first
rule that matches decides; if none does, the **default rule** does. A rule
has sources and destinations (the packet's source and destination address:
CIDRs, ``any``, or groups), services (protocol, destination ports, source
ports, ICMP type/code; none = any), an action (``allow``, ``drop``,
``reject``), a direction seen from the port (``in``, ``out`` or both) and
``applied_to`` (ports or groups where it is enforced; empty = the section's,
and an empty section ``applied_to`` = every port the firewall covers).
Sections may be ``tcp_strict`` (no mid-stream pickup, sequence windows
enforced — see :mod:`vspan.policy.tcp`) and ``stateful`` (default) or not.

The firewall judges IP frames; other frames pass this stage.

Stateful: every port has its own :class:`~vspan.policy.conntrack.ConnTrack`.
A frame of a tracked connection (ESTABLISHED) or an ICMP error about one
(RELATED) is allowed without the rules; a frame that contradicts the state is
dropped (``firewall-state-invalid``); a frame of no connection (NEW) is
judged by the rules and, if allowed by a stateful section, starts a
connection. Because state is kept at the port — not at whichever uplink a
frame used — both directions of a flow are always seen together.

``reject`` drops the frame (``firewall-reject``) and answers it with a TCP RST
or an ICMP unreachable (:mod:`vspan.policy.reject`).

Flow-cache split:

* :meth:`PortFirewall.match` — the rule decision — depends only on FlowKey
  fields: cacheable.
* :meth:`PortFirewall.process` — conntrack lookup/update, state creation,
  reject reply — runs for every IP frame (the per-frame check), either
  committing (forwarding) or peeking (trace: same code, nothing changes).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from vspan.datapath.flowkey import FlowKey
from vspan.datapath.reasons import DropReason
from vspan.datapath.trace import NULL_TRACER, Tracer
from vspan.policy.common import (
    DIRECTIONS,
    Dir,
    IpPrefix,
    PortRange,
    family_of,
    has_ports,
    ip_str,
    is_icmp,
    protocol_str,
)
from vspan.policy.conntrack import Conn, ConnKey, ConnTrack, CtClass, CtResult, Timeouts
from vspan.policy.reject import no_reply_reason, reject_reply


class FwAction(enum.StrEnum):
    """What a firewall rule does."""

    ALLOW = "allow"
    DROP = "drop"
    REJECT = "reject"


DEFAULT_RULE_ID = "default"


@dataclass(frozen=True, slots=True)
class AddressSet:
    """Sources or destinations of a rule: prefixes, by the names they were given."""

    prefixes: tuple[IpPrefix, ...]
    names: tuple[str, ...]  # as written: CIDRs and group names (for explain)

    def contains(self, addr: bytes) -> bool:
        """Whether ``addr`` lies in one of the prefixes."""
        return any(p.contains(addr) for p in self.prefixes)

    def __str__(self) -> str:
        return ",".join(self.names)


@dataclass(frozen=True, slots=True)
class Service:
    """A service: protocol and ports (TCP/UDP) or type/code (ICMP)."""

    protocol: int | None = None
    ports: tuple[PortRange, ...] = ()  # destination ports; empty = any
    source_ports: tuple[PortRange, ...] = ()
    icmp_type: int | None = None
    icmp_code: int | None = None

    def mismatch(self, key: FlowKey) -> str | None:
        """Why ``key`` is not this service (``None`` when it is)."""
        if self.protocol is not None and key.proto != self.protocol:
            return f"protocol {protocol_str(key.proto)} is not {protocol_str(self.protocol)}"
        if self.ports or self.source_ports:
            if not has_ports(key):
                return "no transport ports"
            if self.ports and not any(key.dport in r for r in self.ports):
                return f"destination port {key.dport} not in {self._pl(self.ports)}"
            if self.source_ports and not any(key.sport in r for r in self.source_ports):
                return f"source port {key.sport} not in {self._pl(self.source_ports)}"
        if self.icmp_type is not None:
            if not is_icmp(key.proto) or not key.l4_off:
                return "not ICMP"
            if key.sport != self.icmp_type:
                return f"ICMP type {key.sport} is not {self.icmp_type}"
            if self.icmp_code is not None and key.dport != self.icmp_code:
                return f"ICMP code {key.dport} is not {self.icmp_code}"
        return None

    @staticmethod
    def _pl(ranges: tuple[PortRange, ...]) -> str:
        return ",".join(str(r) for r in ranges)

    def __str__(self) -> str:
        s = protocol_str(self.protocol)
        if self.ports:
            s += f"/{self._pl(self.ports)}"
        if self.source_ports:
            s += f" from {self._pl(self.source_ports)}"
        if self.icmp_type is not None:
            s += f" type {self.icmp_type}"
            if self.icmp_code is not None:
                s += f" code {self.icmp_code}"
        return s


@dataclass(frozen=True, slots=True)
class FwRule:
    """One firewall rule (``applied_to`` already resolved to port names)."""

    id: str
    section: str
    action: FwAction
    directions: tuple[Dir, ...] = DIRECTIONS
    sources: AddressSet | None = None  # None = any
    destinations: AddressSet | None = None
    services: tuple[Service, ...] = ()  # empty = any
    applied_to: frozenset[str] | None = None  # None = every covered port
    name: str = ""
    strict: bool = False  # from the section: TCP strict
    stateful: bool = True  # from the section

    def mismatch(self, key: FlowKey, direction: Dir) -> str | None:
        """Why the rule does not match (``None`` when it does)."""
        if direction not in self.directions:
            return f"rule is for direction {'/'.join(self.directions)} only"
        if self.sources is not None and not self.sources.contains(key.l3_src):
            return f"source {ip_str(key.l3_src)} not in {self.sources}"
        if self.destinations is not None and not self.destinations.contains(key.l3_dst):
            return f"destination {ip_str(key.l3_dst)} not in {self.destinations}"
        if self.services:
            whys = [s.mismatch(key) for s in self.services]
            if all(w is not None for w in whys):
                return "; ".join(f"{s}: {w}" for s, w in zip(self.services, whys, strict=True))
        return None

    def describe(self) -> str:
        """One-line text of the rule."""
        src = "any" if self.sources is None else str(self.sources)
        dst = "any" if self.destinations is None else str(self.destinations)
        svc = ",".join(str(s) for s in self.services) or "any"
        d = "both" if len(self.directions) == 2 else self.directions[0]
        name = f" '{self.name}'" if self.name else ""
        return f"{self.action.value}{name} {src} -> {dst} {svc} dir={d}"


@dataclass(frozen=True, slots=True)
class FwSection:
    """An ordered list of rules with section-wide options."""

    name: str
    rules: tuple[FwRule, ...]


class FwCandidate(NamedTuple):
    """A rule looked at for explain/trace, and its fate."""

    rule: FwRule
    outcome: str  # "wins", "no-match", "shadowed", "not-applied"
    why: str


class FwMatch(NamedTuple):
    """The rule decision for one (port, FlowKey, direction): cacheable."""

    action: FwAction
    rule: FwRule | None  # None: the default rule (or a non-IP frame)
    direction: Dir
    ip: bool  # False: not an IP frame, the firewall does not judge it
    strict: bool
    stateful: bool
    candidates: tuple[FwCandidate, ...] = ()

    @property
    def rule_id(self) -> str:
        """Id of the deciding rule (``default`` for the default rule)."""
        return DEFAULT_RULE_ID if self.rule is None else self.rule.id

    @property
    def decision(self) -> FwDecision:
        """The decision as plain values."""
        return FwDecision(self.action, self.rule_id, self.strict, self.stateful)


class FwDecision(NamedTuple):
    """The rule decision for NEW frames of a flow, as plain values (cacheable; what the
    per-frame firewall check carries)."""

    action: FwAction
    rule_id: str
    strict: bool
    stateful: bool


class FwVerdict(NamedTuple):
    """The per-frame firewall outcome."""

    allowed: bool
    reason: DropReason | None
    rule_id: str
    ct: CtClass
    detail: str = ""
    reply: bytes | None = None  # reject answer, to be sent back to the frame's sender
    conn: tuple[ConnKey, Conn | None] | None = None  # the connection the frame changed, and
    # its state after the frame (None: forgotten)


@dataclass(slots=True)
class RuleCounters:
    """Frames decided by a rule (connection starts and stateless frames)."""

    hits: dict[str, int] = field(default_factory=dict)

    def hit(self, rule_id: str) -> None:
        """Count one decision."""
        self.hits[rule_id] = self.hits.get(rule_id, 0) + 1


class RuleSet:
    """Every section and the default rule, switch-wide."""

    def __init__(
        self,
        sections: Iterable[FwSection] = (),
        default_action: FwAction = FwAction.ALLOW,
        default_strict: bool = False,
        excluded: Iterable[str] = (),
    ) -> None:
        self.sections = tuple(sections)
        self.default_action = default_action
        self.default_strict = default_strict
        self.excluded = frozenset(excluded)
        self.counters = RuleCounters()
        ids: set[str] = set()
        for s in self.sections:
            for r in s.rules:
                if r.id in ids or r.id == DEFAULT_RULE_ID:
                    raise ValueError(f"firewall rule id {r.id!r} used twice")
                ids.add(r.id)

    def covers(self, port: str) -> bool:
        """Whether the firewall is enforced at ``port`` (not excluded)."""
        return port not in self.excluded

    def rules_for(self, port: str, direction: Dir) -> tuple[FwRule, ...]:
        """The rules enforced at ``port`` for ``direction``, in evaluation order."""
        return tuple(
            r
            for s in self.sections
            for r in s.rules
            if direction in r.directions and (r.applied_to is None or port in r.applied_to)
        )

    def all_rules(self) -> tuple[FwRule, ...]:
        """Every rule in order."""
        return tuple(r for s in self.sections for r in s.rules)


class PortFirewall:
    """The firewall as enforced at one port: its rule lists and its connection table."""

    __slots__ = ("_rules", "conntrack", "port", "ruleset")

    def __init__(self, port: str, ruleset: RuleSet, timeouts: Timeouts | None = None,
                 max_conns: int = 65536) -> None:
        self.port = port
        self.ruleset = ruleset
        self._rules = {d: ruleset.rules_for(port, d) for d in DIRECTIONS}
        self.conntrack = ConnTrack(timeouts, max_conns)

    def rules(self, direction: Dir) -> tuple[FwRule, ...]:
        """Rules enforced here for one direction, in order."""
        return self._rules[direction]

    def match(
        self,
        key: FlowKey,
        direction: Dir,
        tracer: Tracer = NULL_TRACER,
        explain: bool = False,
    ) -> FwMatch:
        """The rule that decides a NEW frame of this flow (cacheable)."""
        rs = self.ruleset
        if not family_of(key):
            m = FwMatch(FwAction.ALLOW, None, direction, False, False, False)
            if tracer.enabled:
                tracer.report("firewall", f"firewall {direction}: not an IP frame -> pass")
            return m
        want_all = explain or tracer.enabled
        winner: FwRule | None = None
        cands: list[FwCandidate] = []
        rules = self._rules[direction]
        if want_all:
            for r in rs.all_rules():
                if r.applied_to is not None and self.port not in r.applied_to:
                    cands.append(FwCandidate(r, "not-applied",
                                             f"not applied to port {self.port}"))
                    continue
                why = r.mismatch(key, direction)
                if winner is None and why is None:
                    winner = r
                    cands.append(FwCandidate(r, "wins", "first matching rule"))
                elif why is None:
                    assert winner is not None
                    cands.append(FwCandidate(r, "shadowed",
                                             f"matches too, but rule {winner.id} comes first"))
                else:
                    cands.append(FwCandidate(r, "no-match", why))
        else:
            for r in rules:
                if r.mismatch(key, direction) is None:
                    winner = r
                    break
        if winner is None:
            m = FwMatch(rs.default_action, None, direction, True, rs.default_strict, True,
                        tuple(cands))
        else:
            m = FwMatch(winner.action, winner, direction, True, winner.strict, winner.stateful,
                        tuple(cands))
        if tracer.enabled:
            _trace_match(tracer, self.port, m)
        return m

    def process(
        self,
        key: FlowKey,
        data: bytes,
        direction: Dir,
        decision: FwDecision,
        now: float,
        commit: bool = True,
        tracer: Tracer = NULL_TRACER,
    ) -> FwVerdict:
        """Per-frame check of an IP frame: conntrack first, then the (cached) rule
        ``decision`` for NEW frames.

        ``commit`` False is a peek (trace): the same code on copies, so the verdict and
        the connection state it reports are what committing would give; the table, the
        counters and the rule hits do not change.
        """
        r = self.conntrack.classify(key, data, direction, now, commit)
        v = self._decide(key, data, direction, decision, now, r, commit)
        if tracer.enabled:
            _trace_verdict(tracer, direction, r, v)
        return v

    def _decide(self, key: FlowKey, data: bytes, direction: Dir, d: FwDecision, now: float,
                r: CtResult, commit: bool) -> FwVerdict:
        cls = r.cls
        conn = r.conn
        if cls is CtClass.ESTABLISHED:
            if conn is None:  # a later fragment of a tracked pair
                return FwVerdict(True, None, "", cls, r.reason)
            return FwVerdict(True, None, conn.rule_id or "", cls, r.reason, None,
                             (conn.key, conn))
        if cls is CtClass.RELATED:
            rid = conn.rule_id if conn is not None and conn.rule_id else ""
            return FwVerdict(True, None, rid, cls, r.reason)
        if r.cls is CtClass.INVALID:
            rid = r.conn.rule_id if r.conn is not None and r.conn.rule_id else ""
            after = (r.conn.key, r.conn) if r.conn is not None else None
            return FwVerdict(False, DropReason.FIREWALL_STATE_INVALID, rid, r.cls, r.reason,
                             conn=after)
        gone = (r.forgot, None) if r.forgot is not None else None
        if commit:
            self.ruleset.counters.hit(d.rule_id)
        if d.action is FwAction.DROP:
            return FwVerdict(False, DropReason.FIREWALL_DENY, d.rule_id, r.cls,
                             f"dropped by rule {d.rule_id}", conn=gone)
        if d.action is FwAction.REJECT:
            reply = reject_reply(key, data)
            why = no_reply_reason(key, data) if reply is None else None
            detail = f"rejected by rule {d.rule_id}" + (f" (no reply: {why})" if why else "")
            return FwVerdict(False, DropReason.FIREWALL_REJECT, d.rule_id, r.cls, detail,
                             reply, gone)
        if r.cls is CtClass.NEW and d.stateful:
            c = self.conntrack.create(key, data, direction, now, d.rule_id, d.strict, commit)
            if c.cls is CtClass.INVALID:
                return FwVerdict(False, DropReason.FIREWALL_STATE_INVALID, d.rule_id,
                                 c.cls, c.reason, conn=gone)
            made = (c.conn.key, c.conn) if c.conn is not None else gone
            return FwVerdict(True, None, d.rule_id, CtClass.NEW,
                             f"allowed by rule {d.rule_id}; {c.reason}", conn=made)
        return FwVerdict(True, None, d.rule_id, r.cls, f"allowed by rule {d.rule_id}",
                         conn=gone)


def _trace_match(tracer: Tracer, port: str, m: FwMatch) -> None:
    if m.rule is None:
        head = f"firewall {m.direction} at {port}: default rule -> {m.action.value}"
    else:
        head = (f"firewall {m.direction} at {port}: rule {m.rule.id} (section "
                f"{m.rule.section}) -> {m.action.value}")
    node = tracer.report("firewall", head, rule=m.rule_id, action=m.action.value)
    tracer.push(node)
    for c in m.candidates:
        if c.outcome == "not-applied":
            continue
        tracer.report("firewall", f"rule {c.rule.id} [{c.rule.describe()}] {c.outcome}: {c.why}",
                      rule=c.rule.id)
    tracer.pop()


def _trace_verdict(tracer: Tracer, direction: Dir, r: CtResult, v: FwVerdict) -> None:
    conn = f" [{r.conn.describe()}]" if r.conn is not None else ""
    tracer.report(
        "conntrack",
        f"{direction}: {r.cls.value}{conn}: {v.detail or r.reason} -> "
        f"{'pass' if v.allowed else 'drop (' + str(v.reason) + ')'}",
        ct=r.cls.value, allowed=v.allowed, rule=v.rule_id,
    )


class Firewall:
    """The switch-wide firewall: one :class:`PortFirewall` per covered port."""

    def __init__(self, ruleset: RuleSet, timeouts: Timeouts | None = None,
                 max_conns: int = 65536) -> None:
        self.ruleset = ruleset
        self.timeouts = timeouts or Timeouts()
        self.max_conns = max_conns
        self._ports: dict[str, PortFirewall] = {}

    def port(self, name: str, create: bool = True) -> PortFirewall | None:
        """The firewall at port ``name`` (created on first use; without ``create`` an
        empty one not kept); ``None`` if excluded."""
        pf = self._ports.get(name)
        if pf is None:
            if not self.ruleset.covers(name):
                return None
            pf = PortFirewall(name, self.ruleset, self.timeouts, self.max_conns)
            if create:
                self._ports[name] = pf
        return pf

    def ports(self) -> Mapping[str, PortFirewall]:
        """Port firewalls created so far."""
        return self._ports

    def prune(self, keep: Iterable[str]) -> None:
        """Forget the state of ports not in ``keep`` (removed ports)."""
        names = set(keep)
        for name in [n for n in self._ports if n not in names]:
            self._ports.pop(name).conntrack.detach_native()

    def expire(self, now: float) -> int:
        """Expire idle connections at every port."""
        return sum(pf.conntrack.expire(now) for pf in self._ports.values())

    def set_limits(self, timeouts: Timeouts, max_conns: int) -> None:
        """New idle timeouts and connection limit, for tracked connections too (they keep
        their state; the new timeouts apply from their next frame)."""
        self.timeouts = timeouts
        self.max_conns = max_conns
        for pf in self._ports.values():
            pf.conntrack.timeouts = timeouts
            pf.conntrack.max_conns = max_conns

    def replace_rules(self, ruleset: RuleSet) -> None:
        """Install new rules, keeping each port's connection table (flows survive)."""
        self.ruleset = ruleset
        old = self._ports
        self._ports = {}
        for name, pf in old.items():
            if ruleset.covers(name):
                new = PortFirewall(name, ruleset, self.timeouts, self.max_conns)
                new.conntrack = pf.conntrack
                self._ports[name] = new
            else:
                pf.conntrack.detach_native()

    def detach_native(self) -> None:
        """This firewall is dropped: every port's native index emptied (see
        :meth:`ConnTrack.detach_native`)."""
        for pf in self._ports.values():
            pf.conntrack.detach_native()
