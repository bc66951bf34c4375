"""Per-port connection tracking (the state behind the distributed firewall).

One :class:`ConnTrack` lives at each port. Connections are keyed from the
port's point of view — (protocol, local address, local port or ICMP id,
remote address, remote port) — never by the port a frame entered the switch
on. So a flow whose two directions take different paths through the network
(the metro-cluster case: inbound via one uplink, outbound via another) is one
connection here, seen whole, and judged on both directions.

What is tracked:

* **TCP**: the state machine and window tracking of :mod:`vspan.policy.tcp`.
* **UDP** (and other IP protocols): FIRST after the first packet, SINGLE while
  only the originator sends, MULTIPLE once the other side answered.
* **ICMP echo** (and ICMPv4 timestamp): keyed by the echo id and the
  direction of the request; a reply is valid only for an outstanding request.
* **ICMP errors** (v4 types 3, 4, 5, 11, 12; v6 types 1-4): the embedded
  header is parsed and, when it belongs to a tracked connection, the error is
  RELATED and admitted.
* Later IP fragments (no transport header) are ESTABLISHED when the address
  pair has a tracked connection of that protocol.

Other ICMP (neighbour discovery, MLD, ...) is UNTRACKED: rules alone decide.

Time is injected: every call takes ``now`` (seconds, any monotonic origin).
Entries expire lazily on lookup; call :meth:`ConnTrack.expire` periodically
to reclaim memory.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import NamedTuple

from vspan.config.policy import Timeouts as Timeouts
from vspan.datapath.flowkey import (
    ETH_P_IPV4,
    FRAG_LATER,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    FlowKey,
)
from vspan.policy.common import (
    IN,
    OUT,
    Dir,
    family_of,
    ip_str,
    local_remote_ip,
    other,
    protocol_str,
)
from vspan.policy.tcp import ACK, RST, SYN, TcpStateName, TcpTrack, parse_segment

ConnKey = tuple[int, bytes, int, bytes, int]
"""(protocol, local address, local port / ICMP id, remote address, remote port / request dir)."""


class CtClass(enum.StrEnum):
    """What conntrack says about one frame."""

    NEW = "new"  # no state: the rules decide, then :meth:`ConnTrack.create`
    ESTABLISHED = "established"  # part of a tracked connection (state updated)
    RELATED = "related"  # an ICMP error about a tracked connection
    INVALID = "invalid"  # contradicts the tracked state: drop
    UNTRACKED = "untracked"  # never tracked (non-IP, neighbour discovery, ...): rules decide


class UdpState(enum.StrEnum):
    """States of UDP and other datagram protocols."""

    FIRST = "FIRST"
    SINGLE = "SINGLE"
    MULTIPLE = "MULTIPLE"


class IcmpState(enum.StrEnum):
    """States of an ICMP query (echo)."""

    REQUEST = "REQUEST"
    REPLIED = "REPLIED"


_ECHO_V4 = {8: 0, 13: 14}  # request type -> reply type
_ECHO_V6 = {128: 129}
_ECHO_REPLY_V4 = {v: k for k, v in _ECHO_V4.items()}
_ECHO_REPLY_V6 = {v: k for k, v in _ECHO_V6.items()}
ICMP4_ERRORS = frozenset((3, 4, 5, 11, 12))
ICMP6_ERRORS = frozenset((1, 2, 3, 4))
_V6_EXT = frozenset((0, 43, 60))
_DIR_CODE = {IN: 1, OUT: 2}
_ICMP_PROTOS = (IPPROTO_ICMP, IPPROTO_ICMPV6)

# what a published record says (NativeRecord's ``mask``; the C side reads the same bits)
NATIVE_IN = 1  # frames delivered to the port ("in") may be stepped natively
NATIVE_OUT = 2  # frames the port sends ("out") may be stepped natively
NATIVE_ORIGIN_IN = 4  # the connection was opened by an "in" frame (from_orig = dir is in)
NATIVE_TCP = 8  # a TCP connection: the segment must pass the window step

NativeRecord = tuple[object, float, int, object, object]
"""(connection, idle timeout of its state, mask, originator's TcpPeer, responder's TcpPeer)."""


class Conn:
    """One tracked connection."""

    __slots__ = ("bytes", "created", "expires", "key", "last", "nkey", "origin", "packets",
                 "proto", "rule_id", "state", "tcp")

    def __init__(self, key: ConnKey, origin: Dir, rule_id: str | None, now: float) -> None:
        self.key = key
        self.proto = key[0]  # IP protocol number
        self.origin = origin  # direction of the first frame (seen from the port)
        self.rule_id = rule_id  # rule that admitted it
        self.created = now
        self.last = now
        self.expires = now
        self.state: str = UdpState.FIRST
        self.tcp: TcpTrack | None = None
        self.packets = [0, 0]  # [from originator, from responder]
        self.bytes = [0, 0]
        self.nkey: bytes | None = None  # its key in a native index (native_key), once made

    def clone(self) -> Conn:
        """An independent copy: what a trace advances instead of the connection itself."""
        c = Conn(self.key, self.origin, self.rule_id, self.created)
        c.last, c.expires, c.state = self.last, self.expires, self.state
        c.tcp = self.tcp.clone() if self.tcp is not None else None
        c.packets, c.bytes = list(self.packets), list(self.bytes)
        return c

    def fingerprint(self) -> tuple[object, ...]:
        """Everything a frame can change about the connection, as comparable data."""
        tcp: tuple[object, ...] = ()
        if self.tcp is not None:
            tcp = (self.tcp.state, self.tcp.oow, self.tcp.reset_by,
                   *(tuple(p.as_dict().values()) for p in self.tcp.peers))
        return (str(self.state), tuple(self.packets), tuple(self.bytes), self.expires,
                self.rule_id, self.origin, tcp)

    def describe(self) -> str:
        """One line: ``tcp 10.0.0.5:40000 <-> 10.0.1.1:80 ESTABLISHED (opened out, rule 1001)``."""
        p, loc, lp, rem, rp = self.key
        if p in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            ends = f"{ip_str(loc)} <-> {ip_str(rem)} id {lp}"
        else:
            ends = f"{ip_str(loc)}:{lp} <-> {ip_str(rem)}:{rp}"
        return (f"{protocol_str(p)} {ends} {self.state} (opened {self.origin}, "
                f"rule {self.rule_id or '-'})")

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view."""
        p, loc, lp, rem, rp = self.key
        out: dict[str, object] = {
            "proto": p, "local": ip_str(loc), "local_port": lp, "remote": ip_str(rem),
            "remote_port": rp, "origin": self.origin, "state": str(self.state),
            "rule": self.rule_id, "packets": list(self.packets), "bytes": list(self.bytes),
            "expires": self.expires,
        }
        if self.tcp is not None:
            out["tcp"] = {"orig": self.tcp.peers[0].as_dict(), "reply": self.tcp.peers[1].as_dict(),
                          "out_of_window_passed": self.tcp.oow,
                          "reset_by": ("originator", "responder")[self.tcp.reset_by]
                          if self.tcp.reset_by >= 0 else None}
        return out


