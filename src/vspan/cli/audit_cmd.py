"""``vspan audit``: who changed what, who started and stopped which mirror and capture,
and which requests were refused."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from vspan.cli import units
from vspan.cli.client import (
    ClientError,
    add_socket_arg,
    endpoint,
    fail,
    print_table,
    request,
)
from vspan.control.audit import AuditFilter, AuditLog, parse_time, utc_text


def register(sub: Any) -> None:
    """Add ``audit``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "audit", help="show the audit log (admin)",
        description="Every change, every mirror/capture start and stop (also those the "
                    "switch makes itself at a time box or byte cap) and every refused "
                    "request, oldest first. Read from the running switch, or with --file "
                    "straight from an audit log (also when the switch is down).")
    p.add_argument("--since", default=None, metavar="TIME",
                   help="entries from TIME on: ISO 8601 (2024-05-01T12:00Z) or an age "
                        "(90s, 10m, 2h, 7d)")
    p.add_argument("--identity", default=None,
                   help="only this identity (uid:0(root), token:ci) or kind (uid:, token:)")
    p.add_argument("--action", default=None,
                   help="only this action (mirror.create) or family (mirror., capture.)")
    p.add_argument("--result", choices=["ok", "refused", "failed"], default=None)
    p.add_argument("-n", "--limit", type=int, default=1000, help="newest N entries (0: all)")
    p.add_argument("--json", action="store_true", help="JSON lines, as the log has them")
    p.add_argument("--file", default=None, metavar="PATH",
                   help="read this audit log (e.g. /var/lib/vspan/vspan0/audit.jsonl) "
                        "instead of asking the switch")
    add_socket_arg(p)
    p.set_defaults(func=run)


def _since(text: str | None) -> str | None:
    """``--since`` as ISO 8601 UTC."""
    if text is None:
        return None
    try:
        return utc_text(time.time() - units.duration(text))
    except argparse.ArgumentTypeError:
        pass
    try:
        return utc_text(parse_time(text))
    except ValueError:
        raise ValueError(f"--since {text!r} is neither an ISO 8601 time nor an age "
                         "(like 2h)") from None


def run(args: argparse.Namespace) -> int:
    """Fetch (or read), filter, print."""
    try:
        since = _since(args.since)
    except ValueError as err:
        return fail(err)
    if args.file:
        flt = AuditFilter(parse_time(since) if since else None, args.identity, args.action,
                          args.result)
        rows = [e.as_dict() for e in AuditLog(args.file).read(flt, max(args.limit, 0))]
    else:
        params = {k: v for k, v in (("since", since), ("identity", args.identity),
                                    ("action", args.action), ("result", args.result),
                                    ("limit", max(args.limit, 0))) if v is not None}
        try:
            rows = request(endpoint(args), "GET", "/audit", params=params)
        except ClientError as err:
            return fail(err)
    if args.json:
        for row in rows:
            sys.stdout.write(json.dumps(row, separators=(",", ":")) + "\n")
        return 0
    print_table(rows, [("TIME", "time"), ("IDENTITY", "identity"), ("ROLE", "role"),
                       ("SOURCE", "source"), ("ACTION", "action"), ("TARGET", "target"),
                       ("RESULT", "result"), ("STATUS", "status"), ("DETAIL", "detail")])
    return 0
