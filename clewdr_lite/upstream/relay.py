"""Relaying an Anthropic Messages stream: bytes passed through, or decoded into hub events.

Pass-through (gateway.md §8): the upstream's bytes go to the client unchanged except the first
event, `message_start`, whose `message.model` is set to the model the client sent (Claude Code
stops replaying thinking when it differs, conversions.md §1.4). Every chunk still goes through the
SSE decoder, so usage is read as it passes and the first content event can be recognised; only
`message_start`, `message_delta` and `error` payloads are JSON-parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
from typing import Callable

from clewdr_lite import errors
from clewdr_lite.protocol import anthropic as hub_proto
from clewdr_lite.protocol import upstream_errors as ue
from clewdr_lite.protocol.claude_code_response import UsageTracker
from clewdr_lite.protocol.sse import ByteRelay, SSEDecoder, encode_json, loads, loads_object
from clewdr_lite.upstream.http import TRANSPORT_ERRORS

log = logging.getLogger("clewdr_lite.relay")

HOLD_SECONDS = 10.0
_PARSED = frozenset({"message_start", "message_delta", "error"})
_CONTENT = frozenset({"content_block_start", "content_block_delta", "message_delta", "message_stop"})
# once content flows only usage (message_delta) and the end (message_stop) are read; the deltas in
# between pass undecoded (a 50-event burst cost ~80 µs to decode before its first byte went out)
_AFTER_CONTENT = (b"message_delta", b"message_stop")
_FIRST_CONTENT = re.compile(rb"(?:^|\n)event: ?(?:%s)\n" % "|".join(sorted(_CONTENT)).encode())
LOST = {"type": "error", "error": {"type": "api_error", "message": "upstream connection lost"}}


def _after_first_content(chunk: bytes) -> int:
    """Where the event after the chunk's first content event begins; -1 when there is none."""
    found = _FIRST_CONTENT.search(chunk)
    if found is None:
        return -1
    end = chunk.find(b"\n\n", found.end() - 1)
    return -1 if end < 0 else end + 2


class EarlyError(Exception):
    """An in-stream error before any content: the attempt may be retried."""

    def __init__(self, outcome: ue.Outcome) -> None:
        super().__init__(outcome.error.message if outcome.error else "upstream error")
        self.outcome = outcome


