"""Follow a TCP stream: reassemble both directions of one connection from a capture.

Works on pcap/pcapng files (a switch capture, a collector output, or raw
ERSPAN/GRE traffic, which is decapsulated on the way). Streams are numbered
like Wireshark's ``tcp.stream`` (order of first appearance; a new SYN with
another initial sequence number on the same addresses starts a new stream).

Each direction is reassembled by sequence number: retransmitted bytes are
delivered once, out-of-order segments wait for the gap before them, and a
gap that the other side acknowledges (or that is still open at the end of
the file) is reported as ``[N bytes missing in capture file]``. Node 0 is the
sender of the stream's first packet, as in Wireshark.

:func:`render` prints the result in tshark's ``-z follow,tcp,ascii|hex|raw``
layout.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from vspan.capture.collector import decapsulate_ip, ip_payload_of
from vspan.capture.pcapng import LINKTYPE_ETHERNET, PacketRecord
from vspan.datapath.flowkey import ETH_P_IPV4, ETH_P_IPV6, FRAG_NONE, IPPROTO_TCP, extract
from vspan.packet.errors import PacketError

_MOD = 1 << 32
_HALF = 1 << 31
TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_ACK = 0x10


class FollowError(ValueError):
    """A bad flow specification, or no such stream in the capture."""


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """An address and TCP port."""

    addr: str
    port: int

    def __str__(self) -> str:
        if ":" in self.addr:
            return f"[{self.addr}]:{self.port}"
        return f"{self.addr}:{self.port}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes one node sent, delivered in stream order (``missing`` > 0: a gap marker)."""

    node: int
    data: bytes
    offset: int  # position of ``data`` in this node's byte stream
    missing: int = 0


@dataclass(frozen=True, slots=True)
class Segment:
    """The TCP facts of one captured packet."""

    src: Endpoint
    dst: Endpoint
    seq: int
    ack: int
    flags: int
    payload: bytes
    ts_ns: int


@dataclass(slots=True)
class _Direction:
    isn_known: bool = False
    next_seq: int = 0  # absolute sequence number of the next byte to deliver
    delivered: int = 0  # bytes delivered (and marked missing) so far = stream offset
    pending: dict[int, bytes] = field(default_factory=dict)  # out-of-order: seq -> data
    fin: bool = False


@dataclass(slots=True)
class TcpStream:
    """One followed connection."""

    index: int
    nodes: tuple[Endpoint, Endpoint]
    chunks: list[Chunk] = field(default_factory=list)
    packets: int = 0
    first_ts_ns: int = 0
    last_ts_ns: int = 0
    isn: int | None = None  # the SYN's sequence number, when one was seen
    closed: bool = False
    _dirs: tuple[_Direction, _Direction] = field(
        default_factory=lambda: (_Direction(), _Direction()))

    def bytes_sent(self, node: int) -> int:
        """Payload bytes node ``node`` delivered (without gaps)."""
        return sum(len(c.data) for c in self.chunks if c.node == node)

    def missing(self, node: int) -> int:
        """Bytes of node ``node``'s stream that the capture does not hold."""
        return sum(c.missing for c in self.chunks if c.node == node)

    # ---- reassembly --------------------------------------------------------------------

    def add(self, seg: Segment) -> None:
        """Take one segment of this stream."""
        self.packets += 1
        if not self.first_ts_ns:
            self.first_ts_ns = seg.ts_ns
        self.last_ts_ns = seg.ts_ns
        node = 0 if seg.src == self.nodes[0] else 1
        d = self._dirs[node]
        seq = seg.seq
        if seg.flags & TH_SYN:
            if not d.isn_known:
                d.isn_known = True
                d.next_seq = (seq + 1) % _MOD
            seq = (seq + 1) % _MOD
        elif not d.isn_known:
            d.isn_known = True
            d.next_seq = seq
        if seg.flags & (TH_FIN | TH_RST):
            self.closed = True
        if seg.payload:
            self._take(node, seq, seg.payload)
        if seg.flags & TH_ACK:
            self._acked(1 - node, seg.ack)

    def _take(self, node: int, seq: int, data: bytes) -> None:
        d = self._dirs[node]
        rel = (seq - d.next_seq) % _MOD
        if rel >= _HALF:  # starts before next_seq: drop what was delivered already
            old = _MOD - rel
            if old >= len(data):
                return
            data = data[old:]
            seq = d.next_seq
            rel = 0
        if rel > 0:
            prev = d.pending.get(seq)
            if prev is None or len(prev) < len(data):
                d.pending[seq] = data
            return
        self._deliver(node, data)
        self._drain(node)

    def _deliver(self, node: int, data: bytes) -> None:
        d = self._dirs[node]
        self.chunks.append(Chunk(node, data, d.delivered))
        d.delivered += len(data)
        d.next_seq = (d.next_seq + len(data)) % _MOD

    def _drain(self, node: int) -> None:
        d = self._dirs[node]
        while d.pending:
            progressed = False
            for seq in list(d.pending):
                rel = (seq - d.next_seq) % _MOD
                if rel == 0 or rel >= _HALF:
                    data = d.pending.pop(seq)
                    skip = 0 if rel == 0 else _MOD - rel
                    if skip < len(data):
                        self._deliver(node, data[skip:])
                    progressed = True
            if not progressed:
                return

    def _skip_gap(self, node: int, upto: int | None) -> bool:
        """Declare the bytes up to the next buffered segment (or ``upto``) missing."""
        d = self._dirs[node]
        if not d.pending:
            return False
        first = min(d.pending, key=lambda s: (s - d.next_seq) % _MOD)
        gap = (first - d.next_seq) % _MOD
        if upto is not None and (upto - d.next_seq) % _MOD < gap:
            return False  # the acknowledgement does not reach the buffered data
        if gap == 0 or gap >= _HALF:
            return False
        self.chunks.append(Chunk(node, b"", d.delivered, gap))
        d.delivered += gap
        d.next_seq = first
        self._drain(node)
        return True

    def _acked(self, node: int, ack: int) -> None:
        """The peer acknowledged ``ack`` of ``node``'s data: gaps below it are capture losses."""
        d = self._dirs[node]
        if not d.isn_known or not d.pending:
            return
        ahead = (ack - d.next_seq) % _MOD
        if ahead == 0 or ahead >= _HALF:
            return
        while self._skip_gap(node, ack):
            pass

    def finish(self) -> None:
        """End of capture: what is still waiting behind a gap comes out after a gap marker."""
        for node in (0, 1):
            while self._skip_gap(node, None):
                pass


