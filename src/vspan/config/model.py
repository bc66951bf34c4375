"""The switch configuration as frozen, typed objects (validated by pydantic).

Every model forbids unknown keys; every error carries its path (see
``vspan.config.load`` for the message format). Cross-reference checks (a
mirror naming a port that does not exist, ...) live in :class:`Config`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

PORT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.\-@]{1,15}$")


class Strict(BaseModel):
    """Base of every config model: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


def _vlan_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a VLAN id (1-4094)")
    if not 1 <= value <= 4094:
        raise ValueError(f"{value} is not a VLAN id (1-4094)")
    return value


def _vlan_list(value: Any) -> tuple[int, ...]:
    """Accept ``[10, 20, "30-40"]`` or ``"10,20,30-40"``; return sorted unique ids."""
    items: list[Any]
    if isinstance(value, str):
        items = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(f"{value!r} is not a list of VLAN ids")
    out: set[int] = set()
    for item in items:
        if isinstance(item, str) and "-" in item:
            lo_s, _, hi_s = item.partition("-")
            try:
                lo, hi = int(lo_s), int(hi_s)
            except ValueError:
                raise ValueError(f"{item!r} is not a VLAN range (like 10-20)") from None
            _vlan_id(lo)
            _vlan_id(hi)
            if lo > hi:
                raise ValueError(f"{item!r} is an empty VLAN range")
            out.update(range(lo, hi + 1))
        elif isinstance(item, str):
            try:
                out.add(_vlan_id(int(item)))
            except ValueError:
                raise ValueError(f"{item!r} is not a VLAN id (1-4094)") from None
        else:
            out.add(_vlan_id(item))
    return tuple(sorted(out))


VlanId = Annotated[int, BeforeValidator(_vlan_id)]
VlanList = Annotated[tuple[int, ...], BeforeValidator(_vlan_list)]


class VlanMode(enum.StrEnum):
    """Hyper-V port VLAN modes."""

    UNTAGGED = "untagged"
    ACCESS = "access"
    TRUNK = "trunk"


class VlanConfig(Strict):
    """VLAN membership of a port.

    * ``untagged``: the port carries only untagged frames (the untagged network);
    * ``access``: untagged on the wire, VLAN ``id`` inside the switch;
    * ``trunk``: tagged frames whose VID is in ``allowed``; untagged frames join
      ``native`` (and leave it untagged); without ``native`` they are dropped.
    """

    mode: VlanMode = VlanMode.UNTAGGED
    id: VlanId | None = None
    allowed: VlanList = ()
    native: VlanId | None = None

    @model_validator(mode="after")
    def _check_mode(self) -> VlanConfig:
        if self.mode is VlanMode.ACCESS and self.id is None:
            raise ValueError("access mode needs 'id'")
        if self.mode is not VlanMode.ACCESS and self.id is not None:
            raise ValueError(f"'id' is only for access mode (mode is {self.mode.value})")
        if self.mode is not VlanMode.TRUNK and (self.allowed or self.native is not None):
            raise ValueError("'allowed' and 'native' are only for trunk mode")
        if self.mode is VlanMode.TRUNK and not self.allowed and self.native is None:
            raise ValueError("trunk mode needs 'allowed' VLANs or a 'native' VLAN")
        return self


class PortType(enum.StrEnum):
    """Port backends."""

    AFPACKET = "afpacket"  # an existing interface (veth end, NIC), via AF_PACKET
    TAP = "tap"  # a TAP device vspan creates (a QEMU VM's vNIC)
    MEMORY = "memory"  # tests only


class PortConfig(Strict):
    """One switch port."""

    type: PortType = PortType.AFPACKET
    interface: str | None = Field(default=None, description="interface name; default: port name")
    enabled: bool = True
    vlan: VlanConfig = VlanConfig()
    mac_limit: int = Field(default=0, ge=0, description="max learned MACs (0 = unlimited)")
    mtu: int | None = Field(default=None, ge=68, le=65535)
    description: str = ""

    def ifname(self, port_name: str) -> str:
        """The interface this port attaches to."""
        return self.interface or port_name


