"""Private VLANs: a port's ``pvlan`` block and the PVLAN domains a configuration defines.

A PVLAN domain is a primary VLAN and its secondary VLANs (isolated or
community). Ports name their role (``pvlan: {primary, mode, secondary}``); a
promiscuous port may list secondaries used only behind a trunk
(``secondaries``, Hyper-V's ``-SecondaryVlanIdList``). The domain of a primary
is the union of what its ports name. See docs/pvlan.md.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from vspan.config.base import Strict


def _vid(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4094:
        raise ValueError(f"{value!r} is not a VLAN id (1-4094)")
    return value


def _vids(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{value!r} is not a list of VLAN ids")
    return tuple(sorted({_vid(v) for v in value}))


PvlanVid = Annotated[int, BeforeValidator(_vid)]


class PvlanMode(enum.StrEnum):
    """A port's role in its private VLAN."""

    PROMISCUOUS = "promiscuous"  # talks to every port of the domain; sends on the primary
    COMMUNITY = "community"  # talks to its community and to promiscuous ports
    ISOLATED = "isolated"  # talks only to promiscuous ports


class PvlanConfig(Strict):
    """A port's place in a private VLAN (the port is untagged on the wire)."""

    primary: PvlanVid
    mode: PvlanMode
    secondary: PvlanVid | None = Field(
        default=None, description="community/isolated: its secondary VLAN; promiscuous: "
        "the primary (vSphere's convention) or left out")
    secondaries: Annotated[tuple[int, ...], BeforeValidator(_vids)] = Field(
        default=(), description="promiscuous only: secondaries of the primary that live "
        "behind a trunk (no port of this switch names them)")

    @model_validator(mode="after")
    def _check(self) -> PvlanConfig:
        if self.mode is PvlanMode.PROMISCUOUS:
            if self.secondary is not None and self.secondary != self.primary:
                raise ValueError(f"a promiscuous port's secondary is its primary "
                                 f"({self.primary}) or left out, not {self.secondary}")
            if self.primary in self.secondaries:
                raise ValueError(f"secondaries: {self.primary} is the primary")
            return self
        if self.secondaries:
            raise ValueError("'secondaries' is only for promiscuous ports")
        if self.secondary is None:
            raise ValueError(f"{_an(self.mode.value)} port needs its 'secondary' VLAN")
        if self.secondary == self.primary:
            raise ValueError(f"the secondary VLAN of {_an(self.mode.value)} port cannot be its "
                             f"primary ({self.primary})")
        return self

    @property
    def own_vid(self) -> int:
        """The VLAN the port's frames travel on: the primary for a promiscuous port."""
        return self.primary if self.secondary is None else self.secondary


@dataclass(frozen=True, slots=True)
class PvlanVlan:
    """What one VLAN id is in a PVLAN domain."""

    primary: int
    kind: str  # "primary", "isolated", "community", or "secondary" (type unknown here)


def pvlan_vlans(pvlans: Mapping[str, PvlanConfig | None]) -> dict[int, PvlanVlan]:
    """Every VLAN id of every PVLAN domain (a valid configuration's), by VID."""
    out: dict[int, PvlanVlan] = {}
    for pv in pvlans.values():
        if pv is None:
            continue
        out[pv.primary] = PvlanVlan(pv.primary, "primary")
        if pv.mode is not PvlanMode.PROMISCUOUS and pv.secondary is not None:
            out[pv.secondary] = PvlanVlan(pv.primary, pv.mode.value)
    for pv in pvlans.values():
        if pv is not None:
            for s in pv.secondaries:
                out.setdefault(s, PvlanVlan(pv.primary, "secondary"))
    return out


