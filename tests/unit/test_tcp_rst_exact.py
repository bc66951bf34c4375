"""A RST closes a tracked connection only at the receiver's next expected sequence number.

RFC 5961 §3: a receiver (Linux is one) accepts a RST only when its sequence number is
exactly RCV.NXT; any other RST inside the window it ignores and answers with a challenge
ACK. The tracker used to close on any in-window RST, so a blind attacker guessing a
sequence number in the window killed connections *through the switch* that both endpoints
survived. Now each side's highest in-window ACK is tracked (``TcpPeer.maxack``, Linux's
``td_maxack``): a RST at it closes; an in-window RST beyond it passes without changing the
state (so the challenge ACK can be answered); one before it is dropped as out of window.
"""

from __future__ import annotations

from typing import Any

import pytest

from vspan.policy.conntrack import Conn
from vspan.policy.portstate import _conn, _conn_data
from vspan.policy.tcp import ACK, FIN, PSH, RST, SYN, TcpSegment, TcpStateName, TcpTrack

M = 0xFFFFFFFF


def seg(flags: int, seq: int, ack: int = 0, win: int = 502, payload: int = 0,
        wscale: int = -1) -> TcpSegment:
    return TcpSegment(flags, seq & M, ack & M, win, payload, wscale)


def established(c_isn: int, s_isn: int, strict: bool = False) -> TcpTrack:
    """Handshake (window scale 7), then 10000 bytes each way, all acknowledged."""
    t, upd = TcpTrack.start(seg(SYN, c_isn, win=64240, wscale=7), strict)
    assert upd.ok
    assert t.update(seg(SYN | ACK, s_isn, c_isn + 1, 65160, wscale=7), False).ok
    assert t.update(seg(ACK, c_isn + 1, s_isn + 1), True).ok
    assert t.update(seg(PSH | ACK, c_isn + 1, s_isn + 1, payload=10000), True).ok
    assert t.update(seg(PSH | ACK, s_isn + 1, c_isn + 10001, payload=10000), False).ok
    assert t.update(seg(ACK, c_isn + 10001, s_isn + 10001), True).ok
    assert t.state is TcpStateName.ESTABLISHED
    assert t.peers[0].maxack == (s_isn + 10001) & M
    assert t.peers[1].maxack == (c_isn + 10001) & M
    return t


def state(t: TcpTrack) -> TcpStateName:
    """The state now (read through a call: mypy keeps no narrowing across updates)."""
    return t.state


# ISN pairs: plain, and both sides wrapping around 2^32 during the exchange
ISNS = [(1000, 500000), (M - 4000, M - 100)]


@pytest.mark.parametrize(("c_isn", "s_isn"), ISNS)
@pytest.mark.parametrize("strict", [False, True])
def test_rst_at_the_receivers_highest_ack_closes(c_isn: int, s_isn: int,
                                                 strict: bool) -> None:
    for from_orig in (True, False):
        t = established(c_isn, s_isn, strict)
        seq = c_isn + 10001 if from_orig else s_isn + 10001
        upd = t.update(seg(RST | ACK, seq, 0), from_orig)
        assert upd.ok and not upd.rst_not_exact
        assert t.state is TcpStateName.CLOSE and t.reset_by == (0 if from_orig else 1)


@pytest.mark.parametrize(("c_isn", "s_isn"), ISNS)
@pytest.mark.parametrize("strict", [False, True])
def test_blind_in_window_rst_does_not_close_and_the_challenge_ack_flows(
        c_isn: int, s_isn: int, strict: bool) -> None:
    t = established(c_isn, s_isn, strict)
    # a forged RST "from the server" to the client, 3000 into the client's window
    upd = t.update(seg(RST, s_isn + 10001 + 3000), False)
    assert upd.ok and upd.rst_not_exact and not upd.out_of_window
    assert "challenge ACK" in upd.reason
    assert t.state is TcpStateName.ESTABLISHED and t.reset_by == -1
    # the client's challenge ACK (its own next seq, its RCV.NXT) reaches the server
    assert t.update(seg(ACK, c_isn + 10001, s_isn + 10001), True).ok
    # the stream goes on both ways
    assert t.update(seg(PSH | ACK, c_isn + 10001, s_isn + 10001, payload=1448), True).ok
    assert t.update(seg(PSH | ACK, s_isn + 10001, c_isn + 11449, payload=100), False).ok
    assert t.update(seg(ACK, c_isn + 11449, s_isn + 10101), True).ok
    assert t.state is TcpStateName.ESTABLISHED
    # one past the exact number is no better
    assert t.update(seg(RST, s_isn + 10101 + 1), False).rst_not_exact
    # a genuine RST (what a closed peer answers a challenge ACK with: seq = its ack) closes
    assert t.update(seg(RST, s_isn + 10101), False).ok
    assert state(t) is TcpStateName.CLOSE


@pytest.mark.parametrize(("c_isn", "s_isn"), ISNS)
def test_rst_before_the_receivers_highest_ack_is_dropped(c_isn: int, s_isn: int) -> None:
    """In the tracked window but below what the receiver acknowledged: the receiver would
    discard it silently (outside its receive window); dropped, nothing changes."""
    t = established(c_isn, s_isn)
    upd = t.update(seg(RST, s_isn + 10001 - 1), False)
    assert not upd.ok and upd.out_of_window
    assert "before the receiver's highest ack" in upd.reason
    assert t.state is TcpStateName.ESTABLISHED
    assert t.update(seg(PSH | ACK, s_isn + 10001, c_isn + 10001, payload=10), False).ok


