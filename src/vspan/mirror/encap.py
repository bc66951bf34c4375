"""Remote mirror encapsulations: ERSPAN Type II/III and GRE-TEB over raw IP, and RSPAN tags.

* :class:`ErspanEncapsulator` turns a mirrored frame into the GRE payload
  (GRE header + ERSPAN header + frame) of one session, keeping the session's
  GRE sequence numbers. It is pure: no sockets, the clock is injectable.
* :class:`RawGreSender` sends those payloads to the session's remote IP over a
  raw ``IPPROTO_GRE`` socket (no gretap/erspan netdev needed): the kernel adds
  the IP header with the configured source address, TTL and DSCP, with the
  don't-fragment bit set; frames that would not fit the path MTU are cut
  (ERSPAN ``T`` bit) instead of being fragmented, and counted.
* :func:`rspan_strip` untags RSPAN copies (the datapath tags them:
  :func:`vspan.datapath.vlanops.rspan_copy`).

Loop guard: :meth:`RawGreSender.is_own_output` recognises the session's own
encapsulated packets (GRE from the local address to the remote one) so a
source port that carries them is never mirrored back into the session, and
:func:`route_interface` names the interface the encapsulated traffic leaves
by, so the datapath can keep that port out of the session's sources.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from vspan.datapath.vlanops import frame_vlan as frame_vlan
from vspan.datapath.vlanops import rspan_copy as rspan_copy
from vspan.mirror.l2path import L2Header, NextHop, PathState, resolve, route_v4
from vspan.packet.errors import PacketError
from vspan.packet.erspan import GRA_100NS, GRA_100US, GRA_IEEE1588, PLATF_SWITCH_PORT_SECONDS
from vspan.packet.gre import (
    GRE_FLAG_K,
    GRE_FLAG_S,
    GRE_PROTO_ERSPAN2,
    GRE_PROTO_ERSPAN3,
    GRE_PROTO_TEB,
    IPPROTO_GRE,
)

# Linux socket options Python 3.11 does not name
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2
IP_MTU = 14
IPV6_MTU_DISCOVER = 23
IPV6_MTU = 24
IPV6_PMTUDISC_DO = 2
IP_RECVERR = 11
IPV6_RECVERR = 25
MSG_ERRQUEUE = 0x2000

_TPIDS = (0x8100, 0x88A8, 0x9100)
_NS_PER_S = 1_000_000_000


class EncapType(enum.StrEnum):
    """What a remote mirror session puts around a frame."""

    GRE = "gre"  # GRE 0x6558, transparent Ethernet bridging (gretap)
    ERSPAN2 = "erspan2"  # GRE 0x88BE + ERSPAN Type II header (version 1)
    ERSPAN3 = "erspan3"  # GRE 0x22EB + ERSPAN Type III header (version 2)


class Granularity(enum.StrEnum):
    """Type III timestamp granularity."""

    US100 = "100us"  # Gra 00: units of 100 microseconds (the default, as Linux sends)
    NS100 = "100ns"  # Gra 01: units of 100 nanoseconds
    NS = "ns"  # Gra 10 (IEEE 1588): nanoseconds within the second


_GRA = {Granularity.US100: GRA_100US, Granularity.NS100: GRA_100NS, Granularity.NS: GRA_IEEE1588}


class MirrorConfigError(ValueError):
    """A remote mirror session is configured with an impossible value."""


@dataclass(frozen=True, slots=True)
class ErspanConfig:
    """One remote (ERSPAN / GRE) mirror session's encapsulation settings.

    ``index`` is the Type II port index (20 bits) and, when the Type III platform
    subheader is on, its port index (16 bits); ``hw_id`` is the Type III hardware
    id (6 bits). ``mtu`` caps the path MTU the kernel reports (``None``: the
    kernel's value). ``gre_key``/``gre_sequence`` apply to plain GRE only (ERSPAN
    always carries a sequence number and no key).
    """

    remote_ip: str
    type: EncapType = EncapType.ERSPAN2
    session_id: int = 0
    index: int = 0
    hw_id: int = 0
    granularity: Granularity = Granularity.US100
    platform_subheader: bool = False
    switch_id: int = 0
    source_ip: str | None = None
    ttl: int = 64
    dscp: int = 0
    mtu: int | None = None
    gre_key: int | None = None
    gre_sequence: bool = True
    link_layer: bool = True  # IPv4: AF_PACKET with a cached header when the next hop is known

    def __post_init__(self) -> None:
        try:
            remote = ipaddress.ip_address(self.remote_ip)
        except ValueError as err:
            raise MirrorConfigError(f"remote_ip: {err}") from None
        if self.source_ip is not None:
            try:
                src = ipaddress.ip_address(self.source_ip)
            except ValueError as err:
                raise MirrorConfigError(f"source_ip: {err}") from None
            if src.version != remote.version:
                raise MirrorConfigError("source_ip and remote_ip must be the same IP version")
        try:
            object.__setattr__(self, "type", EncapType(self.type))
            object.__setattr__(self, "granularity", Granularity(self.granularity))
        except ValueError as err:
            raise MirrorConfigError(str(err)) from None
        limits = {
            "session_id": (self.session_id, 0, 1023),
            "hw_id": (self.hw_id, 0, 63),
            "switch_id": (self.switch_id, 0, 1023),
            "ttl": (self.ttl, 1, 255),
            "dscp": (self.dscp, 0, 63),
        }
        index_max = (1 << 20) - 1
        if self.type is EncapType.ERSPAN3 and self.platform_subheader:
            index_max = 0xFFFF
        limits["index"] = (self.index, 0, index_max)
        if self.mtu is not None:
            limits["mtu"] = (self.mtu, 576 if remote.version == 4 else 1280, 65535)
        if self.gre_key is not None:
            limits["gre_key"] = (self.gre_key, 0, 0xFFFFFFFF)
        for name, (value, lo, hi) in limits.items():
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise MirrorConfigError(f"{name}: {value!r} is not in {lo}..{hi}")
        if self.gre_key is not None and self.type is not EncapType.GRE:
            raise MirrorConfigError("gre_key: only plain GRE sessions carry a key")

    @property
    def ip_version(self) -> int:
        """4 or 6."""
        return ipaddress.ip_address(self.remote_ip).version


class ErspanEncapsulator:
    """Builds the GRE payload (GRE + ERSPAN header + frame) of one session.

    Not thread-safe: one encapsulator per session, used by one datapath thread.
    """

    __slots__ = ("_clock", "_gra", "_hdr", "_seq", "_static", "_t_off", "config", "overhead")

    def __init__(self, config: ErspanConfig, clock: Callable[[], int] = time.time_ns,
                 start_seq: int = 0) -> None:
        self.config = config
        self._clock = clock
        self._seq = start_seq & 0xFFFFFFFF
        self._gra = _GRA[config.granularity]
        t = config.type
        if t is EncapType.GRE:
            flags = (GRE_FLAG_K if config.gre_key is not None else 0) | (
                GRE_FLAG_S if config.gre_sequence else 0)
            self._static = struct.pack("!HH", flags, GRE_PROTO_TEB)
            if config.gre_key is not None:
                self._static += struct.pack("!I", config.gre_key)
            self._hdr = struct.Struct("!I") if config.gre_sequence else None
            self.overhead = len(self._static) + (4 if config.gre_sequence else 0)
            self._t_off = -1
        elif t is EncapType.ERSPAN2:
            self._static = b""
            self._hdr = struct.Struct("!HHIHHI")
            self.overhead = 16
            self._t_off = 10
        else:
            self._static = b""
            self._hdr = struct.Struct("!HHIHHIHH")
            self.overhead = 20 + (8 if config.platform_subheader else 0)
            self._t_off = 10

    @property
    def next_seq(self) -> int:
        """The GRE sequence number the next packet will carry."""
        return self._seq

    def encapsulate(self, frame: bytes, *, egress: bool = False, truncated: bool = False,
                    ts_ns: int | None = None, vlan: int | None = None, cos: int = 0,
                    max_frame: int | None = None) -> bytes:
        """The GRE payload carrying ``frame``; consumes one sequence number.

        ``egress`` sets the Type III direction bit. ``truncated`` says the frame
        was already cut (session truncation length); ``max_frame`` cuts it here.
        Either sets the ERSPAN ``T`` bit. VLAN/COS come from the frame's outer
        tag (``En`` = 3, tag kept in the frame); for an untagged frame that
        belongs to an access VLAN, pass ``vlan``/``cos`` (``En`` = 0). A
        priority tag (VID 0) carries the VLAN given in ``vlan`` and its own COS.
        ``ts_ns`` is the wall-clock time the frame was seen (default: now).
        """
        if max_frame is not None and len(frame) > max_frame:
            frame = frame[:max(max_frame, 0)]
            truncated = True
        cfg = self.config
        seq = self._seq
        self._seq = (seq + 1) & 0xFFFFFFFF
        hdr = self._hdr
        if cfg.type is EncapType.GRE:
            if hdr is None:
                return self._static + frame
            return self._static + hdr.pack(seq) + frame
        assert hdr is not None
        tag = frame_vlan(frame)
        if tag is not None:
            vid, pcp = tag
            en = 3
            if vid == 0 and vlan is not None:  # priority-tagged: the VLAN it was switched in
                vid = vlan
        else:
            vid = vlan if vlan is not None else 0
            pcp = cos
            en = 0
        if not 0 <= vid <= 0xFFF or not 0 <= pcp <= 7:
            raise PacketError("erspan", f"vlan {vid} / cos {pcp} out of range")
        if cfg.type is EncapType.ERSPAN2:
            return hdr.pack(
                GRE_FLAG_S, GRE_PROTO_ERSPAN2, seq,
                0x1000 | vid,
                (pcp << 13) | (en << 11) | (truncated << 10) | cfg.session_id,
                cfg.index,
            ) + frame
        if ts_ns is None:
            ts_ns = self._clock()
        gra = self._gra
        if gra == GRA_100US:
            ts = (ts_ns // 100_000) & 0xFFFFFFFF
        elif gra == GRA_100NS:
            ts = (ts_ns // 100) & 0xFFFFFFFF
        else:
            ts = ts_ns % _NS_PER_S
        plat = cfg.platform_subheader
        out = hdr.pack(
            GRE_FLAG_S, GRE_PROTO_ERSPAN3, seq,
            0x2000 | vid,
            (pcp << 13) | (truncated << 10) | cfg.session_id,  # BSO 0: good frame
            ts,
            0,  # SGT
            0x8000 | (cfg.hw_id << 4) | (egress << 3) | (gra << 1) | plat,  # P=1, FT=0 Ethernet
        )
        if plat:
            out += struct.pack(
                "!II",
                (PLATF_SWITCH_PORT_SECONDS << 26) | (cfg.switch_id << 16) | (cfg.index & 0xFFFF),
                (ts_ns // _NS_PER_S) & 0xFFFFFFFF,
            )
        return out + frame

    def cut(self, payload: bytes, max_payload: int) -> bytes:
        """An already built payload cut to ``max_payload`` bytes, with the ``T`` bit set."""
        if len(payload) <= max_payload:
            return payload
        out = bytearray(payload[:max(max_payload, self.overhead)])
        if self._t_off >= 0:
            out[self._t_off] |= 0x04
        return bytes(out)


@dataclass(slots=True)
class SenderCounters:
    """What a :class:`RawGreSender` did."""

    sent: int = 0
    sent_bytes: int = 0
    truncated: int = 0  # frames cut to fit the path MTU
    errors: int = 0  # sends the kernel refused (unreachable, buffer full, ...)
    loop_skipped: int = 0  # our own encapsulated output offered for mirroring
    link_layer: int = 0  # of ``sent``: written as Ethernet frames on the AF_PACKET socket
    unresolved: int = 0  # of ``sent``: by the raw socket while the next hop was unresolved
    last_error: str = ""
    errors_by_errno: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int | str]:
        """Counters as a plain mapping (for JSON and metrics)."""
        return {
            "sent": self.sent,
            "sent_bytes": self.sent_bytes,
            "truncated": self.truncated,
            "errors": self.errors,
            "loop_skipped": self.loop_skipped,
            "link_layer": self.link_layer,
            "unresolved": self.unresolved,
            "last_error": self.last_error,
        }


class RawGreSender:
    """Sends one session's encapsulated mirror copies over a raw ``IPPROTO_GRE`` socket.

    The socket is non-blocking: when the kernel cannot take a packet (send buffer
    full, destination unreachable) the copy is dropped and counted in
    ``counters.errors``; the datapath never waits for a mirror destination.
    """

    def __init__(self, config: ErspanConfig, *, clock: Callable[[], int] = time.time_ns,
                 encapsulator: ErspanEncapsulator | None = None) -> None:
        self.config = config
        self.encap = encapsulator or ErspanEncapsulator(config, clock)
        self.counters = SenderCounters()
        self._sock: socket.socket | None = None
        self._family = socket.AF_INET if config.ip_version == 4 else socket.AF_INET6
        self._ip_hlen = 20 if config.ip_version == 4 else 40
        self._remote = ipaddress.ip_address(config.remote_ip).packed
        self._local = b""
        self._path_mtu = config.mtu or 1500
        self._max_payload = self._path_mtu - self._ip_hlen
        # the link-layer path (vspan.mirror.l2path): AF_PACKET socket + cached header
        self._l2: L2Header | None = None
        self._l2_sock: socket.socket | None = None
        self._l2_state = PathState.UNSUPPORTED
        self._l2_checked = float("-inf")
        self._ip_id = 0  # the IPv4 identification of the next link-layer copy
        self.refresh_interval = 1.0  # seconds between re-reads of the route/neighbour tables
        self.unresolved_refresh_interval = 0.1  # the same while the next hop is unresolved

    # ---- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        """Create, bind and connect the raw socket; learn the path MTU."""
        if self._sock is not None:
            return
        cfg = self.config
        sock = socket.socket(self._family, socket.SOCK_RAW, IPPROTO_GRE)
        try:
            if self._family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, cfg.ttl)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, cfg.dscp << 2)
                sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, cfg.ttl)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, cfg.dscp << 2)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            if cfg.source_ip is not None:
                sock.bind((cfg.source_ip, 0))
            sock.connect((cfg.remote_ip, 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._local = ipaddress.ip_address(sock.getsockname()[0]).packed
        self.refresh_mtu()
        self.refresh_path()

    def close(self) -> None:
        """Close the sockets (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._drop_l2(PathState.UNSUPPORTED)

    def __enter__(self) -> RawGreSender:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        """The raw socket's descriptor (-1 when closed)."""
        return -1 if self._sock is None else self._sock.fileno()

    # ---- path MTU --------------------------------------------------------------------

    @property
    def path_mtu(self) -> int:
        """The MTU the encapsulated IP packets are kept within."""
        return self._path_mtu

    @property
    def max_frame(self) -> int:
        """The longest mirrored frame sent whole."""
        return self._max_payload - self.encap.overhead

    def refresh_mtu(self) -> int:
        """Ask the kernel for the path MTU to the remote (capped by ``config.mtu``)."""
        mtu = 1500
        if self._sock is not None:
            try:
                if self._family == socket.AF_INET:
                    mtu = self._sock.getsockopt(socket.IPPROTO_IP, IP_MTU)
                else:
                    mtu = self._sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU)
            except OSError:
                pass
        if self.config.mtu is not None:
            mtu = min(mtu, self.config.mtu)
        self._path_mtu = mtu
        self._max_payload = mtu - self._ip_hlen
        return mtu

    # ---- the link-layer path ---------------------------------------------------------

    @property
    def path_state(self) -> PathState:
        """Whether copies leave by the AF_PACKET socket (``resolved``) or why not."""
        return self._l2_state

    @property
    def next_hop(self) -> NextHop | None:
        """The next hop the link-layer copies are addressed to (``None``: raw socket)."""
        return self._l2.hop if self._l2 is not None else None

    def _drop_l2(self, state: PathState) -> None:
        if self._l2_sock is not None:
            self._l2_sock.close()
            self._l2_sock = None
        self._l2 = None
        self._l2_state = state

    def refresh_path(self) -> PathState:
        """Re-read the routing and neighbour tables: send by AF_PACKET with a cached header
        when they give the next hop, else by the raw socket (the kernel resolves)."""
        self._l2_checked = time.monotonic()
        self.take_reported_losses()
        cfg = self.config
        if self._sock is None or self._family != socket.AF_INET or not cfg.link_layer:
            self._drop_l2(PathState.UNSUPPORTED)
            return self._l2_state
        hop = resolve(cfg.remote_ip)
        if not isinstance(hop, NextHop):
            self._drop_l2(hop)
            return hop
        if self._l2 is not None and self._l2.hop == hop:
            return self._l2_state
        if self._l2 is None or self._l2.hop.ifindex != hop.ifindex or self._l2_sock is None:
            self._drop_l2(PathState.UNSUPPORTED)
            try:
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                sock.bind((hop.ifname, 0))
                sock.setblocking(False)
            except OSError:
                return self._l2_state
            self._l2_sock = sock
        self._l2 = L2Header(hop, local=self._local, remote=self._remote, ttl=cfg.ttl,
                            tos=cfg.dscp << 2)
        self._l2_state = PathState.RESOLVED
        return self._l2_state

    def take_reported_losses(self) -> int:
        """Count the copies the kernel took and then reported lost on the way
        (``IP_RECVERR``: the next hop never answered — ``EHOSTUNREACH`` —, a network or
        host unreachable, an expired TTL) in ``errors``; return how many. A protocol or
        port unreachable is not counted: the copy reached the collector's host, which has
        no GRE listener. Done at every look at the tables."""
        sock = self._sock
        n = 0
        for _ in range(4096):
            if sock is None:
                break
            try:
                _, anc, _, _ = sock.recvmsg(1, 256, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
            except OSError:  # nothing queued (EAGAIN), or the socket is gone
                break
            for level, _kind, data in anc:
                if level not in (socket.IPPROTO_IP, socket.IPPROTO_IPV6) or len(data) < 8:
                    continue
                # struct sock_extended_err: ee_errno, ee_origin, ee_type, ee_code, ...
                code = int.from_bytes(data[:4], sys.byteorder)
                icmp_type, icmp_code = data[5], data[6]
                reached = (icmp_type == 3 and icmp_code in (2, 3)) or (
                    icmp_type == 1 and icmp_code == 4)  # v4 proto/port, v6 port unreachable
                if not reached:
                    self._error(code)
                    n += 1
        return n

    def _maybe_refresh(self) -> None:
        every = self.refresh_interval
        if self._l2_state is PathState.UNRESOLVED:
            # the raw socket's first copy makes the kernel resolve the neighbour within
            # milliseconds: look again soon (a look costs ~0.1-0.2 ms)
            every = min(every, self.unresolved_refresh_interval)
        if time.monotonic() - self._l2_checked >= every:
            self.refresh_path()

    # ---- loop guard ------------------------------------------------------------------

    @property
    def local_address(self) -> str | None:
        """The source address the kernel uses for this session (after :meth:`open`)."""
        return str(ipaddress.ip_address(self._local)) if self._local else None

    def is_own_output(self, frame: bytes) -> bool:
        """Whether ``frame`` is one of this session's encapsulated packets (never mirror it).

        True for an Ethernet frame (any VLAN tags) carrying IPv4/IPv6 GRE to the
        session's remote address (and from its local address, once known).
        """
        n = len(frame)
        off = 12
        if n < 14:
            return False
        etype = (frame[12] << 8) | frame[13]
        while etype in _TPIDS and n >= off + 6:
            off += 4
            etype = (frame[off] << 8) | frame[off + 1]
        off += 2
        if etype == 0x0800 and n >= off + 20:
            if frame[off + 9] != IPPROTO_GRE or frame[off + 16:off + 20] != self._remote:
                return False
            return not self._local or frame[off + 12:off + 16] == self._local
        if etype == 0x86DD and n >= off + 40:
            if frame[off + 6] != IPPROTO_GRE or frame[off + 24:off + 40] != self._remote:
                return False
            return not self._local or frame[off + 8:off + 24] == self._local
        return False

    # ---- sending ---------------------------------------------------------------------

    def send(self, frame: bytes, *, egress: bool = False, truncated: bool = False,
             ts_ns: int | None = None, vlan: int | None = None, cos: int = 0) -> bool:
        """Encapsulate and send one mirrored frame; ``True`` when the kernel took it.

        See :meth:`ErspanEncapsulator.encapsulate` for the arguments. Our own
        encapsulated output is skipped (loop guard), frames too long for the
        path MTU are cut, kernel refusals are counted, never raised.
        """
        c = self.counters
        if self._local and self.is_own_output(frame):
            c.loop_skipped += 1
            return False
        sock = self._sock
        if sock is None:
            self._error(errno.ENOTCONN)
            return False
        max_frame = self._max_payload - self.encap.overhead
        if len(frame) > max_frame:
            c.truncated += 1
        payload = self.encap.encapsulate(frame, egress=egress, truncated=truncated, ts_ns=ts_ns,
                                         vlan=vlan, cos=cos, max_frame=max_frame)
        self._maybe_refresh()
        if self._l2 is not None and self._send_l2(payload):
            return True
        if self._l2_state is PathState.UNRESOLVED:
            c.unresolved += 1
        for attempt in (0, 1):
            try:
                sent = sock.send(payload)
            except OSError as err:
                if err.errno == errno.EMSGSIZE and attempt == 0:
                    # the path MTU shrank (ICMP fragmentation needed): cut and retry once
                    self.refresh_mtu()
                    if len(payload) > self._max_payload:
                        payload = self.encap.cut(payload, self._max_payload)
                        c.truncated += 1
                    continue
                self._error(err.errno or 0)
                return False
            c.sent += 1
            c.sent_bytes += sent
            return True
        return False

    def _send_l2(self, payload: bytes) -> bool:
        """Send ``payload`` as an Ethernet frame on the AF_PACKET socket; ``False`` when
        the frame is too big for the link (the raw socket's path-MTU retry takes it) —
        other refusals are counted and also return ``True`` (the copy is gone)."""
        l2, sock = self._l2, self._l2_sock
        assert l2 is not None and sock is not None
        data = l2.frame(payload, self._ip_id)
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        c = self.counters
        try:
            sock.send(data)
        except OSError as err:
            if err.errno == errno.EMSGSIZE:
                return False
            self._error(err.errno or 0)
            self._l2_checked = float("-inf")  # the link went away? look again next time
            return True
        c.sent += 1
        c.link_layer += 1
        c.sent_bytes += len(payload)
        return True

    # ---- the native replay's side (vspan.datapath.remote.NativeSender) ----------------

    def native_params(self) -> tuple[object, ...] | None:
        """What the native replay needs to encapsulate and send this session's copies
        itself (``None``: keep them here — no socket, or an injected clock)."""
        enc = self.encap
        if self._sock is None or enc._clock is not time.time_ns:
            return None
        self._maybe_refresh()
        cfg = self.config
        kind = {EncapType.GRE: 0, EncapType.ERSPAN2: 1, EncapType.ERSPAN3: 2}[cfg.type]
        l2 = (None if self._l2 is None or self._l2_sock is None else
              (self._l2_sock.fileno(), self._l2.template, self._ip_id))
        return (kind, cfg.session_id, cfg.hw_id, cfg.index, enc._gra,
                int(cfg.platform_subheader), cfg.switch_id,
                -1 if cfg.gre_key is None else cfg.gre_key, cfg.gre_sequence, enc._seq,
                self.max_frame, self._sock.fileno(), self._local, self._remote, l2)

    def native_update(self, seq: int, sent: int, sent_bytes: int, truncated: int,
                      loop_skipped: int, errnos: list[int], ip_id: int = -1) -> None:
        """The native side sent for this session: its next sequence number and counts
        (``ip_id`` >= 0: it sent by the link-layer path, and that is the next IPv4 id)."""
        self.encap._seq = seq & 0xFFFFFFFF
        c = self.counters
        if ip_id >= 0 and self._l2 is not None:
            self._ip_id = ip_id & 0xFFFF
            c.link_layer += sent
        elif self._l2_state is PathState.UNRESOLVED:
            c.unresolved += sent
        if errnos and self._l2 is not None:
            self._l2_checked = float("-inf")  # the link went away? look again next batch
        c.sent += sent
        c.sent_bytes += sent_bytes
        c.truncated += truncated
        c.loop_skipped += loop_skipped
        for code in errnos:
            self._error(code)

    def resend(self, payload: bytes) -> bool:
        """A payload the kernel refused with ``EMSGSIZE``: what :meth:`send` does then (learn
        the path MTU, cut, one more try)."""
        c = self.counters
        sock = self._sock
        if sock is None:
            self._error(errno.ENOTCONN)
            return False
        self.refresh_mtu()
        if len(payload) > self._max_payload:
            payload = self.encap.cut(payload, self._max_payload)
            c.truncated += 1
        try:
            sent = sock.send(payload)
        except OSError as err:
            self._error(err.errno or 0)
            return False
        c.sent += 1
        c.sent_bytes += sent
        return True

    def send_batch(self, frames: Iterable[bytes], *, egress: bool = False) -> int:
        """Send several frames of one direction; return how many the kernel took."""
        n = 0
        for f in frames:
            n += self.send(f, egress=egress)
        return n

    def _error(self, code: int) -> None:
        c = self.counters
        c.errors += 1
        name = errno.errorcode.get(code, str(code))
        c.errors_by_errno[name] = c.errors_by_errno.get(name, 0) + 1
        c.last_error = f"{name}: {os.strerror(code)}" if code else name


# ---- which interface carries the encapsulated traffic ------------------------------------


def _route_v4(dest: ipaddress.IPv4Address, text: str) -> str | None:
    hop = route_v4(int(dest), text)
    return hop[0] if hop else None


def _route_v6(dest: ipaddress.IPv6Address, text: str) -> str | None:
    best: tuple[int, int, str] | None = None
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10:
            continue
        try:
            net = ipaddress.IPv6Network((int(f[0], 16), int(f[1], 16)), strict=False)
            metric = int(f[5], 16)
        except ValueError:
            continue
        if dest not in net or (f[9] == "lo" and net.prefixlen == 0):
            continue
        cand = (net.prefixlen, -metric, f[9])
        if best is None or cand[:2] > best[:2]:
            best = cand
    return best[2] if best else None


def route_interface(remote_ip: str) -> str | None:
    """The interface the main routing table sends ``remote_ip`` through (``None``: unknown).

    Read from ``/proc/net/route`` / ``/proc/net/ipv6_route`` (policy routing is
    not considered). The datapath keeps a port on this interface out of the
    session's sources (loop guard).
    """
    addr = ipaddress.ip_address(remote_ip)
    path = "/proc/net/route" if addr.version == 4 else "/proc/net/ipv6_route"
    try:
        with open(path, encoding="ascii") as fh:
            text = fh.read()
    except OSError:
        return None
    if isinstance(addr, ipaddress.IPv4Address):
        return _route_v4(addr, text)
    return _route_v6(addr, text)


# ---- RSPAN ------------------------------------------------------------------------------


def rspan_strip(frame: bytes, vlan: int) -> bytes | None:
    """The mirrored frame inside an RSPAN copy on VLAN ``vlan`` (``None`` if not one).

    Removes the outer tag; a copy made with ``keep_original_tag`` gets its
    original tag back (the tag of its VLAN, if it was untagged in a VLAN),
    one made without it comes out untagged.
    """
    tag = frame_vlan(frame)
    if tag is None or tag[0] != vlan:
        return None
    return frame[:12] + frame[16:]
