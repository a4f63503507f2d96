"""The lean HTTP/1.1 client (upstream/wire.py) through AiohttpClient, against a scripted raw server.

The server is a plain asyncio server on 127.0.0.1 that answers each request with bytes a test
chooses, so framing (length, chunked, until close), keep-alive, stale pooled connections, interim
answers, compression and broken answers are all exercised byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import re
import ssl
import subprocess
import zlib

import aiohttp
import pytest

from clewdr_lite.upstream import body, http, wire


class Raw:
    """A scripted HTTP server: `answer(head, body)` → bytes (or a list of byte pieces)."""

    def __init__(self, answer, *, close_after: bool = False, delay: float = 0.0) -> None:
        self.answer, self.close_after, self.delay = answer, close_after, delay
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.writers: list = []
        self.tasks: list = []

    async def start(self, ssl_ctx=None) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_ctx)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if ssl_ctx else 'http'}://127.0.0.1:{port}"

    async def _serve(self, reader, writer):
        self.connections += 1
        self.writers.append(writer)
        self.tasks.append(asyncio.current_task())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append((head, body))
                out = self.answer(head, body)
                for piece in out if isinstance(out, list) else [out]:
                    writer.write(piece)
                    await writer.drain()
                    if self.delay:
                        await asyncio.sleep(self.delay)
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self):
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), extra, body)


def chunked(*pieces: bytes, trailer: bytes = b"") -> bytes:
    out = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    for piece in pieces:
        out += b"%x;ext=1\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n" + trailer + b"\r\n"


async def serve(answer, **kw):
    server = Raw(answer, **kw)
    return server, await server.start()


@contextlib.asynccontextmanager
async def talking(answer, **kw):
    """A scripted server and a client to it: (server, base URL, client); both closed after."""
    server, base = await serve(answer, **kw)
    client = http.AiohttpClient()
    try:
        yield server, base, client
    finally:
        await client.close()
        await server.stop()


async def test_content_length_answer_and_keep_alive_reuse():
    async with talking(lambda head, body: ok(b'{"echo":%d}' % len(body))) as (server, base, client):
        for n in range(5):
            resp = await client.request("POST", base + "/v1/messages?beta=true", headers={"x-api-key": "k"},
                                        data=b"x" * n)
            assert resp.status == 200 and resp.headers["content-type"] == "application/json"
            assert await resp.json() == {"echo": n}
        assert server.connections == 1                       # one pooled connection served all five
        head = server.requests[0][0].decode()
        assert head.startswith("POST /v1/messages?beta=true HTTP/1.1\r\n")
        assert f"Host: 127.0.0.1:{base.rsplit(':', 1)[1]}\r\n" in head and "x-api-key: k\r\n" in head
        assert "Content-Length: 0\r\n" in head and "Accept-Encoding: gzip, deflate\r\n" in head


@pytest.mark.parametrize("split", [1, 3, 7, 64, 100_000])
async def test_chunked_answers_split_anywhere(split):
    whole = chunked(b"event: a\n\n", b"data: " + b"z" * 100 + b"\n\n", b"!", trailer=b"X-T: 1\r\n")
    split_up = [whole[i:i + split] for i in range(0, len(whole), split)]
    async with talking(lambda head, body: split_up) as (server, base, client):
        for _ in range(2):  # the second request proves the connection was left clean
            resp = await client.request("POST", base + "/s", json={"a": 1})
            pieces = [p async for p in resp.chunks()]
            assert b"".join(pieces) == b"event: a\n\n" + b"data: " + b"z" * 100 + b"\n\n" + b"!"
            await resp.close()
        assert server.connections == 1
        assert server.requests[0][1] == b'{"a":1}'


async def test_many_chunks_in_one_read_and_a_bad_one_after_them():
    """Fifty events in one read come out whole; chunks before a malformed one are delivered first."""
    events = [b"data: %d\n\n" % n for n in range(50)]
    async with talking(lambda head, body: chunked(*events)) as (server, base, client):
        resp = await client.request("GET", base + "/")
        assert b"".join([p async for p in resp.chunks()]) == b"".join(events)
    bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n6\r\nsecond\r\nzz\r\n"
    async with talking(lambda head, body: bad) as (server, base, client):
        resp = await client.request("GET", base + "/")
        got = []
        with pytest.raises(aiohttp.ClientPayloadError, match="chunk size"):
            async for piece in resp.chunks():
                got.append(piece)
        assert b"".join(got) == b"firstsecond"


@pytest.mark.parametrize("size_line, ok", [(b"5;name=value", True), (b"5 ; x", True), (b" 5 ", True),
                                            (b"-5", False), (b"5;", True), (b";5", False), (b"", False)])
async def test_chunk_size_lines_with_extensions_and_bad_ones(size_line, ok):
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\nhello\r\n0\r\n\r\n")
    async with talking(lambda head, body: answer) as (server, base, client):
        resp = await client.request("GET", base + "/")
        if ok:
            assert await resp.read() == b"hello"
        else:
            with pytest.raises(aiohttp.ClientPayloadError, match="chunk size"):
                await resp.read()


@contextlib.asynccontextmanager
async def gated(before: bytes, after: bytes):
    """A server that answers `before`, waits for the gate, then sends `after` and closes; yields
    (gate, a streamed response from it)."""
    gate = asyncio.Event()

    async def slow(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + before)
        await writer.drain()
        await gate.wait()
        writer.write(after)
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(slow, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    client = http.AiohttpClient()
    try:
        yield gate, await client.request("GET", f"http://127.0.0.1:{port}/")
    finally:
        await client.close()
        srv.close()


async def test_pieces_arrive_as_sent_not_buffered():
    async with gated(b"5\r\nfirst\r\n", b"6\r\nsecond\r\n0\r\n\r\n") as (gate, resp):
        pieces = resp.chunks()
        assert await pieces.__anext__() == b"first"           # before the server sent the rest
        gate.set()
        assert await pieces.__anext__() == b"second"


async def test_waiting_for_a_piece_reads_nothing_and_can_give_up():
    async with gated(b"", b"5\r\nfirst\r\n0\r\n\r\n") as (gate, resp):
        assert resp.wait_ready is not None and not resp.ready()
        assert await resp.wait_ready(0.02) is False             # gave up; the answer goes on
        gate.set()
        assert await asyncio.wait_for(resp.wait_ready(5), 1) is True and resp.ready()
        pieces = resp.chunks()
        assert await pieces.__anext__() == b"first"             # waiting read nothing
        assert await resp.wait_ready(5) is True                 # the end is here too
        assert [p async for p in pieces] == []


async def test_until_close_gzip_deflate_and_interim_answers():
    text = b"hello " * 200
    answers = iter([
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(gzip.compress(text))
        + gzip.compress(text),
        b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(zlib.compress(text))
        + zlib.compress(text),
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
    ])
    async with talking(lambda head, body: next(answers)) as (server, base, client):
        assert await (await client.request("GET", base + "/")).read() == b"hi"
        assert await (await client.request("GET", base + "/")).read() == text
        assert await (await client.request("GET", base + "/")).read() == text
        server.close_after = True
        assert await (await client.request("GET", base + "/")).read() == b"until the end"


async def test_no_body_answers_and_connection_close():
    answers = iter([b"HTTP/1.1 204 No Content\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",  # HEAD: a length, no body
                    ok(b"bye", b"Connection: close\r\n"),
                    ok(b"again")])
    async with talking(lambda head, body: next(answers)) as (server, base, client):
        assert (await client.request("DELETE", base + "/x")).status == 204
        resp = await client.request("HEAD", base + "/x")
        assert resp.status == 200 and await resp.read() == b""
        assert await (await client.request("GET", base + "/x")).read() == b"bye"
        assert await (await client.request("GET", base + "/x")).read() == b"again"
        assert server.connections == 2                       # "Connection: close" was honoured


async def test_a_pooled_connection_closed_by_the_server_is_replaced_once():
    # the server closes after each answer
    async with talking(lambda head, body: ok(), close_after=True) as (server, base, client):
        for _ in range(3):
            assert (await client.request("POST", base + "/", data=b"{}")).status == 200
            await asyncio.sleep(0.05)                           # the close reaches us while idle
        assert server.connections == 3 and len(server.requests) == 3


async def test_a_server_that_drops_a_reused_connection_mid_request_is_retried_on_a_new_one():
    seen = []

    async def flaky(reader, writer):
        seen.append(writer)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok())                                      # the first request is answered
        await writer.drain()
        if len(seen) == 1:
            await reader.readuntil(b"\r\n\r\n")                 # the second is read, then dropped
            writer.close()
            return
        await reader.read(1)

    srv = await asyncio.start_server(flaky, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/"
    client = http.AiohttpClient()
    try:
        assert (await client.request("GET", url)).status == 200
        assert (await client.request("GET", url)).status == 200
        assert len(seen) == 2
    finally:
        await client.close()
        srv.close()
        for writer in seen:
            writer.close()
        await asyncio.sleep(0)


async def test_errors_are_aiohttp_errors():
    client = http.AiohttpClient()
    try:
        # nothing listens
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        with pytest.raises(aiohttp.ClientConnectionError, match="Cannot connect to host 127.0.0.1"):
            await client.request("GET", f"http://127.0.0.1:{port}/")
        with pytest.raises(ValueError, match="Newline"):
            await client.request("GET", f"http://127.0.0.1:{port}/", headers={"x": "a\r\nInjected: 1"})

        for bad in (b"SPDY/1 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n"):
            server, base = await serve(lambda head, body, bad=bad: bad)
            with pytest.raises(wire.Malformed):
                await client.request("GET", base + "/")
            await server.stop()

        server, base = await serve(lambda head, body: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
                                   close_after=True)
        resp = await client.request("GET", base + "/")
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
        await server.stop()

        server, base = await serve(lambda head, body: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        resp = await client.request("GET", base + "/")
        with pytest.raises(aiohttp.ClientPayloadError, match="chunk size"):
            await resp.read()
        await server.stop()

        server, base = await serve(lambda head, body: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nsome")
        resp = await client.request("GET", base + "/")
        with pytest.raises(aiohttp.ServerTimeoutError):
            [p async for p in (await _idle(resp))]
        await server.stop()
        for err in (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ServerTimeoutError):
            assert issubclass(err, http.TRANSPORT_ERRORS)
    finally:
        await client.close()


async def _idle(resp):
    """The response's chunks with a short idle deadline."""
    original = http.IDLE_TIMEOUT
    http.IDLE_TIMEOUT = 0.2
    try:
        return [p async for p in resp.chunks()]
    finally:
        http.IDLE_TIMEOUT = original


