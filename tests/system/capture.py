"""tcpdump inside a namespace, read back with scapy (an independent decoder).

``--immediate-mode`` matters: without it libpcap's TPACKET_V3 ring hands packets
to tcpdump only when a block retires (about a second later), and a tcpdump
stopped before that loses them.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scapy.utils import rdpcap


class Capture:
    """Packets tcpdump wrote; filled when the context exits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.packets: list[Any] = []


@contextmanager
def tcpdump(ns: str, iface: str, path: Path, bpf: str = "", snaplen: int = 0
            ) -> Iterator[Capture]:
    """Capture on ``iface`` in ``ns`` while the body runs."""
    cmd = ["ip", "netns", "exec", ns, "tcpdump", "-i", iface, "-n", "-U",
           "--immediate-mode", "-w", str(path)]
    if snaplen:
        cmd += ["-s", str(snaplen)]
    if bpf:
        cmd += bpf.split()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cap = Capture(path)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait for "listening on ..."
            line = proc.stderr.readline()
            if "listening on" in line or not line:
                break
        time.sleep(0.3)
        yield cap
        time.sleep(0.5)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
    cap.packets = list(rdpcap(str(path))) if path.exists() and path.stat().st_size > 24 else []
