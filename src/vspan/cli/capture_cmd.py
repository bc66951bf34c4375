"""``vspan capture PORT... [-w FILE]``: pcapng of what switch ports send and receive."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Any

from vspan.cli import units
from vspan.cli.client import (
    ClientError,
    add_socket_arg,
    download,
    endpoint,
    fail,
    request,
)


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
                    "with a comment naming the drop reason and deciding rule. The switch "
                    "itself stops the capture at --count, --max-bytes or --duration, even "
                    "when this command is gone.")
    p.add_argument("ports", nargs="+", metavar="POINT",
                   help="PORT, TEAM:MEMBER or TEAM:*")
    p.add_argument("-w", "--write", default=None, metavar="FILE",
                   help="pcapng file the switch writes (admin only: a mirror-admin's captures "
                        "go to the switch's capture directory); default: a new file in the "
                        "capture directory")
    p.add_argument("--name", default=None, metavar="NAME",
                   help="file name in the switch's capture directory (instead of -w)")
    p.add_argument("-o", "--output", default=None, metavar="FILE",
                   help="when the capture ends, fetch its file from the switch into FILE "
                        "(what a mirror-admin or a remote --url user does instead of -w)")
    p.add_argument("--direction", choices=["in", "out", "both"], default="both",
                   help="in: frames the port sends into the switch; out: frames it receives")
    p.add_argument("--drops", action="store_true", help="include dropped frames with reasons")
    p.add_argument("-f", "--filter", default=None, metavar="EXPR",
                   help="BPF-like filter (host, net, port, proto, vlan; and/or/not)")
    p.add_argument("-c", "--count", type=int, default=0, help="stop after N packets")
    p.add_argument("--duration", type=units.duration, default=None, metavar="TIME",
                   help="stop after TIME (90, 30s, 10m, 2h)")
    p.add_argument("--max-bytes", type=units.size, default=None, metavar="SIZE",
                   help="stop before the file grows past SIZE (64k, 10M, 1G)")
    p.add_argument("--detach", action="store_true",
                   help="start and return; the switch stops it at its limit (needs "
                        "--duration, --max-bytes or --count)")
    add_socket_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start; wait for the switch to stop it at a limit, or for Ctrl-C; summarise."""
    if args.write and args.name:
        return fail(ValueError("give -w FILE or --name NAME, not both"))
    if args.output and (args.write or args.detach):
        return fail(ValueError("-o fetches the file the switch wrote into its capture "
                               "directory: not with -w or --detach"))
    if args.detach and not (args.duration or args.max_bytes or args.count):
        return fail(ValueError("--detach needs a limit (--duration, --max-bytes or --count) "
                               "so that the capture ends"))
    target = endpoint(args)
    path = os.path.abspath(args.write) if args.write else (args.name or "")
    try:
        cap = request(target, "POST", "/captures", {
            "ports": args.ports, "path": path, "direction": args.direction,
            "drops": args.drops, "filter": args.filter, "max_packets": args.count,
            "max_bytes": args.max_bytes or 0, "duration": args.duration})
    except ClientError as err:
        return fail(err)
    if args.detach:
        sys.stdout.write(f"capture {cap['id']} on {', '.join(args.ports)} to {cap['path']}\n")
        return 0
    sys.stderr.write(f"vspan: capturing on {', '.join(args.ports)} to {cap['path']} "
                     f"(id {cap['id']}); Ctrl-C stops\n")
    stop = {"now": False}

    def on_signal(_sig: int, _frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        summary = None
        while not stop["now"]:
            time.sleep(0.2)
            state = request(target, "GET", f"/captures/{cap['id']}")
            if not state.get("running", True):
                summary = state  # the switch stopped it at a limit
                break
        if summary is None:
            try:
                summary = request(target, "DELETE", f"/captures/{cap['id']}")
            except ClientError as err:
                if err.status != 404:
                    raise
                summary = request(target, "GET", f"/captures/{cap['id']}")  # just stopped
    except ClientError as err:
        return fail(err)
    why = summary.get("stop_reason")
    sys.stderr.write(f"{summary['packets']} packets captured "
                     f"({summary['dropped_frames']} dropped frames), {summary['bytes']} bytes "
                     f"in {summary['seconds']} s" + (f" ({why})" if why else "") + "\n")
    if args.output:
        try:
            size = download(target, f"/captures/{cap['id']}/file", args.output)
        except ClientError as err:
            return fail(err)
        sys.stderr.write(f"vspan: {size} bytes written to {args.output}\n")
    return 0
