"""Weighted extended ACLs (Hyper-V ``Add-VMNetworkAdapterExtendedAcl``).

A rule has an action (``allow``/``deny``), a direction (``in``/``out``;
``both`` is a shorthand for one rule in each list), local/remote IP (prefix
or ``any``), protocol (``tcp``, ``udp``, a number or ``any``), local/remote
port or range (TCP/UDP only), a **weight** (higher is evaluated first; weights
are unique per direction), and optionally ``stateful`` with an
``idle_timeout`` in seconds.

Evaluation per direction: rules in descending weight; the first rule that
matches ends the evaluation. No match: **allow** (Hyper-V default). Rules
apply to IP frames only; non-IP frames pass.

Stateful: when a stateful ``allow`` rule admits a frame, a session is
created for the connection (protocol, local address and port, remote address
and port — the same tuple seen from the port in both directions). While the
session lives, frames of that connection in **either** direction are allowed
whatever the rules say — the return traffic of an allowed outbound connection
is admitted even when an inbound rule denies it. Every frame of the session
refreshes it; it ends after ``idle_timeout`` seconds without traffic.

Split for the flow cache:

* :meth:`ExtAclTable.match` depends only on FlowKey fields: cacheable.
* :meth:`ExtAclSessions.process` is the per-frame hook (session lookup,
  creation and refresh); call it only when ``match.needs_state`` is true.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from vspan.datapath.flowkey import IPPROTO_TCP, IPPROTO_UDP, FlowKey
from vspan.datapath.reasons import DropReason
from vspan.datapath.trace import NULL_TRACER, Tracer
from vspan.policy.common import (
    DIRECTIONS,
    Dir,
    IpSpec,
    PortRange,
    family_of,
    has_ports,
    local_remote_ip,
    local_remote_port,
    protocol_str,
    spec_str,
)
from vspan.policy.conntrack import native_key

DEFAULT_IDLE_TIMEOUT = 300.0


class ExtAction(enum.StrEnum):
    """What an extended ACL rule does."""

    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class ExtAclRule:
    """One extended ACL rule in one direction."""

    id: str
    action: ExtAction
    direction: Dir
    weight: int
    local_ip: IpSpec = None
    remote_ip: IpSpec = None
    protocol: int | None = None
    local_port: PortRange | None = None
    remote_port: PortRange | None = None
    stateful: bool = False
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT

    def mismatch(self, key: FlowKey, direction: Dir) -> str | None:
        """Why ``key`` does not match this rule, or ``None`` when it does."""
        fam = family_of(key)
        if not fam:
            return "not an IP frame"
        if self.protocol is not None and key.proto != self.protocol:
            return f"protocol {protocol_str(key.proto)} is not {protocol_str(self.protocol)}"
        if self.local_ip is not None or self.remote_ip is not None:
            loc, rem = local_remote_ip(key, direction)
            if self.local_ip is not None and not self.local_ip.contains(loc):
                return f"local address not in {self.local_ip}"
            if self.remote_ip is not None and not self.remote_ip.contains(rem):
                return f"remote address not in {self.remote_ip}"
        if self.local_port is not None or self.remote_port is not None:
            if not has_ports(key):
                return "no transport ports (not TCP/UDP, or a later fragment)"
            lp, rp = local_remote_port(key, direction)
            if self.local_port is not None and lp not in self.local_port:
                return f"local port {lp} not in {self.local_port}"
            if self.remote_port is not None and rp not in self.remote_port:
                return f"remote port {rp} not in {self.remote_port}"
        return None

    def describe(self) -> str:
        """One-line text of the rule."""
        parts = [
            f"{self.action.value} w={self.weight}",
            f"proto={protocol_str(self.protocol)}",
            f"local={spec_str(self.local_ip)}"
            + (f":{self.local_port}" if self.local_port is not None else ""),
            f"remote={spec_str(self.remote_ip)}"
            + (f":{self.remote_port}" if self.remote_port is not None else ""),
        ]
        if self.stateful:
            parts.append(f"stateful idle={self.idle_timeout:g}s")
        return " ".join(parts)


class ExtCandidate(NamedTuple):
    """A rule looked at during evaluation and its fate (explain/trace)."""

    rule: ExtAclRule
    outcome: str  # "no-match", "wins", "shadowed"
    why: str


class ExtAclMatch(NamedTuple):
    """Cacheable part of the extended ACL decision for one (FlowKey, direction)."""

    allowed: bool  # what the rules say (sessions may still admit a denied frame)
    rule: ExtAclRule | None  # deciding rule; None = no rule matched (default allow)
    direction: Dir
    needs_state: bool  # call ExtAclSessions.process for every frame
    checked: int  # rules examined
    candidates: tuple[ExtCandidate, ...] = ()

    @property
    def rule_id(self) -> str | None:
        """Id of the deciding rule."""
        return None if self.rule is None else self.rule.id


SessionState = tuple[str, str, float]
"""(rule id, direction that opened it, expiry time) of a live session."""


class ExtAclResult(NamedTuple):
    """Per-frame outcome."""

    allowed: bool
    rule_id: str | None
    via_session: bool  # admitted by a stateful session rather than by a rule
    session: tuple[SessionKey, SessionState] | None = None  # session opened or refreshed

    @property
    def reason(self) -> DropReason | None:
        """Drop reason when denied."""
        return None if self.allowed else DropReason.EXT_ACL_DENY


class ExtAclTable:
    """The extended ACL of one port (both directions)."""

    __slots__ = ("_rules", "has_stateful", "rules")

    def __init__(self, rules: Iterable[ExtAclRule] = ()) -> None:
        self.rules: tuple[ExtAclRule, ...] = tuple(rules)
        self._rules: dict[Dir, tuple[ExtAclRule, ...]] = {}
        ids: set[tuple[str, Dir]] = set()
        for d in DIRECTIONS:
            mine = sorted((r for r in self.rules if r.direction == d), key=lambda r: -r.weight)
            weights = [r.weight for r in mine]
            dup = {w for w in weights if weights.count(w) > 1}
            if dup:
                raise ValueError(f"extended ACL weight {min(dup)} used twice for direction {d}")
            for r in mine:
                if (r.id, d) in ids:
                    raise ValueError(f"duplicate extended ACL id {r.id!r} for direction {d}")
                ids.add((r.id, d))
            self._rules[d] = tuple(mine)
        self.has_stateful = any(r.stateful and r.action == ExtAction.ALLOW for r in self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def rule(self, rule_id: str, direction: Dir) -> ExtAclRule | None:
        """The rule ``rule_id`` of one direction (``None`` if there is none)."""
        return next((r for r in self._rules[direction] if r.id == rule_id), None)

    def ordered(self, direction: Dir) -> tuple[ExtAclRule, ...]:
        """Rules of one direction in evaluation order."""
        return self._rules[direction]

    def match(
        self,
        key: FlowKey,
        direction: Dir,
        tracer: Tracer = NULL_TRACER,
        explain: bool = False,
    ) -> ExtAclMatch:
        """First matching rule by weight (cacheable per FlowKey and direction)."""
        rules = self._rules[direction]
        want_all = explain or tracer.enabled
        winner: ExtAclRule | None = None
        checked = 0
        cands: list[ExtCandidate] = []
        if family_of(key):
            for r in rules:
                if winner is not None:
                    why = r.mismatch(key, direction)
                    if why is None:
                        why = (
                            f"matches too, but {winner.id} has a higher weight "
                            f"({winner.weight} > {r.weight})"
                        )
                        cands.append(ExtCandidate(r, "shadowed", why))
                    else:
                        cands.append(ExtCandidate(r, "no-match", why))
                    continue
                checked += 1
                why = r.mismatch(key, direction)
                if why is None:
                    winner = r
                    if not want_all:
                        break
                    cands.append(ExtCandidate(r, "wins", f"highest-weight match ({r.weight})"))
                elif want_all:
                    cands.append(ExtCandidate(r, "no-match", why))
        allowed = winner is None or winner.action == ExtAction.ALLOW
        needs_state = self.has_stateful and (
            not allowed or (winner is not None and winner.stateful)
        )
        m = ExtAclMatch(allowed, winner, direction, needs_state, checked, tuple(cands))
        if tracer.enabled:
            _trace(tracer, m, key)
        return m


def _trace(tracer: Tracer, m: ExtAclMatch, key: FlowKey) -> None:
    if not family_of(key):
        head = f"extended ACL {m.direction}: not an IP frame -> allow"
    elif m.rule is None:
        head = f"extended ACL {m.direction}: no rule matches -> allow (default)"
    else:
        head = (
            f"extended ACL {m.direction}: rule {m.rule.id} (weight {m.rule.weight}) -> "
            f"{m.rule.action.value}"
        )
    node = tracer.report("ext-acl", head, rule=m.rule_id, allowed=m.allowed)
    tracer.push(node)
    for c in m.candidates:
        tracer.report("ext-acl", f"{c.rule.id} [{c.rule.describe()}] {c.outcome}: {c.why}",
                      rule=c.rule.id)
    tracer.pop()


SessionKey = tuple[int, bytes, int, bytes, int]  # proto, local ip, local port, remote ip, port


def session_key(key: FlowKey, direction: Dir) -> SessionKey:
    """The connection tuple seen from the port (identical for both directions)."""
    loc, rem = local_remote_ip(key, direction)
    if has_ports(key):
        lp, rp = local_remote_port(key, direction)
    else:
        lp = rp = 0
    return (key.proto, loc, lp, rem, rp)


class _Session:
    __slots__ = ("expires", "idle", "origin", "rule_id")

    def __init__(self, rule_id: str, origin: Dir, idle: float, expires: float) -> None:
        self.rule_id = rule_id
        self.origin = origin
        self.idle = idle
        self.expires = expires


def native_session_key(sk: SessionKey) -> bytes | None:
    """The bytes the native replay builds from a frame for session key ``sk`` (as
    :func:`vspan.policy.conntrack.native_key`), or ``None`` for a session it never looks
    up (not IPv4 TCP/UDP)."""
    if sk[0] not in (IPPROTO_TCP, IPPROTO_UDP) or len(sk[1]) != 4:
        return None
    return native_key(sk)


class ExtAclSessions:
    """Stateful sessions of one port's extended ACL (the per-frame part).

    ``native``: when the native replay refreshes live sessions (``docs/datapath.md``),
    the index it reads: native key -> (session, idle timeout) of every IPv4 TCP/UDP
    session; the C side sets the session's ``expires`` as :meth:`process` would and hands
    an expired or missing session back. Sessions enter it when made, adopted or refreshed
    by Python and leave it when removed.
    """

    __slots__ = ("_sessions", "max_sessions", "native", "refused")

    def __init__(self, max_sessions: int = 65536) -> None:
        self._sessions: dict[SessionKey, _Session] = {}
        self.max_sessions = max_sessions
        self.refused = 0  # sessions not created because the table was full
        self.native: dict[bytes, tuple[_Session, float]] | None = None

    def _published(self, sk: SessionKey, s: _Session | None) -> None:
        """The native index follows the session of ``sk`` (``None``: removed)."""
        native = self.native
        if native is None:
            return
        nk = native_session_key(sk)
        if nk is None:
            return
        if s is None:
            native.pop(nk, None)
        else:
            native[nk] = (s, s.idle)

    def __len__(self) -> int:
        return len(self._sessions)

    def process(
        self,
        key: FlowKey,
        direction: Dir,
        match: ExtAclMatch,
        now: float,
        tracer: Tracer = NULL_TRACER,
        commit: bool = True,
    ) -> ExtAclResult:
        """Per-frame check: admit by session, create/refresh sessions, else apply ``match``.

        ``commit`` False peeks (trace): the same outcome, no session created, refreshed
        or removed.
        """
        if not match.needs_state:
            return ExtAclResult(match.allowed, match.rule_id, False)
        sk = session_key(key, direction)
        s = self._sessions.get(sk)
        if s is not None and s.expires <= now:
            if commit:
                del self._sessions[sk]
                self._published(sk, None)
            s = None
        if s is not None:
            if commit:
                s.expires = now + s.idle
                if self.native is not None:
                    self._published(sk, s)  # (one made before the index was)
            if tracer.enabled:
                tracer.report(
                    "ext-acl",
                    f"session of stateful rule {s.rule_id} (opened {s.origin}) admits the frame",
                    rule=s.rule_id,
                )
            return ExtAclResult(True, s.rule_id, True, (sk, (s.rule_id, s.origin, now + s.idle)))
        rule = match.rule
        if match.allowed and rule is not None and rule.stateful:
            live = len(self._sessions)
            if live >= self.max_sessions:
                if commit:
                    live -= self.expire(now)
                else:
                    live = sum(1 for x in self._sessions.values() if x.expires > now)
            if live < self.max_sessions:
                if commit:
                    made = self._sessions[sk] = _Session(rule.id, direction,
                                                         rule.idle_timeout,
                                                         now + rule.idle_timeout)
                    self._published(sk, made)
                if tracer.enabled:
                    tracer.report("ext-acl", f"stateful rule {rule.id} opens a session",
                                  rule=rule.id)
                return ExtAclResult(match.allowed, match.rule_id, False,
                                    (sk, (rule.id, direction, now + rule.idle_timeout)))
            if commit:
                self.refused += 1
        return ExtAclResult(match.allowed, match.rule_id, False)

    def live(self, now: float) -> dict[SessionKey, SessionState]:
        """Every live session by key (a snapshot, for tests and views)."""
        return {k: (s.rule_id, s.origin, s.expires) for k, s in self._sessions.items()
                if s.expires > now}

    def lookup(self, key: FlowKey, direction: Dir, now: float) -> str | None:
        """Rule id of the live session of this frame's connection, if any (no refresh)."""
        s = self._sessions.get(session_key(key, direction))
        if s is None or s.expires <= now:
            return None
        return s.rule_id

    def expire(self, now: float) -> int:
        """Remove idle sessions; return how many."""
        dead = [k for k, s in self._sessions.items() if s.expires <= now]
        for k in dead:
            del self._sessions[k]
            self._published(k, None)
        return len(dead)

    def flush(self) -> None:
        """Forget every session."""
        self._sessions.clear()
        if self.native is not None:
            self.native.clear()

    def entries(self, now: float) -> list[tuple[SessionKey, str, Dir, float, float]]:
        """Live sessions as (key, rule id, origin, idle timeout, seconds left)."""
        return [(k, s.rule_id, s.origin, s.idle, s.expires - now)
                for k, s in self._sessions.items() if s.expires > now]

    def adopt(self, key: SessionKey, rule_id: str, origin: Dir, idle: float,
              expires: float) -> bool:
        """Take over a session opened elsewhere (a migrated port's state); False when the
        table is full."""
        if key not in self._sessions and len(self._sessions) >= self.max_sessions:
            return False
        s = self._sessions[key] = _Session(rule_id, origin, idle, expires)
        self._published(key, s)
        return True