class MessagesStream:
    """One upstream Messages stream; call `prime()`, then iterate `raw()` or `events()` once."""

    def __init__(self, resp, *, echo_model: str, on_done: Callable[[int, int], None]) -> None:
        self._resp = resp
        self._echo = echo_model
        self._on_done = on_done
        self._decoder = SSEDecoder()
        self._chunks = resp.chunks()
        self._held: list[bytes] = []
        self._start_buf: list[bytes] = []
        self._pending: asyncio.Task | None = None  # prime()'s reading task while it runs
        self._holding = False
        self._ended = False  # the upstream ended while chunks were held
        self._started = False  # message_start rewritten
        self._closed = False
        self.usage = UsageTracker()  # read from message_start and message_delta as they pass
        self.saw_content = False
        self.saw_stop = False

    @property
    def input_tokens(self) -> int:
        """The prompt's tokens, cache reads and writes included."""
        return self.usage.input_tokens

    @property
    def output_tokens(self) -> int:
        return self.usage.output_tokens

    def _inspect(self, chunk: bytes) -> list[dict]:
        """Decode a chunk; returns the parsed payloads of the events we read (start, delta, error)."""
        if self.saw_content:
            events = self._decoder.feed_sparse(chunk, _AFTER_CONTENT)
        else:
            cut = _after_first_content(chunk)
            if 0 < cut < len(chunk):  # decoded up to the first content event, the rest sparsely
                return self._inspect(chunk[:cut]) + self._inspect(chunk[cut:])
            events = self._decoder.feed(chunk)
        parsed = []
        for ev in events:
            if ev.event in _CONTENT:
                self.saw_content = True
                self.saw_stop = self.saw_stop or ev.event == "message_stop"
            if ev.event in _PARSED:
                try:
                    data = loads(ev.data)
                except ValueError:
                    continue
                if isinstance(data, dict):
                    self.usage.feed(data)
                    parsed.append(data)
        return parsed

    def _rewrite_start(self, chunk: bytes) -> bytes:
        """Replace the leading message_start event's bytes with the echo-model version."""
        for sep in (b"\n\n", b"\r\n\r\n"):
            end = chunk.find(sep)
            if end != -1:
                break
        head, rest = chunk[:end + len(sep)], chunk[end + len(sep):]
        payloads = self._inspect(head)
        if payloads and payloads[0].get("type") == "message_start":
            message = payloads[0].setdefault("message", {})  # tolerated when missing, not when odd
            _check(payloads[0])
            message["model"] = self._echo
            head = encode_json(payloads[0], event="message_start")
        self._started = True
        return head + (rest and self._filter(rest))

    def _filter(self, chunk: bytes) -> bytes:
        for payload in self._inspect(chunk):
            if not self.saw_content:
                if payload.get("type") == "error":
                    raise EarlyError(ue.classify_event(payload))
                _check(payload)
        return chunk

    async def _next_raw(self) -> bytes:
        chunk = await self._chunks.__anext__()
        if self._started:
            return self._filter(chunk)
        self._start_buf.append(chunk)  # the first event may span chunks
        pending = b"".join(self._start_buf)
        if b"\n\n" not in pending and b"\r\n\r\n" not in pending:
            return b""
        self._start_buf = []
        return self._rewrite_start(pending)

    async def prime(self) -> None:
        """Hold chunks until the first content event (or HOLD_SECONDS): early errors can retry.

        On the lean client the hold reads in this task, waiting without reading in between: no
        task is made, and when the content is already here no loop turn passes before the first
        token. Elsewhere one task reads (not a task and a wait per chunk: that cost a loop turn
        per chunk); when the hold times out it stops after its read in flight, and raw() takes
        over from there.
        """
        try:
            if self._resp.wait_ready is not None:
                await self._hold_here(asyncio.get_running_loop())
            else:
                self._holding = True
                self._pending = asyncio.ensure_future(self._hold())
                done, _ = await asyncio.wait({self._pending}, timeout=HOLD_SECONDS)
                self._holding = False
                if not done:
                    return
                task, self._pending = self._pending, None
                task.result()
            if self._ended and not self.saw_content:  # nothing worth relaying: another try may do
                raise EarlyError(ue.Outcome(ue.TRANSIENT, errors.UpstreamError(
                    "the upstream ended its stream before any content")))
        except EarlyError:
            await self.aclose()
            raise
        except TRANSPORT_ERRORS as exc:  # the connection broke before any content: retryable too
            await self.aclose()
            raise EarlyError(ue.Outcome(ue.TRANSIENT, errors.UpstreamUnavailable(
                f"upstream connection lost before the first content: {exc}"))) from None
        except BaseException:  # cancelled (the client left during the hold): free the upstream
            await self.aclose()
            raise

    async def _hold_here(self, loop) -> None:
        """Read into `_held` until content shows or the stream ends; waits end at the deadline."""
        deadline = loop.time() + HOLD_SECONDS
        resp = self._resp
        while not self.saw_content:
            if not resp.ready() and not await resp.wait_ready(deadline - loop.time()):
                return  # the hold is over, nothing in flight: raw() reads on
            try:
                data = await self._next_raw()  # returns at once: the chunk is here
            except StopAsyncIteration:
                self._ended = True
                return
            if data:
                self._held.append(data)

    async def _hold(self) -> None:
        """Read into `_held` until content shows, the stream ends or prime() stops holding."""
        while self._holding and not self.saw_content:
            try:
                data = await self._next_raw()
            except StopAsyncIteration:
                self._ended = True
                return
            if data:
                self._held.append(data)

    async def raw(self):
        """The client's bytes: held chunks first, then the rest as it arrives."""
        try:
            if self._pending is not None:  # the hold timed out with a read in flight
                task, self._pending = self._pending, None
                await task
            if self._held:  # already late: one write, not one per upstream chunk
                held, self._held = b"".join(self._held), []
                yield held
            if self._ended:
                raise StopAsyncIteration
            while True:
                data = await self._next_raw()
                if data:
                    yield data
        except StopAsyncIteration:
            if self._start_buf:
                yield b"".join(self._start_buf)
            if not self.saw_stop:  # ended without message_stop: say so instead of a silent cut
                yield encode_json(LOST, event="error")
        except EarlyError as exc:
            yield encode_json(ue_event(exc), event="error")
        except TRANSPORT_ERRORS:
            yield encode_json(LOST, event="error")
        finally:
            await self.aclose()

    async def events(self):
        """Hub events decoded from the same bytes (for dialect conversion); an event the converters
        could not read ends them with an error event."""
        decoder = SSEDecoder()
        # closed here when these events end early (a bad event, a client gone): left to asyncio, a
        # generator dropped half-way is closed in a task of its own, later
        async with contextlib.aclosing(self.raw()) as chunks:
            async for data in chunks:
                for ev in decoder.feed(data):
                    try:
                        event = loads(ev.data)
                    except ValueError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    problem = hub_proto.event_problem(event)
                    if problem is not None:
                        yield hub_proto.malformed_event(problem)
                        return
                    yield event

    async def aclose(self) -> None:
        """Abort the upstream (if still open) and report usage once."""
        if self._closed:
            return
        self._closed = True
        if self._pending is not None:
            self._pending.cancel()
        await self._resp.close()
        self._on_done(self.input_tokens, self.output_tokens)


def _check(payload: dict) -> None:
    """EarlyError for an event before the content that cannot be read: another try may do."""
    problem = hub_proto.event_problem(payload)
    if problem is not None:
        raise EarlyError(ue.classify_event(hub_proto.malformed_event(problem)))