async def test_headers_timeout_cancels_and_discards_the_connection():
    async with talking(lambda head, body: ok(), delay=0) as (server, base, client):
        server.answer = lambda head, body: []                     # never answers
        with pytest.raises(asyncio.TimeoutError):
            await client.request("GET", base + "/", headers_timeout=0.2)
        server.answer = lambda head, body: ok()
        assert (await client.request("GET", base + "/")).status == 200
        assert server.connections == 2                        # the stuck one was not pooled


async def test_a_slow_reader_pauses_the_socket_and_gets_every_byte():
    big = b"y" * (body.HIGH_WATER * 4)
    async with talking(lambda head, body: ok(big)) as (server, base, client):
        resp = await client.request("GET", base + "/")
        got = bytearray()
        async for piece in resp.chunks():
            got += piece
            await asyncio.sleep(0.001)
        assert bytes(got) == big
        assert (await client.request("GET", base + "/")).status == 200
        assert server.connections == 1


async def test_abandoning_a_stream_closes_its_connection():
    unfinished = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"
    answer = lambda head, body: chunked(b"a", b"b") if b"/ok" in head else unfinished  # noqa: E731
    async with talking(answer) as (server, base, client):
        resp = await client.request("GET", base + "/open")
        assert await resp.chunks().__anext__() == b"a"
        await resp.close()                                     # the rest never comes: not pooled
        resp = await client.request("GET", base + "/ok")
        assert await resp.read() == b"ab"
        assert server.connections == 2


