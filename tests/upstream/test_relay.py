"""MessagesStream: the hold before the first content event, then chunks passed on as they arrive."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import deque

import aiohttp
import pytest

from clewdr_lite.protocol.sse import encode_json
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
    """An upstream answer whose chunks the test releases one by one (None ends it).

    `lean=True` behaves as the lean client's answer (ready() / wait_ready(), the hold waits in the
    caller's task); otherwise as aiohttp's or curl_cffi's (the hold reads in a task).
    """

    def __init__(self, lean: bool) -> None:
        self.items: deque = deque()
        self.arrived = asyncio.Event()
        self.closed = False
        self.wait_ready = self._wait if lean else None

    def put(self, *chunks) -> None:
        self.items.extend(chunks)
        self.arrived.set()

    async def chunks(self):
        while True:
            while not self.items:
                self.arrived.clear()
                await self.arrived.wait()
            chunk = self.items.popleft()
            if chunk is None:
                return
            if isinstance(chunk, BaseException):  # the connection broke
                raise chunk
            yield chunk

    def ready(self) -> bool:
        return bool(self.items)

    async def _wait(self, timeout: float) -> bool:
        if not self.items:
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), max(timeout, 0))
            except asyncio.TimeoutError:
                pass
        return self.ready()

    async def close(self) -> None:
        self.closed = True


@pytest.fixture(params=["lean", "task"])
def upstream(request):
    return lambda: Scripted(lean=request.param == "lean")


def stream(resp: Scripted) -> MessagesStream:
    return MessagesStream(resp, echo_model="client-model", on_done=lambda i, o: None)


async def collect(gen, into: list) -> None:
    async for data in gen:
        into.append(data)


async def test_chunks_are_held_until_content_then_passed_on(upstream):
    resp = upstream()
    resp.put(START, PING, BLOCK, DELTA)
    s = stream(resp)
    await s.prime()
    got: list[bytes] = []
    reader = asyncio.ensure_future(collect(s.raw(), got))
    await asyncio.sleep(0.01)
    assert b'"model":"client-model"' in got[0] and b"upstream-model" not in got[0]  # echoed model
    assert got[0].endswith(PING + BLOCK) and got[1:] == [DELTA]  # the held chunks in one write
    resp.put(STOP)
    resp.put(None)
    await reader
    assert b"".join(got).endswith(STOP) and resp.closed
    assert s.input_tokens == 10 and s.usage.as_usage()["cache_read_input_tokens"] == 3


async def test_the_hold_ends_after_its_time_and_later_chunks_flow_at_once(monkeypatch, upstream):
    monkeypatch.setattr(relay, "HOLD_SECONDS", 0.05)
    resp = upstream()
    resp.put(START)
    s = stream(resp)
    await asyncio.wait_for(s.prime(), 1)  # no content yet: prime gives up holding
    got: list[bytes] = []
    reader = asyncio.ensure_future(collect(s.raw(), got))
    resp.put(PING)           # arrives after the hold ended (a task's read may be in flight)
    await asyncio.sleep(0.01)
    assert b"message_start" in got[0] and got[-1].endswith(PING) and len(got) <= 2
    resp.put(BLOCK)
    await asyncio.sleep(0.01)
    assert got[-1] == BLOCK               # passed on as it arrived, not held for content
    resp.put(DELTA, STOP, None)
    await reader
    assert got[-1] == STOP


async def test_an_error_before_content_is_early_and_retryable(upstream):
    resp = upstream()
    resp.put(START, OVERLOADED)
    with pytest.raises(EarlyError):
        await stream(resp).prime()
    assert resp.closed


async def test_an_end_before_content_is_early_and_retryable(upstream):
    # an answer with nothing to relay (a stream that stops after message_start, an HTML page sent
    # as 200) is a failed attempt: another key or provider may answer, else a clean 502
    for chunks in ((START, None), (b"<html>oops</html>", None), (None,)):
        resp = upstream()
        resp.put(*chunks)
        with pytest.raises(EarlyError) as caught:
            await stream(resp).prime()
        assert caught.value.outcome.action == "transient" and resp.closed
        assert caught.value.outcome.error.status == 502


async def test_chunks_already_here_are_held_without_a_task_or_a_loop_turn():
    resp = Scripted(lean=True)
    resp.put(START, PING, BLOCK, DELTA)
    s = stream(resp)
    turned = []
    asyncio.get_running_loop().call_soon(turned.append, True)
    tasks = len(asyncio.all_tasks())
    await s.prime()
    assert turned == [] and len(asyncio.all_tasks()) == tasks  # the first token waits for nothing
    got: list[bytes] = []
    resp.put(STOP)
    resp.put(None)
    await collect(s.raw(), got)
    assert got[0].endswith(BLOCK) and b"client-model" in got[0] and got[1:] == [DELTA, STOP]


async def test_an_error_already_here_ends_the_hold_at_once_for_a_retry(upstream):
    resp = upstream()
    resp.put(START, OVERLOADED)
    s = stream(resp)
    with pytest.raises(EarlyError) as caught:
        await s.prime()
    assert caught.value.outcome.action == "transient" and resp.closed


async def test_a_first_event_alone_is_held_and_the_content_awaited(upstream):
    resp = upstream()
    resp.put(START)  # the upstream sent message_start; the model has not begun
    s = stream(resp)
    primed = asyncio.ensure_future(s.prime())
    await asyncio.sleep(0.01)
    assert not primed.done()
    resp.put(BLOCK)
    await asyncio.wait_for(primed, 1)
    assert s.saw_content


MESSAGE_DELTA = event("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 42}})
BURST = START + BLOCK + DELTA * 50 + event("content_block_stop", {"index": 0}) + MESSAGE_DELTA + STOP


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
async def test_any_chunking_gives_the_same_bytes_usage_and_end(upstream, line_end):
    whole = BURST.replace(b"\n", line_end)
    rng = random.Random(line_end)
    cuttings = [[whole]] + [[whole[:i], whole[i:]] for i in range(1, len(whole), 97)]
    for _ in range(60):
        cuts = sorted(rng.sample(range(1, len(whole)), rng.randint(1, 8)))
        cuttings.append([whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)])])
    start = json.loads(START.split(b"data: ", 1)[1])
    start["message"]["model"] = "client-model"
    want = encode_json(start, event="message_start") + whole[len(START.replace(b"\n", line_end)):]
    for chunks in cuttings:
        resp = upstream()
        resp.put(*chunks, None)
        s = stream(resp)
        await s.prime()
        got: list[bytes] = []
        await collect(s.raw(), got)
        assert b"".join(got) == want, chunks  # byte for byte, only message_start's model echoed
        assert (s.input_tokens, s.output_tokens, s.saw_stop) == (10, 42, True), chunks


async def test_a_connection_lost_before_content_is_early_and_retryable(upstream):
    resp = upstream()
    resp.put(START, aiohttp.ClientPayloadError("response closed before its end"))
    with pytest.raises(EarlyError) as caught:
        await stream(resp).prime()
    assert caught.value.outcome.action == "transient" and resp.closed
    assert caught.value.outcome.error.status in (502, 503)


# ---------------------------------------------------------------- hub events (hold_events)

HUB_START = {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 1}}}
HUB_BLOCK = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
HUB_STOP = {"type": "message_stop"}


async def scripted_events(script: list, gate: asyncio.Event | None = None):
    for item in script:
        if item == "wait":
            await gate.wait()
            continue
        yield item


async def test_hub_events_are_held_until_content_then_all_replayed():
    events = await relay.hold_events(scripted_events([HUB_START, HUB_BLOCK, HUB_STOP]))
    assert [e async for e in events] == [HUB_START, HUB_BLOCK, HUB_STOP]


@pytest.mark.parametrize("script, status", [
    ([HUB_START, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}], 529),
    ([HUB_START, relay.LOST], 502),
    ([HUB_START], 502),
    ([], 502),
])
async def test_a_hub_stream_failing_before_content_is_early(script, status):
    with pytest.raises(EarlyError) as caught:
        await relay.hold_events(scripted_events(script))
    assert caught.value.outcome.action == "transient" and caught.value.outcome.error.status == status


async def test_a_hub_hold_that_times_out_replays_everything_once_content_comes(monkeypatch):
    monkeypatch.setattr(relay, "HOLD_SECONDS", 0.02)
    gate = asyncio.Event()
    events = await asyncio.wait_for(relay.hold_events(scripted_events([HUB_START, "wait", HUB_BLOCK, HUB_STOP], gate)), 1)
    out: list = []
    reader = asyncio.ensure_future(collect(events, out))
    await asyncio.sleep(0.05)
    assert not reader.done()  # the stream has begun (the hold gave up); the content is awaited
    gate.set()
    await asyncio.wait_for(reader, 1)
    assert out == [HUB_START, HUB_BLOCK, HUB_STOP]


async def test_a_hold_cancelled_by_a_departing_client_frees_the_upstream(upstream):
    resp = upstream()
    resp.put(START)  # the model has not begun: the hold waits
    primed = asyncio.ensure_future(stream(resp).prime())
    await asyncio.sleep(0.01)
    primed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await primed
    assert resp.closed


@pytest.mark.parametrize("whole", [False, True], ids=["stream", "whole-answer"])
async def test_a_hub_hold_cancelled_by_a_departing_client_closes_the_stream(whole):
    gate, closed = asyncio.Event(), []

    async def events():
        try:
            yield HUB_START
            await gate.wait()  # the model has not begun
            yield HUB_BLOCK
        finally:
            closed.append(True)

    holding = asyncio.ensure_future(relay.hold_events(events(), whole=whole))
    await asyncio.sleep(0.01)
    holding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holding
    assert closed == [True]


async def test_a_timed_out_hub_hold_closed_before_iteration_stops_its_reader(monkeypatch):
    monkeypatch.setattr(relay, "HOLD_SECONDS", 0.02)
    gate, closed = asyncio.Event(), []

    async def events():
        try:
            yield HUB_START
            await gate.wait()
            yield HUB_BLOCK
        finally:
            closed.append(True)

    held = await asyncio.wait_for(relay.hold_events(events()), 1)  # the read of HUB_BLOCK is in flight
    await asyncio.wait_for(held.aclose(), 1)  # no "generator already running", nothing left running
    assert closed == [True]


async def test_a_whole_answer_hold_waits_past_the_deadline_in_the_callers_task(monkeypatch):
    """A client waiting for the whole answer has no stream to start: the hold has no deadline,
    and the read runs in the caller's task (no task, no timer)."""
    monkeypatch.setattr(relay, "HOLD_SECONDS", 0.01)
    gate = asyncio.Event()
    tasks = len(asyncio.all_tasks())
    holding = asyncio.ensure_future(relay.hold_events(scripted_events([HUB_START, "wait", HUB_BLOCK, HUB_STOP], gate),
                                                      whole=True))
    await asyncio.sleep(0.05)
    assert not holding.done()  # five deadlines later, still held
    assert len(asyncio.all_tasks()) == tasks + 1  # only the holding task itself
    gate.set()
    events = await asyncio.wait_for(holding, 1)
    assert [e async for e in events] == [HUB_START, HUB_BLOCK, HUB_STOP]


