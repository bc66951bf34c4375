"""A demo's topology: network namespaces joined by veth pairs, and the processes in them.

Every name a run creates starts with its own tag (``vdemo`` + 4 random hex digits),
so two demos (or a demo and a test run) never collide. Both ends of every veth
pair live in namespaces (VMs and hosts alike), so removing the namespaces
removes everything; :meth:`Lab.cleanup` also stops the processes the run
started and deletes any half-made link left in the root namespace.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vspan.demos.evidence import DemoError

PYTHON = sys.executable


@dataclass(frozen=True)
class Vm:
    """A VM: a namespace whose ``eth0`` is wired to interface ``port_if`` of a host."""

    name: str
    ns: str
    ip: str
    mac: str
    host_ns: str
    port_if: str


def run(argv: Sequence[str], ns: str | None = None, check: bool = True,
        timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a command (inside ``ns``), capture its text output; DemoError when it fails."""
    full = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise DemoError(f"{' '.join(argv)}: no answer within {timeout:.0f} s") from err
    if check and proc.returncode != 0:
        raise DemoError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


@dataclass
class Lab:
    """Namespaces, veth pairs and background processes of one demo run."""

    workdir: Path
    tag: str = field(default_factory=lambda: f"vdemo{secrets.token_hex(2)}")
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _pending: list[str] = field(default_factory=list)  # root-side links not moved yet
    _pairs: int = 0

    # ------------------------------------------------------------------ topology
    def netns(self, short: str) -> str:
        """Create namespace ``<tag>-<short>`` with loopback up; return its name."""
        ns = f"{self.tag}-{short}"
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def wire(self, a: tuple[str, str], b: tuple[str, str], *, mac_a: str | None = None,
             mac_b: str | None = None, addr_a: str | None = None, addr_b: str | None = None,
             mtu: int | None = None) -> None:
        """A veth pair from ``a = (namespace, ifname)`` to ``b``, both ends up, no IPv6."""
        self._pairs += 1
        end_a, end_b = f"{self.tag}{self._pairs}a", f"{self.tag}{self._pairs}b"
        run(["ip", "link", "add", end_a, "type", "veth", "peer", "name", end_b])
        self._pending.append(end_a)
        for end, (ns, ifname), mac, addr in ((end_a, a, mac_a, addr_a),
                                             (end_b, b, mac_b, addr_b)):
            run(["ip", "link", "set", end, "netns", ns])
            run(["ip", "-n", ns, "link", "set", end, "name", ifname])
            if mac:
                run(["ip", "-n", ns, "link", "set", ifname, "address", mac])
            if mtu:
                run(["ip", "-n", ns, "link", "set", ifname, "mtu", str(mtu)])
            if addr:
                run(["ip", "-n", ns, "addr", "add", addr, "dev", ifname])
            # no IPv6 router solicitations or DAD in the captures
            run(["sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1"], ns=ns,
                check=False)
            run(["ip", "-n", ns, "link", "set", ifname, "up"])
        self._pending.remove(end_a)

    def vm(self, host: str, name: str, ip: str, mac: str, prefix_len: int = 24,
           port_if: str | None = None) -> Vm:
        """A VM namespace ``name`` with ``eth0`` (``ip``/``prefix_len``, ``mac``) wired
        to interface ``port_if`` (default: ``name``) in the ``host`` namespace."""
        ns = self.netns(name)
        port_if = port_if or name
        self.wire((host, port_if), (ns, "eth0"), mac_b=mac, addr_b=f"{ip}/{prefix_len}")
        return Vm(name, ns, ip, mac, host, port_if)

    # ----------------------------------------------------------------- processes
    def spawn(self, argv: Sequence[str], ns: str | None = None, log: Path | None = None,
              stderr_pipe: bool = False) -> subprocess.Popen[bytes]:
        """Start a background process (inside ``ns``; ``ip netns exec`` execs it, so its
        pid is the process itself); stopped by :meth:`cleanup` at the latest."""
        full = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
        stderr = subprocess.PIPE if stderr_pipe else (
            subprocess.STDOUT if log else subprocess.DEVNULL)
        if log is None:
            proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                    stderr=stderr)
        else:
            with open(log, "wb") as out:  # the child keeps its own descriptor
                proc = subprocess.Popen(full, stdout=out, stdin=subprocess.DEVNULL,
                                        stderr=stderr)
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
             timeout: float = 10.0) -> str:
        """Send ``sig`` and wait (SIGKILL if it lingers); what it still wrote to a piped
        stderr."""
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        except ValueError:  # stderr already consumed and closed
            proc.wait()
            err = b""
        return (err or b"").decode(errors="replace")

    # ------------------------------------------------------------------- cleanup
    def cleanup(self) -> None:
        """Stop every process, delete every namespace and link of this run; never raises."""
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not
        try:                                                  # leave things behind
            for proc in reversed(self.procs):
                try:
                    self.stop(proc, timeout=5.0)
                except OSError:
                    pass
            for ns in reversed(self.namespaces):
                pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                                      text=True).stdout.split()
                for pid in pids:
                    subprocess.run(["kill", "-9", pid], capture_output=True)
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            for link in self._pending:
                subprocess.run(["ip", "link", "del", link], capture_output=True)
            out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
            for line in out.splitlines():
                parts = line.split(":")
                name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
                if name.startswith(self.tag):
                    subprocess.run(["ip", "link", "del", name], capture_output=True)
            shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, old)

    def leftovers(self) -> list[str]:
        """Namespaces and links of this run that still exist (empty after cleanup)."""
        names = run(["ip", "netns", "list"], check=False).stdout.split()
        links = run(["ip", "-o", "link"], check=False).stdout
        left = [n for n in names if n.startswith(self.tag)]
        left += [ln.split(":")[1].strip() for ln in links.splitlines()
                 if len(ln.split(":")) > 1 and ln.split(":")[1].strip().startswith(self.tag)]
        return left
