"""``vspan firewall show`` and ``vspan firewall rule add|remove`` on the running switch."""

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
    """Add ``firewall``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "firewall", help="the distributed firewall of the running switch")
    acts = p.add_subparsers(dest="fw_action", metavar="ACTION", required=True)
    s = acts.add_parser("show", help="sections, rules, hit counts, connections")
    s.add_argument("--json", action="store_true")
    rule = acts.add_parser("rule", help="add or remove a rule")
    racts = rule.add_subparsers(dest="rule_action", metavar="ACTION", required=True)
    a = racts.add_parser("add", help="add a rule to a section (created if new)")
    a.add_argument("--section", required=True)
    a.add_argument("--id", required=True)
    a.add_argument("--action", required=True, choices=["allow", "drop", "reject"])
    a.add_argument("--direction", default="both", choices=["in", "out", "both"])
    a.add_argument("--source", action="append", default=None,
                   help="address, prefix, group name or any (repeatable)")
    a.add_argument("--destination", action="append", default=None)
    a.add_argument("--service", action="append", default=None,
                   help="e.g. tcp/80, udp/53, icmp (repeatable)")
    a.add_argument("--applied-to", action="append", default=None, help="port or group")
    a.add_argument("--position", type=int, default=None, help="1-based place in the section")
    r = racts.add_parser("remove", help="remove a rule by id")
    r.add_argument("id")
    for x in (s, a, r):
        add_socket_arg(x)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Talk to the switch."""
    try:
        if args.fw_action == "show":
            shown = request(endpoint(args), "GET", "/firewall")
            if args.json:
                print_json(shown)
            else:
                _render(shown)
            return 0
        if args.rule_action == "add":
            body: dict[str, Any] = {"id": args.id, "action": args.action,
                                    "direction": args.direction}
            for flag, key in (("source", "sources"), ("destination", "destinations"),
                              ("service", "services"), ("applied_to", "applied_to")):
                if getattr(args, flag):
                    body[key] = getattr(args, flag)
            if args.position is not None:
                body["position"] = args.position
            data = request(endpoint(args), "POST", f"/firewall/sections/{args.section}/rules", body)
        else:
            data = request(endpoint(args), "DELETE", f"/firewall/rules/{args.id}")
    except ClientError as err:
        return fail(err)
    for line in data["changes"] or ["no changes"]:
        sys.stdout.write(line + "\n")
    return 0


def service_text(svc: Any) -> str:
    """A rule's service as written in a configuration: ``tcp/80,443``, ``icmp/8:0``,
    ``udp/53 from 1024-65535``."""
    if not isinstance(svc, dict):
        return str(svc)
    text = str(svc.get("protocol", "any"))
    if svc.get("ports"):
        text += "/" + ",".join(str(p) for p in svc["ports"])
    if svc.get("icmp_type") is not None:
        text += f"/{svc['icmp_type']}"
        if svc.get("icmp_code") is not None:
            text += f":{svc['icmp_code']}"
    if svc.get("source_ports"):
        text += " from " + ",".join(str(p) for p in svc["source_ports"])
    return text


def _render(shown: dict[str, Any]) -> None:
    cfg = shown.get("config")
    if not cfg:
        sys.stdout.write("no firewall configured\n")
        return
    hits = shown.get("rule_hits", {})
    for sec in cfg.get("sections", []):
        sys.stdout.write(f"section {sec['name']}:\n")
        rows = [{**r, "hits": hits.get(r.get("id", ""), 0),
                 "services": [service_text(x) for x in r.get("services") or []]}
                for r in sec.get("rules", [])]
        print_table(rows, [("ID", "id"), ("ACTION", "action"), ("DIR", "direction"),
                           ("SOURCES", "sources"), ("DESTINATIONS", "destinations"),
                           ("SERVICES", "services"), ("APPLIED_TO", "applied_to"),
                           ("HITS", "hits")])
    sys.stdout.write(f"default rule: {cfg.get('default_action', 'allow')}\n")
    conns = shown.get("connections", {})
    if conns:
        sys.stdout.write("\n")
        print_table([{"port": p, **c} for p, c in conns.items()],
                    [("PORT", "port"), ("ACTIVE", "active"), ("INVALID", "invalid"),
                     ("AFTER_RESET", "after_reset"), ("RST_NOT_EXACT", "rst_not_exact")])
