"""``vspan demo``: the seed scenario end to end."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    """Add ``demo``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run the seed scenario (Hyper-V-style port mirroring) in namespaces")
    p.set_defaults(func=run)


def run(_args: argparse.Namespace) -> int:
    """Run it and print what happens."""
    from vspan.demo import DemoError, SeedDemo

    def emit(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    try:
        seen = SeedDemo(emit).run()
    except DemoError as err:
        sys.stderr.write(f"vspan demo: {err}\n")
        return 1
    if seen == 0:
        sys.stderr.write("vspan demo: tcpdump on sniffie saw no ICMP: mirroring failed\n")
        return 1
    emit(f"demo ok: tcpdump on pegasus/sniffie saw {seen} mirrored ICMP frames")
    return 0
