"""The C established-connection TCP step (``datapath/_tcpstep.h``) is the Python tracker's
(``policy/tcp.py``) for the segments it takes: on random ESTABLISHED connections (window
edges near each other, near the sequence wrap, scaled windows) and random ACK / PSH+ACK
segments it admits exactly the in-window ones and leaves every window edge where
``TcpTrack.update`` does; it hands back every other segment (out of window — strict or
not —, SYN/FIN/RST/URG, a side not seen yet) without changing anything. Its header
parser is ``parse_segment`` (IPv4/IPv6, options, truncated and padded frames)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw

from vspan.datapath import _native, native
from vspan.datapath.flowkey import ETH_P_IPV4, extract
from vspan.policy.tcp import ACK, PSH, TcpPeer, TcpSegment, TcpStateName, TcpTrack, parse_segment

pytestmark = pytest.mark.skipif(not native.available(), reason="_native was not built")

M = 0xFFFFFFFF
PeerT = tuple[int, int, int, int, int]

BASE = st.sampled_from([0, 1000, 2**31 - 5, 2**32 - 70000, 2**32 - 3])
NEAR = st.integers(-140000, 140000)
WIN = st.sampled_from([0, 1, 512, 8192, 65535, 66000, 200000, 2**20, 2**30])


def _peer(t: PeerT) -> TcpPeer:
    p = TcpPeer()
    p.end, p.maxend, p.maxwin, p.scale, p.maxack = t
    return p


def _tuple(p: TcpPeer) -> PeerT:
    return (p.end, p.maxend, p.maxwin, p.scale, p.maxack)


@st.composite
def peers(draw: st.DrawFn) -> tuple[PeerT, PeerT]:
    """Two sides' window edges around one base (so checks fall either way)."""
    base = draw(BASE)

    def one() -> PeerT:
        end = (base + draw(NEAR)) & M
        maxwin = draw(WIN)
        # the highest ack: not known yet, or near the base (either side of the next ack)
        maxack = draw(st.one_of(st.just(-1), NEAR.map(lambda d: (base + d) & M)))
        return (end, (end + draw(NEAR)) & M, maxwin, draw(st.integers(0, 14)), maxack)

    return one(), one()


@settings(max_examples=3000, deadline=None)
@given(pr=peers(), from_orig=st.booleans(), strict=st.booleans(),
       flags=st.sampled_from([ACK, ACK | PSH, ACK | PSH, ACK, ACK | 0x20, ACK | 0x01,
                              ACK | 0x04, PSH, 0, ACK | 0x40 | 0x80]),
       seq_off=NEAR, ack_off=NEAR, win=st.sampled_from([0, 1, 100, 8192, 65535]),
       payload=st.sampled_from([0, 1, 100, 1448, 65000]))
def test_step_is_the_python_tracker(pr: tuple[PeerT, PeerT], from_orig: bool, strict: bool,
                                    flags: int, seq_off: int, ack_off: int, win: int,
                                    payload: int) -> None:
    s_t, r_t = pr
    t = TcpTrack(strict)
    t.state = TcpStateName.ESTABLISHED
    s, r = _peer(s_t), _peer(r_t)
    t.peers = (s, r) if from_orig else (r, s)
    seg = TcpSegment(flags, (s_t[0] + seq_off) & M, (r_t[0] + ack_off) & M, win, payload, -1)
    got = _native.tcp_step(s_t, r_t, (flags, seg.seq, seg.ack, win, payload))
    upd = t.update(seg, from_orig)
    if got is None:
        # handed back: Python must not see a plain in-window established segment
        plain = flags in (ACK, ACK | PSH) and s_t[2] and r_t[2]
        assert not plain or upd.out_of_window or not upd.ok, (upd, s_t, r_t, seg)
        return
    assert upd.ok and not upd.out_of_window and not upd.reason, upd
    assert t.state is TcpStateName.ESTABLISHED
    assert got == (_tuple(s), _tuple(r))
    assert t.oow == 0


def test_step_hands_back_sides_not_seen() -> None:
    seen = (1000, 9192, 8192, 0, -1)
    seg = (ACK, 1000, 1000, 8192, 0)
    assert _native.tcp_step((1000, 1000, 0, 0, -1), seen, seg) is None
    assert _native.tcp_step(seen, (1000, 1000, 0, 0, -1), seg) is None
    assert _native.tcp_step(seen, seen, seg) is not None


def test_step_rejects_fields_out_of_range() -> None:
    with pytest.raises(ValueError):
        _native.tcp_step((1, 1, 1, 15, -1), (1, 1, 1, 0, -1), (ACK, 0, 0, 0, 0))
    with pytest.raises(ValueError):
        _native.tcp_step((1, 1, 1, 0, -1), (1, 1, 1, 0, -1), (ACK, 0, 0, 70000, 0))
    with pytest.raises(ValueError):  # a highest ack that is no sequence number
        _native.tcp_step((1, 1, 1, 0, -2), (1, 1, 1, 0, -1), (ACK, 0, 0, 0, 0))
    with pytest.raises(ValueError):
        _native.tcp_step((1, 1, 1, 0, -1), (1, 1, 1, 0, 2**32), (ACK, 0, 0, 0, 0))


