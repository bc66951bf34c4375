"""The control socket is born owner-only; its directory is made or tightened, never widened."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vspan.control.ctlsock import SocketSetupError, bind_control_socket, prepare_dir


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_socket_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)  # the widest a caller could leave
    try:
        sock = bind_control_socket(str(tmp_path / "s.sock"), managed_dir=None)
        assert os.umask(0) == 0  # the caller's umask is given back
    finally:
        os.umask(old)
    try:
        assert mode(tmp_path / "s.sock") == 0o600
    finally:
        sock.close()


def test_group_socket_is_never_wider_than_0600_before_it_has_its_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "s.sock")
    seen: list[tuple[str, int]] = []
    real_chown, real_chmod = os.chown, os.chmod

    def chown(p: str, uid: int, gid: int) -> None:
        if p == path:
            seen.append(("chown", mode(p)))
        real_chown(p, uid, gid)

    def chmod(p: str, m: int) -> None:
        if p == path:
            seen.append(("chmod", m))
        real_chmod(p, m)

    monkeypatch.setattr(os, "chown", chown)
    monkeypatch.setattr(os, "chmod", chmod)
    sock = bind_control_socket(path, os.getegid(), managed_dir=None)
    try:
        assert seen == [("chown", 0o600), ("chmod", 0o660)]
        assert mode(path) == 0o660 and os.stat(path).st_gid == os.getegid()
    finally:
        sock.close()


def test_missing_directory_is_created_owner_only(tmp_path: Path) -> None:
    prepare_dir(str(tmp_path / "run" / "vspan"), None)
    assert mode(tmp_path / "run" / "vspan") == 0o700


def test_own_directory_is_tightened(tmp_path: Path) -> None:
    d = tmp_path / "vspan"
    d.mkdir()
    os.chmod(d, 0o777)
    prepare_dir(str(d), None, managed=True)
    assert mode(d) == 0o700
    os.chmod(d, 0o755)
    prepare_dir(str(d), os.getegid(), managed=True)
    assert mode(d) == 0o710  # the group may traverse it, not list it


def test_someone_elses_directory_is_left_alone(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o755)
    prepare_dir(str(d), None)
    assert mode(d) == 0o755


def test_an_existing_file_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    path.write_text("not a socket", encoding="utf-8")
    with pytest.raises(SocketSetupError, match="cannot create"):
        bind_control_socket(str(path), managed_dir=None)
    assert path.read_text(encoding="utf-8") == "not a socket"
