"""``vspan trace``: show a frame's whole path through the switch, stage by stage."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from vspan.cli import crosstrace_cmd
from vspan.cli.client import (
    ClientError,
    add_socket_arg,
    endpoint,
    fail,
    request,
)
from vspan.config.load import ConfigError, load_file
from vspan.packet.errors import PacketError


def register(sub: Any) -> None:
    """Add ``trace``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "trace", help="trace a synthetic or captured frame through the switch",
        description="Build a frame from options (or take one from a capture) and run it "
                    "through the same pipeline the datapath uses, with tracing on. Talks to "
                    "the running switch, or with -c FILE traces offline against a config "
                    "(empty MAC table). On a distributed switch, --vm A [--to-vm B] traces "
                    "the frame VM A sends through its host, the overlay and the hosts it "
                    "reaches, each host's part by its own agent.")
    p.add_argument("--in-port", "-i", default=None,
                   help="port the frame arrives on (not with --vm)")
    p.add_argument("--src-mac", default=None, help="default 02:00:00:00:00:01 (--vm: the VM's)")
    p.add_argument("--dst-mac", default=None,
                   help="default ff:ff:ff:ff:ff:ff (--to-vm: that VM's MAC)")
    p.add_argument("--src-ip", default=None)
    p.add_argument("--dst-ip", default=None)
    p.add_argument("--vlan", type=int, action="append", default=None,
                   help="802.1Q tag VID (repeat for QinQ, outer first; every tag 0x8100 — "
                        "give other TPIDs with --frame)")
    p.add_argument("--proto", choices=["icmp", "tcp", "udp", "arp", "raw"], default=None,
                   help="default: icmp when IPs are given, else raw Ethernet")
    p.add_argument("--sport", type=int, default=12345)
    p.add_argument("--dport", type=int, default=80)
    p.add_argument("--flags", default="S", help="TCP flags letters (default S)")
    p.add_argument("--frame", default=None,
                   help="the whole frame as hex instead of options; with --pcap: which packet "
                        "of the file (1-based, as --index)")
    p.add_argument("--pcap", default=None, help="take the frame from this pcap/pcapng file")
    p.add_argument("--index", type=int, default=1, help="which packet of --pcap (1-based)")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("-c", "--config", default=None,
                   help="trace offline against this configuration file")
    add_socket_arg(p)
    crosstrace_cmd.add_args(p)
    p.set_defaults(func=run)


def build_frame(args: argparse.Namespace) -> bytes:
    """The frame the options describe."""
    from vspan.packet.synth import FrameSpec, synth_frame

    if args.pcap:
        index = args.index
        if args.frame is not None:
            if not args.frame.isdigit():
                raise PacketError("trace", f"--frame {args.frame!r} with --pcap: give the "
                                  "packet's number (1-based)")
            index = int(args.frame)
        return _from_capture(args.pcap, index)
    if args.frame:
        return bytes.fromhex(args.frame.replace(":", "").replace(" ", ""))
    return synth_frame(FrameSpec(args.src_mac or "02:00:00:00:00:01",
                                 args.dst_mac or "ff:ff:ff:ff:ff:ff", args.src_ip, args.dst_ip,
                                 tuple(args.vlan or ()), args.proto, args.sport, args.dport,
                                 args.flags))


def _from_capture(path: str, index: int) -> bytes:
    from vspan.capture.pcapng import CaptureReader

    for i, pkt in enumerate(CaptureReader(path), start=1):
        if i == index:
            return bytes(pkt.data)
    raise PacketError("trace", f"{path} has fewer than {index} packets")


def trace_offline(config_path: str, port: str, frame: bytes) -> dict[str, Any]:
    """Trace against a config file without a running switch (no side effects)."""
    from vspan.control.assemble import offline_engine
    from vspan.control.views import trace_view

    engine = offline_engine(load_file(config_path))
    try:
        if port not in engine.state.by_name:
            raise ClientError(f"no port named {port!r} in {config_path}")
        decision, outcome, tracer = engine.trace(port, frame)
        return trace_view(engine.state, port, frame, decision, outcome, tracer)
    finally:
        engine.close()


def run(args: argparse.Namespace) -> int:
    """Build, trace, print."""
    if args.vm is not None:
        return crosstrace_cmd.run(args, build_frame)
    if args.in_port is None:
        return fail(ValueError("give --in-port (or, on a distributed switch, --vm)"))
    try:
        frame = build_frame(args)
    except (PacketError, ValueError, OSError) as err:  # CaptureFormatError is a ValueError
        return fail(err)
    try:
        if args.config:
            result = trace_offline(args.config, args.in_port, frame)
        else:
            result = request(endpoint(args), "POST", "/trace",
                             {"port": args.in_port, "frame": frame.hex()})
    except ConfigError as err:
        return fail(err)
    except ClientError as err:
        return fail(err)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return 0
    sys.stdout.write(f"trace: {len(frame)}-byte frame into port {args.in_port}\n")
    sys.stdout.write(result["text"] + "\n")
    sys.stdout.write(result["verdict"] + "\n")
    return 0

