"""Live changes: the parts of the running configuration that came from CLI/API commands.

``vspan acl add``, ``vspan firewall rule add``, ``vspan mirror create`` and their
siblings change the running switch, not its configuration file. The agent
remembers each one here (:class:`LiveChanges`): which item it touched
(``acl web1/no-ten``, ``firewall rule icmp-ok``, ``mirror mon``), what the item
looked like afterwards, and which command did it when. The switch's state store
(:mod:`vspan.control.statedb`) keeps them across restarts in the JSON form of
:meth:`LiveChanges.to_data`.

A reload compares every remembered item with the file: an item the file carries
as it runs is settled; any other would be undone by the reload
(:meth:`LiveChanges.undone_by`). The reload either refuses and lists them, drops
them (``--force``), or puts them back on top of the file (``--keep-live``,
:meth:`LiveChange.put`). Configurations are handled as the JSON-shaped data of
:func:`config_data` (normalised by the models, so equal items compare equal).
"""

from __future__ import annotations

import copy
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from vspan.config.model import Config

Data = dict[str, Any]


class LiveConflict(Exception):
    """A live change cannot be put into a configuration (e.g. its port is gone)."""


def config_data(cfg: Config) -> Data:
    """A configuration as JSON-shaped data (the form live changes work on)."""
    return cfg.model_dump(mode="json", exclude_none=True)


class LiveItem(ABC):
    """One addressable part of a configuration that a live command changed."""

    label: str  # e.g. "acl web1/no-ten"
    _value: Any = None

    @abstractmethod
    def value_in(self, data: Data) -> Any:
        """The item as ``data`` has it (``None``: absent); compared for equality."""

    @abstractmethod
    def put(self, data: Data) -> None:
        """Make ``data`` carry the remembered item (LiveConflict when it cannot)."""

    def record(self, data: Data) -> None:
        """Remember the item as ``data`` (the running config after the command) has it."""
        self._value = copy.deepcopy(self.value_in(data))

    @property
    def value(self) -> Any:
        """The remembered value (``None``: the command removed the item)."""
        return self._value

    @abstractmethod
    def to_data(self) -> Data:
        """The item and its remembered value as JSON-shaped data (:func:`item_from_data`)."""


def _port_policy(data: Data, port: str, what: str) -> Data:
    p = data.get("ports", {}).get(port)
    if p is None:
        raise LiveConflict(f"{what}: port {port} is not in the configuration")
    pol: Data = p.setdefault("policy", {})
    return pol


class AclItem(LiveItem):
    """A port ACL entry (``extended``: the extended ACL rules) with one id."""

    def __init__(self, port: str, entry_id: str, extended: bool) -> None:
        self.port, self.entry_id = port, entry_id
        self.listname = "extended_acls" if extended else "acls"
        self.label = f"{'extended acl' if extended else 'acl'} {port}/{entry_id}"

    def value_in(self, data: Data) -> Any:
        pol = (data.get("ports", {}).get(self.port) or {}).get("policy") or {}
        found = [e for e in pol.get(self.listname, []) if e.get("id") == self.entry_id]
        return found or None

    def put(self, data: Data) -> None:
        if self.value_in(data) == self._value:
            return
        pol = _port_policy(data, self.port, self.label)
        kept = [e for e in pol.get(self.listname, []) if e.get("id") != self.entry_id]
        pol[self.listname] = kept + copy.deepcopy(self._value or [])

    def to_data(self) -> Data:
        return {"kind": "acl", "port": self.port, "id": self.entry_id,
                "extended": self.listname == "extended_acls", "value": self._value}


def _rule_id(section: Data, rule: Data, index: int) -> str:
    return str(rule["id"]) if rule.get("id") is not None else f"{section['name']}/{index + 1}"


class FirewallRuleItem(LiveItem):
    """A firewall rule by id (with its section, and the rule it followed there)."""

    def __init__(self, rule_id: str) -> None:
        self.rule_id = rule_id
        self.label = f"firewall rule {rule_id}"
        self._section: Data = {}  # the section's options, to create it when missing
        self._after: str | None = None  # the rule before it in its section

    def _find(self, data: Data) -> tuple[Data, int] | None:
        for sec in (data.get("firewall") or {}).get("sections", []):
            for i, r in enumerate(sec.get("rules", [])):
                if _rule_id(sec, r, i) == self.rule_id:
                    return sec, i
        return None

    def value_in(self, data: Data) -> Any:
        found = self._find(data)
        if found is None:
            return None
        sec, i = found
        return (sec["name"], sec["rules"][i])

    def record(self, data: Data) -> None:
        found = self._find(data)
        self._value = None
        if found is not None:
            sec, i = found
            self._value = (sec["name"], copy.deepcopy(sec["rules"][i]))
            self._section = {k: copy.deepcopy(v) for k, v in sec.items() if k != "rules"}
            self._after = _rule_id(sec, sec["rules"][i - 1], i - 1) if i else None

    def put(self, data: Data) -> None:
        if self.value_in(data) == self._value:
            return
        found = self._find(data)
        if found is not None:
            del found[0]["rules"][found[1]]
        if self._value is None:
            return
        name, rule = self._value
        sections: list[Data] = data.setdefault("firewall", {}).setdefault("sections", [])
        there = next((s for s in sections if s.get("name") == name), None)
        sec: Data = {**copy.deepcopy(self._section), "rules": []} if there is None else there
        if there is None:
            sections.append(sec)
        rules: list[Data] = sec.setdefault("rules", [])
        ids = [_rule_id(sec, r, i) for i, r in enumerate(rules)]
        at = ids.index(self._after) + 1 if self._after in ids else (
            0 if self._after is None else len(rules))
        rules.insert(at, copy.deepcopy(rule))

    def to_data(self) -> Data:
        value = None if self._value is None else list(self._value)
        return {"kind": "firewall-rule", "id": self.rule_id, "value": value,
                "section": self._section, "after": self._after}


