"""``vspan token create|list|revoke``: bearer tokens for the switch's TCP API."""

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
    print_json,
    print_table,
    request,
)
from vspan.config.access import Role


def register(sub: Any) -> None:
    """Add ``token`` and its actions."""
    p: argparse.ArgumentParser = sub.add_parser(
        "token", help="bearer tokens for the TCP API (admin)",
        description="Tokens let clients use the switch's API over TCP (vspan up --listen). "
                    "A token is shown once, when it is made; the switch keeps only a hash. "
                    "Roles: viewer (read), operator (ports, VLANs, ACLs, firewall, reload), "
                    "mirror-admin (mirror sessions, captures), admin (everything, tokens, "
                    "audit log).")
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = acts.add_parser("create", help="make a token (printed once)")
    c.add_argument("name")
    c.add_argument("--role", required=True, choices=[r.value for r in Role])
    c.add_argument("--expires", type=units.duration, default=None, metavar="TIME",
                   help="the token stops working after TIME (30m, 12h, 90d); default: never")
    c.add_argument("--json", action="store_true", help="JSON output")
    lst = acts.add_parser("list", help="list tokens (never their secrets)")
    lst.add_argument("--json", action="store_true", help="JSON output")
    r = acts.add_parser("revoke", help="revoke a token at once")
    r.add_argument("name")
    for a in acts.choices.values():
        add_socket_arg(a)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Ask the switch."""
    target = endpoint(args)
    try:
        if args.action == "create":
            body: dict[str, Any] = {"name": args.name, "role": args.role}
            if args.expires is not None:
                body["expires_in"] = args.expires
            data = request(target, "POST", "/tokens", body)
            if args.json:
                print_json(data)
            else:
                sys.stdout.write(data["token"] + "\n")
                sys.stderr.write(f"vspan: token {data['name']} ({data['role']}"
                                 + (f", expires {data['expires']}" if data["expires"] else "")
                                 + "): it is shown only this once; the switch keeps a hash\n")
        elif args.action == "list":
            rows = request(target, "GET", "/tokens")
            if args.json:
                print_json(rows)
            else:
                print_table(rows, [("NAME", "name"), ("ROLE", "role"), ("STATE", "state"),
                                   ("CREATED", "created"), ("EXPIRES", "expires"),
                                   ("LAST USED", "last_used")])
        else:
            data = request(target, "DELETE", f"/tokens/{args.name}")
            sys.stdout.write(f"token {data['name']} revoked\n")
    except ClientError as err:
        return fail(err)
    return 0