async def test_a_whole_answer_hold_fails_over_on_an_error_after_the_deadline(monkeypatch):
    monkeypatch.setattr(relay, "HOLD_SECONDS", 0.01)
    gate = asyncio.Event()
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    holding = asyncio.ensure_future(relay.hold_events(scripted_events([HUB_START, "wait", error], gate), whole=True))
    await asyncio.sleep(0.05)
    gate.set()
    with pytest.raises(EarlyError) as caught:
        await asyncio.wait_for(holding, 1)
    assert caught.value.outcome.error.status == 529


async def test_draining_held_events_feeds_what_iterating_gives_then_closes_the_stream(monkeypatch):
    """drain(feed), hub.aggregate's way: the held events and the rest, in order, after a hold that
    timed out with a read in flight too; the stream is closed at the end."""
    monkeypatch.setattr(relay, "HOLD_SECONDS", 0.01)
    gate, closed, fed = asyncio.Event(), [], []

    async def events():
        try:
            for item in (HUB_START, "wait", HUB_BLOCK, HUB_STOP):
                if item == "wait":
                    await gate.wait()
                else:
                    yield item
        finally:
            closed.append(True)

    held = await asyncio.wait_for(relay.hold_events(events()), 1)  # timed out: the read is in flight
    draining = asyncio.ensure_future(held.drain(fed.append))
    await asyncio.sleep(0.02)
    assert fed == [] and not draining.done()  # the held start waits for the read in flight
    gate.set()
    await asyncio.wait_for(draining, 1)
    assert fed == [HUB_START, HUB_BLOCK, HUB_STOP] and closed == [True]


