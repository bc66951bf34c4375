"""Keep freed frame buffers in the switch process's heap (glibc ``mallopt``).

Every frame the switch receives is copied out of its ring into a new ``bytes``; a TCP
stream's 64 KiB GSO super-frames are taken from the top of glibc's heap and freed a
moment later. With glibc's default trim threshold (128 KiB, adjusted on the fly) the
heap's top is handed back to the kernel and taken again over and over, and every page
taken again is a page fault that zeroes the page: ~6 % of the switch's CPU during
``iperf3`` through it (``perf record``: ``clear_page_erms`` under the copy out of the
ring, ``exc_page_fault``). A fixed trim threshold of :data:`TRIM_BYTES` keeps up to that
much freed memory in the process instead (its resident size may stay that much higher
after a burst). A user's own ``MALLOC_TRIM_THRESHOLD_`` wins; a C library without
``mallopt`` (musl) is left alone.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping
from typing import Any

#: freed heap memory the switch keeps rather than returning it to the kernel
TRIM_BYTES = 32 << 20
M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
ENV = "MALLOC_TRIM_THRESHOLD_"


def keep_freed_memory(libc: Any = None, env: Mapping[str, str] | None = None,
                      trim_bytes: int = TRIM_BYTES) -> bool:
    """Set glibc's trim threshold to ``trim_bytes``; whether it was set (``libc``:
    the C library, default this process's; ``env``: the environment)."""
    if ENV in (os.environ if env is None else env):
        return False
    if libc is None:
        try:
            libc = ctypes.CDLL(None)
        except OSError:
            return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, trim_bytes))
