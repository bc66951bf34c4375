"""A port's policy state as data, to move it with the port (live migration).

What a port's policy remembers about traffic: the firewall's connection table at
the port (TCP state and windows, UDP and ICMP state, the rule that admitted each
connection) and its extended ACL's stateful sessions. :func:`export_port` turns
them into JSON-ready data with times made relative (seconds left, seconds ago),
since the clocks of two hosts' switches do not share an origin;
:func:`import_port` installs them on the port of another switch, rebased on its
clock. Connections are keyed from the port's point of view, so they mean the
same wherever the port is attached.

Stateless parts (ACL entries, rules, guards) are not exported: they come from
the configuration, which travels with the port anyway.
"""

from __future__ import annotations

from typing import Any

from vspan.policy.build import SwitchPolicy
from vspan.policy.common import Dir
from vspan.policy.conntrack import Conn, ConnKey
from vspan.policy.tcp import TcpPeer, TcpStateName, TcpTrack

FORMAT = 1
_PEER_FIELDS = ("end", "maxend", "maxwin", "scale", "wscale_seen", "fin_end", "fin_acked")


def _dir(value: Any) -> Dir:
    if value not in ("in", "out"):
        raise ValueError(f"{value!r} is not a direction (in, out)")
    return "in" if value == "in" else "out"


def _key_data(key: ConnKey) -> list[Any]:
    proto, loc, lp, rem, rp = key
    return [proto, loc.hex(), lp, rem.hex(), rp]


def _key(data: Any) -> ConnKey:
    proto, loc, lp, rem, rp = data
    return (int(proto), bytes.fromhex(loc), int(lp), bytes.fromhex(rem), int(rp))


def _conn_data(c: Conn, now: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": _key_data(c.key), "origin": c.origin, "rule": c.rule_id,
        "state": str(c.state), "age": now - c.created, "idle": now - c.last,
        "left": c.expires - now, "packets": list(c.packets), "bytes": list(c.bytes)}
    if c.tcp is not None:
        out["tcp"] = {"state": str(c.tcp.state), "strict": c.tcp.strict, "oow": c.tcp.oow,
                      "reset_by": c.tcp.reset_by,
                      "peers": [{**{f: getattr(p, f) for f in _PEER_FIELDS},
                                 "maxack": p.maxack} for p in c.tcp.peers]}
    return out


def _conn(data: dict[str, Any], now: float) -> Conn:
    c = Conn(_key(data["key"]), _dir(data["origin"]), data.get("rule"),
             now - float(data["age"]))
    c.last = now - float(data["idle"])
    c.expires = now + float(data["left"])
    c.packets = [int(x) for x in data["packets"]][:2]
    c.bytes = [int(x) for x in data["bytes"]][:2]
    tcp = data.get("tcp")
    if tcp is not None:
        t = TcpTrack(bool(tcp["strict"]))
        t.state = TcpStateName(tcp["state"])
        t.oow = int(tcp["oow"])
        reset_by = int(tcp.get("reset_by", -1))  # absent in older exports
        t.reset_by = reset_by if reset_by in (0, 1) else -1
        for peer, pd in zip(t.peers, tcp["peers"], strict=True):
            _peer(peer, pd)
        c.tcp = t
        c.state = t.state
    else:
        c.state = str(data["state"])
    return c


def _peer(peer: TcpPeer, data: dict[str, Any]) -> None:
    for f in _PEER_FIELDS:
        value = data[f]
        setattr(peer, f, bool(value) if f in ("wscale_seen", "fin_acked") else int(value))
    # absent in older exports: "not known yet" (a RST in the window closes, as it did);
    # a value that is no sequence number is ignored the same way
    maxack = data.get("maxack", -1)
    peer.maxack = maxack if type(maxack) is int and 0 <= maxack <= 0xFFFFFFFF else -1


def export_port(policy: SwitchPolicy, port: str, now: float) -> dict[str, Any]:
    """Port ``port``'s connection table and extended-ACL sessions (live ones) as data."""
    out: dict[str, Any] = {"format": FORMAT, "connections": [], "ext_acl_sessions": []}
    fw = policy.firewall
    pf = fw.ports().get(port) if fw is not None else None
    if pf is not None:
        out["connections"] = [_conn_data(c, now) for c in pf.conntrack if c.expires > now]
    pp = policy.port(port)
    if pp is not None:
        out["ext_acl_sessions"] = [
            {"key": _key_data(k), "rule": rule, "origin": origin, "idle": idle, "left": left}
            for k, rule, origin, idle, left in pp.sessions.entries(now)]
    return out


def import_port(policy: SwitchPolicy, port: str, data: dict[str, Any],
                now: float) -> dict[str, int]:
    """Install what :func:`export_port` gave on port ``port`` of this switch.

    Returns counts: connections and sessions taken, and those not taken because
    the port is not covered here (no firewall / no extended ACL on it), the table
    was full, or the entry was malformed.
    """
    if data.get("format") != FORMAT:
        raise ValueError(f"port state of format {data.get('format')!r}; this vspan reads "
                         f"format {FORMAT}")
    counts = {"connections": 0, "ext_acl_sessions": 0, "not_taken": 0}
    conns = data.get("connections", [])
    fw = policy.firewall
    pf = fw.port(port) if fw is not None and conns else None
    for item in conns:
        try:
            c = _conn(item, now)
        except (KeyError, ValueError, TypeError):
            counts["not_taken"] += 1
            continue
        if pf is not None and pf.conntrack.adopt(c):
            counts["connections"] += 1
        else:
            counts["not_taken"] += 1
    pp = policy.port(port)
    for item in data.get("ext_acl_sessions", []):
        try:
            key = _key(item["key"])
            ok = pp is not None and pp.sessions.adopt(
                key, str(item["rule"]), _dir(item["origin"]), float(item["idle"]),
                now + float(item["left"]))
        except (KeyError, ValueError, TypeError):
            ok = False
        counts["ext_acl_sessions" if ok else "not_taken"] += 1
    return counts
