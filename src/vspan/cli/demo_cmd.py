"""``vspan demo [NAME] [--list]``: the field stories, run end to end in namespaces."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vspan.demos import DEFAULT, DEMOS, find


def register(sub: Any) -> None:
    """Add ``demo`` with one subcommand per demo."""
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="run a field story end to end in network namespaces (--list)",
        description="Each demo builds its topology in network namespaces, does what its field "
                    "story does, prints the evidence, explains it and removes everything it "
                    f"made. Without a name: the '{DEFAULT}' demo. Exit status 0 only when the "
                    "evidence was observed (1: not observed or a step failed; 2: cannot run "
                    "here, e.g. not root).")
    p.add_argument("--list", action="store_true", help="list the demos")
    names = p.add_subparsers(dest="demo", metavar="NAME")
    for spec in DEMOS:
        names.add_parser(spec.name, help=f"{spec.number}. {spec.title} (story {spec.seed})",
                         description=spec.summary)
    p.set_defaults(func=run)


def list_demos() -> str:
    """The ``--list`` text."""
    width = max(len(s.name) for s in DEMOS)
    lines = [f"{s.name:{width}}  {s.number}. {s.title} (story {s.seed}): {s.summary}"
             for s in DEMOS]
    return "\n".join(lines) + f"\n\n`vspan demo` alone runs '{DEFAULT}'.\n"


def run(args: argparse.Namespace) -> int:
    """List the demos, or run one and print what happens."""
    from vspan.demos.runner import run_demo

    if args.list:
        sys.stdout.write(list_demos())
        return 0

    def out(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def err(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return run_demo(find(args.demo or DEFAULT), out, err)
