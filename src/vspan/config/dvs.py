"""The distributed switch (DVS) configuration: one switch over many hosts.

The YAML shape is a single-host configuration (:mod:`vspan.config.model`)
extended with ``hosts`` and ``port_groups`` and, per port, ``host``, ``vm``,
``mac``, ``port_id`` and ``port_group``::

    switch: {name: prod, vxlan_port: 4789, mtu: 1600}
    hosts:
      esx1: {description: rack 1}
      esx2: {}
    port_groups:
      web:
        vlan: {mode: access, id: 10}
        policy:
          guards: {mac_spoofing: false}        # only the port's own ``mac`` may send
          acls: [{id: no-mgmt, action: deny, direction: both, remote_ip: 192.168.0.0/16}]
    ports:
      web1: {host: esx1, interface: veth-web1, vm: web1, mac: "02:00:00:00:00:01",
             port_group: web, port_id: 17, policy: {addresses: [10.0.10.1]}}
    mirrors:
      watch-web:                               # sources and destinations on any host
        sources: [{port_group: web}]
        destinations: [sniffer]
    firewall:
      sections:
        - name: web
          applied_to: [web]                    # a port group
          rules: [{sources: [any], destinations: [web], services: [tcp/80], action: allow}]

A port that names a port group takes its VLAN policy, MAC limit, ACLs,
extended ACLs and guards from the group; its own ``policy`` adds the port's
``addresses`` and further ACL entries (after the group's). Port groups are
also firewall groups: their members' addresses, on every host. Every error
names its path, like the single-host configuration's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from vspan.config.base import IFNAME_RE, PORT_NAME_RE, Strict
from vspan.config.model import (
    Direction,
    MirrorSession,
    PortConfig,
    SwitchConfig,
    VlanConfig,
    VlanId,
    VlanMode,
    untagged_vids,
)
from vspan.config.policy import (
    AclEntryConfig,
    ExtendedAclConfig,
    FirewallConfig,
    GroupConfig,
    GuardsConfig,
    MacText,
    PortPolicyConfig,
    StormConfig,
    policy_reference_errors,
)
from vspan.config.pvlan import pvlan_errors

DEFAULT_VXLAN_PORT = 4789
OVERLAY_PORT = "overlay"  # the VXLAN port every host's switch gets; no user port may use it
# a session's parts on one host are named SESSION (local copies), SESSION.tx (copies sent
# over the overlay) and SESSION.rx (copies received from it): user sessions may not end so
PART_SUFFIXES = (".tx", ".rx")
SESSION_NAME_MAX = 29  # 32 (a port/session name) minus a part suffix


def _port_id(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a port id (a number or a name)")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{value} is not a port id (numbers start at 0)")
    if isinstance(value, str) and not PORT_NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a port id (letters, digits, '_.-', up to 32)")
    return value


PortId = Annotated[int | str, BeforeValidator(_port_id)]


def port_id_key(value: int | str) -> str:
    """A port id as text (ids 7 and "7" are the same id)."""
    return str(value)


class MirrorVlanRange(Strict):
    """VLANs reserved for mirror copies between hosts (one per session; never a port's)."""

    first: VlanId = 4000
    last: VlanId = 4094

    @model_validator(mode="after")
    def _order(self) -> MirrorVlanRange:
        if self.last < self.first:
            raise ValueError(f"last ({self.last}) is below first ({self.first})")
        return self

    def __contains__(self, vlan: object) -> bool:
        return isinstance(vlan, int) and self.first <= vlan <= self.last

    def text(self) -> str:
        """``4000-4094``."""
        return f"{self.first}-{self.last}"


class DvsSwitchConfig(SwitchConfig):
    """Switch-wide settings of a distributed switch (the same on every host)."""

    vxlan_port: int = Field(default=DEFAULT_VXLAN_PORT, ge=1, le=65535,
                            description="UDP port of the VXLAN overlay between hosts")
    mtu: int = Field(default=1500, ge=576, le=65535,
                     description="underlay MTU between hosts (inner frames are 50 bytes less)")
    vni_base: int = Field(default=10000, ge=0, le=(1 << 24) - 4095,
                          description="VNI of VLAN v is vni_base + v (untagged network: +0)")
    mirror_vlans: MirrorVlanRange = Field(
        default_factory=MirrorVlanRange,
        description="VLANs (and so VNIs) reserved for mirror copies between hosts")

    @model_validator(mode="after")
    def _no_socket(self) -> DvsSwitchConfig:
        if self.control_socket is not None:
            raise ValueError("control_socket is per host: give it to `vspan agent --socket`")
        return self


class DvsHostConfig(Strict):
    """A host declared as a member of the distributed switch (its agent registers it)."""

    description: str = ""


class GroupGuardsConfig(Strict):
    """Guards of a port group; ``mac_spoofing: false`` without ``macs`` means each port's
    own ``mac``."""

    mac_spoofing: bool = True
    macs: tuple[MacText, ...] = ()
    dhcp_guard: bool = False
    router_guard: bool = False
    storm: StormConfig | None = None


class PortGroupPolicyConfig(Strict):
    """Policy shared by every port of a port group."""

    acls: tuple[AclEntryConfig, ...] = ()
    extended_acls: tuple[ExtendedAclConfig, ...] = ()
    guards: GroupGuardsConfig = GroupGuardsConfig()


class PortGroupConfig(Strict):
    """A port group (vDS distributed port group): VLAN and security policy for its ports."""

    vlan: VlanConfig = VlanConfig()
    mac_limit: int = Field(default=0, ge=0)
    policy: PortGroupPolicyConfig | None = None
    description: str = ""


class DvsPortConfig(PortConfig):
    """A port of the distributed switch: a VM's vNIC, placed on a host."""

    host: str
    vm: str | None = Field(default=None, min_length=1, max_length=64)
    mac: MacText | None = None
    port_id: PortId | None = Field(
        default=None, description="stable id; assigned by `dvs apply` when absent")
    port_group: str | None = None

    def local(self) -> PortConfig:
        """Only the single-host fields (the group not merged in)."""
        return PortConfig.model_validate(
            self.model_dump(include=set(PortConfig.model_fields), exclude_unset=True))


class DvsMirrorSource(Strict):
    """A mirror source: a port or every port of a port group, on any host."""

    port: str | None = None
    port_group: str | None = None
    direction: Direction = Direction.BOTH

    @model_validator(mode="after")
    def _one(self) -> DvsMirrorSource:
        if (self.port is None) == (self.port_group is None):
            raise ValueError("a source names either 'port' or 'port_group'")
        return self


def _dvs_sources(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [{"port": v} if isinstance(v, str) else v for v in value]
    return value


class DvsMirrorSession(MirrorSession):
    """A mirror session of the distributed switch (sources may be port groups)."""

    sources: Annotated[tuple[DvsMirrorSource, ...],
                       BeforeValidator(_dvs_sources)] = ()  # type: ignore[assignment]
    overlay_vlan: VlanId | None = Field(
        default=None, description="the mirror VLAN carrying this session's copies between "
        "hosts (from switch.mirror_vlans; assigned by `dvs apply` when absent)")

    @model_validator(mode="after")
    def _check(self) -> DvsMirrorSession:
        if self.rspan_source is not None:
            if self.sources or self.rspan or self.erspan:
                raise ValueError("an rspan_source session takes no sources, rspan or erspan")
            if not self.destinations:
                raise ValueError("an rspan_source session needs destinations")
            return self
        if not self.sources:
            raise ValueError("a session needs at least one source")
        kinds = [k for k, v in (("destinations", self.destinations), ("rspan", self.rspan),
                                ("erspan", self.erspan)) if v]
        if not kinds:
            raise ValueError("a session needs destinations, rspan or erspan")
        if len(kinds) > 1:
            raise ValueError(f"a session has one kind of destination, not {' and '.join(kinds)}")
        names = [s.port or f"port_group {s.port_group}" for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source listed twice: {', '.join(dup)}")
        if self.filter:
            from vspan.packet.flowmatch import FilterError, compile_match

            try:
                compile_match(self.filter)
            except FilterError as err:
                raise ValueError(f"filter: {err}") from None
        return self


class DvsConfig(Strict):
    """A whole distributed switch: the desired state kept in the store."""

    switch: DvsSwitchConfig = DvsSwitchConfig()
    hosts: Mapping[str, DvsHostConfig] = Field(default_factory=dict)
    port_groups: Mapping[str, PortGroupConfig] = Field(default_factory=dict)
    ports: Mapping[str, DvsPortConfig] = Field(default_factory=dict)
    mirrors: Mapping[str, DvsMirrorSession] = Field(default_factory=dict)
    firewall: FirewallConfig | None = None

    @model_validator(mode="after")
    def _cross_check(self) -> DvsConfig:
        errors: list[str] = []
        for kind, names in (("hosts", self.hosts), ("port_groups", self.port_groups)):
            for name in names:
                if not PORT_NAME_RE.match(name):
                    errors.append(f"{kind}.{name}: not a valid name")
        fw_groups = self.firewall.groups if self.firewall is not None else {}
        for name in self.port_groups:
            if name in self.ports:
                errors.append(f"port_groups.{name}: a port has the same name")
            if name in fw_groups:
                errors.append(f"port_groups.{name}: a firewall group has the same name")
        errors.extend(self._port_errors())
        errors.extend(self._reserved_vlan_errors())
        errors.extend(self._mirror_errors())
        if not errors:
            effective = {n: effective_port(self, n) for n in self.ports}
            policies = {n: p.policy for n, p in effective.items()}
            errors.extend(policy_reference_errors(policies, firewall_with_port_groups(self)))
            errors.extend(self._pvlan_errors(effective))
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def _pvlan_errors(self, effective: Mapping[str, PortConfig]) -> list[str]:
        """The single-host configuration's private VLAN cross-checks over every port of
        every host (a private VLAN spans the hosts), on the ports with their port groups
        merged in: errors of a group's ``vlan`` are said at the group."""
        errors: list[str] = []
        for name, port in self.ports.items():
            group = self.port_groups.get(port.port_group) if port.port_group else None
            if port.pvlan is not None and group is not None and group.vlan != VlanConfig():
                errors.append(f"ports.{name}.pvlan: a private VLAN port is untagged on the "
                              f"wire and its VLANs come from 'pvlan', but its port group "
                              f"{port.port_group!r} sets 'vlan'")
        vlan_at = {n: f"port_groups.{p.port_group}.vlan"
                   for n, p in self.ports.items() if p.port_group}
        errors += pvlan_errors(
            {n: p.pvlan for n, p in effective.items()},
            {n: k for n, p in effective.items() if (k := untagged_vids(p))},
            {n: p.vlan.allowed for n, p in effective.items() if p.vlan.mode is VlanMode.TRUNK},
            vlan_at)
        return errors

    def _reserved_vlan_errors(self) -> list[str]:
        """Ports and port groups may not use the VLANs reserved for mirror copies."""
        reserved = self.switch.mirror_vlans
        errors: list[str] = []
        items = [(f"port_groups.{n}", g.vlan) for n, g in self.port_groups.items()]
        items += [(f"ports.{n}", p.vlan) for n, p in self.ports.items()
                  if "vlan" in p.model_fields_set]
        for where, v in items:
            used = sorted({x for x in (v.id, v.native, *v.allowed)
                           if x is not None and x in reserved})
            if used:
                errors.append(f"{where}.vlan: VLAN {used[0]} is reserved for mirror copies "
                              f"between hosts (switch.mirror_vlans: {reserved.text()})")
        for n, p in self.ports.items():
            pv = p.pvlan
            if pv is None:
                continue
            used = sorted(x for x in (pv.primary, pv.secondary, *pv.secondaries)
                          if x is not None and x in reserved)
            if used:
                errors.append(f"ports.{n}.pvlan: VLAN {used[0]} is reserved for mirror copies "
                              f"between hosts (switch.mirror_vlans: {reserved.text()})")
        return errors

    def _port_errors(self) -> list[str]:
        errors: list[str] = []
        ifnames: dict[tuple[str, str], str] = {}
        ids: dict[str, str] = {}
        for name, port in self.ports.items():
            base = f"ports.{name}"
            if not PORT_NAME_RE.match(name):
                errors.append(f"{base}: not a valid port name")
                continue
            if name == OVERLAY_PORT:
                errors.append(f"{base}: the name {OVERLAY_PORT!r} is reserved for the VXLAN "
                              "port between hosts")
            if port.host not in self.hosts:
                known = ", ".join(sorted(self.hosts)) or "none"
                errors.append(f"{base}.host: no host named {port.host!r} (hosts: {known})")
            ifname = port.ifname(name)
            if not IFNAME_RE.match(ifname):
                errors.append(f"{base}.interface: {ifname!r} is not an interface name")
            elif (port.host, ifname) in ifnames:
                errors.append(f"{base}.interface: {ifname!r} is already used on host "
                              f"{port.host} by port {ifnames[(port.host, ifname)]!r}")
            ifnames[(port.host, ifname)] = name
            if port.port_id is not None:
                key = port_id_key(port.port_id)
                if key in ids:
                    errors.append(f"{base}.port_id: {port.port_id!r} is already the id of port "
                                  f"{ids[key]!r}")
                ids[key] = name
            if port.port_group is None:
                continue
            group = self.port_groups.get(port.port_group)
            if group is None:
                errors.append(f"{base}.port_group: no port group named {port.port_group!r}")
                continue
            for fld in ("vlan", "mac_limit"):
                if fld in port.model_fields_set:
                    errors.append(f"{base}.{fld}: set by port group {port.port_group!r} "
                                  "(remove it here or the port_group)")
            guards = group.policy.guards if group.policy is not None else None
            own_guards = port.policy is not None and "guards" in port.policy.model_fields_set
            if guards is not None and not guards.mac_spoofing and not guards.macs \
                    and port.mac is None and not own_guards:
                errors.append(f"{base}.mac: port group {port.port_group!r} forbids MAC "
                              "spoofing, so the port needs its 'mac'")
        return errors

    def _mirror_errors(self) -> list[str]:
        errors: list[str] = []
        reserved = self.switch.mirror_vlans
        overlay_vlans: dict[int, str] = {}
        for sname, s in self.mirrors.items():
            base = f"mirrors.{sname}"
            if sname.endswith(PART_SUFFIXES) or len(sname) > SESSION_NAME_MAX:
                errors.append(f"{base}: session names may not end in "
                              f"{' or '.join(PART_SUFFIXES)} and have at most "
                              f"{SESSION_NAME_MAX} characters (the parts of a session on a "
                              "host are named after it)")
            if s.overlay_vlan is not None:
                if s.overlay_vlan not in reserved:
                    errors.append(f"{base}.overlay_vlan: {s.overlay_vlan} is not in "
                                  f"switch.mirror_vlans ({reserved.text()})")
                elif s.overlay_vlan in overlay_vlans:
                    errors.append(f"{base}.overlay_vlan: {s.overlay_vlan} is already the "
                                  f"overlay VLAN of session {overlay_vlans[s.overlay_vlan]!r}")
                overlay_vlans[s.overlay_vlan] = sname
            src_ports: set[str] = set()
            for i, src in enumerate(s.sources):
                if src.port is not None:
                    if src.port not in self.ports:
                        errors.append(f"{base}.sources.{i}.port: no port named {src.port!r}")
                    src_ports.add(src.port)
                elif src.port_group not in self.port_groups:
                    errors.append(f"{base}.sources.{i}.port_group: no port group named "
                                  f"{src.port_group!r}")
                else:
                    src_ports.update(group_members(self, src.port_group or ""))
            for i, dst in enumerate(s.destinations):
                if dst not in self.ports:
                    errors.append(f"{base}.destinations.{i}: no port named {dst!r}")
                elif dst in src_ports:
                    errors.append(f"{base}: port {dst!r} is both a source and a destination "
                                  "of this session")
            for fld in ("rspan", "rspan_source"):
                ref = getattr(s, fld)
                if ref is None:
                    continue
                if ref.port not in self.ports:
                    errors.append(f"{base}.{fld}.port: no port named {ref.port!r}")
                elif fld == "rspan" and ref.port in src_ports:
                    errors.append(f"{base}: port {ref.port!r} is both a source and the "
                                  "RSPAN uplink")
            if s.rspan_source is not None and s.rspan_source.port in self.ports:
                host = self.ports[s.rspan_source.port].host
                for i, dst in enumerate(s.destinations):
                    if dst == s.rspan_source.port:
                        errors.append(f"{base}: the RSPAN uplink cannot be a destination")
                    elif dst in self.ports and self.ports[dst].host != host:
                        errors.append(f"{base}.destinations.{i}: {dst!r} is on host "
                                      f"{self.ports[dst].host}, not on the uplink's host {host}")
        return errors


def group_members(dvs: DvsConfig, group: str) -> list[str]:
    """The ports of port group ``group`` (every host), in configuration order."""
    return [n for n, p in dvs.ports.items() if p.port_group == group]


def effective_port(dvs: DvsConfig, name: str) -> PortConfig:
    """Port ``name`` as a single-host port: its port group's VLAN and policy merged in."""
    port = dvs.ports[name]
    local = port.local()
    group = dvs.port_groups.get(port.port_group) if port.port_group else None
    if group is None:
        return local
    own = port.policy
    gpol = group.policy
    guards: GuardsConfig
    if own is not None and "guards" in own.model_fields_set:
        guards = own.guards
    elif gpol is not None:
        g = gpol.guards
        macs = g.macs or ((port.mac,) if port.mac and not g.mac_spoofing else ())
        guards = GuardsConfig.model_validate({
            "mac_spoofing": g.mac_spoofing or not macs, "macs": macs,
            "dhcp_guard": g.dhcp_guard, "router_guard": g.router_guard, "storm": g.storm})
    else:
        guards = GuardsConfig()
    policy = PortPolicyConfig(
        addresses=own.addresses if own else (),
        acls=(gpol.acls if gpol else ()) + (own.acls if own else ()),
        extended_acls=(gpol.extended_acls if gpol else ()) + (own.extended_acls if own else ()),
        guards=guards)
    has_policy = own is not None or gpol is not None
    return local.model_copy(update={
        "vlan": group.vlan, "mac_limit": group.mac_limit,
        "policy": policy if has_policy else None})


def firewall_with_port_groups(dvs: DvsConfig) -> FirewallConfig | None:
    """The firewall with every port group added as a firewall group of its ports."""
    if dvs.firewall is None:
        return None
    groups = dict(dvs.firewall.groups)
    for name in dvs.port_groups:
        groups.setdefault(name, GroupConfig(ports=tuple(group_members(dvs, name))))
    return dvs.firewall.model_copy(update={"groups": groups})
