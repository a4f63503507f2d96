"""Routes served by Anthropic Messages upstreams: Claude Code (`/code/v1/*`) and API-key providers."""

from __future__ import annotations

import functools
import logging
import time

from aiohttp import web

from clewdr_lite import errors, lazy, logs
from clewdr_lite.protocol import anthropic
from clewdr_lite.server.accounting import acct, admit, note_usage
from clewdr_lite.server.api import json_response, local_answer, read_json
from clewdr_lite.server.app import STATE
from clewdr_lite.server.hub import stream_out
from clewdr_lite.server.streaming import send_stream
from clewdr_lite.upstream.http import TIMING
from clewdr_lite.upstream.relay import RawOut

openai = lazy.module("clewdr_lite.protocol.openai")  # OpenAI dialect code: imported when first used

log = logging.getLogger("clewdr_lite.api")


async def respond(request: web.Request, state, result, dialect: str, *, model: str, stream: bool,
                  include_usage: bool = False) -> web.StreamResponse:
    """Write an upstream result (a MessagesStream or a message body) in the caller's dialect."""
    config = state.config
    if stream:
        if dialect == errors.ANTHROPIC:
            response = await send_stream(request, result.raw(), RawOut())  # pass-through fast path
            note_usage(request, result.usage.as_usage())
            return response
        return await send_stream(request, result.events(), stream_out(dialect, model, config, include_usage))
    note_usage(request, result.get("usage") if isinstance(result, dict) else None)
    if dialect == errors.OPENAI:
        return json_response(openai.from_hub(result, model=model, created=int(time.time()),
                                             thinking_output=config.thinking_output))
    if isinstance(result, anthropic.Answer):
        return web.Response(body=result.raw, content_type="application/json")
    return json_response(result)


def _log_request(req: dict, dialect: str, model: str, upstream: str) -> None:
    """ClewdR's [REQ] line, written once the first upstream call is out: while the upstream is
    being asked, not on the way to it, and with no loop turn of its own (Timing.after_send; the
    request's facts are taken now). A request that never reaches an upstream writes it at its end."""
    line = functools.partial(_req_line, bool(req.get("stream")), len(req["messages"]), model,
                             bool(req.get("thinking")), "OpenAI" if dialect == errors.OPENAI else "Claude",
                             upstream)
    clock = TIMING.get()
    if clock is None:  # not a proxied request's task: at once
        line()
    else:
        clock.after_send(line)


def _req_line(stream: bool, msgs: int, model: str, think: bool, form: str, upstream: str) -> None:
    logs.info(log, f"[REQ] stream: {stream}, msgs: {msgs}, model: {model}, think: {think}, "
                   f"format: {form}, upstream: {upstream}")


async def serve_code(request: web.Request, state, req: dict, dialect: str, *, include_usage: bool = False,
                     echo_model: str | None = None) -> web.StreamResponse:
    """Hi check → Claude Code retry loop → relay (claude-code.md §11)."""
    model, stream = echo_model or req["model"], bool(req.get("stream"))
    if not stream and anthropic.is_hi(req):
        return await local_answer(request, dialect, {**req, "model": model}, anthropic.HI_TEXT)
    _log_request(req, dialect, model, "claude_code")
    admit(request, model=model, provider="claude_code", upstream_model=req["model"], req=req)
    acct(request).update(provider="claude_code", model=model, upstream_model=req["model"], stream=stream)
    result = await state.code.open(req, stream=stream, echo_model=model, client_headers=request.headers)
    return await respond(request, state, result, dialect, model=model, stream=stream, include_usage=include_usage)


async def serve_keys(request: web.Request, state, req: dict, dialect: str, *, route, original: dict,
                     include_usage: bool = False) -> web.StreamResponse:
    """An `anthropic` API-key provider: key rotation, pass-through relay (gateway.md §2.3, §8)."""
    model, stream = req["model"], bool(req.get("stream"))
    _log_request(req, dialect, model, route.provider)
    raw = None
    if dialect == errors.OPENAI:
        req = anthropic.prepare_for_api(req, state.config.first_user_placeholder)
    elif req is original:  # the client's own body: its bytes may go upstream untouched
        raw = acct(request).get("raw")
    result = await state.keyed[route.provider].open(req, model=route.model, stream=stream, echo_model=model,
                                                    client_headers=request.headers, raw=raw)
    return await respond(request, state, result, dialect, model=model, stream=stream, include_usage=include_usage)


async def code_messages(request: web.Request) -> web.StreamResponse:
    """POST /code/v1/messages."""
    return await serve_code(request, request.app[STATE], anthropic.validate(await read_json(request)),
                            errors.ANTHROPIC)


async def code_chat(request: web.Request) -> web.StreamResponse:
    """POST /code/v1/chat/completions: OpenAI in, Claude Code upstream, OpenAI out."""
    body = await read_json(request)
    state = request.app[STATE]
    hub = anthropic.prepare_for_api(openai.to_hub(body), state.config.first_user_placeholder)
    return await serve_code(request, state, hub, errors.OPENAI, include_usage=openai.include_usage(body))


def count_request(body: dict) -> dict:
    """A count_tokens body: model and messages required and checked as /v1/messages checks them."""
    return anthropic.validate_count(body)


async def code_count_tokens(request: web.Request) -> web.Response:
    """POST /code/v1/messages/count_tokens: upstream count, a local estimate as fallback."""
    req = count_request(await read_json(request))
    return json_response(await request.app[STATE].code.count_tokens(req, request.headers))


def setup(app: web.Application) -> None:
    """Register the Claude Code routes (bound to the claude_code provider)."""
    from clewdr_lite.server import models

    r = app.router
    r.add_post("/code/v1/messages", code_messages)
    r.add_post("/code/v1/messages/count_tokens", code_count_tokens)
    r.add_post("/code/v1/chat/completions", code_chat)
    r.add_get("/code/v1/models", models.list_models)
    r.add_get("/code/v1/models/{model}", models.get_model)
