"""The lean curl path (upstream/curl_lean.py) against curl_cffi's own session, byte for byte on the
wire, and its behaviour as an upstream client: handle reuse, early close, back-pressure, timeouts."""

from __future__ import annotations

import asyncio
import gzip
import json as jsonlib
import os
import ssl
import struct
import time
import types

import aiohttp
import pytest
from aiohttp import web

pytest.importorskip("curl_cffi")

from clewdr_lite.upstream import body, curl_heads, curl_lean  # noqa: E402
from clewdr_lite.protocol.sse import json_bytes  # noqa: E402
from clewdr_lite.upstream.http import CurlClient  # noqa: E402
from tests.fakes.common import serve  # noqa: E402
from tests.fakes.tls import tls_files  # noqa: E402

pytestmark = pytest.mark.skipif(not curl_lean.available(), reason="curl_cffi older than 0.16 installed")

GUARD = 10.0  # seconds: only turns a hang into a failure, never paces a test
WEB_HEADERS = {"Cookie": "sessionKey=sk-ant-sid01-test", "Origin": "https://claude.ai",
               "Referer": "https://claude.ai/new", "Accept-Language": "en-US,en;q=0.9",
               "Accept": "application/json"}


class SessionClient:
    """curl_cffi's own AsyncSession, called as clewdr-lite called it before the lean path: the
    reference for what an impersonated call puts on the wire."""

    def __init__(self) -> None:
        from curl_cffi.requests import AsyncSession
        self.session = AsyncSession(max_clients=64, impersonate="chrome", discard_cookies=True)

    async def request(self, method, url, *, headers, json=None):
        headers = dict(headers)
        data = None
        if json is not None:
            data = json_bytes(json)
            headers.setdefault("Content-Type", "application/json")
        resp = await self.session.request(method, url, headers=headers, data=data, allow_redirects=False,
                                          stream=True, timeout=(15.0, 300.0), impersonate="chrome")
        return SessionAnswer(resp)

    async def close(self) -> None:
        await self.session.close()


class SessionAnswer:
    def __init__(self, resp) -> None:
        self.status, self._resp = resp.status_code, resp

    async def json(self):
        return jsonlib.loads(await self._resp.acontent())


# how each client reports a connection the listener closed before answering
CUT = (aiohttp.ClientConnectionError, pytest.importorskip("curl_cffi.requests.exceptions").RequestException)


def clients() -> tuple:
    """The reference (curl_cffi's session) and the lean path, in that order."""
    return SessionClient(), CurlClient()


# ---- the wire: what each path sends ----------------------------------------------------------

class Capture:
    """A raw TCP listener that keeps what each connection sent until `enough(data)` says so, then
    answers `reply` (or closes)."""

    def __init__(self, enough, reply: bytes = b"", tls: ssl.SSLContext | None = None) -> None:
        self.enough, self.reply, self.tls = enough, reply, tls
        self.got: list[bytes] = []
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0, ssl=self.tls)
        port = self.server.sockets[0].getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        try:
            while not self.enough(data):
                piece = await reader.read(65536)
                if not piece:
                    break
                data += piece
            self.got.append(data)
            if self.reply:
                writer.write(self.reply)
                await writer.drain()
        finally:
            writer.close()


def http1_request_done(data: bytes) -> bool:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(rest) >= int(line.split(b":")[1])
    return True


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"


@pytest.mark.parametrize("method,json_body", [
    ("GET", None), ("POST", {"prompt": "hi", "n": 1}), ("PUT", {"settings": {"x": True}}),
    ("POST", {"prompt": "long " * 300_000})])  # over 1 MiB: where curl would add Expect: 100-continue
async def test_http1_request_bytes_equal_the_sessions(method, json_body):
    """Same request line, same headers in the same order (the browser's defaults included), same body."""
    capture = Capture(http1_request_done, OK)
    async with capture as origin:  # one listener: the Host line names the same port
        for client in clients():
            try:
                resp = await client.request(method, origin + "/api/organizations", headers=WEB_HEADERS,
                                            json=json_body)
                assert resp.status == 200 and await resp.json() == {}
            finally:
                await client.close()
    session, lean = capture.got
    assert lean == session
    assert lean.startswith(f"{method} /api/organizations HTTP/1.1\r\n".encode())
    assert b"\r\nsec-ch-ua: " in lean and b"\r\nCookie: sessionKey=sk-ant-sid01-test\r\n" in lean
    assert b"Expect" not in lean


def tls_record_done(data: bytes) -> bool:
    return len(data) >= 5 and len(data) >= 5 + struct.unpack(">H", data[3:5])[0]


def grease(value: int) -> bool:
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


def client_hello(record: bytes) -> dict:
    """The parts of a TLS ClientHello that make a fingerprint, GREASE and per-connection randomness
    (random, session id, key shares, ECH payload, padding) left out; extension order as a set and
    extension 51764's entries as a multiset, since Chrome shuffles both on every connection."""
    assert record[0] == 0x16, "not a TLS handshake record"
    hello = record[5:]
    assert hello[0] == 1, "not a ClientHello"
    pos = 4 + 2 + 32
    pos += 1 + hello[pos]  # session id
    (n,) = struct.unpack(">H", hello[pos:pos + 2])
    ciphers = [c for (c,) in struct.iter_unpack(">H", hello[pos + 2:pos + 2 + n]) if not grease(c)]
    pos += 2 + n
    pos += 1 + hello[pos]  # compression methods
    (total,) = struct.unpack(">H", hello[pos:pos + 2])
    pos += 2
    end = pos + total
    extensions = {}
    while pos < end:
        kind, size = struct.unpack(">HH", hello[pos:pos + 4])
        data = hello[pos + 4:pos + 4 + size]
        pos += 4 + size
        if grease(kind):
            continue
        if kind == 51:  # key_share: the groups offered, not the keys
            groups, at = [], 2
            while at < len(data):
                group, length = struct.unpack(">HH", data[at:at + 4])
                if not grease(group):
                    groups.append(group)
                at += 4 + length
            data = bytes(str(groups), "ascii")
        elif kind in (21, 65037):  # padding, encrypted_client_hello (GREASE ECH is random)
            data = b""
        elif kind == 51764:  # a list Chrome shuffles on every connection: its bytes as a multiset
            data = bytes(sorted(data))
        elif kind in (10, 43):  # supported_groups, supported_versions: their GREASE values out
            values = [v for (v,) in struct.iter_unpack(">H", data[2 if kind == 10 else 1:]) if not grease(v)]
            data = bytes(str(values), "ascii")
        extensions[kind] = data
    return {"version": hello[4:6], "ciphers": ciphers, "extensions": extensions}


async def test_tls_client_hello_equals_the_sessions():
    """The same TLS fingerprint as curl_cffi's session: ciphers, extensions and their contents."""
    capture = Capture(tls_record_done)
    async with capture as origin:
        for client in clients():
            with pytest.raises(CUT):
                await client.request("GET", origin.replace("http:", "https:") + "/api/bootstrap",
                                     headers=WEB_HEADERS)
            await client.close()
    session, lean = (client_hello(record) for record in capture.got)
    assert lean == session
    assert len(lean["ciphers"]) > 10 and 16 in lean["extensions"]  # a browser's hello, with ALPN
    assert b"h2" in lean["extensions"][16]


