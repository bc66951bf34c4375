"""``vspan agent``: run this host's part of a distributed switch."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from typing import Any

from vspan.cli.daemon_cmd import api_servers, open_control_socket, serve

DEFAULT_ETCD = os.environ.get("VSPAN_ETCD", "http://127.0.0.1:2379")


def register(sub: Any) -> None:
    """Add ``agent``."""
    p: argparse.ArgumentParser = sub.add_parser(
        "agent", help="run this host's part of a distributed switch (desired state in etcd)")
    p.add_argument("--dvs", required=True, help="distributed switch name")
    p.add_argument("--host", required=True, help="this host's name in the switch")
    p.add_argument("--etcd", default=DEFAULT_ETCD,
                   help="etcd client URL (default: %(default)s; env VSPAN_ETCD)")
    p.add_argument("--underlay", required=True,
                   help="this host's underlay (VTEP) IP address")
    p.add_argument("--socket", "-S", default=None,
                   help="control socket (default: /run/vspan/<dvs>.<host>.sock)")
    p.add_argument("--socket-group", metavar="GROUP", default=None,
                   help="let members of GROUP use the control socket (0660; default: owner "
                        "only, 0600)")
    p.add_argument("--ttl", type=int, default=10,
                   help="lease TTL in seconds: a host whose agent stops shows down after it")
    p.add_argument("--status-interval", type=float, default=1.0,
                   help="at most one status write per this many seconds (default 1)")
    p.add_argument("--status-settle", type=float, default=0.25,
                   help="report a newly applied configuration once no newer one came for "
                        "this many seconds (default 0.25; a burst of changes is one report)")
    p.add_argument("--state-dir", default=os.environ.get("VSPAN_AGENT_STATE_DIR",
                                                         "/var/lib/vspan/agent"),
                   help="where the agent keeps its copy of the last configuration it applied "
                        "(started from when etcd is unreachable; default %(default)s; '' for "
                        "none)")
    p.add_argument("--no-move-interfaces", dest="move_interfaces", action="store_false",
                   help="never hand a migrating VM's interface to another host's network "
                        "namespace (by default done when both hosts are namespaces of this "
                        "machine; otherwise the hypervisor moves the VM)")
    p.add_argument("--metrics", metavar="HOST:PORT", default=None,
                   help="also serve /metrics and /health (read only) over TCP")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the engine and the host agent; serve the local API until SIGINT/SIGTERM."""
    from vspan.config.model import Config, SwitchConfig
    from vspan.control.agent import Agent
    from vspan.control.dvs.admin import read_state
    from vspan.control.dvs.document import SchemaError
    from vspan.control.dvs.hostagent import HostAgent
    from vspan.control.store.base import StoreError, StoreUnavailable
    from vspan.control.store.etcd import EtcdStore
    from vspan.ports.factory import open_backend

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ipaddress.ip_address(args.underlay)
    except ValueError:
        sys.stderr.write(f"vspan: --underlay {args.underlay!r} is not an IP address\n")
        return 2
    if args.ttl < 2:
        sys.stderr.write("vspan: --ttl must be at least 2 seconds\n")
        return 2
    try:
        store = EtcdStore(args.etcd)
    except ValueError as err:
        sys.stderr.write(f"vspan: {err}\n")
        return 2
    try:
        read_state(store, args.dvs)
    except SchemaError as err:
        sys.stderr.write(f"vspan: {err}\n")
        return 2
    except StoreUnavailable as err:
        sys.stderr.write(f"vspan: {err}; starting anyway and retrying\n")
    except StoreError as err:
        sys.stderr.write(f"vspan: {err}\n")
        return 1
    sock = args.socket or f"/run/vspan/{args.dvs}.{args.host}.sock"
    listener = open_control_socket(sock, args.socket_group)
    if listener is None:
        return 1
    agent = Agent(Config(switch=SwitchConfig(name=args.dvs, control_socket=sock)),
                  open_backend)
    agent.host_name = args.host  # observed events name the switch's host
    agent.start()
    host = HostAgent(store, args.dvs, args.host, args.underlay, agent, control_socket=sock,
                     ttl=args.ttl, status_interval=args.status_interval, store_url=args.etcd,
                     status_settle=args.status_settle,
                     probe_port=_probe_port, state_dir=args.state_dir or None,
                     move_interfaces=args.move_interfaces)
    host.start()

    from vspan.api.access import check_table
    from vspan.api.rest import create_app, create_metrics_app

    app = create_app(agent)
    app.add_api_route("/dvs/status", host.status, methods=["GET"])
    check_table(app)  # its route too has an access rule (vspan.api.access)
    sys.stderr.write(f"vspan: agent for {args.dvs} on host {args.host} (underlay "
                     f"{args.underlay}, etcd {args.etcd}); control socket {sock}\n")
    try:
        serve(api_servers(app, listener, args.metrics, create_metrics_app(agent)))
    finally:
        listener.close()
        host.stop(deregister=True)
        agent.stop()
        store.close()
        if os.path.exists(sock):
            os.unlink(sock)
        sys.stderr.write("vspan: agent stopped\n")
    return 0


def _probe_port(name: str, cfg: Any) -> str | None:
    """Why port ``name``'s backend cannot open (None: it can)."""
    from vspan.ports.factory import open_backend

    backend = open_backend(name, cfg)
    try:
        backend.open()
    except Exception as err:
        return f"cannot attach: {err}"
    backend.close()
    return None
