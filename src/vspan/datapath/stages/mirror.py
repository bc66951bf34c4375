"""Ingress and egress taps: which mirror sessions copy a frame, and where."""

from __future__ import annotations

from dataclasses import replace

from vspan.datapath.decision import VLAN_KEEP, VLAN_POP, Decision, MirrorCopy
from vspan.datapath.state import MIRROR_ERSPAN, MIRROR_RSPAN, MirrorRuntime, PortRuntime
from vspan.datapath.trace import Tracer


def _describe(m: MirrorRuntime, names: dict[int, str]) -> str:
    c = m.config
    if m.kind == MIRROR_RSPAN and c.rspan is not None:
        dests = f"RSPAN VLAN {c.rspan.vlan} via {names.get(m.uplink, str(m.uplink))}"
    elif m.kind == MIRROR_ERSPAN and c.erspan is not None:
        e = c.erspan
        dests = f"{e.type.value} session {e.session_id} to {e.remote_ip}"
    else:
        dests = ", ".join(names.get(d, str(d)) for d in m.dest_ports)
    extra = []
    if c.filter:
        extra.append(f"filter '{c.filter}'")
    if m.config.mirrored_packet_length:
        extra.append(f"truncate {m.config.mirrored_packet_length}")
    if m.config.sampling_rate > 1:
        extra.append(f"sample 1/{m.config.sampling_rate}")
    return f"-> {dests}" + (f" ({', '.join(extra)})" if extra else "")


def ingress_copies(port: PortRuntime, mirrors: list[MirrorRuntime], names: dict[int, str],
                   tr: Tracer) -> tuple[MirrorCopy, ...]:
    """Copies of the frame as ``port`` sent it (before any policy)."""
    out: list[MirrorCopy] = []
    for s in port.mirror_ingress:
        m = mirrors[s]
        if not m.enabled:
            continue
        out.append(MirrorCopy(s, "ingress"))
        if tr.enabled:
            tr.report("mirror", f"session {m.name}: ingress copy {_describe(m, names)}",
                      session=m.name, point="ingress")
    return tuple(out)


def with_vlan(copies: tuple[MirrorCopy, ...], vlan: int) -> tuple[MirrorCopy, ...]:
    """``copies`` marked with the VLAN the frame was classified in (once it is known)."""
    return tuple(replace(c, vlan=vlan) for c in copies) if vlan > 0 else copies


def egress_copies(port: PortRuntime, mirrors: list[MirrorRuntime], names: dict[int, str],
                  already: set[int], vlan_op: int, vid: int, tr: Tracer, vlan: int = 0
                  ) -> tuple[MirrorCopy, ...]:
    """Copies of the frame (of ``vlan``) as delivered to ``port``, skipping sessions that
    have one."""
    out: list[MirrorCopy] = []
    for s in port.mirror_egress:
        m = mirrors[s]
        if not m.enabled:
            continue
        if s in already:
            if tr.enabled:
                tr.report("mirror", f"session {m.name}: already copied this frame, no second copy")
            continue
        already.add(s)
        out.append(MirrorCopy(s, "egress", vlan_op, vid, max(vlan, 0)))
        if tr.enabled:
            tr.report("mirror", f"session {m.name}: egress copy {_describe(m, names)}",
                      session=m.name, point="egress")
    return tuple(out)


def rspan_delivery(port: PortRuntime, vlan: int, mirrors: list[MirrorRuntime],
                   names: dict[int, str], tr: Tracer) -> Decision:
    """A frame of a mirror VLAN on an uplink: hand it to the remote-destination session only
    (which delivers it to its destination ports, or relays it on another mirror VLAN)."""
    s = port.rspan_in[vlan]
    m = mirrors[s]
    relay = m.config.rspan
    strip = relay is None and (m.config.rspan_source is None or m.config.rspan_source.strip_tag)
    if tr.enabled:
        if relay is not None:
            tr.report("mirror", f"VLAN {vlan} on {port.name} is the RSPAN VLAN of session "
                      f"{m.name}: relay out of {names.get(m.uplink, str(m.uplink))} on VLAN "
                      f"{relay.vlan}, never switched")
        else:
            dests = ", ".join(names.get(d, str(d)) for d in m.dest_ports)
            how = "tag stripped" if strip else "as received"
            tr.report("mirror", f"VLAN {vlan} on {port.name} is the RSPAN VLAN of session "
                      f"{m.name}: deliver to {dests} ({how}), never switched")
    return Decision((MirrorCopy(s, "rspan", VLAN_POP if strip else VLAN_KEEP),))
