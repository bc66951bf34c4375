"""Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-headers.

The one's complement sum of 16-bit big-endian words equals the whole buffer,
read as one big integer, modulo 0xFFFF (because 2**16 is 1 modulo 0xFFFF), so
the sum is computed with a single ``int.from_bytes`` instead of a Python loop.
"""

from __future__ import annotations

_MOD = 0xFFFF


def ones_sum(*chunks: bytes | bytearray | memoryview) -> int:
    """One's complement sum (0..0xFFFF) of the concatenation of ``chunks``.

    Every chunk but the last must have an even length (as pseudo-headers do).
    An odd last chunk is padded with one zero byte.
    """
    total = 0
    for chunk in chunks:
        n = int.from_bytes(chunk, "big")
        if len(chunk) & 1:
            n <<= 8
        total += n
    if total == 0:
        return 0
    r = total % _MOD
    return r if r else _MOD


def internet_checksum(*chunks: bytes | bytearray | memoryview) -> int:
    """RFC 1071 checksum of the concatenation of ``chunks`` (see :func:`ones_sum`)."""
    return ~ones_sum(*chunks) & 0xFFFF


def pseudo_header_v4(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """IPv4 pseudo-header (RFC 768/793) for the TCP/UDP checksum."""
    return bytes(src) + bytes(dst) + bytes((0, proto)) + length.to_bytes(2, "big")


def pseudo_header_v6(src: bytes, dst: bytes, next_header: int, length: int) -> bytes:
    """IPv6 pseudo-header (RFC 8200 section 8.1) for TCP/UDP/ICMPv6 checksums."""
    return bytes(src) + bytes(dst) + length.to_bytes(4, "big") + bytes((0, 0, 0, next_header))


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """IPv4 or IPv6 pseudo-header, chosen by the address length (4 or 16)."""
    if len(src) == 4:
        return pseudo_header_v4(src, dst, proto, length)
    return pseudo_header_v6(src, dst, proto, length)
