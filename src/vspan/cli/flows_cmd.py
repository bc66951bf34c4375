"""``vspan flows FILE``: conversations of a capture with Zeek's conn_state and history."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vspan.analysis.dedup import DEFAULT_WINDOW_NS
from vspan.analysis.flows import Flow, FlowOptions, FlowStats, analyze_file
from vspan.analysis.normalize import NormalizeError, parse_ignore
from vspan.capture.pcapng import CaptureFormatError
from vspan.cli.progress import file_progress, parse_duration_ns

STATES = ("S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR",
          "OTH")


def register(sub: Any) -> None:
    """Add the flows command."""
    p: argparse.ArgumentParser = sub.add_parser(
        "flows",
        help="list the conversations of a capture (Zeek conn_state/history, duplicates, "
             "retransmissions, one-way flows)",
        description=(
            "List the TCP, UDP, ICMP (and other IP) conversations of a pcap/pcapng file with "
            "packets and bytes each way, start and duration, Zeek's conn_state and history, "
            "and what is wrong: unidirectional and responder-only flows (asymmetric paths), "
            "incomplete handshakes, resets, retransmissions, out-of-window sequence numbers, "
            "capture gaps. Copies of one packet captured at several points (equal once TTL, "
            "checksums, MACs, VLAN tags and padding are ignored, within --window, or sharing "
            "a pcapng packet id) are counted as duplicates, never as retransmissions."
        ),
    )
    p.add_argument("file", help="pcap or pcapng file")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per flow and line (Zeek conn.log field names)")
    p.add_argument("--window", default=f"{DEFAULT_WINDOW_NS // 1_000_000}ms", metavar="DUR",
                   help="copies come at most this long after the first one (default 5ms)")
    p.add_argument("--ignore", default="all", metavar="FIELDS",
                   help="fields copies may differ in (default all: vlan,mac,ttl,checksums,"
                        "padding; '' compares whole frames)")
    p.add_argument("--state", default="", metavar="STATES",
                   help="only flows in these conn_states (comma-separated)")
    p.add_argument("--problems", action="store_true",
                   help="only flows with something flagged")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Analyse and print."""
    try:
        window = parse_duration_ns(args.window)
        ignore = parse_ignore(args.ignore)
    except (ValueError, NormalizeError) as err:
        sys.stderr.write(f"vspan flows: {err}\n")
        return 2
    states = {s.strip().upper() for s in args.state.split(",") if s.strip()}
    unknown = states - set(STATES)
    if unknown:
        sys.stderr.write(f"vspan flows: unknown conn_state {', '.join(sorted(unknown))} "
                         f"(one of {', '.join(STATES)})\n")
        return 2
    bar = file_progress("vspan flows", args.file, args.quiet)
    if bar is None:
        return 1
    try:
        flows, stats = analyze_file(args.file, FlowOptions(window_ns=window, ignore=ignore),
                                    progress=bar)
    except (OSError, CaptureFormatError) as err:
        bar.close()
        sys.stderr.write(f"vspan flows: {err}\n")
        return 1
    bar.close()
    shown = [f for f in flows if (not states or f.conn_state in states)
             and (not args.problems or f.flags)]
    if args.json:
        for f in shown:
            sys.stdout.write(json.dumps(f.as_dict()) + "\n")
        if not args.quiet:
            sys.stderr.write(summary(stats, flows))
        return 0
    sys.stdout.write(table(shown, flows[0].first_ns if flows else 0))
    if not args.quiet:
        sys.stdout.write(summary(stats, flows))
    return 0


def _endpoint(addr: str, port: int, proto: str) -> str:
    if proto not in ("tcp", "udp", "sctp", "icmp"):
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def table(flows: list[Flow], t0: int) -> str:
    """The flows as a fixed-width table (times relative to the first flow)."""
    head = ("START", "DURATION", "PROTO", "ORIGINATOR", "RESPONDER", "STATE", "HISTORY",
            "PKTS >/<", "BYTES >/<", "DUP", "RETX", "NOTES")
    rows = [head]
    for f in flows:
        d = f.as_dict()
        proto = str(d["proto"])
        rows.append((
            f"{(f.first_ns - t0) / 1e9:.6f}", f"{f.duration_ns / 1e9:.6f}", proto,
            _endpoint(str(d["orig_h"]), f.orig[1], proto),
            _endpoint(str(d["resp_h"]), f.resp[1], proto),
            f.conn_state, f.history_text or "-",
            f"{f.pkts[0]}/{f.pkts[1]}", f"{d['orig_bytes']}/{d['resp_bytes']}",
            str(d["duplicates"]), str(f.retransmissions),
            ",".join(_note(x, f) for x in f.flags if x not in ("duplicates", "retransmissions")),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    out = []
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return "\n".join(line.rstrip() for line in out) + "\n"


def _note(flag: str, f: Flow) -> str:
    if flag == "out-of-window":
        return f"out-of-window:{f.out_of_window}"
    if flag == "capture-gap":
        return f"capture-gap:{f.missed_bytes}B"
    return flag


def _n(count: int, what: str) -> str:
    return f"{count} {what}" if count == 1 else f"{count} {what}s"


def summary(st: FlowStats, flows: list[Flow]) -> str:
    """Totals: flows by state, duplicates, retransmissions, frames outside flows."""
    states = ", ".join(f"{s} {n}" for s, n in sorted(st.by_state.items(), key=lambda x: -x[1]))
    retx = sum(f.retransmissions for f in flows)
    one_way = sum(1 for f in flows if "unidirectional" in f.flags)
    text = (f"{_n(st.flows, 'flow')} ({states or 'none'}) in {_n(st.frames, 'frame')}; "
            f"{_n(st.duplicates, 'capture duplicate')}, {_n(retx, 'retransmission')}, "
            f"{_n(one_way, 'one-way flow')}\n")
    other = [(st.non_ip, "not IP"), (st.malformed, "malformed"),
             (st.fragments_unattributed, "fragments without their first")]
    extra = ", ".join(f"{n} {what}" for n, what in other if n)
    if extra:
        text += f"frames outside flows: {extra}\n"
    if st.truncated:
        text += "warning: the file's last block was cut\n"
    return text
