"""Diff two configurations into one typed change set that the switch applies live.

The change set is computed once per configuration change (:func:`diff`) and
handed down: the engine opens and closes port backends from it, the switch
state recompiles ports and mirrors from it, and the policy layer rebuilds only
the ACLs, extended ACLs, guards and firewall parts it names — everything it
does not name keeps its runtime state (connection tracking, extended-ACL
sessions, storm buckets, meters and rule hit counters).

Granularity:

* ports: added, removed, reopened (backend changed: type, interface, TAP settings or
  rx_steering),
  changed (other settings; policy is reported apart);
* mirror sessions: added, removed, changed;
* per-port policy (:class:`PortPolicyChanges`): ACL entries and extended ACL
  rules by id, guards, the port's own addresses;
* the firewall (:class:`FirewallChanges`): settings (default rule,
  ``enabled``, ``exclude``, timeouts, ...), groups (also when a member port's
  addresses change), sections (options or rule order) and rules by id;
* switch-wide settings by field name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from vspan.config.model import Config, PortConfig
from vspan.config.policy import (
    FirewallConfig,
    FwRuleConfig,
    FwSectionConfig,
    PortPolicyConfig,
    acl_id,
    ext_acl_id,
    rule_id,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Names:
    """What was added, removed and changed in one named collection (in config order)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    @property
    def touched(self) -> frozenset[str]:
        """Every name added, removed or changed."""
        return frozenset((*self.added, *self.removed, *self.changed))

    def lines(self, label: str, prefix: str = "") -> list[str]:
        """``"<label> added: <prefix><name>"`` lines, added first."""
        out: list[str] = []
        for verb, names in (("added", self.added), ("removed", self.removed),
                            ("changed", self.changed)):
            out.extend(f"{label} {verb}: {prefix}{n}" for n in names)
        return out


def compare(old: Mapping[str, T], new: Mapping[str, T]) -> Names:
    """Names added, removed and changed (by equality) from ``old`` to ``new``."""
    return Names(
        tuple(n for n in new if n not in old),
        tuple(n for n in old if n not in new),
        tuple(n for n in new if n in old and old[n] != new[n]),
    )


@dataclass(frozen=True)
class PortPolicyChanges:
    """How the policy of one port (present before and after) changed."""

    port: str
    acls: Names = Names()  # by entry id
    extended_acls: Names = Names()  # by rule id
    guards: bool = False
    addresses: bool = False

    def __bool__(self) -> bool:
        return bool(self.acls or self.extended_acls or self.guards or self.addresses)

    def lines(self) -> list[str]:
        """One line per change."""
        out = self.acls.lines("acl", f"{self.port}/")
        out += self.extended_acls.lines("extended acl", f"{self.port}/")
        if self.guards:
            out.append(f"guards changed: {self.port}")
        if self.addresses:
            out.append(f"addresses changed: {self.port}")
        return out


@dataclass(frozen=True)
class FirewallChanges:
    """How the distributed firewall changed."""

    added: bool = False  # there was no firewall section before
    removed: bool = False  # there is none after
    settings: tuple[str, ...] = ()  # enabled, default_action, tcp_strict, exclude, ...
    groups: Names = Names()  # also "changed" when a member port's addresses changed
    sections: Names = Names()  # "changed": options (tcp_strict, stateful, applied_to) or order
    section_order: bool = False  # the sections themselves were reordered
    rules: Names = Names()  # by rule id; "changed" also when moved to another section

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.settings or self.groups
                    or self.sections or self.section_order or self.rules)

    @property
    def default_changed(self) -> bool:
        """Whether the default rule decides differently."""
        return self.added or self.removed or "default_action" in self.settings

    def lines(self) -> list[str]:
        """One line per change."""
        out: list[str] = []
        if self.added:
            out.append("firewall added")
        if self.removed:
            out.append("firewall removed")
        out += [f"firewall setting changed: {s}" for s in self.settings]
        out += self.groups.lines("firewall group")
        out += self.sections.lines("firewall section")
        if self.section_order:
            out.append("firewall section order changed")
        out += self.rules.lines("firewall rule")
        return out


