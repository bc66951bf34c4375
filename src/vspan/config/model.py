"""The switch configuration as frozen, typed objects (validated by pydantic).

Every model forbids unknown keys; every error carries its path (see
``vspan.config.load`` for the message format). Cross-reference checks (a
mirror naming a port that does not exist, ...) live in :class:`Config`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vspan.config.access import ApiConfig, RolesConfig
from vspan.config.base import FREEZE, IFNAME_RE, PORT_NAME_RE, THAW, FrozenMap, Strict
from vspan.config.policy import FirewallConfig, PortPolicyConfig, policy_reference_errors
from vspan.config.poll import PollConfig
from vspan.config.pvlan import PvlanConfig, pvlan_errors
from vspan.config.team import TeamConfig
from vspan.config.vxlan import VxlanConfig
from vspan.packet.flowmatch import FilterError, compile_match

__all__ = ["IFNAME_RE", "PORT_NAME_RE", "Strict"]


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
    TAP = "tap"  # a QEMU/libvirt VM's TAP (vspan makes it or attaches to QEMU's)
    TEAM = "team"  # a NIC team: several member interfaces as one port (docs/teams.md)
    MEMORY = "memory"  # tests only
    VXLAN = "vxlan"  # the overlay to other hosts (VXLAN over UDP; docs/overlay.md)


_USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")


def _user(value: Any) -> str:
    """A user/group name or a numeric id (kept as text; resolved when the port opens)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < 2**32 - 1:
            raise ValueError(f"{value} is not a user or group id")
        return str(value)
    if isinstance(value, str) and (_USER_RE.match(value) or
                                   (value.isdigit() and int(value) < 2**32 - 1)):
        return value
    raise ValueError(f"{value!r} is not a user or group (a name or a number)")


UserName = Annotated[str, BeforeValidator(_user)]


class TapConfig(Strict):
    """How a ``type: tap`` port gets its TAP device (see docs/qemu.md).

    ``create: true``: vspan creates a persistent TAP before the VM starts
    (``owner``/``group`` may attach to it without privileges; ``multi_queue``
    must match QEMU's ``queues=N > 1``) and removes it when the port goes,
    if it made it. ``create: false``: QEMU or libvirt makes the TAP and vspan
    attaches to it whenever it exists.
    """

    create: bool = True
    owner: UserName | None = Field(default=None, description="user (name or uid) that may attach")
    group: UserName | None = Field(default=None, description="group (name or gid) that may attach")
    vnet_hdr: bool = Field(default=True, description="create with IFF_VNET_HDR")
    multi_queue: bool = Field(default=False, description="create with IFF_MULTI_QUEUE")

    @model_validator(mode="after")
    def _only_when_created(self) -> TapConfig:
        if not self.create:
            for key in ("owner", "group", "vnet_hdr", "multi_queue"):
                if key in self.model_fields_set:
                    raise ValueError(f"'{key}' only applies when vspan creates the TAP "
                                     "(create: true)")
        return self


