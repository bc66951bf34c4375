"""Configuration models for port policy and the distributed firewall.

Per port (``ports.<name>.policy``)::

    policy:
      addresses: [10.0.0.5, "2001:db8::5"]   # the port's own IPs (firewall groups)
      acls:                                  # Hyper-V port ACLs (unordered)
        - {id: a1, action: deny, direction: both, remote_ip: 10.0.0.0/8}
        - {id: a2, action: allow, direction: in, remote_mac: "02:00:00:00:00:09"}
      extended_acls:                         # weighted, first match by weight
        - {id: x1, action: allow, direction: out, weight: 100, protocol: tcp,
           remote_port: 443, stateful: true, idle_timeout: 300}
      guards:
        mac_spoofing: false                  # Hyper-V MacAddressSpoofing Off
        macs: ["02:00:00:00:00:01"]
        dhcp_guard: true
        router_guard: true
        storm: {broadcast: 100, multicast: 500, unknown_unicast: 1000}

Switch-wide (``firewall``)::

    firewall:
      default_action: drop                   # the default rule
      exclude: [uplink]                      # ports/groups the firewall does not cover
      groups:
        web: {ports: [web1, web2], addresses: [10.0.1.0/24]}
      sections:
        - name: app
          tcp_strict: true
          rules:
            - {id: "1001", sources: [any], destinations: [web],
               services: ["tcp/80", "tcp/443"], action: allow, direction: in}

Values are kept as normalised text (``10.0.0.0/8``, ``02:00:00:00:00:01``,
``1000-2000``, ``tcp``) so configurations diff and print cleanly;
:mod:`vspan.policy.build` compiles them. Cross references (ports and groups
named by the firewall) are checked by :func:`policy_reference_errors`, which
gives full paths.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Annotated, Any, NamedTuple, Protocol

from pydantic import BeforeValidator, Field, model_validator

from vspan.config.base import FREEZE, PORT_NAME_RE, THAW, FrozenMap, Strict
from vspan.config.values import (
    parse_direction,
    parse_ip_spec,
    parse_mac,
    parse_mac_spec,
    parse_port_range,
    parse_protocol,
    protocol_str,
    spec_str,
)


def _ip_spec(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IP address, prefix or 'any'")
    return spec_str(parse_ip_spec(value))


def _ip_addr(value: Any) -> str:
    text = _ip_spec(value)
    if text == "any":
        raise ValueError("'any' is not an address here")
    return text


def _mac_spec(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a MAC address or 'any'")
    m = parse_mac_spec(value)
    return "any" if m is None else ":".join(f"{b:02x}" for b in m)


def _mac(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a MAC address")
    m = parse_mac(value)
    if m[0] & 1:
        raise ValueError(f"{value!r} is a group (multicast) address")
    return ":".join(f"{b:02x}" for b in m)


def _port_spec(value: Any) -> str:
    if not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a port or port range")
    return str(parse_port_range(value))


def _protocol(value: Any) -> str:
    if not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a protocol")
    return protocol_str(parse_protocol(value))


def _direction(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a direction (in, out, both)")
    dirs = parse_direction(value)
    return "both" if len(dirs) == 2 else dirs[0]


def _text_id(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an id")
    if isinstance(value, int):
        return str(value)
    return value


IpSpecText = Annotated[str, BeforeValidator(_ip_spec)]
IpAddrText = Annotated[str, BeforeValidator(_ip_addr)]
MacSpecText = Annotated[str, BeforeValidator(_mac_spec)]
MacText = Annotated[str, BeforeValidator(_mac)]
PortSpecText = Annotated[str, BeforeValidator(_port_spec)]
ProtocolText = Annotated[str, BeforeValidator(_protocol)]
DirectionText = Annotated[str, BeforeValidator(_direction)]
IdText = Annotated[str, BeforeValidator(_text_id), Field(min_length=1, max_length=64)]


class AclActionName(enum.StrEnum):
    """Port ACL actions."""

    ALLOW = "allow"
    DENY = "deny"
    METER = "meter"


class ExtActionName(enum.StrEnum):
    """Extended ACL actions."""

    ALLOW = "allow"
    DENY = "deny"


class FwActionName(enum.StrEnum):
    """Firewall actions."""

    ALLOW = "allow"
    DROP = "drop"
    REJECT = "reject"


def _family(text: str) -> int:
    if text == "any":
        return 0
    return 6 if ":" in text else 4


class AclEntryConfig(Strict):
    """A Hyper-V port ACL entry: IP or MAC addresses, direction, action."""

    id: IdText | None = None
    action: AclActionName
    direction: DirectionText
    local_ip: IpSpecText | None = None
    remote_ip: IpSpecText | None = None
    local_mac: MacSpecText | None = None
    remote_mac: MacSpecText | None = None

    @model_validator(mode="after")
    def _check(self) -> AclEntryConfig:
        ip = self.local_ip is not None or self.remote_ip is not None
        mac = self.local_mac is not None or self.remote_mac is not None
        if ip and mac:
            raise ValueError("an entry is either IP (local_ip/remote_ip) or MAC "
                             "(local_mac/remote_mac), not both")
        if not ip and not mac:
            raise ValueError("give local_ip, remote_ip, local_mac or remote_mac "
                             "(use 'any' to match everything)")
        fams = {_family(a) for a in (self.local_ip, self.remote_ip) if a is not None} - {0}
        if len(fams) > 1:
            raise ValueError("local_ip and remote_ip are of different IP versions")
        return self


class ExtendedAclConfig(Strict):
    """A Hyper-V extended ACL rule."""

    id: IdText | None = None
    action: ExtActionName
    direction: DirectionText
    weight: int = Field(ge=0, le=1_000_000)
    local_ip: IpSpecText = "any"
    remote_ip: IpSpecText = "any"
    protocol: ProtocolText = "any"
    local_port: PortSpecText | None = None
    remote_port: PortSpecText | None = None
    stateful: bool = False
    idle_timeout: int = Field(default=300, ge=1, le=86400 * 7)

    @model_validator(mode="after")
    def _check(self) -> ExtendedAclConfig:
        if (self.local_port is not None or self.remote_port is not None) and (
            self.protocol not in ("tcp", "udp", "sctp")
        ):
            raise ValueError(f"ports need protocol tcp or udp (protocol is {self.protocol})")
        fams = {_family(a) for a in (self.local_ip, self.remote_ip)} - {0}
        if len(fams) > 1:
            raise ValueError("local_ip and remote_ip are of different IP versions")
        return self


class StormConfig(Strict):
    """Storm limits in frames per second (absent = unlimited)."""

    broadcast: int | None = Field(default=None, ge=1)
    multicast: int | None = Field(default=None, ge=1)
    unknown_unicast: int | None = Field(default=None, ge=1)
    burst: int | None = Field(default=None, ge=1, description="bucket size; default: 1 s")


class GuardsConfig(Strict):
    """Port guards (Hyper-V names; defaults are permissive)."""

    mac_spoofing: bool = True  # True = allowed (Hyper-V "On"); False = only ``macs`` may send
    macs: tuple[MacText, ...] = ()
    dhcp_guard: bool = False
    router_guard: bool = False
    storm: StormConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> GuardsConfig:
        if not self.mac_spoofing and not self.macs:
            raise ValueError("mac_spoofing: false needs 'macs' (the MACs the port may use)")
        return self


class GuardFlags(Protocol):
    """What a port's or a port group's guards say (both configurations have these)."""

    @property
    def mac_spoofing(self) -> bool: ...
    @property
    def dhcp_guard(self) -> bool: ...
    @property
    def router_guard(self) -> bool: ...
    @property
    def storm(self) -> StormConfig | None: ...


def active_guards(g: GuardFlags) -> list[str]:
    """The guards that are on, by short name (for views)."""
    on = [("no-mac-spoofing", not g.mac_spoofing), ("dhcp-guard", g.dhcp_guard),
          ("router-guard", g.router_guard), ("storm", g.storm is not None)]
    return [name for name, is_on in on if is_on]


class PortPolicyConfig(Strict):
    """Everything policy about one port."""

    addresses: tuple[IpAddrText, ...] = ()
    acls: tuple[AclEntryConfig, ...] = ()
    extended_acls: tuple[ExtendedAclConfig, ...] = ()
    guards: GuardsConfig = GuardsConfig()


def acl_id(entry: AclEntryConfig, index: int) -> str:
    """The id of an ACL entry (given or ``acl<index>``)."""
    return entry.id if entry.id is not None else f"acl{index}"


def ext_acl_id(rule: ExtendedAclConfig, index: int) -> str:
    """The id of an extended ACL rule (given or ``ext<index>``)."""
    return rule.id if rule.id is not None else f"ext{index}"


def _service(value: Any) -> Any:
    """``"tcp/80"``, ``"udp/1000-2000"``, ``"icmp"``, ``"icmp/8"``, ``"any"`` -> mapping."""
    if not isinstance(value, str):
        return value
    proto, _, rest = value.strip().partition("/")
    out: dict[str, Any] = {"protocol": proto}
    if rest:
        p = parse_protocol(proto)
        if p in (1, 58):
            try:
                out["icmp_type"] = int(rest)
            except ValueError:
                raise ValueError(f"{value!r}: ICMP type must be a number") from None
        else:
            out["ports"] = [x for x in rest.split(",") if x]
    return out


class ServiceConfig(Strict):
    """Protocol plus destination/source ports, or ICMP type/code."""

    protocol: ProtocolText = "any"
    ports: tuple[PortSpecText, ...] = ()
    source_ports: tuple[PortSpecText, ...] = ()
    icmp_type: int | None = Field(default=None, ge=0, le=255)
    icmp_code: int | None = Field(default=None, ge=0, le=255)

    @model_validator(mode="after")
    def _check(self) -> ServiceConfig:
        if (self.ports or self.source_ports) and self.protocol not in ("tcp", "udp", "sctp"):
            raise ValueError(f"ports need protocol tcp or udp (protocol is {self.protocol})")
        if self.icmp_type is not None and self.protocol not in ("icmp", "icmpv6"):
            raise ValueError("icmp_type needs protocol icmp or icmpv6")
        if self.icmp_code is not None and self.icmp_type is None:
            raise ValueError("icmp_code needs icmp_type")
        return self


ServiceItem = Annotated[ServiceConfig, BeforeValidator(_service)]


class FwRuleConfig(Strict):
    """A firewall rule."""

    id: IdText | None = None
    name: str = ""
    action: FwActionName
    direction: DirectionText = "both"
    sources: tuple[str, ...] = ("any",)
    destinations: tuple[str, ...] = ("any",)
    services: tuple[ServiceItem, ...] = ()
    applied_to: tuple[str, ...] = ()
    disabled: bool = False


class FwSectionConfig(Strict):
    """An ordered list of firewall rules."""

    name: str = Field(min_length=1, max_length=64)
    tcp_strict: bool = False
    stateful: bool = True
    applied_to: tuple[str, ...] = ()
    rules: tuple[FwRuleConfig, ...] = ()


class GroupConfig(Strict):
    """A port group: member ports (their ``policy.addresses`` join) and addresses."""

    ports: tuple[str, ...] = ()
    addresses: tuple[IpAddrText, ...] = ()


class Timeouts(NamedTuple):
    """Idle timeouts in seconds (defaults follow NSX distributed firewall)."""

    tcp_syn_sent: float = 120.0  # "TCP first packet"
    tcp_syn_recv: float = 30.0  # "TCP opening"
    tcp_established: float = 43200.0
    tcp_closing: float = 120.0  # FIN_WAIT, CLOSE_WAIT, LAST_ACK
    tcp_time_wait: float = 45.0  # "TCP fin wait"
    tcp_close: float = 20.0  # "TCP closed" (after RST)
    udp_first: float = 60.0
    udp_single: float = 30.0
    udp_multiple: float = 60.0
    icmp_first: float = 20.0
    icmp_reply: float = 10.0
    other_first: float = 60.0
    other_single: float = 30.0
    other_multiple: float = 60.0


_T = Timeouts()


class TimeoutsConfig(Strict):
    """Connection idle timeouts in seconds (NSX defaults)."""

    tcp_syn_sent: float = Field(default=_T.tcp_syn_sent, gt=0)
    tcp_syn_recv: float = Field(default=_T.tcp_syn_recv, gt=0)
    tcp_established: float = Field(default=_T.tcp_established, gt=0)
    tcp_closing: float = Field(default=_T.tcp_closing, gt=0)
    tcp_time_wait: float = Field(default=_T.tcp_time_wait, gt=0)
    tcp_close: float = Field(default=_T.tcp_close, gt=0)
    udp_first: float = Field(default=_T.udp_first, gt=0)
    udp_single: float = Field(default=_T.udp_single, gt=0)
    udp_multiple: float = Field(default=_T.udp_multiple, gt=0)
    icmp_first: float = Field(default=_T.icmp_first, gt=0)
    icmp_reply: float = Field(default=_T.icmp_reply, gt=0)
    other_first: float = Field(default=_T.other_first, gt=0)
    other_single: float = Field(default=_T.other_single, gt=0)
    other_multiple: float = Field(default=_T.other_multiple, gt=0)

    def runtime(self) -> Timeouts:
        """As the conntrack's :class:`Timeouts`."""
        return Timeouts(**self.model_dump())


