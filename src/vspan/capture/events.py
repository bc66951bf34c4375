"""``vspan observe`` events: a frame's summary, the JSON event objects, the human lines.

An event is a plain JSON object (one line of the stream, ``docs/observe.md``):

* common: ``type`` (``received``, ``forwarded``, ``mirrored``, ``dropped``, or
  ``suppressed``), ``time`` (UTC, ISO 8601), ``ts_ns``, ``frame`` (the frame's
  number in this stream: the events of one frame share it), ``switch``,
  ``host``, ``in_port``, ``source`` (``cache``, ``upcall`` or ``reply``) and
  ``summary`` (MACs, VLAN, IPs, L4 ports, protocol, TCP flags, length);
* ``forwarded``: ``outputs`` — ``[{port, vlan_op, vid}]``;
* ``mirrored``: ``session``, ``destination``;
* ``dropped``: ``reason``, ``stage``, ``port``, ``direction`` (``in``: at the
  ingress port, ``out``: at an output port), ``rule``, ``rule_text`` (the
  ACL entry or firewall rule as configured), ``detail``, ``explanation``.

Building an event parses the frame again; it is done by whoever reads the
stream, never on the forwarding path.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any, Protocol

from vspan.datapath.decision import VLAN_OP_NAMES, Drop
from vspan.datapath.flowkey import (
    ETH_P_ARP,
    ETH_P_IPV4,
    ETH_P_IPV6,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    extract,
    lenient_key,
    mac_str,
)
from vspan.datapath.observed import Seen
from vspan.datapath.reasons import EXPLANATIONS, STAGES

RECEIVED = "received"
FORWARDED = "forwarded"
MIRRORED = "mirrored"
DROPPED = "dropped"
SUPPRESSED = "suppressed"
KINDS = (RECEIVED, FORWARDED, MIRRORED, DROPPED)

_PROTOS = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp",
           IPPROTO_ICMPV6: "icmpv6", 132: "sctp"}
_ETHERTYPES = {ETH_P_IPV4: "ipv4", ETH_P_IPV6: "ipv6", ETH_P_ARP: "arp"}
_TCP_FLAGS = "FSRPAUEC"  # bit 0 .. bit 7


class Names(Protocol):
    """What the switch calls things: port and session names, rules as configured."""

    def port(self, idx: int) -> str:
        """The name of port ``idx``."""
        ...

    def session(self, idx: int) -> tuple[str, str]:
        """(name, destination) of mirror session ``idx``."""
        ...

    def rule_text(self, drop: Drop) -> str:
        """The configured text of the rule that decided ``drop`` ("" when none did)."""
        ...


def tcp_flags(bits: int) -> str:
    """``SA``-style letters for TCP flag bits (FIN S RST PSH ACK URG ECE CWR)."""
    return "".join(c for i, c in enumerate(_TCP_FLAGS) if bits >> i & 1)


def summary(data: bytes) -> dict[str, Any]:
    """The frame's headers as data: MACs, VLAN, IPs, L4 ports, protocol, TCP flags, length."""
    out: dict[str, Any] = {"len": len(data)}
    key = extract(data, 0)
    if key is None:
        key = lenient_key(data)
        out["malformed"] = True
        if key is None:
            return out
    out["src_mac"] = mac_str(key.src)
    out["dst_mac"] = mac_str(key.dst)
    out["vlan"] = key.vlan if key.vlan >= 0 else None
    if key.inner_vlan >= 0:
        out["inner_vlan"] = key.inner_vlan
    out["eth_type"] = _ETHERTYPES.get(key.eth_type, f"0x{key.eth_type:04x}")
    if key.eth_type in (ETH_P_IPV4, ETH_P_IPV6) and key.l3_src:
        out["src_ip"] = str(ipaddress.ip_address(key.l3_src))
        out["dst_ip"] = str(ipaddress.ip_address(key.l3_dst))
        out["proto"] = _PROTOS.get(key.proto, str(key.proto))
        if key.l4_off and key.proto in (IPPROTO_TCP, IPPROTO_UDP, 132):
            out["sport"], out["dport"] = key.sport, key.dport
            if key.proto == IPPROTO_TCP and len(data) > key.l4_off + 13:
                out["tcp_flags"] = tcp_flags(data[key.l4_off + 13])
        elif key.l4_off and key.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            out["icmp_type"], out["icmp_code"] = key.sport, key.dport
    elif key.eth_type == ETH_P_ARP and key.l3_src:
        out["arp_op"] = key.proto
        out["src_ip"] = str(ipaddress.ip_address(key.l3_src))
        out["dst_ip"] = str(ipaddress.ip_address(key.l3_dst))
    return out


