"""Conversations of a capture, classified like Zeek's conn.log, with capture copies apart.

:class:`FlowTable` takes packets in file order (any pcap/pcapng: ``vspan
capture`` and ``vspan collect`` output, tcpdump, Wireshark; Ethernet with
any VLAN tag stack, raw IP, Linux cooked, loopback) and groups them into
flows: TCP and UDP by addresses and ports, ICMP by addresses and message
type (a request and its reply are one flow, as in Zeek), other IP protocols
by addresses. Each flow has packets, bytes and frames each way, start and
duration, Zeek's ``conn_state`` and ``history`` (TCP through
:mod:`vspan.analysis.tcpstate`; UDP ``SF``/``S0``/``SHR``/``OTH`` with ``D``/``d``;
ICMP and others ``OTH``), and what went wrong: unidirectional or
responder-only flows (the asymmetric-path symptom), incomplete handshakes,
resets, retransmissions, sequence numbers outside the receiver's window,
bytes acknowledged but never captured.

**Copies are not retransmissions.** A packet whose comparison key (the IP
packet with TTL, checksums, MACs, VLAN tags and padding ignored) equals one
seen at most ``window`` earlier, or that shares its ``epb_packetid``, is a
capture duplicate: counted in ``*_frames`` and ``duplicates`` but not in
``*_pkts``, not fed to the state machine, never a retransmission. A real
retransmission has another IP ID or comes later.

**Who is the originator.** The sender of the first packet, except: a flow
whose first packet is a SYN-ACK, or an ICMP reply, is turned around (Zeek's
``^``); a flow seen from the middle (no SYN) or a UDP flow is turned around
when its first packet comes from a likely server port to a port that is not
(Zeek's heuristic; here: ports below 1024 and a list of well-known higher
ones). Zeek turns SYN-ACK-first flows around only for server-like ports;
doing it always makes RSTRH and SHR visible for any port.

A flow ends at TCP port reuse (a new SYN after the connection closed or was
reset) and after an idle time (TCP 5 minutes, others 1 minute, as Zeek).
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vspan.analysis.dedup import DEFAULT_WINDOW_NS, CopyIndex
from vspan.analysis.normalize import IGNORABLE, Normalizer, as_ethernet
from vspan.analysis.tcpstate import (
    CLOSED,
    GAP,
    OUT_OF_WINDOW,
    RESET,
    RETRANSMISSION,
    TH_ACK,
    TH_SYN,
    TcpConnection,
    window_scale_option,
)
from vspan.capture.pcapng import LINKTYPE_ETHERNET, CaptureScanner, RawPacket
from vspan.datapath.flowkey import (
    ETH_P_IPV4,
    ETH_P_IPV6,
    FRAG_FIRST,
    FRAG_LATER,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    extract,
)

_S = 1_000_000_000
TCP_TIMEOUT_NS = 300 * _S
OTHER_TIMEOUT_NS = 60 * _S
_FRAG_TIMEOUT_NS = 30 * _S

PROTO_NAMES = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp",
               IPPROTO_ICMPV6: "icmp", 47: "gre", 50: "esp", 51: "ah", 132: "sctp"}

# ICMP request -> reply types (Zeek's ICMP4_counterpart / ICMP6_counterpart)
_ICMP4_PAIRS = {8: 0, 13: 14, 15: 16, 10: 9, 17: 18}
_ICMP6_PAIRS = {128: 129, 133: 134, 135: 136, 130: 131}
_ICMP4_REPLY = {v: k for k, v in _ICMP4_PAIRS.items()}
_ICMP6_REPLY = {v: k for k, v in _ICMP6_PAIRS.items()}

_SERVER_PORTS = frozenset((1080, 1194, 1433, 1521, 1883, 2049, 2375, 2376, 2379, 2380, 3128,
                           3260, 3306, 3389, 4789, 5060, 5061, 5201, 5353, 5432, 5672, 5900,
                           6379, 6443, 6653, 8000, 8008, 8080, 8443, 8472, 8888, 9000, 9090,
                           9092, 9200, 9418, 10250, 11211, 27017))

FLAG_UNIDIRECTIONAL = "unidirectional"
FLAG_RESPONDER_ONLY = "responder-only"
FLAG_INCOMPLETE = "incomplete-handshake"
FLAG_RESET_ORIG = "reset-by-originator"
FLAG_RESET_RESP = "reset-by-responder"
FLAG_RETRANS = "retransmissions"
FLAG_DUPLICATES = "duplicates"
FLAG_OUT_OF_WINDOW = "out-of-window"
FLAG_GAP = "capture-gap"


def likely_server_port(port: int) -> bool:
    """Whether a port looks like a service's (below 1024, or a well-known higher one)."""
    return 0 < port < 1024 or port in _SERVER_PORTS


