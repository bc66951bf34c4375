"""A host agent's local copy of the last configuration it applied.

vDS hosts keep a local copy of their part of the switch so they forward after a
reboot while vCenter is away; a vspan agent does the same: after every apply
that changed something it writes its compiled single-host configuration to a
file in its state directory (written to a temporary file and renamed, so a
crash leaves the old copy or the new one, never half of one). An agent that
starts while etcd is unreachable runs that copy and says so in its status until
etcd answers again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vspan.config.load import ConfigError, parse_config
from vspan.config.model import Config

log = logging.getLogger(__name__)

FORMAT = 1
DEFAULT_STATE_DIR = "/var/lib/vspan/agent"


@dataclass(frozen=True)
class SavedConfig:
    """What the cache file holds."""

    config: Config
    generation: int
    revision: int
    saved_at: float
    notes: tuple[str, ...] = ()
    port_ids: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """``generation 7 saved 2026-11-26 16:40:01``."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.saved_at))
        return f"generation {self.generation} saved {when}"


class HostCache:
    """The cache file of one host of one switch (``None`` path: no cache)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._last: tuple[int, Config] | None = None
        self.writes = 0
        self.error = ""

    @classmethod
    def for_host(cls, state_dir: str | None, dvs: str, host: str) -> HostCache:
        """The cache file ``STATE_DIR/DVS.HOST.json`` (no cache without a state dir)."""
        if not state_dir:
            return cls(None)
        return cls(Path(state_dir) / f"{dvs}.{host}.json")

    def save(self, config: Config, generation: int, revision: int, notes: list[str],
             port_ids: dict[str, str]) -> bool:
        """Write the file if the configuration or generation changed; True if written."""
        if self.path is None:
            return False
        if self._last is not None and self._last[0] == generation and self._last[1] == config:
            return False
        data = {"format": FORMAT, "generation": generation, "revision": revision,
                "saved_at": time.time(), "notes": notes, "port_ids": port_ids,
                "config": config.model_dump(mode="json", exclude_none=True)}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as err:
            if self.error != str(err):
                log.warning("cannot write the configuration cache %s: %s", self.path, err)
            self.error = str(err)
            return False
        self.error = ""
        self._last = (generation, config)
        self.writes += 1
        return True

    def load(self, control_socket: str | None = None) -> SavedConfig | None:
        """The saved configuration (None when there is none or it does not load)."""
        if self.path is None or not self.path.exists():
            return None
        try:
            data: Any = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not a format-{FORMAT} cache file")
            cfg = data["config"]
            if control_socket:
                cfg.setdefault("switch", {})["control_socket"] = control_socket
            config = parse_config(cfg, str(self.path))
            return SavedConfig(config, int(data["generation"]), int(data["revision"]),
                               float(data["saved_at"]), tuple(data.get("notes", ())),
                               {str(k): str(v) for k, v in data.get("port_ids", {}).items()})
        except (OSError, ValueError, KeyError, TypeError, ConfigError) as err:
            log.warning("the configuration cache %s is not usable: %s", self.path, err)
            return None
