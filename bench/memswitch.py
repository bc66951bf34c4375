"""An in-process switch on memory ports for the in-process benchmarks (bench_churn,
bench_observe): built as the daemon builds it, with given MACs learned."""

from __future__ import annotations

from collections.abc import Mapping

from vspan.config.load import load_text
from vspan.config.model import PortConfig
from vspan.control.assemble import build_engine
from vspan.datapath.engine import Engine
from vspan.packet.build import udp_frame
from vspan.ports.base import Frame, Port
from vspan.ports.memory import MemoryPort


def memory_switch(config: str, macs: Mapping[str, str]) -> tuple[Engine, dict[str, MemoryPort]]:
    """The switch ``config`` (YAML) describes, every port a memory port, each port in
    ``macs`` having sent one broadcast from its MAC (so the switch learned it); the ports'
    output queues are emptied before returning."""
    ports: dict[str, MemoryPort] = {}

    def factory(name: str, pc: PortConfig) -> Port:
        ports[name] = MemoryPort(name)
        return ports[name]

    engine = build_engine(load_text(config), factory)
    engine.open()
    for p, mac in macs.items():
        engine.process(engine.state.by_name[p],
                       [Frame(udp_frame(mac, "ff:ff:ff:ff:ff:ff", "10.0.0.1", "10.0.0.2", 1, 2,
                                        b"x"))])
    for port in ports.values():
        port.take()
    return engine, ports
