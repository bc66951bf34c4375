"""``vspan observe``: the live stream of per-frame events; ``vspan explain-reason``."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from typing import Any

from vspan.capture.events import KINDS, SUPPRESSED, human
from vspan.capture.observe import DEFAULT_MAX_RATE
from vspan.cli import observe_dvs
from vspan.cli.client import (
    ClientError,
    Endpoint,
    add_socket_arg,
    endpoint,
    fail,
    stream_lines,
)
from vspan.cli.dvsclient import DEFAULT_ETCD
from vspan.datapath.reasons import EXPLANATIONS, STAGES, DropReason

RETRY_SECONDS = 1.0


def register(sub: Any) -> None:
    """Add ``observe`` and ``explain-reason``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "observe", help="live stream of per-frame events (forwarded, mirrored, dropped)",
        description="Stream what the running switch does with each frame: received, "
                    "forwarded (ports, VLAN operation), mirrored (session, destination), "
                    "dropped (reason, rule, stage, port, direction), each with the frame's "
                    "headers. Events are made only while someone observes; sampling and a "
                    "rate cap bound their cost, and what they leave out is counted and "
                    "reported in the stream. Stops on Ctrl-C, --count or --duration.")
    p.add_argument("--port", "-p", action="append", default=[], metavar="PORT",
                   help="only events of this switch port (repeat or comma list)")
    p.add_argument("--vm", action="append", default=[], metavar="VM",
                   help="only events of this VM (a port's name or description)")
    p.add_argument("--verdict", action="append", default=[], metavar="VERDICT",
                   help=f"event types: {', '.join(KINDS)}, all (default: forwarded, "
                        "mirrored, dropped; only dropped with --reason)")
    p.add_argument("--reason", action="append", default=[], metavar="REASON",
                   help="only drops of this reason (`vspan explain-reason --all` lists them)")
    p.add_argument("-f", "--filter", default="", metavar="EXPR",
                   help="capture filter language (host, net, port, proto, vlan; and/or/not)")
    p.add_argument("--sample", type=int, default=1, metavar="N",
                   help="1 in N matching frames (default 1: all)")
    p.add_argument("--max-rate", type=float, default=DEFAULT_MAX_RATE, metavar="EV/S",
                   help="event rate cap; events over it are counted, not sent "
                        "(default %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--follow", action="store_true",
                   help="keep going when the switch goes away (reconnect until Ctrl-C)")
    p.add_argument("--also", action="append", default=[], metavar="SOCKET|URL",
                   help="observe this switch too (e.g. another host agent's switch of a "
                        "distributed switch; a URL uses the same token): one merged stream, "
                        "each event names its host")
    p.add_argument("-c", "--count", type=int, default=0, help="stop after N events")
    p.add_argument("--duration", type=float, default=0.0, help="stop after S seconds")
    add_socket_arg(p)
    g = p.add_argument_group("every host of a distributed switch")
    g.add_argument("--dvs", nargs="?", const="", default=None, metavar="NAME",
                   help="observe every running agent of distributed switch NAME (default: "
                        "env VSPAN_DVS, or the only one), found in etcd and followed: agents "
                        "that join or leave while observing are picked up and reported")
    g.add_argument("--etcd", default=DEFAULT_ETCD,
                   help="etcd client URL (default: %(default)s; env VSPAN_ETCD)")
    g.add_argument("--agent", action="append", default=[], metavar="HOST=SOCKET|URL",
                   help="where host HOST's agent answers (default: the control socket its "
                        "registration names); an https URL uses --token-file/--cacert")
    p.set_defaults(func=run)

    e: argparse.ArgumentParser = sub.add_parser(
        "explain-reason", help="what a drop reason means",
        description="One line per drop reason: what it means and which stage gives it.")
    e.add_argument("reason", nargs="?", help="a drop reason (e.g. acl-deny)")
    e.add_argument("--all", action="store_true", help="every drop reason")
    e.add_argument("--json", action="store_true", help="as JSON")
    e.set_defaults(func=run_explain)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    return {"port": args.port, "vm": args.vm, "verdict": args.verdict, "reason": args.reason,
            "filter": args.filter, "sample": args.sample, "max_rate": args.max_rate}


def _reader(target: Endpoint, params: dict[str, Any], follow: bool,
            out: queue.Queue[tuple[str, str | None, str]]) -> None:
    """Read one switch's stream into ``out`` as (target, line, ""); at its end put
    (target, None, why). With ``follow``, reconnect instead of ending."""
    while True:
        why = "the switch ended the stream"
        try:
            for line in stream_lines(target, "/observe", params):
                if line.strip():
                    out.put((str(target), line, ""))
        except ClientError as err:
            why = str(err)
        if not follow:
            out.put((str(target), None, why))
            return
        out.put((str(target), None, f"{why}; retrying"))
        time.sleep(RETRY_SECONDS)


