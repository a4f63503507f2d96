"""Authentication and the one error funnel that renders every error in the request's dialect."""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging

from aiohttp import web

from clewdr_lite import errors
from clewdr_lite.server.app import STATE

log = logging.getLogger("clewdr_lite.server")

ADMIN = "admin"
PUBLIC, API, ADMIN_AUTH = "public", "api", "admin"
_JSON_HEADERS = {"Content-Type": "application/json"}
_HTTP_MESSAGES = {404: "Not found: {method} {path}", 405: "Method {method} is not allowed on {path}",
                  413: "Request body too large (limit: max_body_mb)"}


def public(handler):
    """Mark a handler as needing no authentication."""
    handler.auth = PUBLIC
    return handler


def admin(handler):
    """Mark a handler as needing the admin password."""
    handler.auth = ADMIN_AUTH
    return handler


@functools.lru_cache(maxsize=256)  # a few paths a gateway's clients use; once per request (the log row)
def dialect_of(path: str) -> str:
    """The error dialect a path implies (clients.md §10: never the UI page for API paths)."""
    if path.startswith("/api/"):
        return ADMIN
    if "chat/completions" in path:
        return errors.OPENAI
    if "/v1beta" in path or path.startswith(("/vertex", "/gemini")) or ":" in path.rsplit("/", 1)[-1]:
        return errors.GEMINI
    if path.rstrip("/") in ("/v1/models", "/models", "/code/v1/models"):
        return errors.OPENAI
    return errors.ANTHROPIC


def error_response(err: errors.ProxyError, dialect: str) -> web.Response:
    """Render one error (conversions.md §14; admin routes use `{"error": text}`, compat.md §9.2)."""
    if dialect == ADMIN and not isinstance(err, errors.AuthError):
        body = {"error": err.message}
    else:
        body = errors.render(err, errors.ANTHROPIC if dialect == ADMIN else dialect)
    return web.Response(status=err.status, headers={**_JSON_HEADERS, **err.headers},
                        body=json.dumps(body, ensure_ascii=False).encode())


def _from_http(exc: web.HTTPException, request: web.Request) -> errors.ProxyError:
    template = _HTTP_MESSAGES.get(exc.status)
    message = template.format(method=request.method, path=request.path) if template else exc.reason
    return errors.ProxyError(message, status=exc.status, type=errors.anthropic_type(exc.status))


@web.middleware
async def error_funnel(request: web.Request, handler):
    """Every error, whatever raised it, leaves here in the caller's dialect; never a traceback."""
    try:
        return await handler(request)
    except errors.ProxyError as err:
        if err.status >= 500:
            log.warning("%s %s -> %d %s", request.method, request.path, err.status, err.message)
        return error_response(err, dialect_of(request.path))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(_from_http(exc, request), dialect_of(request.path))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:  # the funnel's whole point: log it, answer a clean 500
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(errors.ProxyError("internal error; see the proxy log"),
                              dialect_of(request.path))


def presented_keys(request: web.Request) -> list[str]:
    """Every secret the request carries: x-api-key, Bearer, x-goog-api-key, ?key= (compat.md §6)."""
    keys = []
    headers = request.headers
    for name in ("x-api-key", "x-goog-api-key"):
        if headers.get(name):
            keys.append(headers[name].strip())
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        keys.append(auth[7:].strip())
    if request.query_string and request.query.get("key"):  # parsed only when there is one
        keys.append(request.query["key"].strip())
    return keys


def matches(secret: str, keys: list[str]) -> bool:
    """Constant-time comparison of each presented key with the secret."""
    target = secret.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(key.encode(), target)
    return found and bool(secret)


def mask(key: str) -> str:
    """A presented key as it may appear in a log."""
    return (key[:4] + "…" + key[-2:]) if len(key) > 8 else "…"


def _client_key(request: web.Request, keys: list[str]) -> bool:
    """A `sk-clewdr-…` client key (gateway.md §9); its limits are checked once the model is known."""
    from clewdr_lite.server.accounting import CLIENT_KEY

    registry = request.app[STATE].client_keys
    for key in keys:
        found = registry.lookup(key) if registry is not None else None
        if found is not None:
            request[CLIENT_KEY] = found
            return True
    return False


@web.middleware
async def authenticate(request: web.Request, handler):
    """API password on inference routes, admin password on /api/*, before the body is read."""
    kind = getattr(handler, "auth", API)
    if kind == PUBLIC or request.method == "OPTIONS" or request.match_info.http_exception is not None:
        return await handler(request)
    config = request.app[STATE].config
    keys = presented_keys(request)
    if kind == ADMIN_AUTH:
        auth = request.headers.get("Authorization", "")
        ok = auth[:7].lower() == "bearer " and matches(config.admin_password, [auth[7:].strip()])
    else:
        ok = matches(config.password, keys) or _client_key(request, keys)
    if ok:
        return await handler(request)
    log.warning("401 on %s %s: key %s, User-Agent %r", request.method, request.path,
                mask(keys[0]) if keys else "(none)", request.headers.get("User-Agent", ""))
    if "undefined" in keys:
        raise errors.AuthError("The API key sent is the text 'undefined': the client has no key "
                               "saved. Enter the clewdr-lite password as the API key and save it.")
    raise errors.AuthError("Key/Password Invalid")


def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """CORS on inference routes only, any origin, request headers reflected (compat.md §11)."""
    if request.path.startswith("/api/"):  # the admin API (dialect_of's ADMIN)
        return
    response.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "*")
    response.headers["Vary"] = "Origin"
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, DELETE, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "authorization, content-type, x-api-key")
        response.headers["Access-Control-Max-Age"] = "600"
