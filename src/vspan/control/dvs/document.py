"""A distributed switch as stored: decode keys into a :class:`DvsConfig` plus the agents'
registrations, and encode a configuration back into keys."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from vspan.config.dvs import DvsConfig
from vspan.config.load import ConfigError, parse_model
from vspan.control.dvs.keys import SCHEMA_VERSION, SECTIONS, SINGLE, DvsKeys
from vspan.control.store.base import KeyValue


class SchemaError(Exception):
    """The store holds data of a schema this vspan does not understand."""


class StoredDataError(Exception):
    """The stored configuration does not validate (written by something else?)."""


def dumps(data: Any) -> bytes:
    """Canonical JSON (sorted keys) so equal data is equal bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def loads(raw: bytes, key: str) -> Any:
    """Decode a stored JSON value."""
    try:
        return json.loads(raw)
    except ValueError as err:
        raise StoredDataError(f"{key}: not JSON ({err})") from None


@dataclass(frozen=True)
class LiveHost:
    """An agent's registration (present while its lease lives)."""

    host: str
    underlay: str
    lease: int = 0
    started: float = 0.0
    pid: int = 0
    version: str = ""
    mod_revision: int = 0
    boot_id: str = ""  # the kernel's: hosts with equal ones are namespaces of one machine
    features: tuple[str, ...] = ()  # what the agent can do (e.g. "move-interfaces")
    socket: str = ""  # the agent's control socket (on its host)

    @classmethod
    def decode(cls, kv: KeyValue, host: str) -> LiveHost:
        """From a registration key."""
        data = loads(kv.value, kv.key)
        return cls(host=host, underlay=str(data.get("underlay", "")), lease=kv.lease,
                   started=float(data.get("started", 0)), pid=int(data.get("pid", 0)),
                   version=str(data.get("version", "")), mod_revision=kv.mod_revision,
                   boot_id=str(data.get("boot_id", "")),
                   features=tuple(str(f) for f in data.get("features", ())),
                   socket=str(data.get("socket", "")))


@dataclass
class Meta:
    """Bookkeeping written with every configuration change."""

    generation: int = 0
    next_port_id: int = 1
    retired_port_ids: list[str] = field(default_factory=list)

    @classmethod
    def decode(cls, raw: bytes | None, key: str) -> Meta:
        """From ``config/meta`` (defaults when absent)."""
        if raw is None:
            return cls()
        data = loads(raw, key)
        return cls(int(data.get("generation", 0)), int(data.get("next_port_id", 1)),
                   [str(x) for x in data.get("retired_port_ids", [])])

    def encode(self, **extra: Any) -> bytes:
        """As stored."""
        return dumps({"generation": self.generation, "next_port_id": self.next_port_id,
                      "retired_port_ids": self.retired_port_ids, **extra})


@dataclass
class ClusterState:
    """What one read of a switch's keys says."""

    name: str
    revision: int
    exists: bool
    schema: int
    meta: Meta
    meta_revision: int
    raw: dict[str, Any]  # section -> data as stored (before validation)
    live: dict[str, LiveHost]
    schema_revision: int = 0  # mod revision of config/schema in this read (0: absent)
    # configuration keys (relative: ``switch``, ``ports/web1``) -> their bytes as stored
    stored: dict[str, bytes] = field(default_factory=dict)

    def config(self) -> DvsConfig:
        """The stored configuration, validated (StoredDataError when it does not)."""
        data = {k: v for k, v in self.raw.items() if v not in (None, {})}
        try:
            return parse_model(DvsConfig, data, f"store {DvsKeys(self.name).config}")
        except ConfigError as err:
            raise StoredDataError(str(err)) from None

    def _raw_values(self, section: str, key: str) -> Iterator[tuple[str, object]]:
        """(item name, its ``key``) of every stored item of ``section`` that has one (not
        a boolean), read from the stored items without validating the switch."""
        for name, item in self.raw.get(section, {}).items():
            value = item.get(key) if isinstance(item, dict) else None
            if value is not None and not isinstance(value, bool):
                yield name, value

    def port_ids(self) -> dict[str, int | str]:
        """Stored port -> its stable id (what ``dvs apply`` needs of the old state)."""
        return {name: pid for name, pid in self._raw_values("ports", "port_id")
                if isinstance(pid, (int, str))}

    def overlay_vlans(self) -> dict[str, int]:
        """Stored mirror session -> its mirror VLAN (as :meth:`port_ids`)."""
        return {name: vlan for name, vlan in self._raw_values("mirrors", "overlay_vlan")
                if isinstance(vlan, int)}


def check_schema(version: int, name: str) -> None:
    """Refuse data of a newer schema with a message saying what to do."""
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"distributed switch {name!r} is stored with schema version {version}; this "
            f"vspan understands up to version {SCHEMA_VERSION}: upgrade vspan on this host "
            "(nothing was read or changed)")


def decode(name: str, revision: int, items: Mapping[str, KeyValue]) -> ClusterState:
    """Decode the keys of switch ``name`` (config and registrations).

    Raises SchemaError for a newer schema (before looking at anything else).
    """
    keys = DvsKeys(name)
    schema_kv = items.get(keys.schema)
    schema = int(loads(schema_kv.value, keys.schema).get("schema", 0)) if schema_kv else 0
    check_schema(schema, name)
    meta_kv = items.get(keys.meta)
    raw: dict[str, Any] = {s: {} for s in SECTIONS}
    stored: dict[str, bytes] = {}
    live: dict[str, LiveHost] = {}
    for key, kv in items.items():
        if key.startswith(keys.live_prefix):
            host = key[len(keys.live_prefix):]
            live[host] = LiveHost.decode(kv, host)
            continue
        parsed = keys.parse(key)
        if parsed is None:
            continue
        section, item = parsed
        if section in SINGLE and not item:
            raw[section] = loads(kv.value, key)
            stored[section] = kv.value
        elif section in SECTIONS and item:
            raw[section][item] = loads(kv.value, key)
            stored[f"{section}/{item}"] = kv.value
    return ClusterState(name, revision, schema_kv is not None, schema,
                        Meta.decode(meta_kv.value if meta_kv else None, keys.meta),
                        meta_kv.mod_revision if meta_kv else 0, raw, live,
                        schema_kv.mod_revision if schema_kv else 0, stored)


def encode(dvs: DvsConfig) -> dict[str, bytes]:
    """The configuration keys (relative: ``switch``, ``ports/web1``, ...) of ``dvs``.

    Items are dumped with only the fields that were set, so a port that does not
    set ``vlan`` still does not after a round trip (port groups rely on that).
    """
    out: dict[str, bytes] = {}
    out["switch"] = dumps(dvs.switch.model_dump(mode="json", exclude_unset=True))
    if dvs.firewall is not None:
        out["firewall"] = dumps(dvs.firewall.model_dump(mode="json", exclude_unset=True))
    for section in SECTIONS:
        items: Mapping[str, Any] = getattr(dvs, section)
        for name, item in items.items():
            out[f"{section}/{name}"] = dumps(item.model_dump(mode="json", exclude_unset=True))
    return out