def _addr_text(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


@dataclass(frozen=True, slots=True)
class FlowOptions:
    """How flows are told apart and copies recognised."""

    window_ns: int = DEFAULT_WINDOW_NS  # copies: at most this long after the first
    ignore: frozenset[str] = frozenset(IGNORABLE)  # fields copies may differ in
    tcp_timeout_ns: int = TCP_TIMEOUT_NS
    other_timeout_ns: int = OTHER_TIMEOUT_NS


class Flow:
    """One conversation. Index 0 of the pairs is the originator, 1 the responder."""

    __slots__ = ("dups", "first_ns", "flipped", "frame_bytes", "frames", "history",
                 "interfaces", "ip_bytes", "last_ns", "missed_bytes", "orig", "out_of_window",
                 "payload", "pkts", "proto", "resp", "retransmissions", "tcp", "uid", "vlans")

    def __init__(self, uid: int, proto: int, orig: tuple[bytes, int], resp: tuple[bytes, int],
                 ts: int, flipped: bool) -> None:
        self.uid = uid
        self.proto = proto
        self.orig = orig
        self.resp = resp
        self.first_ns = ts
        self.last_ns = ts
        self.flipped = flipped
        self.pkts = [0, 0]  # packets each way, capture duplicates left out
        self.ip_bytes = [0, 0]  # their IP lengths
        self.payload = [0, 0]  # UDP/ICMP/other payload bytes (TCP: from sequence numbers)
        self.frames = [0, 0]  # every captured frame, duplicates included (as tshark counts)
        self.frame_bytes = [0, 0]  # their original lengths
        self.dups = [0, 0]
        self.retransmissions = 0
        self.out_of_window = 0
        self.missed_bytes = 0
        self.interfaces: dict[str, list[int]] = {}
        self.vlans: set[int] = set()
        self.tcp = TcpConnection() if proto == IPPROTO_TCP else None
        self.history: list[str] = ["^"] if flipped and self.tcp is None else []
        if flipped and self.tcp is not None:
            self.tcp.flip()

    # ---- results -------------------------------------------------------------------------

    @property
    def proto_name(self) -> str:
        """``tcp``, ``udp``, ``icmp`` or the protocol name/number."""
        return PROTO_NAMES.get(self.proto, str(self.proto))

    @property
    def conn_state(self) -> str:
        """Zeek's ``conn_state``."""
        if self.tcp is not None:
            return self.tcp.conn_state()
        if self.proto == IPPROTO_UDP:
            o, r = self.pkts[0] > 0, self.pkts[1] > 0
            if o:
                return "SF" if r else "S0"
            return "SHR" if r else "OTH"
        return "OTH"

    @property
    def history_text(self) -> str:
        """Zeek's ``history`` letters."""
        return self.tcp.history_text() if self.tcp is not None else "".join(self.history)

    @property
    def bytes(self) -> tuple[int, int]:
        """Payload bytes each way (TCP from sequence numbers, as Zeek)."""
        if self.tcp is not None:
            return self.tcp.bytes()
        return self.payload[0], self.payload[1]

    @property
    def duration_ns(self) -> int:
        """Time from the first to the last packet."""
        return self.last_ns - self.first_ns

    @property
    def flags(self) -> list[str]:
        """What is worth a look in this flow (see the module documentation)."""
        out = []
        o, r = self.pkts
        if (o == 0) != (r == 0):
            out.append(FLAG_UNIDIRECTIONAL)
        if o == 0 and r > 0:
            out.append(FLAG_RESPONDER_ONLY)
        if self.tcp is not None:
            hist = self.tcp.history_text()
            if "S" in hist and not self.tcp.handshake_acked:
                out.append(FLAG_INCOMPLETE)
            if "R" in hist:
                out.append(FLAG_RESET_ORIG)
            if "r" in hist:
                out.append(FLAG_RESET_RESP)
        if self.retransmissions:
            out.append(FLAG_RETRANS)
        if self.dups[0] or self.dups[1]:
            out.append(FLAG_DUPLICATES)
        if self.out_of_window:
            out.append(FLAG_OUT_OF_WINDOW)
        if self.missed_bytes:
            out.append(FLAG_GAP)
        return out

    def as_dict(self) -> dict[str, Any]:
        """One JSON object (Zeek conn.log names where they exist)."""
        ob, rb = self.bytes
        return {
            "ts": self.first_ns / _S, "uid": self.uid, "proto": self.proto_name,
            "ip_proto": self.proto,
            "orig_h": _addr_text(self.orig[0]), "orig_p": self.orig[1],
            "resp_h": _addr_text(self.resp[0]), "resp_p": self.resp[1],
            "duration": self.duration_ns / _S,
            "conn_state": self.conn_state, "history": self.history_text,
            "orig_pkts": self.pkts[0], "resp_pkts": self.pkts[1],
            "orig_bytes": ob, "resp_bytes": rb,
            "orig_ip_bytes": self.ip_bytes[0], "resp_ip_bytes": self.ip_bytes[1],
            "orig_frames": self.frames[0], "resp_frames": self.frames[1],
            "orig_frame_bytes": self.frame_bytes[0], "resp_frame_bytes": self.frame_bytes[1],
            "duplicates": self.dups[0] + self.dups[1],
            "orig_duplicates": self.dups[0], "resp_duplicates": self.dups[1],
            "retransmissions": self.retransmissions, "out_of_window": self.out_of_window,
            "missed_bytes": self.missed_bytes, "flags": self.flags,
            "interfaces": {k: {"orig": v[0], "resp": v[1]}
                           for k, v in sorted(self.interfaces.items())},
            "vlans": sorted(self.vlans),
        }


@dataclass
class FlowStats:
    """Packets that did or did not become part of a flow."""

    frames: int = 0
    in_flows: int = 0
    duplicates: int = 0
    non_ip: int = 0  # ARP, LLDP, ... and link types not understood
    malformed: int = 0
    fragments_unattributed: int = 0  # later fragments whose first one was not seen
    flows: int = 0
    truncated: bool = False
    by_state: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"frames": self.frames, "in_flows": self.in_flows,
                "duplicates": self.duplicates, "non_ip": self.non_ip,
                "malformed": self.malformed,
                "fragments_unattributed": self.fragments_unattributed, "flows": self.flows,
                "truncated": self.truncated, "by_state": dict(sorted(self.by_state.items()))}