class CtResult(NamedTuple):
    """Outcome of :meth:`ConnTrack.classify` / :meth:`ConnTrack.create`."""

    cls: CtClass
    conn: Conn | None
    reason: str = ""
    forgot: ConnKey | None = None  # a closed connection a new SYN re-opens was forgotten


def _icmp_id(data: bytes, l4: int) -> int:
    return (data[l4 + 4] << 8) | data[l4 + 5] if len(data) >= l4 + 6 else 0


def conn_key(key: FlowKey, data: bytes, direction: Dir) -> tuple[ConnKey, bool] | None:
    """The connection key of a frame and whether the frame is a query *reply*.

    ``None`` for frames that are never tracked by key (ICMP errors and
    untracked ICMP types, non-IP).
    """
    proto = key.proto
    loc, rem = local_remote_ip(key, direction)
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        if not key.l4_off:
            return (proto, loc, 0, rem, 0), False
        req, rep = (_ECHO_V4, _ECHO_REPLY_V4) if proto == IPPROTO_ICMP else (_ECHO_V6,
                                                                             _ECHO_REPLY_V6)
        t = key.sport
        if t in req:
            return (proto, loc, _icmp_id(data, key.l4_off), rem, _DIR_CODE[direction]), False
        if t in rep:
            return (proto, loc, _icmp_id(data, key.l4_off), rem,
                    _DIR_CODE[other(direction)]), True
        return None
    if key.l4_off and proto in (IPPROTO_TCP, IPPROTO_UDP, 132):
        if direction == IN:
            return (proto, loc, key.dport, rem, key.sport), False
        return (proto, loc, key.sport, rem, key.dport), False
    return (proto, loc, 0, rem, 0), False


