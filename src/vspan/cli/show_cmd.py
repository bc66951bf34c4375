"""``vspan show ports|fdb|mirrors|counters|vteps|accounting|config|live|state|metrics``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from vspan.cli.client import (
    ClientError,
    Endpoint,
    add_socket_arg,
    endpoint,
    fail,
    print_json,
    print_table,
    request,
)
from vspan.config.load import ConfigError, dump_text, parse_config


def register(sub: Any) -> None:
    """Add ``show``."""
    p: argparse.ArgumentParser = sub.add_parser("show", help="show the running switch's state")
    p.add_argument("what", choices=["ports", "fdb", "mirrors", "counters", "vteps",
                                    "accounting", "config", "live", "state", "metrics"],
                   help="config: the running configuration as YAML (save it to keep live "
                        "changes); live: changes made with commands that the file lacks; "
                        "state: the state file and what the last start restored from it; "
                        "accounting: check that every received frame was forwarded, dropped "
                        "or consumed (exit status 1 naming the port when not)")
    p.add_argument("--json", action="store_true", help="JSON output")
    add_socket_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fetch and print."""
    try:
        if args.what == "metrics":
            sys.stdout.write(request(endpoint(args), "GET", "/metrics"))
            return 0
        path = {"config": "/config", "live": "/live", "state": "/state"}.get(
            args.what, f"/show/{args.what}")
        data = request(endpoint(args), "GET", path)
        if args.what == "config" and not args.json:
            return _print_config(endpoint(args), data)
    except ClientError as err:
        return fail(err)
    if args.json:
        print_json(data)
    else:
        render(args.what, data)
    if args.what == "accounting" and not data["ok"]:
        return 1
    return 0


def _print_config(socket: Endpoint, data: Any) -> int:
    """The running configuration as YAML (``vspan check-config`` accepts it), headed by
    comments naming the live changes its file lacks."""
    try:
        cfg = parse_config(data, str(socket))
    except ConfigError as err:
        return fail(err)
    live = request(socket, "GET", "/live")
    head = [f"# running configuration of switch {cfg.switch.name} (vspan show config)"]
    path = live.get("config_path")
    if path:
        head.append(f"# started from {path}")
    pending = [c for c in live["changes"] if not c.get("in_file")]
    if pending:
        where = f"not in {path}" if path else "made with commands"
        head.append(f"# live changes {where} (a plain `vspan reload` would refuse to undo "
                    "them):")
        head.extend(f"#   {c['text']}" for c in pending)
    sys.stdout.write("\n".join(head) + "\n" + dump_text(cfg))
    return 0


def truncated_text(counters: dict[str, Any]) -> str:
    """Copies cut to the session's length, and (encapsulating sessions) those cut to the
    path MTU: ``"12 (+3 mtu)"``."""
    text = str(counters.get("truncated", 0))
    if "encap_truncated" in counters:
        text += f" (+{counters['encap_truncated']} mtu)"
    return text


def limits_text(session: dict[str, Any]) -> str:
    """A session's time box and byte cap: ``"until 10:30:00Z, 1000/5000 B"``."""
    parts = []
    if session.get("stop_at"):
        parts.append(f"until {session['stop_at']}")
    if session.get("max_bytes"):
        parts.append(f"{session['counters'].get('cap_bytes', 0)}/{session['max_bytes']} B")
    return ", ".join(parts)


