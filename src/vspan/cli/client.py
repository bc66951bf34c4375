"""Talk to a running switch: over its control socket, or over its TCP API with a token."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_SOCKET = "/run/vspan/vspan0.sock"


@dataclass(frozen=True)
class Endpoint:
    """Where the switch's API is: its control socket, or a URL (``vspan up --listen``)
    with a bearer token read from ``token_file`` or the VSPAN_TOKEN variable."""

    socket: str = DEFAULT_SOCKET
    url: str | None = None
    token_file: str | None = None
    cacert: str | None = None  # CA bundle (or the self-signed certificate) for https

    def __str__(self) -> str:
        return self.url or self.socket

    def token(self) -> str:
        """The bearer token (ClientError when there is none)."""
        if self.token_file:
            try:
                with open(self.token_file, encoding="utf-8") as fh:
                    token = fh.read().strip()
            except OSError as err:
                raise ClientError(f"cannot read the token file {self.token_file}: "
                                  f"{err.strerror}") from None
        else:
            token = os.environ.get("VSPAN_TOKEN", "").strip()
        if not token:
            raise ClientError(f"{self.url} needs a token: put it in VSPAN_TOKEN or a file "
                              "given with --token-file (never on the command line)")
        return token


class ClientError(Exception):
    """The switch could not be reached or refused the request (``data``: its JSON answer)."""

    def __init__(self, message: str, data: Any = None, status: int = 0) -> None:
        super().__init__(message)
        self.data = data
        self.status = status  # the HTTP status of a refused request (0: none came)


def add_socket_arg(p: argparse.ArgumentParser) -> None:
    """The common options saying where the switch is: ``--socket`` (env VSPAN_SOCKET), or
    ``--url`` (env VSPAN_URL) with ``--token-file`` / VSPAN_TOKEN and ``--cacert``."""
    p.add_argument("--socket", "-S", default=os.environ.get("VSPAN_SOCKET", DEFAULT_SOCKET),
                   help="control socket of the running switch (default: %(default)s)")
    p.add_argument("--url", default=os.environ.get("VSPAN_URL") or None,
                   help="use the switch's TCP API instead (vspan up --listen), e.g. "
                        "https://sw1:8443; the token comes from VSPAN_TOKEN or --token-file")
    p.add_argument("--token-file", metavar="FILE",
                   default=os.environ.get("VSPAN_TOKEN_FILE") or None,
                   help="file holding the bearer token for --url")
    p.add_argument("--cacert", metavar="FILE", default=os.environ.get("VSPAN_CACERT") or None,
                   help="CA certificate (or the switch's self-signed one) to verify --url")


def endpoint(args: argparse.Namespace) -> Endpoint:
    """The :class:`Endpoint` the common options name."""
    return Endpoint(args.socket, getattr(args, "url", None), getattr(args, "token_file", None),
                    getattr(args, "cacert", None))


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


def _client(target: Endpoint, timeout: float) -> httpx.Client:
    if target.url is not None:
        verify: Any = True
        if target.cacert:
            import ssl

            try:
                verify = ssl.create_default_context(cafile=target.cacert)
            except (OSError, ssl.SSLError) as err:
                raise ClientError(f"cannot use the CA certificate {target.cacert}: "
                                  f"{err}") from None
        return httpx.Client(base_url=target.url, timeout=timeout, verify=verify,
                            headers={"Authorization": f"Bearer {target.token()}"})
    _check_socket(target.socket)
    return httpx.Client(transport=httpx.HTTPTransport(uds=target.socket),
                        base_url="http://vspan", timeout=timeout)


def request(target: str | Endpoint, method: str, path: str, body: Any = None,
            timeout: float = 15.0, params: dict[str, Any] | None = None) -> Any:
    """One request to the switch at ``target`` (a control socket path or an
    :class:`Endpoint`); returns the decoded JSON (or text for /metrics)."""
    if isinstance(target, str):
        target = Endpoint(target)
    try:
        with _client(target, timeout) as c:
            resp = c.request(method, path, json=body, params=params)
    except httpx.HTTPError as err:
        if target.url is None and (isinstance(err.__cause__, PermissionError)
                                   or "Permission denied" in str(err)):
            raise ClientError(_NO_ACCESS.format(target.socket)) from err
        raise ClientError(f"cannot talk to the switch at {target}: {err}") from err
    if resp.headers.get("content-type", "").startswith("application/json"):
        data = resp.json()
    else:
        data = resp.text
    if resp.status_code >= 400:
        if isinstance(data, dict) and "details" in data:
            lines = [f"{data.get('source', '')}: {d}" if data.get("source") else d
                     for d in data["details"]]
            raise ClientError(f"{data['error']}:\n  " + "\n  ".join(lines), data,
                              resp.status_code)
        if isinstance(data, dict) and "error" in data:
            raise ClientError(str(data["error"]), data, resp.status_code)
        raise ClientError(f"HTTP {resp.status_code}: {data}", data, resp.status_code)
    return data


def download(target: str | Endpoint, path: str, dest: str, timeout: float = 60.0) -> int:
    """GET ``path`` into the file ``dest`` (created owner-only); return its size."""
    if isinstance(target, str):
        target = Endpoint(target)
    size = 0
    try:
        with _client(target, timeout) as c, c.stream("GET", path) as resp:
            if resp.status_code >= 400:
                resp.read()
                try:
                    message = str(resp.json().get("error", resp.text))
                except ValueError:
                    message = resp.text
                raise ClientError(message, None, resp.status_code)
            old = os.umask(0o077)
            try:
                with open(dest, "wb") as fh:
                    for chunk in resp.iter_bytes():
                        fh.write(chunk)
                        size += len(chunk)
            finally:
                os.umask(old)
    except httpx.HTTPError as err:
        raise ClientError(f"cannot talk to the switch at {target}: {err}") from err
    except OSError as err:
        raise ClientError(f"cannot write {dest}: {err.strerror}") from err
    return size


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


def stream_lines(target: str | Endpoint, path: str, params: dict[str, Any]) -> Iterator[str]:
    """``GET path`` as a stream of text lines (newline-delimited JSON answers) from the
    switch at ``target``; raises :class:`ClientError` when it cannot be reached or
    refuses."""
    if isinstance(target, str):
        target = Endpoint(target)
    timeout = httpx.Timeout(15.0, read=None)  # a quiet stream is not a dead one
    try:
        with _client(target, 15.0) as c, \
                c.stream("GET", path, params=params, timeout=timeout) as resp:
            if resp.status_code >= 400:
                resp.read()
                try:
                    data = resp.json()
                except ValueError:
                    data = resp.text
                msg = data.get("error") if isinstance(data, dict) else None
                raise ClientError(str(msg or f"HTTP {resp.status_code}: {data}"), data,
                                  resp.status_code)
            yield from resp.iter_lines()
    except httpx.HTTPError as err:
        raise ClientError(f"cannot talk to the switch at {target}: {err}") from err
