"""Mirror sessions of a distributed switch, planned per host (cross-host mirroring).

A session's sources and destination may sit on different hosts. Copies cross
the overlay as **RSPAN over VXLAN**: every session whose copies may need to
travel has a mirror VLAN of its own (``overlay_vlan``, from the range
``switch.mirror_vlans`` that no port may use), which the overlay maps to its own
VNI (``vni_base + VLAN``) with a flood list holding only the hosts that receive
the session's copies. So a copy is replicated head-end to the destination
host(s) and nowhere else, and it is never switched as normal traffic (the
receiving host hands that VLAN to the session only).

On each host a session runs as up to three parts (single-host sessions):

* ``S`` — sources here, destination here (local ports, the RSPAN uplink, or an
  ERSPAN target, which every host with sources sends to itself);
* ``S.tx`` — sources here, copies for other hosts: an RSPAN session whose uplink
  is the overlay port and whose VLAN is the mirror VLAN. For local-port
  destinations it pushes the mirror tag onto the frame as seen (a tagged frame
  keeps its tag: ``keep_original_tag`` without ``tag_untagged``); for an RSPAN
  uplink elsewhere it makes the copy the uplink's session would make, with the
  mirror VLAN in place of the RSPAN VLAN;
* ``S.rx`` — copies from other hosts: ``rspan_source`` on the overlay port with
  the mirror VLAN, delivered to the local destination ports (tag stripped), or
  relayed out of the RSPAN uplink with its VLAN in place of the mirror VLAN.

Filter, sampling and truncation run where the copy is made (``S``, ``S.tx``);
the receiving part takes what arrives. Direction is per source as configured.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from vspan.config.dvs import OVERLAY_PORT, DvsConfig, DvsMirrorSession, group_members
from vspan.control.dvs.document import LiveHost

ROLE_LOCAL = "local"
ROLE_TX = "tx"
ROLE_RX = "rx"
_SESSION_KEYS = ("enabled", "filter", "mirrored_packet_length", "sampling_rate", "description")


@dataclass
class MirrorPlan:
    """What one host runs of the switch's sessions."""

    sessions: dict[str, Any] = field(default_factory=dict)  # part name -> session data
    parts: dict[str, tuple[str, str]] = field(default_factory=dict)  # part -> (session, role)
    flood: dict[int, list[str]] = field(default_factory=dict)  # mirror VLAN -> receivers
    receive: set[int] = field(default_factory=set)  # mirror VLANs received here
    notes: list[str] = field(default_factory=list)

    @property
    def vlans(self) -> set[int]:
        """The mirror VLANs this host's overlay port must carry."""
        return set(self.flood) | self.receive


def part_name(session: str, role: str) -> str:
    """The single-host session name of a part (``web``, ``web.tx``, ``web.rx``)."""
    return session if role == ROLE_LOCAL else f"{session}.{role}"


def _sources(dvs: DvsConfig, s: DvsMirrorSession) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for src in s.sources:
        names = [src.port] if src.port else group_members(dvs, src.port_group or "")
        for n in names:
            if n in dvs.ports and n not in seen:
                seen.add(n)
                out.append((n, src.direction.value))
    return out


def plan_mirrors(dvs: DvsConfig, host: str, local: Collection[str],
                 live: Mapping[str, LiveHost]) -> MirrorPlan:
    """This host's parts of every session (``local``: the ports attached here; placement
    on other hosts comes from the configuration, their addresses from ``live``)."""
    plan = MirrorPlan()
    for sname, s in dvs.mirrors.items():
        base = {k: v for k, v in s.model_dump(mode="json", exclude_unset=True).items()
                if k in _SESSION_KEYS}
        if s.rspan_source is not None:  # a physical mirror VLAN's receiver: on its host
            if s.rspan_source.port in local:
                data = s.model_dump(mode="json", exclude_unset=True)
                data.pop("overlay_vlan", None)
                data["destinations"] = [d for d in s.destinations if d in local]
                if data["destinations"]:
                    plan.sessions[sname] = data
                    plan.parts[sname] = (sname, ROLE_LOCAL)
            continue
        sources = _sources(dvs, s)
        src_hosts = {dvs.ports[p].host for p, _ in sources}
        here = [{"port": p, "direction": d} for p, d in sources if p in local]
        if s.erspan is not None:  # every host with sources sends to the target itself
            if here:
                plan.sessions[sname] = base | {
                    "sources": here, "erspan": s.erspan.model_dump(mode="json",
                                                                   exclude_unset=True)}
                plan.parts[sname] = (sname, ROLE_LOCAL)
            continue
        if s.rspan is not None:
            uplink = s.rspan.port
            receivers = {dvs.ports[uplink].host} if uplink in dvs.ports else set()
        else:
            receivers = {dvs.ports[d].host for d in s.destinations if d in dvs.ports}
        vlan = s.overlay_vlan
        others = sorted(receivers - {host})
        if here and receivers & {host}:
            _local_part(plan, sname, s, base, here, local)
        if here and others:
            if vlan is None:
                plan.notes.append(f"mirror {sname}: no overlay VLAN assigned (apply the "
                                  "configuration again with this vspan)")
            else:
                _tx_part(plan, sname, s, base, here, vlan, others, live)
        if host in receivers and src_hosts - {host} and vlan is not None:
            _rx_part(plan, sname, s, vlan, local)
    return plan