async def test_https_with_the_configured_ca(tmp_path, monkeypatch):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server = Raw(lambda head, body: ok(b"secure"))
    base = await server.start(server_ctx)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))             # as a user with a private CA would
    client = http.AiohttpClient()
    try:
        assert await (await client.request("GET", base + "/")).read() == b"secure"
        assert await (await client.request("GET", base + "/")).read() == b"secure"
        assert server.connections == 1
    finally:
        await client.close()
        await server.stop()
    monkeypatch.delenv("SSL_CERT_FILE")
    strict = http.AiohttpClient()
    server = Raw(lambda head, body: ok(b"secure"))
    base = await server.start(server_ctx)
    try:
        with pytest.raises(aiohttp.ClientConnectionError, match="ssl:True"):
            await strict.request("GET", base + "/")             # self-signed: refused by default
    finally:
        await strict.close()
        await server.stop()


async def test_what_arrived_meanwhile_is_read_as_one_piece():
    events = [b"data: %d\n\n" % n for n in range(50)]
    async with talking(lambda head, body: chunked(*events)) as (server, base, client):
        resp = await client.request("POST", base + "/", data=b"{}")
        await asyncio.sleep(0.05)                               # all 50 chunks are in by now
        pieces = [p async for p in resp.chunks()]
        assert pieces == [b"".join(events)]                     # one write downstream, not 50


