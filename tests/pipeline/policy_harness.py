"""A memory-port switch with the policy stage attached (policy given as its own YAML)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from tests.pipeline.harness import Switch, make_switch
from vspan.config.policy import PortPolicyConfig
from vspan.policy.build import SwitchPolicy
from vspan.policy.conntrack import Conn
from vspan.policy.layer import PolicyLayer


@dataclass
class PolicySwitch:
    """The harness switch plus its policy."""

    sw: Switch
    policy: SwitchPolicy

    def send(self, port: str, *frames: bytes) -> None:
        """Frames received on ``port``."""
        self.sw.send(port, *frames)

    def got(self, port: str) -> list[bytes]:
        """Frames sent out of ``port`` since the last call."""
        return self.sw.got(port)

    def drops(self, reason: str) -> int:
        """Drops of one reason so far."""
        return self.sw.drops(reason)

    def drops_by_rule(self, reason: str) -> dict[str, int]:
        """rule id -> drops of ``reason``."""
        out: dict[str, int] = {}
        for (_, r, rule), n in self.sw.engine.state.drops.by_key.items():
            if r == reason:
                out[rule] = out.get(rule, 0) + n
        return out

    @property
    def clock(self) -> Any:
        """The injected clock (``.now`` in seconds)."""
        return self.sw.clock

    def conns(self, port: str) -> list[Conn]:
        """Tracked connections at ``port``."""
        assert self.policy.firewall is not None
        pf = self.policy.firewall.port(port)
        assert pf is not None
        return list(pf.conntrack)

    def close(self) -> None:
        """Stop the engine."""
        self.sw.engine.close()


def make_policy_switch(ports: list[str], policy_yaml: str) -> PolicySwitch:
    """Memory ports ``ports`` and policy ``{ports: {name: policy}, firewall: {...}}``.

    The policy goes into the switch configuration itself, so the engine's own
    policy stage (the production wiring) is what the tests exercise.
    """
    raw = yaml.safe_load(policy_yaml) or {}
    pols = raw.get("ports") or {}
    cfg: dict[str, Any] = {"ports": {}}
    for p in ports:
        cfg["ports"][p] = {"type": "memory"}
        if p in pols:
            cfg["ports"][p]["policy"] = pols[p]
    if "firewall" in raw:
        cfg["firewall"] = raw["firewall"]
    sw = make_switch(yaml.safe_dump(cfg))
    layer = sw.engine.policy
    assert isinstance(layer, PolicyLayer)
    return PolicySwitch(sw, layer.policy)


def policies(raw: Mapping[str, Any]) -> dict[str, PortPolicyConfig]:
    """Validate a mapping of port policies."""
    return {k: PortPolicyConfig.model_validate(v) for k, v in raw.items()}
