"""Remote mirror senders for the datapath (its :class:`~vspan.datapath.plugins.RemoteMirrors`):
one raw-socket GRE/ERSPAN sender per session, and the interface its copies leave by."""

from __future__ import annotations

from vspan.config.model import MirrorSession
from vspan.mirror.encap import (
    EncapType,
    ErspanConfig,
    Granularity,
    RawGreSender,
    route_interface,
)


def erspan_config(session: MirrorSession) -> ErspanConfig:
    """The encapsulation settings of a session with an ``erspan`` destination."""
    e = session.erspan
    if e is None:
        raise ValueError("the session has no ERSPAN destination")
    return ErspanConfig(
        remote_ip=e.remote_ip, type=EncapType(e.type.value), session_id=e.session_id,
        index=e.index, hw_id=e.hw_id, granularity=Granularity(e.timestamp_granularity),
        platform_subheader=e.platform_subheader, source_ip=e.source_ip, ttl=e.ttl,
        dscp=e.dscp, mtu=e.mtu, link_layer=e.sender == "auto")


class ErspanSenders:
    """Opens raw GRE senders for remote mirror sessions."""

    def open(self, session: MirrorSession) -> RawGreSender:
        """A connected sender (OSError when the collector cannot be reached)."""
        sender = RawGreSender(erspan_config(session))
        sender.open()
        return sender

    def route_interface(self, session: MirrorSession) -> str | None:
        """The interface the main routing table sends the copies through."""
        e = session.erspan
        return route_interface(e.remote_ip) if e is not None else None
