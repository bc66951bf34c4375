"""The C send loop (``vspan.ports._ring.send`` through ``tx.send_frames(fd=...)``) writes
what the Python loop writes, in order, with the same counters: checked on a datagram
socket pair, with malformed frames and GSO frames for the kernel among plain ones."""

from __future__ import annotations

import socket

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from vspan.ports import ringio
from vspan.ports.base import Frame, PortCounters
from vspan.ports.tx import NO_GSO, GsoSupport, count_native_send, send_frames
from vspan.ports.vnet import F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, VNET_STRUCT

pytestmark = pytest.mark.skipif(ringio._mod is None, reason="vspan.ports._ring was not built")


def _frames() -> list[Frame]:
    eth = bytes.fromhex("020000000002020000000001") + b"\x08\x00"
    gso = VNET_STRUCT.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16)
    tcp = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="PA")
                / Raw(b"t" * 3000))
    out = []
    for i in range(150):
        if i % 17 == 5:
            out.append(Frame(b"\x01\x02"))  # too short: counted as an error
        elif i % 23 == 7:
            out.append(Frame(tcp, gso))  # GSO: cut by the kernel or by us
        elif i % 29 == 3:
            out.append(Frame(eth + bytes(30), gso))  # GSO but no TCP: cannot be cut
        else:
            out.append(Frame(eth + bytes([i]) * (i + 20)))
    return out


def _received(sock: socket.socket) -> list[bytes]:
    """Every datagram waiting on ``sock``, without blocking."""
    sock.setblocking(False)
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


def _run(native: bool, kernel_gso: bool) -> tuple[list[bytes], PortCounters, int]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    counters = PortCounters()
    errors: list[OSError] = []
    try:
        sent = send_frames(_frames(), a.send, a.sendmsg, counters, errors.append, NO_GSO,
                           kernel_gso=kernel_gso, fd=a.fileno() if native else None)
        return _received(b), counters, sent
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("kernel_gso", [True, False], ids=["kernel-cuts", "we-cut"])
def test_sendmmsg_writes_what_the_python_loop_writes(kernel_gso: bool) -> None:
    got_n, c_n, sent_n = _run(True, kernel_gso)
    got_p, c_p, sent_p = _run(False, kernel_gso)
    assert got_n == got_p
    assert sent_n == sent_p > 100
    assert c_n == c_p
    assert c_n.tx_errors > 0 and c_n.tx_segmented > 0
    assert (c_n.tx_segments > 0) != kernel_gso


def test_send_uses_the_gso_table_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C send loop's GSO membership table is built with the GsoSupport, not on every
    batch sent (building it took ~9 µs per batch: a part of every frame's latency)."""
    gso = GsoSupport(frozenset({GSO_TCPV4, GSO_TCPV6}))
    assert gso.table == ringio.gso_table(gso.types)
    assert gso.table[GSO_TCPV4] == 1 and gso.table[GSO_UDP_L4] == 0 and len(gso.table) == 256
    assert gso == GsoSupport(frozenset({GSO_TCPV6, GSO_TCPV4}))  # the table is no identity

    def rebuilt(types: frozenset[int]) -> bytes:
        raise AssertionError(f"GSO table rebuilt for a batch ({sorted(types)})")

    monkeypatch.setattr(ringio, "gso_table", rebuilt)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    counters = PortCounters()
    errors: list[OSError] = []
    try:
        frames = [Frame(bytes.fromhex("020000000002020000000001") + b"\x08\x00" + bytes(50))]
        for _ in range(3):
            assert send_frames(frames, a.send, a.sendmsg, counters, errors.append, gso,
                               fd=a.fileno()) == 1
        assert [len(b.recv(2048)) for _ in range(3)] == [10 + 64] * 3  # vnet header + frame
    finally:
        a.close()
        b.close()
    assert counters.tx_frames == 3 and not errors


@pytest.mark.parametrize("kernel_gso", [True, False], ids=["kernel-cuts", "we-cut"])
def test_a_send_split_by_the_wake_path_writes_and_counts_as_one(kernel_gso: bool) -> None:
    """The engine's native wake path calls ``_ring.send`` itself and hands the frames it
    stopped at to ``send_frames(..., python_first=True)`` (``count_native_send`` counting
    the C part): the same bytes, return value and counters as one ``send_frames`` call."""
    assert ringio._mod is not None
    got_one, c_one, sent_one = _run(True, kernel_gso)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    counters = PortCounters()
    errors: list[OSError] = []
    frames = _frames()
    try:
        nxt, sent, wire, nbytes, segmented, segments, failed, _err = ringio._mod.send(
            a.fileno(), frames, 0, NO_GSO.table, NO_GSO.max_size, kernel_gso)
        assert 0 < nxt < len(frames)  # it stopped at a frame for the Python loop
        count_native_send(counters, wire, nbytes, segmented, segments, failed)
        sent += send_frames(frames[nxt:], a.send, a.sendmsg, counters, errors.append, NO_GSO,
                            kernel_gso=kernel_gso, fd=a.fileno(), python_first=True)
        got = _received(b)
    finally:
        a.close()
        b.close()
    assert (got, counters, sent) == (got_one, c_one, sent_one)
