"""The per-frame policy checks: what a :class:`~vspan.datapath.decision.Check` action does.

:class:`PolicyChecks` implements the datapath's
:class:`~vspan.datapath.plugins.Checker`: :meth:`~PolicyChecks.peek` for
trace, :meth:`~PolicyChecks.commit` for forwarding — one code path, the
``commit`` flag handed down to the storm bucket, the meter, the extended ACL
sessions and the firewall's connection tracking (each runs the same code on
copies when peeking). A check is resolved by its data: the port index names
the port's policy, ``rule`` the meter entry / extended ACL rule / firewall
rule, ``flags`` and ``param`` the rest of the cached decision.

Each outcome lists its effects as data, for the trace and for tests that
compare what was predicted with what happened:

* ``("conn", port, conn key, fingerprint after | None)`` — firewall connection;
* ``("session", port, session key, (rule, origin, expires))`` — extended ACL;
* ``("storm", port, class, passed)`` and ``("meter", port, entry id, bytes)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vspan.datapath.decision import (
    PASS,
    VLAN_KEEP,
    Check,
    CheckKind,
    CheckOutcome,
    Drop,
    Reply,
)
from vspan.datapath.flowkey import FlowKey
from vspan.datapath.reasons import DropReason
from vspan.datapath.vlanops import apply as vlan_apply
from vspan.policy.build import SwitchPolicy
from vspan.policy.common import IN, OUT, Dir
from vspan.policy.extacl import ExtAclMatch, ExtAclSessions
from vspan.policy.firewall import FwDecision, FwVerdict, PortFirewall
from vspan.policy.guards import StormClass
from vspan.policy.stage import (
    EXT_ALLOWED,
    FW_ACTION_BITS,
    FW_STATEFUL,
    FW_STRICT,
)

_FW_ACTIONS = {bits: action for action, bits in FW_ACTION_BITS.items()}
MAX_RESOLVED = 65536  # firewall checks remembered resolved (then forgotten all at once)


def fw_decision(check: Check) -> FwDecision:
    """The firewall rule decision a check carries."""
    return FwDecision(_FW_ACTIONS[check.flags & 3], check.rule, bool(check.flags & FW_STRICT),
                      bool(check.flags & FW_STATEFUL))


def _dir(check: Check) -> Dir:
    return IN if check.direction == IN else OUT


class PolicyChecks:
    """Peeks and commits per-frame checks against a :class:`SwitchPolicy`'s state."""

    def __init__(self, policy: SwitchPolicy, names: Mapping[int, str]) -> None:
        self.policy = policy
        self.names = names  # port index -> name (the switch state's)
        self._decisions: dict[tuple[str, int], FwDecision] = {}  # decoded firewall checks
        # firewall checks resolved for commits, by the identity of the (cached) check object,
        # which the value keeps alive: id -> (check, port firewall, direction, decision)
        self._resolved: dict[int, tuple[Check, PortFirewall, Dir, FwDecision]] = {}
        # per (kind, port index), the cell a native program's checks read: [the port's
        # connection index (ConnTrack.native) or session index (ExtAclSessions.native) |
        # None]; filled when a commit resolves the port's state, emptied when the policy is
        # reinstalled
        self._cells: dict[tuple[CheckKind, int], list[Any]] = {}

    def reset(self) -> None:
        """The policy was reinstalled: forget what was resolved from it (native programs'
        cells are emptied until a commit resolves each port's firewall again)."""
        self._resolved.clear()
        for cell in self._cells.values():
            cell[0] = None

    def native_cell(self, check: Check) -> list[Any] | None:
        """The cell through which the native replay steps ``check`` (a one-item list
        holding the port's connection index, or ``None`` while not resolved), or ``None``
        when the native side cannot run this kind of check (``docs/datapath.md``)."""
        kind = check.kind
        if kind is not CheckKind.FIREWALL and kind is not CheckKind.EXT_ACL:
            return None
        cell = self._cells.get((kind, check.port))
        if cell is None:
            cell = self._cells[(kind, check.port)] = [None]
            name = self.names.get(check.port, "")
            if kind is CheckKind.FIREWALL:
                fw = self.policy.firewall
                pf = fw.ports().get(name) if fw is not None else None
                if pf is not None:  # resolved before: its checks may not come this way again
                    self._attach(cell, pf)
            else:
                pol = self.policy.port(name)
                if pol is not None:
                    self._attach_sessions(cell, pol.sessions)
        return cell

    @staticmethod
    def _attach(cell: list[Any], pf: PortFirewall) -> None:
        ct = pf.conntrack
        if ct.native is None:
            ct.native = {}
        cell[0] = ct.native

    @staticmethod
    def _attach_sessions(cell: list[Any], sessions: ExtAclSessions) -> None:
        if sessions.native is None:
            sessions.native = {}
        cell[0] = sessions.native

    def peek(self, check: Check, data: bytes, key: FlowKey, now: float,
             wire: tuple[int, int] = (VLAN_KEEP, 0)) -> CheckOutcome:
        """What the check would do with this frame; nothing changes."""
        return self.run(check, data, key, now, wire, False)

    def commit(self, check: Check, data: bytes, key: FlowKey, now: float,
               wire: tuple[int, int] = (VLAN_KEEP, 0)) -> CheckOutcome:
        """Do the check (state, counters, reject answers queued)."""
        if check.kind is CheckKind.FIREWALL:  # the per-frame hot spot: straight there
            r = self._resolved.get(id(check))
            if r is not None and r[0] is check:
                v = r[1].process(key, data, r[2], r[3], now, True)
                return PASS if v.allowed else self._verdict(check, v, wire, True)
        return self.run(check, data, key, now, wire, True)

    def run(self, check: Check, data: bytes, key: FlowKey, now: float,
            wire: tuple[int, int], commit: bool) -> CheckOutcome:
        """One code path for both (a commit skips the trace's notes and effects)."""
        name = self.names.get(check.port, "")
        kind = check.kind
        if kind is CheckKind.FIREWALL:
            return self._firewall(check, name, data, key, now, wire, commit)
        pol = self.policy.port(name)
        if pol is None:
            return PASS
        d = _dir(check)
        if kind is CheckKind.METER:
            meter = pol.acl.meter(check.rule, d)
            if meter is None:
                return PASS
            if commit:
                meter.add(len(data))
                return PASS
            return CheckOutcome(note=f"counted by meter {check.rule}", effects=(
                ("meter", check.port, f"{check.rule}/{d}", len(data)),))
        if kind is CheckKind.STORM:
            storm = pol.storm
            cls = StormClass(check.rule)
            if storm is None:
                return PASS
            ok = storm.allow(cls, now, commit)
            fx: tuple[tuple[object, ...], ...] = (
                () if commit else (("storm", check.port, check.rule, ok),))
            if ok:
                return PASS if commit else CheckOutcome(
                    note=f"{cls} within the storm limit", effects=fx)
            return CheckOutcome(Drop(DropReason.STORM_LIMIT, check.port, detail=str(cls)),
                                f"{cls} over the storm limit", fx)
        if commit and self._cells:
            cell = self._cells.get((CheckKind.EXT_ACL, check.port))
            if cell is not None and (cell[0] is None or cell[0] is not pol.sessions.native):
                self._attach_sessions(cell, pol.sessions)  # native programs refresh them
        rule = pol.ext.rule(check.rule, d) if check.rule else None
        m = ExtAclMatch(bool(check.flags & EXT_ALLOWED), rule, d, True, 0)
        r = pol.sessions.process(key, d, m, now, commit=commit)
        if commit and r.allowed:
            return PASS
        sfx: tuple[tuple[object, ...], ...] = (
            (("session", check.port, r.session[0], r.session[1]),) if r.session else ())
        note = (f"session of rule {r.rule_id} admits it" if r.via_session
                else f"no session: rule {r.rule_id or '(none)'} "
                f"{'allows' if r.allowed else 'denies'}")
        if r.allowed:
            return CheckOutcome(note=note, effects=sfx)
        return CheckOutcome(Drop(DropReason.EXT_ACL_DENY, check.port, r.rule_id or "",
                                 f"extended ACL rule {r.rule_id} ({d})"), note, sfx)

    def _firewall(self, check: Check, name: str, data: bytes, key: FlowKey, now: float,
                  wire: tuple[int, int], commit: bool) -> CheckOutcome:
        fw = self.policy.firewall
        pf = fw.port(name, create=commit) if fw is not None else None
        if pf is None:
            return PASS
        d = _dir(check)
        decision = self._decisions.get((check.rule, check.flags))
        if decision is None:
            decision = self._decisions[(check.rule, check.flags)] = fw_decision(check)
        if commit:
            if len(self._resolved) >= MAX_RESOLVED:
                self._resolved.clear()
            self._resolved[id(check)] = (check, pf, d, decision)
            cell = self._cells.get((CheckKind.FIREWALL, check.port))
            if cell is not None:  # a native program steps this port's connections
                self._attach(cell, pf)
        v = pf.process(key, data, d, decision, now, commit)
        if commit and v.allowed:
            return PASS
        return self._verdict(check, v, wire, commit)

    def _verdict(self, check: Check, v: FwVerdict, wire: tuple[int, int],
                 commit: bool) -> CheckOutcome:
        """A firewall verdict as a check outcome (reject answers queued on commit)."""
        fx: tuple[tuple[object, ...], ...] = ()
        if v.conn is not None:
            ck, conn = v.conn
            fx = (("conn", check.port, ck, conn.fingerprint() if conn is not None else None),)
        note = f"conntrack {v.ct.value}: {v.detail}"
        if v.allowed:
            return CheckOutcome(note=note, effects=fx)
        assert v.reason is not None
        reply = None
        if v.reply is not None:
            # the answer goes back to the sender: the VM (out) or the network (in). It is
            # built from the frame as it arrived; the VM's answer would carry the tags of
            # the VM's own port, so give it those before it enters the switch from there
            op, vid = wire
            rdata = v.reply if op == VLAN_KEEP else vlan_apply(op, vid, v.reply, b"")[0]
            reply = Reply(check.port, check.direction == OUT, rdata, check.vlan)
            if commit:
                self.policy.queue_reply(reply)
        return CheckOutcome(Drop(v.reason, check.port, v.rule_id, v.detail), note, fx, reply)
