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
    now = state.clock()
    providers = {name: {**counts, "breaker": state.breakers.state(name, "*", now)}
                 for name, counts in credential_states(state).items()}
    ready = any(p["active"] and p["breaker"] != "open" for p in providers.values())
    body = {"status": "ready" if ready else "degraded"}
    if _is_admin(request, state.config.admin_password):
        body["providers"] = providers
        body["http_client"] = state.http_backend
    return web.json_response(body, status=200 if ready else 503)


@public
async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text; the admin Bearer is needed unless `[metrics] public = true`."""
    from clewdr_lite import telemetry
    from clewdr_lite.errors import AuthError
    from clewdr_lite.server.app import STATE

    state = request.app[STATE]
    table = state.config.tables.get("metrics") or {}
    if not table.get("public") and not _is_admin(request, state.config.admin_password):
        raise AuthError("the admin password is needed for /metrics (or set [metrics] public = true)")
    return web.Response(body=state.metrics.registry.render().encode(),
                        headers={"Content-Type": telemetry.CONTENT_TYPE})


def credential_states(state) -> dict:
    """{provider: {state: n}} for the credential gauge, read at scrape time."""
    valid, exhausted, invalid = state.pool.counts()
    out = {"claude_web": {"active": valid, "cooling": exhausted, "disabled": invalid}}
    now = state.clock()
    pools = {name: keyed.pool for name, keyed in state.keyed.items()}
    pools.update({kind: google.pool for kind, google in state.google.items()})
    for name, pool in pools.items():
        active, cooling, disabled = pool.counts(now)
        out[name] = {"active": active, "cooling": cooling, "disabled": disabled}
    return out


def setup(app: web.Application) -> None:
    """Register the health and metrics routes."""
    for path in ("/health", "/healthz"):
        app.router.add_get(path, health)
    app.router.add_get("/readyz", ready)
    app.router.add_get("/metrics", metrics)
