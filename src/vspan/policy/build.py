"""Compile policy configuration into runtime objects, and hold them for the switch.

:class:`SwitchPolicy` is what the pipeline stage (:mod:`vspan.policy.stage`)
consults: per port a :class:`PortPolicy` (ACL, extended ACL and its
sessions, guards, storm limiter) and the switch-wide :class:`Firewall`
(whose per-port connection tables live at the ports). :meth:`SwitchPolicy.apply`
installs a new configuration as a change set (:mod:`vspan.config.diff`) says:
only the parts it names are rebuilt, everything else keeps its state
(extended-ACL sessions, storm buckets, meters, connections, rule hit counters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vspan.config.policy import (
    FirewallConfig,
    FwSectionConfig,
    PortPolicyConfig,
    ServiceConfig,
    acl_id,
    ext_acl_id,
    rule_id,
)
from vspan.datapath.decision import Reply
from vspan.policy.acl import AclAction, AclEntry, PortAcl
from vspan.policy.common import (
    IpPrefix,
    parse_direction,
    parse_ip_spec,
    parse_mac,
    parse_mac_spec,
    parse_port_range,
    parse_protocol,
)
from vspan.policy.extacl import ExtAclRule, ExtAclSessions, ExtAclTable, ExtAction
from vspan.policy.firewall import (
    DEFAULT_RULE_ID,
    AddressSet,
    Firewall,
    FwAction,
    FwRule,
    FwSection,
    RuleSet,
    Service,
)
from vspan.policy.guards import PortGuards, StormClass, StormLimiter

if TYPE_CHECKING:
    from vspan.config.diff import ChangeSet, FirewallChanges, PortPolicyChanges

MAX_PENDING_REPLIES = 1024


def build_acl(cfg: PortPolicyConfig) -> PortAcl:
    """The port ACL of one port."""
    entries: list[AclEntry] = []
    for i, e in enumerate(cfg.acls):
        dirs = parse_direction(e.direction)
        aid = acl_id(e, i)
        if e.local_mac is not None or e.remote_mac is not None:
            entries.append(AclEntry.mac(
                aid, AclAction(e.action.value), dirs,
                parse_mac_spec(e.local_mac) if e.local_mac is not None else None,
                parse_mac_spec(e.remote_mac) if e.remote_mac is not None else None))
        else:
            entries.append(AclEntry.ip(
                aid, AclAction(e.action.value), dirs,
                parse_ip_spec(e.local_ip) if e.local_ip is not None else None,
                parse_ip_spec(e.remote_ip) if e.remote_ip is not None else None))
    return PortAcl(entries)


def build_ext_acl(cfg: PortPolicyConfig) -> ExtAclTable:
    """The extended ACL of one port."""
    rules: list[ExtAclRule] = []
    for i, x in enumerate(cfg.extended_acls):
        for d in parse_direction(x.direction):
            rules.append(ExtAclRule(
                id=ext_acl_id(x, i),
                action=ExtAction(x.action.value),
                direction=d,
                weight=x.weight,
                local_ip=parse_ip_spec(x.local_ip),
                remote_ip=parse_ip_spec(x.remote_ip),
                protocol=parse_protocol(x.protocol),
                local_port=parse_port_range(x.local_port) if x.local_port is not None else None,
                remote_port=(parse_port_range(x.remote_port)
                             if x.remote_port is not None else None),
                stateful=x.stateful,
                idle_timeout=float(x.idle_timeout),
            ))
    return ExtAclTable(rules)


def build_guards(cfg: PortPolicyConfig) -> tuple[PortGuards, StormLimiter | None]:
    """Static guards and the storm limiter (``None`` without limits) of one port."""
    g = cfg.guards
    guards = PortGuards.build(g.mac_spoofing, [parse_mac(m) for m in g.macs], g.dhcp_guard,
                              g.router_guard)
    storm = None
    if g.storm is not None:
        limits: dict[StormClass, float] = {}
        for cls, rate in ((StormClass.BROADCAST, g.storm.broadcast),
                          (StormClass.MULTICAST, g.storm.multicast),
                          (StormClass.UNKNOWN_UNICAST, g.storm.unknown_unicast)):
            if rate is not None:
                limits[cls] = float(rate)
        if limits:
            burst = ({c: float(g.storm.burst) for c in limits} if g.storm.burst is not None
                     else None)
            storm = StormLimiter(limits, burst)
    return guards, storm


def _service(s: ServiceConfig) -> Service:
    return Service(
        protocol=parse_protocol(s.protocol),
        ports=tuple(parse_port_range(p) for p in s.ports),
        source_ports=tuple(parse_port_range(p) for p in s.source_ports),
        icmp_type=s.icmp_type,
        icmp_code=s.icmp_code,
    )


class _Resolver:
    def __init__(self, fw: FirewallConfig, ports: Mapping[str, PortPolicyConfig | None]):
        self.fw = fw
        self.ports = ports

    def targets(self, names: tuple[str, ...]) -> frozenset[str]:
        out: set[str] = set()
        for item in names:
            name = item[6:] if item.startswith("group:") else item
            g = self.fw.groups.get(name)
            if g is not None:
                out.update(g.ports)
            else:
                out.add(name)
        return frozenset(out)

    def addresses(self, items: tuple[str, ...]) -> AddressSet | None:
        prefixes: list[IpPrefix] = []
        for item in items:
            try:
                spec = parse_ip_spec(item)
            except ValueError:
                name = item[6:] if item.startswith("group:") else item
                g = self.fw.groups[name]
                texts = list(g.addresses)
                for p in g.ports:
                    pol = self.ports.get(p)
                    if pol is not None:
                        texts.extend(pol.addresses)
                for t in texts:
                    sp = parse_ip_spec(t)
                    if sp is not None:
                        prefixes.append(sp)
                continue
            if spec is None:
                return None  # 'any' anywhere in the list: any address
            prefixes.append(spec)
        return AddressSet(tuple(prefixes), items)


def _section(sec: FwSectionConfig, res: _Resolver) -> FwSection:
    sec_targets = res.targets(sec.applied_to) if sec.applied_to else None
    rules: list[FwRule] = []
    for i, r in enumerate(sec.rules):
        if r.disabled:
            continue
        rules.append(FwRule(
            id=rule_id(sec, r, i),
            section=sec.name,
            action=FwAction(r.action.value),
            directions=parse_direction(r.direction),
            sources=res.addresses(r.sources),
            destinations=res.addresses(r.destinations),
            services=tuple(_service(s) for s in r.services),
            applied_to=res.targets(r.applied_to) if r.applied_to else sec_targets,
            name=r.name,
            strict=sec.tcp_strict,
            stateful=sec.stateful,
        ))
    return FwSection(sec.name, tuple(rules))


def build_ruleset(fw: FirewallConfig, ports: Mapping[str, PortPolicyConfig | None]) -> RuleSet:
    """Compile sections, groups and the default rule (references must have been checked)."""
    res = _Resolver(fw, ports)
    return RuleSet(
        (_section(s, res) for s in fw.sections),
        FwAction(fw.default_action.value),
        fw.tcp_strict,
        res.targets(fw.exclude),
    )


def build_firewall(fw: FirewallConfig, ports: Mapping[str, PortPolicyConfig | None]) -> Firewall:
    """The switch-wide firewall."""
    return Firewall(build_ruleset(fw, ports), fw.timeouts.runtime(), fw.max_connections)


@dataclass(slots=True)
class PortPolicy:
    """Compiled policy of one port, with its per-port state."""

    name: str
    config: PortPolicyConfig
    acl: PortAcl
    ext: ExtAclTable
    sessions: ExtAclSessions
    guards: PortGuards
    storm: StormLimiter | None

    @classmethod
    def build(cls, name: str, cfg: PortPolicyConfig) -> PortPolicy:
        """Compile one port's policy."""
        guards, storm = build_guards(cfg)
        return cls(name, cfg, build_acl(cfg), build_ext_acl(cfg), ExtAclSessions(), guards, storm)

    def rebuilt(self, cfg: PortPolicyConfig, changes: PortPolicyChanges) -> PortPolicy:
        """This port's policy with the parts ``changes`` names rebuilt from ``cfg``; the
        others keep their state (meters, extended-ACL sessions, storm buckets)."""
        acl = build_acl(cfg) if changes.acls else self.acl
        ext, sessions = ((build_ext_acl(cfg), ExtAclSessions()) if changes.extended_acls
                         else (self.ext, self.sessions))
        guards, storm = build_guards(cfg) if changes.guards else (self.guards, self.storm)
        return PortPolicy(self.name, cfg, acl, ext, sessions, guards, storm)


