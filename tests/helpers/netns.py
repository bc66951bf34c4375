"""Network namespaces and veth pairs for system tests.

Every name a test creates carries a unique prefix (``vt`` + 4 random hex
chars by default) so parallel runs and helpers never collide, and everything
is removed afterwards, even when the test fails. Interface names stay within
the kernel's 15 characters.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest


def is_root() -> bool:
    """Whether this process may create namespaces."""
    return os.geteuid() == 0


requires_root = pytest.mark.skipif(
    not is_root(), reason="needs root to create network namespaces and veth pairs"
)


def require_tools(*tools: str) -> None:
    """Skip the calling test when a command-line tool is missing."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)} (run scripts/setup.sh)")


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command, capture text output, raise with stderr on failure."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass
class Lab:
    """A set of namespaces and veth pairs that share one unique prefix."""

    prefix: str
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # root-namespace ends to delete

    def name(self, short: str) -> str:
        """A unique kernel name for ``short`` (at most 15 characters)."""
        full = f"{self.prefix}{short}"
        if len(full) > 15:
            raise ValueError(f"interface name {full!r} is longer than 15 characters")
        return full

    def netns(self, short: str) -> str:
        """Create a namespace with loopback up; return its name."""
        ns = self.name(short)
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def veth(
        self,
        short: str,
        ns: str | None = None,
        inner_name: str = "eth0",
        addr: str | None = None,
        mac: str | None = None,
        mtu: int | None = None,
    ) -> str:
        """Make a veth pair; put the far end in ``ns`` as ``inner_name`` with ``addr``.

        Returns the root-namespace end's name (what a switch port attaches to).
        """
        outer = self.name(short)
        tmp = self.name(short + "p")
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", tmp)
        self.links.append(outer)
        if ns is not None:
            sh("ip", "link", "set", tmp, "netns", ns)
            sh("ip", "-n", ns, "link", "set", tmp, "name", inner_name)
            if mac:
                sh("ip", "-n", ns, "link", "set", inner_name, "address", mac)
            if mtu:
                sh("ip", "-n", ns, "link", "set", inner_name, "mtu", str(mtu))
            if addr:
                sh("ip", "-n", ns, "addr", "add", addr, "dev", inner_name)
            sh("ip", "-n", ns, "link", "set", inner_name, "up")
            # no IPv6 DAD/RS noise unless a test wants it
            sh("ip", "netns", "exec", ns, "sysctl", "-qw",
               f"net.ipv6.conf.{inner_name}.disable_ipv6=1", check=False)
        if mtu:
            sh("ip", "link", "set", outer, "mtu", str(mtu))
        sh("sysctl", "-qw", f"net.ipv6.conf.{outer}.disable_ipv6=1", check=False)
        sh("ip", "link", "set", outer, "up")
        return outer

    def exec(self, ns: str, *args: str, check: bool = True,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command inside ``ns``."""
        return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)

    def popen(self, ns: str, *args: str, **kw: object) -> subprocess.Popen[str]:
        """Start a background command inside ``ns`` (text mode)."""
        return subprocess.Popen(["ip", "netns", "exec", ns, *args], text=True, **kw)  # type: ignore[call-overload, no-any-return]

    def wait_listening(self, ns: str, port: int, timeout: float = 20) -> None:
        """Wait until a TCP socket listens on ``port`` in ``ns`` (a server started with
        :meth:`popen`: its client must not connect before; a loaded machine takes its
        time, a fixed sleep guesses)."""
        deadline = time.monotonic() + timeout
        while not self.exec(ns, "ss", "-Hltn", f"sport = :{port}").stdout.strip():
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on tcp/{port} in {ns} after "
                                     f"{timeout} s")
            time.sleep(0.05)

    def cleanup(self) -> None:
        """Delete every namespace and link this lab made; ignore what is gone."""
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for ns in self.namespaces:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in pids.stdout.split():
                subprocess.run(["kill", "-9", pid], capture_output=True)
            gone = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
            if gone.returncode != 0 and os.path.exists(f"/run/netns/{ns}"):
                warnings.warn(f"namespace {ns} could not be removed: {gone.stderr.strip()}",
                              stacklevel=2)
        # anything else carrying our prefix (e.g. tap devices, renamed links)
        out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                name = parts[1].strip().split("@")[0]
                if name.startswith(self.prefix):
                    subprocess.run(["ip", "link", "del", name], capture_output=True)


@contextmanager
def lab(prefix: str | None = None) -> Iterator[Lab]:
    """A :class:`Lab` that is always cleaned up."""
    the_lab = Lab(prefix or f"vt{secrets.token_hex(2)}")
    try:
        yield the_lab
    finally:
        the_lab.cleanup()
