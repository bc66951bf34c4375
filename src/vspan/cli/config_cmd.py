"""``vspan check-config FILE``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vspan.config.load import ConfigError, load_file


def register(sub: Any) -> None:
    """Add the check-config command."""
    p: argparse.ArgumentParser = sub.add_parser(
        "check-config", help="validate a switch configuration file"
    )
    p.add_argument("file", help="YAML configuration file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate the file; print every error with its path."""
    try:
        cfg = load_file(args.file)
    except ConfigError as err:
        for line in err.errors:
            sys.stderr.write(f"{err.source}: {line}\n")
        return 1
    sys.stdout.write(
        f"{args.file}: ok ({len(cfg.ports)} ports, {len(cfg.mirrors)} mirror sessions)\n"
    )
    return 0
