"""Compile the distributed switch into one host's single-switch :class:`Config`.

A host's switch holds: the ports placed on it (their port group's VLAN and
policy merged in), the overlay port to the other hosts (see :func:`overlay_ports`),
the firewall restricted to what applies here (port groups become firewall
groups whose remote members count by address), and the parts of the mirror
sessions that run here (:mod:`vspan.control.dvs.mirrorplan`). What cannot run
here is said in ``notes``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from vspan.config.dvs import OVERLAY_PORT, DvsConfig, effective_port, group_members
from vspan.config.load import parse_config
from vspan.config.model import Config, PortConfig, PortType, VlanConfig
from vspan.config.policy import FirewallConfig, GroupConfig
from vspan.config.vxlan import KNOWN_IPV4
from vspan.control.dvs.document import LiveHost
from vspan.control.dvs.mirrorplan import ROLE_LOCAL, MirrorPlan, plan_mirrors


@dataclass
class HostPlan:
    """One host's switch configuration and what the compile had to say about it."""

    config: Config
    notes: list[str] = field(default_factory=list)
    port_ids: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # port -> why it is not attached
    # single-host session -> (distributed session, role: local / tx / rx)
    mirror_parts: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class _Entry:
    port: object  # the items the entry was made from (fresh while they are the same
    group: object  # objects: the store index replaces an item's object when it changes)
    vlans: frozenset[int]
    addresses: tuple[str, ...]
    effective: PortConfig | None = None
    data: dict[str, Any] | None = None


class PortCache:
    """Per-port compile work kept between an agent's compiles: every port's VLANs and
    addresses (what other hosts need to know of it), and, for ports of this host, the
    single-host port (group merged in), its JSON form and its validated configuration.
    An entry is redone only when the port's or its group's item changed.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._valid: dict[str, tuple[str, PortConfig]] = {}
        self._ipv4_known: set[str] = set()  # underlay addresses already validated

    def _entry(self, dvs: DvsConfig, name: str) -> _Entry:
        port = dvs.ports[name]
        group = dvs.port_groups.get(port.port_group) if port.port_group else None
        e = self._entries.get(name)
        if e is None or e.port is not port or e.group is not group:
            vlan = group.vlan if group is not None else port.vlan
            own = port.policy.addresses if port.policy is not None else ()
            e = _Entry(port, group, frozenset(vlan_set(vlan)), tuple(own))
            self._entries[name] = e
        return e

    def effective(self, dvs: DvsConfig, name: str) -> PortConfig:
        """Port ``name`` with its group merged in."""
        e = self._entry(dvs, name)
        if e.effective is None:
            e.effective = effective_port(dvs, name)
        return e.effective

    def vlans(self, dvs: DvsConfig, name: str) -> frozenset[int]:
        """The VLANs port ``name`` carries (0: the untagged network)."""
        return self._entry(dvs, name).vlans

    def hosts_by_vlan(self, dvs: DvsConfig) -> dict[int, set[str]]:
        """VLAN (0: untagged) -> the hosts with a port in it. A port in a port group
        carries its group's VLANs, worked out once per group (a change of one group's VLAN
        touches every member: this walk stays cheap with hundreds of them)."""
        out: dict[int, set[str]] = {}
        groups = dvs.port_groups
        per_group: dict[str, frozenset[int] | None] = {}  # None: a missing group
        for name, port in dvs.ports.items():
            gname = port.port_group
            vlans: frozenset[int] | None = None
            if gname:
                if gname not in per_group:
                    group = groups.get(gname)
                    per_group[gname] = (frozenset(vlan_set(group.vlan))
                                        if group is not None else None)
                vlans = per_group[gname]
            if vlans is None:  # no group (or a missing one): the port's own VLAN
                vlans = self.vlans(dvs, name)
            for v in vlans:
                hosts = out.get(v)
                if hosts is None:
                    out[v] = {port.host}
                else:
                    hosts.add(port.host)
        return out

    def addresses(self, dvs: DvsConfig, name: str) -> tuple[str, ...]:
        """Port ``name``'s own addresses (``policy.addresses``)."""
        return self._entry(dvs, name).addresses

    def data(self, dvs: DvsConfig, name: str) -> dict[str, Any]:
        """Port ``name`` as single-host configuration data (a fresh copy)."""
        e = self._entry(dvs, name)
        if e.data is None:
            e.data = self.effective(dvs, name).model_dump(mode="json", exclude_unset=True)
        return dict(e.data)

    def validated(self, name: str, data: dict[str, Any]) -> PortConfig:
        """``data`` as a validated single-host port (the last result again while the data
        is the same: an overlay port's long flood lists are checked once, not per change).
        Raises pydantic's ValidationError."""
        key = json.dumps(data, sort_keys=True)
        hit = self._valid.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        if len(self._ipv4_known) > 65536:  # hosts came and went: start again
            self._ipv4_known.clear()
        cfg = PortConfig.model_validate(data, context={KNOWN_IPV4: self._ipv4_known})
        self._valid[name] = (key, cfg)
        return cfg

    def forget(self, keep: Collection[str]) -> None:
        """Drop entries of ports no longer in the switch."""
        for name in [n for n in self._entries if n not in keep]:
            del self._entries[name]


