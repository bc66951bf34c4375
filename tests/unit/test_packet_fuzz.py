"""Truncated, mutated and random input: only PacketError ever escapes the parsers."""

from __future__ import annotations

import array
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_packet_strategies import FAST, FrameSpec, examples, frames
from vspan.packet import (
    ARP,
    ICMP,
    TCP,
    UDP,
    Ethernet,
    ICMPv6,
    IPv4,
    IPv6,
    PacketError,
    ParsedFrame,
    parse_frame,
    udp_frame,
)

# no switch, engine or port: the VSPAN_FASTPATH=python pass skips it (tests/conftest.py)
pytestmark = pytest.mark.fastpath_independent

PARSERS: list[Callable[[memoryview, int], tuple[object, int]]] = [
    Ethernet.parse, ARP.parse, IPv4.parse, IPv6.parse, TCP.parse, UDP.parse, ICMP.parse,
    ICMPv6.parse,
]


def parse_or_packet_error(data: bytes | bytearray | memoryview) -> ParsedFrame | None:
    """parse_frame, with PacketError turned into None (anything else propagates)."""
    try:
        parsed = parse_frame(data)
    except PacketError as exc:
        assert exc.header and str(exc).startswith(exc.header)
        return None
    _check_consistent(parsed)
    return parsed


def _check_consistent(parsed: ParsedFrame) -> None:
    n = len(parsed.data)
    assert 0 <= parsed.payload_offset <= n
    assert parsed.payload_offset + len(parsed.payload) + len(parsed.trailer) == n
    assert parsed.l3_offset == parsed.eth.header_len
    assert parsed.l4_offset <= parsed.payload_offset


@examples(100)
@given(frames())
def test_every_prefix_is_clean(spec: FrameSpec) -> None:
    """Each strict prefix of a valid frame raises PacketError or parses consistently.

    A prefix that still parses can only be one cut in payload the headers do
    not describe (unknown ethertype) or after the datagram (padding).
    """
    raw = spec.build(pad=True)
    full = parse_or_packet_error(raw)
    assert full is not None
    for cut in range(len(raw)):
        parsed = parse_or_packet_error(raw[:cut])
        if parsed is not None and full.l3 is not None:
            assert parsed.l3 == full.l3
            assert parsed.payload.tobytes() == full.payload.tobytes()


@FAST
@given(frames(), st.data())
def test_mutated_frames_are_clean(spec: FrameSpec, data: st.DataObject) -> None:
    """Random byte overwrites of a valid frame never raise anything but PacketError."""
    raw = bytearray(spec.build())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    parse_or_packet_error(raw)


@examples(300)
@given(st.binary(max_size=200))
def test_random_bytes_are_clean(raw: bytes) -> None:
    """Random buffers parse or raise PacketError."""
    parse_or_packet_error(raw)


@examples(300)
@given(
    st.sampled_from([b"\x08\x00\x45", b"\x08\x00\x46", b"\x86\xdd\x60", b"\x08\x06\x00",
                     b"\x81\x00\x00", b"\x88\xa8\x00"]),
    st.binary(max_size=120),
)
def test_random_bodies_behind_known_ethertypes_are_clean(start: bytes, body: bytes) -> None:
    """Garbage after a plausible ethertype and version nibble reaches the deeper parsers."""
    parse_or_packet_error(bytes(12) + start + body)


@examples(200)
@given(st.binary(max_size=80), st.integers(-4, 90))
def test_header_parsers_at_any_offset(raw: bytes, offset: int) -> None:
    """Every header parser, at any offset (even past the end or negative), is clean."""
    for parse in PARSERS:
        try:
            _, end = parse(memoryview(raw), offset)
        except PacketError:
            continue
        assert offset <= end <= len(raw)


def test_wide_memoryview_is_read_as_bytes() -> None:
    """A memoryview with a non-byte format is read byte by byte, not item by item."""
    raw = udp_frame("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.1", "10.0.0.2", 1, 2,
                    b"ab")
    wide = memoryview(array.array("H", raw))
    parsed = parse_frame(wide)
    assert parsed.payload.tobytes() == b"ab"


@pytest.mark.parametrize("raw", [b"\xff" * 64, b"\x00" * 64, b"\x81\x00" * 40])
def test_constant_buffers(raw: bytes) -> None:
    """Degenerate buffers (all ones, all zeros, endless VLAN tags) are clean."""
    parse_or_packet_error(raw)
