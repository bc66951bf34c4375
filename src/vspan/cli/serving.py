"""What ``vspan up`` sets up around the API: the state directory, the token store and
audit log it guards with, and the TCP listener (TLS, or plain HTTP on loopback only)."""

from __future__ import annotations

import logging
import os
import ssl
import stat
from dataclasses import dataclass
from typing import Any

from vspan.api.access import Guard
from vspan.config.access import ApiConfig, plain_http_refusal, split_listen
from vspan.control.agent import Agent
from vspan.control.audit import AuditLog
from vspan.control.tokens import SqliteTokenStore, TokenError

log = logging.getLogger(__name__)

TOKEN_DB = "auth.db"
AUDIT_LOG = "audit.jsonl"


class ServeError(Exception):
    """The API cannot be served as asked; the message says why."""


@dataclass(frozen=True)
class TcpServer:
    """How uvicorn listens on TCP (``kwargs``) and the URL clients use."""

    url: str
    kwargs: dict[str, Any]


def tcp_server_config(api: ApiConfig, listen: str | None, cert: str | None,
                      key: str | None) -> TcpServer | None:
    """The TCP listener from the command line (over ``switch.api``), or None.

    Plain HTTP is refused on anything but a loopback address; a certificate and key
    must load (checked here, so the switch does not start half-way).
    """
    listen = listen or api.listen
    cert = cert or api.tls_cert
    key = key or api.tls_key
    if (cert is None) != (key is None):
        raise ServeError("--tls-cert and --tls-key go together")
    if listen is None:
        if cert is not None:
            raise ServeError("--tls-cert/--tls-key need --listen HOST:PORT")
        return None
    try:
        host, port = split_listen(listen)
        refusal = None if cert else plain_http_refusal(listen)
    except ValueError as err:
        raise ServeError(f"--listen: {err}") from None
    if refusal:
        raise ServeError(f"--listen: {refusal}")
    kwargs: dict[str, Any] = {"host": host, "port": port}
    scheme = "http"
    if cert is not None and key is not None:
        try:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as err:
            raise ServeError(f"cannot use the TLS certificate {cert} and key {key}: "
                             f"{getattr(err, 'strerror', None) or err}") from None
        _warn_if_readable(key)
        kwargs |= {"ssl_certfile": cert, "ssl_keyfile": key}
        scheme = "https"
    shown = f"[{host}]" if ":" in host else host
    return TcpServer(f"{scheme}://{shown}:{port}", kwargs)


def _warn_if_readable(key: str) -> None:
    try:
        mode = os.stat(key).st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("TLS key %s can be read by others than its owner (mode %o)", key,
                    stat.S_IMODE(mode))


def prepare_state_dir(path: str) -> None:
    """Create the state directory (mode 0700) when missing."""
    old = os.umask(0o077)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as err:
        raise ServeError(f"state directory {path}: {err.strerror} (--state-dir or "
                         "switch.state_dir chooses another)") from None
    finally:
        os.umask(old)
    if not os.path.isdir(path):
        raise ServeError(f"state directory {path} is not a directory")
    st = os.stat(path)
    if st.st_uid != os.geteuid():
        raise ServeError(f"state directory {path} belongs to uid {st.st_uid}, not to this "
                         f"user (uid {os.geteuid()})")
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise ServeError(f"state directory {path} is writable by others (mode "
                         f"{stat.S_IMODE(st.st_mode):o}): others could replace the token store")


def auth_guard(agent: Agent) -> Guard:
    """The guard of ``agent``'s API: tokens and audit log in its state directory."""
    prepare_state_dir(agent.state_dir)
    try:
        tokens = SqliteTokenStore(os.path.join(agent.state_dir, TOKEN_DB))
    except (TokenError, OSError) as err:
        raise ServeError(f"token store: {err}") from None
    except Exception as err:  # sqlite3.DatabaseError: not a database, corrupt
        raise ServeError(f"token store {os.path.join(agent.state_dir, TOKEN_DB)}: {err}") \
            from None
    audit = AuditLog(os.path.join(agent.state_dir, AUDIT_LOG))
    return Guard(tokens, audit, lambda: agent.config.switch.roles, os.geteuid())
