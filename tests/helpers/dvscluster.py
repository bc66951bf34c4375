"""A distributed switch in one process: each host's engine as its agent would compile it,
VM ports on memory ports, the overlay on real VXLAN sockets on loopback (127.0.0.N).

No etcd and no agents: :func:`vspan.control.dvs.compile.compile_host` makes each host's
configuration from the DVS (ids and mirror VLANs assigned as ``dvs apply`` does), and
the test drives the engines by polling them. Raw sockets: needs root.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from vspan.config.dvs import DvsConfig
from vspan.config.load import parse_model, read_yaml
from vspan.config.model import PortConfig, PortType
from vspan.control.assemble import build_engine
from vspan.control.dvs.admin import assign_overlay_vlans
from vspan.control.dvs.compile import HostPlan, compile_host
from vspan.control.dvs.document import LiveHost
from vspan.datapath.engine import Engine
from vspan.ports.base import Frame, Port, PortError
from vspan.ports.factory import open_backend
from vspan.ports.memory import MemoryPort


@dataclass
class ClusterHost:
    """One host: its engine, its plan and its memory ports."""

    name: str
    underlay: str
    plan: HostPlan
    engine: Engine
    ports: dict[str, MemoryPort] = field(default_factory=dict)


@dataclass
class Cluster:
    """Hosts of one distributed switch, in process."""

    dvs: DvsConfig
    hosts: dict[str, ClusterHost]
    _out: dict[str, list[Frame]] = field(default_factory=dict)

    def pump(self, until: Callable[[], bool] | None = None, timeout: float = 2.0) -> None:
        """Poll every engine until ``until`` holds (or, without it, until quiet)."""
        deadline = time.monotonic() + timeout
        idle = 0
        while time.monotonic() < deadline:
            moved = sum(h.engine.poll_once(0.005) for h in self.hosts.values())
            if until is not None and until():
                return
            idle = idle + 1 if not moved else 0
            if until is None and idle >= 5:
                return
        if until is not None:
            raise AssertionError("the cluster did not reach the expected state in time")

    def send(self, port: str, *frames: bytes) -> None:
        """Frames sent by the VM on ``port`` (into its host's switch)."""
        host = self.host_of(port)
        host.ports[port].inject(*frames)

    def got(self, port: str) -> list[Frame]:
        """What the switch delivered to ``port`` so far (taken)."""
        out = self._out.pop(port, [])
        return out + self.host_of(port).ports[port].take()

    def delivered(self, port: str) -> int:
        """How many frames wait in ``port``'s output (kept for :meth:`got`)."""
        self._out.setdefault(port, []).extend(self.host_of(port).ports[port].take())
        return len(self._out[port])

    def host_of(self, port: str) -> ClusterHost:
        """The host the port is placed on."""
        return self.hosts[self.dvs.ports[port].host]

    def mirror(self, host: str, part: str) -> dict[str, int]:
        """Counters of a session part on a host."""
        for m in self.hosts[host].engine.state.mirrors.values():
            if m.name == part:
                return m.counters()
        raise KeyError(part)


@contextmanager
def cluster(text: str, hosts: dict[str, str] | None = None) -> Iterator[Cluster]:
    """Build and open every host of the DVS in ``text`` (hosts -> 127.0.0.N by default)
    on one random UDP port; everything is closed afterwards."""
    dvs = parse_model(DvsConfig, read_yaml(text), "cluster")
    names = list(dvs.hosts)
    addrs = hosts or {h: f"127.0.0.{i + 1}" for i, h in enumerate(names)}
    last: Exception | None = None
    for _ in range(10):
        udp = random.randint(20000, 60000)
        sw = dvs.switch.model_copy(update={"vxlan_port": udp})
        d = assign_overlay_vlans(dvs.model_copy(update={"switch": sw}), {})
        live = {h: LiveHost(h, addrs[h]) for h in names}
        built: dict[str, ClusterHost] = {}
        try:
            for h in names:
                plan = compile_host(d, h, live, underlay=addrs[h])
                mem: dict[str, MemoryPort] = {}

                def factory(name: str, pc: PortConfig, mem: dict[str, MemoryPort] = mem
                            ) -> Port:
                    if pc.type is PortType.VXLAN:
                        return open_backend(name, pc)
                    mem[name] = MemoryPort(name)
                    return mem[name]

                engine = build_engine(plan.config, factory)
                built[h] = ClusterHost(h, addrs[h], plan, engine, mem)
                engine.open()
        except PortError as err:  # the UDP port is taken: another one
            last = err
            for ch in built.values():
                ch.engine.close()
            continue
        try:
            yield Cluster(d, built)
        finally:
            for ch in built.values():
                ch.engine.close()
        return
    raise RuntimeError(f"could not open the overlay ports: {last}")