def pvlan_errors(pvlans: Mapping[str, PvlanConfig | None],
                 normal: Mapping[str, tuple[str, tuple[int, ...]]],
                 trunks: Mapping[str, tuple[int, ...]] | None = None,
                 vlan_at: Mapping[str, str] | None = None) -> list[str]:
    """Cross-port errors of the ``pvlan`` blocks, each with its path.

    ``pvlans``: each port's block by port name; ``normal``: for ports whose VLANs
    are plain VLANs, (the key path that names them, the VIDs untagged frames of
    the port join) — an access port's id, a trunk's native VLAN. A trunk may carry
    PVLAN VIDs tagged (that is how a PVLAN crosses switches); it may not make one
    its native VLAN. ``trunks``: each trunk's ``allowed`` VIDs; a trunk that carries
    a secondary VLAN must carry its primary too (:func:`trunk_errors`). ``vlan_at``:
    where a port's ``vlan`` block is written when not at ``ports.NAME.vlan`` (a DVS
    port's port group); an error found for several ports at one such place is said once.
    """
    errors: list[str] = []
    at = vlan_at or {}
    # VID -> (primary, kind, the port that first said so)
    role: dict[int, tuple[int, str, str]] = {}

    def claim(vid: int, primary: int, kind: str, port: str, key: str) -> None:
        prev = role.get(vid)
        if prev is None:
            role[vid] = (primary, kind, port)
            return
        p_primary, p_kind, p_port = prev
        where = f"ports.{port}.pvlan.{key}"
        if p_primary != primary and p_kind == "primary":
            errors.append(f"{where}: VLAN {vid} is the primary of another private VLAN (port "
                          f"{p_port!r}); a VLAN is in one private VLAN")
        elif p_primary != primary:
            errors.append(f"{where}: VLAN {vid} already belongs to the private VLAN of primary "
                          f"{p_primary} (port {p_port!r}); a VLAN is in one private VLAN")
        elif kind != p_kind and "secondary" not in (kind, p_kind):
            errors.append(f"{where}: VLAN {vid} is {_an(p_kind)} VLAN of primary {primary} "
                          f"(port {p_port!r}), not {_an(kind)} VLAN")

    for name, pv in pvlans.items():
        if pv is not None:
            claim(pv.primary, pv.primary, "primary", name, "primary")
    for name, pv in pvlans.items():
        if pv is not None and pv.mode is not PvlanMode.PROMISCUOUS and pv.secondary is not None:
            claim(pv.secondary, pv.primary, pv.mode.value, name, "secondary")
    for name, pv in pvlans.items():
        if pv is not None:
            for s in pv.secondaries:
                claim(s, pv.primary, "secondary", name, "secondaries")
    for name, (key, vids) in normal.items():
        for vid in vids:
            if vid in role:
                primary, kind, port = role[vid]
                what = ("the primary of a private VLAN" if kind == "primary"
                        else f"a secondary VLAN of primary {primary}")
                where = at.get(name, f"ports.{name}.vlan") + key.removeprefix("vlan")
                errors.append(f"{where}: VLAN {vid} is {what} (port {port!r}); "
                              "it cannot be a normal VLAN's untagged VLAN here")
    for name, allowed in (trunks or {}).items():
        errors += trunk_errors(name, allowed, role, at.get(name, f"ports.{name}.vlan"))
    return list(dict.fromkeys(errors))


def trunk_errors(name: str, allowed: tuple[int, ...],
                 role: Mapping[int, tuple[int, str, str]], vlan: str = "") -> list[str]:
    """A trunk that carries secondary VLANs of a private VLAN without its primary: one
    error per primary, at ``ports.NAME.vlan.allowed`` (``vlan``: the block's path when
    elsewhere).

    Frames of the promiscuous ports travel on the primary (docs/pvlan.md, "On the
    wire"), so the secondaries' hosts behind such a trunk could send but never get
    an answer from them (nor from anything promiscuous behind the trunk); every
    PVLAN-aware switch carries a private VLAN over a trunk as a whole.
    ``role``: VID -> (primary, kind, the port that says so).
    """
    carried = set(allowed)
    missing: dict[int, list[tuple[int, str, str]]] = {}
    for vid in sorted(carried):
        got = role.get(vid)
        if got is not None and got[1] != "primary" and got[0] not in carried:
            missing.setdefault(got[0], []).append((vid, got[1], got[2]))
    errors = []
    vlan = vlan or f"ports.{name}.vlan"
    for primary, rows in missing.items():
        what = ", ".join(f"{vid} ({kind}, port {port!r})" for vid, kind, port in rows)
        plural = "s" if len(rows) > 1 else ""
        errors.append(
            f"{vlan}.allowed: the trunk carries secondary VLAN{plural} {what} of "
            f"the private VLAN of primary {primary} but not the primary {primary}: frames "
            f"from promiscuous ports travel on VLAN {primary}, so hosts behind the trunk in "
            f"the secondary VLAN{plural} would get no answer from them (add {primary} to "
            f"'allowed', or leave the secondary VLAN{plural} out)")
    return errors


def _an(kind: str) -> str:
    return {"primary": "the primary", "isolated": "an isolated", "community": "a community",
            "secondary": "a secondary"}[kind]