class PortConfig(Strict):
    """One switch port."""

    type: PortType = PortType.AFPACKET
    interface: str | None = Field(default=None, description="interface name; default: port name")
    enabled: bool = True
    vlan: VlanConfig = VlanConfig()
    mac_limit: int = Field(default=0, ge=0, description="max learned MACs (0 = unlimited)")
    mtu: int | None = Field(default=None, ge=68, le=65535)
    description: str = ""
    policy: PortPolicyConfig | None = None  # ACLs, extended ACLs, guards (vspan.policy)
    tap: TapConfig | None = Field(default=None, description="TAP settings (type: tap only)")
    vxlan: VxlanConfig | None = None  # type vxlan only: VTEP, VLAN->VNI map, flood lists
    team: TeamConfig | None = Field(default=None, validate_default=True,
                                    description="members and behaviour of a team port")
    pvlan: PvlanConfig | None = None  # a private VLAN port (docs/pvlan.md)
    rx_steering: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="afpacket ports on a veth: steer the frames it receives with RPS to "
                    "CPUs other than the switch's, keeping each TCP flow in order; auto: "
                    "while it receives in bulk (docs/datapath.md, 'TCP order on veth ports')")

    @field_validator("rx_steering", mode="before")
    @classmethod
    def _steering_bool(cls, value: object) -> object:
        # YAML 1.1 reads a bare on/off as a boolean
        if value is True:
            return "always"
        if value is False:
            return "never"
        return value

    @model_validator(mode="after")
    def _tap_only_for_tap(self) -> PortConfig:
        if self.tap is not None and self.type is not PortType.TAP:
            raise ValueError(f"'tap' settings are only for type: tap (type is {self.type.value})")
        return self

    @model_validator(mode="after")
    def _pvlan_port(self) -> PortConfig:
        if self.pvlan is None:
            return self
        if self.type is PortType.VXLAN:
            raise ValueError("pvlan: a vxlan port carries VLANs like a trunk; it cannot be a "
                             "private VLAN port")
        if "vlan" in self.model_fields_set and self.vlan != VlanConfig():
            # the default (untagged) is what a dump of the running config carries
            raise ValueError("pvlan: a private VLAN port is untagged on the wire and its VLANs "
                             "come from 'pvlan'; leave 'vlan' out")
        return self

    def tap_settings(self) -> TapConfig:
        """The TAP settings (defaults when not given)."""
        return self.tap if self.tap is not None else TapConfig()

    @field_validator("interface")
    @classmethod
    def _no_vxlan_interface(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("type") is PortType.VXLAN:
            raise ValueError("a vxlan port has no interface (it sends over a UDP socket "
                             "bound to vxlan.local_ip)")
        return value

    @field_validator("vlan")
    @classmethod
    def _no_vxlan_vlan(cls, value: VlanConfig, info: ValidationInfo) -> VlanConfig:
        if value != VlanConfig() and info.data.get("type") is PortType.VXLAN:
            raise ValueError("a vxlan port's VLANs come from vxlan.vnis (leave 'vlan' out)")
        return value

    @field_validator("vxlan")
    @classmethod
    def _vxlan_block(cls, value: VxlanConfig | None, info: ValidationInfo
                     ) -> VxlanConfig | None:
        if value is None:
            return value
        if "type" in info.data and info.data["type"] is not PortType.VXLAN:
            raise ValueError("only ports of type vxlan have a 'vxlan' block")
        mtu = info.data.get("mtu")
        if mtu is not None and mtu > value.inner_mtu:
            raise ValueError(f"the port's mtu {mtu} is larger than underlay_mtu "
                             f"{value.underlay_mtu} minus the 50-byte VXLAN overhead")
        return value

    @model_validator(mode="after")
    def _check_vxlan(self) -> PortConfig:
        if self.type is PortType.VXLAN and self.vxlan is None:
            raise ValueError("a vxlan port needs a 'vxlan' block (local_ip, vnis, ...)")
        return self

    @field_validator("interface")
    @classmethod
    def _no_team_interface(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("type") is PortType.TEAM:
            raise ValueError("a team port has no interface; name its team.members")
        return value

    @field_validator("team")
    @classmethod
    def _team_for_team_ports(cls, value: TeamConfig | None,
                             info: ValidationInfo) -> TeamConfig | None:
        kind = info.data.get("type")
        if kind is PortType.TEAM and value is None:
            raise ValueError("a port of type team needs team.members")
        if kind is not None and kind is not PortType.TEAM and value is not None:
            raise ValueError(f"only for ports of type team (this port is {kind.value})")
        return value

    def ifname(self, port_name: str) -> str:
        """The interface this port attaches to (a team: its port name)."""
        return self.interface or port_name

    def effective_mtu(self) -> int | None:
        """The largest IP packet the port carries (``None``: not checked by the switch).

        ``mtu`` when set; for a vxlan port the underlay MTU minus the 50 bytes of
        outer IPv4, UDP, VXLAN and inner Ethernet headers.
        """
        if self.mtu is not None:
            return self.mtu
        if self.vxlan is not None:
            return self.vxlan.inner_mtu
        return None
    def interfaces(self, port_name: str) -> tuple[str, ...]:
        """Every kernel interface the port uses: a team's members, else its interface."""
        if self.team is not None:
            return self.team.members
        return (self.ifname(port_name),)


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


class ErspanType(enum.StrEnum):
    """Encapsulations of a remote mirror session."""

    GRE = "gre"  # plain GRE, protocol 0x6558 (transparent Ethernet bridging)
    ERSPAN2 = "erspan2"  # GRE 0x88BE, ERSPAN version 1 (Type II)
    ERSPAN3 = "erspan3"  # GRE 0x22EB, ERSPAN version 2 (Type III)


class ErspanDestination(Strict):
    """Send copies encapsulated to an IP address (vDS "encapsulated remote mirroring")."""

    type: ErspanType = ErspanType.ERSPAN2
    remote_ip: str
    source_ip: str | None = None
    session_id: int = Field(default=1, ge=0, le=1023)
    index: int = Field(default=0, ge=0, le=(1 << 20) - 1, description="port index (Type II)")
    hw_id: int = Field(default=0, ge=0, le=63, description="hardware id (Type III)")
    timestamp_granularity: str = Field(default="100us", pattern="^(100us|100ns|ns)$")
    platform_subheader: bool = False
    ttl: int = Field(default=64, ge=1, le=255)
    dscp: int = Field(default=0, ge=0, le=63)
    mtu: int | None = Field(default=None, ge=576, le=65535,
                            description="cap on the path MTU (default: the kernel's)")
    # GSO super-frames / partial checksums (TCP with offloads): "segment" sends every
    # wire segment whole (complete streams; costs CPU on busy flows), "truncate" sends
    # the super-frame cut to the path MTU with the T bit (cheap; streams have holes)
    offloaded_frames: str = Field(default="segment", pattern="^(segment|truncate)$")
    # IPv4 copies: "auto" writes them as Ethernet frames on an AF_PACKET socket when the
    # main routing table and the neighbour table give the next hop (cheaper), else the raw
    # GRE socket; "raw" always the raw socket (e.g. when policy routing picks the path)
    sender: str = Field(default="auto", pattern="^(auto|raw)$")

    @model_validator(mode="after")
    def _check_ips(self) -> ErspanDestination:
        import ipaddress

        try:
            remote = ipaddress.ip_address(self.remote_ip)
        except ValueError:
            raise ValueError(f"remote_ip: {self.remote_ip!r} is not an IP address") from None
        if self.source_ip is not None:
            try:
                src = ipaddress.ip_address(self.source_ip)
            except ValueError:
                raise ValueError(f"source_ip: {self.source_ip!r} is not an IP address") from None
            if src.version != remote.version:
                raise ValueError("source_ip and remote_ip must be the same IP version")
        if self.type is ErspanType.ERSPAN3 and self.platform_subheader and self.index > 0xFFFF:
            raise ValueError(f"index: {self.index} does not fit the Type III platform "
                             "subheader (at most 65535)")
        if self.mtu is not None and remote.version == 6 and self.mtu < 1280:
            raise ValueError(f"mtu: {self.mtu} is below the IPv6 minimum of 1280")
        return self


class RspanDestination(Strict):
    """Send copies tagged with a mirror VLAN out of an uplink port (vDS remote mirroring)."""

    port: str
    vlan: VlanId
    keep_original_tag: bool = False  # keep the frame's own tag as an inner tag
    # with keep_original_tag: a frame untagged on the wire gets an inner tag of the VLAN it
    # was switched in (false: the copy is the frame as seen, with only the RSPAN tag added)
    tag_untagged: bool = True


class RspanSource(Strict):
    """Receive a mirror VLAN from an uplink ("remote mirroring destination" session)."""

    port: str
    vlan: VlanId
    strip_tag: bool = True  # deliver untagged (False: as received, with the mirror tag)


class MirrorSession(Strict):
    """A mirror session: sources copied to local ports, an RSPAN VLAN or an ERSPAN target.

    A "remote mirroring destination" session has ``rspan_source`` instead of
    ``sources`` and delivers that mirror VLAN to its ``destinations`` -- or, with
    ``rspan`` instead of destinations, relays it out of another port on another
    mirror VLAN (the outer tag is replaced; a distributed switch uses this to carry
    copies from the overlay to a physical RSPAN uplink).
    """

    enabled: bool = True
    sources: Annotated[tuple[MirrorSource, ...], BeforeValidator(_sources)] = ()
    destinations: tuple[str, ...] = ()
    rspan: RspanDestination | None = None
    erspan: ErspanDestination | None = None
    rspan_source: RspanSource | None = None
    filter: str | None = Field(default=None, description="BPF-like: host/net/port/proto/vlan")
    allow_normal_io: bool = False
    mirrored_packet_length: int | None = Field(default=None, ge=60, le=65535)
    sampling_rate: int = Field(default=1, ge=1, le=1_000_000)
    description: str = ""
    # limits: the switch disables the session by itself when one is reached (audited)
    stop_at: AwareDatetime | None = None  # time-boxed: copies stop at this time
    max_bytes: int | None = Field(default=None, ge=1)  # bytes of copies since the last change

    @model_validator(mode="after")
    def _check(self) -> MirrorSession:
        if self.rspan_source is not None:
            if self.sources or self.erspan:
                raise ValueError("an rspan_source session takes no sources or erspan")
            if not self.destinations and self.rspan is None:
                raise ValueError("an rspan_source session needs destinations (or rspan to "
                                 "relay the copies)")
            if self.destinations and self.rspan is not None:
                raise ValueError("an rspan_source session has destinations or rspan, not both")
            if self.rspan is not None and self.rspan.port == self.rspan_source.port \
                    and self.rspan.vlan == self.rspan_source.vlan:
                raise ValueError("an rspan_source session cannot relay a mirror VLAN back "
                                 "onto itself")
            return self
        if not self.sources:
            raise ValueError("a session needs at least one source")
        kinds = [k for k, v in (("destinations", self.destinations), ("rspan", self.rspan),
                                ("erspan", self.erspan)) if v]
        if not kinds:
            raise ValueError("a session needs destinations, rspan or erspan")
        if len(kinds) > 1:
            raise ValueError(f"a session has one kind of destination, not {' and '.join(kinds)}")
        src_names = [s.port for s in self.sources]
        dup = {n for n in src_names if src_names.count(n) > 1}
        if dup:
            raise ValueError(f"source port listed twice: {', '.join(sorted(dup))}")
        both = sorted(set(src_names) & set(self.destinations))
        if both:
            raise ValueError(
                f"port {both[0]!r} is both a source and a destination of this session"
            )
        if self.rspan is not None and self.rspan.port in src_names:
            raise ValueError(f"port {self.rspan.port!r} is both a source and the RSPAN uplink")
        if self.filter:
            try:
                compile_match(self.filter)
            except FilterError as err:
                raise ValueError(f"filter: {err}") from None
        return self


class SwitchConfig(Strict):
    """Switch-wide settings."""

    name: str = Field(default="vspan0", pattern=PORT_NAME_RE.pattern)
    fdb_aging_seconds: int = Field(default=300, ge=1, le=1_000_000)
    fdb_max_entries: int = Field(default=16384, ge=1)
    # the learned MAC table is written to the state file this often (and at a clean stop)
    fdb_save_seconds: int = Field(default=10, ge=1, le=3600)
    flow_cache_size: int = Field(default=65536, ge=0)
    # cache misses (slow-path upcalls) per second and ingress port; 0 = unlimited
    upcall_budget: int = Field(default=2000, ge=0, le=10_000_000)
    batch_size: int = Field(default=64, ge=1, le=4096)
    # which replay forwards cached flows: the C extension when built (auto), or Python
    fastpath: Literal["auto", "native", "python"] = "auto"
    poll: PollConfig = PollConfig()  # block for frames, or busy-poll after traffic
    control_socket: str | None = None  # default: /run/vspan/<name>.sock
    # members of this group may use the control socket (0660); default: owner only (0600)
    control_socket_group: str | None = Field(default=None, min_length=1, max_length=32)
    # default: /var/lib/vspan/<name> (state.db, tokens, audit log, captures)
    state_dir: str | None = None
    roles: RolesConfig = RolesConfig()  # control-socket peers' roles
    api: ApiConfig = ApiConfig()  # the REST API over TCP (bearer tokens)

    def socket_path(self) -> str:
        """Where the daemon's control socket lives."""
        return self.control_socket or f"/run/vspan/{self.name}.sock"

    def state_path(self) -> str:
        """The switch's state directory."""
        return self.state_dir or f"/var/lib/vspan/{self.name}"


def untagged_vids(port: PortConfig) -> tuple[str, tuple[int, ...]] | None:
    """(key path, VIDs) of the VLAN a port's untagged frames join, when it is a plain VLAN."""
    v = port.vlan
    if v.mode is VlanMode.ACCESS and v.id is not None:
        return "vlan.id", (v.id,)
    if v.mode is VlanMode.TRUNK and v.native is not None:
        return "vlan.native", (v.native,)
    return None


class Config(Strict):
    """A whole switch configuration."""

    switch: SwitchConfig = SwitchConfig()
    ports: Annotated[Mapping[str, PortConfig], FREEZE, THAW] = Field(default_factory=FrozenMap)
    mirrors: Annotated[Mapping[str, MirrorSession], FREEZE, THAW] = Field(
        default_factory=FrozenMap)
    firewall: FirewallConfig | None = None  # the distributed firewall (vspan.policy)

    @model_validator(mode="after")
    def _cross_check(self) -> Config:
        for name, port in self.ports.items():
            if not PORT_NAME_RE.match(name):
                raise ValueError(f"ports.{name}: not a valid port name")
            if port.vxlan is not None:
                continue
            ifname = port.ifname(name)
            if port.team is None and not IFNAME_RE.match(ifname):
                raise ValueError(f"ports.{name}.interface: {ifname!r} is not an interface name")
        seen: dict[str, str] = {}
        vteps: dict[tuple[str, int], str] = {}
        for name, port in self.ports.items():
            if port.vxlan is not None:
                where = (port.vxlan.local_ip, port.vxlan.udp_port)
                if where in vteps:
                    raise ValueError(
                        f"ports.{name}.vxlan: {where[0]} port {where[1]} is already used by "
                        f"port {vteps[where]!r}")
                vteps[where] = name
                continue
            paths = [f"ports.{name}.interface"] if port.team is None else \
                [f"ports.{name}.team.members.{i}" for i in range(len(port.team.members))]
            for path, ifname in zip(paths, port.interfaces(name), strict=True):
                if ifname in seen:
                    raise ValueError(
                        f"{path}: {ifname!r} is already used by port {seen[ifname]!r}")
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
            for field_name in ("rspan", "rspan_source"):
                ref = getattr(session, field_name)
                if ref is not None and ref.port not in self.ports:
                    raise ValueError(
                        f"mirrors.{sname}.{field_name}.port: no port named {ref.port!r}")
            if session.rspan_source is not None and \
                    session.rspan_source.port in session.destinations:
                raise ValueError(f"mirrors.{sname}: the RSPAN uplink cannot be a destination")
        errors = policy_reference_errors(self.port_policies(), self.firewall)
        errors += pvlan_errors({n: p.pvlan for n, p in self.ports.items()},
                               {n: k for n, p in self.ports.items() if (k := untagged_vids(p))},
                               {n: p.vlan.allowed for n, p in self.ports.items()
                                if p.vlan.mode is VlanMode.TRUNK})
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def port_policies(self) -> dict[str, PortPolicyConfig | None]:
        """Each port's policy (``None`` for a port without one), by port name."""
        return {n: p.policy for n, p in self.ports.items()}
