"""MessagesStream: the hold before the first content event, then chunks passed on as they arrive."""

from __future__ import annotations

import asyncio
import json

import pytest

from clewdr_lite.upstream import relay
from clewdr_lite.upstream.relay import EarlyError, MessagesStream


def event(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


START = event("message_start", {"message": {"id": "msg_1", "model": "upstream-model",
                                            "usage": {"input_tokens": 7, "cache_read_input_tokens": 3}}})
PING = event("ping", {})
BLOCK = event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
DELTA = event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "hi"}})
STOP = event("message_stop", {})
OVERLOADED = event("error", {"error": {"type": "overloaded_error", "message": "busy"}})


class Scripted:
    """An upstream answer whose chunks the test releases one by one (None ends it)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.closed = False

    async def chunks(self):
        while (chunk := await self.queue.get()) is not None:
            yield chunk

    async def close(self) -> None:
        self.closed = True


def stream(resp: Scripted) -> MessagesStream:
    return MessagesStream(resp, echo_model="client-model", on_done=lambda i, o: None)


async def collect(gen, into: list) -> None:
    async for data in gen:
        into.append(data)


async def test_chunks_are_held_until_content_then_passed_on():
    resp = Scripted()
    for chunk in (START, PING, BLOCK, DELTA):
        resp.queue.put_nowait(chunk)
    s = stream(resp)
    await s.prime()
    got: list[bytes] = []
    reader = asyncio.ensure_future(collect(s.raw(), got))
    await asyncio.sleep(0.01)
    assert b'"model":"client-model"' in got[0] and b"upstream-model" not in got[0]  # echoed model
    assert got[0].endswith(PING + BLOCK) and got[1:] == [DELTA]  # the held chunks in one write
    resp.queue.put_nowait(STOP)
    resp.queue.put_nowait(None)
    await reader
    assert b"".join(got).endswith(STOP) and resp.closed
    assert s.input_tokens == 10 and s.usage.as_usage()["cache_read_input_tokens"] == 3


async def test_the_hold_ends_after_its_time_and_later_chunks_flow_at_once(monkeypatch):
    monkeypatch.setattr(relay, "HOLD_SECONDS", 0.05)
    resp = Scripted()
    resp.queue.put_nowait(START)
    s = stream(resp)
    await asyncio.wait_for(s.prime(), 1)  # no content yet: prime gives up holding
    got: list[bytes] = []
    reader = asyncio.ensure_future(collect(s.raw(), got))
    resp.queue.put_nowait(PING)           # the read in flight when the hold ended
    await asyncio.sleep(0.01)
    assert len(got) == 1 and b"message_start" in got[0] and got[0].endswith(PING)
    resp.queue.put_nowait(BLOCK)
    await asyncio.sleep(0.01)
    assert got[-1] == BLOCK               # passed on as it arrived, not held for content
    for chunk in (DELTA, STOP, None):
        resp.queue.put_nowait(chunk)
    await reader
    assert got[-1] == STOP


async def test_an_error_before_content_is_early_and_retryable():
    resp = Scripted()
    for chunk in (START, OVERLOADED):
        resp.queue.put_nowait(chunk)
    with pytest.raises(EarlyError):
        await stream(resp).prime()
    assert resp.closed


async def test_an_end_before_content_is_reported_in_the_stream():
    resp = Scripted()
    for chunk in (START, None):
        resp.queue.put_nowait(chunk)
    s = stream(resp)
    await s.prime()
    got: list[bytes] = []
    await collect(s.raw(), got)
    assert b"message_start" in got[0] and b"upstream connection lost" in got[-1]
