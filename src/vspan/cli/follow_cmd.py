"""``vspan follow FILE``: print both directions of a TCP stream, like Wireshark."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vspan.analysis.follow import FollowError, follow, list_streams, parse_flow, render
from vspan.capture.pcapng import CaptureFormatError, CaptureReader


def register(sub: Any) -> None:
    """Add the follow command."""
    p: argparse.ArgumentParser = sub.add_parser(
        "follow",
        help="reassemble a TCP stream from a capture and print both directions",
        description=(
            "Reassemble one TCP stream of a pcap/pcapng file (a vspan capture, a collector "
            "output, or raw ERSPAN/GRE traffic) by sequence numbers and print it like "
            "Wireshark's Follow TCP Stream (tshark -z follow,tcp,FORMAT,N): node 1's data "
            "is indented by a tab."
        ),
    )
    p.add_argument("file", help="pcap or pcapng file")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--flow", metavar="A:P-B:Q",
                       help="the stream between these endpoints (IPv6 as [ADDR]:PORT)")
    which.add_argument("--index", type=int, metavar="N",
                       help="stream number N, as Wireshark's tcp.stream (default 0)")
    which.add_argument("--list", action="store_true", help="list the TCP streams instead")
    p.add_argument("--format", choices=("ascii", "hex", "raw"), default="ascii",
                   help="output format (default ascii)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the stream (or the stream list)."""
    try:
        if args.list:
            rows = list_streams(CaptureReader(args.file))
            for r in rows:
                sys.stdout.write(f"{r.index:5d}  {r.a!s:>28} <-> {r.b!s:<28} "
                                 f"{r.packets:6d} packets  {r.bytes_a:8d} / {r.bytes_b:8d} bytes\n")
            if not rows:
                sys.stderr.write(f"vspan follow: no TCP streams in {args.file}\n")
            return 0
        flow = parse_flow(args.flow) if args.flow else None
        if args.index is not None and args.index < 0:
            raise FollowError("--index must be 0 or more")
        stream = follow(CaptureReader(args.file), index=args.index, flow=flow)
    except FollowError as err:
        sys.stderr.write(f"vspan follow: {err}\n")
        return 1
    except (OSError, CaptureFormatError) as err:
        sys.stderr.write(f"vspan follow: cannot read {args.file}: {err}\n")
        return 1
    sys.stdout.write(render(stream, args.format))
    for node in (0, 1):
        lost = stream.missing(node)
        if lost:
            sys.stderr.write(f"vspan follow: {lost} bytes from {stream.nodes[node]} are not in "
                             "the capture\n")
    return 0
