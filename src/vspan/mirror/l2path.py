"""The link-layer path of a remote mirror session: send its IPv4 GRE packets over an
``AF_PACKET`` socket with a cached Ethernet + IPv4 header (``docs/mirroring.md``,
"ERSPAN sender").

A raw ``IPPROTO_GRE`` socket makes the kernel run its IP output (route lookup, header,
netfilter hooks) for every copy; when the next hop of the session's remote address is
known — the main routing table (``/proc/net/route``) names an Ethernet interface and a
gateway or an on-link destination, and the neighbour table (``/proc/net/arp``) has a
complete entry for that next hop — the copy can be written as a whole Ethernet frame
instead, about 1 µs cheaper per copy (``bench/bench_erspan_send.py``).

* :func:`resolve` finds the next hop (or why there is none);
* :class:`L2Header` is the cached 34-byte Ethernet + IPv4 header and writes the
  per-copy fields (total length, identification, header checksum) exactly as the
  native replay's ``_erspan_tx.h`` does.

What is not resolved here stays on the raw socket (the kernel then resolves the
neighbour itself and queues the packet): loopback and local addresses, IPv6,
non-Ethernet interfaces, a missing or incomplete neighbour entry. Policy routing
(``ip rule``) is not read: a host whose mirror traffic is policy-routed sets the
session's ``sender: raw``.
"""

from __future__ import annotations

import enum
import ipaddress
import socket
import struct
from dataclasses import dataclass

ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ATF_COM = 0x02  # the neighbour entry is complete
IPPROTO_GRE = 47
L2_HEADER_LEN = 34
_IP_DF = 0x4000


class PathState(enum.StrEnum):
    """Why a session's copies leave by the link-layer path, or not."""

    RESOLVED = "resolved"  # AF_PACKET with the cached header
    UNRESOLVED = "unresolved"  # route known, no complete neighbour entry (yet)
    NO_ROUTE = "no-route"  # the main table has no route to the remote
    LOCAL = "local"  # the remote is an address of this host (loopback path)
    UNSUPPORTED = "unsupported"  # IPv6, a non-Ethernet interface, or sender: raw


@dataclass(frozen=True, slots=True)
class NextHop:
    """Where a session's IPv4 packets go on the link."""

    ifname: str
    ifindex: int
    src_mac: bytes
    dst_mac: bytes
    gateway: str | None  # None: the remote is on link


def route_v4(dest: int, text: str) -> tuple[str, int] | None:
    """(interface, gateway as int; 0: on link) of the longest-prefix, lowest-metric route."""
    best: tuple[int, int, str, int] | None = None
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 8:
            continue
        try:
            net = int.from_bytes(bytes.fromhex(f[1]), "little")
            gw = int.from_bytes(bytes.fromhex(f[2]), "little")
            flags = int(f[3], 16)
            metric = int(f[6])
            mask = int.from_bytes(bytes.fromhex(f[7]), "little")
        except ValueError:
            continue
        if not flags & 0x1 or dest & mask != net:  # RTF_UP
            continue
        cand = (bin(mask).count("1"), -metric, f[0], gw if flags & 0x2 else 0)  # RTF_GATEWAY
        if best is None or cand[:2] > best[:2]:
            best = cand
    return (best[2], best[3]) if best else None


def _neighbour(ip: str, ifname: str, text: str) -> bytes | None:
    """The MAC of a complete neighbour entry for ``ip`` on ``ifname`` (``/proc/net/arp``)."""
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 6 or f[0] != ip or f[5] != ifname:
            continue
        try:
            flags = int(f[2], 16)
            mac = bytes.fromhex(f[3].replace(":", ""))
        except ValueError:
            return None
        if flags & ATF_COM and len(mac) == 6 and mac != bytes(6):
            return mac
        return None
    return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except OSError:
        return None


def _is_local(addr: str) -> bool:
    """Whether ``addr`` is one of this host's addresses (the kernel lets us bind to it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((addr, 0))
        except OSError:
            return False
    return True


def resolve(remote_ip: str) -> NextHop | PathState:
    """The next hop of ``remote_ip`` from the main routing and neighbour tables, or the
    :class:`PathState` that says why the copies must use the raw socket."""
    addr = ipaddress.ip_address(remote_ip)
    if addr.version != 4:
        return PathState.UNSUPPORTED
    if addr.is_loopback or _is_local(remote_ip):
        return PathState.LOCAL
    routes = _read("/proc/net/route")
    hop = route_v4(int(addr), routes) if routes is not None else None
    if hop is None:
        return PathState.NO_ROUTE
    ifname, gw = hop
    kind = _read(f"/sys/class/net/{ifname}/type")
    mac_text = _read(f"/sys/class/net/{ifname}/address")
    if kind is None or kind.strip() != str(ARPHRD_ETHER) or mac_text is None:
        return PathState.UNSUPPORTED
    gateway = str(ipaddress.IPv4Address(gw)) if gw else None
    arp = _read("/proc/net/arp")
    dst = _neighbour(gateway or remote_ip, ifname, arp) if arp is not None else None
    if dst is None:
        return PathState.UNRESOLVED
    try:
        ifindex = socket.if_nametoindex(ifname)
        src = bytes.fromhex(mac_text.strip().replace(":", ""))
    except (OSError, ValueError):
        return PathState.UNSUPPORTED
    if len(src) != 6:
        return PathState.UNSUPPORTED
    return NextHop(ifname, ifindex, src, dst, gateway)


class L2Header:
    """The cached Ethernet + IPv4 header of a session's copies (34 bytes): everything but
    the IPv4 total length, identification and header checksum is fixed."""

    _COPY = struct.Struct("!16sHH4sH8s")  # Ethernet + ver/TOS, length, id, DF/TTL/proto, sum

    def __init__(self, hop: NextHop, *, local: bytes, remote: bytes, ttl: int,
                 tos: int) -> None:
        self.hop = hop
        self.template = (hop.dst_mac + hop.src_mac + struct.pack("!H", ETH_P_IP)
                         + struct.pack("!BBHHHBBH4s4s", 0x45, tos, 0, 0, _IP_DF, ttl,
                                       IPPROTO_GRE, 0, local, remote))
        t = self.template
        self._head, self._mid, self._addrs = t[:16], t[20:24], t[26:34]
        self._fixed = sum(struct.unpack("!10H", t[14:34]))  # the words that never change

    def frame(self, payload: bytes, ident: int) -> bytes:
        """The Ethernet frame carrying GRE ``payload`` with IPv4 identification ``ident``
        (the RFC 1071 header checksum, as
        :func:`vspan.packet.checksum.internet_checksum` gives it, from the cached sum)."""
        total = 20 + len(payload)
        ident &= 0xFFFF
        s = self._fixed + total + ident
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        return self._COPY.pack(self._head, total, ident, self._mid, ~s & 0xFFFF,
                               self._addrs) + payload