async def test_a_target_with_spaces_or_non_ascii_is_percent_encoded():
    async with talking(lambda head, body: ok()) as (server, base, client):
        await client.request("GET", base + "/v1/models/my model é?q=a b&x=%20")
        assert server.requests[0][0].startswith(b"GET /v1/models/my%20model%20%C3%A9?q=a%20b&x=%20 HTTP/1.1\r\n")


async def test_an_answer_completed_while_reading_is_paused_leaves_a_usable_connection():
    big = b"q" * (body.HIGH_WATER + 100)
    whole = ok(big)
    # the last 200 bytes come later: they push the unread body over the high-water mark (reading
    # pauses) and complete the answer in the same read, so the connection goes back to the pool
    async with talking(lambda head, body: [whole[:-200], whole[-200:]], delay=0.05) as (server, base, client):
        first = await client.request("GET", base + "/")
        await asyncio.sleep(0.2)                                # all of it in, nothing read yet
        second = await client.request("GET", base + "/", headers_timeout=2)
        assert await second.read() == big and await first.read() == big
        assert server.connections == 1


async def test_credentials_in_the_url_become_basic_auth():
    async with talking(lambda head, body: ok()) as (server, base, client):
        await client.request("GET", base.replace("://", "://user:p%40ss@") + "/api/tags")
        head = server.requests[0][0].decode()
        assert "Authorization: Basic dXNlcjpwQHNz\r\n" in head            # user:p@ss
        assert "user" not in head.split("\r\n")[0] and "Host: 127.0.0.1:" in head


async def test_a_host_name_with_several_addresses_connects_to_the_one_listening():
    async with talking(lambda head, body: ok(b"via name")) as (server, base, client):  # IPv4 only
        resp = await client.request("GET", base.replace("127.0.0.1", "localhost") + "/", headers_timeout=5)
        assert await resp.read() == b"via name"
        assert f"Host: localhost:{base.rsplit(':', 1)[1]}\r\n".encode() in server.requests[0][0]


