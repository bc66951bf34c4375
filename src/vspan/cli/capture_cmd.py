"""``vspan capture PORT... -w FILE``: pcapng of what switch ports send and receive."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

from vspan.cli.client import ClientError, add_socket_arg, fail, request


def register(sub: Any) -> None:
    """Add ``capture``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "capture", help="capture switch ports and team members to pcapng (with drop reasons)",
        description="The running switch writes what the ports send into it (inbound) and "
                    "what it delivers to them (outbound) to a pcapng file, one interface "
                    "block per capture point. A point is a switch port (PORT; for a team "
                    "port: the team as the switch sees it), a team member's wire "
                    "(TEAM:MEMBER) or all members of a team (TEAM:*). A frame seen at "
                    "several points is written at each, the copies sharing one pcapng "
                    "packet id. With --drops, dropped frames are written too, each "
                    "with a comment naming the drop reason and deciding rule.")
    p.add_argument("ports", nargs="+", metavar="POINT",
                   help="PORT, TEAM:MEMBER or TEAM:*")
    p.add_argument("-w", "--write", required=True, metavar="FILE", help="pcapng file")
    p.add_argument("--direction", choices=["in", "out", "both"], default="both",
                   help="in: frames the port sends into the switch; out: frames it receives")
    p.add_argument("--drops", action="store_true", help="include dropped frames with reasons")
    p.add_argument("-f", "--filter", default=None, metavar="EXPR",
                   help="BPF-like filter (host, net, port, proto, vlan; and/or/not)")
    p.add_argument("-c", "--count", type=int, default=0, help="stop after N packets")
    p.add_argument("--duration", type=float, default=0.0, help="stop after S seconds")
    add_socket_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start, wait for a stop condition (Ctrl-C, count, duration), stop, summarise."""
    path = os.path.abspath(args.write)
    try:
        cap = request(args.socket, "POST", "/captures", {
            "ports": args.ports, "path": path, "direction": args.direction,
            "drops": args.drops, "filter": args.filter, "max_packets": args.count})
    except ClientError as err:
        return fail(err)
    sys.stderr.write(f"vspan: capturing on {', '.join(args.ports)} to {path} "
                     f"(id {cap['id']}); Ctrl-C stops\n")
    stop = {"now": False}

    def on_signal(_sig: int, _frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while not stop["now"]:
            time.sleep(0.2)
            if deadline is not None and time.monotonic() >= deadline:
                break
            if args.count:
                running = request(args.socket, "GET", "/captures")
                mine = [c for c in running if c["id"] == cap["id"]]
                if not mine or mine[0]["full"]:
                    break
        summary = request(args.socket, "DELETE", f"/captures/{cap['id']}")
    except ClientError as err:
        return fail(err)
    sys.stderr.write(f"{summary['packets']} packets captured "
                     f"({summary['dropped_frames']} dropped frames), {summary['bytes']} bytes "
                     f"in {summary['seconds']} s\n")
    return 0
