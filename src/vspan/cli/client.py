"""Talk to a running switch over its control socket."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

DEFAULT_SOCKET = "/run/vspan/vspan0.sock"


class ClientError(Exception):
    """The switch could not be reached or refused the request (``data``: its JSON answer)."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.data = data


def add_socket_arg(p: argparse.ArgumentParser) -> None:
    """The common ``--socket`` option (env VSPAN_SOCKET)."""
    p.add_argument("--socket", "-S", default=os.environ.get("VSPAN_SOCKET", DEFAULT_SOCKET),
                   help="control socket of the running switch (default: %(default)s)")


_NO_ACCESS = ("permission denied on the control socket {0}: only its owner (and the group "
              "given with `vspan up --socket-group`) may use it")


def _check_socket(socket: str) -> None:
    """Say plainly when there is no switch, or when this user may not use its socket."""
    try:
        os.stat(socket)
    except FileNotFoundError:
        raise ClientError(f"no switch is running at {socket} (start one with "
                          "`vspan up -c FILE`)") from None
    except PermissionError:
        raise ClientError(_NO_ACCESS.format(socket)) from None
    if not os.access(socket, os.R_OK | os.W_OK):
        raise ClientError(_NO_ACCESS.format(socket))


def request(socket: str, method: str, path: str, body: Any = None,
            timeout: float = 15.0) -> Any:
    """One request; returns the decoded JSON (or text for /metrics)."""
    _check_socket(socket)
    transport = httpx.HTTPTransport(uds=socket)
    try:
        with httpx.Client(transport=transport, base_url="http://vspan", timeout=timeout) as c:
            resp = c.request(method, path, json=body)
    except httpx.HTTPError as err:
        if isinstance(err.__cause__, PermissionError) or "Permission denied" in str(err):
            raise ClientError(_NO_ACCESS.format(socket)) from err
        raise ClientError(f"cannot talk to the switch at {socket}: {err}") from err
    if resp.headers.get("content-type", "").startswith("application/json"):
        data = resp.json()
    else:
        data = resp.text
    if resp.status_code >= 400:
        if isinstance(data, dict) and "details" in data:
            lines = [f"{data.get('source', '')}: {d}" if data.get("source") else d
                     for d in data["details"]]
            raise ClientError(f"{data['error']}:\n  " + "\n  ".join(lines), data)
        if isinstance(data, dict) and "error" in data:
            raise ClientError(str(data["error"]), data)
        raise ClientError(f"HTTP {resp.status_code}: {data}", data)
    return data


def fail(err: Exception) -> int:
    """Report a client error on stderr; exit status 1."""
    sys.stderr.write(f"vspan: {err}\n")
    return 1


def print_json(data: Any) -> None:
    """Pretty JSON to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    """A plain aligned table; ``columns`` = (header, key) with dotted keys allowed."""

    def get(row: dict[str, Any], key: str) -> str:
        val: Any = row
        for part in key.split("."):
            val = val.get(part, "") if isinstance(val, dict) else ""
        if isinstance(val, list):
            return ",".join(str(v) for v in val) or "-"
        if val is None or val == "":
            return "-"
        return str(val)

    table = [[h for h, _ in columns]] + [[get(r, k) for _, k in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                         + "\n")
