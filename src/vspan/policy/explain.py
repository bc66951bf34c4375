"""Policy explain: which guard, ACL entry, extended ACL rule and firewall rule decide
a flow at a port, and why every other candidate lost.

:func:`explain` runs the same evaluators as the datapath (with ``explain=True``
so every candidate is collected) on one frame — a captured one, or one
synthesised by :func:`synth_frame` from flow fields — and returns an
:class:`Explanation` (``as_dict()`` for JSON, ``render()`` for text). It never
changes state: sessions and connections are looked at, not updated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vspan.datapath.flowkey import ETH_P_IPV4, ETH_P_IPV6, FlowKey, extract
from vspan.datapath.reasons import DropReason
from vspan.packet.build import build_frame, ethernet, icmp_echo, ip_header, tcp_frame, udp_frame
from vspan.packet.icmp import ICMP, ICMPv6
from vspan.packet.ipv6 import IPv6
from vspan.policy.build import PortPolicy, SwitchPolicy
from vspan.policy.common import (
    IN,
    OUT,
    Dir,
    family_of,
    ip_str,
    mac_str,
    parse_protocol,
    protocol_str,
)
from vspan.policy.conntrack import is_icmp_error
from vspan.policy.firewall import FwAction, PortFirewall
from vspan.policy.guards import storm_class
from vspan.policy.tcp import ACK, RST, SYN


@dataclass(slots=True)
class FlowSpec:
    """Flow fields for a synthetic frame (absolute source/destination)."""

    src_ip: str
    dst_ip: str
    proto: str = "tcp"
    sport: int = 40000
    dport: int = 80
    src_mac: str = "02:00:00:00:00:01"
    dst_mac: str = "02:00:00:00:00:02"
    tcp_flags: str = "S"
    icmp_type: int | None = None  # default: echo request
    icmp_code: int = 0
    vlan: int | None = None


def synth_frame(spec: FlowSpec) -> bytes:
    """An Ethernet frame carrying the flow (ValueError on impossible fields)."""
    p = parse_protocol(spec.proto)
    if p is None:
        raise ValueError("give a protocol (tcp, udp, icmp, icmpv6 or a number)")
    v = spec.vlan
    if p == 6:
        return tcp_frame(spec.src_mac, spec.dst_mac, spec.src_ip, spec.dst_ip, spec.sport,
                         spec.dport, spec.tcp_flags, vlan=v)
    if p == 17:
        return udp_frame(spec.src_mac, spec.dst_mac, spec.src_ip, spec.dst_ip, spec.sport,
                         spec.dport, vlan=v)
    if p in (1, 58):
        if spec.icmp_type is None:
            return icmp_echo(spec.src_mac, spec.dst_mac, spec.src_ip, spec.dst_ip, ident=1,
                             vlan=v)
        ip = ip_header(spec.src_ip, spec.dst_ip)
        l4: ICMP | ICMPv6 = (ICMP(spec.icmp_type, spec.icmp_code) if p == 1
                             else ICMPv6(spec.icmp_type, spec.icmp_code))
        return build_frame(ethernet(spec.src_mac, spec.dst_mac, v), ip, l4)
    # another IP protocol: an 8-byte zero payload stands for its header
    ip = ip_header(spec.src_ip, spec.dst_ip, p)
    eth = ethernet(spec.src_mac, spec.dst_mac, v,
                   ETH_P_IPV6 if isinstance(ip, IPv6) else ETH_P_IPV4)
    return build_frame(eth, ip, None, b"\x00" * 8, fix_types=False)


@dataclass(slots=True)
class Line:
    """One candidate: a rule or entry and what became of it."""

    outcome: str  # wins, loses, no-match, shadowed, not-applied, info
    rule: str
    text: str
    why: str

    def as_dict(self) -> dict[str, str]:
        """JSON form."""
        return {"outcome": self.outcome, "rule": self.rule, "text": self.text, "why": self.why}


@dataclass(slots=True)
class StageResult:
    """What one policy stage says about the flow."""

    stage: str  # guards, acl, ext-acl, firewall
    allowed: bool
    rule: str | None
    summary: str
    reason: DropReason | None = None
    lines: list[Line] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"stage": self.stage, "allowed": self.allowed, "rule": self.rule,
                "summary": self.summary, "reason": None if self.reason is None
                else str(self.reason), "candidates": [ln.as_dict() for ln in self.lines]}


@dataclass(slots=True)
class Explanation:
    """The whole answer: every stage, and the first one that drops decides."""

    port: str
    direction: Dir
    flow: str
    stages: list[StageResult]
    notes: list[str] = field(default_factory=list)

    @property
    def decider(self) -> StageResult | None:
        """The stage that drops the flow (``None`` when every stage allows it)."""
        for s in self.stages:
            if not s.allowed:
                return s
        return None

    @property
    def allowed(self) -> bool:
        """Whether the flow passes the port's policy."""
        return self.decider is None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        d = self.decider
        return {
            "port": self.port, "direction": self.direction, "flow": self.flow,
            "allowed": self.allowed,
            "decided_by": None if d is None else {"stage": d.stage, "rule": d.rule,
                                                  "reason": str(d.reason)},
            "stages": [s.as_dict() for s in self.stages], "notes": list(self.notes),
        }

    def render(self) -> str:
        """Readable text."""
        arrow = "into" if self.direction == IN else "out of"
        out = [f"flow {self.flow}", f"  {arrow} port {self.port} (direction {self.direction})"]
        dropped = False
        for s in self.stages:
            mark = "pass" if s.allowed else f"DROP ({s.reason})"
            later = " (not reached: dropped before)" if dropped else ""
            out.append(f"[{s.stage}]{later} {s.summary} -> {mark}")
            dropped = dropped or not s.allowed
            for ln in s.lines:
                rid = f"{ln.rule}: " if ln.rule else ""
                out.append(f"    {ln.outcome:<11} {rid}{ln.text}")
                if ln.why:
                    out.append(f"    {'':<11}   {ln.why}")
        d = self.decider
        if d is None:
            out.append("verdict: ALLOWED by every stage")
        else:
            rule = f" rule {d.rule}" if d.rule else ""
            out.append(f"verdict: DROPPED at {d.stage}{rule} ({d.reason})")
        out.extend(f"note: {n}" for n in self.notes)
        return "\n".join(out)


