"""The control agent: owns the engine and applies configuration changes to it."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from vspan.config.diff import ChangeSet
from vspan.config.load import ConfigError, load_file, parse_config
from vspan.config.model import Config
from vspan.control import views
from vspan.datapath.engine import BackendFactory, Engine

log = logging.getLogger(__name__)


class AgentError(Exception):
    """A control request failed; the message is meant for the user."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Agent:
    """Runs one switch: its engine, its config file, its control operations."""

    def __init__(self, config: Config, backend_factory: BackendFactory,
                 config_path: str | None = None) -> None:
        self.config_path = config_path
        self.engine = Engine(config, backend_factory)
        self._lock = threading.Lock()  # serialises config changes

    @classmethod
    def from_file(cls, path: str, backend_factory: BackendFactory) -> Agent:
        """Load ``path`` and build an agent for it (ConfigError if invalid)."""
        return cls(load_file(path), backend_factory, str(Path(path).resolve()))

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
            try:
                return self.engine.call(lambda: self.engine.reload(new))
            except ConfigError:
                raise
            except Exception as err:
                raise AgentError(str(err)) from err

    def reload(self, path: str | None = None) -> ChangeSet:
        """Re-read the config file (or ``path``) and apply the difference."""
        target = path or self.config_path
        if not target:
            raise AgentError("no configuration file to reload from (give a path)")
        new = load_file(target)
        changes = self.apply(new)
        if path:
            self.config_path = str(Path(path).resolve())
        return changes

    def _with_mirrors(self, mirrors: dict[str, Any]) -> Config:
        data = self.config.model_dump(mode="json")
        data["mirrors"] = mirrors
        return parse_config(data, "mirror change")

    def mirror_create(self, name: str, spec: dict[str, Any]) -> ChangeSet:
        """Add a mirror session from a config-shaped mapping."""
        current = self.config.model_dump(mode="json")["mirrors"]
        if name in current:
            raise AgentError(f"mirror session {name!r} already exists", 409)
        current[name] = spec
        return self.apply(self._with_mirrors(current))

    def mirror_delete(self, name: str) -> ChangeSet:
        """Remove a mirror session."""
        current = self.config.model_dump(mode="json")["mirrors"]
        if name not in current:
            raise AgentError(f"no mirror session named {name!r}", 404)
        del current[name]
        return self.apply(self._with_mirrors(current))

    def mirror_enable(self, name: str, enabled: bool) -> ChangeSet:
        """Enable or disable a mirror session."""
        current = self.config.model_dump(mode="json")["mirrors"]
        if name not in current:
            raise AgentError(f"no mirror session named {name!r}", 404)
        current[name]["enabled"] = enabled
        return self.apply(self._with_mirrors(current))

    # ----------------------------------------------------------------- captures
    def capture_start(self, ports: list[str], path: str, direction: str = "both",
                      drops: bool = False, filter_expr: str | None = None,
                      max_packets: int = 0) -> dict[str, Any]:
        """Start a capture written by the switch to ``path`` (absolute)."""
        if direction not in ("in", "out", "both"):
            raise AgentError(f"direction must be in, out or both, not {direction!r}")
        if not ports:
            raise AgentError("name at least one port to capture on")

        def start() -> dict[str, Any]:
            try:
                cap = self.engine.capture_start(ports, path, direction, drops, filter_expr,
                                                max_packets)
            except KeyError as err:
                raise AgentError(str(err.args[0]), 404) from None
            except OSError as err:
                raise AgentError(f"cannot write {path}: {err.strerror}") from None
            except ValueError as err:
                raise AgentError(f"filter: {err}") from None
            return cap.summary()

        return self.engine.call(start)

    def capture_stop(self, capture_id: int) -> dict[str, Any]:
        """Stop a capture and return its summary."""

        def stop() -> dict[str, Any]:
            try:
                return dict(self.engine.capture_stop(capture_id))
            except KeyError as err:
                raise AgentError(str(err.args[0]), 404) from None

        return self.engine.call(stop)

    def captures(self) -> list[dict[str, Any]]:
        """Running captures."""
        return self.engine.call(lambda: [
            c.summary() | {"full": c.full} for c in self.engine.captures])

    # -------------------------------------------------------------------- views
    def show(self, what: str) -> Any:
        """ports | fdb | mirrors | counters, as JSON-ready data."""
        fn = {
            "ports": views.ports_view,
            "fdb": views.fdb_view,
            "mirrors": views.mirrors_view,
            "counters": views.counters_view,
        }.get(what)
        if fn is None:
            raise AgentError(f"nothing to show called {what!r}", 404)
        return self.engine.call(lambda: fn(self.engine))

    def trace(self, port: str, frame: bytes) -> dict[str, Any]:
        """Trace ``frame`` as if received on ``port``; no side effects."""
        if port not in self.engine.state.by_name:
            raise AgentError(f"no port named {port!r}", 404)

        def run() -> dict[str, Any]:
            decision, tracer = self.engine.trace(port, frame)
            return {
                "port": port,
                "frame_len": len(frame),
                "decision": views.decision_view(self.engine, decision),
                "trace": [c.as_dict() for c in tracer.root.children],
                "text": tracer.render(),
            }

        return self.engine.call(run)
