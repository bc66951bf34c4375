"""docs/config.md lists every key of every configuration model, nothing else, with the model's
defaults: walking the pydantic models keeps the reference from drifting."""

from __future__ import annotations

import enum
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from vspan.config.model import Config

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"
ROOT = "Top level"
HEADING = re.compile(r"^#+ (?:`(?P<path>[^`]+)`|(?P<root>Top level))\s*$")
ROW = re.compile(r"^\| `(?P<key>[a-z_]+)` \|(?P<type>[^|]*)\|(?P<default>[^|]*)\|")


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _suffix(annotation: Any) -> str:
    """How a nested model is addressed: ``.<name>`` in a mapping, ``[]`` in a list."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return next((s for a in typing.get_args(annotation) if (s := _suffix(a))), "")
    if origin is typing.Annotated:
        return _suffix(typing.get_args(annotation)[0])
    if origin in (Mapping, dict):
        return ".<name>"
    if origin is tuple:
        return "[]"
    return ""


def model_paths(model: type[BaseModel] = Config, path: str = ROOT
                ) -> Iterator[tuple[str, type[BaseModel]]]:
    """(path as written in the doc, model) for the whole configuration tree."""
    yield path, model
    for name, f in model.model_fields.items():
        for sub in _models(f.annotation):
            base = name if path == ROOT else f"{path}.{name}"
            yield from model_paths(sub, base + _suffix(f.annotation))


def doc_sections() -> dict[str, dict[str, tuple[str, str]]]:
    """path -> key -> (type cell, default cell), from the doc's headings and tables."""
    sections: dict[str, dict[str, tuple[str, str]]] = {}
    current: dict[str, tuple[str, str]] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        h = HEADING.match(line)
        if h:
            path = h.group("path") or ROOT
            assert path not in sections, f"docs/config.md: section {path} appears twice"
            current = sections[path] = {}
            continue
        r = ROW.match(line)
        if r and current is not None:
            key = r.group("key")
            assert key not in current, f"docs/config.md: key {key} listed twice"
            current[key] = (r.group("type").strip(), r.group("default").strip())
    return sections


def _json(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    return value


def check_default(path: str, key: str, f: FieldInfo, cell: str) -> None:
    where = f"docs/config.md {path} `{key}`"
    if f.is_required():
        assert cell == "required", f"{where}: required, the doc says {cell!r}"
        return
    default = f.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        assert cell == "see below", f"{where}: a nested section, the doc says {cell!r}"
    elif default is None:
        assert cell == "none", f"{where}: default none, the doc says {cell!r}"
    else:
        m = re.fullmatch(r"`(.*)`", cell)
        assert m, f"{where}: default {default!r} should be shown as `...`, not {cell!r}"
        assert yaml.safe_load(m.group(1)) == _json(default), \
            f"{where}: default is {_json(default)!r}, the doc says {m.group(1)!r}"


PATHS = list(model_paths())


def test_the_walk_reaches_every_model() -> None:
    names = {m.__name__ for _, m in PATHS}
    assert {"Config", "SwitchConfig", "PortConfig", "VlanConfig", "PortPolicyConfig",
            "AclEntryConfig", "ExtendedAclConfig", "GuardsConfig", "StormConfig",
            "MirrorSession", "MirrorSource", "RspanDestination", "ErspanDestination",
            "RspanSource", "FirewallConfig", "TimeoutsConfig", "GroupConfig",
            "FwSectionConfig", "FwRuleConfig", "ServiceConfig"} <= names


@pytest.mark.parametrize(("path", "model"), PATHS, ids=[p for p, _ in PATHS])
def test_every_key_is_documented_with_its_default(path: str, model: type[BaseModel]) -> None:
    sections = doc_sections()
    assert path in sections, f"docs/config.md has no section for {path} ({model.__name__})"
    documented = sections[path]
    fields = model.model_fields
    missing = [k for k in fields if k not in documented]
    assert not missing, f"docs/config.md {path}: keys not documented: {missing}"
    unknown = [k for k in documented if k not in fields]
    assert not unknown, f"docs/config.md {path}: keys the model does not have: {unknown}"
    for key, f in fields.items():
        check_default(path, key, f, documented[key][1])


def test_no_section_for_a_model_that_does_not_exist() -> None:
    known = {p for p, _ in PATHS}
    stale = [p for p in doc_sections() if p not in known]
    assert not stale, f"docs/config.md documents sections that do not exist: {stale}"


def test_the_erspan_index_and_hw_id_are_documented() -> None:
    erspan = doc_sections()["mirrors.<name>.erspan"]
    assert {"index", "hw_id"} <= set(erspan)
