"""Outbound proxy (claude-web.md §2): both client backends really relay through HTTP and SOCKS5."""

from __future__ import annotations

import asyncio
import sys
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from clewdr_lite.upstream.http import env_proxy, make_client
from tests.fakes.common import serve
from tests.fakes.forward_proxy import ForwardProxy
from tests.fakes.tls import tls_files

STREAM_PARTS = (b"first\n", b"second\n", b"third\n")
GUARD = 10.0  # seconds: only turns a hang (a buffering proxy) into a failure, never paces a test
RELEASE = web.AppKey("release", asyncio.Event)


# ---- the target -----------------------------------------------------------------------------

async def _json(request: web.Request) -> web.Response:
    return web.json_response({"method": request.method, "path": request.path_qs,
                              "proxy_auth": request.headers.get("Proxy-Authorization")})


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"got": await request.json(), "content_type": request.content_type})


async def _stream(request: web.Request) -> web.StreamResponse:
    # The rest is held back until the client has seen the first part: a relay that buffers hangs.
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    await resp.write(STREAM_PARTS[0])
    await request.app[RELEASE].wait()
    for part in STREAM_PARTS[1:]:
        await resp.write(part)
    await resp.write_eof()
    return resp


def target_app() -> web.Application:
    app = web.Application()
    app[RELEASE] = asyncio.Event()
    app.router.add_get("/json", _json)
    app.router.add_post("/echo", _echo)
    app.router.add_get("/stream", _stream)
    return app


