"""A real ``vspan up`` whose API also listens on TCP (loopback), with tokens per role and
the switch's audit log at hand; and a way to call its control socket as another user."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.system.switchproc import SwitchProcess

SYSTEM_PYTHON = "/usr/bin/python3"

# run as another user: one HTTP/1.0 request on the control socket; print the status code and
# the body (or "refused ERRNO" when the kernel refuses the connection)
UNIX_REQUEST = r"""
import json, socket, sys
path, method, target, body = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].encode()
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(path)
except OSError as e:
    print(json.dumps({"status": 0, "errno": e.errno}))
    sys.exit(0)
head = (f"{method} {target} HTTP/1.0\r\nHost: vspan\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n").encode()
s.sendall(head + body)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
status = int(data.split(b"\r\n", 1)[0].split()[1])
payload = data.split(b"\r\n\r\n", 1)[1]
print(json.dumps({"status": status, "body": json.loads(payload) if payload else None}))
"""


def free_port() -> int:
    """A TCP port nobody listens on right now (on 127.0.0.1)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ApiSwitch(SwitchProcess):
    """A switch with ``--listen 127.0.0.1:PORT`` (``tls``: (cert, key) for https)."""

    def __init__(self, workdir: Path, yaml_text: str, up_args: tuple[str, ...] = (),
                 tls: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        tls_args: tuple[str, ...] = ()
        if tls is not None:
            tls_args = ("--tls-cert", str(tls[0]), "--tls-key", str(tls[1]))
        super().__init__(workdir, yaml_text,
                         ("--listen", f"127.0.0.1:{self.port}", *tls_args, *up_args))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.cacert = str(tls[0]) if tls else None

    def start(self) -> None:
        """Start; wait for the control socket and then for the TCP listener."""
        super().start()
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no TCP listener: {self.log.read_text()}") from None
                time.sleep(0.1)

    def token(self, name: str, role: str, *extra: str) -> str:
        """``vspan token create NAME --role ROLE`` as root on the control socket (run in
        this process: :meth:`SwitchProcess.inproc`)."""
        rc, out, err = self.inproc("token", "create", name, "--role", role, *extra)
        assert rc == 0, err
        out = out.strip()
        assert out.startswith("vspan_"), out
        return out

    def show_tokens(self) -> list[dict[str, Any]]:
        """``vspan token list --json`` (run in this process)."""
        rc, out, err = self.inproc("token", "list", "--json")
        assert rc == 0, err
        rows: list[dict[str, Any]] = json.loads(out)
        return rows

    def client(self, token: str | None) -> httpx.Client:
        """An HTTP client for the TCP API with ``token`` as bearer (None: no header)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30,
                            verify=self.cacert or True)

    @property
    def audit_path(self) -> Path:
        """The switch's audit log."""
        return self.state_dir / "audit.jsonl"

    def audit(self) -> list[dict[str, Any]]:
        """Every audit entry so far."""
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]

    def as_user(self, user: str, method: str, target: str, body: Any = None,
                groups: tuple[str, ...] = ()) -> dict[str, Any]:
        """One request on the control socket made by ``user`` (with supplementary
        ``groups``): ``{"status": ..., "body": ...}``."""
        cmd = ["runuser", "-u", user]
        for g in groups:
            cmd += ["-G", g]
        payload = "" if body is None else json.dumps(body)
        proc = subprocess.run([*cmd, "--", SYSTEM_PYTHON, "-c", UNIX_REQUEST, self.socket,
                               method, target, payload],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result


@contextmanager
def api_switch(prefix: str, yaml_text: str) -> Iterator[ApiSwitch]:
    """A started :class:`ApiSwitch` in a fresh directory; stopped and removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    sw = ApiSwitch(d, yaml_text)
    try:
        sw.start()
        yield sw
    finally:
        sw.stop()
        shutil.rmtree(d, ignore_errors=True)
