"""JSON-ready views of the running switch (ports, FDB, mirrors, counters, decisions)."""

from __future__ import annotations

from typing import Any

from vspan.datapath import accounting
from vspan.datapath.decision import Decision
from vspan.datapath.engine import Engine
from vspan.datapath.flowkey import mac_str
from vspan.datapath.predict import Outcome, describe_actions
from vspan.datapath.state import SwitchState
from vspan.datapath.trace import Tracer
from vspan.ports.team import TeamPort
from vspan.ports.vxlan import VxlanPort


def _overlays(engine: Engine) -> list[VxlanPort]:
    """The open VXLAN overlay backends, in port order."""
    return [b for _, b in sorted(engine.backends.items()) if isinstance(b, VxlanPort)]


def ports_view(engine: Engine) -> list[dict[str, Any]]:
    """One row per port."""
    rows: list[dict[str, Any]] = []
    st = engine.state
    for rt in st.ports.values():
        v = rt.config.vlan
        if v.mode.value == "access":
            vlan = f"access {v.id}"
        elif v.mode.value == "trunk":
            allowed = ",".join(str(x) for x in v.allowed) or "-"
            vlan = f"trunk {allowed} native {v.native if v.native is not None else '-'}"
        elif rt.config.vxlan is not None:
            vlan = "vxlan " + ",".join(f"{v}:{n}" for v, n in sorted(rt.config.vxlan.vnis.items()))
        else:
            vlan = "untagged"
        role = []
        if rt.mirror_dest:
            role.append("mirror-dest" + ("" if not rt.allow_normal_io else "+io"))
        if rt.mirror_ingress or rt.mirror_egress:
            role.append("mirror-src")
        backend = engine.backends.get(rt.index)
        row: dict[str, Any] = {}
        if isinstance(backend, TeamPort):
            row["team"] = backend.status()
        if backend is not None and "rx_steering" in (extra := backend.info().extra):
            row["rx_steering"] = extra["rx_steering"]  # vspan.ports.rxsteer: what and why
        rows.append({
            "name": rt.name,
            "index": rt.index,
            "type": rt.config.type.value,
            "interface": (",".join(rt.config.interfaces(rt.name)) if rt.config.vxlan is None
                          else f"{rt.config.vxlan.local_ip}:{rt.config.vxlan.udp_port}"),
            "enabled": rt.config.enabled,
            "link": "up" if rt.link else "down",
            "vlan": vlan,
            "role": ",".join(role),
            "counters": rt.counters.as_dict(),
            "backend_counters": backend.counters.as_dict() if backend is not None else {},
            "macs": st.fdb.per_port.get(rt.index, 0),
            # the switch's egress check (a vxlan port: the MTU its VMs must use), else
            # the interface's MTU
            "mtu": rt.mtu or (backend.info().mtu if backend is not None else None),
        } | row)
    return rows


def fdb_view(engine: Engine) -> list[dict[str, Any]]:
    """Learned MACs, sorted by VLAN and MAC."""
    st = engine.state
    now = engine.clock()
    rows = []
    overlays = {o.name: o for o in _overlays(engine)}
    for (vlan, mac), e in sorted(st.fdb.entries.items()):
        port = st.port_names.get(e.port, str(e.port))
        overlay = overlays.get(port)
        rows.append({
            "vlan": vlan,
            "mac": mac_str(mac),
            "port": port,
            "age": 0 if e.static else round(now - e.last_seen, 1),
            "static": e.static,
            # behind an overlay port: the remote host (None: unknown there, flooded)
            "vtep": overlay.remote_vtep(vlan, mac) if overlay is not None else None,
        })
    return rows


def vteps_view(engine: Engine) -> dict[str, Any]:
    """Overlay ports: their totals and drops, each VTEP's counters, the MAC->VTEP table."""
    overlays = _overlays(engine)
    now_rows = [dict(r, port=o.name) for o in overlays for r in o.table.rows(o.clock())]
    return {
        "ports": [o.overlay_stats() for o in overlays],
        "vteps": [row for o in overlays for row in o.vtep_rows()],
        "table": now_rows,
    }


