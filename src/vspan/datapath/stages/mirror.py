"""Ingress and egress taps: which mirror sessions copy a frame, decided per flow.

A session's filter reads the flow key (and, for ``less``/``greater``, the
frame length): it is decided here, once per flow, into the copy's length
ranges; a flow the filter never passes gets no copy and the trace lists none.
Sampling (1 in n) and truncation are parameters of the copy action.
"""

from __future__ import annotations

from collections.abc import Mapping

from vspan.datapath.decision import (
    ALL_LENGTHS,
    MIRROR_ERSPAN,
    MIRROR_RSPAN,
    POINT_EGRESS,
    POINT_INGRESS,
    POINT_RSPAN,
    VLAN_KEEP,
    VLAN_POP,
    VLAN_PUSH,
    VLAN_SET,
    Mirror,
)
from vspan.datapath.flowkey import UNTAGGED, FlowKey, lenient_key
from vspan.datapath.state import MirrorRuntime, PortRuntime
from vspan.datapath.trace import Tracer

_ANY = ((0, 0xFFFFFFFF),)


def _describe(m: MirrorRuntime, names: Mapping[int, str]) -> str:
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


def _lengths(m: MirrorRuntime, key: FlowKey | None, data: bytes
             ) -> tuple[tuple[int, int], ...] | None:
    """The length ranges the session's filter passes for this flow (``None``: never)."""
    f = m.filter
    if f is None:
        return ALL_LENGTHS
    if key is None:  # malformed: judged on what is whole (such decisions are never cached)
        lk = lenient_key(data)
        n = len(data)
        if lk is None or not any(lo <= n <= hi for lo, hi in f.lengths(lk)):
            return None
        return ALL_LENGTHS
    spans = f.lengths(key)
    if not spans:
        return None
    return ALL_LENGTHS if spans == _ANY else spans


def _copy(m: MirrorRuntime, point: str, lengths: tuple[tuple[int, int], ...], vlan: int,
          vlan_op: int = VLAN_KEEP) -> Mirror:
    c = m.config
    return Mirror(m.index, point, m.kind, vlan_op, 0, c.mirrored_packet_length or 0,
                  max(c.sampling_rate, 1), lengths, vlan)


def _report(tr: Tracer, m: MirrorRuntime, what: str, names: Mapping[int, str],
            lengths: tuple[tuple[int, int], ...], point: str) -> None:
    only = ""
    if lengths:
        only = " for frames of " + ", ".join(
            f"{lo}-{hi}" if hi < 0xFFFFFFFF else f"{lo} or more" for lo, hi in lengths
        ) + " bytes"
    tr.report("mirror", f"session {m.name}: {what} {_describe(m, names)}{only}",
              session=m.name, point=point)


def _filtered_out(tr: Tracer, m: MirrorRuntime) -> None:
    tr.report("mirror", f"session {m.name}: filter '{m.config.filter}' does not pass this "
              "flow: no copy", session=m.name)


def ingress_copies(port: PortRuntime, mirrors: Mapping[int, MirrorRuntime],
                   names: Mapping[int, str], key: FlowKey | None, data: bytes,
                   tr: Tracer) -> list[Mirror]:
    """Copies of the frame as ``port`` sent it (before any policy)."""
    out: list[Mirror] = []
    for s in port.mirror_ingress:
        m = mirrors[s]
        if not m.enabled:
            continue
        lengths = _lengths(m, key, data)
        if lengths is None:
            if tr.enabled:
                _filtered_out(tr, m)
            continue
        out.append(_copy(m, POINT_INGRESS, lengths, 0))
        if tr.enabled:
            _report(tr, m, "ingress copy", names, lengths, POINT_INGRESS)
    return out


def with_vlan(copies: list[Mirror], vlan: int) -> list[Mirror]:
    """``copies`` marked with the VLAN the frame was classified in (ERSPAN, RSPAN use it)."""
    if vlan <= 0:
        return copies
    return [Mirror(c.session, c.point, c.encap, c.vlan_op, c.vid, c.truncate, c.sample,
                   c.lengths, vlan) for c in copies]


def delivered_key(key: FlowKey, op: int, vid: int) -> FlowKey:
    """The flow key of the frame as delivered after VLAN operation ``op`` (what an egress
    copy's filter reads: the tags change, nothing else it looks at does)."""
    if op == VLAN_KEEP:
        return key
    if op == VLAN_POP:
        return key._replace(vlan=key.inner_vlan, inner_vlan=UNTAGGED)
    if op == VLAN_PUSH:
        return key._replace(vlan=vid, inner_vlan=key.vlan)
    if op == VLAN_SET:
        return key._replace(vlan=vid)
    raise ValueError(f"unknown VLAN operation {op}")


def egress_copies(port: PortRuntime, mirrors: Mapping[int, MirrorRuntime],
                  names: Mapping[int, str], already: set[int], key: FlowKey | None,
                  data: bytes, vlan_op: int, vid: int, vlan: int, tr: Tracer
                  ) -> tuple[Mirror, ...]:
    """Copies of the frame (of ``vlan``) as delivered to ``port``, skipping sessions that
    have one (a frame is mirrored at most once per session). Without a ``key`` (a frame
    that cannot be parsed) a filtered session judges what of ``data`` is whole."""
    out: list[Mirror] = []
    dkey: FlowKey | None = None
    for s in port.mirror_egress:
        m = mirrors[s]
        if not m.enabled:
            continue
        if s in already:
            if tr.enabled:
                tr.report("mirror", f"session {m.name}: already copied this frame, no second copy")
            continue
        if dkey is None and key is not None:
            dkey = delivered_key(key, vlan_op, vid)
        lengths = _lengths(m, dkey, data)
        if lengths is None:
            if tr.enabled:
                _filtered_out(tr, m)
            continue
        already.add(s)
        out.append(_copy(m, POINT_EGRESS, lengths, max(vlan, 0)))
        if tr.enabled:
            _report(tr, m, "egress copy", names, lengths, POINT_EGRESS)
    return tuple(out)


def rspan_delivery(port: PortRuntime, vlan: int, mirrors: Mapping[int, MirrorRuntime],
                   names: Mapping[int, str], key: FlowKey, data: bytes,
                   tr: Tracer) -> list[Mirror]:
    """A frame of a mirror VLAN on an uplink: hand it to the remote-destination session only
    (which delivers it to its destination ports, or relays it on another mirror VLAN)."""
    s = port.rspan_in[vlan]
    m = mirrors[s]
    relay = m.config.rspan
    strip = relay is None and (m.config.rspan_source is None or m.config.rspan_source.strip_tag)
    lengths = _lengths(m, key, data)
    if lengths is None:
        if tr.enabled:
            _filtered_out(tr, m)
        return []
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
    return [_copy(m, POINT_RSPAN, lengths, 0, VLAN_POP if strip else VLAN_KEEP)]