def h2_frames(data: bytes) -> list[tuple[int, int, int, bytes]] | None:
    """The client's frames after the preface up to its first HEADERS frame that ends the headers, or
    None while incomplete; SETTINGS acknowledgements left out (their timing is the server's)."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    if len(data) < len(preface):
        return None
    assert data.startswith(preface), data[:40]
    frames, pos = [], len(preface)
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        kind, flags = data[pos + 3], data[pos + 4]
        stream = int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF
        if pos + 9 + length > len(data):
            return None
        payload = data[pos + 9:pos + 9 + length]
        pos += 9 + length
        if kind == 4 and flags & 1:
            continue
        frames.append((kind, flags, stream, payload))
        if kind == 1 and flags & 4:
            return frames
    return None


async def test_http2_frames_equal_the_sessions(tmp_path, monkeypatch):
    """Over TLS with ALPN h2: the same SETTINGS, WINDOW_UPDATE, and HEADERS frame byte for byte
    (pseudo-header order, header order and values, as HPACK encodes them)."""
    ca, cert, key = tls_files(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)  # both paths trust the throwaway CA
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    tls.set_alpn_protocols(["h2"])
    capture = Capture(lambda data: h2_frames(data) is not None, tls=tls)
    async with capture as origin:
        url = origin.replace("127.0.0.1", "localhost") + "/api/organizations/o/chat_conversations"
        for client in clients():
            with pytest.raises(CUT):
                await client.request("POST", url, headers=WEB_HEADERS, json={"uuid": "c", "name": ""})
            await client.close()
    session, lean = (h2_frames(data) for data in capture.got)
    assert lean == session
    kinds = [kind for kind, *_ in lean]
    assert kinds[0] == 4 and kinds[-1] == 1  # SETTINGS first, the request's HEADERS last


# ---- behaviour -------------------------------------------------------------------------------

class Upstream:
    """An aiohttp upstream whose routes tests configure."""

    def __init__(self) -> None:
        self.app = web.Application()
        self.seen: list[tuple[str, bytes, str | None]] = []
        self.left = asyncio.Event()
        self.release = asyncio.Event()
        self.app.router.add_route("*", "/echo", self._echo)
        self.app.router.add_get("/endless", self._endless)
        self.app.router.add_get("/big", self._big)
        self.app.router.add_get("/events", self._events)
        self.app.router.add_get("/silent", self._silent)
        self.app.router.add_get("/cut", self._cut)
        self.app.router.add_get("/gzip", self._gzip)
        self.app.router.add_get("/cookie", self._cookie)
        self.app.router.add_post("/keep", self._keep)
        self.app.router.add_get("/heads/{status}", self._heads)
        self.app.router.add_get("/late", self._late)
        self.transports: list = []  # each /keep request's connection, in turn

    async def _echo(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, await request.read(), request.headers.get("Cookie")))
        return web.json_response({"method": request.method})

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            while True:
                await resp.write(b"data: x\n\n")
                await asyncio.sleep(0.02)
        except (ConnectionError, asyncio.CancelledError):
            self.left.set()
            raise

    async def _events(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for n in range(30):  # each its own read, as a model's stream arrives
            await resp.write(b"data: %d\n\n" % n)
            await asyncio.sleep(0.003)
        await resp.write_eof()
        return resp

    async def _big(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        for n in range(64):
            await resp.write(bytes([n]) * (body.HIGH_WATER // 16))
        await resp.write_eof()
        return resp

    async def _silent(self, request: web.Request) -> web.Response:
        await asyncio.wait_for(self.release.wait(), GUARD)  # set when the test ends
        return web.Response()

    async def _cut(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"partial")
        await asyncio.sleep(0.05)
        request.transport.close()
        return resp

    async def _gzip(self, request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"hello " * 1000), headers={"Content-Encoding": "gzip"})

    async def _heads(self, request: web.Request) -> web.StreamResponse:
        """An answer of the status asked for with repeated and odd-cased headers; its body `?body=`."""
        text = request.query.get("body", "")
        resp = web.StreamResponse(status=int(request.match_info["status"]))
        for name, value in HEADS:
            resp.headers.add(name, value)
        if resp.status != 204:
            resp.content_length = len(text)
        await resp.prepare(request)
        if text:
            await resp.write(text.encode())
        await resp.write_eof()
        return resp

    async def _late(self, request: web.Request) -> web.StreamResponse:
        """The head at once, the body only after `?after=` seconds."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Early": "yes"})
        await resp.prepare(request)
        await asyncio.sleep(float(request.query["after"]))
        await resp.write(b"data: late\n\n")
        await resp.write_eof()
        return resp

    async def _keep(self, request: web.Request) -> web.Response:
        self.transports.append(request.transport)
        return web.json_response({"n": len(self.transports)})

    async def _cookie(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, b"", request.headers.get("Cookie")))
        resp = web.json_response({})
        resp.set_cookie("lastActiveOrg", "org-of-account-1")
        return resp


HEADS = [("X-Request-Id", "req_42"), ("set-cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-Empty", ""),
         ("Retry-After", "7")]


@pytest.fixture
async def upstream():
    up = Upstream()
    async with serve(up.app) as origin:
        up.origin = origin
        yield up
        up.release.set()


@pytest.fixture(params=["store", "callbacks"])
async def lean(request, monkeypatch):
    """The lean path as it runs: the answer's headers read from libcurl's store ("store"), or,
    where its headers API cannot be reached, through a header callback a line ("callbacks")."""
    if request.param == "callbacks":
        monkeypatch.setattr(curl_heads, "_api", False)
    else:
        assert curl_heads.api() is not None  # this curl_cffi's libcurl has it
    client = CurlClient()
    yield client
    await client.close()


async def test_one_handle_serves_every_method_in_turn(upstream, lean):
    """A handle configured once carries calls of different methods one after another, each right."""
    calls = [("POST", {"a": 1}), ("GET", None), ("PUT", {"b": 2}), ("DELETE", None), ("GET", None),
             ("PATCH", {"c": 3}), ("POST", {"d": 4})]
    for method, payload in calls:
        resp = await lean.request(method, upstream.origin + "/echo", headers={"Cookie": "sessionKey=k"},
                                  json=payload)
        assert resp.status == 200 and (await resp.json())["method"] == method
        await resp.close()
    sent = [(method, b"" if payload is None else json_bytes(payload)) for method, payload in calls]
    assert [(method, data) for method, data, _ in upstream.seen] == sent
    assert len(lean._lean._idle) == 1  # sequential calls took the same handle


async def test_every_way_a_call_ends_frees_its_header_list(upstream, lean, monkeypatch):
    """The request's header lines are libcurl's list, which the call owns: freed however it ends
    (answered, left early, timed out, refused), and the body it sent kept until then."""
    from curl_cffi import ffi

    transfers, made = [], curl_lean._Transfer.__init__

    def track(self, *args):
        made(self, *args)
        transfers.append(self)
    monkeypatch.setattr(curl_lean._Transfer, "__init__", track)
    resp = await lean.request("GET", upstream.origin + "/endless", headers={"X-B": "2"})
    assert transfers[0].header_list != ffi.NULL  # in use while the answer streams
    await resp.close()
    resp = await lean.request("POST", upstream.origin + "/echo", headers={"X-A": "1"}, json={"a": 1})
    assert (await resp.json())["method"] == "POST" and transfers[1].sent == b'{"a":1}'
    with pytest.raises(asyncio.TimeoutError):
        await lean.request("GET", upstream.origin + "/silent", headers={}, headers_timeout=0.2)
    port = upstream.origin.rsplit(":", 1)[1]
    with pytest.raises(aiohttp.ClientConnectionError):
        await lean.request("GET", upstream.origin.replace(port, "1"), headers={})
    await asyncio.sleep(0.05)  # the removals' callbacks
    assert len(transfers) == 4 and all(t.header_list == ffi.NULL for t in transfers)


