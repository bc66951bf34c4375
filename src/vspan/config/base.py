"""Shared bases of the configuration models (kept apart so policy models can import them)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    WrapSerializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

PORT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.\-@]{1,15}$")


class Strict(BaseModel):
    """Base of every config model: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, data: Any) -> Any:
        """Refuse ``true``/``false`` where a number is expected (pydantic would take them
        as 1 and 0): ``mtu: true`` is a mistake, not a 1-byte MTU."""
        if isinstance(data, Mapping):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if (isinstance(value, bool) and field is not None
                        and not _allows_bool(field.annotation)):
                    raise PydanticCustomError(
                        "bool_not_number", "{field}: a boolean is not accepted here",
                        {"field": name})
        return data


def _allows_bool(annotation: Any) -> bool:
    """Whether a field's type takes a boolean as itself (bool, Any, or a union holding
    one of them)."""
    if annotation is bool or annotation is Any or annotation is object:
        return True
    if annotation in (int, float, type(None)):
        return False
    args = get_args(annotation)
    if not args:
        return True  # models, enums, strings: their own validation decides
    return any(_allows_bool(arg) for arg in args)


K = TypeVar("K")
V = TypeVar("V")


class FrozenMap(Mapping[K, V]):
    """A read-only mapping: what configuration models hold instead of a dict."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[K, V] | None = None) -> None:
        self._items: dict[K, V] = dict(items or {})

    def __getitem__(self, key: K) -> V:
        return self._items[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


def _freeze(value: Mapping[Any, Any]) -> FrozenMap[Any, Any]:
    return value if isinstance(value, FrozenMap) else FrozenMap(value)


def _thaw(value: Mapping[Any, Any], handler: SerializerFunctionWrapHandler) -> Any:
    return handler(dict(value))


FREEZE = AfterValidator(_freeze)
"""Annotated metadata: a validated ``Mapping`` field is stored as a :class:`FrozenMap`."""
THAW = WrapSerializer(_thaw)
"""Annotated metadata: a :class:`FrozenMap` field serialises as a plain mapping."""