class Direction(enum.StrEnum):
    """Which traffic of a source port a mirror session copies."""

    INGRESS = "ingress"  # frames the port sends into the switch
    EGRESS = "egress"  # frames the switch delivers to the port
    BOTH = "both"


class MirrorSource(Strict):
    """A mirror source port and the direction copied."""

    port: str
    direction: Direction = Direction.BOTH


def _sources(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [{"port": v} if isinstance(v, str) else v for v in value]
    return value


class MirrorSession(Strict):
    """A local mirror session: sources copied to destination ports."""

    enabled: bool = True
    sources: Annotated[tuple[MirrorSource, ...], BeforeValidator(_sources)]
    destinations: tuple[str, ...]
    allow_normal_io: bool = False
    mirrored_packet_length: int | None = Field(default=None, ge=60, le=65535)
    sampling_rate: int = Field(default=1, ge=1, le=1_000_000)
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> MirrorSession:
        if not self.sources:
            raise ValueError("a session needs at least one source")
        if not self.destinations:
            raise ValueError("a session needs at least one destination")
        src_names = [s.port for s in self.sources]
        dup = {n for n in src_names if src_names.count(n) > 1}
        if dup:
            raise ValueError(f"source port listed twice: {', '.join(sorted(dup))}")
        both = sorted(set(src_names) & set(self.destinations))
        if both:
            raise ValueError(
                f"port {both[0]!r} is both a source and a destination of this session"
            )
        return self


class SwitchConfig(Strict):
    """Switch-wide settings."""

    name: str = Field(default="vspan0", pattern=PORT_NAME_RE.pattern)
    fdb_aging_seconds: int = Field(default=300, ge=1, le=1_000_000)
    fdb_max_entries: int = Field(default=16384, ge=1)
    flow_cache_size: int = Field(default=65536, ge=0)
    batch_size: int = Field(default=64, ge=1, le=4096)
    control_socket: str | None = None  # default: /run/vspan/<name>.sock

    def socket_path(self) -> str:
        """Where the daemon's control socket lives."""
        return self.control_socket or f"/run/vspan/{self.name}.sock"


class Config(Strict):
    """A whole switch configuration."""

    switch: SwitchConfig = SwitchConfig()
    ports: Mapping[str, PortConfig] = Field(default_factory=dict)
    mirrors: Mapping[str, MirrorSession] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cross_check(self) -> Config:
        for name, port in self.ports.items():
            if not PORT_NAME_RE.match(name):
                raise ValueError(f"ports.{name}: not a valid port name")
            ifname = port.ifname(name)
            if not IFNAME_RE.match(ifname):
                raise ValueError(f"ports.{name}.interface: {ifname!r} is not an interface name")
        seen: dict[str, str] = {}
        for name, port in self.ports.items():
            ifname = port.ifname(name)
            if ifname in seen:
                raise ValueError(
                    f"ports.{name}.interface: {ifname!r} is already used by port {seen[ifname]!r}"
                )
            seen[ifname] = name
        for sname, session in self.mirrors.items():
            for i, src in enumerate(session.sources):
                if src.port not in self.ports:
                    raise ValueError(
                        f"mirrors.{sname}.sources.{i}.port: no port named {src.port!r}"
                    )
            for i, dst in enumerate(session.destinations):
                if dst not in self.ports:
                    raise ValueError(f"mirrors.{sname}.destinations.{i}: no port named {dst!r}")
        return self

    def mirror_destination_ports(self) -> dict[str, bool]:
        """Port name -> allow_normal_io, for ports that are enabled mirror destinations."""
        out: dict[str, bool] = {}
        for session in self.mirrors.values():
            if not session.enabled:
                continue
            for dst in session.destinations:
                out[dst] = out.get(dst, False) or session.allow_normal_io
        return out
