"""Native ERSPAN end to end: a switch whose remote mirror sessions send over real raw GRE
sockets (to 127.0.0.1) emits, with the native replay, the same encapsulated copies (every
byte but the Type III timestamp) with the same sequence numbers and counters as with the
Python replay — ERSPAN II, III (with the platform subheader) and plain GRE."""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests.helpers.differential import fastpath
from tests.pipeline.harness import make_switch
from vspan.datapath import native
from vspan.packet.build import udp_frame

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="raw GRE sockets need root"),
    pytest.mark.skipif(not native.available(), reason="_native was not built"),
]

CONFIG = """
ports:
  a: {type: memory}
  b: {type: memory}
mirrors:
  er:
    sources: [{port: a, direction: both}]
    erspan: {type: %s, remote_ip: 127.0.0.1, session_id: %d%s}
"""


def _copies(rx: socket.socket, session: int, kind: str) -> list[bytes]:
    """GRE payloads of our session waiting on the raw socket (IP header removed)."""
    out = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            pkt = rx.recv(65536)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        gre = pkt[(pkt[0] & 0x0F) * 4:]
        if kind == "gre":
            ours = bytes.fromhex("02000000a0")
            if gre[2:4] == b"\x65\x58" and ours in (gre[8:13], gre[14:19]):
                out.append(gre)
        elif len(gre) >= 12 and ((gre[10] << 8) | gre[11]) & 0x3FF == session:
            out.append(gre)
    return out


def _run(mode: str, kind: str, session: int, extra: str) -> tuple[list[bytes], dict[str, int],
                                                                  int]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    with fastpath(mode):
        sw = make_switch(CONFIG % (kind, session, extra))
    try:
        m = next(iter(sw.engine.state.mirrors.values()))
        assert m.sender is not None, m.dest_error
        sw.send("b", udp_frame("02:00:00:00:a0:02", "02:00:00:00:a0:01", "10.0.0.2",
                               "10.0.0.1", 9, 9, b""))
        for i in range(40):
            batch = [udp_frame("02:00:00:00:a0:01", "02:00:00:00:a0:02", "10.0.0.1",
                               "10.0.0.2", 1000 + i % 8, 9, b"x" * (i * 7 % 300))
                     for _ in range(5)]
            sw.send("a", *batch)
        copies = _copies(rx, session, kind)
        nat = sw.engine.fastpath.native
        counters = m.counters()
        return copies, {k: v for k, v in counters.items() if isinstance(v, int)}, (
            nat.replayed if nat is not None else 0)
    finally:
        sw.engine.close()
        rx.close()


@pytest.mark.parametrize("kind,extra", [("erspan2", ""), ("erspan3", ""),
                                        ("erspan3", ", platform_subheader: true"),
                                        ("gre", "")])
def test_native_erspan_is_the_python_erspan(kind: str, extra: str) -> None:
    session = 900 + os.getpid() % 100
    got_n, c_n, replayed = _run("native", kind, session, extra)
    got_p, c_p, _ = _run("python", kind, session, extra)
    assert replayed > 100  # the copies were made by the native replay
    assert len(got_n) == len(got_p) == 201  # every frame a sent, and b's frame to a
    if kind == "erspan3":  # the timestamp (and platform seconds) differ: the rest must not
        def mask(p: bytes) -> bytes:
            p = p[:12] + bytes(4) + p[16:]
            return p[:24] + bytes(4) + p[28:] if extra else p
        got_n, got_p = [mask(p) for p in got_n], [mask(p) for p in got_p]
    assert got_n == got_p
    assert c_n == c_p
