"""The benchmark's upstreams, in their own process: a lean Anthropic/OpenAI API and the fake claude.ai.

The API side answers from canned bytes so that it is never the bottleneck. What the request body
contains steers it (the proxy forwards the messages, not extra headers):

- `"stream":true` (any spacing): 50 `content_block_delta` events, one write each;
- `pace:N` in the text: N ms between those events (for the forwarding check);
- `hold` in the text: one delta, then the stream stays open until the client goes away.

The fake claude.ai writes a completion's events one write each, as claude.ai does; with
`--one-write` it writes them all at once (pieces.py: what the pieces cost).

Run: `python tests/bench/upstream.py [--one-write]` → prints one JSON line {"api": origin, "web": base_url}.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.fakes.claude_web import FakeClaudeWeb  # noqa: E402
from tests.fakes.common import serve  # noqa: E402

COOKIES = 4  # accounts for make_cookie(0 … 3), the cookies the benchmark's proxy config holds
WEB_REPLY = "Hello! How can I help you today?"  # what the fake claude.ai answers every completion

CHUNKS = 50
_STREAM = re.compile(rb'"stream"\s*:\s*true')
_PACE = re.compile(rb"pace:(\d+)")
SSE = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _event(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


MESSAGE = json.dumps({
    "id": "msg_bench0000000000000000", "type": "message", "role": "assistant", "model": "bench-model",
    "content": [{"type": "text", "text": "Hello! How can I help you today?"}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 10}}).encode()
HEAD = (_event("message_start", {"type": "message_start", "message": {
            "id": "msg_bench0000000000000000", "type": "message", "role": "assistant", "model": "bench-model",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 1}}})
        + _event("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}}))
DELTA = _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": "tok "}})
TAIL = (_event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                   "stop_sequence": None}, "usage": {"output_tokens": CHUNKS}})
        + _event("message_stop", {"type": "message_stop"}))
COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1760000000, "model": "bench-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 10, "total_tokens": 22}}).encode()
CHAT_DELTA = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1760000000,' \
             b'"model":"bench-model","choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'


async def _stream(request: web.Request, body: bytes, head: bytes, delta: bytes, tail: bytes):
    pace = _PACE.search(body)
    delay = int(pace.group(1)) / 1000 if pace else 0.0
    resp = web.StreamResponse(headers=SSE)
    await resp.prepare(request)
    await resp.write(head)
    if b"hold" in body:
        await resp.write(delta)
        await asyncio.sleep(3600)
    for _ in range(CHUNKS):
        if delay:
            await asyncio.sleep(delay)
        await resp.write(delta)
    await resp.write(tail)
    return resp


async def messages(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if _STREAM.search(body):
        return await _stream(request, body, HEAD, DELTA, TAIL)
    return web.Response(body=MESSAGE, content_type="application/json")


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if _STREAM.search(body):
        return await _stream(request, body, b"", CHAT_DELTA, b"data: [DONE]\n\n")
    return web.Response(body=COMPLETION, content_type="application/json")


async def count_tokens(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"input_tokens": 12})


def api_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    app.router.add_post("/v1/chat/completions", chat)
    return app


class BenchClaudeWeb(FakeClaudeWeb):
    """The test suite's fake claude.ai, with its per-request records dropped (a long run stays flat)."""

    one_write = False  # a completion's events in one write instead of one write each

    def _messages_chunks(self, *args) -> list[bytes]:
        chunks = super()._messages_chunks(*args)
        return [b"".join(chunks)] if self.one_write else chunks

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        try:
            return await super()._completion(request)
        finally:
            self.completions.clear()
            self.requests.clear()
            self.conversations.pop(request.match_info["conv"], None)
            self.violations.clear()


async def main() -> None:
    web_fake = BenchClaudeWeb()
    web_fake.one_write = "--one-write" in sys.argv[1:]
    web_fake.reply = WEB_REPLY
    from tests.conftest import make_cookie
    for seed in range(COOKIES):
        web_fake.add_account(make_cookie(seed))
    async with serve(api_app(), handler_cancellation=True, access_log=None) as api:
        await web_fake.start()
        print(json.dumps({"api": api, "web": web_fake.base_url}), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