async def test_closing_a_stream_early_ends_the_upstream_transfer_at_once(upstream, lean):
    """A client that leaves frees its upstream now (the session's close waited for the whole answer)."""
    resp = await lean.request("GET", upstream.origin + "/endless", headers={})
    async for chunk in resp.chunks():
        assert chunk.startswith(b"data: x")
        break
    started = time.monotonic()
    await resp.close()
    assert time.monotonic() - started < 0.5
    await asyncio.wait_for(upstream.left.wait(), GUARD)  # the upstream saw the connection go
    assert lean._lean._running == {}


async def test_a_slow_reader_pauses_the_transfer_and_gets_every_byte(upstream, lean):
    resp = await lean.request("GET", upstream.origin + "/big", headers={})
    got, most = [], 0
    async for piece in resp.chunks():
        got.append(piece)
        await asyncio.sleep(0.01)  # slower than loopback delivers
        most = max(most, _unread(lean))
    expected = b"".join(bytes([n]) * (body.HIGH_WATER // 16) for n in range(64))
    assert b"".join(got) == expected
    assert most <= body.HIGH_WATER + 64 * 1024  # 4 × HIGH_WATER was sent at loopback speed


def _unread(client: CurlClient) -> int:
    return max((t._size for t in client._lean._running.values()), default=0)


async def test_headers_that_never_come_time_out_and_free_the_handle(upstream, lean):
    with pytest.raises(asyncio.TimeoutError):
        await lean.request("GET", upstream.origin + "/silent", headers={}, headers_timeout=0.2)
    await asyncio.sleep(0)  # the removal's callback
    assert lean._lean._running == {} and len(lean._lean._idle) == 1


@pytest.mark.parametrize("status", [200, 201, 302, 403, 429, 503])
async def test_an_answers_headers_read_by_name_and_whole_as_received(upstream, lean, status):
    resp = await lean.request("GET", upstream.origin + f"/heads/{status}?body=hello", headers={})
    assert resp.status == status
    assert resp.headers.get("x-request-id") == resp.headers["X-REQUEST-ID"] == "req_42"
    assert resp.headers.get("request-id") is None and "request-id" not in resp.headers
    assert "retry-after" in resp.headers and resp.headers.get("X-Empty") == ""
    assert resp.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    whole = [(k.lower(), v) for k, v in resp.headers.items()]
    assert [pair for pair in whole if pair[0] in {n.lower() for n, _ in HEADS}] == [(n.lower(), v) for n, v in HEADS]
    assert ("content-length", "5") in whole and await resp.read() == b"hello"
    await resp.close()


async def test_the_headers_of_an_error_stay_readable_after_its_close_and_the_handles_next_call(upstream, lean):
    """An error's headers are classified after its body is read (claude_web._call): read whole at once."""
    resp = await lean.request("GET", upstream.origin + "/heads/429?body=slow+down", headers={})
    assert await resp.read() == b"slow down"
    await resp.close()
    again = await lean.request("GET", upstream.origin + "/heads/200", headers={})  # the same handle
    await again.read()
    await again.close()
    assert len(lean._lean._idle) == 1
    assert resp.status == 429 and resp.headers["Retry-After"] == "7" and len(resp.headers) == len(HEADS) + 4


@pytest.mark.parametrize("status", [204, 200])
async def test_an_answer_with_no_body_has_its_status_and_headers(upstream, lean, status):
    resp = await lean.request("GET", upstream.origin + f"/heads/{status}", headers={})
    assert resp.status == status and await resp.read() == b""
    await resp.close()
    again = await lean.request("GET", upstream.origin + "/heads/201?body=x", headers={})
    assert again.status == 201 and await again.read() == b"x"
    await again.close()
    assert resp.headers["x-request-id"] == "req_42" and resp.headers.getall("set-cookie") == ["a=1", "b=2"]


async def test_a_head_whose_body_is_late_is_no_headers_timeout(upstream, lean):
    """The headers deadline is met by the head itself: a body that begins after it is the idle
    deadline's business (with the store, the head is otherwise taken at the body's first piece)."""
    resp = await asyncio.wait_for(
        lean.request("GET", upstream.origin + "/late?after=0.4", headers={}, headers_timeout=0.15), GUARD)
    assert resp.status == 200 and resp.headers["X-Early"] == "yes"
    assert await resp.read() == b"data: late\n\n"
    await resp.close()


async def test_a_2xx_answers_handle_waits_for_its_close(upstream):
    """The store is the handle's until its next call: an answer read to its end but not closed
    keeps its handle (others serve the calls meanwhile); its close gives the handle back, and a
    header not read before the close is an error, never another answer's."""
    client = CurlClient()
    try:
        first = await client.request("GET", upstream.origin + "/heads/200?body=one", headers={})
        assert first.headers.get("X-Request-Id") == "req_42"  # read by name: one lookup
        assert await first.read() == b"one"
        assert client._lean._running == {} and client._lean._idle == []  # ended, held for `first`
        second = await client.request("GET", upstream.origin + "/echo", headers={})
        assert (await second.json())["method"] == "GET"
        await second.close()
        assert len(client._lean._idle) == 1 and first.headers["retry-after"] == "7"
        await first.close()
        assert len(client._lean._idle) == 2
        with pytest.raises(RuntimeError, match="after its close"):
            dict(first.headers)
    finally:
        await client.close()


async def test_an_answer_dropped_without_its_close_gives_its_handle_back(upstream):
    import gc
    client = CurlClient()
    try:
        for n in range(3):
            resp = await client.request("GET", upstream.origin + "/heads/200?body=x", headers={})
            assert resp.headers.get("x-request-id") == "req_42" and await resp.read() == b"x"
            assert client._lean._idle == []  # held for the headers while the answer lives
            del resp
            gc.collect()
            assert len(client._lean._idle) == 1  # the one handle, each time
    finally:
        await client.close()


def test_a_headers_api_that_cannot_be_reached_leaves_the_callback_path(monkeypatch):
    """A libcurl without the headers API (or a library cffi cannot open): no store, and the
    handles get a header callback (easy_pointer gives None)."""
    import cffi
    monkeypatch.setattr(curl_heads, "_api", None)

    def refuse(self, name):
        raise OSError(f"cannot load {name}")
    monkeypatch.setattr(cffi.FFI, "dlopen", refuse)
    assert curl_heads.api() is None and curl_heads._api is False
    from curl_cffi import ffi
    assert curl_heads.easy_pointer(ffi, ffi.NULL) is None


async def test_no_header_callback_runs_where_the_store_is_read(upstream, monkeypatch):
    from clewdr_lite.upstream import curl_lean
    lines = []
    monkeypatch.setattr(curl_lean._Transfer, "on_header", lambda self, line: lines.append(line) or len(line))
    client = CurlClient()
    try:
        resp = await client.request("GET", upstream.origin + "/heads/200?body=x", headers={})
        assert resp.status == 200 and resp.headers["x-request-id"] == "req_42" and await resp.read() == b"x"
        await resp.close()
    finally:
        await client.close()
    assert lines == []


async def test_a_refused_connection_is_a_connection_error(lean):
    async with Capture(lambda data: True) as origin:
        pass  # closed: nothing listens there now
    with pytest.raises(aiohttp.ClientConnectionError):
        await lean.request("GET", origin + "/x", headers={})


async def test_a_body_cut_short_is_a_payload_error(upstream, lean):
    resp = await lean.request("GET", upstream.origin + "/cut", headers={})
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


async def test_a_gzip_body_arrives_decoded(upstream, lean):
    resp = await lean.request("GET", upstream.origin + "/gzip", headers={})
    assert await resp.read() == b"hello " * 1000


async def test_cookies_an_answer_sets_are_not_sent_later(upstream, lean):
    for key in ("one", "two"):
        resp = await lean.request("GET", upstream.origin + "/cookie", headers={"Cookie": f"sessionKey={key}"})
        assert "lastActiveOrg" in resp.headers.get("Set-Cookie", "")
        await resp.read()
    assert [cookie for _, _, cookie in upstream.seen] == ["sessionKey=one", "sessionKey=two"]


async def test_closing_the_client_cuts_an_open_stream_instead_of_ending_it(upstream):
    client = CurlClient()
    resp = await client.request("GET", upstream.origin + "/endless", headers={})
    await client.close()
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


def test_header_lines_are_parsed_case_insensitively_with_folds_and_repeats():
    headers = curl_heads.parse_headers([b"Content-Type: text/event-stream\r\n", b"Set-Cookie: a=1\r\n",
                                       b"set-cookie: b=2\r\n", b"X-Long: one\r\n", b"  two\r\n",
                                       b"no colon here\r\n"])
    assert headers["content-type"] == "text/event-stream"
    assert headers.getall("Set-Cookie") == ["a=1", "b=2"] and headers["x-long"] == "one two"
    assert len(headers) == 4


def test_a_folded_line_continues_only_the_last_of_repeated_headers():
    headers = curl_heads.parse_headers([b"Set-Cookie: a=1\r\n", b"Set-Cookie: b=2\r\n", b"\tPath=/\r\n",
                                       b"Via: x\n", b"\r\n"])
    assert headers.getall("set-cookie") == ["a=1", "b=2 Path=/"] and headers["via"] == "x"
    assert len(headers) == 3



def _parsed_line_by_line(lines: list[bytes]) -> list[tuple[str, str]]:
    """The header rules written out (the oracle of parse_headers): a folded line continues the last
    value; else the name is what precedes the first colon (at least one character), name and value
    stripped as str.strip() strips; a line without a colon is skipped."""
    pairs: list[tuple[str, str]] = []
    for line in b"".join(lines).decode("latin-1").split("\n"):
        if line[:1] in (" ", "\t"):
            if pairs and line.strip():
                pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]} {line.strip()}")
        elif ":" in line and not line.startswith(":"):
            name, _, value = line.partition(":")
            pairs.append((name.strip(), value.strip()))
    return pairs


