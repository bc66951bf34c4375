"""The native ERSPAN II/III and GRE encapsulation is byte for byte the Python one
(``mirror.encap.ErspanEncapsulator`` + ``RawGreSender``'s path-MTU cut): every type,
granularity, platform subheader, VLAN case (untagged with/without a switching VLAN,
tagged, priority-tagged), truncation flag, direction, sequence wrap and timestamp."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vspan.datapath import native
from vspan.mirror.encap import EncapType, ErspanConfig, ErspanEncapsulator, Granularity

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
    got, next_seq, _cut = native.erspan_payload(params, frame, egress, truncated,
                                                        vlan or -1, ts)
    assert got == want
    assert next_seq == enc.next_seq
