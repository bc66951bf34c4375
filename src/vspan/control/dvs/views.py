"""Cluster-wide views of a distributed switch for ``vspan dvs show`` (JSON-ready rows)."""

from __future__ import annotations

import time
from typing import Any

from vspan.config.dvs import DvsConfig, effective_port, group_members
from vspan.config.model import PortConfig
from vspan.config.policy import active_guards
from vspan.control.dvs.document import ClusterState
from vspan.control.dvs.mirrorplan import summed_counters


def vlan_text(cfg: PortConfig) -> str:
    """``access 10`` / ``trunk 10,20 native 1`` / ``untagged``."""
    v = cfg.vlan
    if v.mode.value == "access":
        return f"access {v.id}"
    if v.mode.value == "trunk":
        allowed = ",".join(str(x) for x in v.allowed) or "-"
        return f"trunk {allowed} native {v.native if v.native is not None else '-'}"
    return "untagged"


def hosts_view(st: ClusterState, dvs: DvsConfig, statuses: dict[str, dict[str, Any]],
               now: float | None = None) -> list[dict[str, Any]]:
    """One row per host: declared, registered (lease alive) or reporting."""
    now = now if now is not None else time.time()
    rows = []
    for host in sorted(set(dvs.hosts) | set(st.live) | set(statuses)):
        live = st.live.get(host)
        rep = statuses.get(host, {})
        store = rep.get("store", {})
        applied = rep.get("applied", {}).get("generation")
        last = rep.get("time")
        rows.append({
            "host": host,
            "declared": host in dvs.hosts,
            "status": "up" if live is not None else "down",
            "underlay": live.underlay if live is not None else rep.get("underlay", ""),
            "ports": sum(1 for p in dvs.ports.values() if p.host == host),
            "store": store.get("state", "") if live is not None else "",
            "applied_generation": applied,
            "in_sync": applied == st.meta.generation if live is not None else None,
            "last_report": last,
            "last_report_age": round(now - last, 1) if last else None,
            "refused": rep.get("refused"),
            "errors": rep.get("errors", []),
            "notes": rep.get("notes", []),
            "version": live.version if live is not None else "",
        })
    return rows


def ports_view(st: ClusterState, dvs: DvsConfig, statuses: dict[str, dict[str, Any]],
               host: str | None = None) -> list[dict[str, Any]]:
    """One row per port with its state on its host (``down`` when the host is down)."""
    rows = []
    for name, port in dvs.ports.items():
        if host is not None and port.host != host:
            continue
        eff = effective_port(dvs, name)
        rep = statuses.get(port.host, {}).get("ports", {}).get(name, {})
        if port.host not in st.live:
            state, reason = "down", f"host {port.host} is down"
        elif not rep:
            state, reason = "unknown", "no report from the host yet"
        else:
            state, reason = rep.get("state", "unknown"), rep.get("reason", "")
        if not port.enabled:
            state, reason = "down", "disabled"
        rows.append({
            "port": name, "port_id": str(port.port_id), "vm": port.vm or "",
            "mac": port.mac or "", "host": port.host, "port_group": port.port_group or "",
            "interface": port.ifname(name), "vlan": vlan_text(eff), "state": state,
            "reason": reason,
            "rx_frames": rep.get("rx_frames", 0), "tx_frames": rep.get("tx_frames", 0),
            "rx_bytes": rep.get("rx_bytes", 0), "tx_bytes": rep.get("tx_bytes", 0),
            "dropped": rep.get("dropped", 0),
        })
    return rows


def port_groups_view(dvs: DvsConfig, host: str | None = None) -> list[dict[str, Any]]:
    """One row per port group."""
    rows = []
    for name, g in dvs.port_groups.items():
        members = [p for p in group_members(dvs, name)
                   if host is None or dvs.ports[p].host == host]
        pol = g.policy
        guards = active_guards(pol.guards) if pol is not None else []
        rows.append({
            "port_group": name, "vlan": vlan_text(PortConfig(vlan=g.vlan)),
            "ports": members, "hosts": sorted({dvs.ports[p].host for p in members}),
            "acls": len(pol.acls) if pol else 0,
            "extended_acls": len(pol.extended_acls) if pol else 0,
            "guards": guards, "description": g.description,
        })
    return rows


def mirrors_view(dvs: DvsConfig, statuses: dict[str, dict[str, Any]],
                 host: str | None = None) -> list[dict[str, Any]]:
    """One row per session; counters summed over the hosts that run a part of it."""
    rows = []
    for name, s in dvs.mirrors.items():
        sources = [f"{src.port or 'group:' + (src.port_group or '')}:{src.direction.value}"
                   for src in s.sources]
        if s.erspan is not None:
            dests = [f"{s.erspan.type.value}:{s.erspan.remote_ip}#{s.erspan.session_id}"]
        elif s.rspan is not None:
            dests = [f"rspan:{s.rspan.port}/vlan{s.rspan.vlan}"]
        else:
            dests = list(s.destinations)
        if s.rspan_source is not None:
            sources = [f"rspan:{s.rspan_source.port}/vlan{s.rspan_source.vlan}"]
        parts: dict[str, dict[str, dict[str, Any]]] = {}
        per_host: dict[str, str] = {}
        for h, rep in sorted(statuses.items()):
            if host is not None and h != host:
                continue
            entry = rep.get("mirrors", {}).get(name)
            if entry is None:
                continue
            per_host[h] = entry.get("status", "")
            # an agent of an earlier version reports one part's counters only
            parts[h] = entry.get("parts") or {"local": entry.get("counters", {})}
        rows.append({"name": name, "enabled": s.enabled, "sources": sources,
                     "destinations": dests, "filter": s.filter, "hosts": per_host,
                     "overlay_vlan": s.overlay_vlan,
                     "roles": {h: sorted(p) for h, p in parts.items()},
                     "counters": summed_counters(parts)})
    return rows
