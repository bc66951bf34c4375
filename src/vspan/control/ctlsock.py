"""The control socket: created owner-only (or owner + one named group), never wider.

Whoever can connect to the control socket can create mirror sessions (and so
see every VM's traffic), start captures and change ACLs and firewall rules. So:

* the socket is bound while the process umask is 0177: it is born ``0600``;
  with a socket group it is then given that group and ``0660`` — at no moment
  can anyone but the owner (and, at the end, the group) connect (``listen()``
  comes last);
* vspan's own socket directory (``/run/vspan``, or any directory it has to
  create) is ``0700`` (``0710`` and the socket group with a group: members may
  traverse it, not list it); an existing ``/run/vspan`` is tightened to that
  and must belong to the switch's user.

Nothing here is ever ``chmod``-ed wider than it ends up.
"""

from __future__ import annotations

import grp
import logging
import os
import socket
import stat

log = logging.getLogger(__name__)

RUN_DIR = "/run/vspan"  # vspan's own directory for control sockets
SOCKET_BACKLOG = 128


class SocketSetupError(Exception):
    """The control socket or its directory cannot be made safely; the message says why."""


def resolve_group(name: str) -> int:
    """The gid of group ``name`` (a number is taken as a gid)."""
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise SocketSetupError(f"no group named {name!r}") from None


def _make_dir(directory: str) -> None:
    old = os.umask(0o077)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    finally:
        os.umask(old)


def prepare_dir(directory: str, gid: int | None, managed: bool = False) -> None:
    """Make the socket's directory safe.

    A missing directory is created ``0700`` (``0710`` + group ``gid``). An existing one
    is vspan's own when ``managed`` (``/run/vspan``): it must belong to this user and
    is tightened the same way; another existing directory is left as it is (the
    socket's own mode protects it; a directory others may write to is logged).
    """
    directory = directory or "."
    if not os.path.isdir(directory):
        _make_dir(directory)
        managed = True
    st = os.stat(directory)
    if not managed:
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            log.warning("control socket directory %s is writable by others: they could "
                        "replace the socket", directory)
        return
    if st.st_uid != os.geteuid():
        raise SocketSetupError(f"{directory} belongs to uid {st.st_uid}, not to this user "
                               f"(uid {os.geteuid()}): refusing to put the control socket there")
    current = stat.S_IMODE(st.st_mode)
    shared = st.st_gid not in (0, os.getegid())  # another switch's socket group
    mode = 0o700 | (current & 0o010 if shared else 0)  # owner rwx; x for such a group
    if gid is not None:
        if st.st_gid != gid:
            if current & 0o070 and shared:
                raise SocketSetupError(
                    f"{directory} already lets group {st.st_gid} in (another switch's socket "
                    "group): give this switch a socket directory of its own "
                    "(switch.control_socket)")
            os.chmod(directory, 0o700)  # narrow first, then hand it to the group
            os.chown(directory, -1, gid)
            current = 0o700
        mode = 0o710
    if current != mode:
        os.chmod(directory, mode)


def bind_control_socket(path: str, gid: int | None = None,
                        managed_dir: str | None = RUN_DIR) -> socket.socket:
    """A listening Unix stream socket at ``path``: mode 0600, or 0660 with group ``gid``.

    The directory is prepared with :func:`prepare_dir` (``managed`` when it is
    ``managed_dir``). A file already at ``path`` is an error (the caller removes a
    stale socket first).
    """
    directory = os.path.dirname(os.path.abspath(path))
    prepare_dir(directory, gid, managed=managed_dir is not None
                and os.path.abspath(managed_dir) == directory)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as err:
        sock.close()
        raise SocketSetupError(f"cannot create {path}: {err.strerror}") from None
    finally:
        os.umask(old)
    try:
        if gid is not None:
            os.chown(path, -1, gid)
            os.chmod(path, 0o660)
        sock.listen(SOCKET_BACKLOG)
    except OSError as err:
        sock.close()
        os.unlink(path)
        raise SocketSetupError(f"cannot set up {path}: {err.strerror}") from None
    return sock