def describe_flow(key: FlowKey) -> str:
    """Short text of a flow key."""
    fam = family_of(key)
    if not fam:
        return f"{mac_str(key.src)} -> {mac_str(key.dst)} ethertype 0x{key.eth_type:04x}"
    proto = protocol_str(key.proto)
    if key.proto in (6, 17, 132) and key.l4_off:
        return f"{proto} {ip_str(key.l3_src)}:{key.sport} -> {ip_str(key.l3_dst)}:{key.dport}"
    if key.proto in (1, 58) and key.l4_off:
        return (f"{proto} {ip_str(key.l3_src)} -> {ip_str(key.l3_dst)} type {key.sport} "
                f"code {key.dport}")
    return f"{proto} {ip_str(key.l3_src)} -> {ip_str(key.l3_dst)}"


def explain(policy: SwitchPolicy, port: str, direction: Dir, frame: bytes,
            now: float = 0.0) -> Explanation:
    """Explain how ``port``'s policy judges ``frame`` in ``direction`` (no state changes)."""
    key = extract(frame, 0)
    if key is None:
        raise ValueError("the frame cannot be parsed (malformed)")
    pol = policy.port(port)
    stages: list[StageResult] = []
    notes: list[str] = []
    if pol is not None:
        if direction == OUT:
            stages.append(_guards(pol, key, notes))
        stages.append(_acl(pol, key, direction))
        stages.append(_ext(pol, key, frame, direction, now))
    else:
        notes.append(f"port {port} has no ACLs, extended ACLs or guards")
    fw = policy.firewall
    if fw is None:
        notes.append("the distributed firewall is not enabled")
    elif not fw.ruleset.covers(port):
        notes.append(f"port {port} is excluded from the distributed firewall")
    else:
        pf = fw.ports().get(port) or PortFirewall(port, fw.ruleset, fw.timeouts, fw.max_conns)
        stages.append(_firewall(pf, key, frame, direction, now, notes))
    return Explanation(port, direction, describe_flow(key), stages, notes)


