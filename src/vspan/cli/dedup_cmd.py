"""``vspan dedup IN -w OUT``: remove the copies of frames captured at several points."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vspan.analysis.dedup import DEFAULT_WINDOW_NS, DedupError, DedupOptions, DedupStats, dedup_file
from vspan.analysis.normalize import IGNORABLE, NormalizeError, parse_ignore
from vspan.capture.pcapng import CaptureFormatError
from vspan.cli.progress import file_progress, parse_duration_ns


def register(sub: Any) -> None:
    """Add the dedup command."""
    p: argparse.ArgumentParser = sub.add_parser(
        "dedup",
        help="remove duplicate copies of frames (several capture points, NIC teams)",
        description=(
            "Copy a pcap/pcapng file to pcapng without the copies of one frame seen at several "
            "capture points (a NIC team member and the team adapter, the ingress and egress "
            "ports of a switch, two ERSPAN sessions) or twice at one. Copies are frames equal "
            "(whole, or once --ignore'd fields are left out) within --window of the first copy, "
            "wherever they are in the file, or frames sharing a pcapng packet id. "
            "Retransmissions are kept: they have another IP ID or come later. Every other "
            "block and option of a pcapng input is kept."
        ),
    )
    p.add_argument("input", metavar="IN", help="pcap or pcapng file")
    p.add_argument("-w", "--write", dest="output", metavar="OUT", required=True,
                   help="output pcapng file (written only when complete)")
    p.add_argument("--window", default=f"{DEFAULT_WINDOW_NS // 1_000_000}ms", metavar="DUR",
                   help="copies come at most this long after the first one (default 5ms; "
                        "units s, ms, us, ns)")
    p.add_argument("--ignore", default="", metavar="FIELDS",
                   help=f"compare frames without these fields: {','.join(IGNORABLE)} or all "
                        "(default: whole frames)")
    p.add_argument("--keep-point", action="append", default=[], metavar="IFACE",
                   help="keep the copy captured at this interface (name or id); repeat for "
                        "an order of preference")
    p.add_argument("--reorder", default=None, metavar="DUR",
                   help="how far file order may lag capture time (default: the window); "
                        "memory grows with window + reorder")
    p.add_argument("--max-buffer", type=int, default=256, metavar="MB",
                   help="most megabytes for the delay buffer and the index of recent "
                        "frames together (default 256)")
    p.add_argument("--annotate", action="store_true",
                   help="add a comment to each kept packet naming the copies removed (and "
                        "carrying their comments)")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no report, no progress bar")
    p.set_defaults(func=run)


def _options(args: argparse.Namespace) -> DedupOptions:
    try:
        window = parse_duration_ns(args.window)
        reorder = None if args.reorder is None else parse_duration_ns(args.reorder)
        ignore = parse_ignore(args.ignore)
    except (ValueError, NormalizeError) as err:
        raise DedupError(str(err)) from None
    if args.max_buffer < 1:
        raise DedupError("--max-buffer must be at least 1 MB")
    return DedupOptions(window_ns=window, ignore=ignore, keep_points=tuple(args.keep_point),
                        reorder_ns=reorder, max_held_bytes=args.max_buffer << 20,
                        annotate=args.annotate)


def run(args: argparse.Namespace) -> int:
    """Deduplicate, then report what was removed."""
    try:
        opts = _options(args)
    except DedupError as err:
        sys.stderr.write(f"vspan dedup: {err}\n")
        return 2
    bar = file_progress("vspan dedup", args.input, args.quiet)
    if bar is None:
        return 1
    try:
        stats = dedup_file(args.input, args.output, opts, progress=bar)
    except DedupError as err:
        bar.close()
        sys.stderr.write(f"vspan dedup: {err}\n")
        return 2
    except (OSError, CaptureFormatError) as err:
        bar.close()
        sys.stderr.write(f"vspan dedup: {err}; nothing written\n")
        return 1
    bar.close()
    if args.json:
        sys.stdout.write(json.dumps({"input": args.input, "output": args.output,
                                     "options": opts.describe(), **stats.as_dict()}) + "\n")
    elif not args.quiet:
        sys.stderr.write(report(stats, opts, args.output))
    return 0


def report(st: DedupStats, opts: DedupOptions, output: str) -> str:
    """The human-readable summary."""
    lines = [f"vspan dedup: {st.packets_in} packets read, {st.packets_out} written to {output}, "
             f"{st.removed} copies removed ({opts.describe()})"]
    if st.removed_by:
        width = max(len("INTERFACE"), *(len(i) for i, _ in st.removed_by))
        rwidth = max(len("REASON"), *(len(r) for _, r in st.removed_by))
        lines.append(f"  {'INTERFACE':<{width}}  {'REASON':<{rwidth}}  REMOVED")
        for (iface, reason), n in sorted(st.removed_by.items()):
            lines.append(f"  {iface:<{width}}  {reason:<{rwidth}}  {n:7d}")
    if st.replaced_by_keep_point:
        lines.append(f"  {st.replaced_by_keep_point} kept copies come from the preferred "
                     "interface instead of the first one read")
    if st.preference_missed:
        lines.append(f"  {st.preference_missed} preferred copies came after the first copy was "
                     "written (raise --reorder to keep them)")
    if st.forced:
        lines.append(f"  {st.forced} packets were written before their window closed: the "
                     "delay buffer was full (--max-buffer); later copies of them were still "
                     "removed")
    if st.forgotten:
        lines.append(f"  warning: {st.forgotten} frames were forgotten before their window "
                     "closed (--max-buffer too small for this packet rate): copies of them "
                     "may remain")
    if st.untimed:
        lines.append(f"  {st.untimed} packets without timestamps were kept as they are")
    if st.unknown_keep_points:
        lines.append(f"  warning: no interface named {', '.join(st.unknown_keep_points)}")
    if st.truncated:
        lines.append("  warning: the input's last block was cut; everything before it was "
                     "copied")
    return "\n".join(lines) + "\n"
