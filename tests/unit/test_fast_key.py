"""The cheap cache key must never merge two frames whose full flow keys differ."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet

from vspan.datapath.flowkey import extract, fast_key

# Python's flow keys against each other: no switch, engine or port (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent


MACS = ["02:00:00:00:00:01", "02:00:00:00:00:02"]
IPS = ["10.0.0.1", "10.0.0.2"]


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    eth = Ether(src=draw(st.sampled_from(MACS)), dst=draw(st.sampled_from(MACS)))
    if draw(st.booleans()):
        eth = eth / Dot1Q(vlan=draw(st.sampled_from([1, 2])), prio=draw(st.sampled_from([0, 5])))
    ip = IP(src=draw(st.sampled_from(IPS)), dst=draw(st.sampled_from(IPS)),
            ttl=draw(st.integers(1, 255)), id=draw(st.integers(0, 65535)))
    kind = draw(st.sampled_from(["tcp", "udp", "icmp"]))
    l4: Packet
    if kind == "tcp":
        l4 = TCP(sport=draw(st.sampled_from([80, 81])), dport=draw(st.sampled_from([80, 81])),
                 flags=draw(st.sampled_from(["S", "A", "PA"])), seq=draw(st.integers(0, 9)))
    elif kind == "udp":
        l4 = UDP(sport=draw(st.sampled_from([53, 54])), dport=draw(st.sampled_from([53, 54])))
    else:
        l4 = ICMP(type=draw(st.sampled_from([0, 8])), id=draw(st.integers(0, 3)),
                  seq=draw(st.integers(0, 3)))
    payload = b"x" * draw(st.integers(0, 30))
    return bytes(eth / ip / l4 / payload)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames(), min_size=2, max_size=8))
def test_equal_fast_keys_mean_equal_flow_keys(batch: list[bytes]) -> None:
    seen: dict[object, object] = {}
    for data in batch:
        fk = fast_key(data, 3)
        assert fk is not None
        full = extract(data, 3)
        assert full is not None
        if fk in seen:
            assert seen[fk] == full
        seen[fk] = full


def test_fast_key_declines_what_it_does_not_cover() -> None:
    base = Ether(src=MACS[0], dst=MACS[1])
    declined = [
        base / IP(src=IPS[0], dst=IPS[1], flags="MF") / UDP() / b"frag",
        base / IP(src=IPS[0], dst=IPS[1], frag=10) / b"later",
        base / IP(src=IPS[0], dst=IPS[1], options=b"\x01\x01\x01\x01") / UDP(),
        base / IPv6() / UDP(),
        base / Dot1Q(vlan=1) / Dot1Q(vlan=2) / IP() / UDP(),
        base / IP(proto=47) / (b"gre!" * 10),
        base / IP(proto=6) / b"short",  # TCP header cut short
    ]
    for frame in declined:
        assert fast_key(bytes(frame), 1) is None, frame.summary()


def test_port_is_part_of_the_key() -> None:
    data = bytes(Ether() / IP() / UDP())
    assert fast_key(data, 1) != fast_key(data, 2)
    rnd = random.Random(7)
    junk = bytes(rnd.getrandbits(8) for _ in range(40))
    assert fast_key(junk, 1) is None or extract(junk, 1) is not None