def render(what: str, data: Any) -> None:
    """Tables for humans."""
    if what == "ports":
        data = with_team_members(data)
        print_table(data, [("PORT", "name"), ("TYPE", "type"), ("IFACE", "interface"),
                           ("LINK", "link"), ("VLAN", "vlan"), ("MTU", "mtu"), ("ROLE", "role"),
                           ("MACS", "macs"), ("RX", "counters.rx_frames"),
                           ("TX", "counters.tx_frames"), ("MIRRORED", "counters.mirrored_out"),
                           ("DROPPED", "counters.dropped")])
        for line in team_lines(data):
            sys.stdout.write(line + "\n")
    elif what == "fdb":
        print_table(data, [("VLAN", "vlan"), ("MAC", "mac"), ("PORT", "port"), ("VTEP", "vtep"),
                           ("AGE", "age")])
    elif what == "mirrors":
        print_table([{**m, "cut": truncated_text(m["counters"]), "limits": limits_text(m)}
                     for m in data],
                    [("SESSION", "name"), ("KIND", "kind"), ("ENABLED", "enabled"),
                     ("SOURCES", "sources"), ("DESTINATIONS", "destinations"),
                     ("FILTER", "filter"),
                     ("TRUNC", "mirrored_packet_length"), ("SAMPLE", "sampling_rate"),
                     ("MIRRORED", "counters.mirrored"), ("TRUNCATED", "cut"),
                     ("DROPPED", "counters.dropped"), ("LIMITS", "limits"),
                     ("STATUS", "status")])
    elif what == "live":
        rows = [{**c, "state": "in file" if c.get("in_file") else "not in file"
                 if c.get("in_file") is False else "-"} for c in data["changes"]]
        if not rows:
            sys.stdout.write("no live changes: the switch runs its configuration file\n")
            return
        print_table(rows, [("ITEM", "item"), ("FILE", "state"), ("HOW", "history")])
        if data.get("file_problem"):
            sys.stdout.write(f"(cannot read the configuration file: {data['file_problem']})\n")
    elif what == "vteps":
        _render_vteps(data)
    elif what == "state":
        render_state(data)
    elif what == "accounting":
        _render_accounting(data)
    elif what == "counters":
        rows = [{"port": k, **v} for k, v in data["ports"].items()]
        print_table(rows, [("PORT", "port"), ("RX", "rx_frames"), ("RX_BYTES", "rx_bytes"),
                           ("TX", "tx_frames"), ("TX_BYTES", "tx_bytes"),
                           ("FLOODED", "flooded"), ("MIRRORED", "mirrored_out"),
                           ("DROPPED", "dropped"), ("FORWARDED", "forwarded"),
                           ("RX_DROPPED", "rx_dropped"), ("CONSUMED", "consumed")])
        sys.stdout.write("\n")
        fates = [{"port": p, "reason": r, "frames": n}
                 for p, by in data.get("rx_dropped", {}).items() for r, n in by.items()]
        if fates:
            sys.stdout.write("received and delivered nowhere, by first drop reason:\n")
            print_table(fates, [("PORT", "port"), ("REASON", "reason"), ("FRAMES", "frames")])
            sys.stdout.write("\n")
        if data["drops"]:
            print_table(data["drops"], [("PORT", "port"), ("REASON", "reason"),
                                        ("RULE", "rule"), ("FRAMES", "frames")])
        else:
            sys.stdout.write("no drops\n")
        fc = data["flow_cache"]
        sys.stdout.write(f"\nflow cache: {fc['entries']} entries (of {fc['max_entries']}, "
                         f"~{fc['bytes'] / 2**20:.1f} MiB, {fc['bytes_per_entry']} bytes each), "
                         f"{fc['hits']} hits, {fc['misses']} misses, {fc['invalidations']} "
                         f"invalidations ({fc['invalidated']} flows), {fc['evictions']} "
                         "evicted\n")
        if "poll" in data:
            sys.stdout.write(poll_text(data["poll"]) + "\n")


def poll_text(poll: dict[str, Any]) -> str:
    """How the engine waits for frames and what busy polling cost so far (one line)."""
    mode = poll["mode"]
    head = f"poll: {mode}" + (f" ({poll['busy_us']} µs after traffic)"
                              if mode == "adaptive" else "")
    return (f"{head}: {poll['waits']} blocking waits, {poll['busy_polls']} busy polls "
            f"({poll['busy_frames']} frames found, {poll['empty_polls']} empty, "
            f"{poll['empty_seconds']:.3f} s)"
            + (f"; {poll['predicted_frames']} frames found in {poll['predicted_windows']} "
               "predicted windows" if poll.get("predict") and mode == "adaptive" else "")
            + (f"; wake path {poll['wake']}, {poll['gil_waits']} GIL waits after a wake-up"
               if "wake" in poll else ""))


def _render_accounting(data: dict[str, Any]) -> None:
    rows = [dict(p, dropped=sum(p["dropped"].values())) for p in data["ports"]]
    print_table(rows, [("PORT", "port"), ("RECEIVED", "received"), ("FORWARDED", "forwarded"),
                       ("DROPPED", "dropped"), ("CONSUMED", "consumed"),
                       ("DIFFERENCE", "difference")])
    if data["ok"]:
        sys.stdout.write("accounting holds: every received frame was forwarded, dropped or "
                         "consumed\n")
    for line in data["failures"]:
        sys.stdout.write(f"ACCOUNTING FAILS: {line}\n")


