"""A vspan switch of a demo: ``vspan up`` inside a host namespace, and the CLI against it.

The CLI commands a demo shows (``vspan show counters``, ``vspan trace ...``)
run through :func:`vspan.cli.main.main` in this process, exactly as typed but
without starting a new interpreter each time (the demos stay fast on a busy
machine); long-running commands (``vspan up``, ``vspan capture``, ``vspan
collect``) are real processes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vspan.demos.evidence import DemoError
from vspan.demos.lab import PYTHON, Lab

VSPAN = (PYTHON, "-m", "vspan.cli.main")


def vspan_inline(args: list[str]) -> tuple[int, str, str]:
    """Run ``vspan ARGS`` in this process: (exit status, stdout, stderr)."""
    from vspan.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except SystemExit as exc:  # argparse errors
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, out.getvalue(), err.getvalue()


@dataclass
class DemoSwitch:
    """One switch: its configuration file, control socket and ``vspan up`` process."""

    lab: Lab
    host_ns: str
    name: str
    body: str  # the configuration without the ``switch:`` section
    config: Path = field(init=False)
    socket: str = field(init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.config = self.lab.workdir / f"{self.name}.yaml"
        self.socket = str(self.lab.workdir / f"{self.name}.sock")
        self.write_config(self.body)

    def text(self, body: str | None = None) -> str:
        """The whole configuration file for ``body`` (default: the current one)."""
        state = self.lab.workdir / f"{self.name}.state"  # every run starts afresh
        return (f"switch: {{name: {self.name}, control_socket: {self.socket}, "
                f"state_dir: {state}}}\n"
                + (self.body if body is None else body))

    def write_config(self, body: str) -> None:
        """Write the configuration file (``vspan reload`` picks it up)."""
        self.body = body
        self.config.write_text(self.text(), encoding="utf-8")

    def start(self, timeout: float = 30.0) -> None:
        """``vspan up -c FILE`` in the host namespace; wait until the socket answers."""
        log = self.lab.workdir / f"{self.name}.log"
        proc = self._proc = self.lab.spawn([*VSPAN, "up", "-c", str(self.config)],
                                           ns=self.host_ns, log=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DemoError(f"switch {self.name} exited: "
                                f"{log.read_text(encoding='utf-8').strip()[-2000:]}")
            if os.path.exists(self.socket) and self.call("show", "ports", "--json")[0] == 0:
                return
            time.sleep(0.1)
        raise DemoError(f"switch {self.name} did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop ``vspan up`` (the lab's cleanup does it too)."""
        if self._proc is not None:
            self.lab.stop(self._proc)

    def call(self, *args: str) -> tuple[int, str, str]:
        """``vspan ARGS --socket SOCKET``: (exit status, stdout, stderr)."""
        return vspan_inline([*args, "--socket", self.socket])

    def cli(self, *args: str) -> str:
        """``vspan ARGS`` against this switch; its output (DemoError when it fails)."""
        rc, out, err = self.call(*args)
        if rc != 0:
            raise DemoError(f"vspan {' '.join(args)}: {err.strip() or out.strip()}")
        return out

    def show(self, what: str) -> Any:
        """``vspan show WHAT --json``, decoded."""
        return json.loads(self.cli("show", what, "--json"))

    def drops(self) -> dict[tuple[str, str, str], int]:
        """Drops counted by the switch: (port, reason, rule or "") -> frames."""
        return {(d["port"], d["reason"], d.get("rule") or ""): int(d["frames"])
                for d in self.show("counters")["drops"]}

    def mirrors(self) -> dict[str, dict[str, Any]]:
        """``vspan show mirrors`` by session name."""
        return {m["name"]: m for m in self.show("mirrors")}

    def capture_argv(self, *args: str) -> list[str]:
        """The argv of ``vspan capture ARGS`` against this switch (a real process)."""
        return [*VSPAN, "capture", *args, "--socket", self.socket]


def shown(args: list[str]) -> str:
    """A command line as the user would type it (no --socket)."""
    return " ".join(("'" + a + "'") if (" " in a or not a) else a for a in ["vspan", *args])

