"""``vspan observe`` on the control side: names for events, rules as configured, and
building an observer from a request.

:class:`SwitchNames` answers the event builder's questions (port and session
names, a drop's rule as configured) from the running switch; it is read from
the API's thread, so it only reads (a port or session removed meanwhile gets
``#<index>``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from vspan.capture.filter import FilterError, compile_filter
from vspan.capture.observe import DEFAULT_MAX_RATE, ObserveError, ObserveSpec, parse_kinds
from vspan.config.model import Config
from vspan.config.policy import acl_id, ext_acl_id, rule_id
from vspan.datapath.decision import Drop
from vspan.datapath.engine import Engine
from vspan.datapath.reasons import DropReason

_ACL_REASONS = (DropReason.ACL_DENY,)
_EXT_REASONS = (DropReason.EXT_ACL_DENY,)
_FW_REASONS = (DropReason.FIREWALL_DENY, DropReason.FIREWALL_REJECT,
               DropReason.FIREWALL_STATE_INVALID)


def _flow(data: dict[str, Any]) -> str:
    """``{key: value, ...}`` in YAML flow style, as a rule is written in the config file."""
    def val(v: Any) -> str:
        if isinstance(v, list | tuple):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return _flow(v)
        return json.dumps(v) if isinstance(v, str) and (not v or ":" in v or " " in v) \
            else str(v).lower() if isinstance(v, bool) else str(v)
    return "{" + ", ".join(f"{k}: {val(v)}" for k, v in data.items()) + "}"


def rule_text(config: Config, reason: DropReason, port: str, rule: str) -> str:
    """The configured text of the rule ``rule`` that dropped a frame at ``port`` for
    ``reason`` (ACL entry, extended ACL rule, firewall rule or the default rule); "" when
    the configuration has no such rule (any more)."""
    if not rule:
        return ""
    if reason in _ACL_REASONS or reason in _EXT_REASONS:
        pc = config.ports.get(port)
        pol = pc.policy if pc is not None else None
        if pol is None:
            return ""
        entries: Iterable[tuple[str, Any]]
        if reason in _ACL_REASONS:
            entries = ((acl_id(e, i), e) for i, e in enumerate(pol.acls))
        else:
            entries = ((ext_acl_id(e, i), e) for i, e in enumerate(pol.extended_acls))
        for eid, entry in entries:
            if eid == rule:
                return _flow(entry.model_dump(mode="json", exclude_unset=True))
        return ""
    if reason in _FW_REASONS and config.firewall is not None:
        fw = config.firewall
        if rule == "default":
            return f"default rule: {fw.default_action.value}"
        for sec in fw.sections:
            for i, r in enumerate(sec.rules):
                if rule_id(sec, r, i) == rule:
                    return f"section {sec.name}: " + _flow(
                        r.model_dump(mode="json", exclude_unset=True))
    return ""


class SwitchNames:
    """What the running switch calls ports, sessions and rules (read-only)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def port(self, idx: int) -> str:
        """The port's name (``#idx`` once it is gone)."""
        rt = self.engine.state.ports.get(idx)
        return rt.name if rt is not None else f"#{idx}"

    def session(self, idx: int) -> tuple[str, str]:
        """(name, destination) of a mirror session."""
        m = self.engine.state.mirrors.get(idx)
        if m is None:
            return f"#{idx}", ""
        c = m.config
        if c.erspan is not None:
            return m.name, f"{c.erspan.type.value} to {c.erspan.remote_ip}"
        if c.rspan is not None:
            return m.name, f"rspan vlan {c.rspan.vlan} via {c.rspan.port}"
        return m.name, ",".join(self.port(p) for p in m.dest_ports)

    def rule_text(self, drop: Drop) -> str:
        """The rule as configured (from the running configuration)."""
        return rule_text(self.engine.state.config, drop.reason, self.port(drop.port), drop.rule)


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    return [p.strip() for v in value for p in str(v).split(",") if p.strip()]


def observe_spec(config: Config, by_name: dict[str, int], body: dict[str, Any]) -> ObserveSpec:
    """Build the spec of an observe request (``ports``, ``vms``, ``verdicts``, ``reasons``,
    ``filter``, ``sample``, ``max_rate``). A VM is a port's name or its description as the
    configuration says it. Raises :class:`ObserveError`."""
    ports: set[int] = set()
    for name in _list(body.get("ports")):
        if name not in by_name:
            raise ObserveError(f"no port named {name!r}")
        ports.add(by_name[name])
    for vm in _list(body.get("vms")):
        found = {by_name[n] for n, pc in config.ports.items()
                 if n in by_name and (n == vm or pc.description == vm)}
        if not found:
            raise ObserveError(f"no port or VM named {vm!r} (a VM is a port's name or its "
                               "description)")
        ports |= found
    reasons = _list(body.get("reasons"))
    try:
        flt = compile_filter(str(body["filter"])) if body.get("filter") else None
    except FilterError as err:
        raise ObserveError(f"filter: {err}") from None
    try:
        sample = int(body.get("sample") or 1)
        max_rate = float(body.get("max_rate") or DEFAULT_MAX_RATE)
    except (TypeError, ValueError) as err:
        raise ObserveError(f"sample/max_rate: {err}") from None
    restricted = bool(body.get("ports")) or bool(body.get("vms"))
    return ObserveSpec(frozenset(ports) if restricted else None,
                       parse_kinds(_list(body.get("verdicts")), reasons),
                       frozenset(r.lower() for r in reasons), flt, sample, max_rate)
