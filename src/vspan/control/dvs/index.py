"""A host agent's view of one distributed switch in the store, kept up to date item by item.

``vspan dvs apply`` validates the whole switch (cross-references included) before
anything is written, and the schema version says how to read what was written.
An agent therefore does not validate the whole switch again on every change: it
decodes and validates only the items a watch event names (one port, one port
group, ...) and builds the :class:`~vspan.config.dvs.DvsConfig` from the items it
holds without re-running the cross-checks. An item that does not validate is
reported and its last good version kept (something other than vspan wrote it).

Besides the configuration it keeps the agents' registrations (``hosts/``) and the
migration records (``migrations/``), and says after each batch of events what
kind of thing changed (:class:`Touched`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from vspan.config.dvs import (
    DvsConfig,
    DvsHostConfig,
    DvsMirrorSession,
    DvsPortConfig,
    DvsSwitchConfig,
    PortGroupConfig,
)
from vspan.config.load import ConfigError, parse_model
from vspan.config.policy import FirewallConfig
from vspan.control.dvs.document import (
    LiveHost,
    Meta,
    StoredDataError,
    check_schema,
    loads,
)
from vspan.control.dvs.keys import DvsKeys
from vspan.control.store.base import Event, KeyValue

ITEM_MODELS: dict[str, type[BaseModel]] = {
    "hosts": DvsHostConfig, "port_groups": PortGroupConfig, "ports": DvsPortConfig,
    "mirrors": DvsMirrorSession,
}


@dataclass
class Touched:
    """What a batch of events changed."""

    config: set[tuple[str, str]] = field(default_factory=set)  # (section, item)
    hosts: set[str] = field(default_factory=set)  # registrations
    migrations: set[str] = field(default_factory=set)  # ports whose record changed
    schema: bool = False

    def __bool__(self) -> bool:
        return bool(self.config or self.hosts or self.migrations or self.schema)


class DvsIndex:
    """The decoded, trusted items of switch ``name`` (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.keys = DvsKeys(name)
        self.revision = 0
        self.schema = 0
        self.exists = False
        self.meta = Meta()
        self.meta_revision = 0
        self.switch = DvsSwitchConfig()
        self.firewall: FirewallConfig | None = None
        self.items: dict[str, dict[str, Any]] = {s: {} for s in ITEM_MODELS}
        self.live: dict[str, LiveHost] = {}
        self.migrations: dict[str, KeyValue] = {}
        self.bad: dict[str, str] = {}  # key -> why its value was not taken
        self.decoded = 0  # items validated so far (a measure of the work done)
        self._config: DvsConfig | None = None

    # ------------------------------------------------------------------ input
    def load(self, items: Iterable[KeyValue], revision: int) -> Touched:
        """Replace everything with a full read (at ``revision``)."""
        self.exists = False
        self.schema = 0
        self.meta, self.meta_revision = Meta(), 0
        self.switch, self.firewall = DvsSwitchConfig(), None
        self.items = {s: {} for s in ITEM_MODELS}
        self.live, self.migrations, self.bad = {}, {}, {}
        self._config = None
        touched = Touched(schema=True)
        kvs = list(items)
        schema_kv = next((kv for kv in kvs if kv.key == self.keys.schema), None)
        if schema_kv is not None:  # the schema first: nothing is read if it is too new
            self._put(schema_kv, touched)
        for kv in kvs:
            if kv is not schema_kv:
                self._put(kv, touched)
        self.revision = revision
        return touched

    def apply(self, events: Iterable[Event], revision: int = 0) -> Touched:
        """Take a batch of watch events; say what changed."""
        touched = Touched()
        for ev in events:
            if ev.type == "put":
                self._put(ev.kv, touched)
            else:
                self._delete(ev.kv.key, touched)
            self.revision = max(self.revision, ev.kv.mod_revision)
        self.revision = max(self.revision, revision)
        if touched.config:
            self._config = None
        return touched

    def _put(self, kv: KeyValue, touched: Touched) -> None:
        key = kv.key
        keys = self.keys
        if key.startswith(keys.live_prefix):
            host = key[len(keys.live_prefix):]
            try:
                self.live[host] = LiveHost.decode(kv, host)
            except (StoredDataError, ValueError, TypeError) as err:
                self.bad[key] = str(err)
                return
            touched.hosts.add(host)
            return
        if key.startswith(keys.migrations_prefix):
            self.migrations[key[len(keys.migrations_prefix):]] = kv
            touched.migrations.add(key[len(keys.migrations_prefix):])
            return
        parsed = keys.parse(key)
        if parsed is None:
            return
        section, item = parsed
        if key == keys.schema:
            version = int(loads(kv.value, key).get("schema", 0))
            check_schema(version, self.name)  # SchemaError: the caller refuses
            self.schema, self.exists = version, True
            touched.schema = True
            return
        if key == keys.meta:
            self.meta, self.meta_revision = Meta.decode(kv.value, key), kv.mod_revision
            return
        try:
            data = loads(kv.value, key)
            model = self._model(section, item)
            if model is None:
                return
            value = parse_model(model, data, f"store {key}")
        except (ConfigError, StoredDataError) as err:
            self.bad[key] = str(err)
            touched.config.add((section, item))  # nothing new to run, but a new error
            return
        self.bad.pop(key, None)
        self.decoded += 1
        if section == "switch":
            self.switch = value  # type: ignore[assignment]
        elif section == "firewall":
            self.firewall = value  # type: ignore[assignment]
        else:
            self.items[section][item] = value
        touched.config.add((section, item))

    @staticmethod
    def _model(section: str, item: str) -> type[BaseModel] | None:
        if section == "switch" and not item:
            return DvsSwitchConfig
        if section == "firewall" and not item:
            return FirewallConfig
        if item and section in ITEM_MODELS:
            return ITEM_MODELS[section]
        return None

    def _delete(self, key: str, touched: Touched) -> None:
        keys = self.keys
        self.bad.pop(key, None)
        if key.startswith(keys.live_prefix):
            host = key[len(keys.live_prefix):]
            if self.live.pop(host, None) is not None:
                touched.hosts.add(host)
            return
        if key.startswith(keys.migrations_prefix):
            port = key[len(keys.migrations_prefix):]
            self.migrations.pop(port, None)
            touched.migrations.add(port)
            return
        parsed = keys.parse(key)
        if parsed is None:
            return
        section, item = parsed
        if key == keys.schema:
            self.exists, self.schema = False, 0
            touched.schema = True
        elif key == keys.meta:
            self.meta, self.meta_revision = Meta(), 0
        elif section == "switch" and not item:
            self.switch = DvsSwitchConfig()
            touched.config.add((section, ""))
        elif section == "firewall" and not item:
            self.firewall = None
            touched.config.add((section, ""))
        elif section in ITEM_MODELS and self.items[section].pop(item, None) is not None:
            touched.config.add((section, item))

    # ----------------------------------------------------------------- output
    def config(self) -> DvsConfig:
        """The switch as a :class:`DvsConfig` built from the held items (not re-validated:
        ``dvs apply`` validated it as a whole before writing)."""
        if self._config is None:
            items = self.items
            fields = {"switch", "hosts", "port_groups", "ports", "mirrors"}
            if self.firewall is not None:
                fields.add("firewall")
            self._config = DvsConfig.model_construct(
                fields, switch=self.switch, hosts=dict(items["hosts"]),
                port_groups=dict(items["port_groups"]), ports=dict(items["ports"]),
                mirrors=dict(items["mirrors"]), firewall=self.firewall)
        return self._config

    def errors(self) -> list[str]:
        """Items that were not taken, with the reason (their last good version is used)."""
        return [f"{why} (keeping the last good version)" for why in self.bad.values()]

    def migration(self, port: str) -> dict[str, Any] | None:
        """The decoded migration record of ``port`` (None when absent or unreadable)."""
        kv = self.migrations.get(port)
        if kv is None:
            return None
        try:
            data = loads(kv.value, kv.key)
        except StoredDataError:
            return None
        return data if isinstance(data, dict) else None

