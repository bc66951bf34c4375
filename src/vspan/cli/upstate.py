"""``vspan up``'s side of the state file: open it (or say why not), build the agent from
what it holds, report what was restored."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vspan.config.load import ConfigError, load_file

if TYPE_CHECKING:
    from vspan.control.agent import Agent
    from vspan.control.statedb.keeper import StateKeeper


def add_state_args(p: argparse.ArgumentParser) -> None:
    """``--state-dir`` and ``--reset-state``."""
    p.add_argument("--state-dir", metavar="DIR", default=None,
                   help="where the switch keeps its state (state.db: configuration, live "
                        "changes, learned MACs), tokens, audit log and captures (default: "
                        "switch.state_dir or /var/lib/vspan/<name>)")
    p.add_argument("--reset-state", action="store_true",
                   help="start afresh from the configuration file: the old state file is "
                        "moved aside (kept as state.db.old-<time>), not deleted")


def load_switch(args: argparse.Namespace) -> tuple[Agent, StateKeeper] | None:
    """The agent of ``vspan up -c FILE`` with its saved state; None after saying why not."""
    from vspan.control.agent import Agent
    from vspan.control.statedb.keeper import StateKeeper
    from vspan.control.statedb.startup import open_state
    from vspan.control.statedb.store import StateError
    from vspan.ports.factory import open_backend

    try:
        file_cfg = load_file(args.config)
    except ConfigError as err:
        for line in err.errors:
            sys.stderr.write(f"{err.source}: {line}\n")
        return None
    path = str(Path(args.config).resolve())
    try:
        startup = open_state(file_cfg, path, args.state_dir, args.reset_state)
    except StateError as err:
        sys.stderr.write(f"vspan: {err}\nvspan: {err.remedy}\n")
        return None
    for backup in startup.store.backups:
        sys.stderr.write(f"vspan: --reset-state: the old state is kept as {backup}\n")
    agent = Agent(startup.plan.config, open_backend, path)
    agent.live = startup.plan.live
    keeper = StateKeeper(startup.store, agent.engine, startup.plan)
    agent.keeper = keeper
    return agent, keeper


def report_restored(keeper: StateKeeper) -> None:
    """Tell the admin what the start made of the saved state."""
    sys.stderr.write(f"vspan: state file {keeper.store.path}\n")
    for line in keeper.notes():
        sys.stderr.write(f"vspan: {line}\n")
