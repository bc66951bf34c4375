"""Assemble a switch from its parts: the datapath with the policy stage, mirror filters,
remote mirror senders — what the daemon, ``vspan trace -c`` and the tests run.

The datapath knows these parts only by their protocols
(:mod:`vspan.datapath.plugins`); this is the one place that names the
implementations.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vspan.capture.filter import PacketFilter
from vspan.capture.points import resolve
from vspan.capture.porttap import PortCapture
from vspan.config.model import Config, MirrorSession, PortConfig
from vspan.datapath.engine import BackendFactory, Engine
from vspan.datapath.pipeline import Pipeline
from vspan.datapath.state import SwitchState
from vspan.mirror.senders import ErspanSenders
from vspan.policy.build import SwitchPolicy
from vspan.policy.layer import PolicyLayer
from vspan.ports.base import Port, PortError


def open_capture(engine: Engine, points: list[str], path: str, capture_id: int,
                 direction: str = "both", drops: bool = False,
                 flt: PacketFilter | None = None, max_packets: int = 0, max_bytes: int = 0,
                 stop_at: float | None = None) -> PortCapture:
    """Start a ``vspan capture`` on ``engine``: the points (``PORT``, ``TEAM:MEMBER``,
    ``TEAM:*``) resolved, the pcapng file opened, the capture fed from now on (at most
    ``max_packets`` packets and ``max_bytes`` bytes; ``stop_at``, Unix time, is for the
    agent, which stops it). KeyError names a bad point; OSError when the file cannot be
    written."""
    st = engine.state
    teams = {rt.name: rt.config.team.members for rt in st.ports.values()
             if rt.config.team is not None}
    resolved = resolve(points, st.by_name, teams)
    cap = PortCapture(capture_id, path, resolved.ports, direction, drops, flt, max_packets,
                      max_bytes, stop_at, members=resolved.members,
                      descriptions=resolved.descriptions)
    engine.add_capture(cap)
    return cap


def build_engine(config: Config, backend_factory: BackendFactory,
                 clock: Callable[[], float] = time.monotonic,
                 remote: ErspanSenders | None = None) -> Engine:
    """A switch for ``config``, its ports not opened yet."""
    state = SwitchState(config)
    policy = PolicyLayer(config, state.port_names)
    pipeline = Pipeline(state, policy.ingress, policy.egress, clock)
    return Engine(state, pipeline, policy, backend_factory,
                  remote if remote is not None else ErspanSenders(), clock)


class _DrySender:
    """Stands for a remote mirror sender where nothing may be sent (an offline trace)."""

    def __init__(self) -> None:
        from vspan.mirror.encap import SenderCounters

        self.counters = SenderCounters()

    def send(self, frame: bytes, *, egress: bool = False, truncated: bool = False,
             ts_ns: int | None = None, vlan: int | None = None, cos: int = 0) -> bool:
        """Never sends."""
        return False

    def close(self) -> None:
        """Nothing to close."""


class DrySenders(ErspanSenders):
    """Remote mirrors for an offline trace: copies are predicted as sent, nothing opens."""

    def open(self, session: MirrorSession) -> _DrySender:  # type: ignore[override]
        """A sender that sends nothing."""
        return _DrySender()


def offline_engine(config: Config) -> Engine:
    """A switch for ``config`` whose ports are never opened: for tracing against a file."""

    def no_ports(name: str, cfg: PortConfig) -> Port:
        raise PortError(f"port {name}: an offline switch opens no ports")

    engine = build_engine(config, no_ports, remote=DrySenders())
    engine.mirror_out.sync_senders()
    return engine


def switch_policy(engine: Engine) -> SwitchPolicy:
    """The compiled policy (and its live state) of an engine :func:`build_engine` made."""
    layer = engine.policy
    assert isinstance(layer, PolicyLayer)
    return layer.policy
