"""The LLM routes: thin handlers wiring protocol + pool + upstream (DESIGN.md §3)."""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web

from clewdr_lite import errors, lazy, logs, router
from clewdr_lite.protocol import anthropic, tokens
from clewdr_lite.protocol.sse import ByteRelay, json_bytes, loads_bytes
from clewdr_lite.server import models
from clewdr_lite.server.accounting import TIMING_KEY, acct, admit, note_usage, usage_scanner
from clewdr_lite.server.app import STATE
from clewdr_lite.server.hub import aggregate, hub_call, respond_hub, stream_out
from clewdr_lite.server.middleware import public
from clewdr_lite.server.streaming import send_stream
from clewdr_lite.upstream.relay import new_msg_id

openai = lazy.module("clewdr_lite.protocol.openai")  # OpenAI dialect code: imported when first used
scenarios = lazy.module("clewdr_lite.scenarios")  # only with a [router] table

log = logging.getLogger("clewdr_lite.api")

JSON = "application/json"
NO_ALIASES: dict = {}  # one object, so the router's per-config tables are cached without aliases too


async def read_body(request: web.Request) -> bytes:
    """`request.read()`, taken at once when the whole body is in already (a small body arrives
    with the head): aiohttp's read() would still go twice round its stream reader and copy the body
    into a bytearray and out again. The size limit is aiohttp's (413 beyond `client_max_size`)."""
    content = request.content
    if not content.is_eof():  # still arriving (or large enough to pause the socket): aiohttp's way
        return await request.read()
    raw = content.read_nowait()
    limit = request.client_max_size
    if limit and len(raw) > limit:
        raise web.HTTPRequestEntityTooLarge(limit, len(raw))
    return raw


