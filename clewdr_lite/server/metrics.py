"""Health endpoints (gateway.md §12.3): liveness, readiness, and which HTTP client claude.ai uses."""

from __future__ import annotations

import hmac

from aiohttp import web

from clewdr_lite import __version__
from clewdr_lite.server.middleware import public


def _is_admin(request: web.Request, admin_password: str) -> bool:
    auth = request.headers.get("Authorization", "")
    return auth[:7].lower() == "bearer " and bool(admin_password) and hmac.compare_digest(
        auth[7:].strip().encode(), admin_password.encode())


@public
async def health(request: web.Request) -> web.Response:
    """GET /health, /healthz: always 200 while the process serves."""
    from clewdr_lite.server.app import STATE

    state = request.app[STATE]
    return web.json_response({"status": "ok", "version": __version__,
                              "http_client": state.http_backend,
                              "uptime_s": round(state.clock() - state.started, 1)})


@public
async def ready(request: web.Request) -> web.Response:
    """GET /readyz: 200 when a cookie is usable, else 503; details only for the admin."""
    from clewdr_lite.server.app import STATE

    state = request.app[STATE]
    valid, exhausted, invalid = state.pool.counts()
    body = {"status": "ready" if valid else "degraded"}
    if _is_admin(request, state.config.admin_password):
        body["providers"] = {"claude_web": {"active": valid, "cooling": exhausted, "disabled": invalid,
                                            "breaker": "closed"}}
        body["http_client"] = state.http_backend
    return web.json_response(body, status=200 if valid else 503)


def setup(app: web.Application) -> None:
    """Register the health routes."""
    for path in ("/health", "/healthz"):
        app.router.add_get(path, health)
    app.router.add_get("/readyz", ready)
