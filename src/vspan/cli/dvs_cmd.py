"""``vspan dvs``: create, change and show a distributed switch kept in etcd.

    vspan dvs apply FILE [--dry-run]          one transaction; errors name their path
    vspan dvs show [hosts|ports|port-groups|mirrors|config] [--host H] [--json]
    vspan dvs set port-group web vlan.id=20   ovs-vsctl-like edits (YAML values)
    vspan dvs add port web2 host=esx2 port_group=web mac=02:00:00:00:00:02
    vspan dvs remove port web2
    vspan dvs create NAME / delete NAME --yes / list / export
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from vspan.cli.client import print_json, print_table
from vspan.cli.dvsclient import (
    add_store_options,
    command_group,
    fail,
    guarded,
    open_store,
    open_switch,
)

KINDS = {"switch": "switch", "host": "hosts", "port-group": "port_groups", "port": "ports",
         "mirror": "mirrors", "firewall": "firewall"}


def register(sub: Any) -> None:
    """Add ``dvs`` and its sub-commands."""
    dsub = command_group(sub, "dvs", "a distributed switch over many hosts (state in etcd)")

    p = dsub.add_parser("apply", help="make the switch equal a YAML file (one transaction)")
    p.add_argument("file")
    p.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    add_store_options(p, name=False)
    p.set_defaults(func=run_apply)

    p = dsub.add_parser("show", help="hosts, ports, port groups, mirrors, config")
    p.add_argument("what", nargs="?", default="hosts",
                   choices=["hosts", "ports", "port-groups", "mirrors", "config"])
    p.add_argument("--host", default=None, help="only this host")
    p.add_argument("--json", action="store_true", help="JSON output")
    add_store_options(p)
    p.set_defaults(func=run_show)

    p = dsub.add_parser("create", help="create an empty distributed switch")
    p.add_argument("name")
    p.add_argument("--vxlan-port", type=int, default=None)
    p.add_argument("--mtu", type=int, default=None, help="underlay MTU")
    add_store_options(p, name=False)
    p.set_defaults(func=run_create)

    p = dsub.add_parser("delete", help="delete a distributed switch from the store")
    p.add_argument("name")
    p.add_argument("--yes", action="store_true", help="really")
    add_store_options(p, name=False)
    p.set_defaults(func=run_delete)

    p = dsub.add_parser("list", help="distributed switches in the store")
    add_store_options(p, name=False)
    p.set_defaults(func=run_list)

    p = dsub.add_parser("export", help="the stored configuration as YAML (with port ids)")
    add_store_options(p)
    p.set_defaults(func=run_export)

    for verb, helptext in (("set", "change fields of an item: KEY=VALUE (dotted keys)"),
                           ("add", "add an item: KEY=VALUE ..."),
                           ("remove", "remove an item")):
        p = dsub.add_parser(verb, help=helptext)
        p.add_argument("kind", choices=sorted(KINDS))
        p.add_argument("name", nargs="?", default="", help="item name (not for switch)")
        if verb != "remove":
            p.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                           help="YAML values, e.g. vlan.id=20 or 'vlan={mode: trunk, "
                                "allowed: [10, 20]}'")
        add_store_options(p)
        p.set_defaults(func=run_edit, verb=verb)


# ----------------------------------------------------------------- commands
@guarded
def run_apply(args: argparse.Namespace) -> int:
    """Validate the file, then write it in one transaction."""
    from vspan.config.dvs import DvsConfig
    from vspan.config.load import parse_model, read_text_file, read_yaml
    from vspan.control.dvs.admin import DvsAdmin

    dvs = parse_model(DvsConfig, read_yaml(read_text_file(args.file), args.file), args.file)
    result = DvsAdmin(open_store(args.etcd), dvs.switch.name).apply(dvs, dry_run=args.dry_run)
    if not result.changes:
        sys.stdout.write(f"{dvs.switch.name}: no changes (generation {result.generation})\n")
        return 0
    for line in result.changes:
        sys.stdout.write(line + "\n")
    if args.dry_run:
        sys.stdout.write("dry run: nothing written\n")
    else:
        sys.stdout.write(f"{dvs.switch.name}: generation {result.generation} written at "
                         f"revision {result.revision}\n")
    return 0


@guarded
def run_create(args: argparse.Namespace) -> int:
    """Create an empty switch."""
    from vspan.control.dvs.admin import DvsAdmin

    result = DvsAdmin(open_store(args.etcd), args.name).create(args.vxlan_port, args.mtu)
    sys.stdout.write(f"distributed switch {args.name} created (revision {result.revision})\n")
    return 0


@guarded
def run_delete(args: argparse.Namespace) -> int:
    """Delete a switch's keys."""
    from vspan.control.dvs.admin import DvsAdmin

    if not args.yes:
        return fail(f"deleting {args.name} removes its whole configuration: add --yes")
    DvsAdmin(open_store(args.etcd), args.name).delete()
    sys.stdout.write(f"distributed switch {args.name} deleted\n")
    return 0


@guarded
def run_list(args: argparse.Namespace) -> int:
    """Names of the switches."""
    from vspan.control.dvs.admin import list_switches

    for name in list_switches(open_store(args.etcd)):
        sys.stdout.write(name + "\n")
    return 0


