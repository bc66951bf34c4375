"""Differential test: the datapath's hot-path parser (flowkey.extract) against parse_frame."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.unit.test_packet_strategies import FrameSpec, examples, frames
from vspan.datapath.flowkey import FlowKey, extract
from vspan.packet import (
    FRAG_LATER,
    ICMP,
    TCP,
    UDP,
    ICMPv6,
    PacketError,
    ParsedFrame,
    parse_frame,
)

# no switch, engine or port: the VSPAN_FASTPATH=python pass skips it (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent

IN_PORT = 7


def expected_key(p: ParsedFrame) -> FlowKey | None:
    """The flow key our parse implies; ``None`` where flowkey knowingly decodes more.

    flowkey reads ports of SCTP and ICMP type/code whatever the IP version, and
    assumes Ethernet/IPv4 ARP; parse_frame does neither, so such frames are not
    compared.
    """
    tags = p.eth.tags
    l3_src = l3_dst = b""
    proto = sport = dport = 0
    if p.arp is not None:
        if (len(p.arp.sha), len(p.arp.spa)) != (6, 4):
            return None
        l3_src, l3_dst, proto = p.arp.spa, p.arp.tpa, p.arp.op
    elif p.ip is not None:
        l3_src, l3_dst = p.ip.src, p.ip.dst
        proto = p.proto or 0
        l4 = p.l4
        if isinstance(l4, TCP | UDP):
            sport, dport = l4.sport, l4.dport
        elif isinstance(l4, ICMP | ICMPv6):
            sport, dport = l4.type, l4.code
        elif p.frag != FRAG_LATER and proto in (1, 6, 17, 58, 132):
            return None
    return FlowKey(
        IN_PORT, p.eth.dst, p.eth.src,
        tags[0].vid if tags else -1, tags[0].pcp if tags else 0,
        tags[1].vid if len(tags) > 1 else -1,
        p.eth.ethertype, l3_src, l3_dst, proto, sport, dport, p.frag,
        p.l3_offset, p.l4_offset, tags[0].tpid if tags else 0,
    )


@examples(500)
@given(frames(), st.booleans())
def test_flowkey_agrees_on_valid_frames(spec: FrameSpec, pad: bool) -> None:
    """On well-formed frames both parsers accept and every key field agrees."""
    raw = spec.build(pad=pad)
    parsed = parse_frame(raw)
    mine = expected_key(parsed)
    assume(mine is not None)
    assert extract(raw, IN_PORT) == mine


def test_flowkey_third_tag_needs_only_four_bytes() -> None:
    """A 3-tag frame with nothing after the tags is well-formed (and parse_frame accepts it)."""
    raw = bytes(12) + b"\x81\x00\x00\x01" * 3 + b"\x88\xb5"
    assert parse_frame(raw).eth.header_len == len(raw)
    assert extract(raw, IN_PORT) is not None


@examples(300)
@given(frames(), st.data())
def test_flowkey_agrees_on_mutated_frames_when_both_parse(spec: FrameSpec,
                                                          data: st.DataObject) -> None:
    """After random byte overwrites, whenever both parsers accept a frame they agree."""
    raw = bytearray(spec.build())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        mine = expected_key(parse_frame(raw))
    except PacketError:
        return
    theirs = extract(bytes(raw), IN_PORT)
    if mine is not None and theirs is not None:
        assert theirs == mine