class Printer:
    """Writes events (JSON lines or human lines), counts them, keeps each switch's last
    suppressed totals."""

    def __init__(self, as_json: bool, count: int) -> None:
        self.as_json = as_json
        self.count = count
        self.shown = 0
        self.totals: dict[str, dict[str, int]] = {}  # per switch

    def show(self, ev: dict[str, Any], where: str) -> bool:
        """Write one event from ``where``; whether --count is reached."""
        kind = ev.get("type")
        if kind == SUPPRESSED:
            self.totals[where] = ev.get("total", {})
        if self.as_json:
            sys.stdout.write(json.dumps(ev, separators=(",", ":")) + "\n")
        elif kind == "started":
            sys.stderr.write(f"vspan: observing {where}; Ctrl-C stops\n")
        elif isinstance(kind, str) and kind.startswith("host-"):
            sys.stdout.write(member_text(ev) + "\n")
        else:
            sys.stdout.write(human(ev) + "\n")
        sys.stdout.flush()
        if kind in KINDS:
            self.shown += 1
            return bool(self.count and self.shown >= self.count)
        return False

    def summary(self) -> str:
        """The closing line (stderr)."""
        left_out = sum(t.get(k, 0) for t in self.totals.values()
                       for k in ("sampled_out", "rate_limited", "queue_full"))
        return f"{self.shown} events shown, {left_out} suppressed (as last reported)\n"


def member_text(ev: dict[str, Any]) -> str:
    """A distributed switch's membership change as one human line."""
    clock = str(ev.get("time", ""))[11:26]
    host = ev.get("host", "")
    if ev["type"] == "host-left":
        return f"{clock} -- host {host} left: {ev.get('why', '')} --"
    verb = "joined" if ev["type"] == "host-joined" else "restarted (a new agent process)"
    where = (f"observing its agent at {ev['agent']}" if ev.get("agent")
             else ev.get("note", "not observed"))
    return f"{clock} -- host {host} {verb}, underlay {ev.get('underlay', '?')}: {where} --"


def run(args: argparse.Namespace) -> int:
    """Stream events from the switch (and every ``--also`` switch or agent; or, with
    ``--dvs``, every running agent of a distributed switch) to stdout until Ctrl-C,
    --count or --duration; totals on stderr."""
    if args.sample < 1:
        return fail(ValueError("--sample must be at least 1"))
    if not args.max_rate > 0:
        return fail(ValueError("--max-rate must be positive"))
    printer = Printer(args.json, args.count)
    if args.dvs is not None:
        rc = observe_dvs.run(args, _params(args), printer.show)
        sys.stderr.write(printer.summary())
        return rc
    main = endpoint(args)
    targets = [main] + [Endpoint(url=a, token_file=main.token_file, cacert=main.cacert)
                        if a.startswith(("http://", "https://")) else Endpoint(a)
                        for a in args.also]
    lines: queue.Queue[tuple[str, str | None, str]] = queue.Queue()
    for target in targets:
        threading.Thread(target=_reader, args=(target, _params(args), args.follow, lines),
                         daemon=True).start()
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    open_streams = len(targets)
    failed = False
    try:
        while open_streams:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                break
            try:
                where, line, why = lines.get(timeout=wait)
            except queue.Empty:
                break
            if line is None:
                sys.stderr.write(f"vspan: {where}: {why}\n")
                if not args.follow:
                    open_streams -= 1
                    failed = failed or "ended the stream" not in why
                continue
            if printer.show(json.loads(line), where):
                break
    except KeyboardInterrupt:
        pass
    sys.stderr.write(printer.summary())
    return 1 if failed and not printer.shown else 0


def reason_rows() -> list[dict[str, str]]:
    """Every drop reason with its stage and explanation."""
    return [{"reason": r.value, "stage": STAGES.get(r, ""), "explanation": EXPLANATIONS[r]}
            for r in DropReason]


def run_explain(args: argparse.Namespace) -> int:
    """Print one reason's explanation, or all of them."""
    if args.all:
        rows = reason_rows()
    elif args.reason:
        try:
            reason = DropReason(args.reason.strip().lower())
        except ValueError:
            known = ", ".join(r.value for r in DropReason)
            return fail(ValueError(f"no drop reason {args.reason!r}; known: {known}"))
        rows = [r for r in reason_rows() if r["reason"] == reason.value]
    else:
        return fail(ValueError("name a drop reason, or give --all"))
    if args.json:
        sys.stdout.write(json.dumps(rows if args.all else rows[0], indent=2) + "\n")
    else:
        width = max(len(r["reason"]) for r in rows)
        for r in rows:
            sys.stdout.write(f"{r['reason']:<{width}}  [{r['stage']}] {r['explanation']}\n")
    return 0
