"""Reading a request's body: taken at once when it is all in, aiohttp's read() otherwise, with
aiohttp's size limit either way."""

from __future__ import annotations

import asyncio

from aiohttp import web

from clewdr_lite.server import api


def body_app(limit: int, seen: list) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        seen.append(request.content.is_eof())  # whether the body was all in when the handler ran
        raw = await api.read_body(request)
        return web.Response(body=raw)
    app = web.Application(client_max_size=limit)
    app.router.add_post("/", echo)
    return app


async def test_a_body_that_is_all_in_is_taken_at_once_and_whole(aiohttp_client):
    seen = []
    client = await aiohttp_client(body_app(1024, seen))
    for data in (b'{"a": 1}', b"x" * 1000, b""):
        resp = await client.post("/", data=data)
        assert resp.status == 200 and await resp.read() == data
    assert seen == [True, True, True]  # the fast path served them


async def test_a_body_beyond_the_limit_is_refused_in_either_path(aiohttp_client):
    seen = []
    client = await aiohttp_client(body_app(100, seen))
    resp = await client.post("/", data=b"y" * 101)
    assert resp.status == 413 and seen == [True]
    port = client.server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # a body still on its way
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 150\r\n\r\n" + b"z" * 50)
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.write(b"z" * 100)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413") and seen == [True, False]


async def test_a_body_still_arriving_is_read_whole_by_aiohttp(aiohttp_client):
    seen = []
    client = await aiohttp_client(body_app(1024, seen))
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
    await writer.drain()
    await asyncio.sleep(0.1)  # the handler runs and waits for the rest
    writer.write(b"56789")
    answer = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n0123456789") and seen == [False]
