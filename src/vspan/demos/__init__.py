"""The field stories (../shared/seeds/) as runnable demos: ``vspan demo NAME``.

Each demo module builds its topology in network namespaces, does what its story
does, prints the evidence the story's author looked at, explains it, and removes
everything it made; it succeeds only when that evidence was observed. The shared
pieces: :mod:`.lab` (namespaces, veths, processes, cleanup), :mod:`.switch`
(``vspan up`` and the CLI), :mod:`.tools` (tcpdump, tshark, ping), :mod:`.narrate`,
:mod:`.evidence`, :mod:`.runner`.
"""

from __future__ import annotations

from vspan.demos import erspan, firewall, lbfo, metro, mirror, rspan, troubleshoot
from vspan.demos.base import DemoSpec

DEMOS: tuple[DemoSpec, ...] = (mirror.DEMO, rspan.DEMO, erspan.DEMO, firewall.DEMO,
                               lbfo.DEMO, troubleshoot.DEMO, metro.DEMO)
DEFAULT = "mirror"  # `vspan demo` without a name (the README's and scripts/demo.sh's demo)


def find(name: str) -> DemoSpec:
    """The demo called ``name`` (KeyError when there is none)."""
    for spec in DEMOS:
        if spec.name == name:
            return spec
    raise KeyError(name)
