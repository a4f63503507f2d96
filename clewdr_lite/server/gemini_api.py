"""Gemini routes: native at the root and ClewdR's paths, Vertex paths, OpenAI-compatible /gemini (gemini.md §1, §6)."""

from __future__ import annotations

import asyncio
import json
import uuid

from aiohttp import web

from clewdr_lite import errors, lazy
from clewdr_lite.protocol import tokens
from clewdr_lite.protocol.sse import ByteRelay, json_bytes
from clewdr_lite.server.accounting import acct, admit, decorate, usage_scanner
from clewdr_lite.server.api import OpenAIRawOut, json_response, read_json, route_for
from clewdr_lite.server.app import STATE
from clewdr_lite.server.hub import hub_call
from clewdr_lite.server.streaming import send_stream, upstream_chunks

gem = lazy.module("clewdr_lite.protocol.gemini")  # imported when a Gemini route is first used

METHODS = ("generateContent", "streamGenerateContent", "countTokens")
KEEPALIVE_FIRST_S = 15.0


class GeminiRawOut(ByteRelay):
    """Upstream Gemini bytes unchanged; no keep-alives (some SSE readers parse every line, §8)."""

    def __init__(self, *, sse: bool, usage=None) -> None:
        super().__init__(usage)
        self._sse = sse
        self._wrote = False

    def relay(self, data: bytes) -> bytes:
        """The bytes as they came."""
        self._wrote = self._wrote or bool(data)
        return data

    def error_bytes(self, event: dict) -> bytes:
        """Google's error object, in the stream's form: an SSE event, or the JSON array's last."""
        error = json_bytes(gem.hub_error(event.get("error")))
        if self._sse:
            return b"data: " + error + b"\n\n"
        return (b",\n" if self._wrote else b"[") + error + b"]"

    def keepalive(self) -> bytes:
        """Nothing: silence is safer than a comment line here."""
        return b""


