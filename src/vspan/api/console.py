"""The web console: static HTML, CSS and JavaScript served by the switch's API (package
data, no build step). The page itself is public (it holds no switch data); everything it
shows comes from the API with the bearer token the user logs in with (kept in the tab's
``sessionStorage``, sent in the ``Authorization`` header; see docs/console.md).

Every console answer carries a strict Content-Security-Policy: scripts, styles and
connections only from the switch itself, no inline script or style, no framing.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Annotated

from fastapi import FastAPI, Path
from fastapi.responses import RedirectResponse, Response

from vspan.control.agent import AgentError

PACKAGE = "vspan.api"
FILES = "console_files"
INDEX = "index.html"
ASSET = re.compile(r"[a-z][a-z0-9-]{0,40}\.(css|js|svg)")  # fullmatch: no paths, no dots
MEDIA = {"html": "text/html; charset=utf-8", "css": "text/css; charset=utf-8",
         "js": "text/javascript; charset=utf-8", "svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
           "Cross-Origin-Opener-Policy": "same-origin", "Cache-Control": "no-cache"}


@cache
def console_file(name: str) -> bytes | None:
    """The bytes of one shipped console file (None: there is no such file)."""
    if name != INDEX and not ASSET.fullmatch(name):
        return None
    path = resources.files(PACKAGE).joinpath(FILES, name)
    if not path.is_file():
        return None
    return path.read_bytes()


def _answer(name: str) -> Response:
    body = console_file(name)
    if body is None:
        raise AgentError(f"the console has no file called {name!r}", 404)
    return Response(body, media_type=MEDIA[name.rpartition(".")[2]], headers=HEADERS)


def add_console(app: FastAPI) -> None:
    """Add ``GET /`` (to the console), ``GET /console`` and ``GET /console/{asset}``."""

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console", status_code=307)

    @app.get("/console", include_in_schema=False)
    def console_page() -> Response:
        return _answer(INDEX)

    @app.get("/console/{asset}", include_in_schema=False)
    def console_asset(asset: Annotated[str, Path(max_length=64)]) -> Response:
        return _answer(asset)
