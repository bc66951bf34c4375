"""Opening a switch's state for ``vspan up``: the file, and the plan to start with."""

from __future__ import annotations

from dataclasses import dataclass

from vspan.config.model import Config
from vspan.control.statedb.restore import StartPlan, plan_start
from vspan.control.statedb.store import StateStore, state_file


@dataclass
class Startup:
    """An open state file and what the switch starts with."""

    store: StateStore
    plan: StartPlan


def open_state(file_cfg: Config, file_path: str, state_dir: str | None = None,
               reset: bool = False) -> Startup:
    """Open (with ``reset``: first move aside) the state file of the switch that
    ``file_cfg`` (read from ``file_path``) describes, in ``state_dir`` or the
    configuration's ``switch.state_dir``, and plan the start.

    StateError (after closing the file) when the state cannot be used.
    """
    path = state_file(state_dir or file_cfg.switch.state_path())
    store = StateStore(path, file_cfg.switch.name, reset)
    try:
        plan = plan_start(store.load_config(), file_cfg, file_path, path)
    except BaseException:
        store.close()
        raise
    return Startup(store, plan)
