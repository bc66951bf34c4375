"""The control socket is owner-only (0600) by default; `--socket-group` / `switch.
control_socket_group` lets one group in (0660). An unprivileged user (`nobody`) is refused by
the kernel at connect(); a member of the socket group gets through."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.netns import is_root, require_tools
from tests.system.switchproc import VSPAN, SwitchProcess

pytestmark = pytest.mark.system

# connect as whoever runs it; print the HTTP status line, or "refused <errno>"
CONNECT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("refused", e.errno)
    sys.exit(0)
s.sendall(b"POST /mirrors/spy HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Content-Length: 2\r\n\r\n{}")
print(s.recv(200).split(b"\r\n")[0].decode())
"""
SYSTEM_PYTHON = "/usr/bin/python3"


def connect_as(user: str, path: str, groups: tuple[str, ...] = ()) -> str:
    """Try the socket as ``user`` (with supplementary ``groups``); return what happened."""
    cmd = ["runuser", "-u", user]
    for g in groups:
        cmd += ["-G", g]
    proc = subprocess.run([*cmd, "--", SYSTEM_PYTHON, "-c", CONNECT, path],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A directory anyone may traverse (not list): the socket's own mode must protect it."""
    if not is_root():
        pytest.skip("needs root to run a switch and to act as another user")
    require_tools("runuser")
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"needs {SYSTEM_PYTHON} to connect as another user")
    d = Path(tempfile.mkdtemp(prefix="fc-vspan-sock-"))
    os.chmod(d, 0o711)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def group() -> Iterator[str]:
    """A throw-away group (removed afterwards)."""
    require_tools("groupadd", "groupdel")
    name = f"fcvs{secrets.token_hex(3)}"
    subprocess.run(["groupadd", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], capture_output=True)


def switch_in(d: Path, switch_extra: str = "", up_args: tuple[str, ...] = ()) -> SwitchProcess:
    """A switch whose control socket lives in ``d/run/`` (a directory vspan creates)."""
    sw = SwitchProcess(d, "", up_args)
    sw.socket = str(d / "run" / "t.sock")
    sw.config.write_text(f"switch: {{name: t, control_socket: {sw.socket}, "
                         f"state_dir: {sw.state_dir}{switch_extra}}}\n"
                         "ports: {m: {type: memory}}\n", encoding="utf-8")
    return sw


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_socket_is_owner_only_and_nobody_is_refused(sock_dir: Path) -> None:
    sw = switch_in(sock_dir)
    sw.start()
    try:
        run_mode = mode(sock_dir / "run")
        # open the directory so that only the socket's own mode stands in the way
        os.chmod(sock_dir / "run", 0o711)
        assert connect_as("nobody", sw.socket) == "refused 13"  # EACCES from the kernel
        st = os.stat(sw.socket)
        assert stat.S_ISSOCK(st.st_mode) and mode(sw.socket) == 0o600
        assert st.st_uid == os.geteuid()
        assert run_mode == 0o700  # the directory vspan made is owner-only too
        assert sw.show("mirrors") == []  # nobody created no session
        assert "spy" not in sw.show("config")["mirrors"]
        # the owner is served
        assert sw.cli("show", "ports").returncode == 0
    finally:
        sw.stop()


def test_socket_group_lets_members_in(sock_dir: Path, group: str) -> None:
    sw = switch_in(sock_dir, up_args=("--socket-group", group))
    sw.start()
    try:
        st = os.stat(sw.socket)
        gid = int(subprocess.run(["getent", "group", group], capture_output=True, text=True,
                                 check=True).stdout.split(":")[2])
        assert mode(sw.socket) == 0o660 and st.st_gid == gid
        run = os.stat(sock_dir / "run")
        assert mode(sock_dir / "run") == 0o710 and run.st_gid == gid
        assert connect_as("nobody", sw.socket) == "refused 13"
        # a member of the group reaches the API, but without a role (switch.roles) it may
        # not change anything: refused by the API, not by the kernel
        assert connect_as("nobody", sw.socket, (group,)).startswith("HTTP/1.1 403")
    finally:
        sw.stop()


def test_socket_group_from_the_config(sock_dir: Path, group: str) -> None:
    sw = switch_in(sock_dir, switch_extra=f", control_socket_group: {group}, "
                   f"roles: {{groups: {{{group}: mirror-admin}}}}")
    sw.start()
    try:
        assert mode(sw.socket) == 0o660
        # a mirror-admin member reaches the handler (the empty mirror spec is refused by it)
        assert connect_as("nobody", sw.socket, (group,)).startswith("HTTP/1.1 422")
    finally:
        sw.stop()


def test_unknown_socket_group_is_an_error(sock_dir: Path) -> None:
    sw = switch_in(sock_dir, up_args=("--socket-group", "fc-no-such-group-x"))
    proc = subprocess.run([*VSPAN, "up", "-c", str(sw.config), *sw.up_args],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "no group named 'fc-no-such-group-x'" in proc.stderr
    assert not os.path.exists(sw.socket)


def test_metrics_over_tcp_is_read_only(sock_dir: Path) -> None:
    import socket
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sw = switch_in(sock_dir, up_args=("--metrics", f"127.0.0.1:{port}"))
    sw.start()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                resp = httpx.get(f"{base}/metrics", timeout=5)
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert resp.status_code == 200 and "vspan_port_rx_frames" in resp.text
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200
        # nothing that changes the switch or shows its configuration is served over TCP
        assert httpx.post(f"{base}/mirrors/spy", json={"sources": ["m"]},
                          timeout=5).status_code == 404
        assert httpx.get(f"{base}/config", timeout=5).status_code == 404
        assert sw.show("mirrors") == []
    finally:
        sw.stop()
