"""Request and response bodies of the REST API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vspan.config.access import Role
from vspan.config.model import MirrorSession

MAX_DURATION = 366 * 86400.0  # a time box longer than a year is a mistake
HEX_FRAME = r"^([0-9a-fA-F]{2})*$"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"^{_OCTET}(\.{_OCTET}){{3}}$"
IPV4_LIKE = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}$"  # the builder names a bad octet itself
FILE_PATH = r"^[^\x00]*$"  # no file name holds a NUL byte (the OS refuses it)


class ErrorOut(BaseModel):
    """An error: ``error`` says what went wrong; some errors carry more fields."""

    model_config = ConfigDict(extra="allow")
    error: str


class RefusalOut(BaseModel):
    """A refused request: who asked, with which roles, and which roles would do."""

    error: str
    identity: str
    roles: list[str]
    needs: list[str] | None = None


class HealthOut(BaseModel):
    """The switch answers."""

    status: str
    switch: str
    running: bool


class ChangesOut(BaseModel):
    """What a change did to the running configuration."""

    changes: list[str]
    empty: bool


class ReloadIn(BaseModel):
    """``path``: another configuration file (admin only); ``live``: what to do with live
    changes the file would undo."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(default=None, min_length=1, max_length=4096, pattern=FILE_PATH)
    live: Literal["refuse", "keep", "drop"] = "refuse"


class ReloadOut(ChangesOut):
    """A reload's changes and what became of the live changes."""

    live_kept: list[str]
    live_dropped: list[str]


class Limits(BaseModel):
    """Limits of a mirror session: the switch disables it when one is reached."""

    model_config = ConfigDict(extra="forbid")
    duration: float | None = Field(strict=True, default=None, gt=0, le=MAX_DURATION,
                                   description="seconds from now until the session stops")
    max_bytes: int | None = Field(strict=True, default=None, ge=1, le=1 << 62,
                                  description="bytes of copies after which it stops")


class MirrorCreate(MirrorSession):
    """A mirror session as in the configuration (``mirrors.<name>``), and ``duration``:
    seconds until it stops (instead of ``stop_at``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    duration: float | None = Field(strict=True, default=None, gt=0, le=MAX_DURATION)

    @model_validator(mode="after")
    def _one_time_box(self) -> MirrorCreate:
        if self.duration is not None and self.stop_at is not None:
            raise ValueError("give duration or stop_at, not both")
        return self


MAC = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"


class PacketIn(BaseModel):
    """A frame by its fields, as ``vspan trace`` builds it from its options (``proto``
    left out: icmp when both IPs are given, else a raw Ethernet frame)."""

    model_config = ConfigDict(extra="forbid")
    src_mac: str = Field("02:00:00:00:00:01", pattern=MAC)
    dst_mac: str = Field("ff:ff:ff:ff:ff:ff", pattern=MAC)
    src_ip: str | None = Field(None, pattern=IPV4_LIKE)
    dst_ip: str | None = Field(None, pattern=IPV4_LIKE)
    vlan: list[Annotated[int, Field(strict=True, ge=0, le=4095)]] = Field(default_factory=list,
                                                             max_length=4)
    proto: Literal["icmp", "tcp", "udp", "arp", "raw"] | None = None
    sport: int = Field(12345, strict=True, ge=0, le=65535)
    dport: int = Field(80, strict=True, ge=0, le=65535)
    flags: str = Field("S", pattern=r"^[FSRPAUECN]{0,9}$")


class FrameIn(BaseModel):
    """A frame as if received on ``port``: ``frame`` (hex) or ``packet`` (its fields)."""

    model_config = ConfigDict(extra="forbid")
    port: str = Field(min_length=1, max_length=64)
    frame: str | None = Field(None, min_length=2, max_length=2 * 65535, pattern=HEX_FRAME)
    packet: PacketIn | None = None

    @model_validator(mode="after")
    def _one_frame(self) -> FrameIn:
        if (self.frame is None) == (self.packet is None):
            raise ValueError("give frame (hex) or packet (fields), one of them")
        return self


class TraceIn(FrameIn):
    """A frame (hex) as if received on ``port``; with ``from_vtep`` the frame is a VXLAN
    payload (header and inner frame) that the overlay port ``port`` receives from that
    VTEP."""

    from_vtep: str | None = Field(default=None, max_length=15, pattern=IPV4)


class ExplainIn(FrameIn):
    """A frame (hex) entering (``in``) or leaving (``out``) ``port``."""

    direction: Literal["in", "out"]


class AclIn(BaseModel):
    """An ACL entry as in ``ports.<name>.policy.acls[]`` (or, with ``extended``, an
    extended ACL rule); without ``id`` one is made up."""

    model_config = ConfigDict(extra="allow")
    extended: bool = False
    id: str | None = Field(default=None, min_length=1, max_length=64)


class FirewallRuleIn(BaseModel):
    """A firewall rule as in ``firewall.sections[].rules[]``, and where to put it."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1, max_length=64)
    position: int | None = Field(strict=True, default=None, ge=1, le=1_000_000,
                                 description="1 = first; default: last")


class CaptureIn(BaseModel):
    """A capture the switch writes. ``path``: a file name in the switch's capture directory
    (default: one is made up), or an absolute path (admin only)."""

    model_config = ConfigDict(extra="forbid")
    ports: list[str] = Field(min_length=1, max_length=256)
    path: str = Field(default="", max_length=4096, pattern=FILE_PATH)
    direction: Literal["in", "out", "both"] = "both"
    drops: bool = False
    filter: str | None = Field(default=None, max_length=4096)
    max_packets: int = Field(strict=True, default=0, ge=0, le=1 << 62)
    max_bytes: int = Field(strict=True, default=0, ge=0, le=1 << 62)
    duration: float | None = Field(strict=True, default=None, gt=0, le=MAX_DURATION)


class CaptureOut(BaseModel):
    """A capture, running or finished."""

    model_config = ConfigDict(extra="allow")
    id: int
    path: str
    ports: list[str]
    packets: int
    dropped_frames: int
    bytes: int
    seconds: float
    running: bool
    full: bool = False
    stopped_by: str | None = None
    stop_reason: str | None = None


class TokenIn(BaseModel):
    """A new token: its name, its role and, optionally, seconds until it expires."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    role: Role
    expires_in: float | None = Field(strict=True, default=None, gt=0, le=10 * 366 * 86400.0)


class TokenOut(BaseModel):
    """A token without its secret."""

    name: str
    role: Role
    state: Literal["active", "expired", "revoked"]
    created: str
    expires: str | None
    revoked: str | None
    last_used: str | None


class TokenCreated(TokenOut):
    """A token just made: ``token`` is shown this once and stored only hashed."""

    token: str


class WhoAmI(BaseModel):
    """The caller as the switch sees it."""

    identity: str
    roles: list[str]
    permissions: list[str]
    source: str


class AccessRow(BaseModel):
    """One endpoint of the access table."""

    method: str
    path: str
    permission: str
    roles: list[str]
    audited: bool
    action: str | None
    extra: str | None
    only_in: str | None


AnyJson = Any