async def read_json(request: web.Request) -> dict:
    """The body as a JSON object; a body without Content-Type is accepted (compat.md §9.1)."""
    raw = await read_body(request)
    acct(request)["raw"] = raw  # a reference, no copy: logged only when [log] bodies asks
    try:  # overhead counts from the complete client request (gateway.md §12.1)
        request[TIMING_KEY].read = time.monotonic()
    except KeyError:  # not a proxied request (request.get would cost a Mapping.get call more)
        pass
    if not raw.strip():
        raise errors.BadRequest("Request body is empty; send a JSON object")
    try:
        # strict UTF-8 for an object (encoded surrogates refused); a UTF-16 body, "{\x00" or a BOM
        # still goes through json.loads's encoding sniffing
        body = loads_bytes(raw, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.BadRequest(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise errors.BadRequest("Request body must be a JSON object")
    return body


def json_response(data, status: int = 200, headers: dict | None = None) -> web.Response:
    """A compact JSON answer."""
    return web.Response(status=status, content_type=JSON, headers=headers,
                        body=json_bytes(data))


async def local_answer(request: web.Request, dialect: str, req: dict, text: str, *,
                        include_usage: bool = False) -> web.StreamResponse:
    """Answer without an upstream call, stream or not, in the caller's dialect."""
    config = request.app[STATE].config
    model = req["model"]
    message = anthropic.hi_message(model, new_msg_id(), text)
    if req.get("stream"):
        async def events():
            for event in anthropic.message_events(message):
                yield event
        return await send_stream(request, events(), stream_out(dialect, model, config, include_usage))
    if dialect == errors.OPENAI:
        return json_response(openai.from_hub(message, model=model, created=int(time.time()),
                                             thinking_output=config.thinking_output))
    return json_response(message)


def route_for(state, model: str, dialect: str, *, bound: str | None = None, default: str = "claude_web",
              scenario=None):
    """Which provider serves `model` on this route (gateway.md §3.3)."""
    aliases = state.config.tables.get("aliases")
    try:
        return router.resolve(model, route_kind=dialect, bound=bound, providers=state.providers,
                              aliases=aliases if isinstance(aliases, dict) else NO_ALIASES, default=default,
                              scenario=scenario)
    except router.RouteError as exc:
        raise errors.BadRequest(f"model {model!r}: {exc}") from None


async def dispatch(request: web.Request, req: dict, dialect: str, *, original: dict,
                   include_usage: bool = False) -> web.StreamResponse:
    """Send an open-route request to the provider its model resolves to, failing over in order."""
    state = request.app[STATE]
    route, req = scenario_route(request, state, req, dialect)
    admit(request, model=req["model"], provider=route.provider, upstream_model=route.model, req=req)
    candidates = route.candidates or ((route.provider, route.model),)
    breakers, last = state.breakers, None
    for number, (provider, model) in enumerate(candidates):
        if not breakers.allow(provider, "*", state.clock()):  # open: skip it (gateway.md §6)
            last = errors.ProxyError(f"provider {provider} is failing; its circuit breaker is open",
                                     status=503, type="api_error")
            continue
        # the first candidate of a route that lists them is the route itself (a frozen dataclass
        # costs four object.__setattr__ calls to make)
        step = route if number == 0 and candidates is route.candidates else \
            router.Route(provider, model, candidates[number:], route.via)
        try:
            response = await _serve_route(request, state, step, req, dialect, original=original,
                                          include_usage=include_usage)
        except errors.ProxyError as err:
            breakers.record(provider, "*", not _fails_over(err) or err.status == 429, state.clock())
            # nothing has reached the client yet: another provider may serve it (gateway.md §4.7)
            if number + 1 == len(candidates) or not _fails_over(err):
                raise
            log.warning("provider %s failed (%d %s); trying %s", provider, err.status, err.message,
                        candidates[number + 1][0])
            last = err
            continue
        breakers.record(provider, "*", True, state.clock())
        if number:
            acct(request)["fallback"] = True  # the request log's fallback_used (gateway.md §11.2)
        return response
    raise last or errors.NoCredential("no provider available")


def scenario_route(request: web.Request, state, req: dict, dialect: str):
    """Resolve with Claude Code Router scenarios when `[router]` is on (gateway.md §4); the request
    sent upstream has the sub-agent tag stripped, and the scenario's fallbacks join the candidates."""
    table = state.config.tables.get("router") or {}
    if not table or not scenarios.router_enabled(table, dialect):
        return route_for(state, req["model"], dialect), req
    hook = scenarios.make_scenario_hook(table, token_count_fn=tokens.estimate_request, req=req,
                                        dialect=dialect, headers=request.headers)
    route = route_for(state, hook.model, dialect, scenario=hook)
    extra = []
    for target in scenarios.fallbacks(table, hook.scenario or "default"):
        try:
            extra += [c for c in route_for(state, target, dialect).candidates if c not in route.candidates]
        except errors.BadRequest:
            log.warning("router fallback %r resolves to nothing", target)
    log.info("[ROUTER] scenario: %s, model: %s -> %s/%s", hook.scenario, req["model"], route.provider, route.model)
    acct(request)["scenario"] = hook.scenario
    routed = router.Route(route.provider, route.model, route.candidates + tuple(extra), route.via)
    return routed, {**hook.request, "model": req["model"]}


def _fails_over(err: errors.ProxyError) -> bool:
    """Errors another provider may not share: the upstream's 5xx, exhausted or missing credentials."""
    return err.status >= 500 or err.status == 429 or isinstance(err, errors.NoCredential)


async def _serve_route(request: web.Request, state, route, req: dict, dialect: str, *, original: dict,
                       include_usage: bool) -> web.StreamResponse:
    """Serve one (provider, model) candidate (`state`: the app's, which dispatch looked up)."""
    kind = state.provider(route.provider).type
    acct(request).update(provider=route.provider, model=req["model"], upstream_model=route.model,
                         stream=bool(req.get("stream")))
    if kind == "claude_web":
        acct(request)["estimated"] = True  # claude.ai reports no usage: the counts are estimates
        return await serve_web(request, state, {**req, "model": route.model}, dialect, original=original,
                               include_usage=include_usage, echo_model=req["model"])
    if kind == "claude_code":
        return await messages_api.serve_code(request, state, {**req, "model": route.model}, dialect,
                                             include_usage=include_usage, echo_model=req["model"])
    if kind == "anthropic":
        return await messages_api.serve_keys(request, state, req, dialect, route=route, original=original,
                                             include_usage=include_usage)
    if kind == "openai" and dialect == errors.OPENAI:  # same dialect: the fast path (gateway.md §8)
        return await serve_openai_passthrough(request, original, route)
    if kind in ("gemini", "vertex", "openai"):  # another dialect upstream: through the hub converters
        stream = bool(req.get("stream"))
        result = await hub_call(request, route, req, stream=stream, echo_model=req["model"])
        return await respond_hub(request, result, dialect, model=req["model"], stream=stream,
                                 include_usage=include_usage)
    raise errors.BadRequest(f"model {req['model']!r} resolves to provider {route.provider!r} "
                            f"(type {kind}), which this build cannot serve on this route yet")


class OpenAIRawOut(ByteRelay):
    """OpenAI stream bytes relayed, the upstream's model name swapped for the client's when they
    differ (a cheap byte replace, no JSON round trip)."""

    def __init__(self, upstream: str | None = None, echo: str | None = None, *, usage=None) -> None:
        super().__init__(usage)
        self._pairs = [] if upstream == echo else [
            (f'"model":{json.dumps(upstream)}'.encode(), f'"model":{json.dumps(echo)}'.encode()),
            (f'"model": {json.dumps(upstream)}'.encode(), f'"model": {json.dumps(echo)}'.encode())]

    def relay(self, data: bytes) -> bytes:
        """The bytes, model swapped."""
        for old, new in self._pairs:
            data = data.replace(old, new)
        return data

    def error_bytes(self, event: dict) -> bytes:
        """The hub `error` event as OpenAI's error chunk."""
        from clewdr_lite.protocol.openai_stream import error_chunk
        return error_chunk(event)


async def serve_openai_passthrough(request: web.Request, body: dict, route) -> web.StreamResponse:
    """An OpenAI client on an OpenAI-compatible provider: bytes relayed, model and auth swapped."""
    state = request.app[STATE]
    stream = bool(body.get("stream"))
    usage = usage_scanner(request, errors.OPENAI)
    echo = OpenAIRawOut(route.model, body["model"], usage=usage)
    result = await state.keyed[route.provider].passthrough(body, model=route.model, stream=stream)
    if stream:  # held upstream items: their bytes, or the error event of a lost connection
        return await send_stream(request, (item.get("raw", item) async for item in result), echo)
    return web.Response(status=result.status, body=echo.feed(result.body), content_type=JSON)


async def messages(request: web.Request) -> web.StreamResponse:
    """POST /v1/messages: Anthropic dialect, routed by model (claude.ai web by default)."""
    body = await read_json(request)
    return await dispatch(request, anthropic.validate(body), errors.ANTHROPIC, original=body)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions: OpenAI dialect, routed by model (claude.ai web by default)."""
    body = await read_json(request)
    hub = openai.to_hub(body, warn=lambda text: log.debug("dropped: %s", text))
    return await dispatch(request, hub, errors.OPENAI, original=body, include_usage=openai.include_usage(body))


async def serve_web(request: web.Request, state, req: dict, dialect: str, *, original: dict,
                    include_usage: bool = False, echo_model: str | None = None) -> web.StreamResponse:
    """Hi check → model rules → cookie retry loop → stream or aggregate in the caller's dialect."""
    config = state.config
    model, stream = echo_model or req["model"], bool(req.get("stream"))
    if not stream and anthropic.is_hi(req):
        return await local_answer(request, dialect, {**req, "model": model}, anthropic.HI_TEXT)
    if config.st_expressions_shortcut and anthropic.is_expressions_classifier(req):
        return await local_answer(request, dialect, {**req, "model": model}, "neutral",
                                  include_usage=include_usage)
    ruled = anthropic.apply_model_rules(req)
    form = "OpenAI" if dialect == errors.OPENAI else "Claude"
    logs.info(log, f"[REQ] stream: {stream}, msgs: {len(ruled['messages'])}, model: {model}, "
                   f"think: {bool(ruled.get('thinking'))}, format: {form}")
    started = time.monotonic()
    events = await state.web.open(ruled, stream=stream, echo_model=model)
    try:
        if stream:
            return await send_stream(request, events, stream_out(dialect, model, config, include_usage))
        message = await aggregate(events)
    finally:
        logs.info(log, f"[FIN] elapsed: {time.monotonic() - started:.2f}s")
    note_usage(request, message.get("usage"))
    if dialect == errors.ANTHROPIC and anthropic.thinking_from_suffix(original):
        message = anthropic.without_thinking(message)  # SillyTavern reads content[0].text only (clients.md §6.1)
    if dialect == errors.OPENAI:
        return json_response(openai.from_hub(message, model=model, created=int(time.time()),
                                             thinking_output=config.thinking_output))
    return json_response(message)


async def count_tokens(request: web.Request) -> web.Response:
    """POST /v1/messages/count_tokens: the model's provider counts; claude.ai gets a local estimate."""
    from clewdr_lite.server.messages_api import count_request

    state = request.app[STATE]
    body = count_request(await read_json(request))
    route = route_for(state, body["model"], errors.ANTHROPIC)
    kind = state.provider(route.provider).type
    if kind == "anthropic":
        return json_response(await state.keyed[route.provider].count_tokens(
            body, model=route.model, client_headers=request.headers))
    if kind == "claude_code":
        return json_response(await state.code.count_tokens({**body, "model": route.model}, request.headers))
    return json_response({"input_tokens": tokens.estimate_request(body)})  # errs high, no network


@public
async def head_probe(request: web.Request) -> web.Response:
    """HEAD / and /code: Claude Code probes the base URL."""
    return web.Response(status=200)


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight on inference routes (headers added by the response hook)."""
    return web.Response(status=204)


preflight.auth = "public"


def setup(app: web.Application) -> None:
    """Register the LLM routes of issue-2 scope (compat.md §5)."""
    r = app.router
    for prefix in ("/v1", ""):
        r.add_post(f"{prefix}/messages", messages)
        r.add_post(f"{prefix}/messages/count_tokens", count_tokens)
        r.add_post(f"{prefix}/chat/completions", chat_completions)
    models.setup(app)
    r.add_route("HEAD", "/", head_probe)
    r.add_route("HEAD", "/code", head_probe)
    r.add_route("OPTIONS", "/{tail:(v1|code|gemini|vertex|v1beta)/.*}", preflight)


# messages_api imports this module's helpers: imported once they exist (not per request in _serve_route)
from clewdr_lite.server import messages_api  # noqa: E402
