"""`policy explain` against the running switch consults its connections and sessions;
offline it says precisely what it did not consult."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.policy_frames import PEER_MAC, VM_MAC, arp, tcp, udp
from vspan.cli.main import main
from vspan.config.model import PortConfig
from vspan.control.agent import Agent, AgentError
from vspan.policy.explain import FlowSpec, synth_frame
from vspan.ports.base import Frame, Port
from vspan.ports.memory import MemoryPort

VM, PEER = "10.0.0.5", "10.0.0.9"
CONFIG = """
ports:
  vm:
    type: memory
    policy:
      addresses: [10.0.0.5]
      extended_acls:
        - {id: dns-out, action: allow, direction: out, weight: 100, protocol: udp,
           remote_port: 53, stateful: true}
        - {id: no-udp-in, action: deny, direction: in, weight: 10, protocol: udp}
  net: {type: memory}
firewall:
  default_action: drop
  sections:
    - name: app
      rules:
        - {id: web-in, action: allow, direction: in, applied_to: [vm], services: [tcp/80]}
        - {id: web-out, action: allow, direction: out, applied_to: [net], services: [tcp/80]}
        - {id: dns, action: allow, services: [udp/53]}
"""


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    path = tmp_path / "switch.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    ports: dict[str, MemoryPort] = {}

    def factory(name: str, cfg: PortConfig) -> Port:
        ports[name] = MemoryPort(name)
        return ports[name]

    a = Agent.from_file(str(path), factory)
    a.engine.open()
    yield a
    a.stop()


def send(agent: Agent, port: str, frame: bytes) -> None:
    agent.engine.process(agent.engine.state.by_name[port], [Frame(frame)])


def reply_at_vm() -> bytes:
    """The VM's answer on the connection net:40000 -> vm:80 (an ACK, not a SYN)."""
    return synth_frame(FlowSpec(VM, PEER, "tcp", 80, 40000, VM_MAC, PEER_MAC, "A"))


def test_live_explain_uses_connection_tracking(agent: Agent) -> None:
    before = agent.policy_explain("vm", "out", reply_at_vm())
    assert not before["allowed"]  # no connection yet: the default rule drops it
    assert "the connection table of port vm (0 tracked connections)" in \
        before["state"]["consulted"]
    send(agent, "net", arp(src_mac=PEER_MAC, psrc=PEER, pdst=VM))
    send(agent, "vm", arp(src_mac=VM_MAC, psrc=VM, pdst=PEER))
    send(agent, "net", tcp(PEER, VM, 40000, 80, "S", seq=1, src_mac=PEER_MAC, dst_mac=VM_MAC))
    after = agent.policy_explain("vm", "out", reply_at_vm())
    assert after["allowed"], after["text"]
    fw = next(s for s in after["stages"] if s["stage"] == "firewall")
    assert "part of tracked connection" in fw["summary"]
    assert after["state"]["live"] is True
    assert "the connection table of port vm (1 tracked connection)" in after["state"]["consulted"]
    assert any("storm-limit" in n for n in after["state"]["not_consulted"])
    assert "consulted: the connection table of port vm (1 tracked connection)" in after["text"]


def test_live_explain_uses_extended_acl_sessions(agent: Agent) -> None:
    answer = synth_frame(FlowSpec("10.9.9.9", VM, "udp", 53, 5353, PEER_MAC, VM_MAC))
    assert not agent.policy_explain("vm", "in", answer)["allowed"]
    send(agent, "vm", udp(VM, "10.9.9.9", 5353, 53, src_mac=VM_MAC, dst_mac=PEER_MAC))
    live = agent.policy_explain("vm", "in", answer)
    ext = next(s for s in live["stages"] if s["stage"] == "ext-acl")
    assert ext["allowed"] and "live session of stateful rule dns-out" in ext["summary"]
    assert "the extended-ACL sessions of port vm (1 live)" in live["state"]["consulted"]


def test_offline_explain_says_what_it_did_not_consult(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "switch.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    rc = main(["policy", "explain", "-c", str(path), "--port", "vm", "-d", "out",
               "--src-ip", VM, "--dst-ip", PEER, "--sport", "80", "--dport", "40000",
               "--flags", "A"])
    out = capsys.readouterr().out
    assert rc == 3
    assert "not consulted: connection tracking and extended-ACL sessions" in out
    assert "(offline: no session or connection state" not in out
    rc = main(["policy", "explain", "-c", str(path), "--port", "vm", "-d", "out",
               "--remote-ip", PEER, "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["state"]["live"] is False and data["state"]["consulted"] == []


def test_live_explain_refuses_bad_input_cleanly(agent: Agent) -> None:
    with pytest.raises(AgentError, match="malformed"):
        agent.policy_explain("vm", "in", b"\x00" * 5)
    with pytest.raises(AgentError, match="no port named"):
        agent.policy_explain("nope", "in", reply_at_vm())
    with pytest.raises(AgentError, match="direction"):
        agent.policy_explain("vm", "sideways", reply_at_vm())
    rng = random.Random(7)
    good = reply_at_vm()
    for _ in range(300):  # cut and scribbled frames: an answer or a clean refusal
        frame = bytearray(good[:rng.randrange(len(good) + 1)])
        for _ in range(rng.randrange(4)):
            if frame:
                frame[rng.randrange(len(frame))] = rng.randrange(256)
        try:
            agent.policy_explain("vm", "out", bytes(frame))
        except AgentError:
            pass