class FirewallConfig(Strict):
    """The distributed firewall."""

    enabled: bool = True
    default_action: FwActionName = FwActionName.ALLOW
    tcp_strict: bool = False  # for connections admitted by the default rule
    exclude: tuple[str, ...] = ()  # ports/groups the firewall does not cover (uplinks)
    max_connections: int = Field(default=65536, ge=1, description="per port")
    timeouts: TimeoutsConfig = TimeoutsConfig()
    groups: Annotated[Mapping[str, GroupConfig], FREEZE, THAW] = Field(
        default_factory=FrozenMap)
    sections: tuple[FwSectionConfig, ...] = ()


def rule_id(section: FwSectionConfig, rule: FwRuleConfig, index: int) -> str:
    """The id of a firewall rule (given, or ``<section>/<n>``)."""
    return rule.id if rule.id is not None else f"{section.name}/{index + 1}"


def _check_addr_refs(items: tuple[str, ...], groups: Mapping[str, GroupConfig], path: str,
                     errors: list[str]) -> None:
    for i, item in enumerate(items):
        try:
            parse_ip_spec(item)
            continue
        except ValueError:
            pass
        name = item[6:] if item.startswith("group:") else item
        if name not in groups:
            errors.append(f"{path}.{i}: {item!r} is neither an address, a prefix, 'any' "
                          "nor a group")