FlowKeyT = tuple[int, bytes, int, bytes, int]


class FlowTable:
    """Packets in (file order), flows out."""

    def __init__(self, opts: FlowOptions | None = None) -> None:
        self.opts = opts if opts is not None else FlowOptions()
        self.stats = FlowStats()
        self._norm = Normalizer(self.opts.ignore)
        self._copies = CopyIndex(self.opts.window_ns, self.opts.window_ns, 256 << 20)
        self._active: dict[FlowKeyT, Flow] = {}
        self._done: list[Flow] = []
        self._frags: dict[tuple[bytes, bytes, int, int], FlowKeyT] = {}
        self._frag_ages: deque[tuple[int, tuple[bytes, bytes, int, int]]] = deque()
        self._uid = 0
        self._frontier = 0
        self._min_timeout = min(self.opts.tcp_timeout_ns, self.opts.other_timeout_ns)

    def add(self, ts: int, linktype: int, data: bytes, orig_len: int, point: str,
            packet_id: int | None = None) -> Flow | None:
        """One captured packet; returns its flow (``None``: not part of any)."""
        st = self.stats
        st.frames += 1
        frame = data if linktype == LINKTYPE_ETHERNET else as_ethernet(linktype, data)
        if frame is None:
            st.non_ip += 1
            return None
        k = extract(frame, 0)
        if k is None:
            st.malformed += 1
            return None
        et = k.eth_type
        if et != ETH_P_IPV4 and et != ETH_P_IPV6:
            st.non_ip += 1
            return None
        if ts > self._frontier:
            self._frontier = ts
        l3 = k.l3_off
        proto = k.proto
        src, dst = k.l3_src, k.l3_dst
        if et == ETH_P_IPV4:
            ip_len = (frame[l3 + 2] << 8) | frame[l3 + 3]
        else:
            ip_len = 40 + ((frame[l3 + 4] << 8) | frame[l3 + 5])
        # flow key
        sp, dp = k.sport, k.dport
        reply = False
        if k.frag == FRAG_LATER:
            fkey = self._fragment_flow(frame, k.l3_off, et, src, dst, proto)
            if fkey is None or fkey not in self._active:
                st.fragments_unattributed += 1
                return None
        else:
            if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
                pairs, replies = ((_ICMP4_PAIRS, _ICMP4_REPLY) if proto == IPPROTO_ICMP
                                  else (_ICMP6_PAIRS, _ICMP6_REPLY))
                icmp_type, code = sp, dp
                if icmp_type in pairs:
                    dp = pairs[icmp_type]
                elif icmp_type in replies:
                    dp = replies[icmp_type]
                    reply = True
                else:
                    dp = code
            elif proto != IPPROTO_TCP and proto != IPPROTO_UDP and proto != 132:
                sp = dp = 0
            if src < dst or (src == dst and sp <= dp):
                fkey = (proto, src, sp, dst, dp)
            else:
                fkey = (proto, dst, dp, src, sp)
            if k.frag == FRAG_FIRST and et == ETH_P_IPV4:
                self._remember_fragment(ts, frame, l3, src, dst, proto, fkey)
        # a capture copy? (decided first: a copy never ends or starts a conversation)
        key = self._norm.frame_key(frame, k)
        copies = self._copies
        group, _ = copies.match(key, packet_id, ts)
        if copies.due(self._frontier):
            copies.expire(self._frontier)
        if group is None:
            copies.add(key, packet_id, ts)
        # the flow
        l4 = k.l4_off
        tcp_flags = frame[l4 + 13] if proto == IPPROTO_TCP and l4 else 0
        flow = self._active.get(fkey)
        if flow is not None and group is None and (
                tcp_flags & TH_SYN or ts - flow.last_ns > self._min_timeout) and (
                self._ended(flow, ts, tcp_flags)):
            self._finish(fkey, flow)
            flow = None
        if flow is None:
            flow = self._new_flow(fkey, ts, proto, src, sp, dst, dp, tcp_flags, reply)
        orig = flow.orig
        if k.frag == FRAG_LATER:  # no ports: the direction is in the addresses
            d = 0 if src == orig[0] else 1
        else:
            d = 0 if sp == orig[1] and src == orig[0] else 1
        st.in_flows += 1
        if ts > flow.last_ns:
            flow.last_ns = ts
        flow.frames[d] += 1
        flow.frame_bytes[d] += orig_len
        counts = flow.interfaces.get(point)
        if counts is None:
            counts = flow.interfaces[point] = [0, 0]
        counts[d] += 1
        if k.vlan >= 0:
            flow.vlans.add(k.vlan)
        if group is not None:
            flow.dups[d] += 1
            st.duplicates += 1
            return flow
        flow.pkts[d] += 1
        flow.ip_bytes[d] += ip_len
        tcp = flow.tcp
        if tcp is not None:
            if l4:  # not a later fragment, nor a first one too short for the header
                self._tcp(flow, tcp, d, frame, l3, l4, ip_len, tcp_flags)
        elif proto == IPPROTO_UDP:
            if l4:  # the UDP length covers the whole datagram, even when fragmented
                flow.payload[d] += max(((frame[l4 + 4] << 8) | frame[l4 + 5]) - 8, 0)
            self._udp_history(flow, d)
        elif l4:
            hdr = 8 if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6) else 0
            flow.payload[d] += max(ip_len - (l4 - l3) - hdr, 0)
        return flow

    # ---- helpers -------------------------------------------------------------------------

    def _tcp(self, flow: Flow, tcp: TcpConnection, d: int, frame: bytes, l3: int, l4: int,
             ip_len: int, flags: int) -> None:
        if l4 + 20 > len(frame):
            return
        thl = (frame[l4 + 12] >> 4) * 4
        if thl < 20:
            self.stats.malformed += 1
            return
        payload = max(ip_len - (l4 - l3) - thl, 0)
        seq = int.from_bytes(frame[l4 + 4:l4 + 8], "big")
        ack = int.from_bytes(frame[l4 + 8:l4 + 12], "big")
        window = (frame[l4 + 14] << 8) | frame[l4 + 15]
        wscale = window_scale_option(frame[l4 + 20:l4 + thl]) if flags & TH_SYN else None
        v = tcp.packet(d == 0, flags, seq, ack, payload, window, wscale)
        if v:
            if v & RETRANSMISSION:
                flow.retransmissions += 1
            if v & OUT_OF_WINDOW:
                flow.out_of_window += 1
            if v & GAP:
                flow.missed_bytes += tcp.gap

    def _udp_history(self, flow: Flow, d: int) -> None:
        letter = "D" if d == 0 else "d"
        if letter not in flow.history:
            flow.history.append(letter)

    def _ended(self, flow: Flow, ts: int, tcp_flags: int) -> bool:
        """Whether this packet starts a new conversation on the same addresses and ports."""
        timeout = self.opts.tcp_timeout_ns if flow.tcp is not None else self.opts.other_timeout_ns
        if ts - flow.last_ns > timeout:
            return True
        tcp = flow.tcp
        if tcp is None or tcp_flags & (TH_SYN | TH_ACK) != TH_SYN:
            return False
        states = (tcp.orig.state, tcp.resp.state)
        return CLOSED in states or RESET in states

    def _new_flow(self, fkey: FlowKeyT, ts: int, proto: int, src: bytes, sp: int, dst: bytes,
                  dp: int, tcp_flags: int, reply: bool) -> Flow:
        if proto == IPPROTO_TCP:
            if tcp_flags & TH_SYN:
                flip = bool(tcp_flags & TH_ACK)
            else:
                flip = _port_flip(sp, dp, midstream_tcp=True)
        elif proto == IPPROTO_UDP:
            flip = _port_flip(sp, dp, midstream_tcp=False)
        else:
            flip = reply
        a, b = (src, sp), (dst, dp)
        self._uid += 1
        flow = Flow(self._uid, proto, b if flip else a, a if flip else b, ts, flip)
        self._active[fkey] = flow
        return flow

    def _finish(self, fkey: FlowKeyT, flow: Flow) -> None:
        del self._active[fkey]
        self._done.append(flow)

    def _remember_fragment(self, ts: int, frame: bytes, l3: int, src: bytes, dst: bytes,
                           proto: int, fkey: FlowKeyT) -> None:
        fid = (src, dst, proto, (frame[l3 + 4] << 8) | frame[l3 + 5])
        self._frags[fid] = fkey
        ages = self._frag_ages
        ages.append((ts, fid))
        while ages and (ages[0][0] < ts - _FRAG_TIMEOUT_NS or len(ages) > 65536):
            _, old = ages.popleft()
            self._frags.pop(old, None)

    def _fragment_flow(self, frame: bytes, l3: int, et: int, src: bytes, dst: bytes,
                       proto: int) -> FlowKeyT | None:
        if et != ETH_P_IPV4:
            return None
        return self._frags.get((src, dst, proto, (frame[l3 + 4] << 8) | frame[l3 + 5]))

    def finish(self) -> list[Flow]:
        """All flows, ordered by their first packet."""
        flows = self._done + list(self._active.values())
        self._done = []
        self._active = {}
        flows.sort(key=lambda f: (f.first_ns, f.uid))
        st = self.stats
        st.flows = len(flows)
        for f in flows:
            s = f.conn_state
            st.by_state[s] = st.by_state.get(s, 0) + 1
        return flows


