"""Serves the prebuilt admin UI bundle, after every API route and never for an API path."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

from clewdr_lite import errors
from clewdr_lite.server.middleware import public

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
API_PREFIXES = ("/v1", "/code", "/gemini", "/vertex", "/v1beta", "/api", "/health", "/readyz",
                "/metrics", "/messages", "/chat", "/models")


@public
async def ui(request: web.Request) -> web.StreamResponse:
    """A file of the bundle; unknown non-file paths get index.html (client-side routing)."""
    path = request.path
    if request.method not in ("GET", "HEAD") or path.startswith(API_PREFIXES):
        raise errors.NotFound(f"Not found: {request.method} {path}")
    root = STATIC_DIR
    target = (root / path.lstrip("/")).resolve()
    if root not in target.parents and target != root:
        raise errors.NotFound("Not found")
    if target.is_file():
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        cache = "no-cache" if target.name == "index.html" else "public, max-age=31536000, immutable"
        return web.FileResponse(target, headers={"Content-Type": kind, "Cache-Control": cache})
    index = root / "index.html"
    if "." in path.rsplit("/", 1)[-1] or not index.is_file():
        raise errors.NotFound(f"Not found: {path}")
    return web.FileResponse(index, headers={"Content-Type": "text/html; charset=utf-8",
                                            "Cache-Control": "no-cache"})


def setup(app: web.Application) -> None:
    """The catch-all route comes last."""
    app.router.add_route("*", "/{path:.*}", ui)