async def test_raw_deflate_is_read_and_a_broken_gzip_body_is_an_error():
    text = b"deflated " * 50
    squeeze = zlib.compressobj(wbits=-15)
    raw = squeeze.compress(text) + squeeze.flush()             # deflate without the zlib header
    answers = iter([b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(raw) + raw,
                    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot gzip!"])
    async with talking(lambda head, body: next(answers)) as (server, base, client):
        assert await (await client.request("GET", base + "/")).read() == text
        with pytest.raises(aiohttp.ClientPayloadError, match="gzip"):
            await (await client.request("GET", base + "/")).read()


async def test_an_idle_connection_past_its_keep_time_is_not_reused(monkeypatch):
    async with talking(lambda head, body: ok()) as (server, base, client):
        assert (await client.request("GET", base + "/")).status == 200
        monkeypatch.setattr(wire, "IDLE_KEEP_S", 0.0)
        assert (await client.request("GET", base + "/")).status == 200
        assert server.connections == 2


async def test_bytes_after_an_answer_make_its_connection_unusable():
    async with talking(lambda head, body: ok() + b"HTTP/1.1 200 OK\r\n") as (server, base, client):
        assert await (await client.request("GET", base + "/")).read() == b'{"ok":true}'
        assert await (await client.request("GET", base + "/")).read() == b'{"ok":true}'
        assert server.connections == 2                        # the stray bytes never met a request


async def test_idle_connections_beyond_the_per_origin_cap_are_closed(monkeypatch):
    monkeypatch.setattr(wire, "IDLE_PER_ORIGIN", 2)
    async with talking(lambda head, body: ok(), delay=0.05) as (server, base, client):
        answers = await asyncio.gather(*(client.request("GET", base + "/") for _ in range(4)))
        assert [a.status for a in answers] == [200] * 4 and server.connections == 4
        await asyncio.sleep(0.1)
        assert len(client._lean._idle[("http", "127.0.0.1", int(base.rsplit(":", 1)[1]))]) == 2
        for _ in range(3):
            assert (await client.request("GET", base + "/")).status == 200
        assert server.connections == 4                        # two kept, reused in turn


async def test_after_send_work_runs_once_the_request_is_written_not_when_answered():
    """Timing.after_send: the work runs while the call waits for its head (the bytes are out),
    once, even when no head ever comes; a second call finds nothing left to run."""
    ran = []
    async with talking(lambda head, body: ok()) as (server, base, client):
        clock = http.Timing(arrived=0.0)
        token = http.TIMING.set(clock)
        try:
            clock.after_send(lambda: ran.append(len(server.requests)))
            server.answer = lambda head, body: []  # never answers
            with pytest.raises(asyncio.TimeoutError):
                await client.request("POST", base + "/", data=b"{}", headers_timeout=0.2)
            assert ran == [0]  # ran during the call: the server had not even read it yet
            server.answer = lambda head, body: ok()
            assert (await client.request("POST", base + "/", data=b"{}")).status == 200
            assert ran == [0] and len(server.requests) == 2
        finally:
            http.TIMING.reset(token)


def test_after_send_work_runs_once_and_a_fault_in_it_is_logged_not_raised(caplog):
    clock = http.Timing(arrived=0.0)
    ran = []
    clock.after_send(lambda: ran.append(1))
    clock.on_sent()
    clock.on_sent()
    assert ran == [1]

    def broken():
        raise ValueError("disk gone")
    clock.after_send(broken)
    with caplog.at_level(logging.ERROR, logger="clewdr_lite.http"):
        clock.on_sent()  # does not raise
    assert "after-send work failed" in caplog.text and clock.pending is None


@pytest.mark.parametrize("lines, expected", [
    ([b"X-A: 1", b"x-a:2", b"X-Empty:", b"X-Pad: \t padded \t ", b"X-Colons: a:b: c"],
     [("X-A", "1"), ("x-a", "2"), ("X-Empty", ""), ("X-Pad", "padded"), ("X-Colons", "a:b: c")]),
    ([b"X-Latin: caf\xe9", b"Inner Space: ok", b"X-Vt:\x0bv\x0c"],
     [("X-Latin", "caf\xe9"), ("Inner Space", "ok"), ("X-Vt", "v")]),
])
async def test_header_lines_are_read_as_bytes_methods_read_them(lines, expected):
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(line + b"\r\n" for line in lines) + b"Content-Length: 0\r\n\r\n"
    async with talking(lambda h, b: head) as (_server, base, client):
        resp = await client.request("GET", base + "/")
        assert [(k, v) for k, v in resp.headers.items() if k != "Content-Length"] == expected
        assert resp.headers.getall(expected[0][0]) == [v for k, v in expected if k.lower() == expected[0][0].lower()]
        await resp.read()


# a lone CR or LF inside a line is refused too (bytes split on CRLF used to keep it in the value)
@pytest.mark.parametrize("line", [b"no colon here", b": no name", b" X-Fold: continued", b"X-Trail : v",
                                  b"X-Bare: a\nb", b"X-Cr: a\rb"])
async def test_a_header_line_that_cannot_be_read_is_a_malformed_answer_naming_it(line):
    head = b"HTTP/1.1 200 OK\r\nX-Good: 1\r\n" + line + b"\r\nContent-Length: 0\r\n\r\n"
    async with talking(lambda h, b: head) as (_server, base, client):
        with pytest.raises(wire.Malformed, match="bad header line") as caught:
            await client.request("GET", base + "/")
        assert repr(line[:4])[2:-1] in str(caught.value)


@pytest.mark.parametrize("headers", [{"x": "a\rb"}, {"x": "a\nb"}, {"x\n": "v"}, {"x": "a", "y": "b\r\nZ: 1"}])
async def test_a_cr_or_lf_in_any_header_name_or_value_is_refused_before_sending(headers):
    async with talking(lambda h, b: ok()) as (server, base, client):
        with pytest.raises(ValueError, match="Newline"):
            await client.request("GET", base + "/", headers=headers)
        assert server.requests == []


async def test_request_headers_go_out_once_each_with_the_defaults_the_caller_left_out():
    async with talking(lambda h, b: ok()) as (server, base, client):
        resp = await client.request("POST", base + "/v1", data=b"{}",
                                    headers={"X-Num": 7, "accept": "application/json", "Content-Length": "99"})
        await resp.read()
    head = server.requests[0][0].decode()
    assert "X-Num: 7\r\n" in head and "accept: application/json\r\n" in head and "Accept: */*" not in head
    assert head.count("Content-Length") == 1 and "Content-Length: 2\r\n" in head
    assert "Accept-Encoding: gzip, deflate\r\n" in head and "User-Agent: Python/" in head


def test_header_lines_are_made_once_per_header_set_with_the_values_types_in_the_key():
    first = wire.header_lines({"x-api-key": "k", "X-Flag": 1})
    assert wire.header_lines({"x-api-key": "k", "X-Flag": 1}) is first  # the same set: made once
    assert first[1].endswith("x-api-key: k\r\nX-Flag: 1\r\n") and "x-flag" in first[0]
    assert wire.header_lines({"x-api-key": "k", "X-Flag": True})[1].endswith("X-Flag: True\r\n")
    listed = wire.header_lines({"X-List": ["a", "b"]})  # unhashable: made every time, still right
    assert listed[1].endswith("X-List: ['a', 'b']\r\n") and wire.header_lines({"X-List": ["a", "b"]}) is not listed
    for _ in range(2):  # a refused set is never kept
        with pytest.raises(ValueError, match="Newline"):
            wire.header_lines({"x": "a\r\nInjected: 1"})
    assert wire.header_lines(None) == wire.header_lines({}) == (frozenset(), "".join(t for _, t in wire._DEFAULT_LINES))


def test_the_kept_header_sets_are_bounded(monkeypatch):
    monkeypatch.setattr(wire, "_HEADER_LINES", {})
    for n in range(wire._HEADER_SETS_KEPT + 10):
        wire.header_lines({"X-N": str(n)})
    assert 0 < len(wire._HEADER_LINES) <= wire._HEADER_SETS_KEPT


async def test_a_paced_bodys_idle_deadline_is_an_alarm_on_the_clients_shared_timer(monkeypatch):
    """A body read as it arrives waits for each piece: its idle deadline is an entry on the timer the
    client keeps for heads, not a loop timer of its own; the body's end drops it."""
    loop = asyncio.get_running_loop()
    events = [b"data: %d\n\n" % n for n in range(6)]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n" % sum(map(len, events))
    async with talking(lambda h, b: [head, *events], delay=0.02) as (server, base, client):
        resp = await client.request("GET", base + "/")
        made, real = [], loop.call_at

        def counting(when, callback, *args, **kwargs):
            made.append(getattr(callback, "__qualname__", repr(callback)))
            return real(when, callback, *args, **kwargs)
        monkeypatch.setattr(loop, "call_at", counting)
        pieces = [piece async for piece in resp.chunks()]
        monkeypatch.undo()
        assert b"".join(pieces) == b"".join(events) and len(pieces) >= 3
        deadlines = client._lean._deadlines
        assert "Pieces._idle_check" not in made and deadlines._calls == {}
        assert all(type(key) is not wire._Body for key in deadlines._due)


# the one-pass regex the head was read with before: the oracle of header_fields' loop
_ORACLE = re.compile(r"^([^\s:](?:[^:\r\n]*[^\s:])?):[ \t\x0b\x0c]*([^\r\n]*?)[ \t\x0b\x0c]*\r\n", re.M)


def test_header_fields_read_what_the_header_line_rules_read_and_refuse_the_rest():
    import random
    rng = random.Random(11)
    atoms = ["X-A", "v", ":", " ", "\t", "\x0b", "\x0c", "\x1c", "\xa0", "\x85", "\r", "\n", "é", "a b", "", "::"]
    for _ in range(20000):
        lines = ["".join(rng.choices(atoms, k=rng.randint(0, 6))) for _ in range(rng.randint(0, 5))]
        fields = "".join(line + "\r\n" for line in lines)
        pairs = _ORACLE.findall(fields)
        got = wire.header_fields(fields)
        if len(pairs) == fields.count("\n"):
            assert got == pairs, fields
        else:
            assert type(got) is str and got in fields, fields
    assert wire.header_fields("") == [] and wire.header_fields("A: 1\r\nB") == "B"
