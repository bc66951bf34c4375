"""Identities and what their roles let them do.

A request is made by an :class:`Identity`: a control-socket peer (its uid, from the
kernel) or a bearer token (TCP). Roles grant :class:`Permission` s; an endpoint
needs one permission (the table in :mod:`vspan.api.access`). Roles are not a
ladder: ``operator`` (network policy) and ``mirror-admin`` (seeing traffic) are
separate duties; ``admin`` has every permission.
"""

from __future__ import annotations

import enum
import grp
import pwd
from collections.abc import Iterable
from dataclasses import dataclass

from vspan.config.access import Role, RolesConfig, Unmapped


class Permission(enum.StrEnum):
    """One kind of thing an endpoint does."""

    PUBLIC = "public"  # no identity needed (the OpenAPI document)
    IDENTIFIED = "identified"  # any identity, even without a role (who am I?)
    READ = "read"  # show state, counters, configuration; trace and explain
    NETWORK = "network"  # ports, VLANs, ACLs, firewall rules, reload of the switch's file
    MIRROR = "mirror"  # mirror sessions and captures: seeing traffic
    ADMIN = "admin"  # tokens, the audit log, reload from another file, capture files anywhere


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.NETWORK}),
    Role.MIRROR_ADMIN: frozenset({Permission.READ, Permission.MIRROR}),
    Role.ADMIN: frozenset({Permission.READ, Permission.NETWORK, Permission.MIRROR,
                           Permission.ADMIN}),
}


def roles_with(permission: Permission) -> list[Role]:
    """The roles that grant ``permission`` (every role for PUBLIC/IDENTIFIED)."""
    if permission in (Permission.PUBLIC, Permission.IDENTIFIED):
        return list(Role)
    return [r for r in Role if permission in GRANTS[r]]


@dataclass(frozen=True)
class Identity:
    """Who makes a request: ``name`` as the audit log shows it, the roles it holds, and
    where it came from (``source``)."""

    name: str  # "uid:1000(alice)", "token:ci", "system", "anonymous"
    roles: frozenset[Role]
    source: str  # "unix:pid=123", "tcp:127.0.0.1:5555", "vspan"

    @property
    def permissions(self) -> frozenset[Permission]:
        """Everything the roles grant."""
        out: set[Permission] = set()
        for r in self.roles:
            out |= GRANTS[r]
        return frozenset(out)

    def may(self, permission: Permission) -> bool:
        """Whether this identity may do what ``permission`` names."""
        if permission is Permission.PUBLIC:
            return True
        if permission is Permission.IDENTIFIED:
            return self.name != ANONYMOUS
        return permission in self.permissions

    @property
    def role_text(self) -> str:
        """The roles as the audit log writes them (``-`` for none)."""
        return "+".join(r.value for r in Role if r in self.roles) or "-"


ANONYMOUS = "anonymous"
SYSTEM = Identity("system", frozenset(), "vspan")  # the switch itself (limits reached)


def anonymous(source: str) -> Identity:
    """A request without a usable identity (no token, a bad one)."""
    return Identity(ANONYMOUS, frozenset(), source)


@dataclass(frozen=True)
class PeerCred:
    """A control-socket peer as the kernel reports it (SO_PEERCRED, SO_PEERGROUPS)."""

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] = ()  # supplementary groups at connect() time


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def peer_identity(peer: PeerCred, roles: RolesConfig, owner_uid: int) -> Identity:
    """The identity of a control-socket peer.

    root (uid 0) and the user the switch runs as (``owner_uid``) are ``admin``; other
    peers get the roles their user and their groups (primary and supplementary) are
    mapped to in ``switch.roles``, all of them; with none, ``switch.roles.unmapped``
    decides (``none`` by default: every request but "who am I" is refused).
    """
    user = _user_name(peer.uid)
    name = f"uid:{peer.uid}({user})" if user else f"uid:{peer.uid}"
    source = f"unix:pid={peer.pid}"
    if peer.uid in (0, owner_uid):
        return Identity(name, frozenset({Role.ADMIN}), source)
    granted: set[Role] = set()
    for key in (user, str(peer.uid)):
        if key is not None and key in roles.users:
            granted.add(roles.users[key])
    for gid in _unique((peer.gid, *peer.groups)):
        for key in (_group_name(gid), str(gid)):
            if key is not None and key in roles.groups:
                granted.add(roles.groups[key])
    if not granted and roles.unmapped is Unmapped.VIEWER:
        granted.add(Role.VIEWER)
    return Identity(name, frozenset(granted), source)


def _unique(values: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(values))
