"""Control-socket identities: the kernel's word on the peer (SO_PEERCRED, SO_PEERGROUPS), and
the roles the switch's role map gives it."""

from __future__ import annotations

import grp
import os
import pwd
import socket

import pytest

from vspan.api.peercred import peer_cred
from vspan.config.access import Role, RolesConfig
from vspan.config.load import ConfigError, parse_config
from vspan.control.roles import Identity, PeerCred, Permission, peer_identity

NOBODY = pwd.getpwnam("nobody").pw_uid if "nobody" in {p.pw_name for p in pwd.getpwall()} \
    else 65534


def roles(**kw: object) -> RolesConfig:
    return RolesConfig.model_validate(kw)


def test_peer_cred_is_what_the_kernel_says() -> None:
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        peer = peer_cred(a)
    assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.geteuid(), os.getegid())
    assert set(peer.groups) <= set(os.getgroups()) | {os.getegid()}


def test_root_and_the_owner_are_admin() -> None:
    root = peer_identity(PeerCred(1, 0, 0), roles(), owner_uid=1000)
    assert root.roles == {Role.ADMIN} and root.name == "uid:0(root)"
    owner = peer_identity(PeerCred(2, 4242, 4242), roles(), owner_uid=4242)
    assert owner.roles == {Role.ADMIN} and owner.name == "uid:4242"
    assert owner.source == "unix:pid=2"


def test_unmapped_users_get_nothing_or_viewer() -> None:
    peer = PeerCred(3, NOBODY, 65534)
    nothing = peer_identity(peer, roles(), owner_uid=0)
    assert nothing.roles == frozenset() and nothing.role_text == "-"
    assert nothing.may(Permission.IDENTIFIED) and not nothing.may(Permission.READ)
    viewer = peer_identity(peer, roles(unmapped="viewer"), owner_uid=0)
    assert viewer.roles == {Role.VIEWER}


def test_group_and_user_roles_add_up() -> None:
    some_group = grp.getgrall()[0]
    peer = PeerCred(4, NOBODY, 65534, (some_group.gr_gid,))
    both = peer_identity(peer, roles(groups={some_group.gr_name: "operator"},
                                     users={"nobody": "mirror-admin"}), owner_uid=0)
    assert both.roles == {Role.OPERATOR, Role.MIRROR_ADMIN}
    assert both.permissions == {Permission.READ, Permission.NETWORK, Permission.MIRROR}
    assert not both.may(Permission.ADMIN)
    assert both.role_text == "operator+mirror-admin"
    # numeric ids work too; the primary group counts
    by_id = peer_identity(PeerCred(5, NOBODY, some_group.gr_gid),
                          roles(groups={str(some_group.gr_gid): "viewer"}), owner_uid=0)
    assert by_id.roles == {Role.VIEWER}
    # a group the peer is not in gives nothing
    other = peer_identity(PeerCred(6, NOBODY, 65534),
                          roles(groups={some_group.gr_name: "admin"}), owner_uid=0)
    assert other.roles == frozenset() or some_group.gr_gid == 65534


def test_the_role_map_is_validated_with_paths() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"switch": {"roles": {"groups": {"netops": "superuser"}}}}, "x")
    assert any("switch.roles.groups.netops" in e for e in err.value.errors)
    with pytest.raises(ConfigError) as err:
        parse_config({"switch": {"roles": {"users": {"bad name": "viewer"}}}}, "x")
    assert any("switch.roles.users" in e for e in err.value.errors)
    with pytest.raises(ConfigError):
        parse_config({"switch": {"roles": {"unmapped": "admin"}}}, "x")


def test_identity_permissions() -> None:
    admin = Identity("token:a", frozenset({Role.ADMIN}), "tcp:x")
    assert all(admin.may(p) for p in Permission)
    anon = Identity("anonymous", frozenset(), "tcp:x")
    assert anon.may(Permission.PUBLIC) and not anon.may(Permission.IDENTIFIED)