def _local_part(plan: MirrorPlan, sname: str, s: DvsMirrorSession, base: dict[str, Any],
                here: list[dict[str, str]], local: Collection[str]) -> None:
    if s.rspan is not None:
        if s.rspan.port not in local:
            plan.notes.append(f"mirror {sname}: the RSPAN uplink {s.rspan.port} is not "
                              "attached here; copies of the sources here are not made")
            return
        data = base | {"sources": here, "rspan": s.rspan.model_dump(mode="json",
                                                                    exclude_unset=True)}
    else:
        dests = [d for d in s.destinations if d in local]
        if not dests:
            return
        data = base | {"sources": here, "destinations": dests}
        if s.allow_normal_io:
            data["allow_normal_io"] = True
    plan.sessions[sname] = data
    plan.parts[sname] = (sname, ROLE_LOCAL)


def _tx_part(plan: MirrorPlan, sname: str, s: DvsMirrorSession, base: dict[str, Any],
             here: list[dict[str, str]], vlan: int, others: list[str],
             live: Mapping[str, LiveHost]) -> None:
    targets = sorted({live[h].underlay for h in others if h in live and live[h].underlay})
    missing = [h for h in others if h not in live]
    if missing:
        plan.notes.append(f"mirror {sname}: copies for host {', '.join(missing)} are not sent "
                          "(no agent registered there)")
    if s.rspan is not None:  # the copy the uplink's session would make, on the mirror VLAN
        rspan = {"port": OVERLAY_PORT, "vlan": vlan,
                 "keep_original_tag": s.rspan.keep_original_tag,
                 "tag_untagged": s.rspan.tag_untagged}
    else:  # the frame as seen, with the mirror tag on top
        rspan = {"port": OVERLAY_PORT, "vlan": vlan, "keep_original_tag": True,
                 "tag_untagged": False}
    name = part_name(sname, ROLE_TX)
    plan.sessions[name] = base | {"sources": here, "rspan": rspan}
    plan.parts[name] = (sname, ROLE_TX)
    plan.flood[vlan] = targets


def _rx_part(plan: MirrorPlan, sname: str, s: DvsMirrorSession, vlan: int,
             local: Collection[str]) -> None:
    data: dict[str, Any] = {"enabled": s.enabled,
                            "rspan_source": {"port": OVERLAY_PORT, "vlan": vlan}}
    if s.rspan is not None:
        if s.rspan.port not in local:
            plan.notes.append(f"mirror {sname}: the RSPAN uplink {s.rspan.port} is not "
                              "attached here; copies from other hosts are not relayed")
            return
        data["rspan"] = {"port": s.rspan.port, "vlan": s.rspan.vlan}
    else:
        dests = [d for d in s.destinations if d in local]
        if not dests:
            plan.notes.append(f"mirror {sname}: no destination port attached here; copies "
                              "from other hosts are dropped")
            return
        data["destinations"] = dests
        if s.allow_normal_io:
            data["allow_normal_io"] = True
    name = part_name(sname, ROLE_RX)
    plan.sessions[name] = data
    plan.parts[name] = (sname, ROLE_RX)
    plan.receive.add(vlan)


def summed_counters(parts: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, int]:
    """One session's counters over the hosts that run a part of it.

    ``parts``: host -> role -> that part's counters. Per host the source-side parts
    (``local``, ``tx``) see the same frames, so what counts frames (offered,
    sampled out, truncated) is taken once per host; copies are counted where they
    are delivered: ``mirrored`` = copies delivered to destinations (local parts and
    the receiving parts), ``overlay_sent`` / ``overlay_received`` = copies that
    crossed the overlay, ``dropped`` = copies lost anywhere.
    """
    out = {"offered": 0, "sampled_out": 0, "truncated": 0, "mirrored": 0, "dropped": 0,
           "overlay_sent": 0, "overlay_received": 0}
    for roles in parts.values():
        src = [roles[r] for r in (ROLE_LOCAL, ROLE_TX) if r in roles]
        for k in ("offered", "sampled_out", "truncated"):
            out[k] += max((int(c.get(k, 0)) for c in src), default=0)
        local = roles.get(ROLE_LOCAL, {})
        tx = roles.get(ROLE_TX, {})
        rx = roles.get(ROLE_RX, {})
        out["mirrored"] += int(local.get("mirrored", 0)) + int(rx.get("mirrored", 0))
        out["overlay_sent"] += int(tx.get("mirrored", 0))
        out["overlay_received"] += int(rx.get("offered", 0))
        out["dropped"] += sum(int(c.get("dropped", 0)) for c in (local, tx, rx))
        for c in (local, tx, rx):  # ERSPAN sender counters and the like, as they are
            for k, v in c.items():
                if k.startswith("encap_") or k == "loop_skipped":
                    out[k] = out.get(k, 0) + int(v)
    return out
