"""Keeping a running switch's state file up to date.

* configuration and live changes: written by the agent through :meth:`StateKeeper.save_config`
  before a command returns (a failed write undoes the command);
* the learned MAC table: a snapshot every ``switch.fdb_save_seconds`` (one batched
  transaction, whatever the frame rate) and one at a clean stop;
* captures: recorded when they start and end, so one a crash interrupted is shown as such.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from vspan.config.model import Config
from vspan.control.live import LiveChanges, config_data
from vspan.control.statedb.restore import FdbRestore, StartPlan, restore_fdb, snapshot_fdb
from vspan.control.statedb.store import StateStore, StateWriteError
from vspan.datapath.engine import Engine

log = logging.getLogger(__name__)


class StateKeeper:
    """Writes one switch's state into its :class:`StateStore` (see the module text)."""

    def __init__(self, store: StateStore, engine: Engine, plan: StartPlan) -> None:
        self.store = store
        self.engine = engine
        self.plan = plan
        self.fdb_restore = FdbRestore()
        self.fdb_saves = 0
        self.fdb_save_errors = 0
        self.last_fdb_save: float | None = None
        self.last_fdb_entries = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- start-up
    def restore_fdb(self) -> FdbRestore:
        """Put the saved MAC table back (ports open, forwarding not started yet)."""
        macs, at = self.store.load_fdb()
        self.fdb_restore = restore_fdb(self.engine, macs, at, time.time())
        return self.fdb_restore

    def begin(self, running: Config, live: LiveChanges) -> None:
        """The switch runs: write the state when the plan says so (a new state, or the
        configuration file taken), then save the MAC table periodically."""
        if self.plan.save:
            self.save_config(running, live, self.plan.source)
        self.start()

    def notes(self) -> list[str]:
        """What this start did with the saved state, for the daemon's log."""
        out = list(self.plan.notes)
        if self.plan.how != "new":
            out.append(self.fdb_restore.text())
        for cap in self.store.interrupted:
            spec = cap.spec
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(cap.started))
            out.append(f"capture {cap.id} on {', '.join(spec.get('ports', []))} to "
                       f"{spec.get('path')} (started {when}) was interrupted by the last "
                       "stop; not restarted (the file keeps what it captured)")
        return out

    def close(self) -> None:
        """Close the file without a last save (the switch never ran)."""
        self.store.close()

    # ------------------------------------------------------------ configuration
    def save_config(self, running: Config, live: LiveChanges,
                    source: tuple[str, Config] | None = None) -> None:
        """Write the running configuration and live changes (and, after a (re)load, the
        file it came from); StateWriteError when that failed (nothing was written)."""
        self.store.save_config(config_data(running), live.to_data(),
                               None if source is None else (source[0],
                                                            config_data(source[1])))

    # ----------------------------------------------------------------- captures
    def capture_started(self, summary: dict[str, Any], spec: dict[str, Any]) -> None:
        """A capture started (StateWriteError when it could not be recorded)."""
        self.store.capture_started(int(summary["id"]), spec)

    def capture_ended(self, capture_id: int) -> None:
        """A capture stopped (a failed write is logged: the capture is over anyway)."""
        try:
            self.store.capture_ended(capture_id)
        except StateWriteError as err:
            log.warning("state file: cannot record the end of capture %s: %s", capture_id, err)

    # ---------------------------------------------------------------- MAC table
    def save_fdb(self) -> int:
        """Snapshot the learned MAC table and write it; the number of entries."""
        macs = self.engine.call(lambda: snapshot_fdb(self.engine))
        at = time.time()
        self.store.save_fdb(macs, at)
        self.fdb_saves += 1
        self.last_fdb_save = at
        self.last_fdb_entries = len(macs)
        return len(macs)

    def _interval(self) -> float:
        return float(self.engine.state.config.switch.fdb_save_seconds)

    def _run(self) -> None:
        while not self._stop.wait(self._interval()):
            try:
                self.save_fdb()
            except Exception as err:  # keep saving later; say so
                self.fdb_save_errors += 1
                self.last_error = str(err)
                log.warning("state file: cannot save the MAC table: %s", err)

    def start(self) -> None:
        """Save the MAC table every ``switch.fdb_save_seconds`` in a background thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="vspan-state",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread, save the MAC table a last time, close running captures' records
        and the file (a clean stop)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self.store.closed:
            return
        try:
            self.save_fdb()
        except Exception as err:
            log.warning("state file: cannot save the MAC table at stop: %s", err)
        for cap in self.store.captures():
            if cap.run == self.store.run and cap.state == "running":
                self.capture_ended(cap.id)
        self.store.close()

    # -------------------------------------------------------------------- view
    def info(self) -> dict[str, Any]:
        """``vspan show state``: the file, how this start used it, the saves since."""
        return self.store.info() | {
            "started": {"how": self.plan.how, "notes": self.plan.notes,
                        "fdb": self.fdb_restore.as_dict(),
                        "interrupted_captures": [c.as_dict()
                                                 for c in self.store.interrupted]},
            "fdb_saves": self.fdb_saves, "fdb_save_errors": self.fdb_save_errors,
            "last_fdb_save": self.last_fdb_save, "last_fdb_entries": self.last_fdb_entries,
            "last_error": self.last_error,
            "fdb_save_seconds": self._interval(),
        }