def test_header_parsing_gives_what_the_rules_give_for_odd_lines():
    import random
    rng = random.Random(5)
    atoms = [b"Content-Type", b"x-a", b" ", b"\t", b"\x0b", b"\xa0", b"\x85", b"\x1c", b":", b"::",
             b"v", b"a b", b"\r", b"=", b"\xe9", b"", b"https://x:1/"]
    for _ in range(3000):
        lines = [b"".join(rng.choices(atoms, k=rng.randint(0, 6))) + rng.choice([b"\r\n", b"\n"])
                 for _ in range(rng.randint(0, 6))]
        if rng.random() < 0.2:  # a folded line somewhere
            lines.insert(rng.randint(0, len(lines)), rng.choice([b" more\r\n", b"\tmore\n", b"  \r\n"]))
        parsed = curl_heads.parse_headers(lines)
        assert list(parsed.items()) == _parsed_line_by_line(lines), lines


async def test_a_head_completes_at_its_final_blank_line_and_later_heads_are_not_kept():
    owner = types.SimpleNamespace(_deadlines=None)  # what a transfer reads of its client here
    transfer = curl_lean._Transfer(owner, None, asyncio.get_running_loop())
    head = [b"HTTP/1.1 100 Continue\r\n", b"\r\n", b"HTTP/1.1 201 Created\r\n",
            b"Content-Type: text/plain\r\n", b"X-Id: 7\r\n"]
    assert [transfer.on_header(line) for line in head] == [len(line) for line in head]
    assert not transfer.head.done() and transfer.status == 0
    assert transfer.on_header(b"\r\n") == 2
    assert transfer.head.done() and transfer.status == 201
    assert dict(transfer.headers) == {"Content-Type": "text/plain", "X-Id": "7"}
    for line in (b"X-Trailer: 1\r\n", b"\r\n", b"HTTP/1.1 500 Late\r\n", b"\r\n"):
        assert transfer.on_header(line) == len(line)
    assert transfer.status == 201 and dict(transfer.headers) == {"Content-Type": "text/plain", "X-Id": "7"}
    odd = curl_lean._Transfer(owner, None, asyncio.get_running_loop())
    for line in (b"\r\n", b"no status line\n", b"\n", b"HTTP/2 abc\r\n", b"\r\n"):
        odd.on_header(line)
    assert not odd.head.done() and odd.status == 0  # no final head yet: finished() reports it
    odd.on_header(b"HTTP/2 200\r\n")
    odd.on_header(b"\r\n")
    assert odd.head.done() and odd.status == 200 and len(odd.headers) == 0

# ---- HTTP/2, as claude.ai speaks it ------------------------------------------------------------

@pytest.fixture
async def h2(tmp_path, monkeypatch):
    from tests.fakes.h2_server import serve_h2
    ca, cert, key = tls_files(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)  # read when the client is made
    client = CurlClient()
    async with serve_h2(cert, key) as (origin, app):
        yield origin, app, client
        await client.close()


async def test_http2_calls_share_one_connection_each_on_its_own_handle(h2):
    origin, _, client = h2
    answers = await asyncio.gather(*(client.request("GET", origin + "/echo", headers={}) for _ in range(4)))
    seen = [await a.json() for a in answers]
    for answer in answers:
        await answer.close()
    assert {s["http_version"] for s in seen} == {"2"}
    assert len({tuple(s["client"]) for s in seen}) == 1  # one TLS connection, four streams
    assert len(client._lean._idle) == 4 and client._lean._running == {}
    again = await client.request("POST", origin + "/echo", headers={}, json={"a": 1})  # a kept handle
    assert (await again.json())["method"] == "POST" and len(client._lean._idle) == 3
    await again.close()  # its handle waits for the close (the answer's headers are read from it)
    assert len(client._lean._idle) == 4