async def test_a_drain_cancelled_by_a_departing_client_closes_the_stream():
    gate, closed, fed = asyncio.Event(), [], []

    async def events():
        try:
            yield HUB_START
            yield HUB_BLOCK
            await gate.wait()  # the model pauses mid-answer
            yield HUB_STOP
        finally:
            closed.append(True)

    held = await relay.hold_events(events(), whole=True)
    draining = asyncio.ensure_future(held.drain(fed.append))
    await asyncio.sleep(0.01)
    draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await draining
    assert fed == [HUB_START, HUB_BLOCK] and closed == [True]


async def test_a_drain_whose_feed_fails_closes_the_stream_it_left_suspended():
    closed, fed = [], []

    async def events():
        try:
            yield HUB_START
            yield HUB_BLOCK
            yield HUB_STOP
        finally:
            closed.append(True)

    def feed(event):
        if event is HUB_BLOCK:
            raise ValueError("the accumulator refused it")
        fed.append(event)

    held = await relay.hold_events(events(), whole=True)
    with pytest.raises(ValueError):
        await held.drain(feed)
    assert fed == [HUB_START] and closed == [True]


class Recording:
    """A stream converter (feed / close) that hands each object on and records what it was given;
    `stop_on` makes it one with a `done` flag, set by that object (as WebEvents on a stop sequence)."""

    def __init__(self, stop_on: dict | None = None) -> None:
        self.fed: list = []
        self.closes = 0
        if stop_on is not None:
            self.stop_on, self.done = stop_on, False

    def feed(self, obj: dict) -> list:
        self.fed.append(obj)
        if getattr(self, "stop_on", None) == obj:
            self.done = True
        return [obj]

    def close(self) -> list:
        self.closes += 1
        return [{"type": "closed"}]


