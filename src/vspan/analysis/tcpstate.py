"""TCP connection state as Zeek's conn.log reports it: endpoint states, ``conn_state``, ``history``.

This follows Zeek's TCP session analyzer (``TCPSessionAdapter``: endpoint
states INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED,
RESET; sequence tracking per endpoint; the ``history`` letters) and its
``conn_state()`` function in ``base/protocols/conn/main.zeek``, re-written
for this project. What differs is said where it differs:

* checksums are not verified (like ``zeek -C``): captures on virtual ports
  carry partial checksums from offloading, so there is no ``c`` letter;
* a content gap (``g``) is counted when the peer acknowledges bytes this
  endpoint was never seen sending (Zeek's reassembler does the same), except
  in FIN/RST packets;
* the caller decides the originator (see :mod:`vspan.analysis.flows`) and
  feeds only packets that are not capture duplicates.

Sequence numbers are unwrapped into 64-bit space relative to the last one
seen, so connections longer than 4 GB keep counting.
"""

from __future__ import annotations

INACTIVE = 0
SYN_SENT = 1
SYN_ACK_SENT = 2
PARTIAL = 3
ESTABLISHED = 4
CLOSED = 5
RESET = 6
STATE_NAMES = ("INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED", "CLOSED",
               "RESET")

TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_ACK = 0x10

_MOD = 1 << 32
_HALF = 1 << 31
_TOO_LARGE_SEQ_DELTA = 1 << 20
_UNKNOWN_SCALE = 14  # window scale assumed when the handshake was not seen (lenient)

# history masks (one bit per letter kind and direction)
_H_SYN, _H_FIN, _H_RST, _H_FIN_RST, _H_MULTI, _H_DATA, _H_ACK = (1 << i for i in range(7))


def unwrap(seq: int, ref: int) -> int:
    """The sequence number with the low 32 bits ``seq`` nearest to ``ref`` (64-bit space)."""
    d = (seq - ref) & 0xFFFFFFFF
    return ref + d - _MOD if d >= _HALF else ref + d


class Endpoint:
    """One side of a TCP connection."""

    __slots__ = ("ack_seq", "fin_cnt", "gap_mark", "gap_thresh", "gaps", "hist_last_fin",
                 "hist_last_rst", "hist_last_syn", "hist_seen", "initialized", "is_orig",
                 "last_seq", "max_win", "prev_state", "rxmt", "rxmt_thresh", "scale",
                 "start_seq", "state", "win_edge", "zero_thresh", "zero_windows")

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.state = INACTIVE
        self.prev_state = INACTIVE
        self.initialized = False
        self.start_seq = 0
        self.ack_seq = 0  # highest sequence number of ours the peer acknowledged
        self.last_seq = 0  # one past the highest sequence number we sent
        self.fin_cnt = 0
        self.hist_seen = 0
        self.hist_last_syn = -1
        self.hist_last_fin = -1
        self.hist_last_rst = -1
        self.rxmt = 0
        self.rxmt_thresh = 1
        self.gaps = 0
        self.gap_thresh = 1
        self.gap_mark = 0
        self.zero_windows = 0
        self.zero_thresh = 1
        self.scale: int | None = None  # window scale (None: not negotiated in what we saw)
        self.win_edge: int | None = None  # highest ack + window we advertised (peer's limit)
        self.max_win = 0

    def set_state(self, state: int) -> None:
        """Change state, remembering the previous one."""
        if state != self.state:
            self.prev_state = self.state
            self.state = state

    def init_seq(self, start: int, last: int) -> None:
        """(Re)start sequence tracking: ``start`` is where a SYN would be."""
        self.initialized = True
        self.start_seq = start
        self.ack_seq = start
        self.last_seq = last
        self.gap_mark = last

    def size(self, peer: Endpoint) -> int:
        """Payload bytes from sequence numbers (Zeek's ``TCP_Endpoint::Size``)."""
        if not self.initialized:
            return 0
        if (self.prev_state == SYN_SENT and self.state == RESET and peer.state == INACTIVE
                and self.ack_seq not in (self.start_seq, self.start_seq + 1)):
            return 0
        size = max(self.last_seq, self.ack_seq) - self.start_seq
        if size > 0:
            size -= 1
        if self.fin_cnt and size > 0:
            size -= 1
        return max(size, 0)


