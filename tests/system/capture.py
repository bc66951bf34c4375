"""tcpdump inside a namespace, read back with scapy (an independent decoder).

``--immediate-mode`` matters: without it libpcap's TPACKET_V3 ring hands packets
to tcpdump only when a block retires (about a second later), and a tcpdump
stopped before that loses them; ``-U`` writes each packet to the file as it comes.

No fixed sleeps: the body runs once tcpdump said "listening on" (its socket is bound
and its filter set: from then on every packet is kept), and at the end the capture
waits for the frames the caller ``expect``-s and then until the file has been quiet
for ``settle`` seconds (frames still in flight through the switch, and any extra
frame an exact-count assertion must see), before tcpdump is stopped.
"""

from __future__ import annotations

import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from scapy.utils import rdpcap

START_TIMEOUT = 20.0  # tcpdump's start on a loaded machine (it is seconds at worst)
EXPECT_TIMEOUT = 15.0  # for the frames a caller expects
SETTLE = 0.3  # quiet time after the last frame before tcpdump is stopped


def pcap_count(path: Path) -> int:
    """Complete records in the classic pcap file tcpdump is writing (0 before its header).

    Reads only the record headers, so it is cheap enough to poll; a record tcpdump is
    still writing is not counted."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if len(data) < 24:
        return 0
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    n, off = 0, 24
    while off + 16 <= len(data):
        (incl,) = struct.unpack_from(order + "I", data, off + 8)
        off += 16 + incl
        if off > len(data):
            break
        n += 1
    return n


class Capture:
    """Packets tcpdump wrote; filled when the context exits (unless ``read`` is false)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.packets: list[Any] = []

    def count(self) -> int:
        """Frames written so far (while the capture runs)."""
        return pcap_count(self.path)

    def wait_for(self, n: int, timeout: float = EXPECT_TIMEOUT) -> int:
        """Wait until at least ``n`` frames were written; the count (fewer at the deadline:
        the caller's assertion then says what is missing)."""
        deadline = time.monotonic() + timeout
        while (got := self.count()) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return got

    def settle(self, quiet: float = SETTLE, timeout: float = EXPECT_TIMEOUT) -> None:
        """Wait until no frame was written for ``quiet`` seconds (at most ``timeout``)."""
        deadline = time.monotonic() + timeout
        last, since = self.count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.count()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return


class _Stderr:
    """tcpdump's stderr read by a thread: its lines kept, "listening on" signalled."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.listening = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)
            if "listening on" in line:
                self.listening.set()

    def text(self) -> str:
        return "".join(self.lines)


def wait_listening(proc: subprocess.Popen[str], err: _Stderr, what: str,
                   timeout: float = START_TIMEOUT) -> None:
    """Return once tcpdump printed "listening on"; a RuntimeError with its stderr when it
    exited or did not say so within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not err.listening.wait(0.05):
        if proc.poll() is not None:
            err.thread.join(2)
            raise RuntimeError(f"{what} exited ({proc.returncode}) before listening: "
                               f"{err.text()!r}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not listening after {timeout} s: {err.text()!r}")


@contextmanager
def tcpdump(ns: str, iface: str, path: Path, bpf: str = "", snaplen: int = 0,
            expect: int = 0, settle: float = SETTLE, read: bool = True
            ) -> Iterator[Capture]:
    """Capture on ``iface`` in ``ns`` while the body runs: the body starts once tcpdump
    listens; after it the capture waits for ``expect`` frames (when given), then for
    ``settle`` quiet seconds, then stops tcpdump (SIGTERM; it exits having written
    everything). ``read=False`` leaves ``packets`` empty (big captures read otherwise)."""
    cmd = ["ip", "netns", "exec", ns, "tcpdump", "-i", iface, "-n", "-U",
           "--immediate-mode", "-w", str(path)]
    if snaplen:
        cmd += ["-s", str(snaplen)]
    if bpf:
        cmd += bpf.split()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    err = _Stderr(proc.stderr)
    cap = Capture(path)
    ok = False
    try:
        wait_listening(proc, err, f"tcpdump on {iface} in {ns}")
        yield cap
        ok = True
    finally:
        if ok:
            if expect:
                cap.wait_for(expect)
            cap.settle(settle)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err.thread.join(2)
    if proc.returncode not in (0, -15):
        raise RuntimeError(f"tcpdump on {iface} in {ns} failed ({proc.returncode}): "
                           f"{err.text()!r}")
    if read:
        cap.packets = list(rdpcap(str(path))) if cap.count() else []
