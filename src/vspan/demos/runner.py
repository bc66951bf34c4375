"""Run one demo: check it can run here, run it, clean up always, judge its evidence.

Exit status: 0 when every piece of evidence the demo printed was observed; 1
when some was not (or a step failed), with the reason; 2 when the demo cannot
run here (not root, a tool missing); 130/143 when interrupted by SIGINT/SIGTERM
(after removing everything it made).
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from types import FrameType

from vspan.demos.base import DemoContext, DemoSpec
from vspan.demos.evidence import DemoError, Evidence
from vspan.demos.lab import Lab
from vspan.demos.narrate import Narrator, Write
from vspan.demos.tools import require_tools


class Terminated(BaseException):
    """SIGTERM arrived: unwind (cleaning up) like Ctrl-C does."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def preflight(spec: DemoSpec) -> None:
    """DemoError when ``spec`` cannot run on this machine."""
    if os.geteuid() != 0:
        raise DemoError("the demos need root (they create network namespaces)")
    require_tools("ip", *spec.tools)


def run_demo(spec: DemoSpec, write: Write, error: Write) -> int:
    """Run ``spec``; narration goes to ``write``, failures to ``error``; the exit status."""
    try:
        preflight(spec)
    except DemoError as err:
        error(f"vspan demo {spec.name}: {err}")
        return 2
    say = Narrator(write)
    lab = Lab(Path(tempfile.mkdtemp(prefix=f"vspan-demo-{spec.name}-")))
    evidence = Evidence()
    failure: str | None = None
    status: int | None = None
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        say.title(f"{spec.number}. {spec.title} (field story {spec.seed})")
        say.say(f"(this run's namespaces are called {lab.tag}-NAME, its files are in "
                f"{lab.workdir}; all are removed at the end)")
        spec.run(DemoContext(lab, say, evidence))
    except DemoError as err:
        failure = str(err)
    except KeyboardInterrupt:
        status = 130
    except Terminated:
        status = 143
    finally:
        lab.cleanup()
        signal.signal(signal.SIGTERM, old)
        left = lab.leftovers()
        if left:
            error(f"vspan demo {spec.name}: could not remove {', '.join(left)}")
        else:
            write("")
            write("cleanup: the namespaces, veth pairs, switches and files of this run are "
                  "removed")
    if status is not None:
        error(f"vspan demo {spec.name}: interrupted; everything it made is removed")
        return status
    if failure is not None:
        error(f"vspan demo {spec.name}: failed: {failure}")
        return 1
    if not evidence.ok:
        for line in evidence.missing or ["the demo observed nothing"]:
            error(f"vspan demo {spec.name}: NOT OBSERVED: {line}")
        return 1
    write(f"demo ok: {spec.name}")
    for line in evidence.seen:
        write(f"  observed: {line}")
    return 0