async def test_http2_leaving_one_stream_ends_it_and_spares_the_others(h2):
    origin, app, client = h2
    left = await client.request("GET", origin + "/endless", headers={})
    kept = await client.request("GET", origin + "/endless", headers={})
    first = left.chunks()
    assert (await first.__anext__()).startswith(b"data: x")
    started = time.monotonic()
    await left.close()
    assert time.monotonic() - started < 0.5
    await asyncio.wait_for(app.gone_event.wait(), GUARD)  # the server saw that stream reset
    assert app.gone == 1
    pieces = kept.chunks()
    for _ in range(3):  # the other stream on the same connection goes on
        assert (await asyncio.wait_for(pieces.__anext__(), GUARD)).startswith(b"data: x")
    await kept.close()
    echo = await client.request("GET", origin + "/echo", headers={})  # and the handles serve again
    assert (await echo.json())["http_version"] == "2"


async def test_http2_slow_reader_pauses_the_stream_and_gets_every_byte(h2):
    from tests.fakes.h2_server import BIG_PART
    origin, app, client = h2
    resp = await client.request("GET", origin + "/big", headers={})
    got, most = [], 0
    async for piece in resp.chunks():
        got.append(piece)
        await asyncio.sleep(0.005)
        most = max(most, _unread(client))
    assert b"".join(got) == b"".join(bytes([n % 256]) * BIG_PART for n in range(app.big_parts))
    assert most <= body.HIGH_WATER + 64 * 1024  # 4 × HIGH_WATER was sent at loopback speed


async def test_an_idle_client_closes_its_multi_handle_and_wakes_no_more(upstream, lean, monkeypatch):
    """curl_cffi's multi handle runs a safety timer ten times a second while it exists: after an
    idle spell it closes (connections and timer), and the next call opens a new one."""
    monkeypatch.setattr(curl_lean, "IDLE_CLOSE_S", 0.05)
    resp = await lean.request("GET", upstream.origin + "/echo", headers={})
    assert (await resp.json())["method"] == "GET"
    assert _curl_timers() == 1
    stream = await lean.request("GET", upstream.origin + "/endless", headers={})
    multi = lean._lean._acurl
    await asyncio.sleep(0.15)  # a stream still open keeps the multi handle
    assert lean._lean._acurl is multi and _curl_timers() == 1
    await stream.close()
    await asyncio.sleep(0.15)
    assert lean._lean._acurl is None and _curl_timers() == 0
    resp = await lean.request("POST", upstream.origin + "/echo", headers={}, json={})
    assert (await resp.json())["method"] == "POST" and _curl_timers() == 1
    assert [m for m, _, _ in upstream.seen] == ["GET", "POST"]


async def test_calls_within_the_idle_time_keep_the_multi_handle_on_one_timer(upstream, lean, monkeypatch):
    """The idle timer is armed once per idle spell, not once per call: calls that keep coming
    keep the multi handle open (the timer, when it fires early, waits for the rest of the spell);
    it closes IDLE_CLOSE_S after the last one."""
    monkeypatch.setattr(curl_lean, "IDLE_CLOSE_S", 0.3)
    resp = await lean.request("GET", upstream.origin + "/echo", headers={})
    await resp.read()
    multi, timer = lean._lean._acurl, lean._lean._idle_timer
    assert multi is not None and timer is not None
    for _ in range(12):  # 0.6 s of calls 0.05 s apart: twice the idle time, never idle for it
        await asyncio.sleep(0.05)
        resp = await lean.request("GET", upstream.origin + "/echo", headers={})
        await resp.read()
        assert lean._lean._acurl is multi
        assert lean._lean._idle_timer is timer or timer.when() < asyncio.get_running_loop().time()
        timer = lean._lean._idle_timer
    last = asyncio.get_running_loop().time()
    for _ in range(100):
        if lean._lean._acurl is None:
            break
        await asyncio.sleep(0.01)
    assert lean._lean._acurl is None and asyncio.get_running_loop().time() - last >= 0.3


def _curl_timers() -> int:
    """curl_cffi's safety-timer tasks alive in this loop."""
    return sum(1 for task in asyncio.all_tasks() if "_force_timeout" in repr(task.get_coro()))


class _Loop:
    """Records what a multi handle's socket watching asks of a selector loop."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        for name in ("add_reader", "remove_reader", "add_writer", "remove_writer"):
            setattr(self, "_" + name, lambda fd, *args, _name=name: self.calls.append((_name, fd)))


class _Multi:
    def __init__(self, watched=()) -> None:
        self.loop, self._sockfds = _Loop(), set(watched)

    def process_data(self, fd: int, what: int) -> None:
        pass


def test_a_socket_is_watched_for_what_libcurl_asks_and_changed_only_where_that_changes():
    from clewdr_lite.upstream.curl_lean import _Sockets
    multi = _Multi()
    sockets = _Sockets(multi)
    steps = [(7, 1), (7, 1), (7, 2), (7, 3), (7, 4), (7, 1), (7, 4)]  # in, in, out, in+out, remove, in, remove
    seen = []
    for fd, what in steps:
        multi.loop.calls.clear()
        sockets.want(fd, what)
        seen.append(list(multi.loop.calls))
    assert seen == [[("add_reader", 7)], [], [("remove_reader", 7), ("add_writer", 7)], [("add_reader", 7)],
                    [("remove_reader", 7), ("remove_writer", 7)], [("add_reader", 7)], [("remove_reader", 7)]]
    assert multi._sockfds == set() and sockets.masks == {}  # a socket libcurl closes leaves no trace


def test_a_socket_watched_before_our_callback_took_over_is_unwatched_whole():
    from clewdr_lite.upstream.curl_lean import _Sockets
    multi = _Multi(watched={9})  # curl_cffi's callback watched it: for what, it did not record
    _Sockets(multi).want(9, 4)
    assert multi.loop.calls == [("remove_reader", 9), ("remove_writer", 9)] and multi._sockfds == set()


def _watching(loop, sockets) -> dict[int, str]:
    """The sockets a multi handle's _Sockets has in the loop's selector: fd → "parked" or "in use"."""
    out = {}
    for key in loop._selector.get_map().values():
        for handle in key.data:  # (reader, writer) handles per fd
            if handle is not None and getattr(handle._callback, "__self__", None) is sockets:
                out[key.fd] = "parked" if curl_lean._parked.get(key.fd) is sockets else "in use"
    return out


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


class _Counted:
    """Counts what a _Sockets asks of the loop (its bound add/remove calls, wrapped)."""

    def __init__(self, sockets) -> None:
        self.calls: list[str] = []
        for name in ("add_reader", "remove_reader", "add_writer", "remove_writer"):
            setattr(sockets, name, self._counting(name, getattr(sockets, name)))

    def _counting(self, name: str, real):
        def call(*args):
            self.calls.append(name)
            return real(*args)
        return call


async def lean_call(client: CurlClient, upstream):
    return await asyncio.wait_for(client.request("POST", upstream.origin + "/echo", headers={}, json={}), GUARD)


async def test_calls_on_one_connection_keep_its_socket_parked_and_never_ask_for_a_transport_check(
        upstream, lean, monkeypatch):
    # curl_cffi's own callback re-added every socket through asyncio's public calls, whose
    # transport check raises and catches a KeyError each time: six a transfer; ours leaves a
    # connection's socket in the selector between calls (two epoll_ctl and four asyncio calls saved)
    loop = asyncio.get_running_loop()
    checked = []
    monkeypatch.setattr(type(loop), "_ensure_fd_no_transport", lambda self, fd: checked.append(fd))
    resp = await lean.request("POST", upstream.origin + "/echo", headers={"Cookie": "sessionKey=k"}, json={})
    assert (await resp.json())["method"] == "POST"
    multi = lean._lean._acurl
    sockets = multi._lean_sockets
    (fd, state), = _watching(loop, sockets).items()
    assert state == "parked" and fd in curl_lean._conn_fds and sockets.masks == {}
    counted = _Counted(sockets)
    for _ in range(3):
        resp = await lean.request("POST", upstream.origin + "/echo", headers={"Cookie": "sessionKey=k"}, json={})
        assert resp.status == 200 and (await resp.json())["method"] == "POST"
    assert counted.calls == []  # the same connection: its socket never left the selector
    assert checked == [] and _watching(loop, sockets) == {fd: "parked"} and multi._sockfds == {fd}


async def test_without_the_socket_callbacks_every_call_unwatches_its_socket(upstream, monkeypatch):
    # where cffi cannot make the two callbacks (or on Windows) nothing is parked: as before
    monkeypatch.setattr(curl_lean, "_socket_hooks", False)
    client = CurlClient()
    try:
        for _ in range(3):
            resp = await lean_call(client, upstream)
            assert (await resp.json())["method"] == "POST"
        multi = client._lean._acurl
        assert _watching(asyncio.get_running_loop(), multi._lean_sockets) == {} and multi._sockfds == set()
    finally:
        await client.close()


class _NoCallbacks:
    """curl_cffi's ffi where cffi cannot make a callback (memory that may not be both written and run)."""

    def callback(self, *args, **kwargs):
        raise MemoryError("Cannot allocate write+execute memory for ffi.callback()")


