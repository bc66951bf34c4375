"""A private etcd for tests: its own data dir, random free ports, revision-based
auto-compaction as docs/dvs.md advises (keeps the last 10000 revisions, checked every 5
minutes: a test's own compactions and watches from old revisions are not disturbed).

``etcd_server()`` starts Debian's ``etcd`` (package ``etcd-server``) on loopback or,
with ``netns``/``host``, inside a test namespace on one of its addresses; it is
killed and its data dir removed afterwards. :meth:`EtcdServer.stop` and
:meth:`EtcdServer.start` stop and restart it on the same ports and data (outage tests).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (on loopback)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def require_etcd() -> str:
    """The etcd binary, or skip the test."""
    path = shutil.which("etcd")
    if path is None:
        pytest.skip("etcd is not installed (Debian package etcd-server; scripts/install-system.sh)")
    return path


class EtcdServer:
    """One etcd member with a private data dir."""

    def __init__(self, datadir: Path, host: str = "127.0.0.1", netns: str | None = None,
                 client_port: int | None = None, peer_port: int | None = None,
                 max_txn_ops: int = 128) -> None:
        self.binary = require_etcd()
        self.datadir = datadir
        self.host = host
        self.netns = netns
        # inside a fresh namespace every port is free
        self.client_port = client_port or (2379 if netns else free_port())
        self.peer_port = peer_port or (2380 if netns else free_port())
        self.url = f"http://{host}:{self.client_port}"
        self.log = datadir.parent / f"{datadir.name}.log"
        self.max_txn_ops = max_txn_ops  # etcd's default is 128
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        """The etcd command line."""
        peer = f"http://{self.host}:{self.peer_port}"
        cmd = [self.binary, "--name", "vspan-test", "--data-dir", str(self.datadir),
               "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", f"vspan-test={peer}",
               # as docs/dvs.md advises: history does not grow for ever
               "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000",
               # a whole switch is one transaction: room for big ones (benchmarks)
               "--max-txn-ops", str(self.max_txn_ops),
               "--log-level", "warn", "--logger", "zap"]
        return ["ip", "netns", "exec", self.netns, *cmd] if self.netns else cmd

    def start(self, timeout: float = 20.0) -> None:
        """Start (or restart) and wait until it answers."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited: {self.log.read_text()[-2000:]}")
            if self.healthy():
                return
            time.sleep(0.1)
        raise RuntimeError(f"etcd did not answer: {self.log.read_text()[-2000:]}")

    def healthy(self) -> bool:
        """Whether etcd answers on its client URL."""
        args = ["curl", "-sf", "-m", "1", f"{self.url}/health"]
        if self.netns:
            return subprocess.run(["ip", "netns", "exec", self.netns, *args],
                                  capture_output=True).returncode == 0
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Kill etcd (SIGKILL: an outage, not a clean shutdown); data stays."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@contextmanager
def etcd_server(host: str = "127.0.0.1", netns: str | None = None) -> Iterator[EtcdServer]:
    """A running private etcd, always killed and removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="vspan-etcd-"))
    server = EtcdServer(tmp / "data", host=host, netns=netns)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        with suppress(OSError):
            shutil.rmtree(tmp)
