"""Capture filters: the filter language (:mod:`vspan.packet.flowmatch`) judging whole
frames, for ``vspan capture`` and ``vspan collect``."""

from __future__ import annotations

from vspan.datapath.flowkey import extract, lenient_key
from vspan.packet.flowmatch import FilterError as FilterError
from vspan.packet.flowmatch import FlowMatch, parse


class PacketFilter(FlowMatch):
    """A compiled filter expression that judges frames."""

    __slots__ = ()

    def match(self, frame: bytes) -> bool:
        """Whether the Ethernet ``frame`` passes (frames cut short are judged on what is there)."""
        key = extract(frame, 0)
        if key is None:
            key = lenient_key(frame)
            if key is None:
                return False
        return self._pred(key, len(frame))

    __call__ = match


def compile_filter(expression: str) -> PacketFilter:
    """Compile ``expression``; an empty one passes every frame. Raises :class:`FilterError`."""
    return PacketFilter(expression, parse(expression))