def vlan_set(v: VlanConfig) -> set[int]:
    """The VLANs (inside the switch) a VLAN setting carries; 0 is the untagged network."""
    if v.mode.value == "access" and v.id is not None:
        return {v.id}
    if v.mode.value == "trunk":
        return set(v.allowed) | ({v.native} if v.native is not None else set())
    return {0}


def port_vlans(cfg: PortConfig) -> set[int]:
    """The VLANs (inside the switch) a port carries; 0 stands for the untagged network."""
    return vlan_set(cfg.vlan)


def vni_of(dvs: DvsConfig, vlan: int) -> int:
    """The VNI of a VLAN of the distributed switch (0 = the untagged network)."""
    return dvs.switch.vni_base + vlan


def overlay_supported() -> bool:
    """Whether this build's single-host model has the ``vxlan`` port type."""
    return "vxlan" in {t.value for t in PortType}


def overlay_ports(dvs: DvsConfig, host: str, underlay: str | None,
                  live: Mapping[str, LiveHost], notes: list[str],
                  cache: PortCache | None = None,
                  mirror: MirrorPlan | None = None) -> dict[str, Any]:
    """The VXLAN port joining this host to the other hosts (as config data).

    ``vnis``: every VLAN that has ports on two hosts or more -> ``vni_base + VLAN``,
    and the mirror VLANs this host sends or receives copies on; ``flood``: per
    VLAN with ports here, the underlay addresses of the other *registered* hosts
    with ports in it, and per mirror VLAN sent from here the hosts that receive
    it; ``peers``: every other registered host. Empty when this host shares no
    VLAN and carries no mirror copies (or has no underlay address).
    """
    cache = cache or PortCache()
    by_vlan = cache.hosts_by_vlan(dvs)
    shared = sorted(v for v, hosts in by_vlan.items() if len(hosts) > 1)
    local_shared = [v for v in shared if host in by_vlan[v]]
    mirror_vlans = sorted(mirror.vlans) if mirror is not None else []
    if not local_shared and not mirror_vlans:
        return {}
    others = {h: lh.underlay for h, lh in live.items()
              if h != host and lh.underlay and lh.underlay != underlay}
    same = sorted(h for h, lh in live.items() if h != host and lh.underlay == underlay)
    if same:
        notes.append(f"hosts {', '.join(same)} registered this host's underlay address "
                     f"{underlay}: not flooded to")
    if not overlay_supported():
        notes.append(
            "no VXLAN overlay in this build: VLANs "
            f"{', '.join('untagged' if v == 0 else str(v) for v in local_shared)} also have "
            "ports on other hosts, which this host cannot reach")
        return {}
    if not underlay:
        notes.append("no underlay address: the overlay port is not made")
        return {}
    flood = {str(v): sorted({others[h] for h in by_vlan[v] if h in others})
             for v in local_shared}
    if mirror is not None:
        flood.update({str(v): list(ips) for v, ips in mirror.flood.items()})
    missing = sorted({h for v in local_shared for h in by_vlan[v]
                      if h != host and h not in others})
    if missing:
        notes.append(f"hosts not registered (not flooded to): {', '.join(missing)}")
    return {OVERLAY_PORT: {
        "type": "vxlan",
        "description": f"VXLAN overlay of distributed switch {dvs.switch.name}",
        "vxlan": {
            "local_ip": underlay, "udp_port": dvs.switch.vxlan_port,
            "vnis": {str(v): vni_of(dvs, v) for v in sorted({*shared, *mirror_vlans})},
            "flood": {v: ips for v, ips in flood.items() if ips},
            "mirror_vlans": mirror_vlans,
            "peers": sorted(set(others.values())),
            "underlay_mtu": dvs.switch.mtu,
        }}}