# ---- packets to segments -----------------------------------------------------------------


def _addr(raw: bytes) -> str:
    fam = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(fam, raw)


def segment_of(frame: bytes, ts_ns: int = 0) -> Segment | None:
    """The TCP segment in an Ethernet frame (GRE/ERSPAN unwrapped), or ``None``."""
    key = extract(frame, 0)
    if key is None or key.frag != FRAG_NONE:
        return None
    if key.proto == 47 and key.eth_type in (ETH_P_IPV4, ETH_P_IPV6):
        try:
            d = decapsulate_ip(frame[key.l3_off:], ts_ns)
        except PacketError:
            return None
        if d is None or d.frame == frame:
            return None
        return segment_of(d.frame, ts_ns)
    if key.proto != IPPROTO_TCP or not key.l4_off:
        return None
    l3, l4 = key.l3_off, key.l4_off
    if key.eth_type == ETH_P_IPV4:
        end = l3 + ((frame[l3 + 2] << 8) | frame[l3 + 3])
    else:
        end = l3 + 40 + ((frame[l3 + 4] << 8) | frame[l3 + 5])
    end = min(end, len(frame))
    thl = (frame[l4 + 12] >> 4) * 4
    if thl < 20 or l4 + thl > len(frame):
        return None
    seq = int.from_bytes(frame[l4 + 4:l4 + 8], "big")
    ack = int.from_bytes(frame[l4 + 8:l4 + 12], "big")
    flags = frame[l4 + 13]
    payload = frame[l4 + thl:end] if end > l4 + thl else b""
    return Segment(Endpoint(_addr(key.l3_src), key.sport), Endpoint(_addr(key.l3_dst), key.dport),
                   seq, ack, flags, payload, ts_ns)


def segments(records: Iterable[PacketRecord]) -> Iterator[Segment]:
    """TCP segments of capture records (non-TCP records are skipped)."""
    for rec in records:
        frame = rec.data
        if rec.linktype != LINKTYPE_ETHERNET:
            ip = ip_payload_of(rec.linktype, frame)
            if ip is None or not ip:
                continue
            et = b"\x08\x00" if ip[0] >> 4 == 4 else b"\x86\xdd"
            frame = b"\0" * 12 + et + ip
        seg = segment_of(frame, rec.ts_ns)
        if seg is not None:
            yield seg


# ---- stream selection --------------------------------------------------------------------


def parse_flow(spec: str) -> tuple[Endpoint, Endpoint]:
    """``A:p-B:q`` (IPv6 as ``[addr]:p``) into two endpoints."""
    def endpoint(text: str) -> Endpoint:
        text = text.strip()
        if text.startswith("["):
            addr, sep, port = text[1:].partition("]:")
        else:
            addr, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise FollowError(f"{text!r} is not ADDR:PORT (IPv6 as [ADDR]:PORT)")
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            raise FollowError(f"{addr!r} is not an IP address") from None
        return Endpoint(str(ip), int(port))

    depth = 0
    for i, ch in enumerate(spec):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "-" and depth == 0:
            return endpoint(spec[:i]), endpoint(spec[i + 1:])
    raise FollowError(f"{spec!r} is not a flow: use ADDR:PORT-ADDR:PORT")


