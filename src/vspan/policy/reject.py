"""Replies for the firewall's ``reject`` action.

TCP is answered with a RST, everything else IP with an ICMP / ICMPv6
destination unreachable, code "administratively prohibited" (v4 type 3 code
13, v6 type 1 code 1). The frames come from :mod:`vspan.packet`.

No reply is made (the reject degrades to a silent drop, as RFC 1122 3.2.2
and RFC 4443 2.4(e) ask) for: a TCP RST, an ICMP error, a frame sent to a
multicast or broadcast address, a frame from a multicast source or an
unspecified address, a non-first fragment, and non-IP frames.

The reply travels back to the rejected frame's sender: if the port's VM sent
the frame (direction ``out``), the reply is delivered to that port; if the
frame was going to the VM (direction ``in``), the reply enters the switch as
if the VM had answered.
"""

from __future__ import annotations

from vspan.datapath.flowkey import FRAG_LATER, IPPROTO_TCP, FlowKey
from vspan.packet.build import icmp_unreachable_for, tcp_reset_for
from vspan.packet.errors import PacketError
from vspan.packet.frame import parse_frame
from vspan.policy.common import family_of
from vspan.policy.conntrack import is_icmp_error
from vspan.policy.tcp import RST


def _multicast_ip(addr: bytes) -> bool:
    if len(addr) == 4:
        return addr[0] >= 224 or addr == b"\xff\xff\xff\xff"
    return len(addr) == 16 and addr[0] == 0xFF


def no_reply_reason(key: FlowKey, data: bytes) -> str | None:
    """Why a rejected frame gets no reply (``None`` when it gets one)."""
    if not family_of(key):
        return "not an IP frame"
    if key.frag == FRAG_LATER:
        return "a non-first fragment"
    if key.dst[0] & 1 or _multicast_ip(key.l3_dst):
        return "sent to a multicast/broadcast address"
    if key.src[0] & 1 or _multicast_ip(key.l3_src) or not any(key.l3_src):
        return "from a multicast or unspecified source"
    if is_icmp_error(key):
        return "an ICMP error is never answered with an ICMP error"
    if key.proto == IPPROTO_TCP and len(data) > key.l4_off + 13 and data[key.l4_off + 13] & RST:
        return "a RST is never answered"
    return None


def reject_reply(key: FlowKey, data: bytes) -> bytes | None:
    """The RST or ICMP unreachable answering ``data``; ``None`` when none is due."""
    if no_reply_reason(key, data) is not None:
        return None
    try:
        frame = parse_frame(data)
        if key.proto == IPPROTO_TCP and frame.tcp is not None:
            return tcp_reset_for(frame)
        return icmp_unreachable_for(frame)
    except PacketError:
        return None