def ue_event(exc: EarlyError) -> dict:
    """The in-stream error event for an error that arrived too late to retry."""
    err = exc.outcome.error
    return {"type": "error", "error": {"type": err.type if err else "api_error",
                                       "message": err.message if err else "upstream error"}}


class RawOut(ByteRelay):
    """Pass-through translator for send_stream: bytes in, bytes out; pings only between events."""

    def error_bytes(self, event: dict) -> bytes:
        """The hub `error` event as its Anthropic SSE event."""
        return encode_json(event, event="error")

    def keepalive(self) -> bytes:
        """A ping, never in the middle of an upstream event."""
        return encode_json({"type": "ping"}, event="ping") if self.at_boundary else b""


def new_msg_id() -> str:
    """A random Anthropic-style message id (never a timestamp: those collide, conversions.md §1.5)."""
    return "msg_" + os.urandom(12).hex()  # 96 random bits (uuid4's first 24 digits: 92), at a fifth of the cost


def synthetic_signature() -> str:
    """The signature of thinking from a non-Anthropic upstream, recognisable later (conversions.md §8.3)."""
    return "clewdr-lite:" + secrets.token_hex(8)


class HeldEvents:
    """Hub events of an upstream stream, held until the first content event (or HOLD_SECONDS), as
    MessagesStream.prime() holds Anthropic bytes: an error event or the end before any content
    raises EarlyError, so another key or provider may still answer. Iterate once for the held
    events and then the rest (after a hold that timed out, once the read in flight is done);
    aclose() stops the reader, then closes the stream."""

    def __init__(self, events) -> None:
        self._it = events.__aiter__()
        self._held: list = []
        self._ended = False
        self._task: asyncio.Task | None = None

    async def _fill(self) -> None:
        while True:
            try:
                event = await self._it.__anext__()
            except StopAsyncIteration:
                self._ended = True
                return
            self._held.append(event)
            if event.get("type") in _CONTENT or event.get("type") == "error":
                return

    async def hold(self, *, whole: bool = False) -> HeldEvents:
        """Read until content, an error, the end or HOLD_SECONDS; EarlyError before content.

        `whole`: for a client that waits for the whole answer, which has no stream to start
        meanwhile: no deadline, read in the caller's task (no task, no timer), so a failure
        anywhere before the content can still go to another credential."""
        try:
            if whole:
                await self._fill()
            else:
                self._task = task = asyncio.ensure_future(self._fill())
                if not (await asyncio.wait({task}, timeout=HOLD_SECONDS))[0]:
                    return self  # the hold is over; the read in flight goes on for _replay
                task.result()
            last = self._held[-1] if self._held else {}
            if last.get("type") == "error":
                raise EarlyError(ue.classify_event(last))
            if self._ended:
                raise EarlyError(ue.Outcome(ue.TRANSIENT, errors.UpstreamError(
                    "the upstream ended its stream before any content")))
        except BaseException:  # an early error, or cancelled (the client left): free the upstream
            await self.aclose()
            raise
        return self

    def __aiter__(self):
        return self._replay()

    async def _replay(self):
        try:
            if self._task is not None:
                await self._task
            for event in self._held:
                yield event
            if not self._ended:
                async for event in self._it:
                    yield event
        finally:
            await self.aclose()

    async def drain(self, feed) -> None:
        """`feed(event)` for every event, as iterating would give them, without an async generator
        between the stream and the caller (one resumption less per event); closes as _replay does."""
        try:
            if self._task is not None:
                await self._task
            for event in self._held:
                feed(event)
            if not self._ended:
                async for event in self._it:
                    feed(event)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the read in flight (it runs the stream's generator), then close the stream."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        closer = getattr(self._it, "aclose", None)
        if closer is not None:
            await closer()


async def hold_events(events, *, whole: bool = False) -> HeldEvents:
    """`events` held until their first content (see HeldEvents.hold)."""
    return await HeldEvents(events).hold(whole=whole)


async def converted_events(resp, conv):
    """An upstream SSE body through a stream converter (`feed(obj) -> [events]`, `close()`) as hub
    events. A converter with a `done` flag (claude.ai's WebEvents) ends the stream when it says so:
    the upstream is closed and nothing more is read, closed or reported. A last event without its
    closing blank line still counts (SSEDecoder.close)."""
    decoder = SSEDecoder()
    ends = hasattr(conv, "done")
    try:
        async for chunk in resp.chunks():
            for ev in decoder.feed(chunk):
                obj = loads_object(ev.data)
                if obj is not None:
                    for event in conv.feed(obj):
                        yield event
            if ends and conv.done:
                return
        for ev in decoder.close():
            obj = loads_object(ev.data)
            if obj is not None:
                for event in conv.feed(obj):
                    yield event
        if not (ends and conv.done):
            for event in conv.close():
                yield event
    except TRANSPORT_ERRORS:
        if not (ends and conv.done):
            yield LOST
    finally:
        await resp.close()