@dataclass(frozen=True)
class ChangeSet:
    """What differs between a running and a new configuration (see the module doc)."""

    ports_added: tuple[str, ...] = ()
    ports_removed: tuple[str, ...] = ()
    ports_reopened: tuple[str, ...] = ()  # backend changed (type/interface/tap): reopen
    ports_changed: tuple[str, ...] = ()  # settings other than policy changed, backend kept
    # (and reconfigured: a vxlan port takes new VNI maps and flood lists while open)
    mirrors_added: tuple[str, ...] = ()
    mirrors_removed: tuple[str, ...] = ()
    mirrors_changed: tuple[str, ...] = ()
    switch_changed: tuple[str, ...] = ()  # names of switch fields that changed
    policy: tuple[PortPolicyChanges, ...] = ()  # ports present before and after
    firewall: FirewallChanges = field(default_factory=FirewallChanges)

    @property
    def empty(self) -> bool:
        """True when nothing changes."""
        return not any(
            (self.ports_added, self.ports_removed, self.ports_reopened, self.ports_changed,
             self.mirrors_added, self.mirrors_removed, self.mirrors_changed, self.switch_changed,
             self.policy, self.firewall)
        )

    def policy_of(self, port: str) -> PortPolicyChanges | None:
        """The policy changes of ``port`` (``None`` when its policy is unchanged)."""
        return next((p for p in self.policy if p.port == port), None)

    def summary(self) -> list[str]:
        """One human-readable line per change."""
        lines: list[str] = []
        for label, names in (
            ("port added", self.ports_added),
            ("port removed", self.ports_removed),
            ("port reopened", self.ports_reopened),
            ("port changed", self.ports_changed),
            ("mirror added", self.mirrors_added),
            ("mirror removed", self.mirrors_removed),
            ("mirror changed", self.mirrors_changed),
            ("switch setting changed", self.switch_changed),
        ):
            lines.extend(f"{label}: {n}" for n in names)
        for pc in self.policy:
            lines.extend(pc.lines())
        lines.extend(self.firewall.lines())
        return lines


def _backend_key(name: str, cfg: PortConfig) -> tuple[object, ...]:
    """What identifies a port's open backend: a change reopens it, anything else is
    applied to the open backend (a vxlan port keeps its socket while its VNI map,
    flood lists and static entries change; any change of a team's settings reopens it)."""
    if cfg.vxlan is not None:
        return (cfg.type.value, f"{cfg.vxlan.local_ip}:{cfg.vxlan.udp_port}")
    return (cfg.type.value, cfg.ifname(name), cfg.tap_settings(), cfg.team, cfg.rx_steering)


def _by_id(items: Sequence[T], ident: Callable[[T, int], str]) -> dict[str, tuple[T, ...]]:
    """Entries grouped by id (extended ACL ids repeat across directions)."""
    out: dict[str, tuple[T, ...]] = {}
    for i, item in enumerate(items):
        key = ident(item, i)
        out[key] = (*out.get(key, ()), item)
    return out


_EMPTY_POLICY = PortPolicyConfig()


def diff_port_policy(port: str, old: PortPolicyConfig | None,
                     new: PortPolicyConfig | None) -> PortPolicyChanges:
    """How one port's policy changed (``None`` = no policy)."""
    a = old or _EMPTY_POLICY
    b = new or _EMPTY_POLICY
    acls = compare(_by_id(a.acls, acl_id), _by_id(b.acls, acl_id))
    ext = compare(_by_id(a.extended_acls, ext_acl_id), _by_id(b.extended_acls, ext_acl_id))
    return PortPolicyChanges(port, acls, ext, a.guards != b.guards, a.addresses != b.addresses)


_FW_OPTIONS = ("tcp_strict", "stateful", "applied_to")


