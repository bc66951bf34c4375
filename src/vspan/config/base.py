"""Shared bases of the configuration models (kept apart so policy models can import them)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

PORT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.\-@]{1,15}$")


class Strict(BaseModel):
    """Base of every config model: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)
