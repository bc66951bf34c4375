"""What a demo is (:class:`DemoSpec`) and what it gets to work with (:class:`DemoContext`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vspan.demos.evidence import Evidence
from vspan.demos.lab import Lab
from vspan.demos.narrate import Narrator
from vspan.demos.switch import DemoSwitch
from vspan.demos.tools import Tcpdump


@dataclass
class DemoContext:
    """The lab, the narrator and the evidence of one run."""

    lab: Lab
    say: Narrator
    evidence: Evidence

    def switch(self, host_ns: str, name: str, body: str) -> DemoSwitch:
        """Start switch ``name`` (``vspan up``) in ``host_ns`` with configuration ``body``."""
        sw = DemoSwitch(self.lab, host_ns, name, body)
        sw.start()
        return sw

    def switches(self, *specs: tuple[str, str, str]) -> list[DemoSwitch]:
        """Show each switch's configuration file (``NAME.yaml``), then start them in order
        (``specs``: host namespace, switch name, configuration body) and show the ``vspan
        up`` commands; the switches in the same order."""
        for _ns, name, body in specs:
            self.say.say(f"{name}'s switch ({name}.yaml):")
            self.say.block(body)
        started = [self.switch(ns, name, body) for ns, name, body in specs]
        for sw in started:
            self.say.command(sw.name, f"vspan up -c {sw.name}.yaml")
        return started

    def tcpdump(self, ns: str, iface: str, name: str, capture_filter: str = "") -> Tcpdump:
        """A started tcpdump on ``iface`` in ``ns`` writing ``<workdir>/<name>.pcap``."""
        return Tcpdump(self.lab, ns, iface, self.path(f"{name}.pcap"), capture_filter).start()

    def path(self, name: str) -> Path:
        """A file in the run's working directory (removed at the end)."""
        return self.lab.workdir / name


@dataclass(frozen=True)
class DemoSpec:
    """One field story as a runnable demo."""

    name: str  # the subcommand: vspan demo NAME
    number: int  # the story's number in issue 13
    seed: str  # the field story it tells (../shared/seeds/NNN_*.txt)
    title: str
    summary: str  # one line for --list
    tools: tuple[str, ...]  # command-line tools it needs besides ip
    run: Callable[[DemoContext], None]
