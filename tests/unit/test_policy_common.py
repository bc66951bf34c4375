"""Address, port and protocol specs shared by the policy modules."""

from __future__ import annotations

import pytest

from vspan.policy.common import (
    IpPrefix,
    parse_direction,
    parse_ip_spec,
    parse_mac_spec,
    parse_port_range,
    parse_protocol,
    protocol_str,
    spec_str,
)


@pytest.mark.parametrize(
    ("text", "norm", "family", "length"),
    [
        ("10.0.0.0/8", "10.0.0.0/8", 4, 8),
        ("10.1.2.3", "10.1.2.3/32", 4, 32),
        ("0.0.0.0/0", "0.0.0.0/0", 4, 0),
        ("::/0", "::/0", 6, 0),
        ("::", "::/128", 6, 128),
        ("::1", "::1/128", 6, 128),
        ("2001:DB8::/32", "2001:db8::/32", 6, 32),
        ("::ffff:10.0.0.1", "::ffff:a00:1/128", 6, 128),
    ],
)
def test_ip_spec_round_trip(text: str, norm: str, family: int, length: int) -> None:
    p = parse_ip_spec(text)
    assert isinstance(p, IpPrefix)
    assert (p.family, p.length) == (family, length)
    assert spec_str(p) == norm
    assert parse_ip_spec(spec_str(p)) == p


def test_ip_spec_any_and_errors() -> None:
    assert parse_ip_spec("ANY") is None and parse_ip_spec("*") is None
    assert spec_str(None) == "any"
    with pytest.raises(ValueError, match="host bits"):
        parse_ip_spec("10.0.0.1/8")
    with pytest.raises(ValueError):
        parse_ip_spec("10.0.0.300")


def test_prefix_contains_checks_family() -> None:
    p4 = parse_ip_spec("0.0.0.0/0")
    p6 = parse_ip_spec("::/0")
    assert p4 is not None and p6 is not None
    assert p4.contains(bytes(4)) and not p4.contains(bytes(16))
    assert p6.contains(bytes(16)) and not p6.contains(bytes(4))


def test_mac_specs() -> None:
    want = bytes.fromhex("020000000009")
    for text in ("02:00:00:00:00:09", "02-00-00-00-00-09", "020000000009", "2:0:0:0:0:9"):
        assert parse_mac_spec(text) == want
    assert parse_mac_spec("any") is None
    for bad in ("02:00:00:00:00", "zz:00:00:00:00:00", "0200000000"):
        with pytest.raises(ValueError):
            parse_mac_spec(bad)


def test_ports_protocols_directions() -> None:
    assert parse_port_range(80) == (80, 80)
    assert parse_port_range("1000-2000") == (1000, 2000)
    assert 1500 in parse_port_range("1000-2000")
    for bad in ("2000-1000", "-1", "x", 65536):
        with pytest.raises(ValueError):
            parse_port_range(bad)
    assert parse_protocol("TCP") == 6 and parse_protocol(17) == 17
    assert parse_protocol("any") is None and parse_protocol("47") == 47
    assert protocol_str(58) == "icmpv6" and protocol_str(None) == "any"
    with pytest.raises(ValueError):
        parse_protocol(300)
    assert parse_direction("Both") == ("in", "out")
    assert parse_direction("outbound") == ("out",)
