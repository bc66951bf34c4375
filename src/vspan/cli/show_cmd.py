"""``vspan show ports|fdb|mirrors|counters``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vspan.cli.client import ClientError, add_socket_arg, fail, print_json, print_table, request


def register(sub: Any) -> None:
    """Add ``show``."""
    p: argparse.ArgumentParser = sub.add_parser("show", help="show the running switch's state")
    p.add_argument("what", choices=["ports", "fdb", "mirrors", "counters", "config", "metrics"])
    p.add_argument("--json", action="store_true", help="JSON output")
    add_socket_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fetch and print."""
    try:
        if args.what == "metrics":
            sys.stdout.write(request(args.socket, "GET", "/metrics"))
            return 0
        path = "/config" if args.what == "config" else f"/show/{args.what}"
        data = request(args.socket, "GET", path)
    except ClientError as err:
        return fail(err)
    if args.json or args.what == "config":
        print_json(data)
        return 0
    render(args.what, data)
    return 0


def render(what: str, data: Any) -> None:
    """Tables for humans."""
    if what == "ports":
        print_table(data, [("PORT", "name"), ("TYPE", "type"), ("IFACE", "interface"),
                           ("LINK", "link"), ("VLAN", "vlan"), ("ROLE", "role"),
                           ("MACS", "macs"), ("RX", "counters.rx_frames"),
                           ("TX", "counters.tx_frames"), ("MIRRORED", "counters.mirrored_out"),
                           ("DROPPED", "counters.dropped")])
    elif what == "fdb":
        print_table(data, [("VLAN", "vlan"), ("MAC", "mac"), ("PORT", "port"), ("AGE", "age")])
    elif what == "mirrors":
        print_table(data, [("SESSION", "name"), ("KIND", "kind"), ("ENABLED", "enabled"),
                           ("SOURCES", "sources"), ("DESTINATIONS", "destinations"),
                           ("FILTER", "filter"),
                           ("TRUNC", "mirrored_packet_length"), ("SAMPLE", "sampling_rate"),
                           ("MIRRORED", "counters.mirrored"), ("TRUNCATED", "counters.truncated"),
                           ("DROPPED", "counters.dropped"), ("STATUS", "status")])
    elif what == "counters":
        rows = [{"port": k, **v} for k, v in data["ports"].items()]
        print_table(rows, [("PORT", "port"), ("RX", "rx_frames"), ("RX_BYTES", "rx_bytes"),
                           ("TX", "tx_frames"), ("TX_BYTES", "tx_bytes"),
                           ("FLOODED", "flooded"), ("MIRRORED", "mirrored_out"),
                           ("DROPPED", "dropped")])
        sys.stdout.write("\n")
        if data["drops"]:
            print_table(data["drops"], [("PORT", "port"), ("REASON", "reason"),
                                        ("RULE", "rule"), ("FRAMES", "frames")])
        else:
            sys.stdout.write("no drops\n")
        fc = data["flow_cache"]
        sys.stdout.write(f"\nflow cache: {fc['entries']} entries, {fc['hits']} hits, "
                         f"{fc['misses']} misses, {fc['invalidations']} invalidations\n")