@dataclass(slots=True)
class _Conv:
    index: int
    isn: int | None  # client SYN sequence number
    closed: bool


def _conversations(segs: Iterable[Segment]) -> Iterator[tuple[int, Segment]]:
    """Each segment with its stream index (Wireshark's numbering)."""
    convs: dict[tuple[Endpoint, Endpoint], _Conv] = {}
    next_index = 0
    for seg in segs:
        key = (seg.src, seg.dst) if seg.src <= seg.dst else (seg.dst, seg.src)
        conv = convs.get(key)
        syn_only = seg.flags & (TH_SYN | TH_ACK) == TH_SYN
        if conv is None or (syn_only and conv.isn is not None and conv.isn != seg.seq):
            conv = _Conv(next_index, seg.seq if syn_only else None, False)
            convs[key] = conv
            next_index += 1
        elif syn_only and conv.isn is None:
            conv.isn = seg.seq
        yield conv.index, seg


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """One line of ``vspan follow --list``."""

    index: int
    a: Endpoint
    b: Endpoint
    packets: int
    bytes_a: int
    bytes_b: int


def list_streams(records: Iterable[PacketRecord]) -> list[StreamSummary]:
    """Every TCP stream of a capture with packet and payload byte counts."""
    rows: dict[int, list[int]] = {}
    ends: dict[int, tuple[Endpoint, Endpoint]] = {}
    for idx, seg in _conversations(segments(records)):
        row = rows.get(idx)
        if row is None:
            row = rows[idx] = [0, 0, 0]
            ends[idx] = (seg.src, seg.dst)
        row[0] += 1
        row[1 if seg.src == ends[idx][0] else 2] += len(seg.payload)
    return [StreamSummary(i, ends[i][0], ends[i][1], r[0], r[1], r[2])
            for i, r in sorted(rows.items())]


def follow(records: Iterable[PacketRecord], *, index: int | None = None,
           flow: tuple[Endpoint, Endpoint] | None = None) -> TcpStream:
    """Reassemble stream ``index`` (default 0), or the first stream between ``flow``'s ends."""
    if index is not None and flow is not None:
        raise FollowError("give a stream index or a flow, not both")
    want_pair = None if flow is None else frozenset(flow)
    target = 0 if index is None and flow is None else index
    chosen: int | None = None
    stream: TcpStream | None = None
    for idx, seg in _conversations(segments(records)):
        if chosen is None:
            by_index = target is not None and idx == target
            by_flow = want_pair is not None and frozenset((seg.src, seg.dst)) == want_pair
            if by_index or by_flow:
                chosen = idx
            else:
                continue
            stream = TcpStream(idx, (seg.src, seg.dst))
        if idx != chosen:
            continue
        assert stream is not None
        stream.add(seg)
    if stream is None:
        if flow is not None:
            raise FollowError(f"no TCP stream between {flow[0]} and {flow[1]} in the capture")
        raise FollowError(f"no stream {target} in the capture")
    stream.finish()
    return stream


# ---- output ------------------------------------------------------------------------------

_RULE = "=" * 67


def _ascii_text(data: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F or b in (0x0A, 0x0D) else "." for b in data)


def _hex_lines(data: bytes, offset: int) -> list[str]:
    lines = []
    for i in range(0, len(data), 16):
        row = data[i:i + 16]
        hexpart = " ".join(f"{b:02x}" for b in row[:8])
        if len(row) > 8:
            hexpart += "  " + " ".join(f"{b:02x}" for b in row[8:])
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        if len(text) > 8:
            text = text[:8] + " " + text[8:]
        lines.append(f"{offset + i:08X}  {hexpart.ljust(50)}{text}".rstrip())
    return lines


def render(stream: TcpStream, fmt: str = "ascii") -> str:
    """tshark's ``-z follow,tcp,FMT,N`` output for ``stream`` (ascii, hex or raw)."""
    if fmt not in ("ascii", "hex", "raw"):
        raise FollowError(f"unknown format {fmt!r} (ascii, hex, raw)")
    out = ["", _RULE, f"Follow: tcp,{fmt}", f"Filter: tcp.stream eq {stream.index}",
           f"Node 0: {stream.nodes[0]}", f"Node 1: {stream.nodes[1]}"]
    for c in stream.chunks:
        tab = "\t" if c.node else ""
        if c.missing:
            out.append(f"{tab}[{c.missing} bytes missing in capture file]")
            continue
        if fmt == "ascii":
            out.append(f"{tab}{len(c.data)}")
            out.append(_ascii_text(c.data))
        elif fmt == "hex":
            out.extend(tab + line for line in _hex_lines(c.data, c.offset))
        else:
            out.append(tab + c.data.hex())
    out.append(_RULE)
    return "\n".join(out) + "\n"