def _check_targets(items: tuple[str, ...], ports: Mapping[str, Any],
                   groups: Mapping[str, GroupConfig], path: str, errors: list[str]) -> None:
    for i, item in enumerate(items):
        name = item[6:] if item.startswith("group:") else item
        if name not in ports and name not in groups:
            errors.append(f"{path}.{i}: no port or group named {item!r}")


def policy_reference_errors(
    ports: Mapping[str, PortPolicyConfig | None], firewall: FirewallConfig | None
) -> list[str]:
    """Cross-reference problems, one message with its full path each (empty when fine).

    ``ports`` maps every port name to its policy (``None`` when it has none).
    Checks: unique ACL / extended ACL ids and weights per port; unique firewall
    section names and rule ids; groups, ``applied_to`` and ``exclude`` naming
    existing ports or groups; sources/destinations being addresses or groups.
    """
    errors: list[str] = []
    for pname, pol in ports.items():
        if pol is None:
            continue
        base = f"ports.{pname}.policy"
        seen: dict[str, int] = {}
        for i, e in enumerate(pol.acls):
            aid = acl_id(e, i)
            if aid in seen:
                errors.append(f"{base}.acls.{i}.id: {aid!r} is already used by acls.{seen[aid]}")
            seen[aid] = i
        xseen: dict[tuple[str, str], int] = {}
        weights: dict[tuple[str, int], int] = {}
        for i, x in enumerate(pol.extended_acls):
            dirs = ("in", "out") if x.direction == "both" else (x.direction,)
            xid = ext_acl_id(x, i)
            for d in dirs:
                if (xid, d) in xseen:
                    errors.append(f"{base}.extended_acls.{i}.id: {xid!r} is already used by "
                                  f"extended_acls.{xseen[(xid, d)]}")
                    break
                xseen[(xid, d)] = i
            for d in dirs:
                if (d, x.weight) in weights:
                    errors.append(f"{base}.extended_acls.{i}.weight: weight {x.weight} is "
                                  f"already used for direction {d} by "
                                  f"extended_acls.{weights[(d, x.weight)]}")
                    break
                weights[(d, x.weight)] = i
    if firewall is None:
        return errors
    groups = firewall.groups
    for gname, g in groups.items():
        if not PORT_NAME_RE.match(gname) or gname == "any":
            errors.append(f"firewall.groups.{gname}: not a valid group name")
        try:
            parse_ip_spec(gname)
            errors.append(f"firewall.groups.{gname}: a group name must not look like an address")
        except ValueError:
            pass
        if gname in ports:
            errors.append(f"firewall.groups.{gname}: a port has the same name")
        for i, p in enumerate(g.ports):
            if p not in ports:
                errors.append(f"firewall.groups.{gname}.ports.{i}: no port named {p!r}")
    _check_targets(firewall.exclude, ports, groups, "firewall.exclude", errors)
    snames: dict[str, int] = {}
    rids: dict[str, str] = {}
    for si, sec in enumerate(firewall.sections):
        spath = f"firewall.sections.{si}"
        if sec.name in snames:
            errors.append(f"{spath}.name: section {sec.name!r} is already defined by "
                          f"firewall.sections.{snames[sec.name]}")
        snames[sec.name] = si
        _check_targets(sec.applied_to, ports, groups, f"{spath}.applied_to", errors)
        for ri, rule in enumerate(sec.rules):
            rpath = f"{spath}.rules.{ri}"
            rid = rule_id(sec, rule, ri)
            if rid == "default":
                errors.append(f"{rpath}.id: 'default' is reserved for the default rule")
            elif rid in rids:
                errors.append(f"{rpath}.id: rule id {rid!r} is already used by {rids[rid]}")
            rids[rid] = rpath
            _check_addr_refs(rule.sources, groups, f"{rpath}.sources", errors)
            _check_addr_refs(rule.destinations, groups, f"{rpath}.destinations", errors)
            _check_targets(rule.applied_to, ports, groups, f"{rpath}.applied_to", errors)
    return errors
