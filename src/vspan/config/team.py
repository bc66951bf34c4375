"""Configuration of a NIC team (``ports.<name>.team`` of a port of type ``team``).

A team is one switch port whose backend spreads frames over several member
interfaces (switch-independent load balancing) or keeps one of them active
(active-standby), and moves traffic off a member whose carrier is lost or
whose ARP targets stop answering. See docs/teams.md.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from vspan.config.base import IFNAME_RE, Strict

MAX_MEMBERS = 32
MAX_ARP_TARGETS = 16  # as Linux bonding's arp_ip_target


class TeamMode(enum.StrEnum):
    """How members share the traffic."""

    SWITCH_INDEPENDENT = "switch-independent"  # all usable members send (load balancing)
    ACTIVE_STANDBY = "active-standby"  # one member sends; the others wait


class LoadBalancing(enum.StrEnum):
    """How a switch-independent team picks the member for a frame."""

    LAYER2 = "layer2"  # Linux bonding xmit_hash_policy layer2
    LAYER2_3 = "layer2+3"
    LAYER3_4 = "layer3+4"
    HYPERV_PORT = "hyperv-port"  # by the switch port the frame came from (Hyper-V Port)
    DYNAMIC = "dynamic"  # flowlets: a flow moves to the least-loaded member after an idle gap


def _ipv4(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IPv4 address")
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


Ipv4 = Annotated[str, BeforeValidator(_ipv4)]


def _ifname(value: Any) -> str:
    if not isinstance(value, str) or not IFNAME_RE.match(value):
        raise ValueError(f"{value!r} is not an interface name")
    return value


Ifname = Annotated[str, BeforeValidator(_ifname)]


class ArpMonitorConfig(Strict):
    """Linux bonding's ARP monitor: a member is up while ARP targets answer its probes.

    Every ``interval_ms`` each member sends an ARP request for every target
    (sender MAC: the member's own, sender IP ``source_ip``, 0.0.0.0 by default
    as an RFC 5227 probe). A member whose probes got no reply from any target
    within ``missed_max`` intervals is down, even with carrier.
    """

    targets: tuple[Ipv4, ...]
    interval_ms: int = Field(default=1000, ge=10, le=60_000)
    missed_max: int = Field(default=2, ge=1, le=255)
    source_ip: Ipv4 = "0.0.0.0"
    vlan: int | None = Field(default=None, ge=1, le=4094,
                             description="send probes tagged with this VLAN id")

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not 1 <= len(value) <= MAX_ARP_TARGETS:
            raise ValueError(f"give 1 to {MAX_ARP_TARGETS} targets, not {len(value)}")
        dup = sorted({t for t in value if value.count(t) > 1})
        if dup:
            raise ValueError(f"target listed twice: {', '.join(dup)}")
        for t in value:
            ip = ipaddress.IPv4Address(t)
            if ip.is_unspecified or ip.is_multicast or t == "255.255.255.255":
                raise ValueError(f"{t} cannot be an ARP target")
        return value


class TeamConfig(Strict):
    """Members and behaviour of a team port."""

    members: tuple[Ifname, ...]
    mode: TeamMode = TeamMode.SWITCH_INDEPENDENT
    load_balancing: LoadBalancing = LoadBalancing.LAYER3_4
    primary: str | None = None
    miimon_ms: int = Field(default=100, ge=0, le=60_000,
                           description="carrier poll interval (0: netlink events only)")
    arp_monitor: ArpMonitorConfig | None = None
    dynamic_idle_ms: int = Field(default=50, ge=1, le=60_000,
                                 description="flowlet gap after which a flow may move")

    @field_validator("members")
    @classmethod
    def _check_members(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not 1 <= len(value) <= MAX_MEMBERS:
            raise ValueError(f"a team has 1 to {MAX_MEMBERS} members, not {len(value)}")
        dup = sorted({m for m in value if value.count(m) > 1})
        if dup:
            raise ValueError(f"member listed twice: {', '.join(dup)}")
        return value

    @field_validator("primary")
    @classmethod
    def _check_primary(cls, value: str | None, info: ValidationInfo) -> str | None:
        members = info.data.get("members")
        if value is not None and members is not None and value not in members:
            raise ValueError(f"{value!r} is not a member (members: {', '.join(members)})")
        return value

    @model_validator(mode="after")
    def _check_mode(self) -> TeamConfig:
        given = self.model_fields_set
        if self.mode is TeamMode.ACTIVE_STANDBY:
            if "load_balancing" in given:
                raise ValueError("load_balancing is not used in active-standby mode "
                                 "(one member carries all traffic)")
        elif self.primary is not None:
            raise ValueError("primary is only for active-standby mode")
        if "dynamic_idle_ms" in given and (self.mode is TeamMode.ACTIVE_STANDBY or
                                           self.load_balancing is not LoadBalancing.DYNAMIC):
            raise ValueError("dynamic_idle_ms is only for load_balancing: dynamic")
        return self
