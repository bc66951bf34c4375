"""The native ERSPAN II/III and GRE encapsulation is byte for byte the Python one
(``mirror.encap.ErspanEncapsulator`` + ``RawGreSender``'s path-MTU cut): every type,
granularity, platform subheader, VLAN case (untagged with/without a switching VLAN,
tagged, priority-tagged), truncation flag, direction, sequence wrap and timestamp; and with
the link-layer path (``mirror.l2path``) the whole Ethernet + IPv4 frame, checked by scapy."""

from __future__ import annotations

from socket import inet_aton

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from scapy.utils import str2mac

from vspan.datapath import native
from vspan.mirror.encap import EncapType, ErspanConfig, ErspanEncapsulator, Granularity
from vspan.mirror.l2path import L2Header, NextHop

pytestmark = pytest.mark.skipif(not native.available(), reason="_native was not built")

_GRA = {Granularity.US100: 0, Granularity.NS100: 1, Granularity.NS: 2}


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(list(EncapType)),
    gra=st.sampled_from(list(Granularity)),
    plat=st.booleans(),
    session_id=st.integers(0, 1023), hw_id=st.integers(0, 63), switch_id=st.integers(0, 1023),
    index=st.integers(0, 0xFFFF),
    seq=st.sampled_from([0, 1, 77, 2**32 - 1]),
    tag=st.sampled_from([None, 0, 5, 4095]), pcp=st.integers(0, 7),
    body=st.binary(min_size=0, max_size=120),
    egress=st.booleans(), truncated=st.booleans(), vlan=st.integers(0, 4094),
    ts=st.integers(0, 2**63 - 1), max_frame=st.integers(0, 200),
)
def test_payload_is_the_python_one(kind: EncapType, gra: Granularity, plat: bool,
                                   session_id: int, hw_id: int, switch_id: int, index: int,
                                   seq: int, tag: int | None, pcp: int, body: bytes,
                                   egress: bool, truncated: bool, vlan: int, ts: int,
                                   max_frame: int) -> None:
    cfg = ErspanConfig(remote_ip="192.0.2.1", type=kind, session_id=session_id, index=index,
                       hw_id=hw_id, granularity=gra, platform_subheader=plat,
                       switch_id=switch_id)
    frame = bytes(12)
    if tag is not None:
        frame += bytes((0x81, 0, (pcp << 5) | (tag >> 8), tag & 0xFF))
    frame += b"\x08\x00" + body
    enc = ErspanEncapsulator(cfg, start_seq=seq)
    want = enc.encapsulate(frame, egress=egress, truncated=truncated, ts_ns=ts,
                           vlan=vlan or None, max_frame=max_frame)
    params = (list(EncapType).index(kind), session_id, hw_id, index, _GRA[gra], int(plat),
              switch_id, -1, True, seq, max_frame, -1, b"", bytes((192, 0, 2, 1)))
    got, next_seq, _cut, ip_id = native.erspan_payload(params, frame, egress, truncated,
                                                       vlan or -1, ts)
    assert got == want
    assert next_seq == enc.next_seq
    assert ip_id == -1  # no link-layer parameters: the GRE payload alone


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(EncapType)), seq=st.sampled_from([0, 9, 2**32 - 1]),
    ip_id=st.sampled_from([0, 1, 0x1234, 0xFFFF]), ttl=st.integers(1, 255),
    dscp=st.integers(0, 63), body=st.binary(min_size=0, max_size=1600),
    max_frame=st.integers(0, 1500), ts=st.integers(0, 2**62),
    macs=st.tuples(st.binary(min_size=6, max_size=6), st.binary(min_size=6, max_size=6)),
    local=st.binary(min_size=4, max_size=4), remote=st.binary(min_size=4, max_size=4),
)
def test_link_layer_frame_is_the_python_one(kind: EncapType, seq: int, ip_id: int, ttl: int,
                                            dscp: int, body: bytes, max_frame: int, ts: int,
                                            macs: tuple[bytes, bytes], local: bytes,
                                            remote: bytes) -> None:
    """With link-layer parameters the C side writes the whole Ethernet frame: the cached
    header with the IPv4 total length, identification and checksum of the copy —
    L2Header.frame's bytes, and a header scapy finds valid (its own checksum)."""
    cfg = ErspanConfig(remote_ip="192.0.2.1", type=kind, session_id=3)
    frame = bytes(12) + b"\x08\x00" + body
    enc = ErspanEncapsulator(cfg, start_seq=seq)
    payload = enc.encapsulate(frame, ts_ns=ts, max_frame=max_frame)
    hop = NextHop("eth9", 9, macs[1], macs[0], None)
    hdr = L2Header(hop, local=local, remote=remote, ttl=ttl, tos=dscp << 2)
    want = hdr.frame(payload, ip_id)
    params = (list(EncapType).index(kind), 3, 0, 0, 0, 0, 0, -1, True, seq, max_frame, -1,
              local, remote, (7, hdr.template, ip_id))
    got, next_seq, _cut, next_id = native.erspan_payload(params, frame, False, False, -1, ts)
    assert got == want
    assert next_seq == enc.next_seq and next_id == (ip_id + 1) & 0xFFFF
    pkt = Ether(got)
    ip = pkt[IP]
    assert (pkt.dst, pkt.src) == (str2mac(macs[0]), str2mac(macs[1]))
    assert (ip.len, ip.id, ip.ttl, ip.tos, ip.proto, str(ip.flags)) == (
        len(got) - 14, ip_id, ttl, dscp << 2, 47, "DF")
    assert (inet_aton(ip.src), inet_aton(ip.dst)) == (local, remote)
    recomputed = IP(bytes(ip)[:20])
    del recomputed.chksum
    assert IP(bytes(recomputed)).chksum == ip.chksum  # scapy's checksum is ours
    assert bytes(ip.payload) == payload


def test_bad_link_layer_parameters_are_refused() -> None:
    base = (2, 1, 0, 0, 0, 0, 0, -1, True, 0, 100, -1, b"", bytes(4))
    for bad in ((-1, bytes(34), 0), (3, bytes(33), 0), ("x", bytes(34), 0)):
        with pytest.raises((ValueError, TypeError)):
            native.erspan_payload((*base, bad), bytes(20), False, False, -1, 0)
