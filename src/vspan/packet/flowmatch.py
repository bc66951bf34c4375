"""A BPF-like filter language (the common forms of pcap-filter(7)): a flow match.

Grammar, as tcpdump has it: primitives joined by ``and``/``&&`` and
``or``/``||``, which have *equal* precedence and associate left to right;
``not``/``!`` binds tightest; parentheses group. A bare id after a primitive
repeats that primitive's qualifiers (``host 10.0.0.1 or 10.0.0.2``,
``port 80 or 443``).

Primitives::

    [ip|ip6|arp] [src|dst|src or dst|src and dst] host ADDR
    [ip|ip6|arp] [src|dst|...] net CIDR | net A.B[.C[.D]] [mask M]
    [tcp|udp|sctp] [src|dst|...] port N | portrange N-M
    src ADDR / dst ADDR                       (host implied)
    ether [src|dst] host MAC, ether src MAC, ether dst MAC, ether host MAC
    ether proto N, ether broadcast, ether multicast, broadcast, multicast
    ip, ip6, arp, rarp, tcp, udp, sctp, icmp, icmp6, igmp
    ip proto N, ip6 proto N, proto N          (N a number or a name: tcp, udp, ...)
    ip multicast, ip6 multicast
    vlan [N], less N, greater N

Differences from tcpdump on purpose (a switch sees tagged frames):

* every test looks through the VLAN tags (tcpdump's ``vlan`` primitive shifts
  the offsets of the tests after it; here ``vlan`` has no side effect and
  ``host X`` matches a tagged frame too). ``vlan N`` tests the outer tag.
* IPv6 protocol and port tests follow the extension-header chain (tcpdump's
  ``ip6 protochain``), where tcpdump looks at the first next-header only.

Host names are not resolved: addresses must be literal.

Filters compile to a predicate over a flow key's header fields
(:class:`FlowFields`, what :class:`~vspan.datapath.flowkey.FlowKey` holds) and
the frame length — and to its flow-level form, :meth:`FlowMatch.lengths`: for
one flow key, the frame lengths the filter passes (every primitive but
``less``/``greater`` depends on the key alone), so the datapath decides a
mirror filter once per flow and keeps a length range in the cached action.
The language sits in the packet layer so that configuration can check a
session's filter and the datapath can decide it; captures judge whole frames
with :class:`vspan.capture.filter.PacketFilter`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from vspan.packet.ethernet import ETH_P_ARP, ETH_P_IPV4, ETH_P_IPV6, UNTAGGED, VLAN_TPIDS

ETH_P_RARP = 0x8035


class FlowFields(Protocol):
    """The header fields a filter reads (a :class:`~vspan.datapath.flowkey.FlowKey` has
    them; VLAN ids are -1 when absent)."""

    @property
    def dst(self) -> bytes: ...
    @property
    def src(self) -> bytes: ...
    @property
    def vlan(self) -> int: ...
    @property
    def eth_type(self) -> int: ...
    @property
    def l3_src(self) -> bytes: ...
    @property
    def l3_dst(self) -> bytes: ...
    @property
    def proto(self) -> int: ...
    @property
    def sport(self) -> int: ...
    @property
    def dport(self) -> int: ...
    @property
    def l4_off(self) -> int: ...

Predicate = Callable[[FlowFields, int], bool]
Spans = tuple[tuple[int, int], ...]
"""Sorted, disjoint, inclusive ranges of frame lengths."""
MAX_LENGTH = 0xFFFFFFFF
ALL_LENGTHS: Spans = ((0, MAX_LENGTH),)
NO_LENGTHS: Spans = ()

_PROTO_NAMES = {
    "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
    "icmp6": 58, "ospf": 89, "pim": 103, "vrrp": 112, "sctp": 132,
}
_ETHER_PROTO_NAMES = {
    "ip": ETH_P_IPV4, "ip6": ETH_P_IPV6, "arp": ETH_P_ARP, "rarp": ETH_P_RARP,
}
_SERVICES = {
    "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53,
    "bootps": 67, "bootpc": 68, "tftp": 69, "http": 80, "pop3": 110, "ntp": 123,
    "imap": 143, "snmp": 161, "bgp": 179, "ldap": 389, "https": 443, "syslog": 514,
    "vxlan": 4789,
}
_L4_PORT_PROTOS = {"tcp": (6,), "udp": (17,), "sctp": (132,), None: (6, 17, 132)}

KEYWORDS = frozenset({
    "and", "or", "not", "src", "dst", "host", "net", "port", "portrange", "mask",
    "ether", "ip", "ip6", "arp", "rarp", "tcp", "udp", "sctp", "icmp", "icmp6", "igmp",
    "proto", "vlan", "less", "greater", "broadcast", "multicast", "gateway", "len",
})
_PROTO_QUALS = frozenset({"ether", "ip", "ip6", "arp", "rarp", "tcp", "udp", "sctp", "icmp",
                          "icmp6", "igmp"})
_TYPE_QUALS = frozenset({"host", "net", "port", "portrange"})
_DIR_QUALS = frozenset({"src", "dst"})


class FilterError(ValueError):
    """A filter expression that cannot be compiled; says where (0-based ``position``)."""

    def __init__(self, message: str, expression: str, position: int) -> None:
        self.message = message
        self.expression = expression
        self.position = position
        caret = " " * position + "^"
        super().__init__(
            f"{message} (at column {position + 1})\n  {expression}\n  {caret}"
        )


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "word", "(", ")", "not", "and", "or", "end"
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            toks.append(_Tok(c, c, i))
            i += 1
        elif c == "!":
            toks.append(_Tok("not", c, i))
            i += 1
        elif text.startswith("&&", i):
            toks.append(_Tok("and", "&&", i))
            i += 2
        elif text.startswith("||", i):
            toks.append(_Tok("or", "||", i))
            i += 2
        elif c in "&|[]=<>":
            raise FilterError(f"unsupported operator {c!r} (byte-offset expressions such as "
                              "tcp[13] are not supported)", text, i)
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "()!&|[]=<>":
                j += 1
            word = text[i:j]
            low = word.lower()
            kind = low if low in ("and", "or", "not") else "word"
            toks.append(_Tok(kind, word, i))
            i = j
    toks.append(_Tok("end", "", n))
    return toks


@dataclass(slots=True)
class _Quals:
    proto: str | None
    dir: str | None  # "src", "dst", "src or dst", "src and dst", or None (= either)
    type: str | None
    pos: int


def _addr_match(dir_q: str | None, value: bytes) -> Predicate:
    if dir_q == "src":
        return lambda k, n: k.l3_src == value
    if dir_q == "dst":
        return lambda k, n: k.l3_dst == value
    if dir_q == "src and dst":
        return lambda k, n: k.l3_src == value and k.l3_dst == value
    return lambda k, n: k.l3_src == value or k.l3_dst == value


def _net_match(dir_q: str | None, net: int, mask: int, width: int) -> Predicate:
    def side(b: bytes) -> bool:
        return len(b) == width and int.from_bytes(b, "big") & mask == net

    if dir_q == "src":
        return lambda k, n: side(k.l3_src)
    if dir_q == "dst":
        return lambda k, n: side(k.l3_dst)
    if dir_q == "src and dst":
        return lambda k, n: side(k.l3_src) and side(k.l3_dst)
    return lambda k, n: side(k.l3_src) or side(k.l3_dst)


def _types_pred(types: tuple[int, ...]) -> Predicate:
    if len(types) == 1:
        t = types[0]
        return lambda k, n: k.eth_type == t
    ts = frozenset(types)
    return lambda k, n: k.eth_type in ts


def _and(a: Predicate, b: Predicate) -> Predicate:
    return lambda k, n: a(k, n) and b(k, n)


def _or(a: Predicate, b: Predicate) -> Predicate:
    return lambda k, n: a(k, n) or b(k, n)


def _not(a: Predicate) -> Predicate:
    return lambda k, n: not a(k, n)


def _true(k: FlowFields, n: int) -> bool:
    return True


def _intersect(a: Spans, b: Spans) -> Spans:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _union(a: Spans, b: Spans) -> Spans:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted((*a, *b)):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _complement(a: Spans) -> Spans:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in a:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_LENGTH:
        out.append((nxt, MAX_LENGTH))
    return tuple(out)


class _P(NamedTuple):
    """A compiled (sub)expression: per frame, and per flow (the lengths it passes)."""

    test: Predicate
    spans: Callable[[FlowFields], Spans]


def _keyed(pred: Predicate) -> _P:
    """A primitive that reads the flow key only."""
    return _P(pred, lambda k: ALL_LENGTHS if pred(k, 0) else NO_LENGTHS)


def _p_and(a: _P, b: _P) -> _P:
    return _P(_and(a.test, b.test), lambda k: _intersect(a.spans(k), b.spans(k)))


def _p_or(a: _P, b: _P) -> _P:
    return _P(_or(a.test, b.test), lambda k: _union(a.spans(k), b.spans(k)))


def _p_not(a: _P) -> _P:
    return _P(_not(a.test), lambda k: _complement(a.spans(k)))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.last: _Quals | None = None

    # -- token helpers
    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def advance(self) -> _Tok:
        t = self.toks[self.i]
        if t.kind != "end":
            self.i += 1
        return t

    def word(self, t: _Tok | None = None) -> str:
        t = t or self.tok
        return t.text.lower() if t.kind == "word" else ""

    def error(self, message: str, tok: _Tok | None = None) -> FilterError:
        t = tok or self.tok
        return FilterError(message, self.text, t.pos)

    def describe(self, t: _Tok) -> str:
        return "end of expression" if t.kind == "end" else repr(t.text)

    # -- grammar
    def parse(self) -> _P:
        if self.tok.kind == "end":
            return _keyed(_true)
        pred = self.expr()
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.describe(self.tok)}: expected 'and', 'or' "
                             "or the end")
        return pred

    def expr(self) -> _P:
        pred = self.unary()
        while self.tok.kind in ("and", "or"):
            op = self.advance().kind
            rhs = self.unary()
            pred = _p_and(pred, rhs) if op == "and" else _p_or(pred, rhs)
        return pred

    def unary(self) -> _P:
        t = self.tok
        if t.kind == "not":
            self.advance()
            return _p_not(self.unary())
        if t.kind == "(":
            self.advance()
            inner = self.expr()
            if self.tok.kind != ")":
                raise self.error(f"expected ')' to close the '(' at column {t.pos + 1}, "
                                 f"found {self.describe(self.tok)}")
            self.advance()
            return inner
        if t.kind == "word":
            return self.primitive()
        raise self.error(f"unexpected {self.describe(t)}: expected a primitive "
                         "(host, net, port, tcp, vlan, ...)")

    def primitive(self) -> _P:
        if self.word() in ("less", "greater"):
            w = self.advance().text.lower()
            size = self.number(self.advance(), 0, MAX_LENGTH, "length")
            if w == "less":
                return _P(lambda k, n: n <= size, lambda k: ((0, size),))
            return _P(lambda k, n: n >= size, lambda k: ((size, MAX_LENGTH),))
        return _keyed(self.key_primitive())

    def key_primitive(self) -> Predicate:
        start = self.tok
        w = self.word()
        if w not in KEYWORDS:
            # a bare id: repeat the previous primitive's qualifiers
            if self.last is None:
                q = _Quals(None, None, None, start.pos)
            else:
                q = _Quals(self.last.proto, self.last.dir, self.last.type, start.pos)
            return self.with_id(q)
        if w == "vlan":
            self.advance()
            if self.is_id():
                t = self.advance()
                vid = self.number(t, 0, 4095, "VLAN id")
                return lambda k, n: k.vlan == vid
            return lambda k, n: k.vlan != UNTAGGED
        if w in ("broadcast", "multicast"):
            self.advance()
            return self.cast_pred("ether", w, start)
        if w == "proto":
            self.advance()
            num = self.proto_number(self.advance())
            return lambda k, n: k.eth_type in (ETH_P_IPV4, ETH_P_IPV6) and k.proto == num
        if w in ("gateway", "len"):
            raise self.error(f"'{w}' is not supported", start)
        if w in ("and", "or", "mask"):
            raise self.error(f"unexpected {w!r}: expected a primitive")
        proto_q = None
        if w in _PROTO_QUALS:
            proto_q = w
            self.advance()
            nxt = self.word()
            if nxt == "proto":
                self.advance()
                return self.proto_of(proto_q, self.advance(), start)
            if nxt in ("broadcast", "multicast"):
                self.advance()
                return self.cast_pred(proto_q, nxt, start)
            if nxt not in _DIR_QUALS and nxt not in _TYPE_QUALS:
                self.last = None
                return self.proto_alone(proto_q, start)
        dir_q = None
        if self.word() in _DIR_QUALS:
            dir_q = self.advance().text.lower()
            if (self.tok.kind in ("and", "or") and self.word(self.peek()) in _DIR_QUALS
                    and self.word(self.peek()) != dir_q):
                op = self.advance().kind
                self.advance()
                dir_q = f"src {op} dst"
        type_q = None
        if self.word() in _TYPE_QUALS:
            type_q = self.advance().text.lower()
        q = _Quals(proto_q, dir_q, type_q, start.pos)
        return self.with_id(q)

    def is_id(self) -> bool:
        return self.tok.kind == "word" and self.word() not in KEYWORDS

    def with_id(self, q: _Quals) -> Predicate:
        t = self.tok
        if not self.is_id():
            what = {"port": "a port number", "portrange": "a port range such as 1-1024",
                    "net": "a network such as 10.0.0.0/8"}.get(q.type or "", "an address")
            after = " ".join(x for x in (q.proto, q.dir, q.type) if x)
            raise self.error(f"expected {what} after {after!r}, found {self.describe(t)}")
        self.advance()
        pred = self.id_pred(q, t)
        self.last = q
        return pred

    # -- numbers and names
    def number(self, t: _Tok, lo: int, hi: int, what: str) -> int:
        if t.kind != "word":
            raise self.error(f"expected a {what}, found {self.describe(t)}", t)
        try:
            value = int(t.text, 0)
        except ValueError:
            raise self.error(f"{t.text!r} is not a {what}", t) from None
        if not lo <= value <= hi:
            raise self.error(f"{what} {value} is out of range ({lo}-{hi})", t)
        return value

    def proto_number(self, t: _Tok) -> int:
        name = t.text.lower().lstrip("\\")
        if t.kind == "word" and name in _PROTO_NAMES:
            return _PROTO_NAMES[name]
        return self.number(t, 0, 255, "protocol number")

    def port_number(self, text: str, proto: str | None, t: _Tok) -> int:
        if text.isdigit():
            value = int(text)
            if value > 65535:
                raise self.error(f"port {value} is out of range (0-65535)", t)
            return value
        name = text.lower()
        if name in _SERVICES:
            return _SERVICES[name]
        for p in (proto,) if proto in ("tcp", "udp") else ("tcp", "udp"):
            try:
                return socket.getservbyname(name, p)
            except OSError:
                continue
        raise self.error(f"{text!r} is not a port number or known service name", t)

    # -- primitive builders
    def proto_alone(self, proto: str, t: _Tok) -> Predicate:
        if proto in _ETHER_PROTO_NAMES:
            return _types_pred((_ETHER_PROTO_NAMES[proto],))
        if proto == "ether":
            raise self.error("'ether' needs 'host', 'src', 'dst', 'proto', 'broadcast' or "
                             "'multicast' after it", t)
        num = _PROTO_NAMES[proto]
        if proto == "icmp" or proto == "igmp":
            return lambda k, n: k.eth_type == ETH_P_IPV4 and k.proto == num
        if proto == "icmp6":
            return lambda k, n: k.eth_type == ETH_P_IPV6 and k.proto == num
        return lambda k, n: k.proto == num and k.eth_type in (ETH_P_IPV4, ETH_P_IPV6)

    def proto_of(self, proto: str, t: _Tok, start: _Tok) -> Predicate:
        if proto == "ether":
            name = t.text.lower().lstrip("\\")
            if t.kind == "word" and name in _ETHER_PROTO_NAMES:
                et = _ETHER_PROTO_NAMES[name]
            else:
                et = self.number(t, 0, 0xFFFF, "ethertype")
            if et in VLAN_TPIDS:
                return lambda k, n: k.vlan != UNTAGGED
            return lambda k, n: k.eth_type == et
        if proto not in ("ip", "ip6"):
            raise self.error(f"'{proto} proto' is not valid: use 'ip proto', 'ip6 proto' or "
                             "'ether proto'", start)
        num = self.proto_number(t)
        et = ETH_P_IPV4 if proto == "ip" else ETH_P_IPV6
        return lambda k, n: k.eth_type == et and k.proto == num

    def cast_pred(self, proto: str, kind: str, start: _Tok) -> Predicate:
        if proto == "ether":
            if kind == "broadcast":
                bcast = b"\xff" * 6
                return lambda k, n: k.dst == bcast
            return lambda k, n: bool(k.dst[0] & 1)
        if proto == "ip" and kind == "multicast":
            return lambda k, n: k.eth_type == ETH_P_IPV4 and 224 <= k.l3_dst[0] <= 239
        if proto == "ip6" and kind == "multicast":
            return lambda k, n: k.eth_type == ETH_P_IPV6 and k.l3_dst[0] == 0xFF
        raise self.error(f"'{proto} {kind}' is not supported", start)

    def id_pred(self, q: _Quals, t: _Tok) -> Predicate:
        text = t.text
        typ = q.type
        proto = q.proto
        if proto == "ether":
            if typ not in (None, "host"):
                raise self.error(f"'ether {typ}' is not valid: use 'ether host'", t)
            return self.mac_pred(q.dir, text, t)
        if typ in (None, "host") and _looks_like_mac(text):
            if proto is not None:
                raise self.error(f"{text!r} is a MAC address: use 'ether host'", t)
            return self.mac_pred(q.dir, text, t)
        if typ in ("port", "portrange"):
            if proto not in (None, "tcp", "udp", "sctp"):
                raise self.error(f"'{proto}' cannot be combined with '{typ}' (use tcp, udp or "
                                 "sctp)", t)
            return self.port_pred(q, text, t)
        if proto in ("tcp", "udp", "sctp", "icmp", "icmp6", "igmp"):
            raise self.error(f"'{proto}' cannot be combined with '{typ or 'host'}'", t)
        if typ == "net":
            return self.net_pred(q, text, t)
        # host (explicit or implied)
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            if typ is None and text.isdigit() and self.last is None:
                raise self.error(f"{text!r} alone is ambiguous: say 'port {text}' or "
                                 f"'vlan {text}'", t) from None
            raise self.error(f"{text!r} is not an IP address (host names are not resolved)",
                             t) from None
        types = self.l3_types(proto, addr.version, t)
        return _and(_types_pred(types), _addr_match(q.dir, addr.packed))

    def l3_types(self, proto: str | None, version: int, t: _Tok) -> tuple[int, ...]:
        if version == 4:
            allowed = {None: (ETH_P_IPV4, ETH_P_ARP, ETH_P_RARP), "ip": (ETH_P_IPV4,),
                       "arp": (ETH_P_ARP,), "rarp": (ETH_P_RARP,)}
        else:
            allowed = {None: (ETH_P_IPV6,), "ip6": (ETH_P_IPV6,)}
        if proto not in allowed:
            raise self.error(f"an IPv{version} address cannot be used with '{proto}'", t)
        return allowed[proto]

    def mac_pred(self, dir_q: str | None, text: str, t: _Tok) -> Predicate:
        mac = _parse_mac(text)
        if mac is None:
            raise self.error(f"{text!r} is not a MAC address", t)
        if dir_q == "src":
            return lambda k, n: k.src == mac
        if dir_q == "dst":
            return lambda k, n: k.dst == mac
        if dir_q == "src and dst":
            return lambda k, n: k.src == mac and k.dst == mac
        return lambda k, n: k.src == mac or k.dst == mac

    def net_pred(self, q: _Quals, text: str, t: _Tok) -> Predicate:
        mask_text = None
        if self.word() == "mask":
            self.advance()
            mt = self.advance()
            if mt.kind != "word":
                raise self.error("expected a netmask after 'mask'", mt)
            mask_text = mt.text
        try:
            if mask_text is not None:
                if "/" in text:
                    raise ValueError("use either '/len' or 'mask', not both")
                net = ipaddress.ip_network(f"{text}/{mask_text}", strict=False)
            elif "/" in text or ":" in text:
                net = ipaddress.ip_network(text, strict=False)
            else:
                parts = text.split(".")
                if not 1 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
                    raise ValueError(f"{text!r} is not a network")
                full = ".".join(parts + ["0"] * (4 - len(parts)))
                net = ipaddress.ip_network(f"{full}/{8 * len(parts)}", strict=False)
        except ValueError as err:
            raise self.error(f"bad network {text!r}: {err}", t) from None
        types = self.l3_types(q.proto, net.version, t)
        width = 4 if net.version == 4 else 16
        return _and(_types_pred(types), _net_match(q.dir, int(net.network_address),
                                                   int(net.netmask), width))

    def port_pred(self, q: _Quals, text: str, t: _Tok) -> Predicate:
        protos = _L4_PORT_PROTOS[q.proto]
        if q.type == "portrange":
            lo_s, sep, hi_s = text.partition("-")
            if not sep:
                raise self.error(f"{text!r} is not a port range such as 1-1024", t)
            lo = self.port_number(lo_s, q.proto, t)
            hi = self.port_number(hi_s, q.proto, t)
            if lo > hi:
                lo, hi = hi, lo

            def in_range(p: int) -> bool:
                return lo <= p <= hi
        else:
            port = self.port_number(text, q.proto, t)

            def in_range(p: int) -> bool:
                return p == port
        ps = frozenset(protos)
        ip_types = (ETH_P_IPV4, ETH_P_IPV6)

        def l4(k: FlowFields) -> bool:
            return k.l4_off != 0 and k.proto in ps and k.eth_type in ip_types

        d = q.dir
        if d == "src":
            return lambda k, n: l4(k) and in_range(k.sport)
        if d == "dst":
            return lambda k, n: l4(k) and in_range(k.dport)
        if d == "src and dst":
            return lambda k, n: l4(k) and in_range(k.sport) and in_range(k.dport)
        return lambda k, n: l4(k) and (in_range(k.sport) or in_range(k.dport))


def _looks_like_mac(text: str) -> bool:
    return (text.count(":") == 5 or text.count("-") == 5 or (text.count(".") == 2
            and len(text) == 14)) and _parse_mac(text) is not None


def _parse_mac(text: str) -> bytes | None:
    t = text.lower()
    if t.count(".") == 2 and len(t) == 14:  # Cisco style aabb.ccdd.eeff
        hexs = t.replace(".", "")
    else:
        parts = t.replace("-", ":").split(":")
        if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
            return None
        hexs = "".join(p.rjust(2, "0") for p in parts)
    try:
        mac = bytes.fromhex(hexs)
    except ValueError:
        return None
    return mac if len(mac) == 6 else None


class FlowMatch:
    """A compiled filter expression over flow keys."""

    __slots__ = ("_pred", "_spans", "expression")

    def __init__(self, expression: str, compiled: _P) -> None:
        self.expression = expression
        self._pred = compiled.test
        self._spans = compiled.spans

    def match_key(self, key: FlowFields, length: int) -> bool:
        """Whether a frame of ``length`` bytes with flow key ``key`` passes."""
        return self._pred(key, length)

    def lengths(self, key: FlowFields) -> Spans:
        """The frame lengths for which a frame with flow key ``key`` passes: sorted,
        disjoint inclusive ranges (``ALL_LENGTHS``: any length, ``()``: none)."""
        return self._spans(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.expression!r})"


def compile_match(expression: str) -> FlowMatch:
    """Compile ``expression``; an empty one passes every frame. Raises :class:`FilterError`."""
    return FlowMatch(expression, parse(expression))


def parse(expression: str) -> _P:
    """The compiled form of ``expression`` (for :class:`FlowMatch` and its subclasses)."""
    return _Parser(expression).parse()
