"""The connection key the native replay builds from a frame (``datapath/_conntrack.h``,
``_native.conn_key``) is the one Python publishes its records under: for random IPv4
TCP/UDP frames (with and without an 802.1Q tag, both directions) it equals
``conntrack.native_key(conn_key(...))`` and ``extacl.native_session_key(session_key(...))``;
frames the native step never keys (ICMP, IPv6, IP options) give ``None``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet

from vspan.config.values import IN, OUT
from vspan.datapath import _native, native
from vspan.datapath.flowkey import extract
from vspan.policy.conntrack import conn_key, native_key
from vspan.policy.extacl import native_session_key, session_key

pytestmark = pytest.mark.skipif(not native.available(), reason="_native was not built")

ADDR = st.builds(lambda a, b: f"10.{a}.{b}.{(a * 7 + b) % 250 + 1}",
                 st.integers(0, 255), st.integers(0, 255))
PORT = st.integers(0, 65535)


def _frame(tagged: bool, l3: Packet) -> bytes:
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return bytes(eth / Dot1Q(vlan=10) / l3 if tagged else eth / l3)


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.booleans(), ADDR, ADDR, PORT, PORT)
def test_native_conn_key_is_the_published_key(tagged: bool, udp: bool, src: str, dst: str,
                                              sport: int, dport: int) -> None:
    l4 = UDP(sport=sport, dport=dport) if udp else TCP(sport=sport, dport=dport, flags="A")
    data = _frame(tagged, IP(src=src, dst=dst) / l4)
    key = extract(data, 1)
    assert key is not None
    for direction, dir_in in ((IN, True), (OUT, False)):
        ck = conn_key(key, data, direction)
        assert ck is not None
        want = native_key(ck[0])
        assert _native.conn_key(data, dir_in) == want
        assert native_session_key(session_key(key, direction)) == want


@pytest.mark.parametrize("frame", [
    _frame(False, IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=7)),
    _frame(False, IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1, dport=2)),
    _frame(False, IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x01")
           / UDP(sport=1, dport=2)),
    _frame(False, IP(src="10.0.0.1", dst="10.0.0.2"))[:30],
])
def test_frames_the_native_step_never_keys(frame: bytes) -> None:
    assert _native.conn_key(frame, True) is None
    assert _native.conn_key(frame, False) is None
