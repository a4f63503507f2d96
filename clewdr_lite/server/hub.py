"""Calling any provider in the hub format: a stream of hub events, or one hub message.

Dialect handlers use this when the client's dialect differs from the provider's (a Gemini client
on a Claude model, an OpenAI client on a Gemini model …); same-dialect traffic takes the
pass-through paths in api.py and messages_api.py instead.
"""

from __future__ import annotations

import os
import time

from aiohttp import web

from clewdr_lite import errors, lazy
from clewdr_lite.protocol import anthropic
from clewdr_lite.protocol import upstream_errors as ue
from clewdr_lite.server.accounting import note_usage
from clewdr_lite.server.app import STATE
from clewdr_lite.server.streaming import AnthropicOut, send_stream

openai = lazy.module("clewdr_lite.protocol.openai")  # OpenAI dialect code: imported when first used
openai_stream = lazy.module("clewdr_lite.protocol.openai_stream")


async def aggregate(events) -> dict:
    """Drain claude.ai's hub event stream (upstream.claude_web.WebStream) into one message; an error
    event becomes an HTTP error. The stream hands its events over (`drain`), closing itself however
    the drain ends: no async generator of ours between its events and the accumulator."""
    acc = anthropic.Accumulator()
    await events.drain(acc.feed)
    if acc.error is not None:
        raise ue.classify_event(acc.error).error
    return acc.result()


async def hub_call(request: web.Request, route, req: dict, *, stream: bool, echo_model: str):
    """The provider's answer as hub events (stream) or a hub message (non-stream)."""
    state = request.app[STATE]
    kind = state.provider(route.provider).type
    req = {**req, "model": route.model, "stream": stream}
    if kind == "claude_web":
        events = await state.web.open(anthropic.apply_model_rules(req), stream=stream, echo_model=echo_model)
        return events if stream else await aggregate(events)
    if kind == "claude_code":
        api_req = anthropic.prepare_for_api(req, state.config.first_user_placeholder)
        result = await state.code.open(api_req, stream=stream, echo_model=echo_model,
                                       client_headers=request.headers)
        return result.events() if stream else result
    if kind == "anthropic":
        api_req = anthropic.prepare_for_api(req, state.config.first_user_placeholder)
        result = await state.keyed[route.provider].open(api_req, model=route.model, stream=stream,
                                                         echo_model=echo_model, client_headers=request.headers)
        return result.events() if stream else result
    if kind == "openai":
        return await state.keyed[route.provider].open(req, model=route.model, stream=stream, echo_model=echo_model)
    if kind in ("gemini", "vertex"):
        google = state.google[kind]
        return await google.hub_open(req, model=route.model, stream=stream, echo_model=echo_model)
    raise errors.BadRequest(f"provider {route.provider!r} (type {kind}) cannot serve this route yet")


def stream_out(dialect: str, model: str, config, include_usage: bool):
    """The translator that writes hub events in the caller's dialect."""
    if dialect == errors.ANTHROPIC:
        return AnthropicOut()
    return openai_stream.OpenAIStream(model=model, id="chatcmpl-" + os.urandom(12).hex(),
                                      created=int(time.time()), include_usage=include_usage,
                                      thinking_output=config.thinking_output)


async def respond_hub(request: web.Request, result, dialect: str, *, model: str, stream: bool,
                      include_usage: bool = False) -> web.StreamResponse:
    """Write a hub result in the Anthropic or OpenAI dialect."""
    from clewdr_lite.server.api import json_response

    config = request.app[STATE].config
    if stream:
        return await send_stream(request, result, stream_out(dialect, model, config, include_usage))
    note_usage(request, result.get("usage"))
    if dialect == errors.OPENAI:
        return json_response(openai.from_hub(result, model=model, created=int(time.time()),
                                             thinking_output=config.thinking_output))
    return json_response(result)
