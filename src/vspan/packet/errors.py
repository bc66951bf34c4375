"""The one error type of :mod:`vspan.packet`."""

from __future__ import annotations


class PacketError(ValueError):
    """A frame or header is truncated, malformed, or a field value is out of range.

    ``header`` names the header that was being parsed or built (``"ipv4"``,
    ``"tcp"``...); the message says what was wrong with it.
    """

    def __init__(self, header: str, message: str) -> None:
        super().__init__(f"{header}: {message}")
        self.header = header
        self.reason = message


def need(header: str, buf_len: int, offset: int, size: int) -> None:
    """Raise :class:`PacketError` unless ``size`` bytes are available at ``offset``."""
    if offset < 0 or buf_len < offset + size:
        have = max(buf_len - offset, 0)
        raise PacketError(header, f"truncated: need {size} bytes at offset {offset}, have {have}")


def check_uint(header: str, name: str, value: int, bits: int) -> None:
    """Raise :class:`PacketError` unless ``value`` is an unsigned ``bits``-bit integer."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise PacketError(header, f"{name}={value!r} does not fit in {bits} bits")


def check_len(header: str, name: str, value: bytes, size: int) -> None:
    """Raise :class:`PacketError` unless ``value`` is exactly ``size`` bytes."""
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != size:
        raise PacketError(header, f"{name} must be {size} bytes, got {value!r}")