def test_out_of_window_rst_still_dropped() -> None:
    t = established(*ISNS[0])
    upd = t.update(seg(RST, ISNS[0][1] + 10001 + 5_000_000), False)
    assert not upd.ok and upd.out_of_window and upd.reason == "RST out of window"
    assert t.state is TcpStateName.ESTABLISHED


def test_rst_before_any_ack_of_the_receiver_is_judged_by_the_window_alone() -> None:
    """A connection picked up mid-stream from one side only: the receiver's highest ack
    is not known, so an in-window RST closes (the behaviour before maxack existed)."""
    t, upd = TcpTrack.start(seg(ACK, 7000, 90000, win=1000), False)
    assert upd.ok and t.peers[0].maxack == 90000 and t.peers[1].maxack == -1
    assert t.update(seg(RST, 7000 + 123), True).ok
    assert t.state is TcpStateName.CLOSE


def test_a_forged_out_of_window_ack_does_not_move_the_highest_ack() -> None:
    """Non-strict passes an out-of-window segment, but its ack must not become the exact
    value a following forged RST then matches."""
    c_isn, s_isn = ISNS[0]
    t = established(c_isn, s_isn)
    forged_ack = s_isn + 10001 + 5000  # beyond what the server sent (check III)
    upd = t.update(seg(ACK, c_isn + 10001, forged_ack), True)
    assert upd.ok and upd.out_of_window
    assert t.peers[0].maxack == (s_isn + 10001) & M
    assert t.update(seg(RST, forged_ack), False).rst_not_exact
    assert t.state is TcpStateName.ESTABLISHED


def test_a_closing_connection_is_protected_too() -> None:
    """Half-closed (the client's FIN acknowledged, the server still sending: CLOSE_WAIT)
    lives long: a non-exact RST does not end it, the exact one does."""
    c_isn, s_isn = ISNS[0]
    t = established(c_isn, s_isn)
    assert t.update(seg(FIN | ACK, c_isn + 10001, s_isn + 10001), True).ok
    assert t.update(seg(ACK, s_isn + 10001, c_isn + 10002), False).ok
    assert t.state is TcpStateName.CLOSE_WAIT
    assert t.update(seg(RST, c_isn + 10002 + 500), True).rst_not_exact
    assert t.state is TcpStateName.CLOSE_WAIT
    assert t.update(seg(RST, c_isn + 10002), True).ok
    assert state(t) is TcpStateName.CLOSE


def test_clone_and_describe_carry_the_highest_ack() -> None:
    t = established(*ISNS[1])
    c = t.clone()
    assert [p.maxack for p in c.peers] == [p.maxack for p in t.peers]
    c.peers[0].maxack = 5
    assert t.peers[0].maxack != 5
    assert t.peers[1].as_dict()["maxack"] == t.peers[1].maxack


def _exported(t: TcpTrack) -> dict[str, Any]:
    c = Conn((6, bytes(4), 1, bytes(4), 2), "out", "r1", 100.0)
    c.tcp, c.state = t, t.state
    return _conn_data(c, 200.0)


def test_migration_round_trip_keeps_the_highest_ack() -> None:
    c_isn, s_isn = ISNS[1]
    data = _exported(established(c_isn, s_isn))
    assert [p["maxack"] for p in data["tcp"]["peers"]] == [(s_isn + 10001) & M,
                                                           (c_isn + 10001) & M]
    t = _conn(data, 500.0).tcp
    assert t is not None
    assert t.update(seg(RST, s_isn + 10001 + 7), False).rst_not_exact
    assert t.update(seg(RST, s_isn + 10001), False).ok and t.state is TcpStateName.CLOSE


def test_an_old_export_without_the_highest_ack_behaves_as_before() -> None:
    data = _exported(established(*ISNS[0]))
    for p in data["tcp"]["peers"]:
        del p["maxack"]
    t = _conn(data, 500.0).tcp
    assert t is not None and [p.maxack for p in t.peers] == [-1, -1]
    assert t.update(seg(RST, ISNS[0][1] + 10001 + 3000), False).ok
    assert t.state is TcpStateName.CLOSE  # not known yet: the window alone decides


@pytest.mark.parametrize("hostile", [-2, 2**32, 2**64, "12", 1.5, True, None, [1]])
def test_hostile_highest_ack_in_an_import_is_ignored(hostile: object) -> None:
    data = _exported(established(*ISNS[0]))
    data["tcp"]["peers"][0]["maxack"] = hostile
    t = _conn(data, 500.0).tcp
    assert t is not None and t.peers[0].maxack == -1
    assert t.peers[1].maxack == (ISNS[0][0] + 10001) & M


@pytest.mark.parametrize(("c_isn", "s_isn"), ISNS)
def test_an_abort_with_unacknowledged_data_closes(c_isn: int, s_isn: int) -> None:
    """The server writes its last 500 bytes and aborts (close with unread data): its
    RST+ACK, right behind the data the client has not acknowledged yet, is at the
    server's next sequence number and acknowledges all the client sent — it closes.
    Missing either exact number (or the ACK flag), it does not."""
    for flags, seq_off, ack_off, closes in [(RST | ACK, 0, 0, True), (RST, 0, 0, False),
                                            (RST | ACK, 0, -1, False),
                                            (RST | ACK, -1, 0, False)]:
        t = established(c_isn, s_isn)
        assert t.update(seg(PSH | ACK, s_isn + 10001, c_isn + 10001, payload=500), False).ok
        upd = t.update(seg(flags, s_isn + 10501 + seq_off, c_isn + 10001 + ack_off), False)
        assert upd.ok and upd.rst_not_exact != closes, (flags, seq_off, ack_off)
        assert (t.state is TcpStateName.CLOSE) == closes
