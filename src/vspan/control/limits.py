"""Stops time-boxed and byte-capped mirror sessions and captures when their limit comes.

The datapath stops copying the moment a byte cap would be passed; the
:class:`LimitWatcher` notices (a few times a second) and stops the session or
capture for good — a session is disabled (``enabled: false``, a live change by
"the switch"), a capture is closed — and audits it as the ``system`` identity
with the reason.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from vspan.control.agent import Agent, AgentError, DueStop
from vspan.control.audit import AuditLog
from vspan.control.roles import SYSTEM

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.25


class LimitWatcher:
    """A background thread that applies the limits of ``agent``'s sessions and captures."""

    def __init__(self, agent: Agent, audit: AuditLog | None,
                 clock: Callable[[], float] = time.time, every: float = CHECK_SECONDS) -> None:
        self.agent = agent
        self.audit = audit
        self.clock = clock
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused: set[DueStop] = set()  # stops the agent refused (tried once each)

    def start(self) -> None:
        """Start checking in the background."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="vspan-limits", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop checking (waits for the thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.check_once()
            except Exception:  # keep watching: one failure must not end the time boxes
                log.exception("checking mirror/capture limits failed")

    def check_once(self, now: float | None = None) -> list[DueStop]:
        """Stop everything due at ``now``; return what was stopped."""
        due = self.agent.due_stops(self.clock() if now is None else now)
        self._refused &= set(due)  # forget what is no longer due
        done = []
        for item in due:
            if item not in self._refused and self._stop_one(item):
                done.append(item)
        return done

    def _stop_one(self, item: DueStop) -> bool:
        """Stop ``item`` and audit it; False when it was not stopped."""
        action = f"{item.kind}.stop"
        try:
            if item.kind == "mirror":
                counters = self.agent.mirror_stop(item.target, item.reason)
                if not counters:  # disabled or deleted meanwhile
                    return False
                detail = f"{item.reason}; counters {json.dumps(counters, sort_keys=True)}"
            else:
                summary = self.agent.capture_stop(int(item.target), SYSTEM.name, item.reason)
                detail = (f"{item.reason}; {summary['packets']} packets, {summary['bytes']} "
                          f"bytes written to {summary['path']}")
        except (AgentError, ValueError) as err:
            # gone meanwhile (a user was quicker), or the agent may not change it (a host
            # agent's configuration belongs to the distributed switch): said once
            log.warning("%s %s (%s): not stopped by the switch: %s", item.kind, item.target,
                        item.reason, err)
            self._refused.add(item)
            return False
        log.info("%s %s stopped by the switch: %s", item.kind, item.target, item.reason)
        if self.audit is not None:
            try:
                self.audit.record(SYSTEM.name, SYSTEM.role_text, SYSTEM.source, action,
                                  item.target, "ok", None, detail)
            except OSError as err:
                log.error("audit log %s: cannot write: %s", self.audit.path, err)
        return True
