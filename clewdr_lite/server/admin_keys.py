"""Admin API for Gemini keys and Vertex service accounts (compat.md §7.8, gemini.md §5.5)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from clewdr_lite import lazy
from clewdr_lite.server.admin import _body, _json
from clewdr_lite.server.app import STATE, save_pool
from clewdr_lite.server.middleware import admin

gk = lazy.module("clewdr_lite.protocol.gemini_keys")
vx = lazy.module("clewdr_lite.protocol.vertex")


@admin
async def list_keys(request: web.Request) -> web.Response:
    """GET /api/keys: Gemini keys, masked, with their health."""
    pool = request.app[STATE].google["gemini"].pool
    pool.refresh(request.app[STATE].clock())
    valid = []
    for entry in pool.entries():
        view = {k: v for k, v in entry.items() if k != "key"}
        view["key"] = gk.mask_key(entry["key"])
        view.setdefault("count_403", 0)
        valid.append(view)
    valid.sort(key=lambda v: -int(v.get("count_403") or 0))
    return _json({"valid": valid})


@admin
async def add_key(request: web.Request) -> web.Response:
    """POST /api/key {"key": …}: 200, or 400 {"error": "Invalid key"}."""
    key = gk.clean_key(str((await _body(request)).get("key", "")))
    if not gk.valid_key(key):
        return _json({"error": "Invalid key"}, status=400)
    state = request.app[STATE]
    state.google["gemini"].pool.add({"key": key})
    await save_pool(state)
    return web.Response(status=200)


@admin
async def delete_key(request: web.Request) -> web.Response:
    """DELETE /api/key {"key": …}: 204, or 400 when unknown."""
    key = gk.clean_key(str((await _body(request)).get("key", "")))
    state = request.app[STATE]
    if not state.google["gemini"].pool.remove(key):
        return _json({"error": "Key not found"}, status=400)
    await save_pool(state)
    return web.Response(status=204)


@admin
async def list_credentials(request: web.Request) -> web.Response:
    """GET /api/vertex/credentials: never the private keys."""
    vertex = request.app[STATE].google["vertex"]
    return _json([vx.public_view(c) for c in vertex.creds.values()])


async def _save_credentials(state) -> None:
    creds = list(state.google["vertex"].creds.values())
    if state.config_file is not None:
        await asyncio.to_thread(state.config_file.save, vertex_credentials=creds)


@admin
async def add_credential(request: web.Request) -> web.Response:
    """POST /api/vertex/credential {"credential": {…}}: replaces an entry with the same email."""
    cred = (await _body(request)).get("credential")
    if not isinstance(cred, dict) or not cred.get("client_email"):
        return _json({"error": "client_email is required"}, status=400)
    missing = vx.validate_credential(cred)
    if missing:
        return _json({"error": f"credential lacks: {', '.join(missing)}"}, status=400)
    state = request.app[STATE]
    vertex = state.google["vertex"]
    creds = {**vertex.creds, vx.credential_id(cred): cred}
    vertex.set_credentials(list(creds.values()))
    await _save_credentials(state)
    return web.Response(status=200)


@admin
async def delete_credential(request: web.Request) -> web.Response:
    """DELETE /api/vertex/credential {"client_email": …}: 204, or 400 when unknown."""
    email = str((await _body(request)).get("client_email", "")).lower()
    state = request.app[STATE]
    vertex = state.google["vertex"]
    if email not in vertex.creds:
        return _json({"error": "Credential not found"}, status=400)
    vertex.set_credentials([c for ident, c in vertex.creds.items() if ident != email])
    await _save_credentials(state)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """Register the key and credential routes."""
    r = app.router
    r.add_get("/api/keys", list_keys)
    r.add_post("/api/key", add_key)
    r.add_delete("/api/key", delete_key)
    r.add_get("/api/vertex/credentials", list_credentials)
    r.add_post("/api/vertex/credential", add_credential)
    r.add_delete("/api/vertex/credential", delete_credential)
    setup_client_keys(app)


def _key_view(state, key) -> dict:
    """A client key as the admin sees it: never the key itself, only its prefix."""
    now = state.clock()
    return {"id": key.id, "name": key.name, "key_prefix": key.key_prefix, "models": list(key.models),
            "providers": list(key.providers), "rpm": key.rpm, "tpm": key.tpm, "budget_usd": key.budget_usd,
            "budget_period": key.budget_period, "spent_usd": round(state.spent(key, now), 6),
            "expires_at": key.expires_at, "disabled": key.disabled}


async def _store_client_keys(state, tables: list[dict]) -> None:
    """Swap the `[[client_keys]]` table in, rebuild the registry (buckets kept), save the file."""
    from clewdr_lite.client_keys import ClientKeys
    from clewdr_lite.server.app import log

    config = state.config.replace(tables={**state.config.tables, "client_keys": tables})
    state.client_keys = ClientKeys.from_tables(config.tables, warn=log.warning, previous=state.client_keys)
    state.set_config(config)
    if state.config_file is not None:
        await asyncio.to_thread(state.config_file.save, settings={"client_keys": tables})


@admin
async def list_client_keys(request: web.Request) -> web.Response:
    """GET /api/client_keys."""
    state = request.app[STATE]
    return _json({"keys": [_key_view(state, k) for k in state.client_keys.keys]})


@admin
async def create_client_key(request: web.Request) -> web.Response:
    """POST /api/client_keys {name, models, rpm, tpm, budget_usd, budget_period, expires_at}: the key, once."""
    import os

    from clewdr_lite.client_keys import new_key

    state = request.app[STATE]
    body = await _body(request)
    fields = {k: body[k] for k in ("name", "models", "providers", "rpm", "tpm", "max_parallel", "budget_usd",
                                   "budget_period", "expires_at") if body.get(k) is not None}
    plain, table = new_key(os.urandom(32), now=state.clock(), **fields)
    await _store_client_keys(state, [*(state.config.tables.get("client_keys") or []), table])
    return _json({"key": plain, "id": table["id"]}, status=201)


@admin
async def revoke_client_key(request: web.Request) -> web.Response:
    """DELETE /api/client_keys/{id}: disabled, kept for its usage history."""
    state = request.app[STATE]
    ident = request.match_info["id"]
    tables = [dict(t) for t in state.config.tables.get("client_keys") or []]
    hits = [t for t in tables if str(t.get("id")) == ident]
    if not hits:
        return _json({"error": "Client key not found"}, status=404)
    for table in hits:
        table["enabled"] = False
    await _store_client_keys(state, tables)
    return web.Response(status=204)


def setup_client_keys(app: web.Application) -> None:
    """Register the client-key routes."""
    app.router.add_get("/api/client_keys", list_client_keys)
    app.router.add_post("/api/client_keys", create_client_key)
    app.router.add_delete("/api/client_keys/{id}", revoke_client_key)
