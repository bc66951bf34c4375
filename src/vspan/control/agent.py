"""The control agent: owns the engine and applies configuration changes to it."""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vspan.capture.filter import compile_filter
from vspan.capture.observe import ObserveError, Observer
from vspan.capture.pcapng import PcapngWriter
from vspan.config.diff import ChangeSet, diff
from vspan.config.load import ConfigError, load_file, parse_config
from vspan.config.model import Config
from vspan.control import views
from vspan.control.assemble import build_engine, open_capture, switch_policy
from vspan.control.hosttrace import HostTraceError, trace_on_host
from vspan.control.live import (
    AclItem,
    FirewallRuleItem,
    LiveChanges,
    LiveConflict,
    LiveItem,
    MirrorItem,
    config_data,
)
from vspan.control.observing import SwitchNames, observe_spec
from vspan.control.statedb.store import StateWriteError
from vspan.datapath.engine import BackendFactory, Engine
from vspan.mirror.encap import MirrorConfigError
from vspan.policy.build import SwitchPolicy
from vspan.ports.base import PortError

if TYPE_CHECKING:
    from vspan.control.statedb.keeper import StateKeeper

log = logging.getLogger(__name__)

#: what a live change may fail with that is not the switch's fault: a port's backend that
#: does not open (the engine changes nothing then), a mirror destination it cannot reach
EXPECTED_APPLY_ERRORS: tuple[type[Exception], ...] = (PortError, MirrorConfigError)