async def converted(resp: Scripted, conv) -> list:
    return [e async for e in relay.converted_events(resp, conv)]


async def test_converted_events_keep_a_last_event_without_its_blank_line():
    """Some OpenAI-compatible servers end the body right after their last event's data line."""
    resp, conv = Scripted(lean=False), Recording()
    resp.put(b'data: {"a": 1}\n\ndata: [DONE]\n\ndata: not json\n\ndata: [1]\n\n', b'data: {"usage": 2}', None)
    assert await converted(resp, conv) == [{"a": 1}, {"usage": 2}, {"type": "closed"}]
    assert conv.fed == [{"a": 1}, {"usage": 2}] and resp.closed  # [DONE], bad JSON, a list: skipped


async def test_a_converter_that_is_done_ends_the_stream_and_closes_the_upstream():
    resp, conv = Scripted(lean=False), Recording(stop_on={"n": 2})
    resp.put(b'data: {"n": 1}\n\ndata: {"n": 2}\n\ndata: {"n": 3}\n\n', b'data: {"n": 4}\n\n', None)
    assert await converted(resp, conv) == [{"n": 1}, {"n": 2}, {"n": 3}]  # the rest of that chunk's events
    assert conv.closes == 0 and resp.closed and list(resp.items) == [b'data: {"n": 4}\n\n', None]


@pytest.mark.parametrize("stop_on, tail, unread", [(None, [relay.LOST], 0), ({"n": 1}, [], 1)],
                         ids=["open", "done-before-the-break"])
async def test_a_lost_connection_is_reported_unless_the_converter_ended_the_stream(stop_on, tail, unread):
    resp, conv = Scripted(lean=False), Recording(stop_on=stop_on)
    resp.put(b'data: {"n": 1}\n\n', aiohttp.ClientPayloadError("connection reset"))
    assert await converted(resp, conv) == [{"n": 1}, *tail]
    assert conv.closes == 0 and resp.closed and len(resp.items) == unread


def test_message_ids_are_random_anthropic_style_ids():
    ids = {relay.new_msg_id() for _ in range(1000)}
    assert len(ids) == 1000  # never a repeat (timestamps would collide, conversions.md §1.5)
    assert all(re.fullmatch(r"msg_[0-9a-f]{24}", found) for found in ids)