def _port_flip(sp: int, dp: int, *, midstream_tcp: bool) -> bool:
    """Zeek's heuristic: is the first packet's sender the server?"""
    if not likely_server_port(sp):
        return False
    if likely_server_port(dp):
        return midstream_tcp and sp < dp
    return True


def analyze_file(path: str, opts: FlowOptions | None = None,
                 progress: Callable[[int], None] | None = None,
                 progress_every: int = 1 << 16) -> tuple[list[Flow], FlowStats]:
    """The flows of a pcap/pcapng file and what did not fit in any."""
    table = FlowTable(opts)
    scan = CaptureScanner(path)
    names: list[str] = []
    section = -1
    add = table.add
    for n, raw in enumerate(scan, 1):
        assert type(raw) is RawPacket
        ifaces = scan.interfaces
        if len(names) != len(ifaces) or scan.sections != section:
            names = [i.name or f"#{j}" for j, i in enumerate(ifaces)]
            section = scan.sections
        iface = ifaces[raw.interface_id]
        add(max(raw.ts_ns, 0), iface.linktype, raw.data, raw.orig_len,
            names[raw.interface_id], raw.packet_id)
        if progress is not None and n % progress_every == 0:
            progress(scan.position)
    flows = table.finish()
    table.stats.truncated = scan.truncated
    if progress is not None:
        progress(scan.position)
    return flows, table.stats

