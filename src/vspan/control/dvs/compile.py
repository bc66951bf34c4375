"""Compile the distributed switch into one host's single-switch :class:`Config`.

A host's switch holds: the ports placed on it (their port group's VLAN and
policy merged in), the overlay port to the other hosts (see :func:`overlay_ports`),
the firewall restricted to what applies here (port groups become firewall
groups whose remote members count by address), and the mirror sessions, or the
parts of them, that run here. What cannot run here yet is said in ``notes``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from vspan.config.dvs import DvsConfig, effective_port, group_members
from vspan.config.load import parse_config
from vspan.config.model import Config, PortConfig
from vspan.control.dvs.document import LiveHost
from vspan.policy.config import FirewallConfig, GroupConfig

OVERLAY_PORT = "overlay"  # name of the VXLAN port on every host


@dataclass
class HostPlan:
    """One host's switch configuration and what the compile had to say about it."""

    config: Config
    notes: list[str] = field(default_factory=list)
    port_ids: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # port -> why it is not attached


def port_vlans(cfg: PortConfig) -> set[int]:
    """The VLANs (inside the switch) a port carries; 0 stands for the untagged network."""
    v = cfg.vlan
    if v.mode.value == "access" and v.id is not None:
        return {v.id}
    if v.mode.value == "trunk":
        return set(v.allowed) | ({v.native} if v.native is not None else set())
    return {0}


def overlay_ports(dvs: DvsConfig, host: str, live: Mapping[str, LiveHost],
                  notes: list[str]) -> dict[str, PortConfig]:
    """The VXLAN port joining this host to the others that share a VLAN with it.

    The ``vxlan`` port type is being added to the single-host model on another
    branch; until it is there, no overlay port is made and the compile says which
    VLANs would need one.
    """
    local_vlans: set[int] = set()
    remote: dict[int, set[str]] = {}
    for name, port in dvs.ports.items():
        vlans = port_vlans(effective_port(dvs, name))
        if port.host == host:
            local_vlans |= vlans
        else:
            for v in vlans:
                remote.setdefault(v, set()).add(port.host)
    shared = sorted(v for v in local_vlans if remote.get(v))
    if shared:
        peers = sorted({h for v in shared for h in remote[v]})
        up = [h for h in peers if h in live]
        notes.append(
            "no VXLAN overlay in this build: VLANs "
            f"{', '.join('untagged' if v == 0 else str(v) for v in shared)} also have ports on "
            f"{', '.join(peers)} ({len(up)} registered), which this host cannot reach yet")
    return {}


def _firewall(dvs: DvsConfig, local: Collection[str]) -> FirewallConfig | None:
    fw = dvs.firewall
    if fw is None:
        return None

    def addresses(ports: Collection[str]) -> tuple[str, ...]:
        out: list[str] = []
        for p in ports:
            pol = effective_port(dvs, p).policy
            if pol is not None:
                out.extend(pol.addresses)
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
    return fw.model_copy(update={"groups": groups, "exclude": targets(fw.exclude),
                                 "sections": tuple(sections)})


def _mirrors(dvs: DvsConfig, host: str, local: Collection[str],
             notes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sname, s in dvs.mirrors.items():
        data = s.model_dump(mode="json", exclude_unset=True)
        if s.rspan_source is not None:
            if s.rspan_source.port in local:
                out[sname] = data
            continue
        sources: list[dict[str, Any]] = []
        for src in s.sources:
            names = [src.port] if src.port else group_members(dvs, src.port_group or "")
            sources.extend({"port": n, "direction": src.direction.value}
                           for n in names if n in local)
        if not sources:
            remote_dest = [d for d in s.destinations if d in local]
            if remote_dest:
                notes.append(f"mirror {sname}: destination {', '.join(remote_dest)} is here "
                             "but its sources are on other hosts (cross-host mirroring is "
                             "not in this build)")
            continue
        data["sources"] = sources
        if s.destinations:
            here = [d for d in s.destinations if d in local]
            away = [d for d in s.destinations if d not in local]
            if away:
                notes.append(f"mirror {sname}: copies for {', '.join(away)} on "
                             f"{', '.join(sorted({dvs.ports[d].host for d in away}))} are not "
                             "delivered (cross-host mirroring is not in this build)")
            if not here:
                continue
            data["destinations"] = here
        if s.rspan is not None and s.rspan.port not in local:
            notes.append(f"mirror {sname}: the RSPAN uplink {s.rspan.port} is on host "
                         f"{dvs.ports[s.rspan.port].host}; sources here are not mirrored")
            continue
        out[sname] = data
    return out


def compile_host(dvs: DvsConfig, host: str, live: Mapping[str, LiveHost],
                 control_socket: str | None = None,
                 unavailable: Mapping[str, str] | None = None) -> HostPlan:
    """Host ``host``'s switch configuration.

    ``unavailable`` maps ports that cannot be attached here (their interface is
    missing) to the reason; they are left out until they can be.
    """
    unavailable = unavailable or {}
    notes: list[str] = []
    placed = [n for n, p in dvs.ports.items() if p.host == host]
    local = [n for n in placed if n not in unavailable]
    ports: dict[str, Any] = {
        n: effective_port(dvs, n).model_dump(mode="json", exclude_unset=True) for n in local}
    for name, cfg in overlay_ports(dvs, host, live, notes).items():
        ports[name] = cfg.model_dump(mode="json", exclude_unset=True)
    switch = dvs.switch.model_dump(mode="json", exclude_unset=True,
                                   exclude={"vxlan_port", "mtu"})
    if control_socket:
        switch["control_socket"] = control_socket
    data: dict[str, Any] = {"switch": switch, "ports": ports,
                            "mirrors": _mirrors(dvs, host, set(local), notes)}
    fw = _firewall(dvs, set(local))
    if fw is not None:
        data["firewall"] = fw.model_dump(mode="json", exclude_unset=False)
    config = parse_config(data, f"dvs {dvs.switch.name} on host {host}")
    return HostPlan(config, notes, {n: str(dvs.ports[n].port_id) for n in placed},
                    {n: unavailable[n] for n in placed if n in unavailable})
