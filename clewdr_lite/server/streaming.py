"""Writing hub event streams to a client in its dialect, as they arrive (never buffered)."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from aiohttp import web

from clewdr_lite import errors
from clewdr_lite.protocol.sse import COMMENT_KEEPALIVE, encode_json
from clewdr_lite.server.accounting import decorate, note_event
from clewdr_lite.upstream.http import TRANSPORT_ERRORS

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
    """Writes the translator's keep-alive after KEEPALIVE_S of silence.

    One loop timer per stream, re-armed when it fires (no task parked per open stream); a write
    task exists only while a keep-alive is being written.
    """

    __slots__ = ("loop", "last", "_resp", "_out", "_timer", "_writing")

    def __init__(self, resp: web.StreamResponse, out) -> None:
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self._resp, self._out = resp, out
        self._writing: asyncio.Task | None = None
        self._timer = self.loop.call_at(self.last + KEEPALIVE_S, self._due)

    def _due(self) -> None:
        now = self.loop.time()
        if now - self.last >= KEEPALIVE_S and self._writing is None:
            self._writing = self.loop.create_task(self._write())
            self.last = now
        self._timer = self.loop.call_at(self.last + KEEPALIVE_S, self._due)

    async def _write(self) -> None:
        try:
            await self._resp.write(self._out.keepalive())
        except (ConnectionError, RuntimeError):
            pass  # the client is gone; the stream's own write notices and ends it
        finally:
            self._writing = None

    def stop(self) -> None:
        """End the timer (and a keep-alive write in progress)."""
        self._timer.cancel()
        if self._writing is not None:
            self._writing.cancel()


class EventStream(web.StreamResponse):
    """An SSE response whose headers go out with its first event: one write before the first
    token, not two. send_stream() still flushes them on the next loop turn when no event is ready.
    (aiohttp ≥ 3.12 honours the flag; older versions send the headers at prepare(), as before.)"""

    _send_headers_immediately = False


def _flush_headers(writer) -> None:
    try:
        writer.send_headers()
    except (ConnectionError, RuntimeError):
        pass  # the client left before anything was sent; the stream's own write notices


async def _end_with(resp: web.StreamResponse, out, err: errors.ProxyError) -> None:
    """An in-stream error event in the client's dialect, then whatever the dialect closes with."""
    try:
        await resp.write(out.feed({"type": "error", "error": errors.stream_event(err)["error"]}) + out.close())
    except ConnectionResetError:
        log.debug("client gone before the error event")


async def upstream_chunks(resp):
    """An upstream answer's body as it arrives (bytes relayed as they are); released at the end."""
    try:
        async for chunk in resp.chunks():
            yield chunk
    finally:
        await resp.close()


def _keepalive_of(out) -> None:
    if not hasattr(out, "keepalive"):
        out.keepalive = lambda: COMMENT_KEEPALIVE


async def send_stream(request: web.Request, events: AsyncIterator[dict], out,
                      headers: dict | None = None) -> web.StreamResponse:
    """Stream `events` through translator `out` (feed/close/keepalive) to the client."""
    _keepalive_of(out)
    resp = EventStream(headers={**SSE_HEADERS, **(headers or {})})
    decorate(request, resp)
    writer = await resp.prepare(request)
    keepalive = KeepAlive(resp, out)
    if hasattr(writer, "send_headers"):  # events ready now go with the headers; else next turn
        keepalive.loop.call_soon(_flush_headers, writer)
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
        await _end_with(resp, out, err)
    except ConnectionResetError:
        # the client went away (the openai SDK closes right after [DONE]): not an error
        log.debug("client closed the stream on %s", request.path)
    except TRANSPORT_ERRORS as exc:  # the upstream's connection broke mid-stream
        log.warning("upstream connection lost during a stream on %s: %s", request.path, exc)
        await _end_with(resp, out, errors.UpstreamUnavailable("upstream connection lost"))
    except Exception:  # a fault of ours after the first byte: logged, and the client still gets
        # an error event and the end (a new error response cannot follow a started one)
        log.exception("stream failed on %s", request.path)
        await _end_with(resp, out, errors.ProxyError("internal error; see the proxy log"))
    finally:
        keepalive.stop()
        closer = getattr(events, "aclose", None)
        if closer is not None:
            await closer()
    return resp
