"""TCP connection state and sequence-window tracking for the port firewall.

The state names follow Linux conntrack; the window check is the one of
Guido van Rooij's "Real Stateful TCP Packet Filtering in IP Filter" as used by
Linux ``nf_conntrack_proto_tcp`` and pf. For a segment from *sender* to
*receiver* (``end`` = seq + payload + SYN + FIN):

I.   ``seq <= sender.maxend``          — not beyond what the receiver allowed
                                          (highest ack + window it advertised);
II.  ``end >= sender.end - receiver.maxwin`` — not older than one window;
III. ``ack <= receiver.end``            — does not acknowledge unsent data;
IV.  ``ack >= receiver.end - max(sender.maxwin, 66000)`` — not too old an ack.

Two modes (NSX "TCP strict", chosen per firewall section):

* **non-strict** (default): out-of-window segments are counted and passed
  (windows are still tracked, liberally); a non-SYN segment of an unknown
  connection may start tracking mid-stream (pickup).
* **strict**: out-of-window segments are invalid (dropped with
  ``firewall-state-invalid``); a connection must start with a SYN.

In both modes a RST must be in the window (RST injection protection) — in
SYN_SENT it must acknowledge the SYN. On a synchronized connection (ESTABLISHED
or closing) an in-window RST closes only at the receiver's highest in-window
ack (:attr:`TcpPeer.maxack`, Linux's ``td_maxack``: RFC 5961 §3, the only RST
such a receiver accepts), or as a RST+ACK exactly at the sender's next sequence
number acknowledging all the receiver sent (an abort with data in flight); any
other in-window RST beyond that ack passes without changing the state
(:attr:`TcpUpdate.rst_not_exact`: the receiver answers it with a challenge
ACK), one before it is invalid. After a RST (state CLOSE) only
RSTs and a new SYN are accepted. A segment the *other* side sent after one
side's RST is typically in flight when the reset happens (the end of every
iperf3 test: its server closes the data socket with unread data, the kernel
sends RST+ACK while the client's last segments are still on their way);
no socket receives it any more (its receiver would only answer with another
RST), so it is dropped too, but named as such (:attr:`TcpUpdate.after_reset`)
so that such tail drops are told apart from forged or broken segments. A SYN
on a connection in TIME_WAIT or CLOSE re-opens it: the caller forgets the old
state and checks the SYN as a new connection.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from vspan.datapath.flowkey import ETH_P_IPV4, FlowKey

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20

_M = 0xFFFFFFFF
MAXACKWINCONST = 66000


def seq_diff(a: int, b: int) -> int:
    """Signed difference ``a - b`` in 32-bit sequence space."""
    d = (a - b) & _M
    return d - 0x100000000 if d & 0x80000000 else d


class TcpStateName(enum.StrEnum):
    """Connection states."""

    SYN_SENT = "SYN_SENT"
    SYN_RECV = "SYN_RECV"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT = "FIN_WAIT"  # one side sent FIN, not yet acknowledged
    CLOSE_WAIT = "CLOSE_WAIT"  # one side's FIN acknowledged, the other still open
    LAST_ACK = "LAST_ACK"  # both sides sent FIN, not both acknowledged
    TIME_WAIT = "TIME_WAIT"  # both FINs acknowledged
    CLOSE = "CLOSE"  # reset


class TcpSegment(NamedTuple):
    """Per-frame TCP fields read from the frame."""

    flags: int
    seq: int
    ack: int
    win: int  # raw (unscaled) window field
    payload: int  # payload length in bytes
    wscale: int  # window scale option on SYN segments; -1 when absent

    @property
    def end(self) -> int:
        """Sequence number after this segment (SYN and FIN count one)."""
        return (self.seq + self.payload + (1 if self.flags & SYN else 0)
                + (1 if self.flags & FIN else 0)) & _M


def parse_segment(data: bytes, key: FlowKey) -> TcpSegment | None:
    """Read the TCP fields of a frame whose key says TCP; ``None`` if malformed."""
    l4 = key.l4_off
    n = len(data)
    if not l4 or n < l4 + 20:
        return None
    hl = (data[l4 + 12] >> 4) * 4
    if hl < 20 or n < l4 + hl:
        return None
    l3 = key.l3_off
    if key.eth_type == ETH_P_IPV4:
        total = (data[l3 + 2] << 8) | data[l3 + 3]
        ip_end = l3 + total if total else n
    else:
        plen = (data[l3 + 4] << 8) | data[l3 + 5]
        ip_end = l3 + 40 + plen if plen else n
    if ip_end > n:
        ip_end = n  # truncated capture or offloaded super-frame: count what is there
    flags = data[l4 + 13]
    wscale = -1
    if flags & SYN:
        i = l4 + 20
        end = l4 + hl
        while i < end:
            kind = data[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            if i + 1 >= end:
                break
            olen = data[i + 1]
            if olen < 2 or i + olen > end:
                break
            if kind == 3 and olen == 3:
                wscale = min(data[i + 2], 14)
            i += olen
    return TcpSegment(
        flags,
        int.from_bytes(data[l4 + 4 : l4 + 8], "big"),
        int.from_bytes(data[l4 + 8 : l4 + 12], "big"),
        (data[l4 + 14] << 8) | data[l4 + 15],
        max(0, ip_end - (l4 + hl)),
        wscale,
    )


class TcpPeer:
    """Window tracking data of one side (as sender)."""

    __slots__ = ("end", "fin_acked", "fin_end", "maxack", "maxend", "maxwin", "scale",
                 "wscale_seen")

    def __init__(self) -> None:
        self.end = 0  # highest seq + len sent
        self.maxend = 0  # highest seq this side may send (receiver's ack + window)
        self.maxwin = 0  # largest window this side advertised (0 = not seen yet)
        self.scale = 0
        self.wscale_seen = False
        self.fin_end = -1  # sequence number after this side's FIN; -1 = no FIN yet
        self.fin_acked = False
        # highest ack this side sent in an in-window segment (Linux's td_maxack): the
        # other side's RST must carry exactly this sequence number to close; -1 = none yet
        self.maxack = -1

    def clone(self) -> TcpPeer:
        """An independent copy (a trace works on copies)."""
        c = TcpPeer()
        c.end, c.maxend, c.maxwin, c.scale = self.end, self.maxend, self.maxwin, self.scale
        c.wscale_seen, c.fin_end, c.fin_acked = self.wscale_seen, self.fin_end, self.fin_acked
        c.maxack = self.maxack
        return c

    def as_dict(self) -> dict[str, int | bool]:
        """For explain/export."""
        return {"end": self.end, "maxend": self.maxend, "maxwin": self.maxwin,
                "scale": self.scale, "fin": self.fin_end >= 0, "fin_acked": self.fin_acked,
                "maxack": self.maxack}


class TcpUpdate(NamedTuple):
    """Outcome of feeding one segment to a connection."""

    ok: bool
    reason: str = ""  # why invalid, or a note (out-of-window passed in non-strict mode)
    reopen: bool = False  # a SYN on a closed/time-wait connection: treat as new
    out_of_window: bool = False
    after_reset: bool = False  # invalid only because the connection was reset (CLOSE)
    rst_not_exact: bool = False  # an in-window RST not at the receiver's highest ack: passed


_OK = TcpUpdate(True)
_CLOSING = (TcpStateName.FIN_WAIT, TcpStateName.CLOSE_WAIT, TcpStateName.LAST_ACK,
            TcpStateName.TIME_WAIT)


class TcpTrack:
    """State of one TCP connection. ``peers[0]`` is the originator."""

    __slots__ = ("oow", "peers", "reset_by", "state", "strict")

    def __init__(self, strict: bool) -> None:
        self.state = TcpStateName.SYN_SENT
        self.peers = (TcpPeer(), TcpPeer())
        self.strict = strict
        self.oow = 0  # out-of-window segments passed (non-strict)
        self.reset_by = -1  # who sent the RST that closed it: 0 originator, 1 responder

    def clone(self) -> TcpTrack:
        """An independent copy (a trace works on copies)."""
        t = TcpTrack(self.strict)
        t.state = self.state
        t.peers = (self.peers[0].clone(), self.peers[1].clone())
        t.oow = self.oow
        t.reset_by = self.reset_by
        return t

    @classmethod
    def start(cls, seg: TcpSegment, strict: bool) -> tuple[TcpTrack, TcpUpdate]:
        """Track a new connection from its first segment (SYN, or a pickup when not strict)."""
        t = cls(strict)
        if seg.flags & SYN and not seg.flags & ACK:
            t.state = TcpStateName.SYN_SENT
        else:
            t.state = TcpStateName.ESTABLISHED  # mid-stream pickup
        return t, t.update(seg, True)

    def update(self, seg: TcpSegment, from_orig: bool) -> TcpUpdate:
        """Feed one segment sent by the originator (``from_orig``) or the responder."""
        f = seg.flags
        s, r = (self.peers[0], self.peers[1]) if from_orig else (self.peers[1], self.peers[0])
        st = self.state
        if f & RST:
            return self._rst(seg, s, r, from_orig)
        if st is TcpStateName.CLOSE:
            if f & SYN and not f & ACK:
                return TcpUpdate(True, "new SYN after reset", reopen=True)
            return self._after_reset(from_orig)
        if f & SYN and not f & ACK:
            if st is TcpStateName.TIME_WAIT:
                return TcpUpdate(True, "new SYN in TIME_WAIT", reopen=True)
            if st is TcpStateName.SYN_SENT:
                if from_orig:
                    if s.maxwin and seg.seq != (s.end - 1) & _M:
                        s.maxwin = 0  # a new attempt with a new ISN: re-initialise
                else:
                    self.state = TcpStateName.SYN_RECV  # simultaneous open
            elif self.strict:
                return TcpUpdate(False, f"SYN on a {st.value} connection")
            else:
                return TcpUpdate(True, f"SYN on a {st.value} connection ignored")
        elif f & SYN:  # SYN+ACK
            if not from_orig and st in (TcpStateName.SYN_SENT, TcpStateName.SYN_RECV):
                if seg.ack != r.end:
                    return TcpUpdate(False, "SYN-ACK does not acknowledge the SYN")
                if st is TcpStateName.SYN_RECV and s.maxwin and seg.seq != (s.end - 1) & _M:
                    s.maxwin = 0
                self.state = TcpStateName.SYN_RECV
            elif from_orig and st is TcpStateName.SYN_RECV and self.peers[1].maxwin:
                pass  # simultaneous open: the originator answers the responder's SYN
            elif st in (TcpStateName.ESTABLISHED, TcpStateName.SYN_RECV) and not from_orig:
                pass  # retransmitted SYN-ACK (the final ACK was lost); window check below
            elif self.strict:
                return TcpUpdate(False, f"unexpected SYN-ACK in {st.value}")
            else:
                return TcpUpdate(True, f"unexpected SYN-ACK in {st.value} ignored")
        elif st is TcpStateName.SYN_SENT and (self.strict or from_orig):
            # (non-strict: a responder sending without SYN-ACK is picked up liberally)
            return TcpUpdate(False, "segment without SYN before the handshake completed")
        check = self._window(seg, s, r)
        if check and self.strict:
            return TcpUpdate(False, check, out_of_window=True)
        self._advance(seg, s, r)
        if check:
            self.oow += 1
        elif f & ACK and (s.maxack < 0 or seq_diff(seg.ack, s.maxack) > 0):
            s.maxack = seg.ack  # only an in-window ack moves it (a forged far one cannot)
        if self.state is TcpStateName.SYN_RECV and from_orig and f & ACK and not f & SYN:
            self.state = TcpStateName.ESTABLISHED
        elif self.state is TcpStateName.SYN_SENT and not from_orig and not f & SYN:
            self.state = TcpStateName.ESTABLISHED  # non-strict: responder seen mid-stream
        if f & FIN and s.fin_end < 0:
            s.fin_end = seg.end
        if f & ACK and r.fin_end >= 0 and seq_diff(seg.ack, r.fin_end) >= 0:
            r.fin_acked = True
        if self.state is TcpStateName.ESTABLISHED or self.state in _CLOSING:
            self.state = self._closing_state()
        if check:
            return TcpUpdate(True, f"{check} (passed: not strict)", out_of_window=True)
        return _OK

    def _after_reset(self, from_orig: bool) -> TcpUpdate:
        """The verdict on a non-SYN, non-RST segment of a reset (CLOSE) connection."""
        me = 0 if from_orig else 1
        side = ("originator", "responder")
        if self.reset_by < 0:  # restored from an older state file: who reset is unknown
            why = "connection was reset (CLOSE); only a new SYN may follow"
        elif self.reset_by == me:
            why = (f"connection was reset by this segment's sender ({side[me]}, CLOSE); "
                   "only a new SYN may follow")
        else:
            why = (f"connection was reset by the {side[1 - me]} (CLOSE): a segment the "
                   f"{side[me]} sent before it saw that RST, which no socket receives any "
                   "more; only a new SYN may follow")
        return TcpUpdate(False, why, after_reset=True)

    def _closing_state(self) -> TcpStateName:
        a, b = self.peers
        fins = (a.fin_end >= 0) + (b.fin_end >= 0)
        if fins == 0:
            return TcpStateName.ESTABLISHED
        if fins == 1:
            acked = a.fin_acked if a.fin_end >= 0 else b.fin_acked
            return TcpStateName.CLOSE_WAIT if acked else TcpStateName.FIN_WAIT
        if a.fin_acked and b.fin_acked:
            return TcpStateName.TIME_WAIT
        return TcpStateName.LAST_ACK

    def _rst(self, seg: TcpSegment, s: TcpPeer, r: TcpPeer, from_orig: bool) -> TcpUpdate:
        if self.state is TcpStateName.CLOSE:
            return _OK
        if self.state is TcpStateName.SYN_SENT and not from_orig:
            if not seg.flags & ACK or seg.ack != r.end:
                return TcpUpdate(False, "RST in SYN_SENT does not acknowledge the SYN",
                                 out_of_window=True)
        elif s.maxwin and (
            seq_diff(seg.seq, s.maxend) > 0 or seq_diff(seg.seq, (s.end - r.maxwin) & _M) < 0
        ):
            # the RST's sequence number must fall in the window the receiver would accept
            return TcpUpdate(False, "RST out of window", out_of_window=True)
        elif self.state is TcpStateName.ESTABLISHED or self.state in _CLOSING:
            exact = self._rst_exact(seg, s, r)
            if exact is not None:
                return exact
        self.state = TcpStateName.CLOSE
        self.reset_by = 0 if from_orig else 1
        return _OK

    @staticmethod
    def _rst_exact(seg: TcpSegment, s: TcpPeer, r: TcpPeer) -> TcpUpdate | None:
        """RFC 5961 §3 for an in-window RST of a synchronized connection: ``None`` when it
        closes (its seq is the receiver's highest ack; or it is a RST+ACK at the sender's
        next sequence number acknowledging everything the receiver sent; or that highest
        ack is not known / not credible), else the verdict on a RST that must not change
        the state."""
        if r.maxack < 0 or not s.maxwin:
            return None  # no ack of the receiver seen yet: the window check alone decides
        lo = (s.end - r.maxwin) & _M
        if seq_diff(r.maxack, lo) < 0 or seq_diff(r.maxack, s.maxend) > 0:
            return None  # the ack lies outside the window (liberal tracking lost it): as before
        d = seq_diff(seg.seq, r.maxack)
        if d == 0:
            return None
        if d > 0 and seg.flags & ACK and seg.seq == s.end and seg.ack == r.end:
            # an abort with its own data not yet acknowledged: at the sender's next sequence
            # number, acknowledging all the receiver sent (both exact: 64 bits to guess)
            return None
        if d < 0:
            # below what the receiver already acknowledged: it discards such a RST silently
            return TcpUpdate(False, f"RST out of window: seq {seg.seq} is before the "
                             f"receiver's highest ack {r.maxack}", out_of_window=True)
        return TcpUpdate(True, f"RST seq {seg.seq} is in the window but not the receiver's "
                         f"next expected sequence number {r.maxack} (RFC 5961): passed "
                         "without closing, the receiver answers it with a challenge ACK",
                         rst_not_exact=True)

    def _window(self, seg: TcpSegment, s: TcpPeer, r: TcpPeer) -> str:
        """Initialise the sender if new; return why the segment is out of window, or ''."""
        f = seg.flags
        end = seg.end
        win = seg.win if f & SYN else seg.win << s.scale
        if s.maxwin == 0:
            if f & SYN:
                s.end = s.maxend = end
                s.maxwin = win or 1
                s.wscale_seen = seg.wscale >= 0
                s.scale = max(seg.wscale, 0)
                if f & ACK and not (s.wscale_seen and r.wscale_seen):
                    s.scale = r.scale = 0  # SYN-ACK: scaling only if both sides offered it
            else:  # pickup mid-stream: trust this segment
                s.end = end
                s.maxwin = win or 1
                s.maxend = (end + s.maxwin) & _M
                if r.maxwin == 0 and f & ACK:
                    r.end = r.maxend = seg.ack
            return ""
        if r.maxwin == 0 and not f & SYN:
            return ""  # the other side has not been seen yet: nothing to check against
        ack = seg.ack if f & ACK else r.end
        if seq_diff(seg.seq, s.maxend) > 0:
            return f"out of window: seq {seg.seq} beyond the receiver's window (max {s.maxend})"
        if seq_diff(end, (s.end - r.maxwin) & _M) < 0:
            return f"out of window: segment ending at {end} is older than one window"
        if seq_diff(ack, r.end) > 0:
            return f"out of window: ack {ack} acknowledges data not yet sent (max {r.end})"
        maxack = max(s.maxwin, MAXACKWINCONST)
        if seq_diff(ack, (r.end - maxack) & _M) < 0:
            return f"out of window: ack {ack} is too old"
        return ""

    def _advance(self, seg: TcpSegment, s: TcpPeer, r: TcpPeer) -> None:
        f = seg.flags
        end = seg.end
        win = seg.win if f & SYN else seg.win << s.scale
        ack = seg.ack if f & ACK else r.end
        if s.maxwin < win:
            s.maxwin = win
        if seq_diff(end, s.end) > 0:
            s.end = end
        if r.maxwin and seq_diff(end, s.maxend) > 0:
            r.maxwin += seq_diff(end, s.maxend)
        if seq_diff((ack + win) & _M, r.maxend) >= 0:
            r.maxend = (ack + win + (1 if win == 0 else 0)) & _M
