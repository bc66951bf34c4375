"""Kernel constants the port backends need and Python 3.11 does not export.

One module only (see PERF-NOTES): AF_PACKET socket options and ring layout
(``linux/if_packet.h``), TUN/TAP ioctls and flags (``linux/if_tun.h``) and the
few netdevice ioctls (``linux/sockios.h``, ``linux/if.h``) the backends use.
"""

from __future__ import annotations

import struct

# --- AF_PACKET (linux/if_packet.h, linux/if_ether.h) -------------------------

SOL_PACKET = 263
ETH_P_ALL = 3

PACKET_ADD_MEMBERSHIP = 1
PACKET_DROP_MEMBERSHIP = 2
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_VERSION = 10
PACKET_RESERVE = 12
PACKET_RX_RING = 5
PACKET_TX_RING = 13
PACKET_VNET_HDR = 15
PACKET_FANOUT = 18
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23

PACKET_MR_MULTICAST = 0
PACKET_MR_PROMISC = 1
PACKET_MR_ALLMULTI = 2

# sockaddr_ll.sll_pkttype
PACKET_HOST = 0
PACKET_BROADCAST = 1
PACKET_MULTICAST = 2
PACKET_OTHERHOST = 3
PACKET_OUTGOING = 4

TPACKET_V1 = 0
TPACKET_V2 = 1
TPACKET_V3 = 2

# tp_status bits (kernel -> user direction of the rx ring)
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1 << 0
TP_STATUS_COPY = 1 << 1
TP_STATUS_LOSING = 1 << 2
TP_STATUS_CSUMNOTREADY = 1 << 3
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_BLK_TMO = 1 << 5
TP_STATUS_VLAN_TPID_VALID = 1 << 6
TP_STATUS_CSUM_VALID = 1 << 7

TPACKET_ALIGNMENT = 16

# struct tpacket2_hdr: tp_status, tp_len, tp_snaplen (u32), tp_mac, tp_net (u16),
# tp_sec, tp_nsec (u32), tp_vlan_tci, tp_vlan_tpid (u16), tp_padding[4]
TPACKET2_HDR = struct.Struct("=IIIHHIIHH4x")
TPACKET2_HDRLEN = 32  # TPACKET_ALIGN(sizeof(struct tpacket2_hdr))
# struct tpacket_req: tp_block_size, tp_block_nr, tp_frame_size, tp_frame_nr
TPACKET_REQ = struct.Struct("=IIII")
# struct tpacket_stats: tp_packets, tp_drops
TPACKET_STATS = struct.Struct("=II")
# struct packet_mreq: mr_ifindex (int), mr_type, mr_alen (u16), mr_address[8]
PACKET_MREQ = struct.Struct("=iHH8s")

# --- TUN/TAP (linux/if_tun.h) ------------------------------------------------

TUN_DEVICE = "/dev/net/tun"

TUNSETNOCSUM = 0x400454C8
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNGETFEATURES = 0x800454CF
TUNSETOFFLOAD = 0x400454D0
TUNGETIFF = 0x800454D2
TUNGETVNETHDRSZ = 0x800454D7
TUNSETVNETHDRSZ = 0x400454D8
TUNSETVNETLE = 0x400454DC
TUNGETVNETLE = 0x800454DD

IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NAPI = 0x0010
IFF_NO_PI = 0x1000
IFF_ONE_QUEUE = 0x2000
IFF_VNET_HDR = 0x4000
IFF_TUN_EXCL = 0x8000
IFF_MULTI_QUEUE = 0x0100
IFF_PERSIST = 0x0800

TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_UFO = 0x10
TUN_F_USO4 = 0x20  # Linux 6.2+
TUN_F_USO6 = 0x40

# --- netdevice ioctls (linux/sockios.h, linux/if.h) ----------------------------

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933

IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_PROMISC = 0x100
IFF_LOWER_UP = 0x10000

IFNAMSIZ = 16
IFREQ_SIZE = 40  # sizeof(struct ifreq) on 64-bit Linux
# struct ifreq with a short (ifr_flags) or an int (ifr_mtu, ifr_ifindex) payload
IFREQ_FLAGS = struct.Struct("=16sh22x")
IFREQ_INT = struct.Struct("=16si20x")

# --- TUN/TAP ownership (linux/if_tun.h) --------------------------------------

TUNSETOWNER = 0x400454CC
TUNSETGROUP = 0x400454CE

# --- ethtool ioctl (linux/ethtool.h, linux/sockios.h) -------------------------

SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x03
ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSSET_INFO = 0x37
ETHTOOL_GFEATURES = 0x3A
ETH_SS_FEATURES = 4
ETH_GSTRING_LEN = 32

# --- IP/UDP sockets (linux/in.h, asm-generic/socket.h, linux/filter.h) ---------

IP_MTU_DISCOVER = 10
IP_PMTUDISC_PROBE = 3  # set DF, never fragment, ignore learned path MTUs
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26
# struct sock_filter: code (u16), jt, jf (u8), k (u32); BPF_RET|BPF_K = 0x06
SOCK_FILTER = struct.Struct("=HBBI")
BPF_RET_K = 0x06
# struct sock_fprog: len (u16), filter pointer (native alignment pads after len)
SOCK_FPROG = struct.Struct("@HP")