def _guards(pol: PortPolicy, key: FlowKey, notes: list[str]) -> StageResult:
    g = pol.guards.check(key)
    lines = []
    if pol.guards.allowed_macs is not None:
        lines.append(Line("info", "mac-spoofing", "off: only assigned MACs may send",
                          "" if g.reason is not DropReason.MAC_SPOOF else g.detail))
    if pol.guards.dhcp_guard:
        lines.append(Line("info", "dhcp-guard", "on", ""))
    if pol.guards.router_guard:
        lines.append(Line("info", "router-guard", "on", ""))
    if pol.storm is not None:
        cls = storm_class(key, known_unicast=True)
        if cls is not None and cls in pol.storm.buckets:
            notes.append(f"{cls} frames are rate limited to {pol.storm.buckets[cls].rate:g} "
                         "frames/s at this port (checked per frame)")
    if g.ok:
        return StageResult("guards", True, None, "no guard objects", None, lines)
    return StageResult("guards", False, str(g.reason), g.detail, g.reason, lines)


def _acl(pol: PortPolicy, key: FlowKey, direction: Dir) -> StageResult:
    v = pol.acl.evaluate(key, direction, explain=True)
    lines = [Line("wins" if c.won else "loses", c.entry.id, c.entry.describe(), c.why)
             for c in v.candidates]
    lines += [Line("meter" if c.won else "loses", c.entry.id, c.entry.describe(), c.why)
              for c in v.meter_candidates]
    if v.rule_id is None:
        summary = ("no entry matches: allowed (default)" if len(pol.acl)
                   else "no port ACL entries: allowed")
    else:
        summary = f"entry {v.rule_id} decides: {'allow' if v.allowed else 'deny'}"
    if v.meter is not None:
        summary += f"; metered by {v.meter.rule_id}"
    return StageResult("acl", v.allowed, v.rule_id, summary, v.reason, lines)


def _ext(pol: PortPolicy, key: FlowKey, frame: bytes, direction: Dir,
         now: float) -> StageResult:
    m = pol.ext.match(key, direction, explain=True)
    lines = [Line(c.outcome, c.rule.id, c.rule.describe(), c.why) for c in m.candidates]
    if not family_of(key):
        return StageResult("ext-acl", True, None, "not an IP frame: extended ACLs do not apply",
                           None, lines)
    if m.rule is None:
        summary = ("no rule matches: allowed (default)" if len(pol.ext)
                   else "no extended ACL rules: allowed")
    else:
        summary = f"rule {m.rule.id} (weight {m.rule.weight}) decides: {m.rule.action.value}"
    allowed = m.allowed
    rule = m.rule_id
    if m.needs_state:
        sid = pol.sessions.lookup(key, direction, now)
        if sid is not None:
            if not allowed:
                summary += f"; but a live session of stateful rule {sid} admits it"
            allowed, rule = True, sid
        elif m.rule is not None and m.rule.stateful and m.allowed:
            summary += (f"; opens a session (idle timeout {m.rule.idle_timeout:g} s) that "
                        "admits the return traffic")
    reason = None if allowed else DropReason.EXT_ACL_DENY
    return StageResult("ext-acl", allowed, rule, summary, reason, lines)