def build(seen: Seen, kinds: tuple[tuple[str, Any], ...], frame: int, names: Names,
          switch: str, host: str) -> list[dict[str, Any]]:
    """The events of one observed frame (``kinds``: what the observer admitted)."""
    base: dict[str, Any] = {
        "time": datetime.fromtimestamp(seen.ts_ns / 1e9, UTC).isoformat(
            timespec="microseconds").replace("+00:00", "Z"),
        "ts_ns": seen.ts_ns, "frame": frame, "switch": switch, "host": host,
        "in_port": names.port(seen.in_port), "source": seen.source,
        "summary": summary(seen.data)}
    out: list[dict[str, Any]] = []
    for kind, what in kinds:
        ev: dict[str, Any] = {"type": kind} | base
        if kind == FORWARDED:
            ev["outputs"] = [{"port": names.port(p), "vlan_op": VLAN_OP_NAMES.get(op, str(op)),
                              "vid": vid} for p, op, vid in seen.outputs]
        elif kind == MIRRORED:
            ev["session"], ev["destination"] = names.session(what)
        elif kind == DROPPED:
            d: Drop = what
            ev |= {"reason": d.reason.value, "stage": STAGES.get(d.reason, ""),
                   "port": names.port(d.port),
                   "direction": "in" if d.port == seen.in_port else "out",
                   "rule": d.rule, "rule_text": names.rule_text(d) if d.rule else "",
                   "detail": d.detail, "explanation": EXPLANATIONS.get(d.reason, "")}
        out.append(ev)
    return out


# ------------------------------------------------------------------ human lines
def summary_text(s: dict[str, Any]) -> str:
    """One line for a frame summary (tcpdump-like)."""
    parts: list[str] = []
    if "src_mac" in s:
        parts.append(f"{s['src_mac']} > {s['dst_mac']}")
        if s.get("vlan") is not None:
            parts.append(f"vlan {s['vlan']}" + (f".{s['inner_vlan']}" if "inner_vlan" in s
                                                 else ""))
    if "src_ip" in s and s.get("eth_type") in ("ipv4", "ipv6"):
        src, dst = s["src_ip"], s["dst_ip"]
        if "sport" in s:
            src, dst = f"{src}.{s['sport']}", f"{dst}.{s['dport']}"
        parts.append(f"{src} > {dst} {s.get('proto', '').upper()}")
        if "tcp_flags" in s:
            parts.append(f"[{s['tcp_flags'] or '.'}]")
        if "icmp_type" in s:
            parts.append(f"type {s['icmp_type']} code {s['icmp_code']}")
    elif s.get("eth_type") == "arp":
        op = {1: "who-has", 2: "is-at"}.get(s.get("arp_op", 0), f"op {s.get('arp_op')}")
        parts.append(f"ARP {op} {s.get('dst_ip', '')} from {s.get('src_ip', '')}")
    elif "eth_type" in s:
        parts.append(str(s["eth_type"]))
    if s.get("malformed"):
        parts.append("(malformed)")
    parts.append(f"len {s['len']}")
    return " ".join(parts)


def _output_text(o: dict[str, Any]) -> str:
    op = o["vlan_op"]
    if op == "keep":
        return str(o["port"])
    if op == "pop":
        return f"{o['port']} (pop)"
    return f"{o['port']} ({op} {o['vid']})"


def human(ev: dict[str, Any]) -> str:
    """One human line for an event."""
    kind = ev.get("type", "")
    if kind == SUPPRESSED:
        return (f"-- suppressed: {ev.get('sampled_out', 0)} sampled out, "
                f"{ev.get('rate_limited', 0)} over the rate cap, "
                f"{ev.get('queue_full', 0)} not read in time --")
    clock = str(ev.get("time", ""))[11:26]
    host = f"{ev['host']} " if ev.get("host") else ""
    head = f"{clock} {host}#{ev.get('frame', 0)} {kind:<9} {ev.get('in_port', '')}"
    if kind == FORWARDED:
        what = " -> " + ", ".join(_output_text(o) for o in ev.get("outputs", []))
    elif kind == MIRRORED:
        what = f" copy to {ev.get('session', '')} -> {ev.get('destination', '')}"
    elif kind == DROPPED:
        at = "" if ev.get("direction") == "in" else f" at {ev.get('port', '')}"
        rule = f" rule {ev['rule']}" if ev.get("rule") else ""
        detail = f" ({ev['detail']})" if ev.get("detail") else ""
        what = f"{at} [{ev.get('stage', '')}] {ev.get('reason', '')}{rule}{detail}"
    else:
        what = ""
    return f"{head}{what} | {summary_text(ev.get('summary', {}))}"
