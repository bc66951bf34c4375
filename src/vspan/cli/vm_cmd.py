"""``vspan vm``: move a VM's port between hosts of a distributed switch.

    vspan vm migrate VM --to HOST [--timeout S] [--json]   request, follow, report
    vspan vm migrate VM --abort                             before the port is exported
    vspan vm migrations [--json]                            every port's last migration

The command only writes the request and watches the record; the two hosts' agents
do the work (docs/dvs.md, "Migration"), so a command that is interrupted changes
nothing about the migration, and ``vspan vm migrations`` shows where it is.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from vspan.cli.client import print_json, print_table
from vspan.cli.dvsclient import add_store_options, command_group, fail, guarded, open_switch


def register(sub: Any) -> None:
    """Add ``vm`` and its sub-commands."""
    vsub = command_group(sub, "vm", "migrate a VM's port between hosts of a distributed switch")
    p = vsub.add_parser("migrate", help="move a VM's port (id, counters, policy, connection "
                        "state, mirror sessions) to another host")
    p.add_argument("vm", help="the VM's name (a port's 'vm') or a port name")
    p.add_argument("--to", help="destination host")
    p.add_argument("--abort", action="store_true",
                   help="abort the VM's migration (only before its port is exported)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to follow the migration (it goes on without the command)")
    p.add_argument("--json", action="store_true", help="the final record as JSON")
    add_store_options(p)
    p.set_defaults(func=run_migrate)
    p = vsub.add_parser("migrations", help="every port's last migration and its phase")
    p.add_argument("--json", action="store_true", help="JSON output")
    add_store_options(p)
    p.set_defaults(func=run_migrations)


def _ts(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S.%f")[:-3]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


@guarded
def run_migrate(args: argparse.Namespace) -> int:
    """Request the migration, print its phases as they happen, then the report."""
    from vspan.control.dvs.admin import _who
    from vspan.control.dvs.migration import (
        ENDED,
        MigrationError,
        abort,
        find_port,
        read,
        request,
    )

    admin = open_switch(args)
    store = admin.store
    st = admin.state()
    try:
        if args.abort:
            port = find_port(st.config(), args.vm)
            rec = abort(store, admin.keys, port, _who())
            sys.stdout.write(f"migration {rec['id']} of {port} aborted; the port stays on "
                             f"{rec['from']}\n")
            return 0
        if not args.to:
            return fail("name the destination host with --to HOST")
        rec = request(store, st, args.vm, args.to, _who())
    except MigrationError as err:
        return fail(str(err))
    port = rec["port"]
    out = sys.stdout
    if not args.json:
        out.write(f"migration {rec['id']}: VM {rec['vm']} (port {port}, id {rec['port_id']}) "
                  f"from {rec['from']} to {rec['to']}\n")
    seen = 1
    deadline = time.monotonic() + args.timeout
    last = rec
    while time.monotonic() < deadline:
        _kv, cur = read(store, admin.keys, port)
        if cur is None or cur.get("id") != rec["id"]:
            return fail("the migration record was replaced or removed")
        last = cur
        hist = cur.get("history", [])
        if not args.json:
            for h in hist[seen:]:
                who = f" by {h['host']}" if h.get("host") else ""
                note = f" ({h['note']})" if h.get("note") else ""
                out.write(f"  {_ts(h['at'])}  {h['phase']}{who}{note}\n")
            out.flush()
        seen = len(hist)
        if cur["phase"] in ENDED:
            break
        time.sleep(0.05)
    if args.json:
        print_json(last)
    else:
        _report(last)
    if last["phase"] == "done":
        return 0
    if last["phase"] not in ENDED:
        sys.stderr.write(f"vspan: migration {rec['id']} is still in phase {last['phase']} "
                         f"after {args.timeout:.0f} s; it goes on without this command "
                         "(`vspan vm migrations` shows it; before it is exported, "
                         f"`vspan vm migrate {args.vm} --abort` ends it)\n")
        return 1
    return 1


def _report(rec: dict[str, Any]) -> None:
    out = sys.stdout
    phase = rec["phase"]
    if phase != "done":
        out.write(f"migration {rec['id']} {phase}: {rec.get('error', '')}\n")
        return
    exp, att, res = rec.get("export", {}), rec.get("attach", {}), rec.get("result", {})
    times = res.get("switch_over", {})
    out.write(f"port {rec['port']} keeps id {rec['port_id']}; now on {rec['to']}\n")
    out.write(f"  switch-over (last frame on {rec['from']} -> first on {rec['to']}, its "
              f"announcement or its traffic): {_ms(times.get('switch_over'))}; the VM's own "
              f"traffic again after {_ms(times.get('traffic_resumed'))}; port attached "
              f"nowhere for {_ms(times.get('detached'))}; whole migration "
              f"{_ms(times.get('total'))}\n")
    c0, c1 = exp.get("counters", {}), att.get("counters", {})
    out.write(f"  counters carried: rx {c0.get('rx_frames', 0)} tx {c0.get('tx_frames', 0)} "
              f"on {rec['from']} -> rx {c1.get('rx_frames', 0)} tx {c1.get('tx_frames', 0)} "
              f"at attach on {rec['to']}\n")
    imp = att.get("imported", {})
    pol = exp.get("policy", {})
    out.write(f"  connection state moved: {imp.get('connections', 0)} of "
              f"{len(pol.get('connections', []))} connections, "
              f"{imp.get('ext_acl_sessions', 0)} of {len(pol.get('ext_acl_sessions', []))} "
              f"extended-ACL sessions"
              + (f" ({imp['not_taken']} not taken)" if imp.get("not_taken") else "") + "\n")
    if exp.get("state_lost"):
        out.write(f"  WARNING: {exp['state_lost']}\n")
    macs = att.get("announced_macs", [])
    out.write(f"  announced {', '.join(macs) or 'no MAC'} with RARP from {rec['to']} "
              f"({att.get('announced', 0)} frames in 5 rounds)\n")
    lost = res.get("lost", {})
    if not rec.get("sessions"):
        out.write("  mirror sessions: none copies this port\n")
    elif not lost.get("measured"):
        out.write(f"  mirror copies lost: not measured ({lost.get('why', '')})\n")
    else:
        out.write(f"  frames the VM's interface carried while no switch had the port: "
                  f"{lost['unswitched_from_vm']} from the VM, {lost['unswitched_to_vm']} "
                  "to it\n")
        rows = [{"session": s, "lost": n, "copies": ",".join(
            d for d in ("ingress", "egress") if rec["sessions"][s].get(d))}
            for s, n in lost.get("sessions", {}).items()]
        print_table(rows, [("  SESSION", "session"), ("COPIES", "copies"),
                           ("LOST_COPIES", "lost")])


@guarded
def run_migrations(args: argparse.Namespace) -> int:
    """Every port's last migration."""
    from vspan.control.dvs.document import loads
    from vspan.control.dvs.migration import switch_over
    from vspan.control.store.base import prefix_end

    admin = open_switch(args)
    store = admin.store
    pre = admin.keys.migrations_prefix
    snap = store.get_range(pre, prefix_end(pre))
    recs = [loads(kv.value, kv.key) for kv in snap.items]
    if args.json:
        print_json(recs)
        return 0
    rows = []
    now = time.time()
    for r in recs:
        hist = r.get("history", [])
        rows.append({"port": r.get("port"), "vm": r.get("vm"), "id": r.get("id"),
                     "from": r.get("from"), "to": r.get("to"), "phase": r.get("phase"),
                     "since": f"{now - hist[-1]['at']:.1f} s" if hist else "-",
                     "switch_over": _ms(switch_over(r).get("switch_over")),
                     "error": r.get("error", "")})
    print_table(rows, [("PORT", "port"), ("VM", "vm"), ("MIGRATION", "id"), ("FROM", "from"),
                       ("TO", "to"), ("PHASE", "phase"), ("SINCE", "since"),
                       ("SWITCH_OVER", "switch_over"), ("ERROR", "error")])
    return 0
