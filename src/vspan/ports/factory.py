"""Create the backend a port's configuration asks for."""

from __future__ import annotations

from vspan.config.model import PortConfig, PortType
from vspan.ports.base import Port


def open_backend(name: str, cfg: PortConfig) -> Port:
    """A not-yet-opened backend for port ``name`` (the engine calls ``open()``)."""
    ifname = cfg.ifname(name)
    if cfg.type is PortType.AFPACKET:
        from vspan.ports.afpacket import AfPacketPort

        return AfPacketPort(name, ifname, rx_steering=cfg.rx_steering)
    if cfg.type is PortType.TAP:
        from vspan.ports.tap import TapPort

        tap = cfg.tap_settings()
        return TapPort(name, ifname, create=tap.create, owner=tap.owner, group=tap.group,
                       vnet_hdr=tap.vnet_hdr, multi_queue=tap.multi_queue)
    if cfg.type is PortType.VXLAN and cfg.vxlan is not None:
        from vspan.ports.vxlan import VxlanPort

        return VxlanPort(name, cfg.vxlan)
    if cfg.type is PortType.TEAM and cfg.team is not None:
        from vspan.ports.team import TeamPort

        return TeamPort(name, cfg.team)
    from vspan.ports.memory import MemoryPort

    return MemoryPort(name)
