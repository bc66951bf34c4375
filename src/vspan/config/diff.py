"""Diff two configurations into a typed change set the engine applies live."""

from __future__ import annotations

from dataclasses import dataclass, field

from vspan.config.model import Config, PortConfig


@dataclass(frozen=True)
class ChangeSet:
    """What differs between a running and a new configuration."""

    ports_added: tuple[str, ...] = ()
    ports_removed: tuple[str, ...] = ()
    ports_reopened: tuple[str, ...] = ()  # backend changed (type/interface): close + open
    ports_changed: tuple[str, ...] = ()  # settings changed, backend kept
    mirrors_added: tuple[str, ...] = ()
    mirrors_removed: tuple[str, ...] = ()
    mirrors_changed: tuple[str, ...] = ()
    switch_changed: tuple[str, ...] = ()  # names of switch fields that changed
    notes: tuple[str, ...] = field(default=())

    @property
    def empty(self) -> bool:
        """True when nothing changes."""
        return not any(
            (self.ports_added, self.ports_removed, self.ports_reopened, self.ports_changed,
             self.mirrors_added, self.mirrors_removed, self.mirrors_changed, self.switch_changed)
        )

    def summary(self) -> list[str]:
        """One human-readable line per change."""
        lines: list[str] = []
        for label, names in (
            ("port added", self.ports_added),
            ("port removed", self.ports_removed),
            ("port reopened", self.ports_reopened),
            ("port changed", self.ports_changed),
            ("mirror added", self.mirrors_added),
            ("mirror removed", self.mirrors_removed),
            ("mirror changed", self.mirrors_changed),
            ("switch setting changed", self.switch_changed),
        ):
            lines.extend(f"{label}: {n}" for n in names)
        return lines


def _backend_key(name: str, cfg: PortConfig) -> tuple[str, str]:
    return (cfg.type.value, cfg.ifname(name))


def diff(old: Config, new: Config) -> ChangeSet:
    """Compute the change set from ``old`` to ``new``."""
    added = tuple(n for n in new.ports if n not in old.ports)
    removed = tuple(n for n in old.ports if n not in new.ports)
    reopened: list[str] = []
    changed: list[str] = []
    for name in new.ports:
        if name not in old.ports:
            continue
        a, b = old.ports[name], new.ports[name]
        if a == b:
            continue
        if _backend_key(name, a) != _backend_key(name, b):
            reopened.append(name)
        else:
            changed.append(name)
    m_added = tuple(n for n in new.mirrors if n not in old.mirrors)
    m_removed = tuple(n for n in old.mirrors if n not in new.mirrors)
    m_changed = tuple(
        n for n in new.mirrors if n in old.mirrors and old.mirrors[n] != new.mirrors[n]
    )
    sw_changed = tuple(
        f for f in type(new.switch).model_fields
        if getattr(old.switch, f) != getattr(new.switch, f)
    )
    return ChangeSet(added, removed, tuple(reopened), tuple(changed), m_added, m_removed,
                     m_changed, sw_changed)
