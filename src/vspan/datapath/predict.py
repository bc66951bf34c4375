"""``vspan trace``: the pipeline's decision for one frame, and what replaying it would do.

:func:`predict` runs the pipeline with tracing on, then replays the decision
with effects that *peek*: per-frame checks through
:meth:`~vspan.datapath.plugins.Checker.peek`, mirror copies through
:meth:`~vspan.datapath.mirrorout.MirrorOut.predict`, learning through
:meth:`~vspan.datapath.fdb.Fdb.check`. It is the same interpreter
(:func:`~vspan.datapath.replay.replay`) and the same check code forwarding
commits with, so the :class:`Outcome` is what the switch would do with the
frame now; nothing changes (state, counters, sampling, the MAC table).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vspan.datapath.decision import (
    VLAN_OP_NAMES,
    Check,
    CheckOutcome,
    Decision,
    Drop,
    Learn,
    Mirror,
    Refresh,
)
from vspan.datapath.fdb import LearnResult
from vspan.datapath.flowkey import FlowKey, extract, mac_str
from vspan.datapath.mirrorout import TO_SENDER, Delivery, MirrorOut
from vspan.datapath.pipeline import Pipeline
from vspan.datapath.plugins import Checker
from vspan.datapath.replay import replay
from vspan.datapath.state import SwitchState
from vspan.datapath.trace import Tracer
from vspan.ports.base import Frame


@dataclass(slots=True)
class Outcome:
    """What a frame does: outputs, copies, drops, learning, state changes."""

    outputs: list[tuple[int, bytes]] = field(default_factory=list)  # (port, frame as sent)
    copies: list[Delivery] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    learned: list[tuple[Learn, LearnResult]] = field(default_factory=list)
    refreshed: list[Refresh] = field(default_factory=list)
    effects: list[tuple[object, ...]] = field(default_factory=list)  # of per-frame checks
    flooded: bool = False
    replies: list[Outcome] = field(default_factory=list)  # answers (reject) and their fate

    def verdict(self, names: Mapping[int, str]) -> str:
        """One line: where the frame went and why not elsewhere (mirror copies and answers
        are in the trace's lines and the JSON outcome)."""
        parts = []
        if self.outputs:
            parts.append("delivered to " + ", ".join(names.get(p, str(p))
                                                    for p, _ in self.outputs))
        if self.drops:
            parts.append("dropped: " + "; ".join(
                f"{d.reason.value}" + (f" (rule {d.rule})" if d.rule else "")
                + f" at {names.get(d.port, str(d.port))}" for d in self.drops))
        return " / ".join(parts) if parts else "nothing delivered"

    def as_dict(self, state: SwitchState) -> dict[str, object]:
        """JSON-ready, with names."""
        names = state.port_names

        def name(p: int) -> str:
            return names.get(p, str(p))

        return {
            "outputs": [{"port": name(p), "bytes": len(b)} for p, b in self.outputs],
            "copies": [{"session": state.mirrors[c.session].name if c.session in state.mirrors
                        else str(c.session),
                        "to": "sender" if c.port == TO_SENDER else name(c.port),
                        "bytes": len(c.data), "truncated": c.truncated, "delivered": c.ok}
                       for c in self.copies],
            "drops": [{"reason": d.reason.value, "port": name(d.port), "rule": d.rule,
                       "detail": d.detail} for d in self.drops],
            "learned": [{"vlan": ln.vlan, "mac": mac_str(ln.mac), "port": name(ln.port),
                         "result": r.value} for ln, r in self.learned],
            "flooded": self.flooded,
            "replies": [r.as_dict(state) for r in self.replies],
            "verdict": self.verdict(names),
        }


class Prediction:
    """Effects that peek and record: what :func:`~vspan.datapath.replay.replay` would do."""

    def __init__(self, state: SwitchState, pipeline: Pipeline, checker: Checker,
                 mirror_out: MirrorOut, tracer: Tracer,
                 offered: dict[int, int] | None = None) -> None:
        self.state = state
        self.pipeline = pipeline
        self.checker = checker
        self.mirror_out = mirror_out
        self.tracer = tracer
        self.outcome = Outcome()
        self.tx: dict[int, list[Frame]] | None = None  # outputs are recorded (output())
        self.offered: dict[int, int] = {} if offered is None else offered  # per session

    def _name(self, port: int) -> str:
        return self.state.port_names.get(port, str(port))

    def check(self, check: Check, data: bytes, key: FlowKey, now: float,
              wire: tuple[int, int]) -> CheckOutcome:
        """Peek at the check."""
        out = self.checker.peek(check, data, key, now, wire)
        self.outcome.effects.extend(out.effects)
        if self.tracer.enabled:
            verdict = "pass" if out.drop is None else f"drop ({out.drop.reason.value})"
            self.tracer.report("check", f"{check.kind.name.lower()} {check.direction} at "
                               f"{self._name(check.port)}: {out.note or verdict}"
                               + ("" if out.note and out.drop is None else f" -> {verdict}"))
        if out.reply is not None:
            r = out.reply
            self._reply(r.port, r.to_port, r.data, r.vlan, now)
        return out

    def _reply(self, port: int, to_port: bool, data: bytes, vlan: int, now: float) -> None:
        tr = self.tracer
        if tr.enabled:
            where = "to" if to_port else "switched from"
            tr.report("reply", f"answers with a {len(data)}-byte frame {where} port "
                      f"{self._name(port)}")
        sub = Prediction(self.state, self.pipeline, self.checker, self.mirror_out, tr,
                         self.offered)
        self.outcome.replies.append(sub.outcome)
        if to_port:
            d = self.pipeline.deliver(port, data, vlan)
            replay(d, Frame(data), None, port, now, sub)
        elif port in self.state.ports:
            key = extract(data, port)
            d = self.pipeline.run(key, data, port, policy=False)
            replay(d, Frame(data), key, port, now, sub)

    def mirror(self, copy: Mirror, frame: Frame) -> None:
        """Predict the copy."""
        before = self.offered.get(copy.session, 0)
        dels = self.mirror_out.predict(copy, frame, self.offered)
        self.outcome.copies.extend(dels)
        tr = self.tracer
        if not tr.enabled:
            return
        m = self.state.mirrors.get(copy.session)
        name = m.name if m is not None else str(copy.session)
        n = len(frame.data)
        if copy.lengths and not any(lo <= n <= hi for lo, hi in copy.lengths):
            tr.report("mirror", f"session {name}: a {n}-byte frame is outside the filter's "
                      "lengths: no copy")
        elif not dels and m is not None and copy.sample > 1:
            tr.report("mirror", f"session {name}: sampled out (1 in {copy.sample}; this is "
                      f"frame {m.seen + before + 1} offered)")
        for d in dels:
            to = "its sender" if d.port == TO_SENDER else f"port {self._name(d.port)}"
            state = "" if d.ok else " -> lost (destination down or unreachable)"
            cut = f", truncated to {len(d.data)}" if d.truncated else ""
            tr.report("mirror", f"session {name}: copy to {to} ({len(d.data)} bytes{cut})"
                      f"{state}")

    def learn(self, learn: Learn, now: float) -> None:
        """Predict learning."""
        rt = self.state.ports.get(learn.port)
        limit = rt.config.mac_limit if rt is not None else 0
        res = self.state.fdb.check(learn.vlan, learn.mac, learn.port, limit)
        self.outcome.learned.append((learn, res))
        if self.tracer.enabled:
            self.tracer.report("learn", f"{mac_str(learn.mac)} on VLAN {learn.vlan} -> port "
                               f"{self._name(learn.port)}: {res.value}")

    def refresh(self, refresh: Refresh, now: float) -> None:
        """Record the refresh."""
        self.outcome.refreshed.append(refresh)

    def drop(self, drop: Drop, data: bytes, in_port: int) -> None:
        """Record the drop."""
        self.outcome.drops.append(drop)
        if self.tracer.enabled:
            rule = f" (rule {drop.rule})" if drop.rule else ""
            self.tracer.report("drop", f"{drop.reason.value}{rule} at {self._name(drop.port)}"
                               + (f": {drop.detail}" if drop.detail else ""))

    def flood(self, in_port: int) -> None:
        """Record the flood."""
        self.outcome.flooded = True

    def output(self, port: int, frame: Frame) -> None:
        """Record the delivery."""
        self.outcome.outputs.append((port, frame.data))
        if self.tracer.enabled:
            self.tracer.report("output", f"port {self._name(port)}: {len(frame.data)} bytes")


def predict(state: SwitchState, pipeline: Pipeline, checker: Checker, mirror_out: MirrorOut,
            in_port: int, data: bytes, now: float, tracer: Tracer | None = None
            ) -> tuple[Decision, Outcome, Tracer]:
    """Trace ``data`` as received on port index ``in_port``: the decision (with its trace
    tree) and what it would do now."""
    tr = tracer or Tracer()
    key = extract(data, in_port)
    d = pipeline.run(key, data, in_port, tr)
    fx = Prediction(state, pipeline, checker, mirror_out, tr)
    node = tr.report("replay", "per frame (checks peeked, nothing changed):")
    tr.push(node)
    replay(d, Frame(data), key, in_port, now, fx)
    tr.pop()
    return d, fx.outcome, tr


def describe_actions(d: Decision, state: SwitchState) -> list[dict[str, object]]:
    """The decision's action list, JSON-ready, with names."""
    names = state.port_names

    def name(p: int) -> str:
        return names.get(p, str(p))

    def mirror(m: Mirror) -> dict[str, object]:
        s = state.mirrors.get(m.session)
        return {"action": "mirror", "session": s.name if s is not None else str(m.session),
                "point": m.point, "encap": m.encap, "truncate": m.truncate,
                "sample": m.sample, "lengths": [list(r) for r in m.lengths],
                "destinations": [name(p) for p in s.dest_ports] if s is not None else []}

    def check(c: Check) -> dict[str, object]:
        return {"action": "check", "kind": c.kind.name.lower(), "port": name(c.port),
                "direction": c.direction, "rule": c.rule}

    out: list[dict[str, object]] = []
    for a in d.actions:
        if isinstance(a, Mirror):
            out.append(mirror(a))
        elif isinstance(a, Check):
            out.append(check(a))
        elif isinstance(a, Drop):
            out.append({"action": "drop", "reason": a.reason.value, "port": name(a.port),
                        "rule": a.rule, "detail": a.detail})
        elif isinstance(a, (Learn, Refresh)):
            out.append({"action": type(a).__name__.lower(), "vlan": a.vlan,
                        "mac": mac_str(a.mac), "port": name(a.port)})
        else:
            out.append({"action": "output", "port": name(a.port),
                        "vlan_op": VLAN_OP_NAMES[a.vlan_op], "vid": a.vid,
                        "checks": [check(c) for c in a.checks],
                        "mirrors": [mirror(m) for m in a.mirrors]})
    return out