# what one packet meant beyond the state: bits of :meth:`TcpConnection.packet`'s result
RETRANSMISSION = 1  # payload (or a SYN/FIN) sent again
OUT_OF_WINDOW = 2  # outside what the receiver's window allows
GAP = 4  # the peer acknowledged bytes never captured (``TcpConnection.gap`` says how many)


def window_scale_option(options: bytes) -> int | None:
    """The window scale of a SYN's TCP options (``None`` when absent)."""
    i = 0
    n = len(options)
    while i < n:
        kind = options[i]
        if kind == 0:
            return None
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n:
            return None
        length = options[i + 1]
        if length < 2 or i + length > n:
            return None
        if kind == 3 and length >= 3:
            return min(options[i + 2], 14)
        i += length
    return None


class TcpConnection:
    """Zeek's view of one TCP connection, fed packet by packet."""

    __slots__ = ("gap", "handshake_acked", "history", "orig", "resp", "syn_ack_seen")

    def __init__(self) -> None:
        self.orig = Endpoint(True)
        self.resp = Endpoint(False)
        self.history: list[str] = []
        self.syn_ack_seen = False
        self.handshake_acked = False  # the originator acknowledged a SYN-ACK
        self.gap = 0  # bytes of the last GAP

    # ---- history -------------------------------------------------------------------------

    def _check(self, ep: Endpoint, mask: int, code: str) -> bool:
        """Record ``code`` the first time; ``True`` when this kind was seen before."""
        if ep.hist_seen & mask:
            return True
        ep.hist_seen |= mask
        self.history.append(code if ep.is_orig else code.lower())
        return False

    def _add(self, ep: Endpoint, code: str) -> None:
        self.history.append(code if ep.is_orig else code.lower())

    def _update_history(self, ep: Endpoint, flags: int, rel_seq: int, length: int) -> bool:
        """Zeek's ``update_history``; ``True`` when a SYN or FIN repeats its sequence number."""
        syn, fin, rst = flags & TH_SYN, flags & TH_FIN, flags & TH_RST
        bits = (syn != 0) + (fin != 0) + (rst != 0)
        repeat = False
        if bits > 1:
            if fin and rst:
                self._check(ep, _H_FIN_RST, "I")
            else:
                self._check(ep, _H_MULTI, "Q")
        elif bits == 1:
            if syn:
                code = "H" if flags & TH_ACK else "S"
                if self._check(ep, _H_SYN, code):
                    if rel_seq != ep.hist_last_syn:
                        self._add(ep, code)
                    else:
                        repeat = True
                ep.hist_last_syn = rel_seq
            if fin:
                end = rel_seq + length
                if self._check(ep, _H_FIN, "F"):
                    if end != ep.hist_last_fin:
                        self._add(ep, "F")
                    else:
                        repeat = True
                ep.hist_last_fin = end
            if rst:
                if self._check(ep, _H_RST, "R") and rel_seq != ep.hist_last_rst:
                    self._add(ep, "R")
                ep.hist_last_rst = rel_seq
        elif length:
            self._check(ep, _H_DATA, "D")
        elif flags & TH_ACK:
            self._check(ep, _H_ACK, "A")
        return repeat

    def _scaled(self, ep: Endpoint, code: str, counter: str, thresh: str) -> None:
        n = getattr(ep, counter) + 1
        setattr(ep, counter, n)
        t = getattr(ep, thresh)
        if n == t:
            self._add(ep, code)
            setattr(ep, thresh, t * 10)

    def flip(self) -> None:
        """Swap originator and responder (Zeek's ``FlipRoles``: adds ``^``)."""
        self.orig, self.resp = self.resp, self.orig
        self.orig.is_orig = True
        self.resp.is_orig = False
        self.history.append("^")

    # ---- packets -------------------------------------------------------------------------

    def packet(self, is_orig: bool, flags: int, seq: int, ack: int, length: int, window: int,
               wscale: int | None) -> int:
        """One segment: flags, 32-bit seq/ack, payload length, raw window, SYN's window scale.

        Returns the bits ``RETRANSMISSION``, ``OUT_OF_WINDOW``, ``GAP`` that apply.
        """
        v = 0
        ep = self.orig if is_orig else self.resp
        peer = self.resp if is_orig else self.orig
        syn, fin, rst, has_ack = flags & TH_SYN, flags & TH_FIN, flags & TH_RST, flags & TH_ACK
        seg_len = length + (1 if syn else 0) + (1 if fin else 0) - (length if rst else 0)
        seq_u = unwrap(seq, ep.last_seq) if ep.initialized else seq
        self._init_endpoint(ep, flags, seq_u, seg_len)
        rel_seq = seq_u - ep.start_seq
        if self._update_history(ep, flags, rel_seq, length):
            v |= RETRANSMISSION
        if window == 0 and not rst and peer.state != CLOSED and ep.state != RESET:
            self._scaled(ep, "W", "zero_windows", "zero_thresh")
        if syn:
            self._init_window(ep, peer, has_ack != 0, wscale)
            if has_ack:
                self.syn_ack_seen = True
        elif peer.win_edge is not None and self._outside_window(ep, peer, seq_u,
                                                                0 if rst else seg_len):
            v |= OUT_OF_WINDOW
        if fin:
            ep.fin_cnt += 1
        ack_u = 0
        if has_ack:
            if is_orig and self.syn_ack_seen and not syn:
                self.handshake_acked = True
            if peer.state == INACTIVE:
                base = unwrap(ack, peer.last_seq) if peer.initialized else ack
                peer.init_seq(base - 1, base - 1)
                ack_u = base
            else:
                ack_u = unwrap(ack, peer.ack_seq)
                if not rst and ack_u > peer.ack_seq:
                    peer.ack_seq = ack_u
            if not syn and not rst and ep.state not in (CLOSED, RESET):
                self._advertise(ep, ack_u, window)
        if self._update_last_seq(ep, seq_u + seg_len, flags, length):
            v |= RETRANSMISSION
            self._scaled(ep, "T", "rxmt", "rxmt_thresh")
        self._state_machine(ep, peer, is_orig, flags, seq_u, length)
        if has_ack and not (fin or rst) and self._ack_received(peer, ack_u):
            v |= GAP
        return v

    def _init_endpoint(self, ep: Endpoint, flags: int, seq: int, seg_len: int) -> None:
        syn = flags & TH_SYN
        st = ep.state
        if st == INACTIVE:
            if syn:
                ep.init_seq(seq, seq + seg_len)
            else:  # a partial connection: number as though a SYN had been seen
                ep.init_seq(seq - 1, seq)
        elif not syn:
            return
        elif ((st in (SYN_SENT, SYN_ACK_SENT) and seq != ep.start_seq)
              or st in (ESTABLISHED, PARTIAL)
              or (st == RESET and ep.prev_state == INACTIVE)):
            ep.init_seq(seq, seq + seg_len)

    def _init_window(self, ep: Endpoint, peer: Endpoint, has_ack: bool,
                     wscale: int | None) -> None:
        if wscale is None:
            ep.scale = 0
            if has_ack:  # not negotiated
                peer.scale = 0
        elif has_ack and peer.scale == 0:  # the SYN offered none: not negotiated (RFC 7323)
            ep.scale = 0
        else:
            ep.scale = wscale
            if has_ack and peer.scale is None:  # the SYN was not seen: assume it offered
                peer.scale = _UNKNOWN_SCALE

    def _advertise(self, ep: Endpoint, ack: int, window: int) -> None:
        """``ep`` advertised ``window`` at ``ack``: the peer may send up to the edge."""
        scaled = window << (ep.scale if ep.scale is not None else _UNKNOWN_SCALE)
        edge = ack + scaled
        if ep.win_edge is None or edge > ep.win_edge:
            ep.win_edge = edge
        if scaled > ep.max_win:
            ep.max_win = scaled

    def _outside_window(self, ep: Endpoint, peer: Endpoint, seq: int, seg_len: int) -> bool:
        """Whether the segment lies outside what the peer's window allows (either way)."""
        edge = peer.win_edge
        if edge is None or not ep.initialized:
            return False
        if seq > edge:
            return True
        return seq + seg_len < ep.ack_seq - max(peer.max_win, 65535)

    def _update_last_seq(self, ep: Endpoint, last: int, flags: int, length: int) -> bool:
        """Advance the endpoint's highest sequence; ``True``: payload sent again."""
        delta = last - ep.last_seq
        if flags & (TH_SYN | TH_RST) and abs(delta) > _TOO_LARGE_SEQ_DELTA:
            return False
        if flags & TH_FIN and ep.last_seq == ep.start_seq + 1:
            ep.last_seq = last
            return False
        if ep.state == RESET:
            return False
        if delta > 0:
            ep.last_seq = last
            return False
        return length > 0

    def _ack_received(self, peer: Endpoint, ack: int) -> bool:
        """Bytes the peer was acknowledged for but never seen sending: a capture gap."""
        if peer.state in (INACTIVE, CLOSED, RESET):
            return False
        seen = max(peer.last_seq, peer.gap_mark)
        if ack <= seen:
            return False
        self.gap = ack - seen
        peer.gap_mark = ack
        self._scaled(peer, "G", "gaps", "gap_thresh")
        return True

    def _state_machine(self, ep: Endpoint, peer: Endpoint, is_orig: bool, flags: int,
                       seq: int, length: int) -> None:
        syn, fin, rst, has_ack = flags & TH_SYN, flags & TH_FIN, flags & TH_RST, flags & TH_ACK
        st = ep.state
        if st == INACTIVE:
            if syn:
                if is_orig:
                    ep.set_state(SYN_ACK_SENT if has_ack else SYN_SENT)
                else:
                    if not has_ack and peer.state == SYN_ACK_SENT and seq == ep.start_seq:
                        self.flip()  # a SYN answered a SYN-ACK: the roles were reversed
                        peer.set_state(ESTABLISHED)
                    if peer.state == SYN_SENT:
                        peer.set_state(ESTABLISHED)
                    ep.set_state(ESTABLISHED)
            if fin:
                ep.set_state(CLOSED)
            if rst:
                ep.set_state(RESET)
            if ep.state == INACTIVE:
                if not is_orig and length == 0 and self.orig.state == SYN_SENT:
                    pass  # an ACK of the SYN before the SYN-ACK: not a partial connection
                elif has_ack and peer.state == ESTABLISHED:
                    ep.set_state(ESTABLISHED)  # the SYN was missed
                else:
                    ep.set_state(PARTIAL)
        elif st in (SYN_SENT, SYN_ACK_SENT):
            if fin:
                ep.set_state(CLOSED)
            if rst:
                ep.set_state(RESET)
        elif st in (ESTABLISHED, PARTIAL):
            if syn and st == PARTIAL and peer.state == INACTIVE and not has_ack:
                ep.set_state(SYN_SENT)
            if fin and not rst:
                ep.set_state(CLOSED)
                if peer.state == RESET and peer.prev_state == CLOSED:
                    peer.set_state(CLOSED)  # the peer's FIN then RST was a normal close
            if rst:
                ep.set_state(RESET)
        elif st == CLOSED and rst and peer.state != CLOSED:
            ep.set_state(RESET)

    # ---- results -------------------------------------------------------------------------

    def conn_state(self) -> str:
        """Zeek's ``conn_state`` for TCP."""
        os_, rs = self.orig.state, self.resp.state
        o_inactive = os_ in (INACTIVE, PARTIAL)
        r_inactive = rs in (INACTIVE, PARTIAL)
        if rs == RESET:
            if os_ in (SYN_SENT, SYN_ACK_SENT) or (
                    os_ == RESET and self.orig.size(self.resp) == 0
                    and self.resp.size(self.orig) == 0):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os_ == RESET:
            if r_inactive:
                return "RSTOS0" if _syn_then_rst(self.history_text()) else "OTH"
            return "RSTO"
        if rs == CLOSED and os_ == CLOSED:
            return "SF"
        if os_ == CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == CLOSED:
            return "SHR" if o_inactive else "S3"
        if os_ == SYN_SENT and rs == INACTIVE:
            return "S0"
        if os_ == ESTABLISHED and rs == ESTABLISHED:
            return "S1"
        return "OTH"

    def history_text(self) -> str:
        """The history letters."""
        return "".join(self.history)

    def bytes(self) -> tuple[int, int]:
        """Payload bytes (originator, responder) from sequence numbers."""
        return self.orig.size(self.resp), self.resp.size(self.orig)


def _syn_then_rst(history: str) -> bool:
    """Zeek's ``/\\^?S[^HAFGIQ]*R.*/``: a SYN, then a RST, no handshake or data between."""
    h = history[1:] if history.startswith("^") else history
    if not h.startswith("S"):
        return False
    for ch in h[1:]:
        if ch == "R":
            return True
        if ch in "HAFGIQ":
            return False
    return False