def _render_vteps(data: dict[str, Any]) -> None:
    if not data["ports"]:
        sys.stdout.write("no vxlan ports\n")
        return
    for p in data["ports"]:
        drops = ", ".join(f"{k} {v}" for k, v in p["rx_drops"].items()) or "none"
        tx_drops = ", ".join(f"{k} {v}" for k, v in p["tx_drops"].items()) or "none"
        sys.stdout.write(f"port {p['port']}: VTEP {p['local']}, underlay MTU "
                         f"{p['underlay_mtu']} (VMs: MTU {p['vm_mtu']}), "
                         f"{p['macs']} remote MACs\n  received and dropped: {drops}\n"
                         f"  not sent: {tx_drops}\n")
        if p["last_unknown_vtep"]:
            sys.stdout.write(f"  last packet from an unknown VTEP: {p['last_unknown_vtep']}\n")
    sys.stdout.write("\n")
    vteps = [dict(v, rx_drops=",".join(f"{k}:{n}" for k, n in v["rx_drops"].items()))
             for v in data["vteps"]]
    print_table(vteps, [("PORT", "port"), ("VTEP", "vtep"), ("ROLES", "roles"),
                                ("MACS", "macs"), ("TX", "tx_frames"), ("TX_BYTES", "tx_bytes"),
                                ("TX_ERR", "tx_errors"), ("RX", "rx_frames"),
                                ("RX_BYTES", "rx_bytes"), ("RX_DROPS", "rx_drops")])
    if data["table"]:
        sys.stdout.write("\n")
        print_table(data["table"], [("PORT", "port"), ("VLAN", "vlan"), ("MAC", "mac"),
                                    ("VTEP", "vtep"), ("STATIC", "static"), ("AGE", "age")])


def team_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One line per team under the table: mode, active members and the failover counters."""
    lines = []
    for row in rows:
        team = row.get("team")
        if not team:
            continue
        per_member = ", ".join(f"{m['name']} {m['failovers']}" for m in team["members"])
        policy = team["mode"] + (f" {team['load_balancing']}" if team.get("load_balancing")
                                 else "")
        lines.append(f"team {row['name']}: {policy}; active: "
                     f"{', '.join(team['active']) or 'none'}; failovers {team['failovers']} "
                     f"({per_member}); frames with no member to go to "
                     f"{team['no_member_drops']}")
    return lines


def with_team_members(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The port rows with one indented row per team member under its team."""
    out: list[dict[str, Any]] = []
    for row in rows:
        out.append(row)
        team = row.get("team")
        if not team:
            continue
        for m in team["members"]:
            c = m["counters"]
            out.append({"name": f"  {row['name']}:{m['name']}", "type": "member",
                        "interface": m["name"], "link": m["link"], "vlan": "",
                        "role": m["state"], "macs": "",
                        "counters": {"rx_frames": c["rx_frames"], "tx_frames": c["tx_frames"],
                                     "mirrored_out": "", "dropped": m["rx_inactive"]}})
    return out


def _when(t: float | None) -> str:
    return "never" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def render_state(data: dict[str, Any]) -> None:
    """``vspan show state`` for humans."""
    out = sys.stdout
    out.write(f"state file: {data['path']} ({data['bytes']} bytes, schema version "
              f"{data['schema_version']})\n")
    out.write(f"configuration saved: {_when(data['config_saved'])} (from "
              f"{data['config_source'] or '-'}), {data['live_changes']} live changes\n")
    out.write(f"learned MACs saved: {_when(data['fdb_saved'])}, {data['fdb_entries']} entries "
              f"(every {data['fdb_save_seconds']:g} s and at a clean stop; "
              f"{data['fdb_save_errors']} failed saves)\n")
    if data.get("last_error"):
        out.write(f"last save error: {data['last_error']}\n")
    started = data["started"]
    out.write(f"this start: {started['how']}\n")
    for line in started["notes"]:
        out.write(f"  {line}\n")
    fdb = started["fdb"]
    if started["how"] != "new":
        out.write(f"  MACs restored: {fdb['restored']}; not restored: {fdb['aged']} aged, "
                  f"{fdb['port_gone']} port gone, {fdb['not_member']} port left the VLAN, "
                  f"{fdb['port_down']} port down, {fdb['refused']} table/port limit\n")
    caps = data["captures"]
    if caps:
        out.write("\n")
        print_table([{**c, "ports": ",".join(c.get("ports", [])), "started": _when(c["started"]),
                      "ended": _when(c["ended"]) if c["ended"] else "-"} for c in caps],
                    [("CAPTURE", "id"), ("STATE", "state"), ("PORTS", "ports"),
                     ("FILE", "path"), ("STARTED", "started"), ("ENDED", "ended")])
