"""The control agent: owns the engine and applies configuration changes to it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vspan.capture.filter import compile_filter
from vspan.config.diff import ChangeSet, diff
from vspan.config.load import ConfigError, load_file, parse_config
from vspan.config.model import Config
from vspan.control import views
from vspan.control.assemble import build_engine, open_capture
from vspan.control.live import (
    AclItem,
    FirewallRuleItem,
    LiveChanges,
    LiveConflict,
    LiveItem,
    MirrorItem,
    config_data,
)
from vspan.datapath.engine import BackendFactory
from vspan.policy.build import SwitchPolicy
from vspan.policy.layer import PolicyLayer

log = logging.getLogger(__name__)


class AgentError(Exception):
    """A control request failed; the message is meant for the user."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class LiveChangesError(AgentError):
    """A reload would undo live changes; ``lines`` says which (nothing was changed)."""

    def __init__(self, message: str, lines: list[str]) -> None:
        super().__init__(message, 409)
        self.lines = lines


LIVE_MODES = ("refuse", "keep", "drop")


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
        self.engine = build_engine(config, backend_factory)
        self.live = LiveChanges()  # what commands changed that the file does not say
        self._lock = threading.Lock()  # serialises config changes
        self._capture_ids = 0
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
        layer = self.engine.policy
        assert isinstance(layer, PolicyLayer)
        return layer.policy

    @property
    def config(self) -> Config:
        """The running configuration."""
        return self.engine.state.config

    def start(self) -> None:
        """Open ports and start forwarding."""
        self.engine.open()
        self.engine.start()

    def stop(self) -> None:
        """Stop forwarding and close ports."""
        self.engine.close()

    # ----------------------------------------------------------- config changes
    def apply(self, new: Config) -> ChangeSet:
        """Apply a validated config live (backends opened first; failure changes nothing)."""
        with self._lock:
            return self._apply(new)

    def _apply(self, new: Config) -> ChangeSet:
        """Apply ``new`` (the caller holds the lock): the change set is computed here, once,
        and handed to the engine."""
        changes = diff(self.config, new)
        try:
            return self.engine.call(lambda: self.engine.reload(new, changes))
        except ConfigError:
            raise
        except Exception as err:
            raise AgentError(str(err)) from err

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
        from_file = load_file(target)
        with self._lock:
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
            data = config_data(self.config)
            change(data)
            new = parse_config(data, what)
            changes = self._apply(new)
            if item is not None and not changes.empty:
                self.live.record(item(), config_data(self.config), verb, command)
            return changes

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

    def mirror_enable(self, name: str, enabled: bool) -> ChangeSet:
        """Enable or disable a mirror session."""

        def change(data: dict[str, Any]) -> None:
            if name not in data["mirrors"]:
                raise AgentError(f"no mirror session named {name!r}", 404)
            data["mirrors"][name]["enabled"] = enabled

        action = "enable" if enabled else "disable"
        return self.mutate(change, f"mirror {name}", lambda: MirrorItem(name), f"{action}d",
                           f"vspan mirror {action}")

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
    def capture_start(self, ports: list[str], path: str, direction: str = "both",
                      drops: bool = False, filter_expr: str | None = None,
                      max_packets: int = 0) -> dict[str, Any]:
        """Start a capture written by the switch to ``path`` (absolute)."""
        if direction not in ("in", "out", "both"):
            raise AgentError(f"direction must be in, out or both, not {direction!r}")
        if not ports:
            raise AgentError("name at least one port to capture on")

        try:
            flt = compile_filter(filter_expr) if filter_expr else None
        except ValueError as err:
            raise AgentError(f"filter: {err}") from None

        def start() -> dict[str, Any]:
            self._capture_ids += 1
            try:
                cap = open_capture(self.engine, ports, path, self._capture_ids, direction,
                                   drops, flt, max_packets)
            except KeyError as err:  # names the bad point
                raise AgentError(str(err.args[0]), 404) from None
            except OSError as err:
                raise AgentError(f"cannot write {path}: {err.strerror}") from None
            return cap.summary()

        return self.engine.call(start)

    def capture_stop(self, capture_id: int) -> dict[str, Any]:
        """Stop a capture and return its summary."""

        def stop() -> dict[str, Any]:
            try:
                cap = self.engine.remove_capture(capture_id)
            except KeyError as err:
                raise AgentError(str(err.args[0]), 404) from None
            cap.close()
            return dict(cap.summary())

        return self.engine.call(stop)

    def captures(self) -> list[dict[str, Any]]:
        """Running captures."""
        return self.engine.call(lambda: [
            c.summary() | {"full": c.full} for c in self.engine.captures])

    # -------------------------------------------------------------------- views
    def show(self, what: str) -> Any:
        """ports | fdb | mirrors | counters | vteps, as JSON-ready data."""
        fn = {
            "ports": views.ports_view,
            "fdb": views.fdb_view,
            "mirrors": views.mirrors_view,
            "counters": views.counters_view,
            "vteps": views.vteps_view,
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

    def trace(self, port: str, frame: bytes) -> dict[str, Any]:
        """Trace ``frame`` as if received on ``port``; no side effects."""
        if port not in self.engine.state.by_name:
            raise AgentError(f"no port named {port!r}", 404)

        def run() -> dict[str, Any]:
            decision, outcome, tracer = self.engine.trace(port, frame)
            return views.trace_view(self.engine.state, port, frame, decision, outcome, tracer)

        return self.engine.call(run)
