"""A two-port cross-connect (patch cable) for port-backend tests and benchmarks.

Everything one port receives is sent out of the other, in a background
thread, optionally rewritten on the way (VLAN push/pop) and observed (to
assert that GSO frames or tags passed). It is the smallest possible "switch"
and so the upper bound of what the port backends allow in Python.
"""

from __future__ import annotations

import os
import select
import struct
import threading
from collections.abc import Callable

from vspan.ports.base import Frame, Port
from vspan.ports.vnet import shift

Rewrite = Callable[[Frame], Frame]
Observer = Callable[[str, list[Frame]], None]


def push_tag(vid: int, pcp: int = 0, tpid: int = 0x8100) -> Rewrite:
    """A rewrite that inserts an outer VLAN tag (and moves vnet offsets by +4)."""
    tag = struct.pack(">HH", tpid, (pcp << 13) | vid)

    def rewrite(f: Frame) -> Frame:
        return Frame(f.data[:12] + tag + f.data[12:], shift(f.vnet, 4), f.ts_ns)

    return rewrite


def pop_tag(f: Frame) -> Frame:
    """A rewrite that removes the outer VLAN tag (and moves vnet offsets by -4)."""
    if len(f.data) >= 18 and f.data[12:14] in (b"\x81\x00", b"\x88\xa8"):
        return Frame(f.data[:12] + f.data[16:], shift(f.vnet, -4), f.ts_ns)
    return f


class CrossConnect:
    """Forward frames between two open ports in a thread until :meth:`stop`."""

    def __init__(
        self,
        a: Port,
        b: Port,
        *,
        a_to_b: Rewrite | None = None,
        b_to_a: Rewrite | None = None,
        observe: Observer | None = None,
        cpu: int | None = None,
        batch: int = 64,
    ) -> None:
        self.a, self.b = a, b
        self.rewrite = {a.name: a_to_b, b.name: b_to_a}
        self.observe = observe
        self.cpu = cpu
        self.batch = batch
        self.forwarded = {a.name: 0, b.name: 0}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xconnect", daemon=True)

    def __enter__(self) -> CrossConnect:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start forwarding."""
        self._thread.start()

    def stop(self) -> None:
        """Stop forwarding; re-raise whatever broke the forwarding thread."""
        self._stop.set()
        self._thread.join(10)
        if self.error is not None:
            raise RuntimeError("cross-connect thread failed") from self.error

    def _run(self) -> None:
        try:
            if self.cpu is not None:
                os.sched_setaffinity(0, {self.cpu})  # this thread only
            self._loop()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def _loop(self) -> None:
        poller = select.poll()
        route = {}
        for src, dst in ((self.a, self.b), (self.b, self.a)):
            poller.register(src.fileno(), select.POLLIN)
            route[src.fileno()] = (src, dst, self.rewrite[src.name])
        observe = self.observe
        batch = self.batch
        while not self._stop.is_set():
            for fd, _ in poller.poll(50):
                src, dst, rewrite = route[fd]
                while True:
                    frames = src.recv_batch(batch)
                    if not frames:
                        break
                    if observe is not None:
                        observe(src.name, frames)
                    if rewrite is not None:
                        frames = [rewrite(f) for f in frames]
                    dst.send_batch(frames)
                    self.forwarded[src.name] += len(frames)
                    if len(frames) < batch:
                        break
