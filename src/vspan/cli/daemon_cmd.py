"""``vspan up`` (run a switch in the foreground) and ``vspan reload``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from typing import Any

from vspan.cli.client import (
    ClientError,
    add_socket_arg,
    endpoint,
    fail,
    request,
)
from vspan.cli.upstate import add_state_args, load_switch, report_restored


def register(sub: Any) -> None:
    """Add ``up`` and ``reload``."""
    p: argparse.ArgumentParser = sub.add_parser("up", help="run a switch in the foreground")
    p.add_argument("-c", "--config", required=True, help="YAML switch configuration")
    p.add_argument("--socket", "-S", default=None,
                   help="control socket path (default: switch.control_socket or "
                        "/run/vspan/<name>.sock)")
    p.add_argument("--socket-group", metavar="GROUP", default=None,
                   help="let members of GROUP use the control socket (mode 0660; default: "
                        "switch.control_socket_group, else owner only, 0600)")
    p.add_argument("--metrics", metavar="HOST:PORT", default=None,
                   help="also serve /metrics and /health (read only, no token) over TCP "
                        "(e.g. 127.0.0.1:9477)")
    p.add_argument("--listen", metavar="HOST:PORT", default=None,
                   help="also serve the whole API over TCP, bearer tokens required (default: "
                        "switch.api.listen); plain HTTP only on a loopback address, else "
                        "give --tls-cert and --tls-key")
    p.add_argument("--tls-cert", metavar="FILE", default=None,
                   help="PEM certificate (chain) for --listen (default: switch.api.tls_cert)")
    p.add_argument("--tls-key", metavar="FILE", default=None,
                   help="PEM private key for --listen (default: switch.api.tls_key)")
    add_state_args(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.set_defaults(func=run_up)
    r: argparse.ArgumentParser = sub.add_parser(
        "reload", help="apply a changed configuration file to the running switch",
        description="Apply a configuration file live. Changes made on the running switch "
                    "with commands (vspan acl add/remove, vspan firewall rule add/remove, "
                    "vspan mirror create/delete/enable/disable) are not in the file: when "
                    "the file would undo any of them, reload lists them and changes "
                    "nothing unless told what to do with them.")
    r.add_argument("file", nargs="?", help="configuration file (default: the one it runs)")
    keep = r.add_mutually_exclusive_group()
    keep.add_argument("--keep-live", action="store_true",
                      help="put the live changes back on top of the file")
    keep.add_argument("--force", action="store_true",
                      help="apply the file as it is: the live changes it does not carry "
                           "are undone (and listed)")
    add_socket_arg(r)
    r.set_defaults(func=run_reload)


def run_up(args: argparse.Namespace) -> int:
    """Start the datapath and serve the control API until SIGINT/SIGTERM."""
    from vspan.api.rest import create_app, create_metrics_app
    from vspan.cli.heap import keep_freed_memory
    from vspan.cli.serving import ServeError, auth_guard, tcp_server_config
    from vspan.control.limits import LimitWatcher
    from vspan.ports.base import PortError

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    keep_freed_memory()  # no page fault per big frame copied out of a ring
    loaded = load_switch(args)
    if loaded is None:
        return 1
    agent, keeper = loaded
    if args.state_dir:
        agent.state_dir = os.path.abspath(args.state_dir)
    try:
        tcp = tcp_server_config(agent.config.switch.api, args.listen, args.tls_cert,
                                args.tls_key)
        guard = auth_guard(agent)
    except ServeError as err:
        sys.stderr.write(f"vspan: {err}\n")
        keeper.close()
        return 1
    sock = args.socket or agent.config.switch.socket_path()
    group = args.socket_group or agent.config.switch.control_socket_group
    listener = open_control_socket(sock, group)
    if listener is None:
        keeper.close()
        return 1
    try:
        agent.start(keeper.restore_fdb)
        keeper.begin(agent.config, agent.live)
    except Exception as err:
        what = "cannot open ports" if isinstance(err, PortError | OSError) else "cannot start"
        sys.stderr.write(f"vspan: {what}: {err}\n")
        agent.stop()
        keeper.close()
        listener.close()
        os.unlink(sock)
        return 1
    report_restored(keeper)
    servers = api_servers(create_app(agent, guard), listener, args.metrics,
                          create_metrics_app(agent), tcp.kwargs if tcp is not None else None)
    who = f"owner and group {group}" if group else "owner only"
    sys.stderr.write(
        f"vspan: switch {agent.config.switch.name} up with {len(agent.config.ports)} ports, "
        f"{len(agent.config.mirrors)} mirror sessions; control socket {sock} ({who})"
        + (f"; API on {tcp.url} (bearer tokens), web console {tcp.url}/console"
           if tcp is not None else "") + "\n")
    watcher = LimitWatcher(agent, guard.audit)
    watcher.start()
    try:
        serve(servers)
    finally:
        watcher.stop()
        agent.stop()
        keeper.stop()
        listener.close()
        if os.path.exists(sock):
            os.unlink(sock)
        sys.stderr.write("vspan: switch stopped\n")
    return 0


def open_control_socket(sock: str, group: str | None) -> socket.socket | None:
    """Remove a dead switch's stale socket and bind the control socket.

    None (after saying why) when a live switch answers there or binding fails.
    """
    from vspan.control.ctlsock import SocketSetupError, bind_control_socket, resolve_group

    if os.path.exists(sock):
        try:
            request(sock, "GET", "/health", timeout=2)
        except ClientError as err:
            if not err.status:  # nothing answered: the socket of a dead switch
                os.unlink(sock)
            else:  # a switch answered (and refused us)
                sys.stderr.write(f"vspan: a switch is already running at {sock}\n")
                return None
        else:
            sys.stderr.write(f"vspan: a switch is already running at {sock}\n")
            return None
    try:
        return bind_control_socket(sock, resolve_group(group) if group else None)
    except SocketSetupError as err:
        sys.stderr.write(f"vspan: control socket: {err}\n")
        return None


Servers = list[tuple[Any, list[socket.socket] | None]]


def api_servers(app: Any, listener: socket.socket, metrics: str | None,
                metrics_app: Any, tcp: dict[str, Any] | None = None) -> Servers:
    """uvicorn servers: the API on the control socket (each connection's peer uid handed to
    the API: :mod:`vspan.api.peercred`), the API on TCP (``tcp``: uvicorn's host, port and
    TLS settings; bearer tokens), /metrics on TCP ``HOST:PORT``."""
    import uvicorn

    from vspan.api.peercred import PeerCredProtocol

    servers: Servers = [
        (uvicorn.Server(uvicorn.Config(app, http=PeerCredProtocol, log_level="warning")),
         [listener])]
    if tcp is not None:
        servers.append((uvicorn.Server(uvicorn.Config(app, log_level="warning", **tcp)), None))
    if metrics:
        host, _, port = metrics.rpartition(":")
        servers.append((uvicorn.Server(uvicorn.Config(
            metrics_app, host=host or "127.0.0.1", port=int(port),
            log_level="warning")), None))
    return servers


def serve(servers: Servers) -> None:
    """Run the servers until SIGINT/SIGTERM."""
    import asyncio

    async def main() -> None:
        await asyncio.gather(*(s.serve(sockets=socks) for s, socks in servers))

    def stop(_sig: int, _frame: Any) -> None:
        for s, _ in servers:
            s.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    for s, _ in servers:  # we handle signals ourselves (all servers stop together)
        s.install_signal_handlers = lambda: None
    asyncio.run(main())


def run_reload(args: argparse.Namespace) -> int:
    """Ask the running switch to apply a (changed) file."""
    body: dict[str, Any] = {"path": os.path.abspath(args.file)} if args.file else {}
    body["live"] = "keep" if args.keep_live else "drop" if args.force else "refuse"
    try:
        data = request(endpoint(args), "POST", "/reload", body)
    except ClientError as err:
        live = err.data.get("live_changes") if isinstance(err.data, dict) else None
        if not live:
            return fail(err)
        sys.stderr.write(f"vspan: {err}; nothing was changed:\n")
        for line in live:
            sys.stderr.write(f"  {line}\n")
        sys.stderr.write("keep them on top of the file with `vspan reload --keep-live`, undo "
                         "them with `vspan reload --force`, or first save the running "
                         "configuration into the file (`vspan show config > FILE`)\n")
        return 1
    if data["empty"]:
        sys.stdout.write("no changes\n")
    for line in data["changes"]:
        sys.stdout.write(line + "\n")
    for line in data.get("live_kept", []):
        sys.stdout.write(f"kept live change: {line}\n")
    for line in data.get("live_dropped", []):
        sys.stdout.write(f"live change undone: {line}\n")
    return 0
