"""What the overlay port would do with one frame, as data (``vspan trace`` across hosts).

:meth:`~vspan.ports.vxlan.VxlanPort.plan_tx` and
:meth:`~vspan.ports.vxlan.VxlanPort.plan_rx` run the checks the port's send and
receive paths run (the same helpers), look the MAC → VTEP table up without
changing it, and return these records: nothing is sent, learned or counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from vspan.packet.vxlan import VXLAN_ENCAP_V4, VXLAN_HLEN

#: outer IPv4 (20) + UDP (8): the VXLAN datagram's payload is VXLAN header + inner frame
OUTER_IP_UDP = VXLAN_ENCAP_V4 - VXLAN_HLEN


@dataclass(frozen=True, slots=True)
class TxPlan:
    """A frame handed to the overlay port: its VNI, where it goes, whether it fits."""

    local_ip: str
    udp_port: int  # destination port of the datagrams
    vlan: int  # the frame's VLAN (0: the untagged network)
    vni: int | None  # None: the VLAN has no VNI here
    reason: str  # why nothing is sent ("" when it is), one of the port's tx drop reasons
    targets: tuple[str, ...] = ()  # the VTEPs a datagram goes to
    via: str = ""  # learned / static / flood / mirror: how the targets were chosen
    sport: int = 0  # the UDP source port (a hash of the inner flow)
    packets: tuple[bytes, ...] = ()  # each datagram's payload: VXLAN header + inner frame
    underlay_mtu: int = 0
    oversize: tuple[int, ...] = ()  # indexes of packets too big for the underlay (dropped)

    def outer_sizes(self) -> list[int]:
        """The outer IPv4 packet size of each datagram."""
        return [OUTER_IP_UDP + len(p) for p in self.packets]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (payloads as hex)."""
        sizes = self.outer_sizes()
        return {
            "local_ip": self.local_ip, "udp_port": self.udp_port, "vlan": self.vlan,
            "vni": self.vni, "reason": self.reason, "targets": list(self.targets),
            "via": self.via, "sport": self.sport, "underlay_mtu": self.underlay_mtu,
            "packets": [{"payload": p.hex(), "inner_bytes": len(p) - VXLAN_HLEN,
                         "outer_ip_bytes": sizes[i], "fits": i not in self.oversize}
                        for i, p in enumerate(self.packets)],
        }


@dataclass(frozen=True, slots=True)
class RxPlan:
    """A VXLAN payload arriving from ``source``: accepted (and as which frame) or why not."""

    source: str
    vni: int | None  # None: too short to carry one
    vlan: int  # the VNI's VLAN here (-1: unmapped)
    reason: str  # one of the port's receive drop reasons, "" when accepted
    frame: bytes = b""  # the frame the switch receives on the overlay port
    learns: bool = False  # the inner source MAC would be learned behind ``source``

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (the frame as hex)."""
        return {"source": self.source, "vni": self.vni, "vlan": self.vlan,
                "reason": self.reason, "frame": self.frame.hex(), "learns": self.learns}
