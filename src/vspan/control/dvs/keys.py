"""Where a distributed switch keeps its state in the store.

Everything of switch ``NAME`` lives under ``/vspan/v1/dvs/NAME/``::

    config/schema              {"schema": 1}  -- agents refuse a newer schema
    config/meta                generation, next port id, retired port ids (every
                               `dvs apply` rewrites it: its mod revision guards writes)
    config/switch              switch-wide settings
    config/firewall            the distributed firewall
    config/hosts/HOST          declared hosts
    config/port_groups/GROUP   port groups
    config/ports/PORT          ports (with their stable port id)
    config/mirrors/SESSION     mirror sessions
    hosts/HOST                 an agent's registration, attached to its lease
    migrations/PORT            the last migration of a port: phases, exported state
    status/HOST                an agent's report: port states and counters

Agents watch ``config/``, ``hosts/`` and ``migrations/`` (one key range);
``status/`` is written by agents and read by ``vspan dvs show``.
"""

from __future__ import annotations

from vspan.control.store.base import prefix_end

ROOT = "/vspan/v1/dvs/"
SCHEMA_VERSION = 1

SECTIONS = ("hosts", "port_groups", "ports", "mirrors")  # one key per item
SINGLE = ("switch", "firewall")  # one key each


class DvsKeys:
    """The keys of one distributed switch."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = f"{ROOT}{name}/"
        self.config = self.prefix + "config/"
        self.schema = self.config + "schema"
        self.meta = self.config + "meta"
        self.live_prefix = self.prefix + "hosts/"
        self.migrations_prefix = self.prefix + "migrations/"
        self.status_prefix = self.prefix + "status/"

    def item(self, section: str, name: str = "") -> str:
        """The key of ``section`` (switch, firewall) or of one item of it."""
        if section in SINGLE:
            return self.config + section
        return f"{self.config}{section}/{name}"

    def live(self, host: str) -> str:
        """A host agent's registration."""
        return self.live_prefix + host

    def status(self, host: str) -> str:
        """A host agent's status report."""
        return self.status_prefix + host

    def migration(self, port: str) -> str:
        """The record of port ``port``'s (last) migration."""
        return self.migrations_prefix + port

    def watch_range(self) -> tuple[str, str]:
        """The range agents watch: ``config/``, ``hosts/`` and ``migrations/`` (they sort
        in that order, before ``status/``)."""
        return self.config, prefix_end(self.migrations_prefix)

    def parse(self, key: str) -> tuple[str, str] | None:
        """``(section, name)`` of a config key (name empty for switch/firewall/meta/schema)."""
        if not key.startswith(self.config):
            return None
        rest = key[len(self.config):]
        section, _, name = rest.partition("/")
        return section, name


def list_names(keys: list[str]) -> list[str]:
    """Switch names from keys under :data:`ROOT` (``.../NAME/config/schema``)."""
    out = []
    for key in keys:
        rest = key[len(ROOT):]
        name, _, tail = rest.partition("/")
        if tail == "config/schema":
            out.append(name)
    return sorted(set(out))