@asynccontextmanager
async def serve_on(app: web.Application, host: str, tls: ssl.SSLContext | None = None
                   ) -> AsyncIterator[str]:
    """Like `serve`, but on any loopback host and optionally over TLS."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0, ssl_context=tls)
        await site.start()
        port = runner.addresses[0][1]
        netloc = f"[{host}]" if ":" in host else host
        yield f"{'https' if tls else 'http'}://{netloc}:{port}"
    finally:
        runner.app[RELEASE].set()  # never leave a streaming handler waiting at cleanup
        await runner.cleanup()


class Target:
    """A running target: its origin and the event that lets `/stream` finish."""

    def __init__(self, origin: str, app: web.Application) -> None:
        self.origin = origin
        self.release = app[RELEASE]
        self.host_port = origin.split("://", 1)[1]


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    app = target_app()
    async with serve(app) as origin:
        yield Target(origin, app)
        app[RELEASE].set()


@pytest.fixture
async def target6() -> AsyncIterator[Target]:
    app = target_app()
    async with serve_on(app, "::1") as origin:
        yield Target(origin, app)


@pytest.fixture
async def tls_target(tmp_path, monkeypatch) -> AsyncIterator[Target]:
    """An HTTPS target whose CA both backends trust: how claude.ai traffic meets a proxy (CONNECT)."""
    ca, cert, key = tls_files(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", ca)  # read by http.ssl_context() (aiohttp backend)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # read by curl_cffi's session, in order
        monkeypatch.setenv(name, ca)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    app = target_app()
    async with serve_on(app, "127.0.0.1", tls) as origin:
        yield Target(origin, app)


# ---- helpers --------------------------------------------------------------------------------

@asynccontextmanager
async def client(backend: str, proxy: str | None):
    """A client from our layer, always closed."""
    c = make_client(backend, proxy)
    assert c.backend == backend
    try:
        yield c
    finally:
        await c.close()


async def get_json(c, url: str, expect: int = 200):
    resp = await c.request("GET", url)
    try:
        assert resp.status == expect
        return await resp.json() if expect == 200 else await resp.read()
    finally:
        await resp.close()


async def get_stream(c, target: Target) -> bytes:
    async def run() -> bytes:
        resp = await c.request("GET", f"{target.origin}/stream")
        try:
            assert resp.status == 200
            got = b""
            async for chunk in resp.chunks():
                got += chunk
                if got == STREAM_PARTS[0]:
                    target.release.set()
            return got
        finally:
            await resp.close()

    return await asyncio.wait_for(run(), GUARD)


async def roundtrip(c, target: Target) -> None:
    """Plain JSON, a JSON body, and a held-back stream all arrive intact."""
    assert await get_json(c, f"{target.origin}/json?q=1") == {
        "method": "GET", "path": "/json?q=1", "proxy_auth": None}
    resp = await c.request("POST", f"{target.origin}/echo", json={"hi": "ünïcode"})
    try:
        assert resp.status == 200
        assert (await resp.json())["got"] == {"hi": "ünïcode"}
    finally:
        await resp.close()
    assert await get_stream(c, target) == b"".join(STREAM_PARTS)


def absolute_form(target: Target) -> list[tuple[str, str]]:
    return [("GET", f"{target.origin}/json?q=1"), ("POST", f"{target.origin}/echo"),
            ("GET", f"{target.origin}/stream")]


def port_of(target: Target) -> int:
    return int(target.origin.rsplit(":", 1)[1])


# ---- HTTP proxy -----------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["aiohttp", "curl_cffi"])
@pytest.mark.parametrize("creds", [None, ("user", "p@ss:w/rd")], ids=["open", "basic-auth"])
async def test_http_proxy_relays_plain_and_streamed(target, backend, creds):
    user, password = creds or (None, None)
    async with ForwardProxy("http", user, password) as proxy, client(backend, proxy.url) as c:
        await roundtrip(c, target)
    assert proxy.requests == absolute_form(target)
    assert proxy.auth_failures == 0


@pytest.mark.parametrize("backend", [
    "aiohttp",
    "curl_cffi",
])
async def test_http_proxy_non_ascii_password_is_utf8(target, backend):
    async with ForwardProxy("http", "üser", "pässwörd") as proxy, client(backend, proxy.url) as c:
        await get_json(c, f"{target.origin}/json")
    assert (proxy.requests, proxy.auth_failures) == ([("GET", f"{target.origin}/json")], 0)


@pytest.mark.parametrize("backend", ["aiohttp", "curl_cffi"])
async def test_http_proxy_wrong_password_is_407(target, backend):
    # An absolute-form request's 407 is an ordinary response for both backends, not an exception.
    async with ForwardProxy("http", "user", "right") as proxy:
        wrong = proxy.url.replace(":right@", ":wrong@")
        async with client(backend, wrong) as c:
            await get_json(c, f"{target.origin}/json", expect=407)
    assert proxy.requests == []
    assert proxy.auth_failures == 1


@pytest.mark.parametrize("backend", ["aiohttp", "curl_cffi"])
@pytest.mark.parametrize("creds", [None, ("user", "pass")], ids=["open", "basic-auth"])
async def test_http_proxy_tunnels_https_with_connect(tls_target, backend, creds):
    user, password = creds or (None, None)
    async with ForwardProxy("http", user, password) as proxy, client(backend, proxy.url) as c:
        await roundtrip(c, tls_target)
    # Keep-alive inside the tunnel may carry all three requests over one CONNECT, or not.
    assert proxy.requests
    assert set(proxy.requests) == {("CONNECT", tls_target.host_port)}
    assert proxy.auth_failures == 0


@pytest.mark.parametrize("backend,error", [
    # aiohttp reports a refused CONNECT as a response error, curl_cffi (wrapped) as a connection
    # error: callers must catch aiohttp.ClientError (http.TRANSPORT_ERRORS) to cover both.
    ("aiohttp", aiohttp.ClientHttpProxyError),
    ("curl_cffi", aiohttp.ClientConnectionError),
])
async def test_http_proxy_wrong_password_on_tunnel_raises(tls_target, backend, error):
    async with ForwardProxy("http", "user", "right") as proxy:
        async with client(backend, proxy.url.replace(":right@", ":wrong@")) as c:
            with pytest.raises(error):
                await c.request("GET", f"{tls_target.origin}/json")
    assert (proxy.requests, proxy.auth_failures) == ([], 1)


@pytest.mark.parametrize("backend", ["aiohttp", "curl_cffi"])
async def test_http_proxy_refuses_non_loopback_targets(backend):
    # 192.0.2.1 is TEST-NET-1: the fake answers 403 and never dials it.
    async with ForwardProxy("http") as proxy, client(backend, proxy.url) as c:
        await get_json(c, "http://192.0.2.1:8080/json", expect=403)
    assert proxy.requests == []
    assert proxy.refused == [("GET", "http://192.0.2.1:8080/json")]


# ---- SOCKS5 proxy (curl_cffi) ---------------------------------------------------------------

@pytest.mark.parametrize("creds", [None, ("user", "p@ss:wörd")], ids=["open", "user-pass"])
@pytest.mark.parametrize("scheme,host,atyp_host", [
    ("socks5", "127.0.0.1", "127.0.0.1"),  # curl resolves: IPv4 address type
    ("socks5h", "localhost", "localhost"),  # the proxy resolves: domain address type
])
async def test_curl_through_socks5(target, creds, scheme, host, atyp_host):
    user, password = creds or (None, None)
    async with ForwardProxy("socks5", user, password) as proxy:
        url = proxy.url.replace("socks5://", f"{scheme}://", 1)
        async with client("curl_cffi", url) as c:
            target.origin = target.origin.replace("127.0.0.1", host)
            await roundtrip(c, target)
    assert proxy.requests
    assert set(proxy.requests) == {(atyp_host, port_of(target))}
    assert proxy.auth_failures == 0


async def test_curl_through_socks5_ipv6(target6):
    async with ForwardProxy("socks5") as proxy, client("curl_cffi", proxy.url) as c:
        await roundtrip(c, target6)
    assert set(proxy.requests) == {("::1", port_of(target6))}


async def test_curl_through_socks5_to_https(tls_target):
    async with ForwardProxy("socks5", "user", "pass") as proxy, \
            client("curl_cffi", proxy.url) as c:
        await roundtrip(c, tls_target)
    assert set(proxy.requests) == {("127.0.0.1", port_of(tls_target))}


async def test_curl_socks5_wrong_password_raises_connection_error(target):
    # CurlClient turns curl's RequestException into aiohttp.ClientConnectionError.
    async with ForwardProxy("socks5", "user", "right") as proxy:
        async with client("curl_cffi", proxy.url.replace(":right@", ":wrong@")) as c:
            with pytest.raises(aiohttp.ClientConnectionError):
                await c.request("GET", f"{target.origin}/json")
    assert (proxy.requests, proxy.auth_failures) == ([], 1)


async def test_curl_socks5_without_credentials_against_auth_proxy_raises(target):
    async with ForwardProxy("socks5", "user", "right") as proxy:
        bare = proxy.url.replace("user:right@", "")
        async with client("curl_cffi", bare) as c:
            with pytest.raises(aiohttp.ClientConnectionError):
                await c.request("GET", f"{target.origin}/json")
    assert proxy.requests == []


async def test_socks5_refuses_non_loopback_targets():
    async with ForwardProxy("socks5") as proxy, client("curl_cffi", proxy.url) as c:
        with pytest.raises(aiohttp.ClientConnectionError):
            await c.request("GET", "http://192.0.2.1:8080/json")
    assert (proxy.requests, proxy.refused) == ([], [("192.0.2.1", 8080)])


# ---- SOCKS with the aiohttp backend ---------------------------------------------------------

@pytest.fixture
def no_aiohttp_socks(monkeypatch):
    """Make `import aiohttp_socks` fail, as on a machine without the [socks] extra."""
    monkeypatch.setitem(sys.modules, "aiohttp_socks", None)


async def test_aiohttp_socks_without_extra_logs_and_connects_directly(target, caplog, no_aiohttp_socks):
    caplog.set_level(logging.ERROR, logger="clewdr_lite.http")
    async with ForwardProxy("socks5", "user", "secret") as proxy, \
            client("aiohttp", proxy.url) as c:
        assert (await get_json(c, f"{target.origin}/json"))["path"] == "/json"
    assert proxy.requests == []  # direct, not through the proxy
    [record] = [r for r in caplog.records if r.name == "clewdr_lite.http"]
    assert record.levelno == logging.ERROR
    assert "[socks] extra (aiohttp-socks)" in record.getMessage()
    assert "connecting directly" in record.getMessage()
    assert proxy.url.split("@")[-1] in record.getMessage()
    assert "secret" not in caplog.text  # credentials are not logged


async def test_aiohttp_socks_without_extra_keeps_connecting_directly(target, caplog, no_aiohttp_socks):
    caplog.set_level(logging.ERROR, logger="clewdr_lite.http")
    async with ForwardProxy("socks5") as proxy, client("aiohttp", proxy.url) as c:
        await get_json(c, f"{target.origin}/json")
        await get_json(c, f"{target.origin}/json")
    assert proxy.requests == []
    assert len([r for r in caplog.records if r.name == "clewdr_lite.http"]) == 1


@pytest.mark.parametrize("creds", [None, ("user", "pass")], ids=["open", "user-pass"])
async def test_aiohttp_through_socks5_with_extra(target, creds):
    user, password = creds or (None, None)
    async with ForwardProxy("socks5", user, password) as proxy, client("aiohttp", proxy.url) as c:
        await roundtrip(c, target)
    assert set(proxy.requests) == {("127.0.0.1", port_of(target))}


# ---- proxy from the environment -------------------------------------------------------------

@pytest.mark.parametrize("environ,expected", [
    ({}, None),
    ({"HTTPS_PROXY": "http://a:1"}, "http://a:1"),
    ({"https_proxy": "http://a:1"}, "http://a:1"),
    ({"ALL_PROXY": "socks5://b:2"}, "socks5://b:2"),
    ({"all_proxy": "socks5://b:2"}, "socks5://b:2"),
    ({"ALL_PROXY": "socks5://b:2", "HTTPS_PROXY": "http://a:1"}, "http://a:1"),
    ({"all_proxy": "socks5://b:2", "https_proxy": "http://a:1"}, "http://a:1"),
    ({"ALL_PROXY": "socks5://b:2", "https_proxy": "http://a:1"}, "http://a:1"),
    ({"HTTPS_PROXY": "", "ALL_PROXY": "socks5://b:2"}, "socks5://b:2"),  # empty means unset
    ({"HTTP_PROXY": "http://c:3", "http_proxy": "http://c:3"}, None),  # plain-http var not used
])
def test_env_proxy_order(environ, expected):
    assert env_proxy(environ) == expected