class MirrorItem(LiveItem):
    """A mirror session by name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.label = f"mirror {name}"

    def value_in(self, data: Data) -> Any:
        return data.get("mirrors", {}).get(self.name)

    def put(self, data: Data) -> None:
        mirrors = data.setdefault("mirrors", {})
        if self._value is None:
            mirrors.pop(self.name, None)
        else:
            mirrors[self.name] = copy.deepcopy(self._value)

    def to_data(self) -> Data:
        return {"kind": "mirror", "name": self.name, "value": self._value}


def item_from_data(data: Data) -> LiveItem:
    """The item :meth:`LiveItem.to_data` described (ValueError when it is not one)."""
    try:
        kind, value = data["kind"], copy.deepcopy(data["value"])
        item: LiveItem
        if kind == "acl":
            item = AclItem(str(data["port"]), str(data["id"]), bool(data["extended"]))
        elif kind == "mirror":
            item = MirrorItem(str(data["name"]))
        elif kind == "firewall-rule":
            rule = FirewallRuleItem(str(data["id"]))
            rule._section = dict(data["section"])
            rule._after = None if data["after"] is None else str(data["after"])
            value = None if value is None else (str(value[0]), dict(value[1]))
            item = rule
        else:
            raise ValueError(f"unknown kind {kind!r}")
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise ValueError(f"not a live change item: {err}") from None
    item._value = value
    return item


@dataclass(frozen=True)
class Step:
    """One command that changed an item."""

    verb: str  # added, removed, enabled, disabled, changed
    command: str  # e.g. "vspan acl add"
    at: float  # time.time()

    def text(self) -> str:
        """``added with 'vspan acl add' at 2026-11-26 10:00:01``."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))
        return f"{self.verb} with '{self.command}' at {when}"


@dataclass
class LiveChange:
    """An item changed by live commands: what it is now and how it got there."""

    item: LiveItem
    steps: list[Step] = field(default_factory=list)

    @property
    def history(self) -> str:
        """``added with 'vspan acl add' at …, then …``."""
        return ", then ".join(s.text() for s in self.steps)

    def undo_text(self, data: Data) -> str:
        """What a reload to ``data`` does to this change, e.g.
        ``removes acl web1/no-ten (added with 'vspan acl add' at …)``."""
        live, there = self.item.value, self.item.value_in(data)
        verb = "restores" if live is None else "removes" if there is None else "reverts"
        return f"{verb} {self.item.label} ({self.history})"

    def to_data(self) -> Data:
        """The change as JSON-shaped data (:meth:`from_data` reads it back)."""
        return {"item": self.item.to_data(),
                "steps": [{"verb": s.verb, "command": s.command, "at": s.at}
                          for s in self.steps]}

    @classmethod
    def from_data(cls, data: Data) -> LiveChange:
        """The change :meth:`to_data` described (ValueError when it is not one)."""
        try:
            steps = [Step(str(s["verb"]), str(s["command"]), float(s["at"]))
                     for s in data["steps"]]
            return cls(item_from_data(data["item"]), steps)
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a live change: {err}") from None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"item": self.item.label, "present": self.item.value is not None,
                "steps": [{"verb": s.verb, "command": s.command, "at": s.at}
                          for s in self.steps],
                "history": self.history, "text": f"{self.item.label} ({self.history})"}


class LiveChanges:
    """The live changes of one switch, oldest first (one entry per item)."""

    def __init__(self) -> None:
        self._changes: list[LiveChange] = []

    def __len__(self) -> int:
        return len(self._changes)

    def __iter__(self) -> Any:
        return iter(list(self._changes))

    def record(self, item: LiveItem, running: Data, verb: str, command: str,
               at: float | None = None) -> None:
        """``command`` changed ``item``; ``running`` is the running config afterwards."""
        item.record(running)
        step = Step(verb, command, time.time() if at is None else at)
        for i, ch in enumerate(self._changes):
            if ch.item.label == item.label:
                del self._changes[i]
                self._changes.append(LiveChange(item, [*ch.steps, step]))
                return
        self._changes.append(LiveChange(item, [step]))

    def undone_by(self, data: Data) -> list[LiveChange]:
        """The changes a configuration ``data`` does not carry (a reload to it undoes them)."""
        return [ch for ch in self._changes if ch.item.value_in(data) != ch.item.value]

    def put_on(self, data: Data, changes: list[LiveChange]) -> Data:
        """A copy of ``data`` with ``changes`` put back on top (LiveConflict if one cannot)."""
        out = copy.deepcopy(data)
        for ch in changes:
            ch.item.put(out)
        return out

    def to_data(self) -> list[Data]:
        """Every change, oldest first, as JSON-shaped data."""
        return [ch.to_data() for ch in self._changes]

    @classmethod
    def from_data(cls, rows: list[Data]) -> LiveChanges:
        """The changes :meth:`to_data` described (ValueError when one is not a change)."""
        live = cls()
        live._changes = [LiveChange.from_data(r) for r in rows]
        return live

    def keep_only(self, changes: list[LiveChange]) -> None:
        """Forget every change not in ``changes`` (the others are settled or dropped)."""
        keep = {id(c) for c in changes}
        self._changes = [c for c in self._changes if id(c) in keep]