def _firewall(pf: PortFirewall, key: FlowKey, frame: bytes, direction: Dir, now: float,
              notes: list[str]) -> StageResult:
    m = pf.match(key, direction, explain=True)
    lines = [Line(c.outcome, c.rule.id, f"[{c.rule.section}] {c.rule.describe()}", c.why)
             for c in m.candidates]
    if not m.ip:
        return StageResult("firewall", True, None, "not an IP frame: the firewall does not "
                           "judge it", None, lines)
    default = f"default rule: {pf.ruleset.default_action.value}"
    lines.append(Line("wins" if m.rule is None else "not reached", "default", default, ""))
    conn = pf.conntrack.lookup(key, frame, direction, now)
    rid = m.rule_id
    if conn is not None:
        kind = "related ICMP error of" if is_icmp_error(key) else "part of"
        summary = (f"{kind} tracked connection {conn.describe()}: allowed by state "
                   f"(rule {rid} would decide a new connection)")
        return StageResult("firewall", True, conn.rule_id, summary, None, lines)
    who = "the default rule" if m.rule is None else f"rule {rid}"
    if m.action is FwAction.DROP:
        return StageResult("firewall", False, rid, f"{who} drops",
                           DropReason.FIREWALL_DENY, lines)
    if m.action is FwAction.REJECT:
        what = "a TCP RST" if key.proto == 6 else "an ICMP unreachable"
        return StageResult("firewall", False, rid, f"{who} rejects (answers with {what})",
                           DropReason.FIREWALL_REJECT, lines)
    summary = f"{who} allows"
    if key.proto == 6 and key.l4_off and len(frame) > key.l4_off + 13:
        flags = frame[key.l4_off + 13]
        if flags & RST:
            summary += "; a RST of no connection starts nothing"
        elif flags & (SYN | ACK) != SYN:
            if m.strict:
                return StageResult(
                    "firewall", False, rid,
                    f"{who} allows, but TCP strict applies and this segment is not a SYN "
                    "(no tracked connection)", DropReason.FIREWALL_STATE_INVALID,
                    lines)
            summary += "; picked up mid-stream (section not TCP strict)"
    if m.stateful:
        summary += "; starts a tracked connection (return traffic allowed by state)"
    else:
        notes.append(f"rule {rid} is in a stateless section: return traffic needs its own rule")
    return StageResult("firewall", True, rid, summary, None, lines)


NOT_CONSULTED = (
    "storm-limit buckets and ACL meters (they limit or count a flow's frames, they do not "
    "decide it)",
    "VLANs and the MAC table (`vspan trace` shows the forwarding path)",
)
OFFLINE_STATE = ("connection tracking and extended-ACL sessions: explained from the "
                 "configuration alone, so a frame a running switch admits by state (the return "
                 "traffic of an established connection) shows as a new flow; run it against "
                 "the running switch (without -c) to consult them")


@dataclass(slots=True)
class StateReport:
    """Which runtime state an explanation consulted, and which it did not."""

    live: bool
    consulted: list[str]
    not_consulted: list[str]

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"live": self.live, "consulted": list(self.consulted),
                "not_consulted": list(self.not_consulted)}

    def render(self) -> str:
        """Text lines after the explanation."""
        out = [f"consulted: {c}" for c in self.consulted]
        out += [f"not consulted: {c}" for c in self.not_consulted]
        return "\n".join(out)


def state_report(policy: SwitchPolicy | None, port: str) -> StateReport:
    """What :func:`explain` consults at ``port``: the live sessions and connections of
    ``policy`` (a running switch's), or, offline (``None``), nothing stateful."""
    if policy is None:
        return StateReport(False, [], [OFFLINE_STATE, *NOT_CONSULTED])
    consulted: list[str] = []
    pol = policy.port(port)
    if pol is not None and len(pol.ext):
        n = len(pol.sessions)
        consulted.append(f"the extended-ACL sessions of port {port} ({n} live)")
    fw = policy.firewall
    if fw is not None and fw.ruleset.covers(port):
        pf = fw.ports().get(port)
        n = len(pf.conntrack) if pf is not None else 0
        consulted.append(f"the connection table of port {port} ({n} tracked "
                         f"connection{'' if n == 1 else 's'})")
    if not consulted:
        consulted.append(f"no session or connection state exists for port {port} (no "
                         "stateful extended ACL, not covered by the firewall)")
    return StateReport(True, consulted, list(NOT_CONSULTED))
