"""Read the policy parts of a switch configuration file (``ports.*.policy``, ``firewall``).

Works on the raw YAML so it does not depend on how the switch-wide
:class:`~vspan.config.model.Config` embeds these models; errors carry full
paths, in the format of :mod:`vspan.config.load`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from vspan.config.load import ConfigError
from vspan.policy.config import FirewallConfig, PortPolicyConfig, policy_reference_errors

PolicyParts = tuple[dict[str, PortPolicyConfig | None], FirewallConfig | None]


def _errors(err: ValidationError, prefix: str) -> list[str]:
    out = []
    for e in err.errors(include_url=False):
        parts = [prefix]
        for item in e.get("loc", ()):
            text = str(item)
            if "[" in text and text.endswith("]") and not text.startswith("["):
                continue  # validator tags pydantic inserts for Annotated types
            parts.append(text)
        msg = str(e.get("msg", ""))
        for p in ("Value error, ", "Assertion failed, "):
            if msg.startswith(p):
                msg = msg[len(p):]
        if e.get("type") == "extra_forbidden":
            msg = "unknown key"
        out.append(f"{'.'.join(parts)}: {msg}")
    return out


def _validate(model: type[BaseModel], data: Any, path: str, errors: list[str]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        errors.extend(_errors(err, path))
        return None


def policy_from_data(data: Any, source: str = "") -> PolicyParts:
    """Validate the policy parts of already-parsed configuration data."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["top level must be a mapping"], source)
    errors: list[str] = []
    ports: dict[str, PortPolicyConfig | None] = {}
    raw_ports = data.get("ports") or {}
    if not isinstance(raw_ports, dict):
        raise ConfigError(["ports: must be a mapping"], source)
    for name, body in raw_ports.items():
        pol = body.get("policy") if isinstance(body, dict) else None
        ports[str(name)] = (None if pol is None else
                            _validate(PortPolicyConfig, pol, f"ports.{name}.policy", errors))
    fw = None
    if data.get("firewall") is not None:
        fw = _validate(FirewallConfig, data["firewall"], "firewall", errors)
    if not errors:
        errors = policy_reference_errors(ports, fw)
    if errors:
        raise ConfigError(errors, source)
    return ports, fw


def policy_from_file(path: str | Path) -> PolicyParts:
    """Read a YAML configuration file and validate its policy parts."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([f"cannot read: {err.strerror}"], str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError([f"invalid YAML: {err}"], str(p)) from None
    return policy_from_data(data, str(p))
