"""Admin API for the web UI (compat.md §7): auth check, cookies, config, storage status."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import datetime, timezone

from aiohttp import web

from clewdr_lite import errors
from clewdr_lite.protocol import claude_web_account as web_proto
from clewdr_lite.server.app import STATE, save_pool
from clewdr_lite.server.middleware import admin, public

log = logging.getLogger("clewdr_lite.admin")
LISTING_TTL_S = 300


def _json(data, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, content_type="application/json", headers=headers,
                        body=json.dumps(data, ensure_ascii=False).encode())


async def _body(request: web.Request) -> dict:
    try:
        data = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise errors.BadRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise errors.BadRequest("body must be a JSON object")
    return data


@public
async def version(request: web.Request) -> web.Response:
    """GET /api/version: plain text (compat.md §10.1)."""
    from clewdr_lite.cli import version_text

    return web.Response(text=version_text(request.app[STATE].config.no_fs))


@admin
async def auth(request: web.Request) -> web.Response:
    """GET /api/auth: 200 when the admin token is right (the middleware checked it)."""
    return web.Response(status=200)


def _rfc3339(ts) -> str | None:
    if not isinstance(ts, (int, float)) or ts <= 0:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def cookie_view(record: dict) -> dict:
    """A cookie record as listed: never the OAuth token (compat.md §7.3)."""
    view = {k: v for k, v in record.items() if k != "token"}
    view["session_resets_at"] = _rfc3339(record.get("session_resets_at"))
    view["seven_day_resets_at"] = _rfc3339(record.get("weekly_resets_at"))
    view["seven_day_sonnet_resets_at"] = _rfc3339(record.get("weekly_sonnet_resets_at"))
    return view


def _listing(state) -> dict:
    pool = state.pool
    invalid = []
    for record in pool.invalid:
        entry = {k: v for k, v in record.items() if k != "token"}
        try:
            entry["reason_text"] = web_proto.reason_text(web_proto.reason_from_toml(record["reason"]))
        except (ValueError, KeyError, TypeError):
            entry["reason_text"] = str(record.get("reason"))
        invalid.append(entry)
    return {"valid": [cookie_view(r) for r in pool.valid],
            "exhausted": [cookie_view(r) for r in pool.exhausted], "invalid": invalid}


@admin
async def list_cookies(request: web.Request) -> web.Response:
    """GET /api/cookies[?refresh=true]: cached for 5 minutes in one slot."""
    state = request.app[STATE]
    now = state.clock()
    cache = state.listing
    fresh = (cache is not None and cache[0] == state.pool.version and now - cache[1] < LISTING_TTL_S
             and request.query.get("refresh") != "true")
    if not fresh:
        state.pool.unpark_due(now)
        cache = (state.pool.version, now, _listing(state))
        state.listing = cache
    return _json(cache[2], headers={"X-Cache-Status": "HIT" if fresh else "MISS",
                                    "X-Cache-Timestamp": str(int(cache[1]))})


@admin
async def add_cookie(request: web.Request) -> web.Response:
    """POST /api/cookie {"cookie": …}: 200 also for duplicates; 422 text for a bad format."""
    body = await _body(request)
    try:
        cookie = web_proto.parse_cookie(str(body.get("cookie", "")))
    except ValueError:
        return web.Response(status=422, text="Failed to deserialize the JSON body into the target type: "
                                             "cookie: Invalid cookie format")
    state = request.app[STATE]
    if not state.pool.add(cookie):
        log.warning("cookie %s already in the pool", web_proto.mask_log(cookie))
    else:
        log.info("cookie %s added", web_proto.mask_log(cookie))
        await save_pool(state)
    return web.Response(status=200)


@admin
async def delete_cookie(request: web.Request) -> web.Response:
    """DELETE /api/cookie {"cookie": …}: 204, or 404 when unknown."""
    body = await _body(request)
    try:
        cookie = web_proto.parse_cookie(str(body.get("cookie", "")))
    except ValueError:
        cookie = str(body.get("cookie", ""))
    state = request.app[STATE]
    if not state.pool.remove(cookie):
        return _json({"error": "Cookie not found"}, status=404)
    state.web.accounts.pop(cookie, None)
    await save_pool(state)
    return web.Response(status=204)


@admin
async def import_oauth(request: web.Request) -> web.Response:
    """POST /api/oauth_token {"credentials": …}: a Claude Code login without a cookie (claude-code.md §5)."""
    import hashlib

    from clewdr_lite.protocol import claude_code as cc

    state = request.app[STATE]
    body = await _body(request)
    try:
        token = cc.parse_imported(str(body.get("credentials", "")), now=state.clock())
    except ValueError as exc:
        raise errors.BadRequest(f"not Claude Code credentials: {exc}") from None
    ident = "oauth-" + hashlib.sha256(token["access_token"].encode()).hexdigest()[:12]
    record = {"cookie": ident, "imported": True, "token": token}
    if body.get("label"):
        record["label"] = str(body["label"])[:80]
    added = state.pool.add(record)
    if added:
        await save_pool(state)
    return _json({"id": ident, "added": added})


@admin
async def get_config(request: web.Request) -> web.Response:
    """GET /api/config: settings with masked passwords and `env_locked`."""
    return _json(request.app[STATE].config.public_dict())


@admin
async def post_config(request: web.Request) -> web.Response:
    """POST /api/config: merge semantics; masked passwords and env-locked keys stay as they are."""
    from clewdr_lite.config import FLAT_KEYS, MASK, parse

    state = request.app[STATE]
    body = await _body(request)
    current = state.config
    changes = {k: v for k, v in body.items() if k in FLAT_KEYS and k not in current.env_locked
               and not (isinstance(v, str) and v.startswith(MASK))}
    doc = {key: getattr(current, key) for key in FLAT_KEYS}
    doc.update({k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()})
    doc = {k: v for k, v in doc.items() if v is not None}
    doc.update(cookie_array=[], wasted_cookie=[], gemini_keys=list(current.gemini_keys),
               vertex=current.vertex, **current.tables)
    fresh, warnings = parse(doc, os.environ)
    new = fresh.replace(cookie_array=current.cookie_array, wasted_cookie=current.wasted_cookie)
    if state.config_file is not None:
        settled = {k: getattr(new, k) for k in changes}
        try:
            await asyncio.to_thread(state.config_file.save, settings=settled)
        except OSError as exc:
            return _json({"error": f"Failed to save config: {exc}"}, status=500)
    state.set_config(new)
    return _json({"message": "Config updated successfully", "config": new.public_dict(),
                  "warnings": warnings})


@admin
async def logs(request: web.Request) -> web.Response:
    """GET /api/logs?limit=&key=&provider=&status=&since=: the newest request-log rows."""
    store = request.app[STATE].store
    q = request.query
    try:
        limit = int(q.get("limit", 100))
        since = float(q["since"]) if "since" in q else None
    except ValueError:
        raise errors.BadRequest("limit and since must be numbers") from None
    rows = await asyncio.to_thread(store.recent, limit, since=since, key=q.get("key"),
                                   provider=q.get("provider"), status=q.get("status"))
    return _json({"rows": rows})


@admin
async def usage(request: web.Request) -> web.Response:
    """GET /api/usage?group_by=key|provider|credential|model|day&since=: aggregated usage."""
    store = request.app[STATE].store
    group = request.query.get("group_by", "provider")
    try:
        since = float(request.query["since"]) if "since" in request.query else None
        rows = await asyncio.to_thread(store.usage, group, since)
    except ValueError as exc:
        raise errors.BadRequest(str(exc)) from None
    return _json({"group_by": group, "rows": rows})


@admin
async def storage_status(request: web.Request) -> web.Response:
    """GET /api/storage/status: file mode, with real write statistics (compat.md §7.9)."""
    file = request.app[STATE].config_file
    stats = file.stats() if file is not None else {}
    return _json({"enabled": False, "mode": "file", "healthy": True, "details": {"driver": "file"},
                  "write_error_count": stats.get("write_error_count", 0),
                  "total_writes": stats.get("total_writes", 0),
                  "avg_write_ms": stats.get("avg_write_ms", 0.0),
                  "failure_ratio": stats.get("failure_ratio", 0.0),
                  "last_write_ts": stats.get("last_write_ts", 0)})


@admin
async def storage_unsupported(request: web.Request) -> web.Response:
    """POST /api/storage/import|export: there is no database mode."""
    return _json({"error": "DB feature not enabled"}, status=501)


def setup(app: web.Application) -> None:
    """Register the admin routes."""
    r = app.router
    r.add_get("/api/version", version)
    r.add_get("/api/auth", auth)
    r.add_get("/api/cookies", list_cookies)
    r.add_post("/api/cookie", add_cookie)
    r.add_delete("/api/cookie", delete_cookie)
    r.add_post("/api/oauth_token", import_oauth)
    r.add_get("/api/config", get_config)
    r.add_post("/api/config", post_config)
    r.add_get("/api/storage/status", storage_status)
    r.add_get("/api/logs", logs)
    r.add_get("/api/usage", usage)
    r.add_post("/api/storage/import", storage_unsupported)
    r.add_post("/api/storage/export", storage_unsupported)