@settings(max_examples=400, deadline=None)
@given(v6=st.booleans(), tag=st.booleans(), size=st.integers(0, 200),
       opts=st.sampled_from([[], [("NOP", None), ("MSS", 1460)], [("Timestamp", (1, 2))]]),
       flags=st.sampled_from(["A", "PA", "FA", "R", "S"]), cut=st.integers(0, 60),
       pad=st.binary(max_size=8), zero_len=st.booleans())
def test_parse_is_parse_segment(v6: bool, tag: bool, size: int, opts: list[tuple[str, object]],
                                flags: str, cut: int, pad: bytes, zero_len: bool) -> None:
    eth: Packet = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    if tag:
        eth = eth / Dot1Q(vlan=7)
    ip: Packet = IPv6(src="2001:db8::1", dst="2001:db8::2") if v6 else IP(
        src="10.0.0.1", dst="10.0.0.2")
    data = bytes(eth / ip / TCP(sport=5, dport=6, seq=2**32 - 7, ack=99, flags=flags,
                                window=1234, options=opts) / Raw(b"x" * size)) + pad
    l3 = 18 if tag else 14
    if zero_len:  # an IP length of 0 (offloaded super-frame): the frame's end counts
        at = l3 + (4 if v6 else 2)
        data = data[:at] + b"\0\0" + data[at + 2:]
    key = extract(data, 1)
    assert key is not None
    data = data[:max(key.l4_off, len(data) - cut)]
    want = parse_segment(data, key)
    got = _native.tcp_segment(data, key.l3_off, key.l4_off, key.eth_type == ETH_P_IPV4)
    if want is None:
        assert got is None
    else:
        assert got == (want.flags, want.seq, want.ack, want.win, want.payload)


def _both(s_t: PeerT, r_t: PeerT, seq: int, ack: int, payload: int = 0,
          win: int = 8192) -> bool:
    """Whether C takes the segment; asserts Python agrees (in window and same edges)."""
    t = TcpTrack(True)
    t.state = TcpStateName.ESTABLISHED
    s, r = _peer(s_t), _peer(r_t)
    t.peers = (s, r)
    got = _native.tcp_step(s_t, r_t, (ACK, seq & M, ack & M, win, payload))
    upd = t.update(TcpSegment(ACK, seq & M, ack & M, win, payload, -1), True)
    assert (got is not None) == upd.ok, (got, upd)
    if got is not None:
        assert got == (_tuple(s), _tuple(r))
    return got is not None


@pytest.mark.parametrize("base", [0, 2**32 - 10])
def test_each_window_check_exactly_at_its_edge(base: int) -> None:
    s_t = ((base + 5000) & M, (base + 9000) & M, 1000, 0, -1)  # may send up to base+9000
    r_t = ((base + 200000) & M, (base + 300000) & M, 4000, 0, -1)
    ack = base + 200000
    # I: seq <= sender.maxend
    assert _both(s_t, r_t, base + 9000, ack)
    assert not _both(s_t, r_t, base + 9001, ack)
    # II: end >= sender.end - receiver.maxwin (4000)
    assert _both(s_t, r_t, base + 1000, ack)
    assert not _both(s_t, r_t, base + 999, ack)
    assert _both(s_t, r_t, base + 900, ack, payload=100)
    # III: ack <= receiver.end
    assert not _both(s_t, r_t, base + 5000, ack + 1)
    # IV: ack >= receiver.end - max(sender.maxwin, 66000)
    assert _both(s_t, r_t, base + 5000, ack - 66000)
    assert not _both(s_t, r_t, base + 5000, ack - 66001)
    big = (s_t[0], s_t[1], 100000, 0, -1)
    assert _both(big, r_t, base + 5000, ack - 100000)
    assert not _both(big, r_t, base + 5000, ack - 100001)


@pytest.mark.parametrize("base", [0, 2**32 - 10])
def test_step_moves_the_highest_ack_as_python_does(base: int) -> None:
    """The sender's maxack (the exact-RST check's anchor) moves only forward, across the
    sequence wrap, and only on an in-window segment: C leaves it where Python does."""
    r_t = ((base + 200000) & M, (base + 300000) & M, 4000, 0, -1)
    ack = base + 200000
    for maxack in (-1, (ack - 10) & M, ack & M, (ack + 10) & M):
        s_t = ((base + 5000) & M, (base + 9000) & M, 1000, 0, maxack)
        assert _both(s_t, r_t, base + 5000, ack)
        got = _native.tcp_step(s_t, r_t, (ACK, (base + 5000) & M, ack & M, 8192, 0))
        assert got is not None
        want = ack & M if maxack == -1 or maxack == (ack - 10) & M else maxack
        assert got[0][4] == want and got[1][4] == -1
    # out of window (III): nothing moves, the highest ack included
    s_t = ((base + 5000) & M, (base + 9000) & M, 1000, 0, (ack - 10) & M)
    assert not _both(s_t, r_t, base + 5000, ack + 1)