class _Callbacks:
    """An ffi that makes every callback asked of it (a socket on Windows is no file descriptor:
    none may be asked there)."""

    def callback(self, *args, **kwargs):
        return object()


@pytest.mark.parametrize("platform, ffi", [("linux", _NoCallbacks()), ("win32", _Callbacks())])
def test_the_socket_callbacks_are_not_made_where_they_cannot_be(monkeypatch, platform, ffi):
    # no callbacks: _new_handle sets neither option, so no socket is ever parked (test above)
    monkeypatch.setattr(curl_lean, "_socket_hooks", None)
    monkeypatch.setattr(curl_lean, "_ffi", ffi)
    monkeypatch.setattr(curl_lean.sys, "platform", platform)
    assert curl_lean._socket_callbacks() is None and curl_lean._socket_hooks is False
    assert curl_lean._socket_callbacks() is None  # decided once


async def test_a_parked_socket_the_server_closes_leaves_the_selector_and_the_next_call_reconnects(upstream, lean):
    loop = asyncio.get_running_loop()
    transports = upstream.transports
    resp = await asyncio.wait_for(lean.request("POST", upstream.origin + "/keep", headers={}, json={}), GUARD)
    assert (await resp.json()) == {"n": 1}
    sockets = lean._lean._acurl._lean_sockets
    (fd, state), = _watching(loop, sockets).items()
    assert state == "parked"
    transports[0].close()  # the server ends the idle keep-alive connection
    for _ in range(50):  # the EOF wakes the parked reader, which takes the socket out
        await asyncio.sleep(0.01)
        if fd not in curl_lean._parked:
            break
    assert fd not in curl_lean._parked and _watching(loop, sockets) == {}
    assert fd in curl_lean._conn_fds and _open(fd)  # libcurl has not looked yet: still its socket
    resp = await asyncio.wait_for(lean.request("POST", upstream.origin + "/keep", headers={}, json={}), GUARD)
    assert (await resp.json()) == {"n": 2} and transports[1] is not transports[0]
    (new_fd, state), = _watching(loop, sockets).items()
    assert state == "parked" and new_fd in curl_lean._conn_fds
    assert fd == new_fd or fd not in curl_lean._conn_fds  # the dead one was closed through us


async def test_closing_the_client_closes_its_parked_sockets_out_of_the_selector(upstream):
    loop = asyncio.get_running_loop()
    client = CurlClient()
    resp = await lean_call(client, upstream)
    assert (await resp.json())["method"] == "POST"
    sockets = client._lean._acurl._lean_sockets
    (fd, state), = _watching(loop, sockets).items()
    assert state == "parked"
    await client.close()
    assert fd not in curl_lean._parked and fd not in curl_lean._conn_fds
    assert fd not in {key.fd for key in loop._selector.get_map().values()}  # no stale entry for a reused number
    assert not _open(fd)  # closed by our callback, as libcurl would have


async def test_sockets_closed_by_leaving_streams_and_their_numbers_reused_keep_calls_flowing(upstream, lean):
    # leaving a stream closes its connection; the next call's socket often gets the same number,
    # which is watched afresh only because libcurl said REMOVE (or closed it through us) for the old one
    loop = asyncio.get_running_loop()
    for _ in range(20):
        resp = await asyncio.wait_for(lean.request("GET", upstream.origin + "/endless", headers={}), GUARD)
        async for _chunk in resp.chunks():
            break
        await resp.close()
        resp = await asyncio.wait_for(lean.request("POST", upstream.origin + "/echo", headers={}, json={}), GUARD)
        assert (await asyncio.wait_for(resp.json(), GUARD))["method"] == "POST"
    multi = lean._lean._acurl
    assert multi._lean_sockets.masks == {} and lean._lean._running == {}
    watched = _watching(loop, multi._lean_sockets)
    assert set(watched.values()) == {"parked"} and multi._sockfds == set(watched)
    assert all(fd in curl_lean._conn_fds and _open(fd) for fd in watched)


def test_only_a_connection_socket_read_last_is_parked_and_taken_up_again_without_a_call(monkeypatch):
    from clewdr_lite.upstream.curl_lean import _Sockets
    monkeypatch.setattr(curl_lean, "_conn_fds", {7})  # 7: a connection socket; 8: say, the resolver's
    monkeypatch.setattr(curl_lean, "_parked", {})
    multi = _Multi()
    sockets = _Sockets(multi)
    seen = []
    for fd, what in [(7, 1), (7, 4), (7, 1), (7, 4), (7, 2), (7, 4), (8, 1), (8, 4)]:
        multi.loop.calls.clear()
        sockets.want(fd, what)
        seen.append(list(multi.loop.calls))
    assert seen == [[("add_reader", 7)], [], [], [], [("remove_reader", 7), ("add_writer", 7)],
                    [("remove_writer", 7)], [("add_reader", 8)], [("remove_reader", 8)]]
    assert curl_lean._parked == {} and multi._sockfds == set()
    sockets.want(7, 1)
    sockets.want(7, 4)
    assert curl_lean._parked == {7: sockets} and multi._sockfds == {7}
    multi.loop.calls.clear()
    sockets.readable(7)  # readable while parked: it leaves, libcurl is not called
    assert multi.loop.calls == [("remove_reader", 7)] and curl_lean._parked == {} and multi._sockfds == set()


