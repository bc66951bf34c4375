"""The C loops of the AF_PACKET port (``vspan.ports._ring``), when built and wanted.

``VSPAN_FASTPATH=python`` keeps every per-frame loop in Python (ring receive,
send, replay); otherwise the ring is drained and frames are sent by the C
extension when it was built (``setup.py``; no compiler: Python).
"""

from __future__ import annotations

import os
from types import ModuleType

_mod: ModuleType | None
try:
    from vspan.ports import _ring

    _mod = _ring
except ImportError:  # not built: the Python loops
    _mod = None


def enabled() -> bool:
    """Whether the AF_PACKET port uses the C loops."""
    return _mod is not None and os.environ.get("VSPAN_FASTPATH", "").strip().lower() != "python"


def gso_table(types: frozenset[int]) -> bytes:
    """The 256-byte membership table of GSO type values :func:`_ring.send` takes."""
    return bytes(1 if t in types else 0 for t in range(256))
