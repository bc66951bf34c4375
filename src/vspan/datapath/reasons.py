"""The fixed vocabulary of drop reasons. Every dropped frame names one."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType


class DropReason(enum.StrEnum):
    """Why a frame (or one copy of it) was not delivered."""

    MALFORMED = "malformed"  # could not be parsed as Ethernet/802.1Q/IP
    PORT_DOWN = "port-down"  # ingress or egress port administratively or link down
    VLAN_NOT_ALLOWED = "vlan-not-allowed"  # tag not in the port's allowed set (access: none)
    VLAN_UNTAGGED_NOT_ALLOWED = "vlan-untagged-not-allowed"  # trunk without native VLAN
    VLAN_INNER_TAG = "vlan-inner-tag"  # an inner tag would pass for the frame's VLAN
    VLAN_TPID = "vlan-tpid"  # outer tag is 802.1ad/0x9100, not 802.1Q
    NO_DESTINATION = "no-destination"  # nowhere to send (e.g. learned on in-port)
    SAME_PORT = "same-port"  # destination MAC lives on the ingress port
    PVLAN_ISOLATED = "pvlan-isolated"  # from/to an isolated PVLAN port, not a promiscuous one
    PVLAN_COMMUNITY = "pvlan-community"  # community PVLAN traffic to another community
    MAC_LIMIT = "mac-limit"  # port exceeded its learned-MAC limit
    MIRROR_DEST_PORT = "mirror-dest-port"  # a mirror destination sent or got normal traffic
    MTU = "mtu"  # larger than the egress port's MTU
    RESERVED_MULTICAST = "reserved-multicast"  # 01:80:c2:00:00:0x link-local, never forwarded
    SOURCE_MULTICAST = "source-multicast"  # source MAC is multicast/broadcast
    ACL_DENY = "acl-deny"
    EXT_ACL_DENY = "ext-acl-deny"
    FIREWALL_DENY = "firewall-deny"
    FIREWALL_REJECT = "firewall-reject"
    FIREWALL_STATE_INVALID = "firewall-state-invalid"
    MAC_SPOOF = "mac-spoof"
    DHCP_GUARD = "dhcp-guard"
    ROUTER_GUARD = "router-guard"
    STORM_LIMIT = "storm-limit"
    TX_ERROR = "tx-error"  # the port backend refused the frame
    VNET_HEADER = "vnet-header"  # virtio-net header fields that do not fit the frame
    GSO_SEGMENTS = "gso-segments"  # a GSO super-frame that would be cut too finely
    UPCALL_BUDGET = "upcall-budget"  # the port's cache misses exceed its slow-path budget


EXPLANATIONS: Mapping[DropReason, str] = MappingProxyType({
    DropReason.MALFORMED: "the frame could not be parsed as Ethernet/802.1Q/IP (cut short, bad "
                          "header length, impossible fields); counted and dropped, never forwarded",
    DropReason.PORT_DOWN: "the ingress or egress port is administratively disabled or its link "
                          "is down (or the port no longer exists)",
    DropReason.VLAN_NOT_ALLOWED: "the frame's 802.1Q tag is not in the port's allowed VLANs (an "
                                 "access or untagged port accepts no tagged frames at all)",
    DropReason.PVLAN_ISOLATED: "private VLAN: an isolated port may talk only to promiscuous "
                               "ports (the frame came from or would reach an isolated port)",
    DropReason.PVLAN_COMMUNITY: "private VLAN: a community port may talk only to its own "
                                "community and to promiscuous ports",
    DropReason.VLAN_UNTAGGED_NOT_ALLOWED: "an untagged frame arrived on a trunk that has no "
                                          "native VLAN",
    DropReason.VLAN_INNER_TAG: "a second (inner) tag would be taken for the frame's VLAN after "
                               "the outer tag is popped: dropped to stop VLAN hopping",
    DropReason.VLAN_TPID: "the outer tag is 802.1ad (0x88a8) or 0x9100, not 802.1Q: vspan "
                          "does not switch QinQ service tags",
    DropReason.NO_DESTINATION: "nowhere to send the frame: the destination is learned on the "
                               "port it came from, or the flood set is empty",
    DropReason.SAME_PORT: "the destination MAC is learned on the ingress port itself (a frame is "
                          "never sent back where it came from)",
    DropReason.MAC_LIMIT: "the port already learned its configured maximum of source MACs "
                          "(mac_limit); frames from new MACs are dropped",
    DropReason.MIRROR_DEST_PORT: "a mirror destination port sent or would receive normal "
                                 "traffic (allow_normal_io is off for it)",
    DropReason.MTU: "the IP packet (or a GSO segment of it) is larger than the egress port's MTU",
    DropReason.RESERVED_MULTICAST: "the destination is link-local 01:80:c2:00:00:0x (STP, LACP, "
                                   "802.1X ...): such frames are never forwarded",
    DropReason.SOURCE_MULTICAST: "the source MAC is a multicast or broadcast address, which no "
                                 "station may send from",
    DropReason.ACL_DENY: "a port ACL entry denies the frame (the rule names the entry)",
    DropReason.EXT_ACL_DENY: "an extended ACL rule denies the frame, or it has no live session of "
                             "a stateful rule (the rule names the deciding rule)",
    DropReason.FIREWALL_DENY: "a distributed firewall rule (or the default rule) with action "
                              "drop matched the new connection",
    DropReason.FIREWALL_REJECT: "a firewall rule with action reject matched: the frame is dropped "
                                "and a TCP RST / ICMP unreachable is sent back",
    DropReason.FIREWALL_STATE_INVALID: "connection tracking found the frame invalid for its "
                                       "connection (no SYN for a new strict TCP connection, "
                                       "out of window, table full, a segment after the "
                                       "connection's RST, ...; the detail says which)",
    DropReason.MAC_SPOOF: "the source MAC is not one assigned to the port (MAC spoofing "
                          "guard)",
    DropReason.DHCP_GUARD: "a DHCP server answer from a port that may not act as DHCP server",
    DropReason.ROUTER_GUARD: "an IPv6 router advertisement (or redirect) from a port that may not "
                             "act as a router",
    DropReason.STORM_LIMIT: "the port's broadcast/multicast/unknown-unicast storm limit "
                            "(token bucket) is exhausted",
    DropReason.TX_ERROR: "the port's backend refused the frame on transmit (queue full, "
                         "interface gone)",
    DropReason.VNET_HEADER: "the frame's virtio-net (offload) header does not fit it: a "
                            "checksum offset or hdr_len outside the frame, an unknown GSO type, "
                            "GSO on a frame that is not TCP/UDP over IP (the detail says which)",
    DropReason.GSO_SEGMENTS: "a GSO super-frame whose gso_size would cut it into more pieces "
                             "than the kernel allows (TCP segments under 48 bytes, more than "
                             "128 UDP datagrams): refused at receive",
    DropReason.UPCALL_BUDGET: "the port sent more frames of new, uncached flows than its "
                              "slow-path budget (switch.upcall_budget misses per second) "
                              "allows: excess misses are dropped so other ports keep their "
                              "rate (cached flows are never limited)",
})
"""One line per drop reason: what it means (``vspan explain-reason``)."""

STAGES: Mapping[DropReason, str] = MappingProxyType({
    DropReason.MALFORMED: "parse",
    DropReason.PORT_DOWN: "port",
    DropReason.VLAN_NOT_ALLOWED: "vlan",
    DropReason.PVLAN_ISOLATED: "pvlan",
    DropReason.PVLAN_COMMUNITY: "pvlan",
    DropReason.VLAN_UNTAGGED_NOT_ALLOWED: "vlan",
    DropReason.VLAN_INNER_TAG: "vlan",
    DropReason.VLAN_TPID: "vlan",
    DropReason.NO_DESTINATION: "forward",
    DropReason.SAME_PORT: "forward",
    DropReason.MAC_LIMIT: "learn",
    DropReason.MIRROR_DEST_PORT: "port",
    DropReason.MTU: "output",
    DropReason.RESERVED_MULTICAST: "forward",
    DropReason.SOURCE_MULTICAST: "port",
    DropReason.ACL_DENY: "acl",
    DropReason.EXT_ACL_DENY: "extended-acl",
    DropReason.FIREWALL_DENY: "firewall",
    DropReason.FIREWALL_REJECT: "firewall",
    DropReason.FIREWALL_STATE_INVALID: "firewall",
    DropReason.MAC_SPOOF: "guards",
    DropReason.DHCP_GUARD: "guards",
    DropReason.ROUTER_GUARD: "guards",
    DropReason.STORM_LIMIT: "storm",
    DropReason.TX_ERROR: "transmit",
    DropReason.VNET_HEADER: "port",
    DropReason.GSO_SEGMENTS: "port",
    DropReason.UPCALL_BUDGET: "upcall",
})
"""The pipeline stage (or step) that gives each drop reason."""


def explain(reason: str) -> str:
    """The one-line explanation of ``reason`` (ValueError if it is no drop reason)."""
    return EXPLANATIONS[DropReason(reason)]