class FakeMulti:
    """What _on_timer and LeanCurl._run_due use of a multi handle (curl_cffi's AsyncCurl): its loop,
    its timer and process_data, whose runs are kept as (fd, what, loop time)."""

    _timer = None

    def __init__(self) -> None:
        from clewdr_lite.upstream import curl_lean
        if curl_lean._ffi is None:  # curl_cffi's ffi, kept by the first client
            curl_lean._cffi_constants()
        self.loop = asyncio.get_running_loop()
        self.ran: list[tuple[int, int, float]] = []
        self.handle = curl_lean._ffi.new_handle(self)  # what libcurl hands the timer callback

    def process_data(self, fd: int, what: int) -> None:
        self.ran.append((fd, what, self.loop.time()))


async def test_libcurls_timer_due_now_is_a_ready_callback_and_a_later_one_a_timer():
    from clewdr_lite.upstream import curl_lean
    on_timer = curl_lean._on_timer
    multi = FakeMulti()
    loop, ran, handle = multi.loop, multi.ran, multi.handle
    started = loop.time()
    on_timer(None, 50, handle)  # in 50 ms: a timer in the loop's heap
    timer = multi._lean_timer
    assert isinstance(timer, asyncio.TimerHandle) and multi._timer is None
    on_timer(None, 0, handle)  # now: a ready callback; the timer stays (running early does no harm)
    ready = multi._timer
    assert not isinstance(ready, asyncio.TimerHandle) and not timer.cancelled()
    on_timer(None, -1, handle)  # no timer wanted: socket_action still runs at once (it reads finished
    assert ready.cancelled() and multi._timer is not ready  # transfers), once: it replaces the ready one
    await asyncio.sleep(0)
    assert [(fd, what) for fd, what, _ in ran] == [(-1, 0)]
    await asyncio.sleep(0.1)
    assert [(fd, what) for fd, what, _ in ran] == [(-1, 0)] * 2 and ran[-1][2] - started >= 0.05
    assert multi._lean_timer is None


async def test_a_timer_armed_to_run_first_is_kept_and_a_run_timer_is_armed_again():
    """libcurl moves its timer on at every piece read: the timer armed stays while it is due no later
    than the one asked for (a run early only makes libcurl ask again); a sooner one replaces it."""
    from clewdr_lite.upstream import curl_lean
    on_timer = curl_lean._on_timer
    multi = FakeMulti()
    on_timer(None, 1000, multi.handle)
    first = multi._lean_timer
    on_timer(None, 1000, multi.handle)
    on_timer(None, 5000, multi.handle)
    on_timer(None, -1, multi.handle)  # a call ends: the timer stays for the next
    assert multi._lean_timer is first and not first.cancelled()
    on_timer(None, 20, multi.handle)  # sooner: replaces it
    second = multi._lean_timer
    assert first.cancelled() and second is not first and isinstance(second, asyncio.TimerHandle)
    await asyncio.sleep(0.06)
    assert [(fd, what) for fd, what, _ in multi.ran] == [(-1, 0)] * 2  # the -1 run, then the timer's
    on_timer(None, 1000, multi.handle)  # the last one ran: a new timer, not "kept"
    third = multi._lean_timer
    assert third is not second and isinstance(third, asyncio.TimerHandle) and not third.cancelled()


async def test_a_call_finished_by_a_read_makes_no_extra_run_of_libcurl(upstream, lean, monkeypatch):
    """libcurl's "no timer" comes as a read finishes the call; process_data reads the finished call
    right after, so no ready run of socket_action is added for it. Calls still complete one by one."""
    await (await lean.request("GET", upstream.origin + "/echo", headers={})).read()
    loop = asyncio.get_running_loop()
    runs, real = [], loop.call_soon

    def counting(callback, *args, **kwargs):
        if getattr(callback, "__name__", "") == "process_data":
            runs.append(args)
        return real(callback, *args, **kwargs)
    monkeypatch.setattr(loop, "call_soon", counting)
    for n in range(5):
        resp = await asyncio.wait_for(lean.request("POST", upstream.origin + "/echo", headers={}, json={"n": n}), GUARD)
        assert (await resp.json())["method"] == "POST"
    assert runs == []  # before: one a call


async def test_a_timer_that_outlives_its_multi_handle_does_nothing():
    from clewdr_lite.upstream import curl_lean
    multi = FakeMulti()
    curl_lean._on_timer(None, 10, multi.handle)
    multi._curlm = None  # AsyncCurl.close() cancels `_timer`, not this one
    await asyncio.sleep(0.05)
    assert multi.ran == [] and multi._lean_timer is None


async def test_a_run_left_for_a_closed_multi_handle_does_nothing_and_warns_nothing(upstream, lean):
    """The multi handle's runs are ours (one socket_action, then the finished transfers): a run
    that comes after the handle closed returns quietly, where curl_cffi's warns each time."""
    import warnings
    resp = await lean.request("POST", upstream.origin + "/echo", headers={}, json={"n": 1})
    assert (await resp.json())["method"] == "POST" and upstream.seen[-1][1] == b'{"n":1}'
    multi = lean._lean._acurl
    assert multi.process_data.__func__ is curl_lean._process_data
    await lean.close()
    assert multi._curlm is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert multi.process_data(-1, 0) is None


async def test_a_streamed_answer_asks_for_no_timer_per_piece(upstream, lean, monkeypatch):
    """No low-speed check runs in libcurl (a stall is the reader's idle deadline), so libcurl asks
    for its timer as a call starts (its connect timeout), not again at every piece it reads; and
    the loop gets a timer only when the one armed would run later than asked."""
    from clewdr_lite.upstream import curl_lean
    await (await lean.request("GET", upstream.origin + "/echo", headers={})).read()  # callbacks installed
    loop = asyncio.get_running_loop()
    armed, asks = [], []
    call_at, real = loop.call_at, curl_lean._on_timer

    def counting(when, callback, *args, **kwargs):
        if callback is curl_lean._timer_due:
            armed.append(when)
        return call_at(when, callback, *args, **kwargs)

    def asking(curlm, timeout_ms, clientp):
        asks.append(timeout_ms)
        return real(curlm, timeout_ms, clientp)
    monkeypatch.setattr(loop, "call_at", counting)
    curl_lean._ffi.def_extern(name="timer_function")(asking)
    try:
        resp = await lean.request("GET", upstream.origin + "/events", headers={})
        got = await resp.read()
    finally:
        curl_lean._ffi.def_extern(name="timer_function")(real)
    assert got == b"".join(b"data: %d\n\n" % n for n in range(30))
    assert len(asks) <= 4 and sum(1 for ask in asks if ask > 0) <= 2, asks  # before: 30 and more
    assert len(armed) <= 1, (armed, asks)


async def test_a_body_that_stalls_fails_on_the_readers_idle_deadline_and_ends_its_transfer(
        upstream, lean, monkeypatch):
    from clewdr_lite.upstream import http
    monkeypatch.setattr(http, "IDLE_TIMEOUT", 0.2)
    resp = await lean.request("GET", upstream.origin + "/late?after=5", headers={}, headers_timeout=0.1)
    assert resp.status == 200
    began = time.monotonic()
    with pytest.raises(aiohttp.ServerTimeoutError):
        await asyncio.wait_for(resp.read(), GUARD)
    assert 0.15 < time.monotonic() - began < 2
    await resp.close()
    await asyncio.sleep(0)
    assert lean._lean._running == {} and len(lean._lean._idle) == 1


