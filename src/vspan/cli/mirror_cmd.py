"""``vspan mirror create|delete|enable|disable``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vspan.cli import units
from vspan.cli.client import (
    ClientError,
    add_socket_arg,
    endpoint,
    fail,
    request,
)


def register(sub: Any) -> None:
    """Add ``mirror`` and its actions."""
    p: argparse.ArgumentParser = sub.add_parser("mirror", help="manage mirror sessions")
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = acts.add_parser("create", help="create a local mirror session")
    c.add_argument("name")
    c.add_argument("--source", "-s", action="append", required=True, metavar="PORT[:DIR]",
                   help="source port, optional direction ingress|egress|both (repeatable)")
    c.add_argument("--dest", "-d", action="append", required=True, metavar="PORT",
                   help="destination port (repeatable)")
    c.add_argument("--truncate", type=int, default=None, metavar="BYTES",
                   help="mirrored packet length (>= 60)")
    c.add_argument("--sample", type=int, default=1, metavar="N", help="copy 1 in N frames")
    c.add_argument("--allow-normal-io", action="store_true",
                   help="destination ports also carry normal traffic")
    c.add_argument("--disabled", action="store_true", help="create the session disabled")
    _limit_args(c)
    for action in ("delete", "enable", "disable"):
        a = acts.add_parser(action, help=f"{action} a mirror session")
        a.add_argument("name")
        if action == "enable":
            _limit_args(a)
    for a in acts.choices.values():
        add_socket_arg(a)
    p.set_defaults(func=run)


def _limit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=units.duration, default=None, metavar="TIME",
                   help="the switch disables the session after TIME (90, 30s, 10m, 2h, 7d)")
    p.add_argument("--max-bytes", type=units.size, default=None, metavar="SIZE",
                   help="the switch disables the session once its copies reach SIZE bytes "
                        "(64k, 10M, 1G)")


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.duration is not None:
        out["duration"] = args.duration
    if args.max_bytes is not None:
        out["max_bytes"] = args.max_bytes
    return out


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    sources = []
    for s in args.source:
        port, _, direction = s.partition(":")
        sources.append({"port": port, "direction": direction or "both"})
    spec: dict[str, Any] = {"sources": sources, "destinations": args.dest,
                            "sampling_rate": args.sample,
                            "allow_normal_io": args.allow_normal_io,
                            "enabled": not args.disabled}
    if args.truncate is not None:
        spec["mirrored_packet_length"] = args.truncate
    return spec | _limits(args)


def run(args: argparse.Namespace) -> int:
    """Send the change to the switch."""
    try:
        if args.action == "create":
            data = request(endpoint(args), "POST", f"/mirrors/{args.name}", _spec(args))
        elif args.action == "delete":
            data = request(endpoint(args), "DELETE", f"/mirrors/{args.name}")
        elif args.action == "enable":
            data = request(endpoint(args), "POST", f"/mirrors/{args.name}/enable",
                           _limits(args) or None)
        else:
            data = request(endpoint(args), "POST", f"/mirrors/{args.name}/{args.action}")
    except ClientError as err:
        return fail(err)
    for line in data["changes"] or ["no changes"]:
        sys.stdout.write(line + "\n")
    return 0