class AgentError(Exception):
    """A control request failed; the message is meant for the user.

    ``logged``: the failure was already logged with its traceback (an unexpected one,
    status 500), so whoever answers the request need not log it again.
    """

    def __init__(self, message: str, status: int = 400, logged: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.logged = logged


class LiveChangesError(AgentError):
    """A reload would undo live changes; ``lines`` says which (nothing was changed)."""

    def __init__(self, message: str, lines: list[str]) -> None:
        super().__init__(message, 409)
        self.lines = lines


LIVE_MODES = ("refuse", "keep", "drop")
MAX_CONFIG_BYTES = 16 << 20  # a configuration file larger than this is refused
CAPTURE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")  # fullmatch only
FINISHED_CAPTURES = 64  # summaries of stopped captures kept for GET /captures/{id}
KEEP = object()  # "leave as it is" for optional arguments


@dataclass(frozen=True)
class DueStop:
    """A mirror session or capture that reached a limit and is to be stopped."""

    kind: str  # "mirror" or "capture"
    target: str  # session name or capture id
    reason: str

EngineHook = Callable[[Engine, ChangeSet], None]
"""Work done on the engine thread next to a reload (see :meth:`Agent.apply`)."""


@dataclass(frozen=True)
class ReloadResult:
    """What a reload changed, and what became of the live changes it met."""

    changes: ChangeSet
    live_kept: tuple[str, ...] = ()  # live changes put back on top of the file
    live_dropped: tuple[str, ...] = ()  # live changes the reload undid (--force)


class Agent:
    """Runs one switch: its engine, its config file, its control operations."""

    def __init__(self, config: Config, backend_factory: BackendFactory,
                 config_path: str | None = None) -> None:
        self.config_path = config_path
        # the host its events name: the machine's, or a distributed switch's host name
        self.host_name = socket.gethostname()
        self.engine = build_engine(config, backend_factory)
        self.live = LiveChanges()  # what commands changed that the file does not say
        self._lock = threading.Lock()  # serialises config changes
        self._capture_ids = 0
        self.finished: deque[dict[str, Any]] = deque(maxlen=FINISHED_CAPTURES)
        self._capture_files: dict[int, tuple[str, PcapngWriter]] = {}  # id -> path, writer
        self.state_dir = config.switch.state_path()  # tokens, audit log, captures
        self.keeper: StateKeeper | None = None  # the state file (vspan up), if any
        self._observer_ids = 0
        # set when a distributed switch's host agent owns the configuration: local
        # edits would be overwritten by the next reconcile, so they are refused
        self.managed_by: str | None = None

    def _check_unmanaged(self) -> None:
        if self.managed_by is not None:
            raise AgentError(f"this switch is managed by {self.managed_by}: change it with "
                             "`vspan dvs ...` (local changes would be overwritten)", 409)

    @classmethod
    def from_file(cls, path: str, backend_factory: BackendFactory) -> Agent:
        """Load ``path`` and build an agent for it (ConfigError if invalid)."""
        return cls(load_file(path), backend_factory, str(Path(path).resolve()))

    @property
    def switch_policy(self) -> SwitchPolicy:
        """The running switch's compiled policy (and its live state)."""
        return switch_policy(self.engine)

    @property
    def config(self) -> Config:
        """The running configuration."""
        return self.engine.state.config

    def start(self, prepare: Callable[[], object] | None = None) -> None:
        """Open ports, run ``prepare`` (e.g. restore the MAC table), start forwarding."""
        self.engine.open()
        if prepare is not None:
            prepare()
        self.engine.start()

    def stop(self) -> None:
        """Stop forwarding and close ports."""
        self.engine.close()

    # ----------------------------------------------------------- config changes
    def apply(self, new: Config, before: EngineHook | None = None,
              after: EngineHook | None = None) -> ChangeSet:
        """Apply a validated config live (backends opened first; failure changes nothing).

        ``before`` and ``after`` run on the engine thread right before and after the
        reload, with no frame handled in between (a host agent takes a leaving port's
        state out, or puts an arriving port's state in, there).
        """
        with self._lock:
            prev, prev_live = self.config, self.live.to_data()
            changes = self._apply(new, before, after)
            self._save(prev, prev_live)
            return changes

    def _apply(self, new: Config, before: EngineHook | None = None,
               after: EngineHook | None = None) -> ChangeSet:
        """Apply ``new`` (the caller holds the lock): the change set is computed here, once,
        and handed to the engine."""
        changes = diff(self.config, new)
        engine = self.engine

        def run() -> ChangeSet:
            if before is not None:
                before(engine, changes)
            done = engine.reload(new, changes)
            if after is not None:
                after(engine, changes)
            return done

        try:
            return engine.call(run)
        except ConfigError:
            raise
        except EXPECTED_APPLY_ERRORS as err:  # a backend that does not open: the caller's 4xx
            raise AgentError(str(err)) from err
        except Exception as err:  # a bug: logged with its traceback, answered as what it is
            log.exception("applying a configuration change failed unexpectedly")
            raise AgentError(f"internal error while applying the change ({type(err).__name__}: "
                             f"{err}); the switch log has the traceback", 500,
                             logged=True) from err

    def reload(self, path: str | None = None, live: str = "refuse") -> ReloadResult:
        """Re-read the config file (or ``path``) and apply the difference.

        Live changes the file does not carry (rules and ACLs added with the CLI, ...)
        would be undone: ``live="refuse"`` raises :class:`LiveChangesError` listing them
        and changes nothing; ``"keep"`` puts them back on top of the file; ``"drop"``
        applies the file as it is and reports what it undid.
        """
        self._check_unmanaged()
        if live not in LIVE_MODES:
            raise AgentError(f"live must be one of {', '.join(LIVE_MODES)}, not {live!r}")
        target = path or self.config_path
        if not target:
            raise AgentError("no configuration file to reload from (give a path)")
        _check_config_file(target)
        from_file = load_file(target)
        with self._lock:
            before, before_live = self.config, self.live.to_data()
            data = config_data(from_file)
            undone = self.live.undone_by(data)
            lines = [ch.undo_text(data) for ch in undone]
            new = from_file
            if undone and live == "refuse":
                n = len(undone)
                raise LiveChangesError(
                    f"reload would undo {n} live change{'s' if n > 1 else ''} that "
                    f"{'are' if n > 1 else 'is'} not in {target}", lines)
            if undone and live == "keep":
                try:
                    merged = self.live.put_on(data, undone)
                except LiveConflict as err:
                    raise AgentError(f"cannot keep the live changes: {err}", 409) from None
                new = parse_config(merged, f"{target} with the live changes kept")
            changes = self._apply(new)
            kept = undone if live == "keep" else []
            self.live.keep_only(kept)
            self._save(before, before_live, (str(Path(target).resolve()), from_file))
            if path:
                self.config_path = str(Path(path).resolve())
        return ReloadResult(changes, tuple(f"{c.item.label} ({c.history})" for c in kept),
                            tuple(lines) if live == "drop" else ())

    def mutate(self, change: Callable[[dict[str, Any]], None], what: str,
               item: Callable[[], LiveItem] | None = None, verb: str = "changed",
               command: str = "") -> ChangeSet:
        """Apply ``change`` to a copy of the running config (as data), validate, apply.

        A change that does not validate raises ConfigError with full paths and
        leaves the running switch as it was. ``item`` (called after ``change``) names
        what the command changed, remembered as a live change (``verb`` by ``command``).
        """
        self._check_unmanaged()
        with self._lock:
            before, before_live = self.config, self.live.to_data()
            data = config_data(before)
            change(data)
            new = parse_config(data, what)
            changes = self._apply(new)
            if item is not None and not changes.empty:
                self.live.record(item(), config_data(self.config), verb, command)
            if not changes.empty:
                self._save(before, before_live)
            return changes

    def _save(self, before: Config, before_live: list[dict[str, Any]],
              source: tuple[str, Config] | None = None) -> None:
        """Make the running configuration and live changes durable in the state file (the
        caller holds the lock). When the write fails the switch is put back as it was
        (``before``) and the command fails: nothing runs that a restart would lose."""
        if self.keeper is None:
            return
        try:
            self.keeper.save_config(self.config, self.live, source)
        except StateWriteError as err:
            self._apply(before)
            self.live = LiveChanges.from_data(before_live)
            raise AgentError(f"not changed: the change could not be saved to the state file "
                             f"({err})", 500) from err

    def state_info(self) -> dict[str, Any]:
        """The state file and what this start restored from it (``vspan show state``)."""
        if self.keeper is None:
            raise AgentError("this switch keeps no state file", 404)
        return self.keeper.info()

    def live_changes(self) -> dict[str, Any]:
        """The live changes, each with whether the configuration file now carries it."""
        data: dict[str, Any] | None = None
        problem = ""
        if self.config_path:
            try:
                data = config_data(load_file(self.config_path))
            except ConfigError as err:
                problem = str(err)
        with self._lock:
            rows = [ch.as_dict() | {
                "in_file": None if data is None else ch.item.value_in(data) == ch.item.value,
                "undo": None if data is None else ch.undo_text(data)} for ch in self.live]
        return {"config_path": self.config_path, "file_problem": problem, "changes": rows}

    def mirror_create(self, name: str, spec: dict[str, Any]) -> ChangeSet:
        """Add a mirror session from a config-shaped mapping."""

        def change(data: dict[str, Any]) -> None:
            if name in data["mirrors"]:
                raise AgentError(f"mirror session {name!r} already exists", 409)
            data["mirrors"][name] = spec

        return self.mutate(change, f"mirror {name}", lambda: MirrorItem(name), "added",
                           "vspan mirror create")

    def mirror_delete(self, name: str) -> ChangeSet:
        """Remove a mirror session."""

        def change(data: dict[str, Any]) -> None:
            if data["mirrors"].pop(name, None) is None:
                raise AgentError(f"no mirror session named {name!r}", 404)

        return self.mutate(change, f"mirror {name}", lambda: MirrorItem(name), "removed",
                           "vspan mirror delete")

    def mirror_enable(self, name: str, enabled: bool, stop_at: Any = KEEP,
                      max_bytes: Any = KEEP) -> ChangeSet:
        """Enable or disable a mirror session.

        Enabling with ``stop_at`` (a datetime, or None for no time box) or ``max_bytes``
        (int or None) sets those limits; left out, a ``max_bytes`` stays and a
        ``stop_at`` that has passed is dropped (it would stop the session at once).
        """

        def change(data: dict[str, Any]) -> None:
            if name not in data["mirrors"]:
                raise AgentError(f"no mirror session named {name!r}", 404)
            sess = data["mirrors"][name]
            sess["enabled"] = enabled
            if not enabled:
                return
            if stop_at is not KEEP:
                _set(sess, "stop_at", None if stop_at is None else stop_at.isoformat())
            elif "stop_at" in sess and _passed(sess["stop_at"]):
                del sess["stop_at"]
            if max_bytes is not KEEP:
                _set(sess, "max_bytes", max_bytes)

        action = "enable" if enabled else "disable"
        return self.mutate(change, f"mirror {name}", lambda: MirrorItem(name), f"{action}d",
                           f"vspan mirror {action}")

    def mirror_stop(self, name: str, reason: str) -> dict[str, Any]:
        """The switch disables a session that reached a limit; returns its last counters
        (empty when it is gone or already disabled)."""
        with self._lock:
            counters = self.engine.call(lambda: {
                m.name: m.counters() for m in self.engine.state.mirrors.values() if m.enabled})
        if name not in counters:
            return {}

        def change(data: dict[str, Any]) -> None:
            sess = data["mirrors"].get(name)
            if sess is None or not sess.get("enabled", True):  # a user was quicker
                raise AgentError(f"mirror session {name!r} is already stopped", 409)
            sess["enabled"] = False

        self.mutate(change, f"mirror {name}", lambda: MirrorItem(name), "disabled",
                    f"the switch ({reason})")
        return counters[name]

    # ---------------------------------------------------------- ACLs, firewall
    def _port_policy(self, data: dict[str, Any], port: str) -> dict[str, Any]:
        if port not in data["ports"]:
            raise AgentError(f"no port named {port!r}", 404)
        pol: dict[str, Any] = data["ports"][port].setdefault("policy", {})
        return pol

    def acl_add(self, port: str, entry: dict[str, Any], extended: bool = False) -> ChangeSet:
        """Add a port ACL entry (or, with ``extended``, an extended ACL rule)."""
        listname = "extended_acls" if extended else "acls"

        def change(data: dict[str, Any]) -> None:
            entries = self._port_policy(data, port).setdefault(listname, [])
            ids = {e.get("id") for e in entries}
            if entry.get("id") is None:
                n = len(entries) + 1
                while f"{port}-{listname[:3]}{n}" in ids:
                    n += 1
                entry["id"] = f"{port}-{listname[:3]}{n}"
            elif entry["id"] in ids:
                raise AgentError(f"port {port} already has an entry {entry['id']!r}", 409)
            entries.append(entry)

        return self.mutate(change, f"acl on {port}",
                           lambda: AclItem(port, str(entry["id"]), extended), "added",
                           "vspan acl add")

    def acl_remove(self, port: str, entry_id: str) -> ChangeSet:
        """Remove a port ACL or extended ACL entry by id."""
        found: list[str] = []

        def change(data: dict[str, Any]) -> None:
            pol = self._port_policy(data, port)
            for listname in ("acls", "extended_acls"):
                entries = pol.get(listname, [])
                kept = [e for e in entries if e.get("id") != entry_id]
                if len(kept) != len(entries):
                    pol[listname] = kept
                    found.append(listname)
                    return
            raise AgentError(f"port {port} has no ACL entry {entry_id!r}", 404)

        return self.mutate(change, f"acl on {port}",
                           lambda: AclItem(port, entry_id, found == ["extended_acls"]),
                           "removed", "vspan acl remove")

    def acl_show(self, port: str) -> dict[str, Any]:
        """The port's ACL entries and extended ACL rules, with policy counters."""
        if port not in self.config.ports:
            raise AgentError(f"no port named {port!r}", 404)
        pol = self.config.ports[port].policy
        counters = self.engine.call(lambda: self.engine.policy.counters())
        return {
            "port": port,
            "acls": [e.model_dump(mode="json", exclude_none=True) for e in pol.acls] if pol else [],
            "extended_acls": ([e.model_dump(mode="json", exclude_none=True)
                               for e in pol.extended_acls] if pol else []),
            "counters": counters["ports"].get(port, {}),
        }

    def firewall_rule_add(self, section: str, rule: dict[str, Any],
                          position: int | None = None) -> ChangeSet:
        """Add a firewall rule to ``section`` (created at the end when new)."""
        if rule.get("id") is None:
            raise AgentError("a rule added to the running switch needs an id")
        rid = str(rule["id"])

        def change(data: dict[str, Any]) -> None:
            fw = data.setdefault("firewall", {})
            sections = fw.setdefault("sections", [])
            sec = next((x for x in sections if x.get("name") == section), None)
            if sec is None:
                sec = {"name": section, "rules": []}
                sections.append(sec)
            rules = sec.setdefault("rules", [])
            if position is None:
                rules.append(rule)
            else:
                rules.insert(max(0, position - 1), rule)

        return self.mutate(change, f"firewall section {section}",
                           lambda: FirewallRuleItem(rid), "added", "vspan firewall rule add")

    def firewall_rule_remove(self, rule_id: str) -> ChangeSet:
        """Remove the firewall rule with ``rule_id``."""

        def change(data: dict[str, Any]) -> None:
            for sec in (data.get("firewall") or {}).get("sections", []):
                rules = sec.get("rules", [])
                kept = [r for r in rules if r.get("id") != rule_id]
                if len(kept) != len(rules):
                    sec["rules"] = kept
                    return
            raise AgentError(f"no firewall rule with id {rule_id!r}", 404)

        return self.mutate(change, "firewall", lambda: FirewallRuleItem(rule_id), "removed",
                           "vspan firewall rule remove")

    def firewall_show(self) -> dict[str, Any]:
        """The firewall configuration with rule hit counters."""
        fw = self.config.firewall
        counters = self.engine.call(lambda: self.engine.policy.counters())
        return {"config": fw.model_dump(mode="json", exclude_none=True) if fw else None,
                "rule_hits": counters.get("firewall", {}).get("rule_hits", {}),
                "connections": {p: c.get("connections", {})
                                for p, c in counters["ports"].items() if "connections" in c}}

    # ----------------------------------------------------------------- captures
    @property
    def capture_dir(self) -> str:
        """Where captures named without a directory are written."""
        return os.path.join(self.state_dir, "captures")

    def capture_path(self, path: str, ports: list[str]) -> str:
        """The file a capture writes: an absolute ``path`` as it is; a bare file name (or
        nothing: a name is made up) in :attr:`capture_dir`."""
        if "\x00" in path:  # no file has such a name (os.open would raise ValueError)
            raise AgentError(f"{path!r} is not a file name (it holds a NUL byte)", 422)
        if os.path.isabs(path):
            return os.path.normpath(path)
        if not path:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            points = re.sub(r"[^A-Za-z0-9_.\-]", "_", "-".join(ports))[:64]  # TEAM:* too
            path = f"{points}-{stamp}-{secrets.token_hex(3)}.pcapng"
        if not CAPTURE_NAME_RE.fullmatch(path):
            raise AgentError(f"{path!r} is not a capture file name (letters, digits, _ . -; "
                             "no directories) nor an absolute path", 422)
        old = os.umask(0o077)
        try:
            os.makedirs(self.capture_dir, mode=0o700, exist_ok=True)
        finally:
            os.umask(old)
        return os.path.join(self.capture_dir, path)

    def capture_start(self, ports: list[str], path: str, direction: str = "both",
                      drops: bool = False, filter_expr: str | None = None,
                      max_packets: int = 0, max_bytes: int = 0,
                      duration: float | None = None) -> dict[str, Any]:
        """Start a capture written by the switch to ``path`` (see :meth:`capture_path`),
        stopped by the switch after ``max_packets``, ``max_bytes`` or ``duration`` s."""
        if direction not in ("in", "out", "both"):
            raise AgentError(f"direction must be in, out or both, not {direction!r}")
        if not ports:
            raise AgentError("name at least one port to capture on")
        path = self.capture_path(path, ports)
        stop_at = time.time() + duration if duration else None

        try:
            flt = compile_filter(filter_expr) if filter_expr else None
        except ValueError as err:
            raise AgentError(f"filter: {err}") from None

        def start() -> dict[str, Any]:
            self._capture_ids += 1
            try:
                cap = open_capture(self.engine, ports, path, self._capture_ids, direction,
                                   drops, flt, max_packets, max_bytes, stop_at)
            except KeyError as err:  # names the bad point
                raise AgentError(str(err.args[0]), 404) from None
            except OSError as err:
                raise AgentError(f"cannot write {path}: {err.strerror}") from None
            self._capture_files[cap.id] = (path, cap.writer)
            return cap.summary() | {"running": True, "full": False}

        summary = self.engine.call(start)
        if self.keeper is not None:
            spec = {"ports": ports, "path": path, "direction": direction, "drops": drops,
                    "filter": filter_expr, "max_packets": max_packets}
            try:
                self.keeper.capture_started(summary, spec)
            except StateWriteError as err:
                self.engine.call(lambda: self._end_capture(int(summary["id"])))
                raise AgentError(f"capture not started: it could not be recorded in the "
                                 f"state file ({err})", 500) from None
        return summary

    def _end_capture(self, capture_id: int) -> dict[str, Any]:
        """Stop feeding a capture and close its file (on the engine thread); its summary.
        KeyError when there is no such capture."""
        cap = self.engine.remove_capture(capture_id)
        cap.close()
        return dict(cap.summary())

    def capture_stop(self, capture_id: int, stopped_by: str = "",
                     reason: str = "stopped") -> dict[str, Any]:
        """Stop a capture and return its summary (kept for :meth:`capture_get`)."""

        def stop() -> tuple[dict[str, Any], set[int]]:
            try:
                summary = self._end_capture(capture_id)
            except KeyError as err:
                raise AgentError(str(err.args[0]), 404) from None
            return summary, {c.id for c in self.engine.captures}

        summary, running = self.engine.call(stop)
        summary |= {"running": False, "full": False, "stopped_by": stopped_by or None,
                    "stop_reason": reason}
        self.finished.append(summary)
        known = running | {c["id"] for c in self.finished}
        for gone in [i for i in self._capture_files if i not in known]:
            del self._capture_files[gone]
        if self.keeper is not None:
            self.keeper.capture_ended(capture_id)
        return summary

    def captures(self) -> list[dict[str, Any]]:
        """Running captures."""
        return self.engine.call(lambda: [
            c.summary() | {"full": c.full, "running": True} for c in self.engine.captures])

    def capture_get(self, capture_id: int) -> dict[str, Any]:
        """A running capture, or a recently stopped one with who stopped it and why."""
        found: list[dict[str, Any]] = [c for c in self.captures() if c["id"] == capture_id] + \
            [c for c in reversed(self.finished) if c["id"] == capture_id]
        if found:
            return found[0]
        raise AgentError(f"no capture with id {capture_id}", 404)

    def capture_file(self, capture_id: int) -> int:
        """An open descriptor of a stopped capture's file: the very file the capture wrote
        (a name that now leads elsewhere, by a symlink or a replaced file, is refused)."""
        cap = self.capture_get(capture_id)
        if cap["running"]:
            raise AgentError(f"capture {capture_id} is still running: stop it first", 409)
        if capture_id not in self._capture_files:
            raise AgentError(f"capture {capture_id} is too old to hand out", 404)
        path, writer = self._capture_files[capture_id]
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as err:
            raise AgentError(f"the file of capture {capture_id} cannot be read ({path}: "
                             f"{err.strerror})", 404) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or \
                (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != writer.final:
            os.close(fd)
            raise AgentError(f"{path} is no longer the file capture {capture_id} wrote", 404)
        return fd

    # ------------------------------------------------------------------- limits
    def due_stops(self, now: float | None = None) -> list[DueStop]:
        """Enabled mirror sessions and captures that reached a limit (time box, bytes,
        packets) at ``now`` (Unix time) and are to be stopped."""
        now = time.time() if now is None else now

        def scan() -> list[DueStop]:
            due: list[DueStop] = []
            for m in self.engine.state.mirrors.values():
                if not m.enabled:
                    continue
                stop_at = m.config.stop_at
                if stop_at is not None and now >= stop_at.timestamp():
                    due.append(DueStop("mirror", m.name, "time box over"))
                elif m.cap_reached:
                    due.append(DueStop("mirror", m.name,
                                       f"max_bytes {m.config.max_bytes} reached"))
            for cap in self.engine.captures:
                reason = cap.stop_reason(now)
                if reason:
                    due.append(DueStop("capture", str(cap.id), reason))
            return due

        return self.engine.call(scan)

    # ---------------------------------------------------------------- observers
    def observe_start(self, body: dict[str, Any]) -> Observer:
        """Attach an observer (``vspan observe``) built from a request; the caller reads its
        events and must :meth:`observe_stop` it."""

        def start() -> Observer:
            try:
                spec = observe_spec(self.config, self.engine.state.by_name, body)
            except ObserveError as err:
                raise AgentError(str(err)) from None
            self._observer_ids += 1
            obs = Observer(self._observer_ids, spec, SwitchNames(self.engine),
                           self.config.switch.name, self.host_name, self.engine.clock())
            self.engine.add_observer(obs)
            return obs

        return self.engine.call(start)

    def observe_stop(self, observer_id: int) -> dict[str, Any]:
        """Detach an observer; its summary."""

        def stop() -> dict[str, Any]:
            try:
                obs = self.engine.remove_observer(observer_id)
            except KeyError as err:
                raise AgentError(str(err.args[0]), 404) from None
            assert isinstance(obs, Observer)
            return obs.summary()

        return self.engine.call(stop)

    def observers(self) -> list[dict[str, Any]]:
        """Running observers."""
        return self.engine.call(lambda: [o.summary() for o in self.engine.observers
                                         if isinstance(o, Observer)])

    # -------------------------------------------------------------------- views
    def show(self, what: str) -> Any:
        """ports | fdb | mirrors | counters | vteps | accounting, as JSON-ready data."""
        fn = {
            "ports": views.ports_view,
            "fdb": views.fdb_view,
            "mirrors": views.mirrors_view,
            "counters": views.counters_view,
            "vteps": views.vteps_view,
            "accounting": views.accounting_view,
        }.get(what)
        if fn is None:
            raise AgentError(f"nothing to show called {what!r}", 404)
        return self.engine.call(lambda: fn(self.engine))

    def policy_explain(self, port: str, direction: str, frame: bytes) -> dict[str, Any]:
        """Explain ``frame`` at ``port`` against the running policy and its live state
        (connections, extended-ACL sessions); nothing is changed."""
        from vspan.policy.explain import explain, state_report

        if port not in self.config.ports:
            raise AgentError(f"no port named {port!r}", 404)
        if direction not in ("in", "out"):
            raise AgentError(f"direction must be in or out, not {direction!r}")

        def run() -> dict[str, Any]:
            policy = self.switch_policy
            try:
                result = explain(policy, port, "in" if direction == "in" else "out", frame,
                                 self.engine.clock())
            except ValueError as err:
                raise AgentError(str(err)) from None
            state = state_report(policy, port)
            return result.as_dict() | {"state": state.as_dict(),
                                       "text": result.render() + "\n" + state.render()}

        return self.engine.call(run)

    def trace(self, port: str, frame: bytes, from_vtep: str | None = None) -> dict[str, Any]:
        """Trace ``frame`` as if received on ``port`` (with ``from_vtep``: a VXLAN payload
        the overlay port ``port`` receives from that VTEP); no side effects."""
        if port not in self.engine.state.by_name:
            raise AgentError(f"no port named {port!r}", 404)

        def run() -> dict[str, Any]:
            try:
                return trace_on_host(self.engine, port, frame, from_vtep)
            except HostTraceError as err:
                raise AgentError(str(err)) from err

        return self.engine.call(run)


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        data.pop(key, None)
    else:
        data[key] = value


def _passed(stop_at: Any) -> bool:
    try:
        return datetime.fromisoformat(str(stop_at)).timestamp() <= time.time()
    except ValueError:
        return False


def _check_config_file(path: str) -> None:
    """Refuse what is not a regular file of sane size (a FIFO or /dev/zero would hang or
    exhaust the daemon)."""
    if "\x00" in path:  # os.stat would raise ValueError: no file has such a name
        raise AgentError(f"{path!r} is not a file name (it holds a NUL byte)", 422)
    try:
        st = os.stat(path)
    except OSError as err:
        raise AgentError(f"cannot read {path}: {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise AgentError(f"{path} is not a regular file")
    if st.st_size > MAX_CONFIG_BYTES:
        raise AgentError(f"{path} is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a "
                         "configuration file")
