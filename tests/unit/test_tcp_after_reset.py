"""Segments after a connection's RST (the tracker's CLOSE state): still dropped, but named.

The bench's ``firewall-state-invalid`` drops were the end of each iperf3 test: the
server's kernel resets the data connection (its socket closed with unread data) while the
client's last segments are still in flight. ``tests/pipeline/test_native_stateful_
differential.py::test_iperf3_end_segments_after_the_reset_are_named`` replays that
through the switch on both fast paths; here the tracker's rules around it, including the
hostile ones (a reset must be in window to close; nothing but a RST or a new SYN passes
after it, whoever sends it)."""

from __future__ import annotations

from vspan.policy.conntrack import Conn
from vspan.policy.portstate import _conn, _conn_data
from vspan.policy.tcp import (
    ACK,
    PSH,
    RST,
    SYN,
    TcpSegment,
    TcpStateName,
    TcpTrack,
    TcpUpdate,
)

C_ISN, S_ISN = 219050235, 3384995433  # the capture's initial sequence numbers


def seg(flags: int, seq: int, ack: int = 0, win: int = 63, payload: int = 0,
        wscale: int = -1) -> TcpSegment:
    return TcpSegment(flags, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, win, payload, wscale)


def established(strict: bool = False) -> TcpTrack:
    """Handshake with window scale 7 both ways, then 64 KiB of client data acknowledged."""
    t, upd = TcpTrack.start(seg(SYN, C_ISN, win=64240, wscale=7), strict)
    assert upd.ok
    assert t.update(seg(SYN | ACK, S_ISN, C_ISN + 1, 65160, wscale=7), False).ok
    assert t.update(seg(ACK, C_ISN + 1, S_ISN + 1), True).ok
    assert t.update(seg(PSH | ACK, C_ISN + 1, S_ISN + 1, payload=65160), True).ok
    assert t.update(seg(ACK, S_ISN + 1, C_ISN + 1 + 65160, 11324), False).ok
    assert t.state is TcpStateName.ESTABLISHED
    return t


def test_the_clients_tail_after_the_servers_reset_is_dropped_and_named() -> None:
    t = established()
    tail = C_ISN + 1 + 65160
    assert t.update(seg(PSH | ACK, tail, S_ISN + 1, payload=65160), True).ok
    # the server resets (RST+ACK at its next sequence number), then answers late segments
    assert t.update(seg(RST | ACK, S_ISN + 1, tail, 11324), False).ok
    assert t.state is TcpStateName.CLOSE and t.reset_by == 1
    assert t.update(seg(RST, S_ISN + 1, 0, 0), False) == TcpUpdate(True)
    assert t.reset_by == 1  # a RST on a closed connection changes nothing
    upd = t.update(seg(PSH | ACK, tail + 65160, S_ISN + 1, payload=560), True)
    assert not upd.ok and upd.after_reset and not upd.out_of_window
    assert upd.reason.startswith("connection was reset by the responder (CLOSE)")
    assert "the originator sent before it saw that RST" in upd.reason


def test_after_its_own_reset_a_side_is_told_so() -> None:
    t = established()
    assert t.update(seg(RST, C_ISN + 1 + 65160), True).ok
    assert t.reset_by == 0
    upd = t.update(seg(ACK, C_ISN + 1 + 65160, S_ISN + 1), True)
    assert not upd.ok and upd.after_reset
    assert "reset by this segment's sender (originator" in upd.reason
    upd = t.update(seg(ACK, S_ISN + 1, C_ISN + 1 + 65160, 11324), False)
    assert not upd.ok and "reset by the originator" in upd.reason


def test_hostile_nothing_but_a_rst_or_new_syn_passes_after_the_reset() -> None:
    """Whatever a segment after the reset claims (in window, far out, a SYN-ACK, a FIN),
    it is dropped, strict or not; only a new SYN re-opens (judged by the rules as new)."""
    for strict in (False, True):
        t = established(strict)
        assert t.update(seg(RST | ACK, S_ISN + 1, C_ISN + 1 + 65160), False).ok
        for s, from_orig in [
            (seg(PSH | ACK, C_ISN + 1 + 65160, S_ISN + 1, payload=100), True),
            (seg(ACK, C_ISN + 1 + 5_000_000, S_ISN + 1), True),
            (seg(PSH | ACK, S_ISN + 1, C_ISN + 1 + 65160, payload=100), False),
            (seg(SYN | ACK, S_ISN + 1, C_ISN + 1 + 65160), False),
            (seg(ACK | 0x01, C_ISN + 1 + 65160, S_ISN + 1), True),
        ]:
            upd = t.update(s, from_orig)
            assert not upd.ok and upd.after_reset, (strict, s)
            assert t.state is TcpStateName.CLOSE
        assert t.update(seg(SYN, 777), True).reopen


def test_a_reset_out_of_window_closes_nothing_and_is_not_after_a_reset() -> None:
    t = established(strict=True)
    upd = t.update(seg(RST, S_ISN + 1 + 10_000_000), False)  # blind reset attempt
    assert not upd.ok and upd.out_of_window and not upd.after_reset
    assert t.state is TcpStateName.ESTABLISHED and t.reset_by == -1


def test_who_reset_survives_a_copy_and_a_migration_and_hostile_values_are_ignored() -> None:
    t = established()
    assert t.update(seg(RST | ACK, S_ISN + 1, C_ISN + 1 + 65160), False).ok
    assert t.clone().reset_by == 1
    c = Conn((6, bytes(4), 1, bytes(4), 2), "out", "1", 10.0)
    c.tcp, c.state = t, t.state
    data = _conn_data(c, 10.0)
    assert _conn(data, 20.0).tcp is not None
    assert _conn(data, 20.0).tcp.reset_by == 1  # type: ignore[union-attr]
    for value in (7, -5):
        data["tcp"]["reset_by"] = value
        assert _conn(data, 20.0).tcp.reset_by == -1  # type: ignore[union-attr]
    del data["tcp"]["reset_by"]  # an export of an older vspan
    old = _conn(data, 20.0).tcp
    assert old is not None and old.reset_by == -1
    upd = old.update(seg(ACK, C_ISN + 1 + 65160, S_ISN + 1), True)
    assert not upd.ok and upd.after_reset
    assert upd.reason == "connection was reset (CLOSE); only a new SYN may follow"
