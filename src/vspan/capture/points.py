"""Capture points: where ``vspan capture`` looks (a switch port, or a team member's wire).

Syntax of a point name (port names never contain ``:``):

* ``PORT`` — a switch port: frames it sends into the switch (inbound) and
  frames the switch delivers to it (outbound). For a team port that is the
  team as the switch sees it, like the team adapter (tNIC) of an LBFO team;
* ``TEAM:MEMBER`` — one member interface of a team: frames on that member's
  wire, like the physical NIC (pNIC) under an LBFO team;
* ``TEAM:*`` — every member of the team, one point each.

A frame seen at several points (a member, its team, the port it is delivered
to) is written once per point, every copy with the same pcapng packet id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


class CapturePointError(KeyError):
    """A point names no port, or a member that the port does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "bad capture point"


@dataclass
class CapturePoints:
    """Resolved points: switch ports by index, team members by (team index, member)."""

    ports: dict[int, str] = field(default_factory=dict)  # port index -> point name
    members: dict[tuple[int, str], str] = field(default_factory=dict)  # -> point name
    descriptions: dict[str, str] = field(default_factory=dict)  # point name -> IDB text

    @property
    def names(self) -> list[str]:
        """Every point name, in the order given."""
        return list(self.descriptions)

    @property
    def teams(self) -> set[int]:
        """Indexes of the teams some of whose members are captured."""
        return {idx for idx, _ in self.members}


def resolve(points: Sequence[str], by_name: Mapping[str, int],
            team_members: Mapping[str, Sequence[str]]) -> CapturePoints:
    """Resolve point names against the switch's ports (``team_members``: team -> members)."""
    out = CapturePoints()
    for point in points:
        port, sep, member = point.partition(":")
        if port not in by_name:
            raise CapturePointError(f"no port named {port!r}")
        idx = by_name[port]
        if not sep:
            if point not in out.descriptions:
                out.ports[idx] = point
                members = team_members.get(port)
                out.descriptions[point] = (
                    f"vspan team port {port} (members {', '.join(members)}): frames as the "
                    "switch sees the team" if members is not None
                    else f"vspan switch port {port}")
            continue
        members = team_members.get(port)
        if members is None:
            raise CapturePointError(f"port {port!r} is not a team; {point!r} names no member")
        wanted = list(members) if member == "*" else [member]
        for m in wanted:
            if m not in members:
                raise CapturePointError(
                    f"team {port!r} has no member {m!r} (members: {', '.join(members)})")
            name = f"{port}:{m}"
            if name not in out.descriptions:
                out.members[(idx, m)] = name
                out.descriptions[name] = f"vspan team {port}, member {m}: frames on its wire"
    return out
