"""One host's part of a trace: the pipeline's verdict plus what the overlay port does.

``POST /trace`` runs :func:`trace_on_host` on the engine thread. Beside the usual
trace (decision, predicted outcome, tree, text) it adds the frame each port would
get (``outputs``, from the outcome) and, for every output to a VXLAN overlay port,
that port's :meth:`~vspan.ports.vxlan.VxlanPort.plan_tx` (VNI, outer addresses,
datagrams, the underlay MTU check) and, when the frame is given as a VXLAN
payload arriving from a VTEP, the overlay port's
:meth:`~vspan.ports.vxlan.VxlanPort.plan_rx` (accepted or why not, and the frame
the switch then receives). ``vspan trace --vm A --to-vm B`` chains these calls
across hosts (:mod:`vspan.control.dvs.crosstrace`). Nothing changes: the plans
peek at the overlay's MAC table, the pipeline runs with a tracer.
"""

from __future__ import annotations

from typing import Any

from vspan.control import views
from vspan.datapath.engine import Engine
from vspan.ports.vxlan import VxlanPort


class HostTraceError(ValueError):
    """The request cannot be traced here (e.g. a VXLAN payload on a port that is not one)."""


def overlay_sends(engine: Engine, outputs: list[tuple[int, bytes]]) -> list[dict[str, Any]]:
    """The overlay port's send plan for each output that goes to one."""
    rows: list[dict[str, Any]] = []
    for idx, data in outputs:
        backend = engine.backends.get(idx)
        if isinstance(backend, VxlanPort):
            rows.append({"port": engine.state.port_names.get(idx, str(idx))}
                        | backend.plan_tx(data).as_dict())
    return rows


def trace_on_host(engine: Engine, port: str, frame: bytes,
                  from_vtep: str | None = None) -> dict[str, Any]:
    """Trace ``frame`` received on ``port`` (with ``from_vtep``: ``frame`` is a VXLAN
    payload that the overlay port ``port`` receives from that VTEP). Call on the engine
    thread."""
    arrival: dict[str, Any] | None = None
    if from_vtep is not None:
        backend = engine.backends.get(engine.state.by_name[port])
        if not isinstance(backend, VxlanPort):
            raise HostTraceError(f"port {port!r} is not an open vxlan port: it takes no "
                                 "VXLAN payload")
        plan = backend.plan_rx(from_vtep, frame)
        arrival = plan.as_dict()
        if plan.reason:
            return {"port": port, "frame_len": len(frame), "arrival": arrival,
                    "decision": None, "overlay": [], "trace": [],
                    "text": f"overlay    dropped on receipt from {from_vtep}: {plan.reason}"}
        frame = plan.frame
    decision, outcome, tracer = engine.trace(port, frame)
    out = views.trace_view(engine.state, port, frame, decision, outcome, tracer)
    # what the switch would send now (per-frame checks and MTU peeked), frame by frame
    out["overlay"] = overlay_sends(engine, outcome.outputs)
    out["outputs"] = [{"port": engine.state.port_names.get(i, str(i)), "frame": d.hex()}
                      for i, d in outcome.outputs]
    if arrival is not None:
        out["arrival"] = arrival
    return out
