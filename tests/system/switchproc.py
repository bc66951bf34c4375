"""Run a real ``vspan up`` process for system tests and talk to it with the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers import accounting

VSPAN = [sys.executable, "-m", "vspan.cli.main"]


class SwitchProcess:
    """A switch daemon started from a YAML text; stopped by :meth:`stop`."""

    def __init__(self, workdir: Path, yaml_text: str, up_args: tuple[str, ...] = (),
                 switch_extra: str = "") -> None:
        self.workdir = workdir
        self.up_args = up_args  # extra `vspan up` options
        self.socket = str(workdir / "switch.sock")
        self.config = workdir / "switch.yaml"
        self.state_dir = workdir / "state"  # tokens, audit log, captures
        self.config.write_text(
            f"switch: {{name: t, control_socket: {self.socket}, state_dir: {self.state_dir}"
            f"{', ' + switch_extra if switch_extra else ''}}}\n"
            + yaml_text, encoding="utf-8")
        self.log = workdir / "switch.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until the control socket answers."""
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([*VSPAN, "up", "-c", str(self.config), *self.up_args],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vspan up exited: {self.log.read_text()}")
            if os.path.exists(self.socket) and self.answers():
                return
            time.sleep(0.1)
        raise RuntimeError(f"vspan up did not answer: {self.log.read_text()}")

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``vspan ARGS --socket S``."""
        proc = subprocess.run([*VSPAN, *args, "--socket", self.socket], capture_output=True,
                              text=True, timeout=30)
        if check and proc.returncode != 0:
            raise RuntimeError(f"vspan {' '.join(args)} failed: {proc.stderr}")
        return proc

    def inproc(self, *args: str) -> tuple[int, str, str]:
        """``vspan ARGS --socket S`` run in this process: (exit status, stdout, stderr).

        The same command code as :meth:`cli` without starting a Python interpreter
        (importing the CLI costs ~0.6 s of CPU a call, which a busy 2-core CI machine
        pays many times over); for the tests' own reads of the switch's state. A
        command's output as a user sees it is tested through :meth:`cli`. It swaps
        sys.stdout and sys.stderr while it runs: call it from the test's own thread."""
        from vspan.cli.main import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main([*args, "--socket", self.socket])
            except SystemExit as exc:  # argparse refusing the arguments
                rc = exc.code if isinstance(exc.code, int) else 2
        return rc, out.getvalue(), err.getvalue()

    def answers(self) -> bool:
        """Whether the control socket answers ``show ports``."""
        return self.inproc("show", "ports", "--json")[0] == 0

    def show(self, what: str) -> Any:
        """``vspan show WHAT --json`` decoded (run in this process: :meth:`inproc`)."""
        rc, out, err = self.inproc("show", what, "--json")
        if rc != 0:
            raise RuntimeError(f"vspan show {what} --json failed: {err}")
        return json.loads(out)

    def drops(self, reason: str, port: str | None = None) -> int:
        """Drops of ``reason`` (at ``port``) counted by the switch."""
        return sum(d["frames"] for d in self.show("counters")["drops"]
                   if d["reason"] == reason and (port is None or d["port"] == port))

    def kill(self) -> None:
        """SIGKILL, as a crash would (nothing is saved at the end)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def accounting(self) -> dict[str, Any] | None:
        """``vspan show accounting --json`` decoded (``None`` when the switch does not
        answer)."""
        _rc, out, _err = self.inproc("show", "accounting", "--json")
        try:
            return dict(json.loads(out))
        except ValueError:
            return None

    def stop(self, check: bool = True) -> None:
        """Check the accounting invariant (unless the test is already failing or
        ``check`` is false), then SIGTERM, then SIGKILL if it lingers; an
        :class:`AssertionError` names the ports whose frames do not add up."""
        if self.proc is None:
            return
        problems: list[str] = []
        if check and self.proc.poll() is None and not accounting.failing():
            problems = accounting.failures(self.accounting, f"switch {self.config}")
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        accounting.raise_if(problems)


@contextmanager
def running_switch(workdir: Path, yaml_text: str,
                   switch_extra: str = "") -> Iterator[SwitchProcess]:
    """A started switch, always stopped afterwards; ``switch_extra`` adds keys to its
    ``switch`` section (flow style: ``"poll: {mode: always}"``)."""
    sw = SwitchProcess(workdir, yaml_text, switch_extra=switch_extra)
    try:
        sw.start()
        yield sw
    finally:
        sw.stop()
