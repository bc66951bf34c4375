"""``vspan acl add|remove|show``: Hyper-V-style port ACLs on the running switch.

    vspan acl add web1 --action deny --direction both --remote-ip 10.0.0.0/8
    vspan acl add web1 --action allow --direction in --remote-mac 02:00:00:00:00:09 --id m1
    vspan acl add web1 --action allow --direction out --weight 100 --protocol tcp \
        --remote-port 443 --stateful          # an extended ACL rule (it has a weight)
    vspan acl remove web1 m1
    vspan acl show web1
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vspan.cli.client import (
    ClientError,
    add_socket_arg,
    endpoint,
    fail,
    print_json,
    print_table,
    request,
)


def register(sub: Any) -> None:
    """Add ``acl``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "acl", help="port ACLs and extended ACLs on the running switch")
    acts = p.add_subparsers(dest="action_name", metavar="ACTION", required=True)
    a = acts.add_parser("add", help="add an ACL entry (with --weight: an extended ACL rule)")
    a.add_argument("port")
    a.add_argument("--action", required=True, choices=["allow", "deny", "meter"])
    a.add_argument("--direction", required=True, choices=["in", "out", "both"],
                   help="in: to the port's VM; out: from it; both: one entry each")
    a.add_argument("--id", default=None, help="entry id (default: generated)")
    a.add_argument("--local-ip", default=None, help="address/prefix of the port's side, or any")
    a.add_argument("--remote-ip", default=None, help="address/prefix of the other side, or any")
    a.add_argument("--local-mac", default=None)
    a.add_argument("--remote-mac", default=None)
    a.add_argument("--weight", type=int, default=None,
                   help="makes it an extended ACL rule (higher weights are evaluated first)")
    a.add_argument("--protocol", default=None, help="extended: tcp, udp, or a number")
    a.add_argument("--local-port", default=None, help="extended: port or range (80, 1000-2000)")
    a.add_argument("--remote-port", default=None, help="extended: port or range")
    a.add_argument("--stateful", action="store_true",
                   help="extended: an allowed connection admits its return traffic")
    a.add_argument("--idle-timeout", type=int, default=None, help="extended: seconds")
    r = acts.add_parser("remove", help="remove an entry by id")
    r.add_argument("port")
    r.add_argument("id")
    s = acts.add_parser("show", help="list a port's entries and counters")
    s.add_argument("port")
    s.add_argument("--json", action="store_true")
    for x in (a, r, s):
        add_socket_arg(x)
    p.set_defaults(func=run)


def _entry(args: argparse.Namespace) -> dict[str, Any]:
    entry: dict[str, Any] = {"action": args.action, "direction": args.direction}
    if args.id:
        entry["id"] = args.id
    for field in ("local_ip", "remote_ip", "local_mac", "remote_mac"):
        if getattr(args, field):
            entry[field] = getattr(args, field)
    if args.weight is not None:
        entry["weight"] = args.weight
        entry["extended"] = True
        for field in ("protocol", "local_port", "remote_port", "idle_timeout"):
            if getattr(args, field) is not None:
                entry[field] = getattr(args, field)
        if args.stateful:
            entry["stateful"] = True
    return entry


def run(args: argparse.Namespace) -> int:
    """Talk to the switch."""
    try:
        if args.action_name == "add":
            data = request(endpoint(args), "POST", f"/ports/{args.port}/acls", _entry(args))
        elif args.action_name == "remove":
            data = request(endpoint(args), "DELETE", f"/ports/{args.port}/acls/{args.id}")
        else:
            shown = request(endpoint(args), "GET", f"/ports/{args.port}/acls")
            if args.json:
                print_json(shown)
            else:
                _render(shown)
            return 0
    except ClientError as err:
        return fail(err)
    for line in data["changes"] or ["no changes"]:
        sys.stdout.write(line + "\n")
    return 0


def _render(shown: dict[str, Any]) -> None:
    meters = shown.get("counters", {}).get("meters", {})
    rows = []
    for e in shown["acls"]:
        m = {k: v for k, v in meters.items() if k.split("/")[0] == e.get("id")}
        pk = sum(v["packets"] for v in m.values())
        rows.append({**e, "meter": f"{pk} pkts" if e.get("action") == "meter" else ""})
    sys.stdout.write(f"port ACL of {shown['port']} (most specific match wins):\n")
    print_table(rows, [("ID", "id"), ("DIR", "direction"), ("ACTION", "action"),
                       ("LOCAL_IP", "local_ip"), ("REMOTE_IP", "remote_ip"),
                       ("LOCAL_MAC", "local_mac"), ("REMOTE_MAC", "remote_mac"),
                       ("METER", "meter")])
    sys.stdout.write(f"\nextended ACL of {shown['port']} (by weight, first match):\n")
    print_table(sorted(shown["extended_acls"], key=lambda e: -int(e.get("weight", 0))),
                [("ID", "id"), ("WEIGHT", "weight"), ("DIR", "direction"),
                 ("ACTION", "action"), ("PROTO", "protocol"), ("LOCAL", "local_ip"),
                 ("LPORT", "local_port"), ("REMOTE", "remote_ip"), ("RPORT", "remote_port"),
                 ("STATEFUL", "stateful")])