def is_icmp_error(key: FlowKey) -> bool:
    """Whether the frame is an ICMP/ICMPv6 error message."""
    if not key.l4_off:
        return False
    if key.proto == IPPROTO_ICMP:
        return key.sport in ICMP4_ERRORS
    if key.proto == IPPROTO_ICMPV6:
        return key.sport in ICMP6_ERRORS
    return False


def embedded_key(key: FlowKey, data: bytes, direction: Dir) -> ConnKey | None:
    """Connection key of the packet quoted inside an ICMP error (``None`` if unreadable).

    The quoted packet travelled the other way: it was sent by the error's
    destination, so its direction at the port is the opposite of the error's.
    """
    off = key.l4_off + 8
    n = len(data)
    v4 = key.eth_type == ETH_P_IPV4
    if v4:
        if n < off + 20 or data[off] >> 4 != 4:
            return None
        ihl = (data[off] & 0x0F) * 4
        proto = data[off + 9]
        src, dst = data[off + 12 : off + 16], data[off + 16 : off + 20]
        l4 = off + ihl
        if ((data[off + 6] << 8) | data[off + 7]) & 0x1FFF:
            return None  # a later fragment: no transport header quoted
    else:
        if n < off + 40 or data[off] >> 4 != 6:
            return None
        proto = data[off + 6]
        src, dst = data[off + 8 : off + 24], data[off + 24 : off + 40]
        l4 = off + 40
        while proto in _V6_EXT:
            if n < l4 + 8:
                return None
            proto, l4 = data[l4], l4 + 8 + data[l4 + 1] * 8
    e = other(direction)
    loc, rem = (src, dst) if e == OUT else (dst, src)
    if proto in (IPPROTO_TCP, IPPROTO_UDP, 132):
        if n < l4 + 4:
            return None
        sp = (data[l4] << 8) | data[l4 + 1]
        dp = (data[l4 + 2] << 8) | data[l4 + 3]
        lp, rp = (sp, dp) if e == OUT else (dp, sp)
        return (proto, loc, lp, rem, rp)
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        if n < l4 + 6:
            return None
        t = data[l4]
        req = _ECHO_V4 if proto == IPPROTO_ICMP else _ECHO_V6
        if t in req:
            return (proto, loc, (data[l4 + 4] << 8) | data[l4 + 5], rem, _DIR_CODE[e])
        rep = _ECHO_REPLY_V4 if proto == IPPROTO_ICMP else _ECHO_REPLY_V6
        if t in rep:
            return (proto, loc, (data[l4 + 4] << 8) | data[l4 + 5], rem, _DIR_CODE[other(e)])
        return None
    return (proto, loc, 0, rem, 0)


def native_key(ck: ConnKey) -> bytes:
    """The bytes the native replay builds from a frame for connection key ``ck``: protocol,
    local address, local port, remote address, remote port (ports big-endian)."""
    proto, loc, lp, rem, rp = ck
    return bytes((proto,)) + loc + lp.to_bytes(2, "big") + rem + rp.to_bytes(2, "big")


