"""The ``vspan`` command: one sub-command group per module in ``vspan.cli``.

Each command module exposes ``register(subparsers)`` which adds its parser(s)
and sets ``func`` (``Callable[[argparse.Namespace], int]``) as the default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# modules providing register(subparsers); missing ones are skipped so the CLI
# keeps working while a command group is being built
COMMAND_MODULES = (
    "vspan.cli.config_cmd",
    "vspan.cli.daemon_cmd",
    "vspan.cli.show_cmd",
    "vspan.cli.mirror_cmd",
    "vspan.cli.trace_cmd",
    "vspan.cli.demo_cmd",
    "vspan.cli.policy_cmd",
    "vspan.cli.acl_cmd",
    "vspan.cli.firewall_cmd",
    "vspan.cli.capture_cmd",
    "vspan.cli.collect_cmd",
    "vspan.cli.follow_cmd",
    "vspan.cli.dedup_cmd",
    "vspan.cli.flows_cmd",
    "vspan.cli.dvs_cmd",
    "vspan.cli.agent_cmd",
    "vspan.cli.token_cmd",
    "vspan.cli.audit_cmd",
    "vspan.cli.vm_cmd",
    "vspan.cli.observe_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available command group."""
    parser = argparse.ArgumentParser(
        prog="vspan",
        description="vspan: a virtual switch that makes traffic in virtual networks visible",
    )
    parser.add_argument("--version", action="version", version="vspan 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vspan`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        rc: int = func(args)
    except KeyboardInterrupt:
        return 130
    return rc


if __name__ == "__main__":
    sys.exit(main())
