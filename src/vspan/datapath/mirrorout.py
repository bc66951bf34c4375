"""Mirror copies on their way out: what a :class:`~vspan.datapath.decision.Mirror`
action does with one frame, committed (forwarding) or predicted (trace).

:meth:`MirrorOut.route` is the one place that decides a copy's fate — offered
(the filter's length ranges), sampled (1 in n of the session's offered
frames), segmented in software when an offloaded frame must be cut or
encapsulated, truncated, tagged (RSPAN) — and where it goes; :meth:`emit`
delivers what it decides and counts, :meth:`predict` only reports it.

Remote (ERSPAN/GRE) sessions send through senders the layer above provides
(:class:`~vspan.datapath.plugins.RemoteMirrors`); :meth:`MirrorOut.sync_senders`
opens and closes them and keeps the port carrying the encapsulated copies out
of the session's sources (loop guard).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from vspan.datapath.decision import (
    MIRROR_ERSPAN,
    MIRROR_LOCAL,
    MIRROR_RSPAN,
    POINT_EGRESS,
    VLAN_KEEP,
    Mirror,
)
from vspan.datapath.plugins import MirrorSender, RemoteMirrors
from vspan.datapath.state import MirrorRuntime, SwitchState
from vspan.datapath.vlanops import apply as vlan_apply
from vspan.datapath.vlanops import rspan_copy
from vspan.packet.errors import PacketError
from vspan.ports.base import Frame
from vspan.ports.offload import finalize
from vspan.ports.vnet import is_plain as vnet_is_plain
from vspan.ports.vnet import shift as vnet_shift

log = logging.getLogger(__name__)

TO_SENDER = -1  # a delivery to the session's remote (ERSPAN) sender, not to a port


class Delivery(NamedTuple):
    """One copy leaving: to a port (RSPAN uplink, local destination) or to the sender."""

    session: int
    port: int  # port index, or TO_SENDER
    data: bytes
    vnet: bytes = b""
    truncated: bool = False
    egress: bool = False  # ERSPAN direction bit: copied on egress
    vlan: int = 0  # ERSPAN VLAN field: the VLAN the frame was switched in
    ok: bool = True  # False: lost at the destination (port down, no sender): counted dropped


class MirrorOut:
    """Decides, delivers and predicts mirror copies."""

    def __init__(self, state: SwitchState, tx: dict[int, list[Frame]],
                 remote: RemoteMirrors | None = None) -> None:
        self.state = state
        self.tx = tx  # the fast path's transmit queues, by port index
        self.remote = remote
        self.senders: list[MirrorSender] = []

    # ---------------------------------------------------------------- decide
    def route(self, c: Mirror, frame: Frame, commit: bool,
              offered: dict[int, int] | None = None) -> list[Delivery]:
        """What copying ``frame`` (as seen at the copy's point) into the session does; with
        ``commit`` the session's offered/sampled/truncated counters move. A peek counts in
        ``offered`` (session -> frames) what it offered already (a frame and the answer to
        it are two offers to a session mirroring both)."""
        m = self.state.mirrors.get(c.session)
        if m is None:
            return []
        data, vnet = frame.data, frame.vnet
        if c.lengths:
            n = len(data)
            if not any(lo <= n <= hi for lo, hi in c.lengths):
                return []  # the filter does not pass a frame of this length: not offered
        seen = m.seen + 1
        if commit:
            m.seen = seen
        elif offered is not None:
            seen += offered.get(c.session, 0)
            offered[c.session] = offered.get(c.session, 0) + 1
        if c.sample > 1 and seen % c.sample:
            if commit:
                m.sampled_out += 1
            return []
        if c.vlan_op != VLAN_KEEP:
            data, vnet = vlan_apply(c.vlan_op, c.vid, data, vnet)
        limit = c.truncate
        if vnet and not vnet_is_plain(vnet) and (
                (limit and len(data) > limit) or (
                    m.kind == MIRROR_ERSPAN and m.config.erspan is not None
                    and m.config.erspan.offloaded_frames == "segment")):
            # an offloaded frame (partial checksum / GSO super-frame) cannot be cut or
            # encapsulated as it is: make the wire frames first (software GSO/checksum)
            out: list[Delivery] = []
            for piece in _finalize(data, vnet):
                out.extend(self._where(m, c, piece, b"", limit, commit))
            return out
        return self._where(m, c, data, vnet, limit, commit)

    def _where(self, m: MirrorRuntime, c: Mirror, data: bytes, vnet: bytes, limit: int,
               commit: bool) -> list[Delivery]:
        """Cut the copy to the session's length and say where it goes."""
        cut = False
        if limit and len(data) > limit:
            data, vnet, cut = data[:limit], b"", True  # a cut frame carries no offload work
        s = m.index
        kind = m.kind
        cap = m.config.max_bytes
        if cap is not None:
            # the bytes this copy will add (RSPAN: at most one more tag)
            size = (len(data) + 4 if kind == MIRROR_RSPAN else len(data)
                    if kind == MIRROR_ERSPAN else len(data) * len(m.dest_ports))
            if m.capped or m.bytes - m.cap_base + size > cap:
                if commit:
                    m.capped += 1  # the session stops at its byte cap (the agent disables it)
                return []
        if cut and commit:
            m.truncated += 1
        if kind == MIRROR_ERSPAN:
            return [Delivery(s, TO_SENDER, data, b"", cut, c.point == POINT_EGRESS, c.vlan,
                             m.sender is not None)]
        ports = self.state.ports
        if kind == MIRROR_RSPAN:
            rs = m.config.rspan
            uplink = ports.get(m.uplink)
            if rs is None or uplink is None or not uplink.enabled or len(data) < 14:
                return [Delivery(s, m.uplink, data, vnet, cut, ok=False)]
            copy = rspan_copy(data, rs.vlan, rs.keep_original_tag,
                             original_vlan=c.vlan if rs.tag_untagged else 0)
            if vnet and len(copy) != len(data):
                vnet = vnet_shift(vnet, len(copy) - len(data))
            return [Delivery(s, m.uplink, copy, vnet, cut)]
        out = []
        for dp in m.dest_ports:
            prt = ports.get(dp)
            out.append(Delivery(s, dp, data, vnet, cut, False, 0,
                                prt is not None and prt.enabled))
        return out

    # ---------------------------------------------------------------- commit
    def emit(self, c: Mirror, frame: Frame) -> None:
        """Copy ``frame`` into the session: deliver and count."""
        tx = self.tx
        mirrors = self.state.mirrors
        if c.encap == MIRROR_LOCAL and c.plain:  # what route() gives such a copy, faster
            m = mirrors.get(c.session)
            if m is None:
                return
            if m.config.max_bytes is None:
                m.seen += 1
                ports = self.state.ports
                size = len(frame.data)
                for dp in m.dest_ports:
                    prt = ports.get(dp)
                    if prt is None or not prt.enabled:
                        m.dropped += 1
                        continue
                    m.mirrored += 1
                    m.bytes += size
                    prt.counters.mirrored_out += 1
                    q = tx.get(dp)
                    if q is None:
                        tx[dp] = [frame]
                    else:
                        q.append(frame)
                return
        for d in self.route(c, frame, True):
            m = mirrors[d.session]
            if not d.ok:
                m.dropped += 1
            elif d.port == TO_SENDER:
                sender = m.sender
                # the ERSPAN VLAN field: the frame's tag when it has one, else its VLAN
                if sender is not None and sender.send(d.data, egress=d.egress,
                                                      truncated=d.truncated,
                                                      vlan=d.vlan or None):
                    m.mirrored += 1
                    m.bytes += len(d.data)
                else:
                    m.dropped += 1
            else:
                m.mirrored += 1
                m.bytes += len(d.data)
                self.state.ports[d.port].counters.mirrored_out += 1
                copy = frame if d.data is frame.data and d.vnet is frame.vnet else Frame(
                    d.data, d.vnet)
                q = tx.get(d.port)
                if q is None:
                    tx[d.port] = [copy]
                else:
                    q.append(copy)

    # ------------------------------------------------------------------ peek
    def predict(self, c: Mirror, frame: Frame, offered: dict[int, int]) -> list[Delivery]:
        """What :meth:`emit` would deliver; changes nothing (but ``offered``: what this
        prediction offered the sessions so far)."""
        return self.route(c, frame, False, offered)

    # --------------------------------------------------------------- senders
    def sync_senders(self) -> set[int]:
        """Open senders for remote sessions that need one; close those no longer used.

        A destination that cannot be reached (no route, bad source address) does
        not fail the configuration: the session's copies are counted as dropped
        and the reason is shown with the session. The port whose interface
        carries the encapsulated traffic is taken out of the session's sources
        (loop guard). Returns the ports whose mirror roles that changed.
        """
        touched: set[int] = set()
        wanted: set[int] = set()
        remote = self.remote
        for m in self.state.mirrors.values():
            if m.config.erspan is None or not m.config.enabled or remote is None:
                continue
            if m.sender is None:
                try:
                    m.sender = remote.open(m.config)
                except OSError as err:
                    e = m.config.erspan
                    m.dest_error = f"cannot reach {e.remote_ip}: {err.strerror or err}"
                    log.warning("mirror %s: %s", m.name, m.dest_error)
                    continue
                m.dest_error = ""
            wanted.add(id(m.sender))
            touched |= self._loop_guard(m, remote.route_interface(m.config))
        for sender in list(self.senders):
            if id(sender) not in wanted:
                sender.close()
                self.senders.remove(sender)
        for m in self.state.mirrors.values():
            if m.sender is not None and m.sender not in self.senders:
                self.senders.append(m.sender)
        return touched

    def _loop_guard(self, m: MirrorRuntime, ifname: str | None) -> set[int]:
        """Keep the port on ``ifname`` (which carries the encapsulated copies) out of ``m``."""
        if ifname is None:
            return set()
        for rt in self.state.ports.values():
            if ifname not in rt.config.interfaces(rt.name):
                continue
            if m.index in rt.mirror_ingress or m.index in rt.mirror_egress:
                rt.mirror_ingress = tuple(s for s in rt.mirror_ingress if s != m.index)
                rt.mirror_egress = tuple(s for s in rt.mirror_egress if s != m.index)
                m.loop_guard_port = rt.name
                log.info("mirror %s: port %s carries the encapsulated copies; not mirrored",
                         m.name, rt.name)
                return {rt.index}
        return set()

    def close(self) -> None:
        """Close every sender."""
        for sender in self.senders:
            sender.close()
        self.senders.clear()


def _finalize(data: bytes, vnet: bytes) -> list[bytes]:
    try:
        return finalize(Frame(data, vnet))
    except PacketError:
        return [data]  # a header we cannot segment: mirror it as it came
