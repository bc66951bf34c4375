"""``vspan collect``: receive ERSPAN II/III and GRE-TEB, write pcapng."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType
from typing import Any

from vspan.capture.collector import (
    Collector,
    RunLimits,
    kernel_drops,
    open_listener,
    run_file,
    run_live,
)
from vspan.capture.filter import FilterError, PacketFilter, compile_filter
from vspan.capture.pcapng import CaptureFormatError, RotatingPcapngWriter


def register(sub: Any) -> None:
    """Add the collect command."""
    p: argparse.ArgumentParser = sub.add_parser(
        "collect",
        help="receive ERSPAN/GRE mirror traffic and write pcapng",
        description=(
            "Receive ERSPAN Type II/III and GRE transparent-Ethernet-bridging packets on a raw "
            "socket (or decode them from a capture file with -r), decapsulate them and write "
            "the mirrored frames to pcapng: one interface per (sender, session, direction), "
            "original timestamps where ERSPAN III carries them, truncation and sequence gaps "
            "(loss on the way) as packet comments."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--listen", metavar="ADDR",
                     help="local IPv4/IPv6 address to receive on (0.0.0.0 for all)")
    src.add_argument("-r", dest="read", metavar="FILE",
                     help="decode a pcap/pcapng file of raw ERSPAN/GRE traffic instead")
    p.add_argument("-w", dest="write", metavar="OUT", required=True,
                   help="output pcapng file (a strftime pattern with -G)")
    p.add_argument("--session", type=int, action="append", metavar="N",
                   help="keep only ERSPAN session N (GRE key N for GRE-TEB); repeatable")
    p.add_argument("-C", dest="file_size", type=float, metavar="MB",
                   help="start a new file when this one would exceed MB million bytes")
    p.add_argument("-G", dest="rotate_seconds", type=float, metavar="SEC",
                   help="start a new file every SEC seconds")
    p.add_argument("-c", dest="count", type=int, metavar="COUNT",
                   help="stop after writing COUNT frames")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--filter", metavar="EXPR",
                   help="keep only mirrored frames matching this filter expression")
    p.add_argument("--snaplen", type=int, default=262144, metavar="N",
                   help="cut stored frames to N bytes (default 262144)")
    p.add_argument("--dvs", metavar="NAME",
                   help="comment the capture when a VM of distributed switch NAME migrates "
                        "(\"VM X migrated from A to B at T\" on the next frame); needs --etcd")
    p.add_argument("--etcd", metavar="URL", help="etcd of the distributed switch (--dvs)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.add_argument("--progress", type=float, default=5.0, metavar="SEC",
                   help="seconds between progress lines on stderr (default 5)")
    p.set_defaults(func=run)


def _err(msg: str) -> None:
    sys.stderr.write(f"vspan collect: {msg}\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """Run the collector until a limit, SIGINT or SIGTERM."""
    for name, value in (("-C", args.file_size), ("-G", args.rotate_seconds),
                        ("-c", args.count), ("--duration", args.duration)):
        if value is not None and value <= 0:
            _err(f"{name} must be positive")
            return 2
    if args.session:
        bad = [s for s in args.session if not 0 <= s <= 0xFFFFFFFF]
        if bad:
            _err(f"--session {bad[0]} is not a session id")
            return 2
    flt: PacketFilter | None = None
    if args.filter:
        try:
            flt = compile_filter(args.filter)
        except FilterError as err:
            _err(f"bad --filter: {err}")
            return 2
    stop = {"flag": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop["flag"] = True

    sock = None
    if args.listen:
        try:
            sock = open_listener(args.listen)
        except (OSError, ValueError) as err:
            _err(f"cannot listen on {args.listen}: {err}")
            return 1
    try:
        writer = RotatingPcapngWriter(
            args.write,
            max_bytes=int(args.file_size * 1_000_000) if args.file_size else None,
            max_seconds=args.rotate_seconds,
            application="vspan collect",
            on_rotate=None if args.quiet else lambda name: _err(f"now writing {name}"),
        )
    except OSError as err:
        _err(f"cannot write {args.write}: {err}")
        if sock is not None:
            sock.close()
        return 1
    collector = Collector(writer, sessions=frozenset(args.session) if args.session else None,
                          packet_filter=flt, snaplen=args.snaplen)
    watcher = _migration_watcher(args, collector)
    limits = RunLimits(count=args.count, duration=args.duration,
                       should_stop=lambda: stop["flag"])
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    rc = 0
    try:
        if sock is not None:
            _err(f"listening on {args.listen} for ERSPAN II/III and GRE-TEB, writing "
                 f"{writer.current}")
            last = {"t": started}

            def tick() -> None:
                now = time.monotonic()
                if not args.quiet and now - last["t"] >= args.progress:
                    last["t"] = now
                    s = collector.stats
                    _err(f"{s.written} frames written, {s.lost} lost, {s.truncated} truncated, "
                         f"{s.malformed} malformed ({now - started:.0f} s)")

            run_live(sock, collector, limits, on_tick=tick, tick_interval=0.5)
        else:
            try:
                reader = run_file(args.read, collector, limits)
            except (OSError, CaptureFormatError) as err:
                _err(f"cannot read {args.read}: {err}")
                rc = 1
            else:
                if reader.truncated:
                    _err(f"{args.read}: the last packet is cut short (ignored)")
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if watcher is not None:
            watcher.stop()
        collector.close()
        drops = kernel_drops(sock) if sock is not None else None
        if sock is not None:
            sock.close()
    _summary(collector, writer, drops, time.monotonic() - started)
    return rc


def _migration_watcher(args: argparse.Namespace, collector: Collector) -> Any:
    """With --dvs: a started watcher that notes migrations in the capture."""
    if not args.dvs:
        return None
    from vspan.control.dvs.migration import MigrationWatcher
    from vspan.control.store.etcd import EtcdStore

    store = EtcdStore(args.etcd or "http://127.0.0.1:2379")

    def note(text: str) -> None:
        collector.note(text)
        if not args.quiet:
            _err(text)

    watcher = MigrationWatcher(store, args.dvs, note)
    watcher.start()
    return watcher


def _summary(collector: Collector, writer: RotatingPcapngWriter, drops: int | None,
             elapsed: float) -> None:
    s = collector.stats
    files = ", ".join(writer.files)
    lines = [
        f"{s.written} frames written to {len(writer.files)} file"
        f"{'s' if len(writer.files) != 1 else ''} ({files}) in {elapsed:.1f} s",
        f"  received {s.received}, ignored {s.ignored} (not ERSPAN/GRE-TEB), "
        f"malformed {s.malformed}, filtered out {s.filtered}",
        f"  lost on the way {s.lost} (sequence gaps), truncated by sender {s.truncated}, "
        f"out of order {s.out_of_order}, sequence restarts {s.restarts}",
    ]
    if drops is not None:
        lines.append(f"  dropped by the kernel (receive buffer full) {drops}")
    if s.last_error:
        lines.append(f"  last malformed packet: {s.last_error}")
    for name, n in s.per_interface.items():
        lines.append(f"  {name}: {n}")
    for line in lines:
        _err(line)
