"""A switch on memory ports, driven synchronously, for pipeline tests."""

from __future__ import annotations

from dataclasses import dataclass

from vspan.config.load import load_text
from vspan.config.model import PortConfig
from vspan.control.assemble import build_engine
from vspan.datapath.engine import Engine
from vspan.ports.base import Frame, Port
from vspan.ports.memory import MemoryPort

#: the switches made by the running test, checked for the accounting invariant after it
#: (tests/pipeline/conftest.py)
MADE: list[Switch] = []


class FakeClock:
    """An injected clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Switch:
    """An engine plus its memory ports by name."""

    engine: Engine
    ports: dict[str, MemoryPort]
    clock: FakeClock

    def send(self, port: str, *frames: bytes) -> None:
        """Deliver frames as if received on ``port`` and run them through the switch."""
        idx = self.engine.state.by_name[port]
        self.engine.process(idx, [Frame(bytes(f)) for f in frames])

    def got(self, port: str) -> list[bytes]:
        """Frames the switch sent out of ``port`` since the last call."""
        return [f.data for f in self.ports[port].take()]

    def drops(self, reason: str) -> int:
        """How many drops of ``reason`` were counted."""
        return self.engine.state.drops.total(reason)


def make_switch(yaml_text: str) -> Switch:
    """Build a switch whose ports are all memory ports."""
    cfg = load_text(yaml_text)
    ports: dict[str, MemoryPort] = {}

    def factory(name: str, pc: PortConfig) -> Port:
        ports[name] = MemoryPort(name)
        return ports[name]

    clock = FakeClock()
    engine = build_engine(cfg, factory, clock=clock)
    engine.open()
    made = Switch(engine, ports, clock)
    MADE.append(made)
    return made