def _rules(fw: FirewallConfig) -> dict[str, tuple[str, FwRuleConfig]]:
    out: dict[str, tuple[str, FwRuleConfig]] = {}
    for sec in fw.sections:
        for i, r in enumerate(sec.rules):
            out[rule_id(sec, r, i)] = (sec.name, r)
    return out


def _rule_order(sec: FwSectionConfig, keep: set[str]) -> list[str]:
    return [rid for i, r in enumerate(sec.rules) if (rid := rule_id(sec, r, i)) in keep]


def diff_firewall(old: FirewallConfig | None, new: FirewallConfig | None,
                  old_ports: Mapping[str, PortPolicyConfig | None],
                  new_ports: Mapping[str, PortPolicyConfig | None]) -> FirewallChanges:
    """How the firewall changed; ``*_ports`` give member ports' addresses for groups."""
    if old is None and new is None:
        return FirewallChanges()
    a = old or FirewallConfig()
    b = new or FirewallConfig()
    settings = tuple(f for f in type(b).model_fields
                     if f not in ("groups", "sections") and getattr(a, f) != getattr(b, f))
    groups = compare(a.groups, b.groups)

    def addrs(ports: Mapping[str, PortPolicyConfig | None], name: str) -> tuple[str, ...]:
        pol = ports.get(name)
        return pol.addresses if pol is not None else ()

    members_moved = tuple(
        g for g in b.groups
        if g in a.groups and g not in groups.changed
        and any(addrs(old_ports, p) != addrs(new_ports, p) for p in b.groups[g].ports))
    if members_moved:
        groups = Names(groups.added, groups.removed,
                       tuple(g for g in b.groups if g in groups.changed or g in members_moved))
    old_secs = {s.name: s for s in a.sections}
    new_secs = {s.name: s for s in b.sections}
    ra, rb = _rules(a), _rules(b)
    rules = compare(ra, rb)
    both = set(ra) & set(rb)
    sec_changed = tuple(
        n for n, s in new_secs.items() if n in old_secs and (
            any(getattr(s, o) != getattr(old_secs[n], o) for o in _FW_OPTIONS)
            or _rule_order(s, both) != _rule_order(old_secs[n], both)))
    sections = Names(tuple(n for n in new_secs if n not in old_secs),
                     tuple(n for n in old_secs if n not in new_secs), sec_changed)
    kept = [n for n in old_secs if n in new_secs]
    order = kept != [n for n in new_secs if n in old_secs]
    return FirewallChanges(old is None, new is None, settings, groups, sections, order, rules)


def diff(old: Config, new: Config) -> ChangeSet:
    """Compute the change set from ``old`` to ``new``."""
    added = tuple(n for n in new.ports if n not in old.ports)
    removed = tuple(n for n in old.ports if n not in new.ports)
    reopened: list[str] = []
    changed: list[str] = []
    policy: list[PortPolicyChanges] = []
    for name in new.ports:
        if name not in old.ports:
            continue
        a, b = old.ports[name], new.ports[name]
        if a == b:
            continue
        if a.policy != b.policy:
            pc = diff_port_policy(name, a.policy, b.policy)
            if pc:
                policy.append(pc)
        if _backend_key(name, a) != _backend_key(name, b):
            reopened.append(name)
        elif a.model_copy(update={"policy": None}) != b.model_copy(update={"policy": None}):
            changed.append(name)
    mirrors = compare(old.mirrors, new.mirrors)
    sw_changed = tuple(
        f for f in type(new.switch).model_fields
        if getattr(old.switch, f) != getattr(new.switch, f)
    )
    firewall = diff_firewall(old.firewall, new.firewall,
                             {n: p.policy for n, p in old.ports.items()},
                             {n: p.policy for n, p in new.ports.items()})
    return ChangeSet(added, removed, tuple(reopened), tuple(changed), mirrors.added,
                     mirrors.removed, mirrors.changed, sw_changed, tuple(policy), firewall)
