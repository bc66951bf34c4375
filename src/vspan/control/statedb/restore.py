"""What ``vspan up`` starts with, and putting the learned MAC table back.

The saved state and the configuration file given with ``-c`` meet at start-up
(:func:`plan_start`):

* no saved state: the file seeds it;
* the file is as it was when last applied (compared as configurations, so comments
  and layout do not count): the saved state runs — the file plus the live changes;
* the file changed: it is taken exactly as ``vspan reload`` would take it, unless
  that would undo live changes; then the saved state runs and the notes say which
  changes stand in the way and how to take the file (``vspan reload --keep-live`` /
  ``--force``, or ``vspan up --reset-state``). Nothing is lost either way.

MAC ages are wall-clock ages: the time the switch was down counts, so an entry
that would have aged out meanwhile is not restored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vspan.config.diff import diff
from vspan.config.load import ConfigError, parse_config
from vspan.config.model import Config
from vspan.control.live import LiveChanges, config_data
from vspan.control.statedb.store import SavedConfig, SavedMac, StateError
from vspan.datapath.engine import Engine
from vspan.datapath.fdb import LearnResult


@dataclass
class StartPlan:
    """The configuration and live changes a switch starts with, and why."""

    config: Config
    live: LiveChanges
    how: str  # "new", "restored", "restored + file", "restored, file not taken"
    notes: list[str] = field(default_factory=list)
    # (path, file configuration) to record as the file last applied, once running
    source: tuple[str, Config] | None = None
    save: bool = False  # the state is to be written once the switch runs


def plan_start(saved: SavedConfig | None, file_cfg: Config, file_path: str,
               state_path: str) -> StartPlan:
    """Decide between the saved state and the configuration file (see the module text).

    StateError when the saved state cannot be read back into a configuration.
    """
    if saved is None:
        return StartPlan(file_cfg, LiveChanges(), "new",
                         [f"no saved state: starting from {file_path}"],
                         (file_path, file_cfg), True)
    try:
        running = parse_config(saved.running, f"{state_path} (saved configuration)")
        live = LiveChanges.from_data(saved.live)
    except ConfigError as err:
        raise StateError(state_path, "the saved configuration is not valid for this vspan: "
                         + "; ".join(err.errors)) from None
    except ValueError as err:
        raise StateError(state_path, f"damaged: {err}") from None
    file_data = config_data(file_cfg)
    n = len(live)
    kept = f" with {n} live change{'s' if n != 1 else ''}" if n else ""
    if saved.source_config == file_data:
        return StartPlan(running, live, "restored",
                         [f"restored the saved state{kept} ({file_path} unchanged)"])
    was = saved.source_path
    what = (f"{file_path} changed since it was last applied" if was in (None, file_path)
            else f"the configuration file is now {file_path} (was {was}) and differs")
    undone = live.undone_by(file_data)
    if not undone:
        changes = diff(running, file_cfg)
        notes = [f"{what}: taking it, as `vspan reload` would"]
        notes += [f"  {line}" for line in changes.summary()] or ["  (no change to the "
                                                                  "running configuration)"]
        return StartPlan(file_cfg, LiveChanges(), "restored + file", notes,
                         (file_path, file_cfg), True)
    notes = [f"{what}, but taking it would undo {len(undone)} live "
             f"change{'s' if len(undone) != 1 else ''}; running the saved state{kept}:"]
    notes += [f"  {ch.undo_text(file_data)}" for ch in undone]
    notes.append("  take the file with `vspan reload --keep-live` (live changes on top) or "
                 "`vspan reload --force` (undo them), or save the running configuration "
                 "into it with `vspan show config`")
    return StartPlan(running, live, "restored, file not taken", notes)


@dataclass
class FdbRestore:
    """How many saved MAC entries came back, and why the others did not."""

    restored: int = 0
    aged: int = 0  # older than the aging time (down time included)
    port_gone: int = 0  # their port is no longer configured
    not_member: int = 0  # their port is no longer in that VLAN
    port_down: int = 0  # their port's link is down
    refused: int = 0  # table full or the port's MAC limit reached
    saved_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"restored": self.restored, "aged": self.aged, "port_gone": self.port_gone,
                "not_member": self.not_member, "port_down": self.port_down,
                "refused": self.refused, "saved_at": self.saved_at}

    def text(self) -> str:
        """``restored 12 learned MACs (dropped: 2 aged, 1 port gone)``."""
        dropped = [f"{n} {why}" for n, why in (
            (self.aged, "aged"), (self.port_gone, "port gone"),
            (self.not_member, "port left the VLAN"), (self.port_down, "port down"),
            (self.refused, "table or port limit")) if n]
        return (f"restored {self.restored} learned MACs"
                + (f" (not restored: {', '.join(dropped)})" if dropped else ""))


def restore_fdb(engine: Engine, macs: list[SavedMac], saved_at: float | None,
                now: float) -> FdbRestore:
    """Learn the saved ``macs`` into a switch that does not forward yet.

    Each entry's age is its age at the save plus the time since (``now`` - ``saved_at``,
    never negative: a clock set back does not make entries younger); entries at or
    past the aging time, on ports that are gone, down or out of that VLAN, are left out.
    """
    out = FdbRestore(saved_at=saved_at)
    if not macs:
        return out
    state = engine.state
    fdb = state.fdb
    since = max(0.0, now - saved_at) if saved_at is not None else 0.0
    mono = engine.clock()
    learned: list[tuple[int, bytes]] = []
    for m in macs:
        age = max(0.0, m.age) + since
        idx = state.by_name.get(m.port)
        rt = state.ports.get(idx) if idx is not None else None
        if age >= fdb.aging_seconds:
            out.aged += 1
        elif rt is None or idx is None:
            out.port_gone += 1
        elif m.vlan not in rt.members:
            out.not_member += 1
        elif not rt.link:
            out.port_down += 1
        elif fdb.learn(m.vlan, m.mac, idx, mono - age,
                       rt.config.mac_limit) is LearnResult.NEW:
            out.restored += 1
            learned.append((m.vlan, m.mac))
        else:
            out.refused += 1
    engine.cache.mac_changed(learned)  # floods decided before (none: it does not forward yet)
    return out


def snapshot_fdb(engine: Engine) -> list[SavedMac]:
    """The learned MAC table with ages, ports by name (run it on the engine thread)."""
    state = engine.state
    names = state.port_names
    now = engine.clock()
    return [SavedMac(vlan, mac, names[e.port], max(0.0, now - e.last_seen))
            for (vlan, mac), e in state.fdb.entries.items()
            if not e.static and e.port in names]
