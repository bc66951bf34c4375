"""The fixed vocabulary of drop reasons. Every dropped frame names one."""

from __future__ import annotations

import enum


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
