"""``vspan observe --dvs``: one merged event stream from every running agent of a
distributed switch.

The agents are found in etcd (their registrations, as ``vspan trace --vm`` finds
them) and followed while observing: an agent that registers is observed from then
on, one whose registration ends is reported and dropped, one replaced by a new
process is observed again. Every event names its host (the switch's host name)
and the switch (``dvs``); the membership changes are part of the stream
(``host-joined``, ``host-left``, ``host-restarted``; docs/observe.md).
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vspan.cli.client import ClientError, Endpoint, stream_lines

RETRY_SECONDS = 1.0

#: what the readers and the registration watcher put on the queue
#: ("event", host, generation, line) / ("end", host, generation, why) / ("change", change)
Item = tuple[Any, ...]


@dataclass
class _Reader:
    """One host's stream: a thread reading its agent until ``stop``."""

    host: str
    where: Endpoint
    generation: int
    stop: threading.Event = field(default_factory=threading.Event)


def _read(reader: _Reader, params: dict[str, Any], out: queue.Queue[Item]) -> None:
    """Put the agent's lines on ``out``; when its stream ends or fails, say so once and try
    again (the host is still registered: a restarting agent, a passing error) until
    ``reader.stop``."""
    failing = False
    while not reader.stop.is_set():
        why = "the agent ended the stream"
        try:
            for line in stream_lines(reader.where, "/observe", params):
                if reader.stop.is_set():
                    return
                if line.strip():
                    failing = False
                    out.put(("event", reader.host, reader.generation, line))
        except ClientError as err:
            why = str(err)
        if not failing:
            out.put(("end", reader.host, reader.generation, why))
            failing = True
        reader.stop.wait(RETRY_SECONDS)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class DvsObserver:
    """Readers for the live hosts, kept in step with the registrations."""

    def __init__(self, dvs: str, params: dict[str, Any], overrides: dict[str, Endpoint],
                 emit: Callable[[dict[str, Any]], None]) -> None:
        self.dvs = dvs
        self.params = params
        self.overrides = overrides
        self.emit = emit  # a membership event, already shaped like a stream event
        self.queue: queue.Queue[Item] = queue.Queue()
        self.readers: dict[str, _Reader] = {}
        self.generation = 0

    def _start(self, host: str, reg: Any) -> str:
        """Start reading ``host``'s agent; where it answers ("" when nobody knows)."""
        where = self.overrides.get(host) or (Endpoint(reg.socket) if reg.socket else None)
        if where is None:
            return ""
        self.generation += 1
        reader = _Reader(host, where, self.generation)
        self.readers[host] = reader
        threading.Thread(target=_read, args=(reader, self.params, self.queue),
                         daemon=True).start()
        return str(where)

    def _stop(self, host: str) -> None:
        reader = self.readers.pop(host, None)
        if reader is not None:
            reader.stop.set()

    def change(self, ch: Any) -> None:
        """Act on one :class:`~vspan.control.dvs.livewatch.LiveChange`."""
        from vspan.control.dvs.livewatch import JOINED, LEFT, RESTARTED

        base = {"time": _now(), "dvs": self.dvs, "host": ch.host}
        if ch.kind in (JOINED, RESTARTED):
            self._stop(ch.host)
            reg = ch.registration
            where = self._start(ch.host, reg)
            note = {} if where else {
                "note": f"its registration names no control socket: give --agent "
                        f"{ch.host}=SOCKET|URL to observe it"}
            self.emit(base | {"type": f"host-{ch.kind}", "underlay": reg.underlay,
                              "pid": reg.pid, "agent": where} | note)
        elif ch.kind == LEFT:
            self._stop(ch.host)
            self.emit(base | {"type": "host-left",
                              "why": "its agent's registration ended (the agent stopped, or "
                                     "its lease expired: the agent is gone)"})
        else:
            sys.stderr.write(f"vspan: etcd: {ch.detail}; agents that join or leave are not "
                             "seen until it answers again (the streams go on)\n")

    def current(self, host: str, generation: int) -> bool:
        """Whether a reader's item is from the host's current reader (not a stopped one)."""
        reader = self.readers.get(host)
        return reader is not None and reader.generation == generation


def run(args: argparse.Namespace, params: dict[str, Any],
        show: Callable[[dict[str, Any], str], bool]) -> int:
    """Observe every running agent of the distributed switch until Ctrl-C, --count or
    --duration. ``show(event, where)`` prints one event and says whether to stop."""
    from vspan.cli.dvsclient import guarded

    return guarded(lambda a: _run(a, params, show))(args)


def _run(args: argparse.Namespace, params: dict[str, Any],
         show: Callable[[dict[str, Any], str], bool]) -> int:
    from vspan.cli.dvsclient import agent_endpoints, open_store, switch_name
    from vspan.control.dvs.admin import DvsAdmin
    from vspan.control.dvs.livewatch import watch_live

    if args.also:
        raise ValueError("--dvs observes every agent the switch's registrations name: use "
                         "--agent HOST=SOCKET|URL (not --also) to say where one answers")
    overrides = agent_endpoints(args.agent, args.token_file, args.cacert)
    store = open_store(args.etcd)
    name = switch_name(args, store)
    st = DvsAdmin(store, name).state()  # DvsError when there is no such switch
    stopped = threading.Event()
    obs = DvsObserver(name, params, overrides, lambda ev: obs.queue.put(("member", ev)))

    def watch() -> None:
        for ch in watch_live(store, name, stopped):
            obs.queue.put(("change", ch))

    threading.Thread(target=watch, daemon=True).start()
    sys.stderr.write(f"vspan: observing distributed switch {name} (agents from "
                     f"{args.etcd}); Ctrl-C stops\n")
    if not st.live:
        sys.stderr.write(f"vspan: no agent of {name} is running now: waiting for one to "
                         "register\n")
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    try:
        while True:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                break
            try:
                item = obs.queue.get(timeout=wait)
            except queue.Empty:
                break
            if item[0] == "change":
                obs.change(item[1])
            elif item[0] == "member":
                if show(item[1], name):
                    break
            elif not obs.current(item[1], item[2]):
                continue  # a reader of a host that left or restarted
            elif item[0] == "end":
                sys.stderr.write(f"vspan: host {item[1]}: {item[3]} (trying again while it "
                                 "is registered)\n")
            else:
                ev = json.loads(item[3])
                if ev.get("host") and ev["host"] != item[1]:
                    ev["hostname"] = ev["host"]  # the machine's name, when it differs
                ev["host"], ev["dvs"] = item[1], name
                if show(ev, item[1]):
                    break
    except KeyboardInterrupt:
        pass
    finally:
        stopped.set()
        for host in list(obs.readers):
            obs._stop(host)
    return 0
