"""Who may use a running switch: roles, the role map of the control socket, the TCP API.

These are configuration types only; what a role may do is decided in
:mod:`vspan.control.roles`, and the API enforces it (:mod:`vspan.api.access`).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping

from pydantic import Field, field_validator, model_validator

from vspan.config.base import Strict

# POSIX user/group names (a trailing $ for machine accounts) or numeric ids
GROUP_OR_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,31}\$?")  # fullmatch only


class Role(enum.StrEnum):
    """What an identity may do (``viewer`` reads; the others add their part; ``admin`` all)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    MIRROR_ADMIN = "mirror-admin"
    ADMIN = "admin"


class Unmapped(enum.StrEnum):
    """What a control-socket peer gets when neither its user nor a group of it is mapped."""

    NONE = "none"
    VIEWER = "viewer"


class RolesConfig(Strict):
    """Roles of control-socket peers (their uid is the identity; root and the switch's own
    user are always ``admin``)."""

    users: Mapping[str, Role] = Field(default_factory=dict)
    groups: Mapping[str, Role] = Field(default_factory=dict)
    unmapped: Unmapped = Unmapped.NONE

    @field_validator("users", "groups")
    @classmethod
    def _names(cls, value: Mapping[str, Role]) -> Mapping[str, Role]:
        for name in value:
            if not GROUP_OR_USER_RE.fullmatch(name):
                raise ValueError(f"{name!r} is not a user or group name (or a numeric id)")
        return value


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ValueError says what is wrong."""
    host, sep, port_s = listen.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{listen!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_s)
    except ValueError:
        raise ValueError(f"{listen!r}: {port_s!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{listen!r}: port {port} is not 1-65535")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{listen!r}: {host!r} is not an IP address (or localhost)") \
                from None
    return host, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) is a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plain_http_refusal(listen: str) -> str | None:
    """Why plain HTTP may not listen on ``listen`` (None: it may: a loopback address)."""
    host, _ = split_listen(listen)
    if is_loopback(host):
        return None
    return (f"plain HTTP on {listen} would send bearer tokens in clear text: listen on a "
            "loopback address (127.0.0.1, [::1]) or give a TLS certificate and key "
            "(--tls-cert/--tls-key, switch.api.tls_cert/tls_key)")


class ApiConfig(Strict):
    """The REST API over TCP (besides the control socket); bearer tokens required there."""

    listen: str | None = None  # HOST:PORT; none = control socket only
    tls_cert: str | None = None  # PEM certificate (chain) file
    tls_key: str | None = None  # PEM private key file

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_listen(value)
        return value

    @model_validator(mode="after")
    def _tls(self) -> ApiConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.listen is not None and self.tls_cert is None:
            refusal = plain_http_refusal(self.listen)
            if refusal:
                raise ValueError(f"listen: {refusal}")
        return self
