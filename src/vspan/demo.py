"""The seed scenario: Hyper-V-style port mirroring of columbia to pegasus/sniffie.

Namespaces ``columbia`` (192.168.2.122), ``crusader`` (192.168.2.32) and
``pegasus`` (192.168.2.50, plus a second vNIC ``sniffie``) hang off one vspan
switch. A mirror session copies columbia's traffic (both directions) to
sniffie; columbia pings crusader; tcpdump in pegasus on sniffie sees the echo
requests and replies. Everything made here is removed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Emit = Callable[[str], None]

HOSTS = {  # namespace -> (address, MAC)
    "columbia": ("192.168.2.122/24", "02:00:c0:a8:02:7a"),
    "crusader": ("192.168.2.32/24", "02:00:c0:a8:02:20"),
    "pegasus": ("192.168.2.50/24", "02:00:c0:a8:02:32"),
}
SNIFFIE_MAC = "02:00:00:5a:1f:f1"

CONFIG = """\
# the seed scenario: mirror columbia (both directions) to pegasus's vNIC "sniffie"
switch:
  name: {name}
  control_socket: {socket}
ports:
  columbia: {{interface: {p}columbia}}
  crusader: {{interface: {p}crusader}}
  pegasus:  {{interface: {p}pegasus}}
  sniffie:  {{interface: {p}sniffie}}
mirrors:
  columbia-to-sniffie:
    sources: [{{port: columbia, direction: both}}]
    destinations: [sniffie]
