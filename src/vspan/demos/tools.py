"""The tools a user would run in a VM or on a console: tcpdump, tshark, ping, small scripts.

They are the independent witnesses of a demo: tcpdump and tshark decode what
really arrived on an interface, not what vspan believes it sent.
"""

from __future__ import annotations

import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vspan.demos.evidence import DemoError
from vspan.demos.lab import PYTHON, Lab, run


def require_tools(*tools: str) -> None:
    """DemoError naming the missing command-line tools."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise DemoError(f"missing tools: {', '.join(missing)} (run scripts/setup.sh)")


def read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bytes:
    """What ``proc`` wrote to its (piped) stderr until ``needle`` appeared, it closed the
    pipe, or ``timeout`` seconds passed."""
    assert proc.stderr is not None
    said = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and needle not in said:
        ready, _, _ = select.select([proc.stderr], [], [], 0.2)
        if ready:
            chunk = proc.stderr.read1(4096)  # type: ignore[attr-defined]
            if not chunk:
                break
            said += chunk
    return said


@dataclass
class Tcpdump:
    """tcpdump writing ``path`` on ``iface`` inside ``ns`` (``--immediate-mode``, so
    nothing waits in the kernel ring when it stops)."""

    lab: Lab
    ns: str
    iface: str
    path: Path
    capture_filter: str = ""
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Tcpdump:
        """Start and wait until tcpdump says it is listening."""
        argv = ["tcpdump", "-i", self.iface, "-n", "-U", "--immediate-mode", "-w",
                str(self.path)]
        if self.capture_filter:
            argv += self.capture_filter.split()
        self._proc = self.lab.spawn(argv, ns=self.ns, stderr_pipe=True)
        said = read_until(self._proc, b"listening on", 15.0)
        if b"listening on" not in said:
            text = said.decode(errors="replace").strip() or "it did not start"
            raise DemoError(f"tcpdump on {self.iface}: {text}")
        return self

    def stop(self, settle: float = 0.5) -> None:
        """Let copies in flight arrive, then stop tcpdump."""
        if self._proc is not None and self._proc.poll() is None:
            time.sleep(settle)
            self.lab.stop(self._proc, signal.SIGINT)

    def lines(self, display_filter: str = "", extra: Sequence[str] = ("-e",)) -> list[str]:
        """``tcpdump -r FILE -n [EXTRA] [FILTER]``: the decoded lines."""
        if not self.path.exists():
            return []
        argv = ["tcpdump", "-r", str(self.path), "-n", *extra]
        if display_filter:
            argv += display_filter.split()
        return [ln for ln in run(argv, check=False).stdout.splitlines() if ln.strip()]


def tshark(path: Path, display_filter: str, *options: str) -> list[str]:
    """``tshark -r FILE -Y FILTER [OPTIONS]``: its output lines."""
    proc = run(["tshark", "-r", str(path), "-Y", display_filter, *options], check=False)
    if proc.returncode != 0:
        raise DemoError(f"tshark -r {path.name} -Y '{display_filter}': {proc.stderr.strip()}")
    return [ln for ln in proc.stdout.splitlines() if ln.strip()]


def tshark_fields(path: Path, display_filter: str, *fields: str) -> list[list[str]]:
    """Rows of ``tshark -T fields`` (first occurrence of each field), split on ``|``."""
    opts = ["-T", "fields", "-E", "separator=|", "-E", "occurrence=f"]
    for f in fields:
        opts += ["-e", f]
    return [ln.split("|") for ln in tshark(path, display_filter, *opts)]


@dataclass(frozen=True)
class PingResult:
    """What ping printed and counted."""

    output: str
    transmitted: int
    received: int

    @property
    def ok(self) -> bool:
        """Every echo request answered."""
        return self.transmitted > 0 and self.received == self.transmitted


_STATS = re.compile(r"(\d+) packets transmitted, (\d+) received")


def ping(ns: str, ip: str, count: int = 4, interval: float = 0.2,
         wait: float = 1.0) -> PingResult:
    """``ping -c COUNT -i INTERVAL -W WAIT IP`` inside ``ns``."""
    proc = run(["ping", "-c", str(count), "-i", str(interval), "-W", str(wait), ip], ns=ns,
               check=False, timeout=count * (interval + wait) + 10)
    m = _STATS.search(proc.stdout)
    sent, got = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    return PingResult(proc.stdout.strip(), sent, got)


def ping_command(ip: str, count: int = 4) -> str:
    """How :func:`ping` is shown to the user."""
    return f"ping -c {count} {ip}"


def python(ns: str, code: str, *args: str, timeout: float = 60.0,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a small Python program inside ``ns``."""
    return run([PYTHON, "-c", code, *args], ns=ns, check=check, timeout=timeout)


def wait_listening(ns: str, port: int, timeout: float = 15.0) -> None:
    """Wait until something listens on TCP ``port`` inside ``ns``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run(["ss", "-Hltn", f"sport = :{port}"], ns=ns, check=False).stdout.strip():
            return
        time.sleep(0.1)
    raise DemoError(f"nothing listens on TCP port {port} in {ns}")