def mirrors_view(engine: Engine) -> list[dict[str, Any]]:
    """One row per mirror session with its counters."""
    rows = []
    for m in engine.state.mirrors.values():
        c = m.config
        if c.erspan is not None:
            dests = [f"{c.erspan.type.value}:{c.erspan.remote_ip}#{c.erspan.session_id}"]
        elif c.rspan is not None:
            dests = [f"rspan:{c.rspan.port}/vlan{c.rspan.vlan}"]
        else:
            dests = list(c.destinations)
        if c.rspan_source is not None:
            sources = [f"rspan:{c.rspan_source.port}/vlan{c.rspan_source.vlan}"]
        else:
            sources = [f"{s.port}:{s.direction.value}" for s in c.sources]
        rows.append({
            "name": m.name,
            "enabled": c.enabled,
            "kind": m.kind,
            "sources": sources,
            "destinations": dests,
            "filter": c.filter,
            "status": m.dest_error or (f"loop guard: {m.loop_guard_port} not mirrored"
                                       if m.loop_guard_port else "ok"),
            "allow_normal_io": c.allow_normal_io,
            "mirrored_packet_length": c.mirrored_packet_length,
            "sampling_rate": c.sampling_rate,
            "stop_at": c.stop_at.isoformat() if c.stop_at is not None else None,
            "max_bytes": c.max_bytes,
            "counters": m.counters(),
        })
    return rows


def counters_view(engine: Engine) -> dict[str, Any]:
    """Per-port counters, per-reason drops and flow-cache statistics."""
    st = engine.state
    drops = [
        {"port": st.port_names.get(p, str(p)), "reason": r, "rule": rule, "frames": n}
        for (p, r, rule), n in sorted(st.drops.by_key.items())
    ]
    return {
        "ports": {rt.name: rt.counters.as_dict() for rt in st.ports.values()},
        "rx_dropped": {rt.name: rt.counters.rx_dropped_by_reason()
                       for rt in st.ports.values()},
        "drops": drops,
        "flow_cache": engine.cache.stats(),
        "fdb": {"entries": len(st.fdb), "learned": st.fdb.learned, "moves": st.fdb.moves},
        "batches": engine.batches,
        "upcalls": engine.upcall.upcalls,
        "poll": engine.poll_stats(),
        "upcall_budget": {"rate": engine.upcall.budget.rate,
                          "dropped": engine.upcall.budget_drops},
    }


def accounting_view(engine: Engine) -> dict[str, Any]:
    """The accounting invariant per port (``docs/accounting.md``): its terms, and the
    ports where it fails with their difference."""
    rows = accounting.accounts(engine.state)
    bad = [a for a in rows if a.difference]
    return {"ok": not bad, "ports": [a.as_dict() for a in rows],
            "failures": [a.describe() for a in bad]}


def decision_view(state: SwitchState, d: Decision) -> dict[str, Any]:
    """A decision with port and session names instead of indexes: its action list, and
    the same grouped (outputs with their egress copies, ingress copies, static drops,
    learning)."""
    actions = describe_actions(d, state)
    learn = d.learn
    names = state.port_names
    return {
        "actions": actions,
        "cacheable": d.cacheable,
        "outputs": [a for a in actions if a["action"] == "output"],
        "ingress_mirrors": [a for a in actions if a["action"] == "mirror"],
        "drops": [a for a in actions if a["action"] == "drop"],
        "learn": ({"vlan": learn.vlan, "mac": mac_str(learn.mac),
                   "port": names.get(learn.port, str(learn.port))} if learn else None),
    }


def trace_view(state: SwitchState, port: str, frame: bytes, d: Decision, outcome: Outcome,
               tracer: Tracer) -> dict[str, Any]:
    """What ``vspan trace`` prints: the decision, what it does now, the trace tree, its
    text and its verdict line."""
    done = outcome.as_dict(state)
    return {
        "port": port,
        "frame_len": len(frame),
        "decision": decision_view(state, d),
        "outcome": done,
        "trace": [c.as_dict() for c in tracer.root.children],
        "text": tracer.render(),
        "verdict": "verdict: " + str(done["verdict"]),
    }

