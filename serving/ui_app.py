"""The JobCare report page: a small Starlette app serving ``serving/ui/`` (mounted by the service at ``/ui``).

The page is static (HTML, CSS, vanilla JS drawing its own SVG charts): it calls the service's JSON API from
the browser and loads nothing from anywhere else (the Content-Security-Policy below enforces it). Only the
files listed in :data:`FILES` are served; anything else is a 404.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

UI_DIR = Path(__file__).resolve().parent / "ui"
MOUNT_PATH = "/ui"
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    if name not in FILES:
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(UI_DIR / name, media_type=FILES[name], headers=HEADERS)


async def index(request: Request) -> Response:
    return _file("index.html")


async def asset(request: Request) -> Response:
    return _file(request.path_params["name"])


def create_app() -> Starlette:
    """The page's ASGI app; mount it with ``Service.mount_asgi_app(create_app(), path=MOUNT_PATH)``."""
    return Starlette(routes=[Route("/", index), Route("/{name}", asset)])
