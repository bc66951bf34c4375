"""``vspan policy explain``: which ACL entry, extended ACL rule and firewall rule decide a flow
at a port, and why the others lost."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vspan.cli.client import (
    ClientError,
    add_socket_arg,
    endpoint,
    fail,
    request,
)
from vspan.config.load import ConfigError, load_file, parse_config
from vspan.config.policy import PortPolicyConfig
from vspan.packet.errors import PacketError
from vspan.policy.build import SwitchPolicy
from vspan.policy.common import IN, Dir
from vspan.policy.explain import FlowSpec, explain, state_report, synth_frame

DEFAULT_LOCAL_MAC = "02:00:00:00:00:01"
DEFAULT_REMOTE_MAC = "02:00:00:00:00:02"


def register(sub: Any) -> None:
    """Add ``policy explain``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "policy", help="inspect port policy (ACLs, extended ACLs, firewall)")
    psub = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    e: argparse.ArgumentParser = psub.add_parser(
        "explain", help="explain which rules decide a flow at a port",
        description="Evaluate a flow against a port's guards, port ACL, extended ACL and the "
                    "distributed firewall, and show which entry or rule decides and why every "
                    "other candidate lost. Addresses are given as source/destination or as "
                    "local/remote (the port's side and the other side); the port's own "
                    "address (policy.addresses) fills the local side when omitted.")
    e.add_argument("-c", "--config", default=None,
                   help="switch configuration file, explained offline (default: the running "
                        "switch, which also consults its connections and extended-ACL "
                        "sessions)")
    add_socket_arg(e)
    e.add_argument("--port", "-p", required=True, help="port whose policy is explained")
    e.add_argument("--direction", "-d", required=True, choices=["in", "out"],
                   help="in: frame delivered to the port; out: frame the port sends")
    e.add_argument("--src-ip")
    e.add_argument("--dst-ip")
    e.add_argument("--local-ip", help="the port's address (dst when in, src when out)")
    e.add_argument("--remote-ip", help="the other side's address")
    e.add_argument("--proto", default="tcp", help="tcp, udp, icmp, icmpv6 or a number")
    e.add_argument("--sport", type=int)
    e.add_argument("--dport", type=int)
    e.add_argument("--local-port", type=int)
    e.add_argument("--remote-port", type=int)
    e.add_argument("--flags", default="S", help="TCP flags letters (default S: a new connection)")
    e.add_argument("--icmp-type", type=int)
    e.add_argument("--icmp-code", type=int, default=0)
    e.add_argument("--src-mac")
    e.add_argument("--dst-mac")
    e.add_argument("--vlan", type=int)
    e.add_argument("--json", action="store_true", help="JSON output")
    e.set_defaults(func=run_explain)
    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _local_ip(pol: PortPolicyConfig | None, want_v6: bool | None) -> str | None:
    if pol is None:
        return None
    for a in pol.addresses:
        addr = a.split("/")[0]
        if want_v6 is None or (":" in addr) == want_v6:
            return addr
    return None


def flow_spec(args: argparse.Namespace, pol: PortPolicyConfig | None) -> FlowSpec:
    """Turn the options into absolute source/destination fields."""
    d: Dir = args.direction
    inbound = d == IN
    local, remote = args.local_ip, args.remote_ip
    if args.src_ip or args.dst_ip:
        if local or remote:
            raise ValueError("give --src-ip/--dst-ip or --local-ip/--remote-ip, not both")
        local = args.dst_ip if inbound else args.src_ip
        remote = args.src_ip if inbound else args.dst_ip
    if remote is None:
        raise ValueError("give the other side's address (--remote-ip, or --src-ip/--dst-ip)")
    if local is None:
        local = _local_ip(pol, ":" in remote)
        if local is None:
            raise ValueError(f"port {args.port} has no address of that family in "
                             "policy.addresses: give --local-ip")
    lport, rport = args.local_port, args.remote_port
    if args.sport is not None or args.dport is not None:
        if lport is not None or rport is not None:
            raise ValueError("give --sport/--dport or --local-port/--remote-port, not both")
        lport = args.dport if inbound else args.sport
        rport = args.sport if inbound else args.dport
    if lport is None:
        lport = 80 if inbound else 40000
    if rport is None:
        rport = 40000 if inbound else 80
    local_mac = DEFAULT_LOCAL_MAC
    if pol is not None and pol.guards.macs:
        local_mac = pol.guards.macs[0]
    src_mac = args.src_mac or (DEFAULT_REMOTE_MAC if inbound else local_mac)
    dst_mac = args.dst_mac or (local_mac if inbound else DEFAULT_REMOTE_MAC)
    src, dst = (remote, local) if inbound else (local, remote)
    sport, dport = (rport, lport) if inbound else (lport, rport)
    return FlowSpec(src, dst, args.proto, sport, dport, src_mac, dst_mac, args.flags,
                    args.icmp_type, args.icmp_code, args.vlan)


def run_explain(args: argparse.Namespace) -> int:
    """Explain against a configuration file (offline) or the running switch (live state)."""
    try:
        if args.config:
            cfg = load_file(args.config)
        else:
            cfg = parse_config(request(endpoint(args), "GET", "/config"), str(endpoint(args)))
    except ConfigError as err:
        for line in err.errors:
            sys.stderr.write(f"{err.source}: {line}\n")
        return 1
    except ClientError as err:
        return fail(err)
    ports, fw = cfg.port_policies(), cfg.firewall
    if args.port not in ports:
        sys.stderr.write(f"vspan policy explain: no port named {args.port!r} in "
                         f"{args.config or 'the running switch'}\n")
        return 1
    try:
        frame = synth_frame(flow_spec(args, ports[args.port]))
        if not args.config:
            return _explain_live(args, frame)
        result = explain(SwitchPolicy.from_config(ports, fw), args.port, args.direction, frame)
    except (ValueError, PacketError) as err:
        sys.stderr.write(f"vspan policy explain: {err}\n")
        return 2
    state = state_report(None, args.port)
    if args.json:
        sys.stdout.write(json.dumps(result.as_dict() | {"state": state.as_dict()}, indent=2)
                         + "\n")
    else:
        sys.stdout.write(result.render() + "\n" + state.render() + "\n")
    return 0 if result.allowed else 3


def _explain_live(args: argparse.Namespace, frame: bytes) -> int:
    """Let the running switch explain: it consults its connections and sessions."""
    try:
        data = request(endpoint(args), "POST", "/policy/explain",
                       {"port": args.port, "direction": args.direction, "frame": frame.hex()})
    except ClientError as err:
        return fail(err)
    text = data.pop("text")
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        sys.stdout.write(text + "\n")
    return 0 if data["allowed"] else 3
