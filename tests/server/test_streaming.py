"""send_stream(): the headers leave with the first event when it is ready, and never wait for it."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from clewdr_lite.server.streaming import AnthropicOut, send_stream

START = {"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 1}}}


def recording(transport, into: list) -> None:
    """Record every write the response makes on the connection."""
    write, writelines = transport.write, transport.writelines
    transport.write = lambda data: (into.append(bytes(data)), write(data))[1]
    transport.writelines = lambda parts: (into.append(b"".join(bytes(p) for p in parts)), writelines(parts))[1]


async def serving(events_for, aiohttp_client):
    writes: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        recording(request.transport, writes)
        return await send_stream(request, events_for(), AnthropicOut())

    app = web.Application()
    app.router.add_post("/s", handler)
    return await aiohttp_client(app), writes


async def test_an_event_ready_at_once_leaves_in_the_same_write_as_the_headers(aiohttp_client):
    async def events():
        yield START
        yield {"type": "message_stop"}

    client, writes = await serving(events, aiohttp_client)
    resp = await client.post("/s")
    body = await resp.read()
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    assert b"event: message_start" in body and b"event: message_stop" in body
    assert writes[0].startswith(b"HTTP/1.1 200") and b"event: message_start" in writes[0]


async def test_headers_go_out_before_an_event_that_is_slow_to_come(aiohttp_client):
    gate = asyncio.Event()

    async def events():
        await gate.wait()  # the upstream has not answered yet
        yield START

    client, writes = await serving(events, aiohttp_client)
    async with client.post("/s") as resp:  # returns once the headers are in
        assert resp.status == 200
        assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200") and b"event:" not in writes[0]
        gate.set()
        assert b"event: message_start" in await asyncio.wait_for(resp.read(), 5)


async def test_a_fault_after_the_first_event_ends_the_stream_with_an_error_event(aiohttp_client, caplog):
    async def events():
        yield START
        raise RuntimeError("a bug in a translator")

    client, _ = await serving(events, aiohttp_client)
    resp = await client.post("/s")
    body = await resp.read()  # ends: the client is never left waiting
    assert resp.status == 200 and body.startswith(b"event: message_start")
    assert body.endswith(b'event: error\ndata: {"type":"error","error":{"type":"api_error",'
                         b'"message":"internal error; see the proxy log"}}\n\n')
    assert any("stream failed" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_an_upstream_lost_mid_stream_is_an_error_event_not_a_fault(aiohttp_client, caplog):
    async def events():
        yield START
        raise aiohttp.ClientPayloadError("Response payload is not completed")

    client, _ = await serving(events, aiohttp_client)
    resp = await client.post("/s")
    body = await resp.read()
    assert body.endswith(b'"message":"upstream connection lost"}}\n\n')
    assert not any(r.exc_info for r in caplog.records)
