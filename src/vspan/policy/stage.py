"""The policy modules as pipeline stages (``IngressStage`` / ``EgressStage``).

Ingress (a frame the port's VM sent: direction ``out`` for that port):
guards -> storm limit -> port ACL -> extended ACL -> firewall.
Egress (a frame delivered to a port: direction ``in`` for it):
port ACL -> extended ACL -> firewall.

Everything that depends only on FlowKey fields is decided here, once per flow
(the Decision is cached); per-frame work goes into hooks: meter counting,
storm buckets, extended ACL sessions, firewall connection tracking. Reject
answers are queued on :attr:`SwitchPolicy.replies` for the engine to send.

Wire-up::

    stage = PolicyStage(SwitchPolicy.from_config(port_policies, firewall_cfg))
    pipeline.ingress_stages.append(stage)
    pipeline.egress_stages.append(stage)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vspan.datapath.decision import VLAN_KEEP, Drop, Hook
from vspan.datapath.flowkey import FRAG_LATER, FlowKey
from vspan.datapath.reasons import DropReason
from vspan.datapath.stages.base import StageContext
from vspan.datapath.state import PortRuntime
from vspan.datapath.vlanops import apply as vlan_apply
from vspan.policy.acl import AclVerdict
from vspan.policy.build import PortPolicy, Reply, SwitchPolicy
from vspan.policy.common import IN, OUT, Dir
from vspan.policy.extacl import ExtAclMatch, ExtAclSessions
from vspan.policy.firewall import FwAction, FwMatch, PortFirewall
from vspan.policy.guards import StormClass, StormLimiter, storm_class

if TYPE_CHECKING:  # the pipeline may import this module: no import cycle at run time
    from vspan.datapath.pipeline import Pipeline


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
                known = not key.dst[0] & 1 and ctx.state.fdb.lookup(ctx.vlan, key.dst) is not None
                cls = storm_class(key, known)
                if cls is not None and cls in pol.storm.buckets:
                    if tr.enabled:
                        tr.report("guards", f"{cls} frame: storm limit "
                                  f"{pol.storm.buckets[cls].rate:g} pps checked per frame")
                    ctx.hooks.append(_storm_hook(pol.storm, cls, port.index))
        return self._policy(ctx, port, OUT, pol, ctx.hooks)

    # ------------------------------------------------------------------- egress
    def egress(self, ctx: StageContext, out: PortRuntime) -> Drop | None:
        """Judge the copy of a frame delivered to ``out``."""
        return self._policy(ctx, out, IN, self.policy.port(out.name), ctx.out_hooks,
                            ctx.out_vlan)

    # ------------------------------------------------------------------- shared
    def _policy(self, ctx: StageContext, port: PortRuntime, direction: Dir,
                pol: PortPolicy | None, hooks: list[Hook],
                wire: tuple[int, int] = (VLAN_KEEP, 0)) -> Drop | None:
        """``wire``: the VLAN operation that puts the frame in ``port``'s wire format."""
        key = ctx.key
        tr = ctx.tracer
        if pol is not None:
            if len(pol.acl) or tr.enabled:
                v = pol.acl.evaluate(key, direction, tr)
                if not v.allowed:
                    return Drop(DropReason.ACL_DENY, port.index, v.rule_id or "",
                                f"port ACL entry {v.rule_id} ({direction})")
                if v.meter is not None:
                    hooks.append(_meter_hook(v))
            if len(pol.ext) or tr.enabled:
                m = pol.ext.match(key, direction, tr)
                if m.needs_state:
                    if tr.enabled and not m.allowed and pol.sessions.lookup(
                            key, direction, ctx.now) is None:
                        # a trace runs no hooks: say what the hook would decide
                        return Drop(DropReason.EXT_ACL_DENY, port.index, m.rule_id or "",
                                    f"extended ACL rule {m.rule_id} ({direction}; no session)")
                    hooks.append(_ext_hook(pol.sessions, m, port.index))
                elif not m.allowed:
                    return Drop(DropReason.EXT_ACL_DENY, port.index, m.rule_id or "",
                                f"extended ACL rule {m.rule_id} ({direction})")
        fw = self.policy.firewall
        pf = fw.port(port.name) if fw is not None else None
        if pf is not None:
            fm = pf.match(key, direction, tr)
            if fm.ip:
                if tr.enabled:
                    conn = pf.conntrack.lookup(key, ctx.data, direction, ctx.now)
                    state = conn.describe() if conn is not None else "no tracked connection"
                    tr.report("conntrack", f"at port {port.name}: {state} (checked per frame)")
                    if conn is None and key.frag != FRAG_LATER and fm.action is not FwAction.ALLOW:
                        # a trace runs no hooks: a NEW frame is decided by the rule
                        reason = (DropReason.FIREWALL_REJECT if fm.action is FwAction.REJECT
                                  else DropReason.FIREWALL_DENY)
                        return Drop(reason, port.index, fm.rule_id,
                                    f"{fm.action.value} by rule {fm.rule_id} ({direction}; "
                                    "no tracked connection)")
                hooks.append(_fw_hook(self.policy, pf, fm, port.index, wire, ctx.vlan))
        return None


def install(pipeline: Pipeline, policy: SwitchPolicy) -> PolicyStage:
    """Add the policy stage to a pipeline's ingress and egress stages; return it."""
    stage = PolicyStage(policy)
    pipeline.ingress_stages.append(stage)
    pipeline.egress_stages.append(stage)
    pipeline.state.bump()
    return stage


def _meter_hook(v: AclVerdict) -> Hook:
    def hook(data: bytes, key: FlowKey, now: float) -> Drop | None:
        v.account(len(data))
        return None
    return hook


def _storm_hook(storm: StormLimiter, cls: StormClass, index: int) -> Hook:
    def hook(data: bytes, key: FlowKey, now: float) -> Drop | None:
        if storm.allow(cls, now):
            return None
        return Drop(DropReason.STORM_LIMIT, index, detail=str(cls))
    return hook


def _ext_hook(sessions: ExtAclSessions, m: ExtAclMatch, index: int) -> Hook:
    direction = m.direction

    def hook(data: bytes, key: FlowKey, now: float) -> Drop | None:
        r = sessions.process(key, direction, m, now)
        if r.allowed:
            return None
        return Drop(DropReason.EXT_ACL_DENY, index, r.rule_id or "",
                    f"extended ACL rule {r.rule_id} ({direction})")
    return hook


def _fw_hook(policy: SwitchPolicy, pf: PortFirewall, m: FwMatch, index: int,
             wire: tuple[int, int], vlan: int) -> Hook:
    """Per-frame firewall check at port ``index``; ``wire`` is the VLAN operation that puts
    the judged frame in that port's wire format (KEEP for its own frames), ``vlan`` the
    VLAN it is switched in."""
    direction = m.direction
    op, vid = wire
    decision = m.decision

    def hook(data: bytes, key: FlowKey, now: float) -> Drop | None:
        v = pf.process(key, data, direction, decision, now)
        if v.allowed:
            return None
        if v.reply is not None:
            # the answer goes back to the sender: the VM (out) or the network (in). It is
            # built from the frame as it arrived; the VM's answer would carry the tags of
            # the VM's own port, so give it those before it enters the switch from there
            reply = v.reply if op == VLAN_KEEP else vlan_apply(op, vid, v.reply, b"")[0]
            policy.queue_reply(Reply(index, direction == OUT, reply, vlan))
        assert v.reason is not None
        return Drop(v.reason, index, v.rule_id, v.detail)
    return hook
