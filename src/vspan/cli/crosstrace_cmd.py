"""``vspan trace --vm A [--to-vm B]``: one frame's path across a distributed switch's hosts.

The frame is built from the two VMs' MACs and addresses (or taken from a capture),
the switch's placement and the agents' registrations are read from etcd, and each
host's part is traced by that host's agent (docs/dvs.md, "Tracing across hosts").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from vspan.cli.client import ClientError, Endpoint, fail, request
from vspan.packet.errors import PacketError


def add_args(p: argparse.ArgumentParser) -> None:
    """The distributed switch options of ``vspan trace``."""
    from vspan.cli.dvsclient import DEFAULT_ETCD

    g = p.add_argument_group("across the hosts of a distributed switch")
    g.add_argument("--vm", default=None,
                   help="the VM (or port) that sends the frame: trace it through every host")
    g.add_argument("--to-vm", default=None,
                   help="the VM it is for: its MAC and address make the frame's destination")
    g.add_argument("--dvs", default=os.environ.get("VSPAN_DVS"),
                   help="distributed switch (default: env VSPAN_DVS, or the only one)")
    g.add_argument("--etcd", default=DEFAULT_ETCD,
                   help="etcd client URL (default: %(default)s; env VSPAN_ETCD)")
    g.add_argument("--agent", action="append", default=[], metavar="HOST=SOCKET|URL",
                   help="where host HOST's agent answers (default: the control socket its "
                        "registration names); an https URL uses --token-file/--cacert")


def _fill(args: argparse.Namespace, src: Any, dst: Any) -> None:
    """Frame options left out are taken from the two VMs' ports."""
    args.src_mac = args.src_mac or src.mac or None
    if dst is not None:
        args.dst_mac = args.dst_mac or dst.mac or None
        args.dst_ip = args.dst_ip or (dst.ips[0] if dst.ips else None)
    args.src_ip = args.src_ip or (src.ips[0] if src.ips else None)
    v = src.config.vlan
    if not args.vlan and v.mode.value == "trunk" and v.native is None:
        raise PacketError("trace", f"port {src.port} is a trunk without a native VLAN: "
                          "give the frame's tag with --vlan")


def _endpoints(args: argparse.Namespace, live: dict[str, Any]) -> dict[str, Endpoint]:
    from vspan.cli.dvsclient import agent_endpoints

    out = {host: Endpoint(reg.socket) for host, reg in live.items() if reg.socket}
    return out | agent_endpoints(args.agent, args.token_file, args.cacert)


def run(args: argparse.Namespace, build_frame: Callable[[argparse.Namespace], bytes]) -> int:
    """Trace across the hosts and print the path."""
    from vspan.cli.dvsclient import guarded

    return guarded(lambda a: _run(a, build_frame))(args)


def _run(args: argparse.Namespace, build_frame: Callable[[argparse.Namespace], bytes]) -> int:
    from vspan.cli.dvsclient import open_store, switch_name
    from vspan.control.dvs.admin import read_state
    from vspan.control.dvs.crosstrace import CrossTraceError, render, trace_across, vm_end

    if args.in_port is not None or args.config is not None:
        return fail(ValueError("--vm traces on the distributed switch: no --in-port or -c"))
    store = open_store(args.etcd)
    st = read_state(store, switch_name(args, store))
    dvs = st.config()
    try:
        src = vm_end(dvs, args.vm)
        dst = vm_end(dvs, args.to_vm) if args.to_vm else None
        _fill(args, src, dst)
        frame = build_frame(args)
        where = _endpoints(args, dict(st.live))

        def ask(host: str, body: dict[str, Any]) -> dict[str, Any]:
            if host not in where:
                raise CrossTraceError(f"host {host}'s agent names no control socket: give "
                                      f"--agent {host}=SOCKET")
            try:
                return dict(request(where[host], "POST", "/trace", body))
            except ClientError as err:
                raise CrossTraceError(f"host {host}'s agent ({where[host]}): {err}") from err

        path = trace_across(dvs, st.live, src.port, frame, ask)
    except (CrossTraceError, PacketError, ValueError, OSError) as err:
        return fail(err)
    if args.json:
        sys.stdout.write(json.dumps(path, indent=2) + "\n")
        return 0
    to = f" to VM {dst.vm} (port {dst.port}, host {dst.host})" if dst is not None else ""
    title = (f"trace: {len(frame)}-byte frame from VM {src.vm} (port {src.port}, host "
             f"{src.host}, {src.vlan_text()}){to}")
    sys.stdout.write(render(path, title) + "\n")
    return 0
