"""Buffer helpers shared by the header modules (internal)."""

from __future__ import annotations

Buffer = bytes | bytearray | memoryview


def view(buf: Buffer) -> memoryview:
    """A flat byte memoryview over ``buf`` (no copy)."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


def as_bytes(value: Buffer) -> bytes:
    """``bytes`` from any byte buffer (a no-op for ``bytes``)."""
    return value if isinstance(value, bytes) else bytes(value)
