"""The policy modules as one pipeline stage (``IngressStage`` / ``EgressStage``).

Ingress (a frame the port's VM sent: direction ``out`` for that port):
guards -> storm limit -> port ACL -> extended ACL -> firewall.
Egress (a frame delivered to a port: direction ``in`` for it):
port ACL -> extended ACL -> firewall.

Everything that depends only on FlowKey fields is decided here, once per flow
(the decision is cached); per-frame work becomes a
:class:`~vspan.datapath.decision.Check` action named by data — meter counting,
storm buckets, extended ACL sessions, firewall connection tracking — that
:class:`~vspan.policy.checks.PolicyChecks` peeks (trace) or commits
(forwarding). A trace runs exactly these decisions and then peeks the checks:
there is no trace-only branch here.
"""

from __future__ import annotations

from vspan.datapath.decision import Check, CheckKind, Drop
from vspan.datapath.reasons import DropReason
from vspan.datapath.stages.base import StageContext
from vspan.datapath.state import PortRuntime
from vspan.policy.build import PortPolicy, SwitchPolicy
from vspan.policy.common import IN, OUT, Dir
from vspan.policy.firewall import FwAction
from vspan.policy.guards import storm_class

# Check.flags of a firewall check: the action for NEW frames and the rule's section options
FW_ACTION_BITS = {FwAction.ALLOW: 0, FwAction.DROP: 1, FwAction.REJECT: 2}
FW_STRICT = 4
FW_STATEFUL = 8
# Check.flags of an extended ACL check
EXT_ALLOWED = 1  # the rules allow (a live session admits anyway)
EXT_STATEFUL = 2  # the deciding rule opens sessions (param: idle timeout, seconds)


class PolicyStage:
    """Guards, ACLs, extended ACLs and the firewall as one ingress and egress stage."""

    name = "policy"

    def __init__(self, policy: SwitchPolicy) -> None:
        self.policy = policy

    # ------------------------------------------------------------------ ingress
    def ingress(self, ctx: StageContext) -> Drop | None:
        """Judge a frame entering the switch from ``ctx.in_port``."""
        port = ctx.in_port
        pol = self.policy.port(port.name)
        key = ctx.key
        tr = ctx.tracer
        if pol is not None:
            if pol.guards.active or tr.enabled:
                g = pol.guards.check(key, tr)
                if not g.ok:
                    assert g.reason is not None
                    return Drop(g.reason, port.index, detail=g.detail)
            if pol.storm is not None:
                known = not key.dst[0] & 1 and ctx.fdb_lookup(ctx.vlan, key.dst) is not None
                cls = storm_class(key, known)
                if cls is not None and cls in pol.storm.buckets:
                    if tr.enabled:
                        tr.report("guards", f"{cls} frame: storm limit "
                                  f"{pol.storm.buckets[cls].rate:g} pps checked per frame")
                    ctx.checks.append(Check(CheckKind.STORM, port.index, OUT, str(cls),
                                                 vlan=max(ctx.vlan, 0)))
        return self._policy(ctx, port, OUT, pol, ctx.checks)

    # ------------------------------------------------------------------- egress
    def egress(self, ctx: StageContext, out: PortRuntime) -> Drop | None:
        """Judge the copy of a frame delivered to ``out``."""
        return self._policy(ctx, out, IN, self.policy.port(out.name), ctx.out_checks)

    # ------------------------------------------------------------------- shared
    def _policy(self, ctx: StageContext, port: PortRuntime, direction: Dir,
                pol: PortPolicy | None, checks: list[Check]) -> Drop | None:
        key = ctx.key
        tr = ctx.tracer
        if pol is not None:
            if len(pol.acl) or tr.enabled:
                v = pol.acl.evaluate(key, direction, tr)
                if not v.allowed:
                    return Drop(DropReason.ACL_DENY, port.index, v.rule_id or "",
                                f"port ACL entry {v.rule_id} ({direction})")
                if v.meter is not None:
                    checks.append(Check(CheckKind.METER, port.index, direction,
                                        v.meter.rule_id, vlan=max(ctx.vlan, 0)))
            if len(pol.ext) or tr.enabled:
                m = pol.ext.match(key, direction, tr)
                if m.needs_state:
                    rule = m.rule
                    flags = (EXT_ALLOWED if m.allowed else 0) | (
                        EXT_STATEFUL if rule is not None and rule.stateful else 0)
                    idle = int(rule.idle_timeout) if rule is not None else 0
                    checks.append(Check(CheckKind.EXT_ACL, port.index, direction,
                                        m.rule_id or "", flags, idle, max(ctx.vlan, 0)))
                elif not m.allowed:
                    return Drop(DropReason.EXT_ACL_DENY, port.index, m.rule_id or "",
                                f"extended ACL rule {m.rule_id} ({direction})")
        fw = self.policy.firewall
        pf = fw.port(port.name, create=False) if fw is not None else None
        if pf is not None:
            fm = pf.match(key, direction, tr)
            if fm.ip:
                flags = FW_ACTION_BITS[fm.action] | (FW_STRICT if fm.strict else 0) | (
                    FW_STATEFUL if fm.stateful else 0)
                checks.append(Check(CheckKind.FIREWALL, port.index, direction, fm.rule_id,
                                    flags, 0, max(ctx.vlan, 0)))
        return None
