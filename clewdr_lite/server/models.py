"""GET /v1/models: one path, three expected shapes (clients.md §9)."""

from __future__ import annotations

from aiohttp import web

from clewdr_lite import errors

# compat.md §3.6 [current]; each is listed with its `-thinking` twin
CLAUDE_MODELS = ("claude-fable-5", "claude-opus-5", "claude-opus-4-8", "claude-opus-4-7",
                 "claude-opus-4-6", "claude-opus-4-5-20251101", "claude-sonnet-5",
                 "claude-sonnet-4-6", "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001")
CREATED_AT = "2025-01-01T00:00:00Z"


def model_ids(config) -> list[str]:
    """The Claude ids with their twins, then configured aliases (advisory: any id is forwarded)."""
    ids = []
    for name in CLAUDE_MODELS:
        ids += [name, name + "-thinking"]
    aliases = (config.tables or {}).get("aliases") if isinstance(config.tables, dict) else None
    for alias in (aliases or {}):
        if alias not in ids:
            ids.append(alias)
    return ids


def _display(model_id: str) -> str:
    return model_id.replace("-", " ").title()


def union_entry(model_id: str) -> dict:
    """An entry both OpenAI and Anthropic readers accept."""
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "clewdr", "type": "model",
            "display_name": _display(model_id), "created_at": CREATED_AT}


def gemini_entry(model_id: str) -> dict:
    """A google-genai `Model`."""
    return {"name": f"models/{model_id}", "displayName": _display(model_id), "version": "001",
            "inputTokenLimit": 200000, "outputTokenLimit": 64000,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]}


def wants_gemini(request: web.Request) -> bool:
    """A Gemini caller: x-goog-api-key header or ?key= (clients.md §9)."""
    return "x-goog-api-key" in request.headers or "key" in request.query


def listing(ids: list[str], gemini: bool) -> dict:
    """The list body in the caller's shape."""
    if gemini:
        return {"models": [gemini_entry(i) for i in ids]}
    return {"object": "list", "data": [union_entry(i) for i in ids], "has_more": False,
            "first_id": ids[0] if ids else None, "last_id": ids[-1] if ids else None}


async def list_models(request: web.Request) -> web.Response:
    """GET /v1/models, /models."""
    from clewdr_lite.server.api import json_response
    from clewdr_lite.server.app import STATE

    if wants_gemini(request):
        from clewdr_lite.server.gemini_api import gemini_listing
        return json_response(await gemini_listing(request))
    return json_response(listing(model_ids(request.app[STATE].config), False))


async def get_model(request: web.Request) -> web.Response:
    """GET /v1/models/{id}: one entry (any id is served, the list is advisory)."""
    from clewdr_lite.server.api import json_response

    model_id = request.match_info["model"]
    if ":" in model_id:
        raise errors.NotFound(f"Unknown method on {request.path}")
    return json_response(gemini_entry(model_id) if wants_gemini(request) else union_entry(model_id))


def setup(app: web.Application) -> None:
    """Register the listing routes."""
    for prefix in ("/v1", ""):
        app.router.add_get(f"{prefix}/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