class GeminiOut:
    """Hub events → Gemini stream bytes, via protocol.gemini.GeminiStream."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.feed, self.close = stream.feed, stream.close

    def keepalive(self) -> bytes:
        """No keep-alives on Gemini streams (§8)."""
        return b""


def _bound(path: str) -> str | None:
    if path.startswith(("/v1/vertex/", "/vertex/")):
        return "vertex"
    if path.startswith("/v1/v1beta/"):
        return "gemini"  # ClewdR's AI Studio route keeps its meaning (gateway.md §3.3)
    return None


def _split_target(request: web.Request) -> tuple[str, str]:
    model, _, method = request.match_info["target"].rpartition(":")
    if method not in METHODS or not model:
        raise errors.NotFound(f"Unknown Gemini method in {request.path}")
    return model, method


async def native(request: web.Request) -> web.StreamResponse:
    """POST …/models/{model}:{generateContent|streamGenerateContent|countTokens}."""
    state = request.app[STATE]
    model, method = _split_target(request)
    body = await read_json(request)
    if method == "generateContent" and gem.is_hi(body):
        return json_response(gem.hi_response(model, "resp-" + uuid.uuid4().hex[:16]))
    route = route_for(state, model, errors.GEMINI, bound=_bound(request.path), default="gemini")
    kind = state.provider(route.provider).type
    admit(request, model=model, provider=route.provider, upstream_model=route.model, req=body)
    acct(request).update(provider=route.provider, model=model, upstream_model=route.model,
                         stream=method == "streamGenerateContent")
    if kind in ("gemini", "vertex"):
        return await _native_google(request, state.google[kind], route.model, method, body)
    return await _native_via_hub(request, route, model, method, gem.normalize(body))


async def _native_google(request, google, model: str, method: str, body: dict) -> web.StreamResponse:
    alt = request.query.get("alt")
    usage = usage_scanner(request, errors.GEMINI)
    if method != "streamGenerateContent":
        answer = await _maybe_keepalive(request, _counted(google.native(model, method, body, alt=None), usage))
        if isinstance(answer, web.StreamResponse):
            return answer
        return web.Response(status=answer.status, body=answer.body, content_type="application/json")
    resp = await google.native(model, method, body, alt=alt)
    kind = resp.headers.get("Content-Type", "text/event-stream" if alt == "sse" else "application/json")
    return await send_stream(request, upstream_chunks(resp), GeminiRawOut(sse=alt == "sse", usage=usage),
                             headers={"Content-Type": kind})


async def _counted(call, usage):
    """A whole answer, its reported usage noted as it arrives (under the keep-alive too)."""
    answer = await call
    if answer.status == 200:
        usage.feed(answer.body)
    return answer


async def _native_via_hub(request, route, model: str, method: str, body: dict) -> web.StreamResponse:
    """A Gemini client on a non-Gemini provider: through the hub converters (conversions.md §9)."""
    if method == "countTokens":
        hub = gem.count_body_to_hub(body, model=model)
        return json_response(gem.count_response(tokens.estimate_request(hub)))
    stream = method == "streamGenerateContent"
    hub = gem.to_hub(body, model=route.model)
    config = body.get("generationConfig")
    thinking = config.get("thinkingConfig") if isinstance(config, dict) else None
    include = isinstance(thinking, dict) and bool(thinking.get("includeThoughts"))
    result = await hub_call(request, route, hub, stream=stream, echo_model=model)
    if not stream:
        return json_response(gem.from_hub(result, model=model, include_thoughts=include))
    out = gem.GeminiStream(model=model, response_id="resp-" + uuid.uuid4().hex[:16], include_thoughts=include,
                           sse=request.query.get("alt") == "sse")
    kind = "text/event-stream" if request.query.get("alt") == "sse" else "application/json"
    return await send_stream(request, result, GeminiOut(out), headers={"Content-Type": kind})


async def _maybe_keepalive(request: web.Request, call):
    """`gemini_keepalive`: after 15 s of waiting, answer 200 and write newlines until the body (§8)."""
    config = request.app[STATE].config
    task = asyncio.ensure_future(call)
    if not config.gemini_keepalive:
        return await task
    done, _ = await asyncio.wait({task}, timeout=KEEPALIVE_FIRST_S)
    if done:
        return task.result()
    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    decorate(request, resp)
    await resp.prepare(request)
    deadline = asyncio.get_running_loop().time() + config.gemini_keepalive_max - KEEPALIVE_FIRST_S
    while not task.done():
        await resp.write(b"\n")
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            task.cancel()
            break
        await asyncio.wait({task}, timeout=min(KEEPALIVE_FIRST_S, left))
    await resp.write(_final_body(task))
    await resp.write_eof()
    return resp


def _final_body(task: asyncio.Task) -> bytes:
    if task.cancelled():
        body = errors.render(errors.ProxyError("upstream took too long", status=504), errors.GEMINI)
        return json.dumps(body).encode()
    exc = task.exception()
    if isinstance(exc, errors.ProxyError):
        return json.dumps(errors.render(exc, errors.GEMINI)).encode()
    if exc is not None:
        return json.dumps(errors.render(errors.ProxyError("internal error"), errors.GEMINI)).encode()
    return task.result().body


async def openai_compatible(request: web.Request) -> web.StreamResponse:
    """POST /gemini/chat/completions and /gemini/vertex/chat/completions: relayed (§6)."""
    state = request.app[STATE]
    body = await read_json(request)
    if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
        raise errors.BadRequest("model and messages are required")
    kind = "vertex" if "/vertex/" in request.path else "gemini"
    stream = bool(body.get("stream"))
    result = await state.google[kind].openai(body, stream=stream)
    usage = usage_scanner(request, errors.OPENAI)
    if stream:
        return await send_stream(request, upstream_chunks(result), OpenAIRawOut(usage=usage))
    if result.status == 200:
        usage.feed(result.body)
    return web.Response(status=result.status, body=result.body, content_type="application/json")


async def gemini_listing(request: web.Request) -> dict:
    """Upstream Gemini models first, then the Claude ids and aliases as `models/<id>` (§10.4)."""
    from clewdr_lite.server import models

    state = request.app[STATE]
    upstream = await state.google["gemini"].models()
    ours = models.listing(models.model_ids(state.config), gemini=True)["models"]
    seen = {m.get("name") for m in upstream}
    return {"models": upstream + [m for m in ours if m["name"] not in seen]}


async def list_models(request: web.Request) -> web.Response:
    """GET /v1beta/models (Gemini shape)."""
    return json_response(await gemini_listing(request))


async def get_model(request: web.Request) -> web.Response:
    """GET /v1beta/models/{model}."""
    from clewdr_lite.server import models

    return json_response(models.gemini_entry(request.match_info["target"]))


def setup(app: web.Application) -> None:
    """Register every Gemini path (all at the root: SillyTavern keeps only the origin)."""
    r = app.router
    for prefix in ("/v1beta", "/v1", "/v1/v1beta", "/v1/vertex/v1beta", "/vertex/v1beta", "/vertex/v1"):
        r.add_post(prefix + "/models/{target}", native)
    r.add_get("/v1beta/models", list_models)
    r.add_get("/v1beta/models/{target}", get_model)
    r.add_post("/gemini/chat/completions", openai_compatible)
    r.add_post("/gemini/vertex/chat/completions", openai_compatible)