"""


class DemoError(Exception):
    """The demo cannot run here (not root, a tool missing, names taken)."""


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise DemoError(f"{' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


@dataclass
class SeedDemo:
    """Builds the topology, runs the scenario, and always cleans up."""

    emit: Emit
    prefix: str = "vsd-"  # root-side veth names
    vspan: list[str] = field(default_factory=lambda: [sys.executable, "-m", "vspan.cli.main"])
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    workdir: str = ""

    def check(self) -> None:
        """Refuse early with a clear reason."""
        if os.geteuid() != 0:
            raise DemoError("the demo needs root (it creates network namespaces)")
        missing = [t for t in ("ip", "ping", "tcpdump") if shutil.which(t) is None]
        if missing:
            raise DemoError(f"missing tools: {', '.join(missing)} (run scripts/setup.sh)")
        existing = _run("ip", "netns", "list").stdout.split()
        taken = [ns for ns in HOSTS if ns in existing]
        if taken:
            raise DemoError(f"namespaces already exist: {', '.join(taken)} "
                            f"(remove them with `ip netns del NAME`)")

    def _veth(self, ns: str, inner: str, outer: str, mac: str, addr: str | None) -> None:
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", outer + "x")
        self.links.append(outer)
        _run("ip", "link", "set", outer + "x", "netns", ns)
        _run("ip", "-n", ns, "link", "set", outer + "x", "name", inner)
        _run("ip", "-n", ns, "link", "set", inner, "address", mac)
        _run("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{inner}.disable_ipv6=1",
             check=False)
        if addr:
            _run("ip", "-n", ns, "addr", "add", addr, "dev", inner)
        _run("ip", "-n", ns, "link", "set", inner, "up")
        _run("sysctl", "-qw", f"net.ipv6.conf.{outer}.disable_ipv6=1", check=False)
        _run("ip", "link", "set", outer, "up")

    def build(self) -> None:
        """Namespaces and veth pairs."""
        for ns, (addr, mac) in HOSTS.items():
            _run("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            self._veth(ns, "eth0", f"{self.prefix}{ns}", mac, addr)
        self._veth("pegasus", "sniffie", f"{self.prefix}sniffie", SNIFFIE_MAC, None)
        self.emit("topology: namespaces columbia (192.168.2.122), crusader (192.168.2.32), "
                  "pegasus (192.168.2.50 + vNIC sniffie)")

    def cleanup(self) -> None:
        """Remove every namespace and link made here; ignore what is gone."""
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def vspan_cmd(self, sock: str, *args: str) -> str:
        """Run a vspan CLI command against the demo switch; return its output."""
        proc = subprocess.run([*self.vspan, *args, "--socket", sock], capture_output=True,
                              text=True, timeout=30)
        if proc.returncode != 0:
            raise DemoError(f"vspan {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def run(self) -> int:
        """The whole scenario; returns the number of ICMP lines tcpdump saw on sniffie."""
        self.check()
        self.workdir = tempfile.mkdtemp(prefix="vspan-demo-")
        sock = os.path.join(self.workdir, "switch.sock")
        cfg = os.path.join(self.workdir, "switch.yaml")
        switch = None
        dump = None
        try:
            self.build()
            with open(cfg, "w", encoding="utf-8") as fh:
                fh.write(CONFIG.format(name="seed", socket=sock, p=self.prefix))
            self.emit(f"config ({cfg}):")
            for line in CONFIG.format(name="seed", socket=sock, p=self.prefix).splitlines():
                self.emit("    " + line)
            log = open(os.path.join(self.workdir, "switch.log"), "w", encoding="utf-8")  # noqa: SIM115
            switch = subprocess.Popen([*self.vspan, "up", "-c", cfg], stdout=log, stderr=log)
            self._wait_for(sock, switch)
            self.emit("switch: `vspan up -c switch.yaml` running")
            dump_out = os.path.join(self.workdir, "tcpdump.txt")
            dump = subprocess.Popen(
                ["ip", "netns", "exec", "pegasus", "tcpdump", "-i", "sniffie", "-n", "-l",
                 "-e", "icmp"],
                stdout=open(dump_out, "w", encoding="utf-8"),  # noqa: SIM115
                stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # tcpdump attaches
            self.emit("columbia$ ping -c 4 192.168.2.32")
            ping = _run("ip", "netns", "exec", "columbia", "ping", "-c", "4", "-i", "0.2",
                        "-W", "2", "192.168.2.32", check=False)
            for line in ping.stdout.strip().splitlines():
                self.emit("    " + line)
            time.sleep(0.5)
            dump.terminate()
            dump.wait(timeout=5)
            with open(dump_out, encoding="utf-8") as fh:
                lines = [ln.rstrip() for ln in fh if "ICMP" in ln]
            self.emit("pegasus$ tcpdump -i sniffie -n -e icmp   (the mirror destination)")
            for line in lines:
                self.emit("    " + line)
            self.emit("$ vspan show mirrors")
            self._emit_block(self.vspan_cmd(sock, "show", "mirrors"))
            self.emit("$ vspan show counters")
            self._emit_block(self.vspan_cmd(sock, "show", "counters"))
            self.emit("$ vspan trace --in-port columbia ... (one echo request to crusader)")
            self._emit_block(self.vspan_cmd(
                sock, "trace", "--in-port", "columbia", "--src-mac", HOSTS["columbia"][1],
                "--dst-mac", HOSTS["crusader"][1], "--src-ip", "192.168.2.122",
                "--dst-ip", "192.168.2.32", "--proto", "icmp"))
            return len(lines)
        finally:
            if dump is not None and dump.poll() is None:
                dump.kill()
            if switch is not None:
                switch.terminate()
                try:
                    switch.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    switch.kill()
            self.cleanup()
            self.emit("cleanup: namespaces, veth pairs and the switch removed")

    def _emit_block(self, text: str) -> None:
        for line in text.rstrip().splitlines():
            self.emit("    " + line)

    def _wait_for(self, sock: str, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log = os.path.join(self.workdir, "switch.log")
                with open(log, encoding="utf-8") as fh:
                    raise DemoError(f"the switch exited: {fh.read().strip()}")
            if os.path.exists(sock):
                return
            time.sleep(0.1)
        raise DemoError("the switch did not come up within 20 s")