@dataclass(slots=True)
class SwitchPolicy:
    """Policy of every port plus the firewall; what the policy stage consults."""

    ports: dict[str, PortPolicy] = field(default_factory=dict)
    firewall: Firewall | None = None
    firewall_config: FirewallConfig | None = None
    replies: list[Reply] = field(default_factory=list)  # drained by the engine
    replies_dropped: int = 0  # reject answers not queued because nobody drained the queue

    @classmethod
    def from_config(cls, ports: Mapping[str, PortPolicyConfig | None],
                    firewall: FirewallConfig | None) -> SwitchPolicy:
        """Compile everything."""
        sp = cls()
        sp.update(ports, firewall)
        return sp

    def update(self, ports: Mapping[str, PortPolicyConfig | None],
               firewall: FirewallConfig | None) -> None:
        """Install a new configuration given as its parts (diffs against the installed one
        and calls :meth:`apply`; the switch itself hands :meth:`apply` its change set)."""
        from vspan.config.diff import ChangeSet, diff_firewall, diff_port_policy

        old = {n: p.config for n, p in self.ports.items()}
        pcs = tuple(pc for n in ports if n in old
                    if (pc := diff_port_policy(n, old[n], ports[n])))
        added = tuple(n for n in ports if n not in old and ports[n] is not None)
        removed = tuple(n for n in old if n not in ports or ports[n] is None)
        self.apply(ports, firewall, ChangeSet(
            ports_added=added, ports_removed=removed, policy=pcs,
            firewall=diff_firewall(self.firewall_config, firewall, old, ports)))

    def apply(self, ports: Mapping[str, PortPolicyConfig | None],
              firewall: FirewallConfig | None, changes: ChangeSet) -> None:
        """Install ``ports`` and ``firewall`` (the new configuration's policy parts) as
        ``changes`` says: ports it does not name keep their :class:`PortPolicy` (sessions,
        meters, storm buckets); a port whose ACLs alone changed keeps its sessions and
        buckets; every covered port keeps its connection table; firewall rules that did not
        change keep their hit counters."""
        for name in changes.ports_removed:
            self.ports.pop(name, None)
        touched = {pc.port: pc for pc in changes.policy}
        for name in (*changes.ports_added, *touched):
            cfg = ports.get(name)
            old = self.ports.get(name)
            if cfg is None:
                self.ports.pop(name, None)
            elif old is None or name not in touched:
                self.ports[name] = PortPolicy.build(name, cfg)
            else:
                self.ports[name] = old.rebuilt(cfg, touched[name])
        self._apply_firewall(ports, firewall, changes.firewall)
        if self.firewall is not None and changes.ports_removed:
            self.firewall.prune(ports)
        self.firewall_config = firewall

    def _apply_firewall(self, ports: Mapping[str, PortPolicyConfig | None],
                        firewall: FirewallConfig | None, fc: FirewallChanges) -> None:
        if firewall is None or not firewall.enabled:
            if self.firewall is not None:
                self.firewall.detach_native()
            self.firewall = None
            return
        if self.firewall is None:
            self.firewall = build_firewall(firewall, ports)
            return
        if not fc:
            return
        fw = self.firewall
        old_rules = fw.ruleset
        fw.set_limits(firewall.timeouts.runtime(), firewall.max_connections)
        fw.replace_rules(build_ruleset(firewall, ports))
        keep = {r.id for r in old_rules.all_rules()} - fc.rules.touched
        if not fc.default_changed:
            keep.add(DEFAULT_RULE_ID)
        fw.ruleset.counters.hits = {rid: n for rid, n in old_rules.counters.hits.items()
                                    if rid in keep}

    def port(self, name: str) -> PortPolicy | None:
        """Policy of port ``name`` (``None`` when it has none)."""
        return self.ports.get(name)

    def expire(self, now: float) -> None:
        """Housekeeping: drop idle sessions and connections."""
        for p in self.ports.values():
            p.sessions.expire(now)
        if self.firewall is not None:
            self.firewall.expire(now)

    def queue_reply(self, reply: Reply) -> None:
        """Queue a reject answer (bounded: at most MAX_PENDING_REPLIES wait)."""
        if len(self.replies) < MAX_PENDING_REPLIES:
            self.replies.append(reply)
        else:
            self.replies_dropped += 1

    def counters(self) -> dict[str, Any]:
        """Policy counters for metrics: per port meters, sessions, storm buckets and
        connections; firewall rule hits."""
        ports: dict[str, dict[str, Any]] = {}
        for name, p in self.ports.items():
            ports[name] = {
                "meters": {f"{m.rule_id}/{m.direction}": {"packets": m.packets,
                                                         "bytes": m.bytes}
                           for m in p.acl.meters()},
                "ext_acl_sessions": len(p.sessions),
                "storm": p.storm.counters() if p.storm is not None else {},
            }
        fw: dict[str, Any] = {}
        if self.firewall is not None:
            for name, pf in self.firewall.ports().items():
                ports.setdefault(name, {})["connections"] = {
                    "active": len(pf.conntrack), **pf.conntrack.counters}
            fw = {"rule_hits": dict(self.firewall.ruleset.counters.hits)}
        return {"ports": ports, "firewall": fw, "replies_dropped": self.replies_dropped}

    def take_replies(self) -> list[Reply]:
        """Pending reject replies (and forget them)."""
        out, self.replies = self.replies, []
        return out