async def test_a_handles_callback_contexts_are_set_once_and_point_at_each_call_in_turn(upstream, lean):
    """The header and body callbacks stay set on a handle: each call points curl_cffi's contexts at
    its own transfer, and a handle back in the idle list keeps no transfer alive."""
    from clewdr_lite.upstream import curl_lean
    contexts = []
    for n in range(3):
        resp = await lean.request("POST", upstream.origin + "/echo", headers={}, json={"n": n})
        assert (await resp.json())["method"] == "POST"
        await resp.close()
        (curl,) = lean._lean._idle
        contexts.append((curl._header_handle, curl._write_handle, *curl._lean_contexts))
    assert all(c == contexts[0] for c in contexts)  # the same handles and contexts served every call
    head, body = contexts[0][2:]
    assert body.callback is curl_lean._unused and body.exception is None
    if curl_heads.api() is None:  # a header callback too
        assert head.callback is curl_lean._unused and head.exception is None
    else:  # none: the headers come from libcurl's store
        assert head is None and contexts[0][0] is None


async def test_a_failing_callback_fails_its_call_and_the_next_call_on_the_handle_succeeds(upstream, lean, monkeypatch):
    """An exception in a callback is kept on the handle's context by curl_cffi's handler and fails
    that transfer; the next call clears it."""
    from clewdr_lite.upstream import curl_lean

    def broken(self, line: bytes) -> int:
        raise RuntimeError("callback broke")
    with monkeypatch.context() as patched:
        # the first callback of the answer: its first header line, or its first body piece when
        # the headers come from libcurl's store
        patched.setattr(curl_lean._Transfer, "on_body" if curl_heads.api() else "on_header", broken)
        with pytest.raises(aiohttp.ClientConnectionError, match="callback broke"):
            await asyncio.wait_for(lean.request("GET", upstream.origin + "/echo", headers={}), GUARD)
    resp = await asyncio.wait_for(lean.request("GET", upstream.origin + "/echo", headers={}), GUARD)
    assert (await resp.json())["method"] == "GET"
    await resp.close()
    assert len(lean._lean._idle) == 1  # the same handle, its context's exception cleared


async def test_curl_cffis_own_session_still_works_through_the_lean_write_callback(upstream, lean):
    """The write callback is every handle's once installed: curl_cffi's AsyncSession (uploads go
    through it) reads whole answers through it as before."""
    from curl_cffi.requests import AsyncSession
    resp = await lean.request("GET", upstream.origin + "/echo", headers={})  # installs the callbacks
    await resp.read()
    async with AsyncSession() as session:
        answer = await session.post(upstream.origin + "/echo", json={"x": 1})
        streamed = await session.get(upstream.origin + "/big", stream=True)
        got = b"".join([piece async for piece in streamed.aiter_content()])
    assert answer.status_code == 200 and answer.json()["method"] == "POST"
    assert len(got) == 64 * (body.HIGH_WATER // 16)


def test_the_write_callbacks_rare_answers_follow_curl_cffis_rules():
    from curl_cffi.curl import CURL_WRITEFUNC_ERROR, CurlCffiWarning

    from clewdr_lite.upstream import curl_lean
    assert curl_lean._write_rules(curl_lean.WRITEFUNC_PAUSE, 1, 10) == curl_lean.WRITEFUNC_PAUSE
    assert curl_lean._write_rules(CURL_WRITEFUNC_ERROR, 1, 10) == CURL_WRITEFUNC_ERROR
    with pytest.warns(CurlCffiWarning):
        assert curl_lean._write_rules(None, 1, 10) == 10  # taken as every byte, with curl_cffi's warning
    with pytest.warns(CurlCffiWarning):
        assert curl_lean._write_rules(3, 1, 10) == 10


async def test_a_timer_due_now_while_a_call_is_added_runs_in_that_turn_not_as_a_ready_handle():
    """Adding a handle, libcurl asks for its timer at once: the call runs it itself (the request
    goes out without a loop turn first); a failed add leaves it to a ready handle after all."""
    from clewdr_lite.upstream import curl_lean
    from clewdr_lite.upstream.curl_lean import LeanCurl
    multi = FakeMulti()
    handle = multi.handle

    def ran() -> list[tuple[int, int]]:
        return [(fd, what) for fd, what, _ in multi.ran]
    multi._lean_adding = True
    curl_lean._on_timer(None, 0, handle)
    multi._lean_adding = False
    assert multi._timer is None and multi._lean_due and ran() == []
    LeanCurl._run_due(multi)
    assert ran() == [(-1, 0)] and not multi._lean_due
    LeanCurl._run_due(multi)  # nothing due: nothing runs
    assert ran() == [(-1, 0)]

    multi._lean_adding = True
    curl_lean._on_timer(None, 0, handle)
    multi._lean_adding = False
    LeanCurl._run_due(multi, later=True)
    assert ran() == [(-1, 0)] and multi._timer is not None  # a ready handle, run on the next turn
    await asyncio.sleep(0)
    assert ran() == [(-1, 0), (-1, 0)]

    def refuses(fd: int, what: int) -> None:
        raise RuntimeError("Failed to perform, curl: (8) bad socket")
    multi.process_data = refuses  # the multi handle will not run: the call fails as a connection error
    multi._lean_due = True
    with pytest.raises(aiohttp.ClientConnectionError, match="could not start the call"):
        LeanCurl._run_due(multi)


async def test_a_call_goes_out_in_the_turn_it_is_made(upstream, lean):
    """The request leaves inside request()'s first step: after that one loop turn libcurl already
    waits to read the answer on the (reused) connection."""
    from clewdr_lite.upstream import curl_lean
    resp = await lean.request("GET", upstream.origin + "/echo", headers={})  # the handle and the connection
    await resp.read()
    sockets = lean._lean._acurl._lean_sockets
    assert sockets.masks == {}  # between calls libcurl watches nothing
    task = asyncio.ensure_future(lean.request("POST", upstream.origin + "/echo", headers={}, json={"a": 1}))
    await asyncio.sleep(0)  # one turn: the task runs up to its wait for the head
    assert list(sockets.masks.values()) == [curl_lean._POLL_IN]  # sent: the answer is awaited
    resp = await asyncio.wait_for(task, GUARD)
    assert (await resp.json())["method"] == "POST"


def test_libcurl_closing_a_parked_socket_takes_it_out_of_the_selector_first(monkeypatch):
    import socket
    from clewdr_lite.upstream.curl_lean import _on_close, _on_sockopt, _Sockets
    monkeypatch.setattr(curl_lean, "_conn_fds", set())
    monkeypatch.setattr(curl_lean, "_parked", {})
    ours, other = socket.socketpair()
    fd = ours.detach()
    try:
        assert _on_sockopt(None, fd, 0) == 0 and curl_lean._conn_fds == {fd}
        multi = _Multi()
        sockets = _Sockets(multi)
        sockets.want(fd, 1)
        sockets.want(fd, 4)
        assert curl_lean._parked == {fd: sockets}
        multi.loop.calls.clear()
        assert _on_close(None, fd) == 0
        assert multi.loop.calls == [("remove_reader", fd)] and curl_lean._parked == {} and curl_lean._conn_fds == set()
        assert not _open(fd)
        assert _on_close(None, fd) == 1  # closing fails: libcurl hears so, nothing is raised
    finally:
        other.close()
        if _open(fd):
            os.close(fd)
