"""A trace across the hosts of a distributed switch: one path, each host's decisions.

:func:`trace_across` asks the source host's agent to trace the frame on the VM's
port (``POST /trace``: that host's own pipeline and live state). Every output to
the overlay port comes back with the overlay port's send plan (VNI, outer
addresses, datagrams, the underlay MTU check); each datagram that would be sent
is handed to the agent of the host owning the target VTEP as the VXLAN payload
it would receive (``POST /trace`` with ``from_vtep``: that host's overlay receive
checks, then its pipeline on the frame as it comes out of the tunnel).
:func:`assemble` turns the answers into one path: hosts in order, the overlay
hops, where the frame is delivered, every drop with host, stage, reason and rule,
and the mirror copies made on each host. Nothing is changed on any host.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vspan.config.dvs import OVERLAY_PORT, DvsConfig, effective_port
from vspan.config.model import PortConfig
from vspan.control.dvs.document import LiveHost
from vspan.datapath.reasons import STAGES, DropReason

#: one host's ``POST /trace``: (host, request body) -> the agent's answer
Ask = Callable[[str, dict[str, Any]], dict[str, Any]]

def _stage(reason: str) -> str:
    """The pipeline stage that gives drop ``reason`` (the datapath's own table)."""
    try:
        return STAGES[DropReason(reason)]
    except (ValueError, KeyError):
        return "pipeline"


class CrossTraceError(Exception):
    """The trace cannot be made (no such VM, a host's agent not running, ...)."""


@dataclass(frozen=True)
class VmEnd:
    """One end of a trace: a VM's port on the distributed switch."""

    port: str
    host: str
    vm: str
    mac: str
    ips: tuple[str, ...]
    config: PortConfig  # the port as its host runs it (port group merged in)

    def vlan_text(self) -> str:
        """The port's VLAN as its port group sets it."""
        v = self.config.vlan
        if v.mode.value == "access":
            return f"access VLAN {v.id}"
        if v.mode.value == "trunk":
            return f"trunk (native {v.native if v.native is not None else 'none'})"
        return "untagged"


def vm_end(dvs: DvsConfig, name: str) -> VmEnd:
    """The port of VM ``name`` (its ``vm`` name, or a port name)."""
    ports = [n for n, p in dvs.ports.items() if p.vm == name]
    if len(ports) > 1:
        raise CrossTraceError(f"VM {name!r} has several ports ({', '.join(sorted(ports))}): "
                              "name the port")
    port = ports[0] if ports else name
    if port not in dvs.ports:
        raise CrossTraceError(f"no VM or port named {name!r} in distributed switch "
                              f"{dvs.switch.name!r}")
    cfg = dvs.ports[port]
    eff = effective_port(dvs, port)
    ips = tuple(str(a).split("/")[0] for a in (eff.policy.addresses if eff.policy else ()))
    return VmEnd(port, cfg.host, cfg.vm or port, str(cfg.mac or ""), ips, eff)


def trace_across(dvs: DvsConfig, live: Mapping[str, LiveHost], src_port: str, frame: bytes,
                 ask: Ask) -> dict[str, Any]:
    """Trace ``frame`` sent by the VM on ``src_port`` through every host it reaches."""
    src_host = dvs.ports[src_port].host
    if src_host not in live:
        raise CrossTraceError(f"host {src_host}'s agent is not running: its part of the "
                              "path cannot be traced")
    first = ask(src_host, {"port": src_port, "frame": frame.hex()})
    by_underlay = {h.underlay: name for name, h in live.items()}
    arrivals: list[dict[str, Any]] = []
    for send in first.get("overlay", []):
        if send.get("reason"):
            continue
        for i, packet in enumerate(send.get("packets", [])):
            if not packet.get("fits", True):
                continue
            for vtep in send.get("targets", []):
                host = by_underlay.get(vtep)
                result = None
                if host is not None:
                    result = ask(host, {"port": OVERLAY_PORT, "frame": packet["payload"],
                                        "from_vtep": send["local_ip"]})
                arrivals.append({"vtep": vtep, "host": host, "packet": i, "result": result})
    return assemble(dvs, src_host, src_port, frame, first, arrivals)


def _drop_row(host: str, d: Mapping[str, Any]) -> dict[str, Any]:
    reason = str(d.get("reason", ""))
    return {"host": host, "stage": _stage(reason), "reason": reason,
            "rule": d.get("rule", ""), "port": d.get("port", ""),
            "detail": d.get("detail", "")}


def _session_to(dvs: DvsConfig, session: str, local: list[str]) -> list[str]:
    """Where a distributed session's copies end up (``local``: the host's own view)."""
    cfg = dvs.mirrors.get(session)
    if cfg is not None and cfg.destinations:
        return [f"{d} ({dvs.ports[d].host})" if d in dvs.ports else d
                for d in cfg.destinations]
    if cfg is not None and cfg.rspan is not None:
        return [f"rspan {cfg.rspan.port} VLAN {cfg.rspan.vlan}"]
    if cfg is not None and cfg.erspan is not None:
        return [f"erspan {cfg.erspan.remote_ip} session {cfg.erspan.session_id}"]
    return local


def _copies(dvs: DvsConfig, host: str, decision: Mapping[str, Any],
            outcome: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The mirror copies a host makes, named by the distributed session: those its
    decision offers, or (when the agent predicts the outcome) those really made."""
    offered: dict[str, tuple[str, list[str]]] = {}
    for c in decision.get("ingress_mirrors", []):
        offered.setdefault(str(c["session"]), ("ingress", list(c.get("destinations", []))))
    for out in decision.get("outputs", []):
        for c in out.get("mirrors", []):
            offered.setdefault(str(c["session"]), (f"egress of {out['port']}",
                                                   list(c.get("destinations", []))))
    made: list[tuple[str, dict[str, Any]]]
    if outcome is None:
        made = [(part, {}) for part in offered]
    else:
        made = [(str(c["session"]), {"bytes": c.get("bytes"), "truncated": c.get("truncated"),
                                     "delivered": c.get("delivered")})
                for c in outcome.get("copies", [])]
    rows = []
    for part, extra in made:
        session = part.removesuffix(".tx").removesuffix(".rx")
        point, local = offered.get(part, ("", []))
        cfg = dvs.mirrors.get(session)
        via = (f"the overlay (mirror VLAN {cfg.overlay_vlan if cfg is not None else '?'})"
               if part.endswith(".tx") else "local")
        rows.append({"host": host, "session": session, "part": part, "point": point,
                     "to": _session_to(dvs, session, local), "via": via} | extra)
    return rows


def _host_part(dvs: DvsConfig, host: str, role: str, result: Mapping[str, Any],
               vm_of: Mapping[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                  list[dict[str, Any]], list[dict[str, Any]]]:
    """One host's entry of the path, and its deliveries, drops and copies. With the
    agent's predicted ``outcome`` (per-frame checks peeked) that decides; otherwise the
    decision does."""
    decision = result.get("decision") or {}
    outcome = result.get("outcome")
    frames = {o["port"]: o["frame"] for o in result.get("outputs", [])}
    ops = {o["port"]: o for o in decision.get("outputs", [])}
    ports = ([o["port"] for o in outcome.get("outputs", [])] if outcome is not None
             else list(ops))
    delivered = []
    for port in ports:
        if port == OVERLAY_PORT:
            continue
        op = ops.get(port, {})
        delivered.append({"host": host, "port": port, "vm": vm_of.get(port),
                          "vlan_op": op.get("vlan_op", "keep"), "vid": op.get("vid", 0),
                          "frame": frames.get(port, "")})
    drops = [_drop_row(host, d) for d in (outcome if outcome is not None
                                          else decision).get("drops", [])]
    arrival = result.get("arrival")
    if arrival is not None and arrival.get("reason"):
        drops.append({"host": host, "stage": "overlay", "reason": arrival["reason"],
                      "rule": "", "port": OVERLAY_PORT,
                      "detail": f"from VTEP {arrival['source']}, VNI {arrival['vni']}"})
    copies = _copies(dvs, host, decision, outcome)
    part = {"host": host, "role": role, "in_port": result.get("port", ""),
            "arrival": arrival, "text": result.get("text", ""),
            "decision": decision or None, "outcome": outcome, "delivered": delivered,
            "drops": drops, "copies": copies}
    return part, delivered, drops, copies


def _hop_rows(src_host: str, sends: list[dict[str, Any]],
              arrivals: list[dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                       list[dict[str, Any]]]:
    """The overlay hops a source host's sends make, and the drops on the way."""
    hops: list[dict[str, Any]] = []
    drops: list[dict[str, Any]] = []
    for send in sends:
        base = {"from_host": src_host, "port": send["port"], "vlan": send["vlan"],
                "vni": send["vni"], "outer_src": send["local_ip"],
                "udp_dport": send["udp_port"], "udp_sport": send["sport"],
                "underlay_mtu": send["underlay_mtu"], "via": send["via"]}
        if send.get("reason"):
            if send["reason"] != "no-vtep":
                drops.append({"host": src_host, "stage": "overlay", "reason": send["reason"],
                              "rule": "", "port": send["port"],
                              "detail": f"VLAN {send['vlan']} at the overlay port"})
            hops.append(base | {"outer_dst": None, "to_host": None, "reason": send["reason"]})
            continue
        for i, packet in enumerate(send["packets"]):
            for vtep in send["targets"]:
                got = next((a for a in arrivals if a["vtep"] == vtep and a["packet"] == i),
                           None)
                to_host = got["host"] if got is not None else None
                reason = "" if packet["fits"] else "mtu"
                if reason:
                    drops.append({"host": src_host, "stage": "overlay", "reason": "mtu",
                                  "rule": "", "port": send["port"],
                                  "detail": f"{packet['outer_ip_bytes']}-byte outer IP packet"
                                            f" > underlay MTU {send['underlay_mtu']}"})
                hops.append(base | {"outer_dst": vtep, "to_host": to_host,
                                    "inner_bytes": packet["inner_bytes"],
                                    "outer_ip_bytes": packet["outer_ip_bytes"],
                                    "fits": packet["fits"], "reason": reason})
    return hops, drops


def assemble(dvs: DvsConfig, src_host: str, src_port: str, frame: bytes,
             first: Mapping[str, Any], arrivals: list[dict[str, Any]]) -> dict[str, Any]:
    """One path from the source host's trace (``first``) and the destination hosts' traces
    of what the overlay delivered to them (``arrivals``: ``vtep``, ``host``, ``packet``,
    ``result``)."""
    vm_of = {name: p.vm or name for name, p in dvs.ports.items()}
    part, delivered, drops, copies = _host_part(dvs, src_host, "source", first, vm_of)
    hosts = [part]
    hops, hop_drops = _hop_rows(src_host, list(first.get("overlay", [])), arrivals)
    drops += hop_drops
    for a in arrivals:
        if a["result"] is None:
            continue
        p, d, x, c = _host_part(dvs, a["host"], "destination", a["result"], vm_of)
        hosts.append(p)
        delivered += d
        drops += x
        copies += c
    notes = [f"VTEP {h['outer_dst']}: no running agent registered it, the path is not "
             "traced beyond the overlay" for h in hops
             if h.get("outer_dst") and h["fits"] and h["to_host"] is None]
    path = {"source": {"host": src_host, "port": src_port, "vm": vm_of.get(src_port)},
            "frame": frame.hex(), "frame_len": len(frame), "hosts": hosts, "overlay": hops,
            "delivered": delivered, "drops": drops, "copies": copies, "notes": notes}
    path["verdict"] = verdict(path)
    return path


def verdict(path: Mapping[str, Any]) -> str:
    """One line: where the frame is delivered and where it is dropped."""
    parts = []
    if path["delivered"]:
        parts.append("delivered to " + ", ".join(
            f"VM {d['vm']} (port {d['port']}, host {d['host']}, VLAN {d['vlan_op']}"
            + (f" {d['vid']}" if d["vlan_op"] in ("push", "set") else "") + ")"
            for d in path["delivered"]))
    for x in path["drops"]:
        rule = f", rule {x['rule']}" if x["rule"] else ""
        parts.append(f"dropped at host {x['host']}, stage {x['stage']}: {x['reason']}"
                     f"{rule} (port {x['port']})")
    return " / ".join(parts) if parts else "nothing delivered"


def render(path: Mapping[str, Any], title: str) -> str:
    """The path as text: each host's decisions, the overlay hops, copies, the verdict."""
    lines = [title]
    hops = list(path["overlay"])
    for part in path["hosts"]:
        arrival = part.get("arrival")
        into = f"into port {part['in_port']}"
        if arrival is not None:
            into += f" from VTEP {arrival['source']} (VNI {arrival['vni']}"
            into += f" -> VLAN {arrival['vlan']})" if arrival["vlan"] >= 0 else ")"
        lines.append(f"host {part['host']} ({part['role']}), {into}:")
        lines += ["  " + t for t in str(part["text"]).splitlines()]
        if part["role"] == "source":
            for h in hops:
                lines.append("  " + hop_text(h))
    if path["copies"]:
        lines.append("mirror copies:")
        for c in path["copies"]:
            lines.append(f"  host {c['host']}: session {c['session']} (part {c['part']}, "
                         f"{c['point']}) to {', '.join(c['to']) or '-'} via {c['via']}")
    lines += [f"note: {n}" for n in path["notes"]]
    lines.append("verdict: " + path["verdict"])
    return "\n".join(lines)


def hop_text(h: Mapping[str, Any]) -> str:
    """One overlay hop as a line."""
    head = f"overlay    VNI {h['vni']} (VLAN {h['vlan']})"
    if h.get("outer_dst") is None:
        return f"{head}: not sent ({h['reason']})"
    size = (f"{h['outer_ip_bytes']}-byte outer IP packet, underlay MTU {h['underlay_mtu']}: "
            + ("fits" if h["fits"] else "too big, dropped (mtu)"))
    to = f"host {h['to_host']}" if h["to_host"] else "no running agent there"
    return (f"{head} {h['outer_src']}:{h['udp_sport']} -> {h['outer_dst']}:{h['udp_dport']} "
            f"({to}; VTEP {h['via']}); {size}")
