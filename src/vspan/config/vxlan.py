"""Configuration of a VXLAN overlay port (``ports.<name>.type: vxlan``).

An overlay port joins this switch to the same VLANs on other hosts: frames
of a VLAN the switch sends to the port leave as VXLAN (RFC 7348) over UDP to
the remote VTEPs, and VXLAN packets received for a mapped VNI enter the
switch on the port. Everything here is validated with the path of the field
(``ports.ov.vxlan.flood: VLAN 30 has no VNI in 'vnis'``)::

    ports:
      overlay:
        type: vxlan
        vxlan:
          local_ip: 10.1.0.1            # this host's VTEP address (IPv4)
          udp_port: 4789                # IANA port (the Linux default is 8472)
          vnis: {0: 5000, 10: 5010}     # internal VLAN -> VNI; 0 = the untagged network
          flood: {0: [10.1.0.2], 10: [10.1.0.2, 10.1.0.3]}   # head-end replication
          peers: [10.1.0.4]             # more VTEPs accepted (learned from, not flooded to)
          static: [{mac: "02:00:00:00:01:05", vlan: 10, vtep: 10.1.0.3}]
          learning: true
          mirror_vlans: [4000]          # VLANs carrying mirror copies between hosts
          aging_seconds: 300
          max_macs: 16384
          underlay_mtu: 1500            # VMs get 1500 - 50 = 1450
          ttl: 64
          tos: 0

See ``docs/overlay.md``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import Counter
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)

from vspan.config.base import Strict
from vspan.packet.addr import mac_bytes
from vspan.packet.errors import PacketError
from vspan.packet.vxlan import VNI_MAX, VXLAN_OVERHEAD_V4, VXLAN_PORT

#: the internal VLAN of the untagged network (a ``vnis`` key)
UNTAGGED_VLAN = 0


def _int_text(value: Any, what: str) -> int:
    """An int from an int or its decimal text (JSON object keys are always text)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not {what}")
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if not isinstance(value, int):
        raise ValueError(f"{value!r} is not {what}")
    return value


def _overlay_vlan(value: Any) -> int:
    vlan = _int_text(value, "a VLAN id (0-4094, 0 = the untagged network)")
    if not 0 <= vlan <= 4094:
        raise ValueError(f"{vlan} is not a VLAN id (0-4094, 0 = the untagged network)")
    return vlan


def _vni(value: Any) -> int:
    vni = _int_text(value, f"a VNI (0-{VNI_MAX})")
    if not 0 <= vni <= VNI_MAX:
        raise ValueError(f"{vni} is not a VNI (0-{VNI_MAX})")
    return vni


KNOWN_IPV4 = "ipv4_known"
"""Validation context key: a set of addresses already found good (their canonical text),
kept by a caller that validates the same long flood lists again and again (a dvs agent's
port cache); they are taken without a second check, and good new ones are added."""


def _ipv4_known(value: Any, info: ValidationInfo) -> str:
    """:func:`_ipv4`, skipping addresses the validation context's ``KNOWN_IPV4`` set holds
    (and adding the good new ones to it)."""
    context = info.context
    known: set[str] | None = context.get(KNOWN_IPV4) if isinstance(context, dict) else None
    if known is None:
        return _ipv4(value)
    if isinstance(value, str) and value in known:
        return value
    text = _ipv4(value)
    known.add(text)
    return text


def _ipv4_list(value: Any, handler: ValidatorFunctionWrapHandler,
               info: ValidationInfo) -> tuple[str, ...]:
    """A list of addresses: taken as it is, in one set operation, when the validation
    context's ``KNOWN_IPV4`` set holds every one of them (a dvs agent's flood and peer
    lists of hundreds of hosts, checked on every change); otherwise item by item
    (:func:`_ipv4_known`: errors name the item's index)."""
    context = info.context
    known = context.get(KNOWN_IPV4) if isinstance(context, dict) else None
    if known and isinstance(value, (list, tuple)):
        try:
            if known.issuperset(value):
                return tuple(value)
        except TypeError:  # an unhashable item: the item check says what is wrong
            pass
    result: tuple[str, ...] = handler(value)
    return result


def _ipv4(value: Any) -> str:
    """Text of a unicast IPv4 address (IPv6 underlays are not supported yet).

    The common case is checked by ``inet_pton`` (a distributed switch's agents check
    flood lists of hundreds of addresses on every change); anything it refuses goes
    through :mod:`ipaddress` for the precise message.
    """
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an IPv4 address")
    text = value.strip()
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
    except OSError:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 address") from None
        if addr.version != 4:
            raise ValueError(f"{value!r}: only IPv4 underlays are supported") from None
        packed = addr.packed
    if 224 <= packed[0] <= 239 or packed in (b"\0\0\0\0", b"\xff\xff\xff\xff"):
        raise ValueError(f"{value!r} is not a unicast address")
    return socket.inet_ntop(socket.AF_INET, packed)