def _firewall(dvs: DvsConfig, local: Collection[str], cache: PortCache,
              overlay: bool = False) -> FirewallConfig | None:
    fw = dvs.firewall
    if fw is None:
        return None

    def addresses(ports: Collection[str]) -> tuple[str, ...]:
        out: list[str] = []
        for p in ports:
            out.extend(cache.addresses(dvs, p))
        return tuple(dict.fromkeys(out))

    groups: dict[str, GroupConfig] = {}
    named = dict(fw.groups)
    for pg in dvs.port_groups:
        named.setdefault(pg, GroupConfig(ports=tuple(group_members(dvs, pg))))
    for gname, g in named.items():
        here = tuple(p for p in g.ports if p in local)
        away = [p for p in g.ports if p not in local]
        groups[gname] = GroupConfig(ports=here, addresses=g.addresses + addresses(away))

    def targets(items: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(i for i in items
                     if (i[6:] if i.startswith("group:") else i) in local or
                     (i[6:] if i.startswith("group:") else i) in groups)

    sections = []
    for sec in fw.sections:
        if sec.applied_to and not targets(sec.applied_to):
            continue  # applies only to ports on other hosts
        rules = []
        for rule in sec.rules:
            if rule.applied_to and not targets(rule.applied_to):
                continue
            rules.append(rule.model_copy(update={"applied_to": targets(rule.applied_to)}))
        sections.append(sec.model_copy(update={"applied_to": targets(sec.applied_to),
                                               "rules": tuple(rules)}))
    # the overlay port stands for other hosts, not for a VM: the distributed firewall
    # judges VMs' ports only (it is at both ends of a flow already)
    exclude = targets(fw.exclude) + ((OVERLAY_PORT,) if overlay else ())
    return fw.model_copy(update={"groups": groups, "exclude": exclude,
                                 "sections": tuple(sections)})


def compile_host(dvs: DvsConfig, host: str, live: Mapping[str, LiveHost],
                 control_socket: str | None = None,
                 unavailable: Mapping[str, str] | None = None,
                 underlay: str | None = None, cache: PortCache | None = None) -> HostPlan:
    """Host ``host``'s switch configuration (``underlay``: its VTEP address).

    ``unavailable`` maps ports that cannot be attached here (their interface is
    missing) to the reason; they are left out until they can be. ``cache`` keeps
    the per-port work of earlier compiles (an agent compiles after every change).
    """
    unavailable = unavailable or {}
    cache = cache or PortCache()
    notes: list[str] = []
    placed = [n for n, p in dvs.ports.items() if p.host == host]
    local = [n for n in placed if n not in unavailable]
    ports: dict[str, Any] = {n: cache.data(dvs, n) for n in local}
    mirror = plan_mirrors(dvs, host, set(local), live)
    notes.extend(mirror.notes)
    ports.update(overlay_ports(dvs, host, underlay, live, notes, cache, mirror))
    if OVERLAY_PORT not in ports:  # no overlay here: parts that would use it cannot run
        for part, (sname, role) in list(mirror.parts.items()):
            if role != ROLE_LOCAL:
                notes.append(f"mirror {sname}: no overlay port on this host, its copies "
                             "between hosts are not carried")
                del mirror.parts[part]
                del mirror.sessions[part]
    switch = dvs.switch.model_dump(mode="json", exclude_unset=True,
                                   exclude={"vxlan_port", "mtu", "vni_base", "mirror_vlans"})
    if control_socket:
        switch["control_socket"] = control_socket
    data: dict[str, Any] = {"switch": switch, "ports": ports, "mirrors": mirror.sessions}
    fw = _firewall(dvs, set(local), cache, OVERLAY_PORT in ports)
    if fw is not None:
        data["firewall"] = fw.model_dump(mode="json", exclude_unset=False)
    source = f"dvs {dvs.switch.name} on host {host}"
    try:  # ports validated one by one (cached), then the whole
        data["ports"] = {n: cache.validated(n, d) for n, d in ports.items()}
    except ValidationError:
        data["ports"] = ports  # the full validation names the path of what is wrong
    config = parse_config(data, source)
    return HostPlan(config, notes, {n: str(dvs.ports[n].port_id) for n in placed},
                    {n: unavailable[n] for n in placed if n in unavailable}, mirror.parts)
