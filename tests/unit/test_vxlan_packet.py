"""The VXLAN header as data, checked against scapy's dissector (an independent oracle)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.vxlan import VXLAN

from vspan.packet.errors import PacketError
from vspan.packet.vxlan import VNI_MAX, VXLAN_FLAG_I, Vxlan, vxlan_header


@given(st.integers(0, VNI_MAX))
def test_sender_header_is_what_scapy_builds(vni: int) -> None:
    ours = vxlan_header(vni)
    assert ours == raw(VXLAN(vni=vni, flags="Instance"))
    assert ours == Vxlan(vni).pack()
    theirs = VXLAN(ours)
    assert theirs.vni == vni
    assert int(theirs.flags) == VXLAN_FLAG_I  # I only: every other flag bit zero
    assert theirs.reserved2 == 0
    assert ours[1:4] == b"\0\0\0"  # the 24 reserved bits after the flags


# scapy cannot dissect G (0x80) and P (0x04) together (its two extension layouts overlap)
@given(st.binary(min_size=8, max_size=8).filter(lambda d: d[0] & 0x84 != 0x84))
def test_parse_agrees_with_scapy_on_any_bytes(data: bytes) -> None:
    hdr, off = Vxlan.parse(data)
    theirs = VXLAN(data)
    assert off == 8
    assert hdr.vni == theirs.vni
    assert hdr.flags == int(theirs.flags)
    assert hdr.reserved2 == theirs.reserved2
    assert hdr.valid_vni == bool(data[0] & 0x08)
    assert hdr.pack() == data  # what the wire carried is kept, reserved bits included


def test_truncated_and_out_of_range() -> None:
    with pytest.raises(PacketError, match="truncated"):
        Vxlan.parse(b"\x08\x00\x00")
    with pytest.raises(PacketError):
        Vxlan(VNI_MAX + 1)
    with pytest.raises(PacketError):
        vxlan_header(-1)
    assert Vxlan(7).build(b"abc") == vxlan_header(7) + b"abc"