def _mac(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a MAC address")
    try:
        m = mac_bytes(value)
    except PacketError:
        raise ValueError(f"{value!r} is not a MAC address") from None
    if m[0] & 1:
        raise ValueError(f"{value!r} is a group (multicast) address")
    return ":".join(f"{b:02x}" for b in m)


OverlayVlan = Annotated[int, BeforeValidator(_overlay_vlan)]
Vni = Annotated[int, BeforeValidator(_vni)]
IPv4Text = Annotated[str, BeforeValidator(_ipv4_known)]
IPv4List = Annotated[tuple[IPv4Text, ...], WrapValidator(_ipv4_list)]
MacText = Annotated[str, BeforeValidator(_mac)]


class VxlanStatic(Strict):
    """A remote MAC pinned to a VTEP (never learned over, never aged)."""

    mac: MacText
    vlan: OverlayVlan
    vtep: IPv4Text


class VxlanConfig(Strict):
    """The ``vxlan:`` block of an overlay port (see the module docstring)."""

    local_ip: IPv4Text
    udp_port: int = Field(default=VXLAN_PORT, ge=1, le=65535)
    vnis: Mapping[OverlayVlan, Vni]
    flood: Mapping[OverlayVlan, IPv4List] = Field(default_factory=dict)
    peers: IPv4List = ()
    static: tuple[VxlanStatic, ...] = ()
    learning: bool = True
    # VLANs of ``vnis`` that carry mirror copies (RSPAN over the overlay): sent to their
    # flood list whatever the destination MAC, inner 802.1Q tags carried (the copy of a
    # tagged frame keeps its tag), nothing learned from them on receive
    mirror_vlans: tuple[OverlayVlan, ...] = ()
    aging_seconds: int = Field(default=300, ge=1, le=1_000_000)
    max_macs: int = Field(default=16384, ge=1, le=10_000_000)
    underlay_mtu: int = Field(default=1500, ge=576, le=65535)
    ttl: int = Field(default=64, ge=1, le=255)
    tos: int = Field(default=0, ge=0, le=255)

    @field_validator("vnis")
    @classmethod
    def _check_vnis(cls, vnis: Mapping[int, int]) -> Mapping[int, int]:
        if not vnis:
            raise ValueError("map at least one VLAN to a VNI (like {10: 5010})")
        seen: dict[int, int] = {}
        for vlan, vni in sorted(vnis.items()):
            if vni in seen:
                raise ValueError(f"VNI {vni} is mapped from VLAN {seen[vni]} and VLAN {vlan}")
            seen[vni] = vlan
        return vnis

    @field_validator("flood")
    @classmethod
    def _check_flood(cls, flood: Mapping[int, tuple[str, ...]], info: ValidationInfo
                     ) -> Mapping[int, tuple[str, ...]]:
        vnis = info.data.get("vnis")
        local = info.data.get("local_ip")
        for vlan, vteps in sorted(flood.items()):
            if vnis is not None and vlan not in vnis:
                raise ValueError(f"VLAN {vlan} has no VNI in 'vnis'")
            dup = sorted(v for v, n in Counter(vteps).items() if n > 1)
            if dup:
                raise ValueError(f"VLAN {vlan}: VTEP {dup[0]} listed twice")
            if local is not None and local in vteps:
                raise ValueError(f"VLAN {vlan}: {local} is this host's own local_ip")
        return flood

    @field_validator("mirror_vlans")
    @classmethod
    def _check_mirror_vlans(cls, vlans: tuple[int, ...], info: ValidationInfo
                            ) -> tuple[int, ...]:
        vnis = info.data.get("vnis")
        for vlan in vlans:
            if vlan == UNTAGGED_VLAN:
                raise ValueError("the untagged network (VLAN 0) cannot carry mirror copies")
            if vnis is not None and vlan not in vnis:
                raise ValueError(f"VLAN {vlan} has no VNI in 'vnis'")
        dup = sorted({v for v in vlans if vlans.count(v) > 1})
        if dup:
            raise ValueError(f"VLAN {dup[0]} listed twice")
        return vlans

    @field_validator("peers")
    @classmethod
    def _check_peers(cls, peers: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        local = info.data.get("local_ip")
        if local is not None and local in peers:
            raise ValueError(f"{local} is this host's own local_ip")
        return peers

    @field_validator("static")
    @classmethod
    def _check_static(cls, static: tuple[VxlanStatic, ...], info: ValidationInfo
                      ) -> tuple[VxlanStatic, ...]:
        vnis = info.data.get("vnis")
        local = info.data.get("local_ip")
        seen: set[tuple[int, str]] = set()
        for i, entry in enumerate(static):
            if vnis is not None and entry.vlan not in vnis:
                raise ValueError(f"entry {i}: VLAN {entry.vlan} has no VNI in 'vnis'")
            if entry.vtep == local:
                raise ValueError(f"entry {i}: {local} is this host's own local_ip")
            if (entry.vlan, entry.mac) in seen:
                raise ValueError(f"entry {i}: {entry.mac} on VLAN {entry.vlan} listed twice")
            seen.add((entry.vlan, entry.mac))
        return static

    @property
    def inner_mtu(self) -> int:
        """The largest IP packet a VM may send over the overlay (underlay_mtu - 50)."""
        return self.underlay_mtu - VXLAN_OVERHEAD_V4

    def vteps(self) -> frozenset[str]:
        """Every VTEP packets are accepted from: flood lists, static entries, peers."""
        out: set[str] = set(self.peers)
        for vteps in self.flood.values():
            out.update(vteps)
        out.update(s.vtep for s in self.static)
        return frozenset(out)
