"""The policy layer as the switch drives it (the datapath's
:class:`~vspan.datapath.plugins.Policy`): compiled policy, the pipeline stage,
the per-frame checks, reloads that say which ports they touched."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vspan.config.diff import ChangeSet
from vspan.config.model import Config
from vspan.datapath.decision import Reply
from vspan.datapath.stages.base import EgressStage, IngressStage
from vspan.policy.build import SwitchPolicy
from vspan.policy.checks import PolicyChecks
from vspan.policy.common import IN, OUT
from vspan.policy.stage import PolicyStage


class PolicyLayer:
    """Guards, ACLs, extended ACLs and the firewall of one switch."""

    def __init__(self, config: Config, names: Mapping[int, str]) -> None:
        self.policy = SwitchPolicy.from_config(config.port_policies(), config.firewall)
        stage = PolicyStage(self.policy)
        self.ingress: tuple[IngressStage, ...] = (stage,)
        self.egress: tuple[EgressStage, ...] = (stage,)
        self.checker = PolicyChecks(self.policy, names)

    @property
    def replies(self) -> list[Reply]:
        """Reject answers waiting to be sent."""
        return self.policy.replies

    def _decides(self, ports: Mapping[str, object]) -> dict[str, tuple[object, ...]]:
        """Per port, everything a cached decision reads from the policy."""
        fw = self.policy.firewall
        out: dict[str, tuple[object, ...]] = {}
        for name in ports:
            pol = self.policy.port(name)
            fwp: tuple[object, ...] = ()
            if fw is not None:
                rs = fw.ruleset
                covered = rs.covers(name)
                fwp = (covered, rs.default_action, rs.default_strict,
                       rs.rules_for(name, IN) if covered else (),
                       rs.rules_for(name, OUT) if covered else ())
            out[name] = (pol.config if pol is not None else None, fwp)
        return out

    def apply(self, new: Config, changes: ChangeSet) -> frozenset[str]:
        """Install ``new``'s policy; return the ports whose cached decisions it may change
        (their policy or the firewall rules enforced at them changed)."""
        names = {**self.policy.ports, **new.ports}
        before = self._decides(names)
        self.policy.apply(new.port_policies(), new.firewall, changes)
        self.checker.reset()
        after = self._decides(names)
        return frozenset(n for n in names if before[n] != after[n])

    def expire(self, now: float) -> None:
        """Forget idle sessions and connections."""
        self.policy.expire(now)

    def take_replies(self) -> list[Reply]:
        """Queued reject answers (and forget them)."""
        return self.policy.take_replies()

    def counters(self) -> dict[str, Any]:
        """Policy counters for show/metrics."""
        return self.policy.counters()
