"""Writing hub event streams to a client in its dialect, as they arrive (never buffered)."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from aiohttp import web

from clewdr_lite import errors
from clewdr_lite.protocol.sse import COMMENT_KEEPALIVE, encode_json
from clewdr_lite.server.accounting import note_event

log = logging.getLogger("clewdr_lite.server")

KEEPALIVE_S = 15.0
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}
_PING = encode_json({"type": "ping"}, event="ping")
_USAGE_EVENTS = frozenset({"message_start", "message_delta"})


class AnthropicOut:
    """Hub events → Anthropic SSE: `event:` + `data:` on every event, JSON edited as dicts."""

    def __init__(self) -> None:
        self.started = False

    def feed(self, event: dict) -> bytes:
        """One event's wire bytes."""
        kind = event.get("type", "")
        if kind == "message_start":
            self.started = True
        return encode_json(event, event=kind)

    def close(self) -> bytes:
        """Nothing trails an Anthropic stream."""
        return b""

    def keepalive(self) -> bytes:
        """A comment before `message_start`, a standard ping after it (claude-web.md §9)."""
        return _PING if self.started else COMMENT_KEEPALIVE


class KeepAlive:
    """Writes the translator's keep-alive after KEEPALIVE_S of silence."""

    def __init__(self, resp: web.StreamResponse, out) -> None:
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self._resp, self._out = resp, out
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            wait = self.last + KEEPALIVE_S - self.loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            await self._resp.write(self._out.keepalive())
            self.last = self.loop.time()

    def stop(self) -> None:
        """End the timer."""
        self._task.cancel()


def _keepalive_of(out) -> None:
    if not hasattr(out, "keepalive"):
        out.keepalive = lambda: COMMENT_KEEPALIVE


async def send_stream(request: web.Request, events: AsyncIterator[dict], out,
                      headers: dict | None = None) -> web.StreamResponse:
    """Stream `events` through translator `out` (feed/close/keepalive) to the client."""
    _keepalive_of(out)
    resp = web.StreamResponse(headers={**SSE_HEADERS, **(headers or {})})
    await resp.prepare(request)
    keepalive = KeepAlive(resp, out)
    try:
        async for event in events:
            if type(event) is dict and event.get("type") in _USAGE_EVENTS:
                note_event(request, event)
            data = out.feed(event)
            if data:
                await resp.write(data)
                keepalive.last = keepalive.loop.time()
        tail = out.close()
        if tail:
            await resp.write(tail)
        await resp.write_eof()
    except errors.ProxyError as err:  # after the first byte: in-stream error, then the end
        await resp.write(out.feed({"type": "error", "error": errors.stream_event(err)["error"]}) + out.close())
    except ConnectionResetError:
        # the client went away (the openai SDK closes right after [DONE]): not an error
        log.debug("client closed the stream on %s", request.path)
    finally:
        keepalive.stop()
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()
    return resp