@guarded
def run_export(args: argparse.Namespace) -> int:
    """The stored configuration as YAML."""
    dvs = open_switch(args).state().config()
    sys.stdout.write(yaml.safe_dump(dvs.model_dump(mode="json", exclude_unset=True),
                                    sort_keys=False))
    return 0


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def _settings(items: list[str]) -> list[tuple[str, Any]]:
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError as err:
            raise ValueError(f"{item!r}: the value is not YAML ({err})") from None
        out.append((key, value))
    return out


@guarded
def run_edit(args: argparse.Namespace) -> int:
    """``set`` / ``add`` / ``remove`` one item (read, change, validate, apply; retried)."""
    from vspan.control.dvs.admin import DvsError

    section = KINDS[args.kind]
    single = section in ("switch", "firewall")
    if not single and not args.name:
        return fail(f"name the {args.kind}")
    settings = _settings(getattr(args, "settings", []) or [])

    def change(data: dict[str, Any]) -> None:
        if single:
            node = data.setdefault(section, {})
            if args.verb == "remove":
                data.pop(section, None)
                return
        else:
            items = data.setdefault(section, {})
            exists = args.name in items
            if args.verb == "add" and exists:
                raise DvsError(f"{args.kind} {args.name!r} already exists (use set)")
            if args.verb != "add" and not exists:
                raise DvsError(f"no {args.kind} named {args.name!r}")
            if args.verb == "remove":
                del items[args.name]
                return
            node = items.setdefault(args.name, {})
        for key, value in settings:
            _set_path(node, key, value)

    result = open_switch(args).edit(change)
    for line in result.changes or ["no changes"]:
        sys.stdout.write(line + "\n")
    return 0


@guarded
def run_show(args: argparse.Namespace) -> int:
    """Cluster-wide views."""
    from vspan.control.dvs import views

    admin = open_switch(args)
    st = admin.state()
    dvs = st.config()
    statuses = admin.statuses()
    if args.what == "config":
        print_json(dvs.model_dump(mode="json", exclude_unset=True))
        return 0
    data: Any
    if args.what == "hosts":
        data = views.hosts_view(st, dvs, statuses)
        if args.host:
            data = [r for r in data if r["host"] == args.host]
    elif args.what == "ports":
        data = views.ports_view(st, dvs, statuses, args.host)
    elif args.what == "port-groups":
        data = views.port_groups_view(dvs, args.host)
    else:
        data = views.mirrors_view(dvs, statuses, args.host)
    if args.json:
        print_json(data)
        return 0
    _render(args.what, data, dvs.switch.name, st.meta.generation)
    return 0


def _render(what: str, rows: list[dict[str, Any]], name: str, generation: int) -> None:
    if what == "hosts":
        sys.stdout.write(f"distributed switch {name}, configuration generation "
                         f"{generation}\n")
        print_table(rows, [("HOST", "host"), ("STATUS", "status"), ("UNDERLAY", "underlay"),
                           ("PORTS", "ports"), ("STORE", "store"),
                           ("GENERATION", "applied_generation"), ("IN_SYNC", "in_sync"),
                           ("REPORT_AGE", "last_report_age"), ("VERSION", "version")])
        for r in rows:
            if not r["declared"]:
                sys.stdout.write(f"  {r['host']}: not declared under 'hosts'\n")
            for line in ([r["refused"]] if r["refused"] else []) + r["errors"]:
                sys.stdout.write(f"  {r['host']}: error: {line}\n")
            for line in r["notes"]:
                sys.stdout.write(f"  {r['host']}: {line}\n")
    elif what == "ports":
        print_table(rows, [("PORT", "port"), ("ID", "port_id"), ("VM", "vm"), ("MAC", "mac"),
                           ("HOST", "host"), ("PORT_GROUP", "port_group"), ("VLAN", "vlan"),
                           ("STATE", "state"), ("RX", "rx_frames"), ("TX", "tx_frames"),
                           ("DROPPED", "dropped"), ("REASON", "reason")])
    elif what == "port-groups":
        print_table(rows, [("PORT_GROUP", "port_group"), ("VLAN", "vlan"), ("PORTS", "ports"),
                           ("HOSTS", "hosts"), ("ACLS", "acls"),
                           ("EXT_ACLS", "extended_acls"), ("GUARDS", "guards")])
    else:
        for r in rows:
            r["where"] = " ".join(f"{h}({','.join(roles)})"
                                  for h, roles in r["roles"].items()) or "-"
            r["vlan"] = r["overlay_vlan"] if r["overlay_vlan"] is not None else "-"
        print_table(rows, [("SESSION", "name"), ("ENABLED", "enabled"), ("SOURCES", "sources"),
                           ("DESTINATIONS", "destinations"), ("FILTER", "filter"),
                           ("OFFERED", "counters.offered"), ("MIRRORED", "counters.mirrored"),
                           ("OVERLAY_TX", "counters.overlay_sent"),
                           ("OVERLAY_RX", "counters.overlay_received"),
                           ("DROPPED", "counters.dropped"), ("MIRROR_VLAN", "vlan"),
                           ("HOSTS", "where")])
        for r in rows:
            for h, status in r["hosts"].items():
                if status and status != "ok":
                    sys.stdout.write(f"  {r['name']} on {h}: {status}\n")