class ConnTrack:
    """The connection table of one port.

    ``native``: when the native replay steps this table's established connections
    (``docs/datapath.md``, "Stateful checks split"), the index it reads — native key ->
    :data:`NativeRecord` — of every IPv4 TCP/UDP connection whose next frame (in the
    directions its mask names) could only refresh it: a UDP connection in MULTIPLE (both
    directions) or SINGLE (the originator's), a TCP one ESTABLISHED with no FIN. The C
    side updates the :class:`Conn` object itself (counters, ``last``, ``expires``, the TCP
    window edges), so every reader sees what the Python tracker would have left; it never
    changes a state and hands anything else back. Every commit here republishes or
    withdraws the connection it touched; removals, :meth:`flush` and new timeouts
    withdraw.
    """

    __slots__ = ("_conns", "_pairs", "_timeouts", "counters", "max_conns", "native")

    def __init__(self, timeouts: Timeouts | None = None, max_conns: int = 65536) -> None:
        self._conns: dict[ConnKey, Conn] = {}
        self._pairs: dict[tuple[int, bytes, bytes], int] = {}
        self._timeouts = timeouts or Timeouts()
        self.max_conns = max_conns
        self.native: dict[bytes, NativeRecord] | None = None
        # "after_reset": the part of "invalid" that only came after the connection's RST;
        # "rst_not_exact": in-window RSTs passed without closing (RFC 5961, docs/policy.md)
        self.counters: dict[str, int] = {"created": 0, "expired": 0, "invalid": 0,
                                         "after_reset": 0, "related": 0, "table_full": 0,
                                         "reopened": 0, "rst_not_exact": 0}

    def __len__(self) -> int:
        return len(self._conns)

    @property
    def timeouts(self) -> Timeouts:
        """Idle timeouts by state."""
        return self._timeouts

    @timeouts.setter
    def timeouts(self, value: Timeouts) -> None:
        self._timeouts = value
        if self.native:  # records carry their timeout: published again on their next frame
            self.native.clear()

    def _publish(self, c: Conn) -> None:
        """Put ``c`` into the native index, or take it out, as its state now says."""
        native = self.native
        assert native is not None
        nkey = c.nkey
        if nkey is None:
            if c.proto not in (IPPROTO_TCP, IPPROTO_UDP) or len(c.key[1]) != 4:
                return  # the native replay keys IPv4 TCP/UDP only
            nkey = c.nkey = native_key(c.key)
        origin = NATIVE_ORIGIN_IN if c.origin == IN else 0
        t = c.tcp
        if t is not None:
            a, b = t.peers
            if t.state is TcpStateName.ESTABLISHED and a.fin_end < 0 and b.fin_end < 0:
                native[nkey] = (c, self.timeout_of(c), NATIVE_IN | NATIVE_OUT | origin |
                                NATIVE_TCP, a, b)
                return
        elif c.state == UdpState.MULTIPLE:
            native[nkey] = (c, self.timeout_of(c), NATIVE_IN | NATIVE_OUT | origin, None, None)
            return
        elif c.state == UdpState.SINGLE:
            mask = NATIVE_IN if c.origin == IN else NATIVE_OUT
            native[nkey] = (c, self.timeout_of(c), mask | origin, None, None)
            return
        native.pop(nkey, None)

    def __iter__(self) -> Iterator[Conn]:
        return iter(list(self._conns.values()))

    def get(self, ck: ConnKey, now: float, commit: bool = True) -> Conn | None:
        """The live connection with key ``ck``; an expired one is removed (``commit``) or
        just not seen (a peek changes nothing)."""
        c = self._conns.get(ck)
        if c is not None and c.expires <= now:
            if commit:
                self._remove(c)
                self.counters["expired"] += 1
            return None
        return c

    def entries(self) -> dict[ConnKey, Conn]:
        """Every connection by key (expired ones not yet reclaimed included), read-only use."""
        return self._conns

    def lookup(self, key: FlowKey, data: bytes, direction: Dir, now: float) -> Conn | None:
        """The connection a frame belongs to, without changing anything (explain)."""
        if not family_of(key):
            return None
        if is_icmp_error(key):
            ek = embedded_key(key, data, direction)
            return None if ek is None else self.get(ek, now, commit=False)
        ckr = conn_key(key, data, direction)
        return None if ckr is None else self.get(ckr[0], now, commit=False)

    def _count(self, name: str, commit: bool) -> None:
        if commit:
            self.counters[name] += 1

    def classify(self, key: FlowKey, data: bytes, direction: Dir, now: float,
                 commit: bool = True) -> CtResult:
        """Per-frame: find the frame's connection and advance its state.

        With ``commit`` False (a peek, for trace) the same code runs on a copy of the
        connection: the result, including the connection's state after the frame, is
        what committing would give, and nothing in the table changes.
        """
        if not family_of(key):
            return CtResult(CtClass.UNTRACKED, None, "not an IP frame")
        if key.frag == FRAG_LATER:
            loc, rem = local_remote_ip(key, direction)
            if self._pairs.get((key.proto, loc, rem)):
                return CtResult(CtClass.ESTABLISHED, None, "later fragment of a tracked pair")
            return CtResult(CtClass.UNTRACKED, None, "later fragment, no tracked connection")
        if key.proto in _ICMP_PROTOS and is_icmp_error(key):
            ek = embedded_key(key, data, direction)
            if ek is not None:
                c = self.get(ek, now, commit)
                if c is not None:
                    self._count("related", commit)
                    return CtResult(CtClass.RELATED, c, f"ICMP error about {c.describe()}")
            return CtResult(CtClass.UNTRACKED, None, "ICMP error about no tracked connection")
        ckr = conn_key(key, data, direction)
        if ckr is None:
            return CtResult(CtClass.UNTRACKED, None, "ICMP type not tracked")
        ck = ckr[0]
        c = self._conns.get(ck)
        if c is None or c.expires <= now:
            if c is not None and commit:
                self._remove(c)
                self.counters["expired"] += 1
            return CtResult(CtClass.NEW, None, "no connection state")
        if not commit:
            c = c.clone()
        from_orig = direction == c.origin
        note = ""
        if c.tcp is not None:
            seg = parse_segment(data, key)
            if seg is None:
                self._count("invalid", commit)
                return CtResult(CtClass.INVALID, c, "malformed TCP header")
            upd = c.tcp.update(seg, from_orig)
            if upd.reopen:
                if commit:
                    self._remove(c)
                self._count("reopened", commit)
                return CtResult(CtClass.NEW, None, f"{upd.reason}: old state forgotten", ck)
            if not upd.ok:
                self._count("invalid", commit)
                if upd.after_reset:
                    self._count("after_reset", commit)
                return CtResult(CtClass.INVALID, c, upd.reason)
            if upd.rst_not_exact:
                self._count("rst_not_exact", commit)
            c.state = c.tcp.state
            note = upd.reason
        elif c.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            if not from_orig:
                c.state = IcmpState.REPLIED
        elif from_orig:
            if c.state == UdpState.FIRST:
                c.state = UdpState.SINGLE
        else:
            c.state = UdpState.MULTIPLE
        self._touch(c, from_orig, len(data), now)
        if commit and self.native is not None:
            self._publish(c)
        return CtResult(CtClass.ESTABLISHED, c, note or str(c.state))

    def create(
        self,
        key: FlowKey,
        data: bytes,
        direction: Dir,
        now: float,
        rule_id: str | None = None,
        strict: bool = False,
        commit: bool = True,
    ) -> CtResult:
        """Start tracking a NEW frame the rules allowed.

        Returns ESTABLISHED with the new connection, UNTRACKED when the frame
        starts nothing (a stray RST in non-strict mode, an unrelated ICMP
        error, a later fragment), or INVALID (TCP without handshake in strict
        mode, an echo reply without request, a full table). With ``commit``
        False the connection is made but not stored (a peek).
        """
        if not family_of(key) or key.frag == FRAG_LATER or is_icmp_error(key):
            return CtResult(CtClass.UNTRACKED, None, "nothing to track")
        ckr = conn_key(key, data, direction)
        if ckr is None:
            return CtResult(CtClass.UNTRACKED, None, "ICMP type not tracked")
        ck, is_reply = ckr
        if is_reply:
            self._count("invalid", commit)
            return CtResult(CtClass.INVALID, None, "echo reply without a request")
        tcp: TcpTrack | None = None
        if key.proto == IPPROTO_TCP:
            seg = parse_segment(data, key)
            if seg is None:
                self._count("invalid", commit)
                return CtResult(CtClass.INVALID, None, "malformed TCP header")
            if seg.flags & RST:
                if strict:
                    self._count("invalid", commit)
                    return CtResult(CtClass.INVALID, None, "RST without connection (TCP strict)")
                return CtResult(CtClass.UNTRACKED, None, "RST without connection")
            is_syn = seg.flags & (SYN | ACK) == SYN
            if not is_syn and strict:
                self._count("invalid", commit)
                return CtResult(CtClass.INVALID, None,
                                "TCP strict: a new connection must start with a SYN")
            tcp, upd = TcpTrack.start(seg, strict)
            if not upd.ok:
                self._count("invalid", commit)
                return CtResult(CtClass.INVALID, None, upd.reason)
        if self._full(now, commit):
            self._count("table_full", commit)
            return CtResult(CtClass.INVALID, None, "connection table full")
        c = Conn(ck, direction, rule_id, now)
        if tcp is not None:
            c.tcp = tcp
            c.state = tcp.state
        elif key.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            c.state = IcmpState.REQUEST
        if commit:
            self._conns[ck] = c
            pk = (ck[0], ck[1], ck[3])
            self._pairs[pk] = self._pairs.get(pk, 0) + 1
            self.counters["created"] += 1
        self._touch(c, True, len(data), now)
        if commit and self.native is not None:
            self._publish(c)
        return CtResult(CtClass.ESTABLISHED, c, "new connection tracked")

    def _full(self, now: float, commit: bool) -> bool:
        """Whether no connection can be added (expired ones are reclaimed first)."""
        if len(self._conns) < self.max_conns:
            return False
        if commit:
            self.expire(now)
            return len(self._conns) >= self.max_conns
        live = sum(1 for c in self._conns.values() if c.expires > now)
        return live >= self.max_conns

    def timeout_of(self, c: Conn) -> float:
        """Idle timeout for a connection's current state."""
        t = self._timeouts
        if c.tcp is not None:
            s = c.tcp.state
            if s is TcpStateName.ESTABLISHED:
                return t.tcp_established
            if s is TcpStateName.SYN_SENT:
                return t.tcp_syn_sent
            if s is TcpStateName.SYN_RECV:
                return t.tcp_syn_recv
            if s is TcpStateName.TIME_WAIT:
                return t.tcp_time_wait
            if s is TcpStateName.CLOSE:
                return t.tcp_close
            return t.tcp_closing
        if c.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            return t.icmp_reply if c.state == IcmpState.REPLIED else t.icmp_first
        udp = c.proto == IPPROTO_UDP
        if c.state == UdpState.FIRST:
            return t.udp_first if udp else t.other_first
        if c.state == UdpState.SINGLE:
            return t.udp_single if udp else t.other_single
        return t.udp_multiple if udp else t.other_multiple

    def _touch(self, c: Conn, from_orig: bool, nbytes: int, now: float) -> None:
        i = 0 if from_orig else 1
        c.packets[i] += 1
        c.bytes[i] += nbytes
        c.last = now
        c.expires = now + self.timeout_of(c)

    def _remove(self, c: Conn) -> None:
        if self._conns.pop(c.key, None) is None:
            return
        native = self.native
        if native and c.nkey is not None:
            rec = native.get(c.nkey)
            if rec is not None and rec[0] is c:
                del native[c.nkey]
        pk = (c.key[0], c.key[1], c.key[3])
        n = self._pairs.get(pk, 0) - 1
        if n > 0:
            self._pairs[pk] = n
        else:
            self._pairs.pop(pk, None)

    def expire(self, now: float) -> int:
        """Remove every expired connection; return how many."""
        dead = [c for c in self._conns.values() if c.expires <= now]
        for c in dead:
            self._remove(c)
        self.counters["expired"] += len(dead)
        return len(dead)

    def flush(self) -> None:
        """Forget every connection."""
        self._conns.clear()
        self._pairs.clear()
        if self.native is not None:
            self.native.clear()

    def detach_native(self) -> None:
        """This table is dropped (its port left the firewall): empty its native index and
        stop publishing, so no native program still holding the index finds anything."""
        if self.native is not None:
            self.native.clear()
            self.native = None

    def adopt(self, c: Conn) -> bool:
        """Take over a connection tracked elsewhere (a migrated port's state); False when
        the table is full or the connection is already tracked here."""
        if c.key in self._conns or len(self._conns) >= self.max_conns:
            return False
        self._conns[c.key] = c
        pk = (c.key[0], c.key[1], c.key[3])
        self._pairs[pk] = self._pairs.get(pk, 0) + 1
        return True
