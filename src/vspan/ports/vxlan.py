"""VXLAN overlay port: one switch port standing for every remote host (RFC 7348).

Like the Linux ``vxlan`` device attached to a bridge (see docs/overlay.md):

* **send** (switch → overlay): the frame's 802.1Q tag (none for VLAN 0, the
  untagged network) picks the VNI; the tag is stripped; pending offloads are
  completed in software (GSO super-frames cut into wire segments, partial
  checksums filled in, :func:`vspan.ports.offload.finalize`); a unicast MAC
  known in the :class:`~vspan.ports.vxlan_table.RemoteTable` goes to its VTEP,
  anything else is replicated to the VLAN's flood list (head-end replication);
* **receive** (overlay → switch): the sender must be a known VTEP; the packet
  is validated (length, I flag, VNI mapped, no inner VLAN tag), the inner
  source MAC is learned behind the outer source address, and the VLAN tag of
  the VNI's VLAN is pushed (none for VLAN 0). A TCP/UDP checksum the sender
  left partial, or a TCP super-packet its GSO did not cut (a kernel VTEP on
  the same host, over veth, does both), is passed on with the vnet header
  that asks the next hop to finish the job
  (:func:`vspan.ports.offload.receive_offloads`).

Packets leave through a raw ``IPPROTO_UDP`` socket bound to ``local_ip`` (the
kernel adds the IP header, routes and sets TTL/TOS/DF) so each inner flow
gets its own UDP source port (a hash in 49152-65535) while the destination
is ``udp_port``; the UDP checksum is 0 (allowed over IPv4). They arrive on a
UDP socket bound to ``local_ip:udp_port``. The raw socket carries a BPF
program that accepts nothing, so it never queues the host's UDP traffic.

The datapath (engine thread) calls :meth:`recv_batch`, :meth:`send_batch`
and :meth:`reconfigure`; the views read counters and tables on the same thread.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from vspan.packet.addr import mac_str
from vspan.packet.vxlan import VXLAN_ENCAP_V4, VXLAN_FLAG_I, VXLAN_HLEN, vxlan_header
from vspan.ports import constants as c
from vspan.ports.base import Frame, Port, PortCounters, PortError, PortInfo
from vspan.ports.offload import OffloadError, finalize, receive_offloads
from vspan.ports.vnet import is_plain
from vspan.ports.vnet import shift as vnet_shift
from vspan.ports.vxlan_plan import RxPlan, TxPlan
from vspan.ports.vxlan_table import RemoteTable, VtepCounters

if TYPE_CHECKING:
    from vspan.config.model import PortConfig
    from vspan.config.vxlan import VxlanConfig

# receive drop reasons
RX_UNKNOWN_VTEP = "unknown-vtep"
RX_TRUNCATED = "truncated"
RX_BAD_FLAGS = "bad-flags"
RX_UNKNOWN_VNI = "unknown-vni"
RX_INNER_TAG = "inner-vlan-tag"
# send drop reasons
TX_UNMAPPED_VLAN = "unmapped-vlan"
TX_INNER_TAG = "inner-vlan-tag"
TX_MALFORMED = "malformed"
TX_MTU = "mtu"
TX_OFFLOAD = "offload"
TX_NO_VTEP = "no-vtep"  # flooded with an empty flood list: counted, not an error
TX_SEND_ERROR = "send-error"

SPORT_BASE = 49152
SPORT_MASK = 0x3FFF  # 49152-65535
RCVBUF = 4 << 20
SNDBUF = 4 << 20
_RX_BUF = 65536
_MIN_PACKET = VXLAN_HLEN + 14
_TPIDS = (b"\x81\x00", b"\x88\xa8", b"\x91\x00")
_TAG = struct.Struct("!HH")
_UDP = struct.Struct("!HHHH")
_IPV4 = b"\x08\x00"
_IPV6 = b"\x86\xdd"


def flow_entropy(frame: bytes) -> int:
    """A UDP source port for ``frame`` (untagged inner frame): a hash of its flow.

    IPv4/IPv6 addresses (and TCP/UDP ports of unfragmented packets), else the
    Ethernet header: every segment of one flow takes one underlay path.
    """
    et = frame[12:14]
    if et == _IPV4 and len(frame) >= 34:
        proto = frame[23]
        if (frame[14] == 0x45 and proto in (6, 17) and not (frame[20] & 0x3F or frame[21])
                and len(frame) >= 38):
            key = frame[23:24] + frame[26:38]
        else:
            key = frame[23:24] + frame[26:34]
    elif et == _IPV6 and len(frame) >= 54:
        key = frame[20:21] + frame[22:54] + (frame[54:58] if frame[20] in (6, 17) else b"")
    else:
        key = frame[:14]
    return SPORT_BASE | (zlib.crc32(key) & SPORT_MASK)


def _drop_nothing_filter(sock: socket.socket) -> None:
    """Attach a classic BPF program ``ret #0``: the socket never queues a packet (what
    arrived before the filter is read away). ``sock`` must be non-blocking."""
    prog = ctypes.create_string_buffer(c.SOCK_FILTER.pack(c.BPF_RET_K, 0, 0, 0))
    fprog = c.SOCK_FPROG.pack(1, ctypes.addressof(prog))
    sock.setsockopt(socket.SOL_SOCKET, c.SO_ATTACH_FILTER, fprog)
    while True:
        try:
            sock.recv(1)
        except (BlockingIOError, InterruptedError):
            return


def _bump(reasons: dict[str, int], reason: str, n: int = 1) -> None:
    reasons[reason] = reasons.get(reason, 0) + n


class VxlanPort(Port):
    """The overlay port backend (see the module docstring)."""

    def __init__(self, name: str, config: VxlanConfig, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.counters = PortCounters()
        self.clock = clock
        self.local_ip = config.local_ip
        self.udp_port = config.udp_port
        self._rx: socket.socket | None = None
        self._tx: socket.socket | None = None
        self._buf = bytearray(_RX_BUF)
        self._view = memoryview(self._buf)
        self.table = RemoteTable(config.aging_seconds, config.max_macs)
        self.vteps: dict[str, VtepCounters] = {}
        self.rx_drops: dict[str, int] = {}
        self.tx_drops: dict[str, int] = {}
        self.last_unknown_vtep = ""
        self.last_tx_errno: int | None = None
        self.config = config
        self._apply(config)

    # -- configuration ---------------------------------------------------------

    def _apply(self, cfg: VxlanConfig) -> None:
        """Compile ``cfg`` into the lookup tables the datapath uses."""
        self._vlan_vni = dict(cfg.vnis)
        self._vni_vlan = {vni: vlan for vlan, vni in cfg.vnis.items()}
        self._vx_hdr = {vlan: vxlan_header(vni) for vlan, vni in cfg.vnis.items()}
        self._push = {vlan: _TAG.pack(0x8100, vlan) for vlan in cfg.vnis if vlan}
        self._flood = {vlan: tuple(cfg.flood.get(vlan, ())) for vlan in cfg.vnis}
        self._mirror = frozenset(cfg.mirror_vlans)  # VLANs carrying mirror copies
        self._learning = cfg.learning
        self._max_inner = cfg.underlay_mtu - VXLAN_ENCAP_V4
        accepted = cfg.vteps()
        self.vteps = {ip: self.vteps.get(ip) or VtepCounters() for ip in sorted(accepted)}
        self.table.configure(cfg.aging_seconds, cfg.max_macs)
        self.table.set_static((s.vlan, bytes.fromhex(s.mac.replace(":", "")), s.vtep)
                              for s in cfg.static)

    def reconfigure(self, cfg: PortConfig) -> None:
        """Apply a changed configuration to the open port (no socket is reopened).

        Learned MACs behind VTEPs no longer accepted, and those of VLANs that left
        the map or whose VNI changed, are forgotten.
        """
        new = cfg.vxlan
        if new is None:
            raise PortError(f"port {self.name}: not a vxlan configuration")
        if (new.local_ip, new.udp_port) != (self.local_ip, self.udp_port):
            raise PortError(f"port {self.name}: local_ip/udp_port changes need a reopen")
        old = self.config
        self._apply(new)
        if self._tx is not None and (new.ttl, new.tos) != (old.ttl, old.tos):
            self._tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, new.ttl)
            self._tx.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, new.tos)
        accepted = self.vteps
        vnis = new.vnis
        self.table.forget(lambda vlan, vtep: vtep in accepted
                          and old.vnis.get(vlan) == vnis.get(vlan))
        self.config = new

    # -- lifecycle -------------------------------------------------------------

    def open(self) -> None:
        """Bind the receive socket to ``local_ip:udp_port`` and the send socket to ``local_ip``."""
        if self._rx is not None:
            return
        where = f"{self.local_ip}:{self.udp_port}"
        rx = tx = None
        try:
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.setblocking(False)
            self._buffers(rx, socket.SO_RCVBUF, c.SO_RCVBUFFORCE, RCVBUF)
            rx.bind((self.local_ip, self.udp_port))
            tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
            tx.setblocking(False)
            _drop_nothing_filter(tx)
            self._buffers(tx, socket.SO_SNDBUF, c.SO_SNDBUFFORCE, SNDBUF)
            tx.bind((self.local_ip, 0))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, self.config.ttl)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, self.config.tos)
            tx.setsockopt(socket.IPPROTO_IP, c.IP_MTU_DISCOVER, c.IP_PMTUDISC_PROBE)
        except OSError as exc:
            for s in (rx, tx):
                if s is not None:
                    s.close()
            hint = (" (is the address configured on this host?)"
                    if exc.errno == errno.EADDRNOTAVAIL else "")
            raise PortError(f"port {self.name}: cannot open VXLAN sockets on {where}: "
                            f"{exc.strerror or exc}{hint}") from exc
        self._rx, self._tx = rx, tx

    @staticmethod
    def _buffers(sock: socket.socket, option: int, force: int, size: int) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)  # beyond rmem_max (root)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, option, size)

    def close(self) -> None:
        """Close both sockets; safe to call twice."""
        for s in (self._rx, self._tx):
            if s is not None:
                s.close()
        self._rx = self._tx = None

    # -- receive ---------------------------------------------------------------

    def fileno(self) -> int:
        """The UDP socket; readable when VXLAN packets wait."""
        if self._rx is None:
            raise PortError(f"port {self.name} is not open")
        return self._rx.fileno()

    def recv_batch(self, max_frames: int = 64) -> list[Frame]:
        """Decapsulate up to ``max_frames`` waiting packets (invalid ones are counted)."""
        sock = self._rx
        if sock is None:
            return []
        buf = self._buf
        mv = self._view
        vteps = self.vteps
        mirror = self._mirror
        rx_check = self._rx_check
        rx_frame = self._rx_frame
        learn = self.table.learn if self._learning else None
        now = self.clock()
        out: list[Frame] = []
        nbytes = 0
        errors = 0
        recv = sock.recvfrom_into
        for _ in range(max_frames):
            try:
                n, addr = recv(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. a queued ICMP error: nothing to deliver
                errors += 1
                continue
            src = addr[0]
            vt = vteps.get(src)
            if vt is None:
                errors += 1
                _bump(self.rx_drops, RX_UNKNOWN_VTEP)
                self.last_unknown_vtep = src
                continue
            reason, vlan = rx_check(buf, n)
            if reason:
                errors += 1
                _bump(self.rx_drops, reason)
                _bump(vt.rx_drops, reason)
                continue
            size = n - VXLAN_HLEN
            data, vnet = rx_frame(mv, n, vlan)
            if learn is not None and not buf[14] & 1 and vlan not in mirror:
                learn(vlan, bytes(buf[14:20]), src, now)
            out.append(Frame(data, vnet))
            vt.rx_frames += 1
            vt.rx_bytes += size
            nbytes += size
        cnt = self.counters
        cnt.rx_frames += len(out)
        cnt.rx_bytes += nbytes
        cnt.rx_errors += errors
        return out

    def _rx_check(self, buf: bytearray | bytes, n: int) -> tuple[str, int]:
        """The receive checks of a datagram's first ``n`` bytes: ``(reason, VLAN)``;
        reason ``""`` when it is accepted (VLAN -1 when the VNI is not mapped)."""
        if n < _MIN_PACKET:
            return RX_TRUNCATED, -1
        if not buf[0] & VXLAN_FLAG_I:
            return RX_BAD_FLAGS, -1
        vlan = self._vni_vlan.get((buf[4] << 16) | (buf[5] << 8) | buf[6], -1)
        if vlan < 0:
            return RX_UNKNOWN_VNI, -1
        if buf[20:22] in _TPIDS and vlan not in self._mirror:
            return RX_INNER_TAG, vlan
        return "", vlan

    def _rx_frame(self, mv: memoryview, n: int, vlan: int) -> tuple[bytes, bytes]:
        """The frame (and virtio-net header) the switch receives for an accepted datagram:
        the inner frame with the VLAN's tag pushed (none for VLAN 0)."""
        tag = self._push.get(vlan)
        if vlan in self._mirror:  # a mirror copy: as sent (tags and all), nothing learned
            assert tag is not None
            return b"".join((mv[VXLAN_HLEN:VXLAN_HLEN + 12], tag, mv[VXLAN_HLEN + 12:n])), b""
        inner_mtu = self._max_inner - 14
        if tag is None:
            return receive_offloads(mv[VXLAN_HLEN:n].tobytes(), 14, inner_mtu)
        return receive_offloads(b"".join(
            (mv[VXLAN_HLEN:VXLAN_HLEN + 12], tag, mv[VXLAN_HLEN + 12:n])), 18, inner_mtu)

    def plan_rx(self, source: str, payload: bytes) -> RxPlan:
        """What receiving ``payload`` (VXLAN header + inner frame) from ``source`` would do,
        by the receive path's own checks; nothing is learned or counted."""
        vni = int.from_bytes(payload[4:7]) if len(payload) >= VXLAN_HLEN else None
        if source not in self.vteps:
            return RxPlan(source, vni, -1, RX_UNKNOWN_VTEP)
        reason, vlan = self._rx_check(payload, len(payload))
        if reason:
            return RxPlan(source, vni, vlan, reason)
        data, _vnet = self._rx_frame(memoryview(payload), len(payload), vlan)
        learns = self._learning and not payload[14] & 1 and vlan not in self._mirror
        return RxPlan(source, vni, vlan, "", data, learns)

    # -- send ------------------------------------------------------------------

    def send_batch(self, frames: Sequence[Frame]) -> int:
        """Encapsulate and send each frame to its VTEP(s); return how many were taken.

        A frame dropped here (no VNI for its VLAN, a second VLAN tag, too big,
        offload error, every send refused) is counted by reason and not taken.
        """
        sock = self._tx
        if sock is None:
            self.counters.tx_errors += len(frames)
            return 0
        now = self.clock()
        taken = 0
        for f in frames:
            if self._send_one(sock, f, now):
                taken += 1
        return taken

    def _tx_untag(self, data: bytes, vnet: bytes) -> tuple[int, bytes, bytes, str]:
        """A frame from the switch: ``(VLAN, frame without its tag, vnet header, reason)``,
        reason ``""`` when it can be sent (its VLAN has a VNI, no second tag)."""
        if data[12:14] == b"\x81\x00" and len(data) >= 18:
            vlan = ((data[14] << 8) | data[15]) & 0x0FFF
            data = data[:12] + data[16:]
            if vnet:
                vnet = vnet_shift(vnet, -4)
        else:
            vlan = 0
        if vlan not in self._vx_hdr:
            return vlan, data, vnet, TX_UNMAPPED_VLAN
        if data[12:14] in _TPIDS and vlan not in self._mirror:
            return vlan, data, vnet, TX_INNER_TAG
        return vlan, data, vnet, ""

    def _targets(self, vlan: int, dst: bytes, lookup: Callable[[int, bytes, float], str | None],
                 now: float) -> tuple[tuple[str, ...], str]:
        """The VTEPs a frame of ``vlan`` to ``dst`` goes to, and how they were chosen."""
        if vlan in self._mirror:  # a mirror copy goes to the VLAN's receivers, always
            return self._flood[vlan], "mirror"
        if not dst[0] & 1:
            vtep = lookup(vlan, dst, now)
            if vtep is not None:
                e = self.table.entries.get((vlan, dst))
                return (vtep,), "static" if e is not None and e.static else "learned"
        return self._flood[vlan], "flood"

    def plan_tx(self, data: bytes, vnet: bytes = b"") -> TxPlan:
        """What sending ``data`` (as the switch hands it to this port) would do, by the send
        path's own steps: VNI, target VTEPs (the table looked up without aging anything),
        the datagrams and the underlay MTU check. Nothing is sent or counted."""
        base = TxPlan(self.local_ip, self.udp_port, 0, None, "",
                      underlay_mtu=self.config.underlay_mtu)
        if len(data) < 14:
            return replace(base, reason=TX_MALFORMED)
        vlan, data, vnet, reason = self._tx_untag(data, vnet)
        base = replace(base, vlan=vlan, vni=self._vlan_vni.get(vlan))
        if reason:
            return replace(base, reason=reason)
        if vnet and not is_plain(vnet):
            try:
                pieces = finalize(Frame(data, vnet))
            except OffloadError:
                return replace(base, reason=TX_OFFLOAD)
        else:
            pieces = [data]
        targets, via = self._targets(vlan, data[:6], self.table.peek, self.clock())
        vx = self._vx_hdr[vlan]
        return replace(base, reason="" if targets else TX_NO_VTEP, targets=targets, via=via,
                       sport=flow_entropy(data), packets=tuple(vx + p for p in pieces),
                       oversize=tuple(i for i, p in enumerate(pieces)
                                      if len(p) > self._max_inner))

    def _send_one(self, sock: socket.socket, f: Frame, now: float) -> bool:
        data = f.data
        vnet = f.vnet
        drops = self.tx_drops
        if len(data) < 14:
            _bump(drops, TX_MALFORMED)
            self.counters.tx_errors += 1
            return False
        vlan, data, vnet, reason = self._tx_untag(data, vnet)
        vx = self._vx_hdr.get(vlan)
        if reason:
            _bump(drops, reason)
            self.counters.tx_errors += 1
            return False
        assert vx is not None
        if vnet and not is_plain(vnet):
            try:
                pieces = finalize(Frame(data, vnet))
            except OffloadError:
                _bump(drops, TX_OFFLOAD)
                self.counters.tx_errors += 1
                return False
        else:
            pieces = [data]
        targets, _via = self._targets(vlan, data[:6], self.table.lookup, now)
        if not targets:
            _bump(drops, TX_NO_VTEP)
            return True
        sport = flow_entropy(data)
        dport = self.udp_port
        max_inner = self._max_inner
        vteps = self.vteps
        cnt = self.counters
        sent_any = False
        for piece in pieces:
            size = len(piece)
            if size > max_inner:
                _bump(drops, TX_MTU)
                cnt.tx_errors += 1
                continue
            packet = b"".join((_UDP.pack(sport, dport, 16 + size, 0), vx, piece))
            for vtep in targets:
                vt = vteps.get(vtep)
                try:
                    sock.sendto(packet, (vtep, 0))
                except OSError as exc:
                    self.last_tx_errno = exc.errno
                    _bump(drops, TX_SEND_ERROR)
                    cnt.tx_errors += 1
                    if vt is not None:
                        vt.tx_errors += 1
                    continue
                sent_any = True
                cnt.tx_frames += 1
                cnt.tx_bytes += size
                if vt is not None:
                    vt.tx_frames += 1
                    vt.tx_bytes += size
        return sent_any

    # -- state -----------------------------------------------------------------

    def link_up(self) -> bool:
        """Up while the sockets are open."""
        return self._rx is not None

    def info(self) -> PortInfo:
        """The VTEP address and port; ``mtu`` is the largest IP packet a VM may send."""
        cfg = self.config
        return PortInfo(
            kind="vxlan",
            interface=f"{self.local_ip}:{self.udp_port}",
            mtu=cfg.inner_mtu,
            extra={"underlay_mtu": str(cfg.underlay_mtu),
                   "vnis": ",".join(f"{v}:{n}" for v, n in sorted(cfg.vnis.items()))},
        )

    # -- views -----------------------------------------------------------------

    def explain_tx(self, vlan: int, frame: bytes) -> str | None:
        """Which VNI and VTEP(s) ``frame`` of ``vlan`` would go to (for ``vspan trace``)."""
        vni = self._vlan_vni.get(vlan)
        if vni is None:
            return f"VLAN {vlan} has no VNI here: not sent"
        dst = frame[:6]
        vtep = None if dst[0] & 1 else self.table.peek(vlan, dst, self.clock())
        if vtep is not None:
            return f"VXLAN VNI {vni} to VTEP {vtep} (where {mac_str(dst)} was learned)"
        flood = self._flood.get(vlan, ())
        if vlan in self._mirror:
            return (f"VXLAN VNI {vni} (mirror copies of VLAN {vlan}) to "
                    f"{', '.join(flood) or 'nobody'}")
        if not flood:
            return f"VXLAN VNI {vni}: flood list of VLAN {vlan} is empty, sent nowhere"
        return f"VXLAN VNI {vni}, head-end replication to {', '.join(flood)}"

    def remote_vtep(self, vlan: int, mac: bytes) -> str | None:
        """The VTEP ``mac`` on ``vlan`` is known behind (learned or static), if any."""
        return self.table.peek(vlan, mac, self.clock())

    def vtep_rows(self) -> list[dict[str, object]]:
        """One row per accepted VTEP: its roles, MACs behind it and counters."""
        cfg = self.config
        now = self.clock()
        macs = self.table.per_vtep(now)
        static = {s.vtep for s in cfg.static}
        rows: list[dict[str, object]] = []
        for ip, vc in self.vteps.items():
            flood = sorted(vlan for vlan, ips in cfg.flood.items() if ip in ips)
            mirror = [v for v in flood if v in self._mirror]
            flood = [v for v in flood if v not in self._mirror]
            roles = ([f"flood({','.join(str(v) for v in flood)})"] if flood else []) + (
                [f"mirror({','.join(str(v) for v in mirror)})"] if mirror else []) + (
                ["static"] if ip in static else []) + (["peer"] if ip in cfg.peers else [])
            rows.append({"port": self.name, "vtep": ip, "roles": roles,
                         "flood_vlans": flood, "macs": macs.get(ip, 0), **vc.as_dict()})
        return rows

    def overlay_stats(self) -> dict[str, object]:
        """Port-wide overlay facts: drops by reason, table size, the VM MTU."""
        cfg = self.config
        return {
            "port": self.name,
            "local": f"{self.local_ip}:{self.udp_port}",
            "vnis": {str(v): n for v, n in sorted(cfg.vnis.items())},
            "underlay_mtu": cfg.underlay_mtu,
            "vm_mtu": cfg.inner_mtu,
            "learning": cfg.learning,
            "macs": len(self.table),
            "learned": self.table.learned,
            "moves": self.table.moves,
            "table_full": self.table.full,
            "rx_drops": dict(sorted(self.rx_drops.items())),
            "tx_drops": dict(sorted(self.tx_drops.items())),
            "last_unknown_vtep": self.last_unknown_vtep,
            "counters": self.counters.as_dict(),
        }
