"""Shared fixtures: a fake claude.ai, the proxy in front of it, a fake clock, cookies."""

from __future__ import annotations

import hashlib
import socket
import string
from contextlib import AsyncExitStack

import pytest

from clewdr_lite.config import parse
from clewdr_lite.server.app import make_app
from tests.fakes.claude_web import FakeClaudeWeb
from tests.fakes.common import serve

PASSWORD = "test-password-" + "x" * 20
ADMIN_PASSWORD = "admin-password-" + "y" * 20
_ALPHABET = string.ascii_letters + string.digits


def make_cookie(seed: int | str) -> str:
    """A well-formed session cookie, deterministic per seed."""
    digest = hashlib.sha512(str(seed).encode()).digest() * 2
    body = "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:86])
    return f"sk-ant-sid01-{body}-{body[:6]}AA"


_LOCAL = ("127.", "::1", "localhost", "0.0.0.0")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test reaches the internet: resolving any non-loopback name fails loudly."""
    real = socket.getaddrinfo
    own = socket.gethostname()

    def guarded(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if name and name != own and not name.startswith(_LOCAL):
            raise OSError(f"test tried to reach {name}: tests must stay on loopback")
        return real(host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", guarded)


class FakeClock:
    """Wall-clock time the test moves by hand."""

    def __init__(self, now: float = 1_760_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake_web():
    async with FakeClaudeWeb() as fake:
        yield fake


class Proxy:
    """A running proxy: its base URL, its app and the state behind it."""

    def __init__(self, url: str, app) -> None:
        from clewdr_lite.server.app import STATE

        self.url = url
        self.app = app
        self.state = app[STATE]


@pytest.fixture
async def start_proxy(clock):
    """Factory: `await start_proxy(settings, cookies=[...], backend="aiohttp")` → Proxy."""
    async with AsyncExitStack() as stack:
        async def start(settings: dict | None = None, *, cookies=(), wasted=(), backend="aiohttp",
                        config_file=None) -> Proxy:
            doc = {"password": PASSWORD, "admin_password": ADMIN_PASSWORD, "max_retries": 5,
                   "cookie_array": [c if isinstance(c, dict) else {"cookie": c} for c in cookies],
                   "wasted_cookie": list(wasted), **(settings or {})}
            config, _ = parse(doc, {})
            async def sleep(seconds: float) -> None:  # waits move the fake clock, never real time
                clock.now += seconds

            app = make_app(config, config_file=config_file, clock=clock, http_backend=backend,
                           rand=lambda: 0.0, sleep=sleep)
            url = await stack.enter_async_context(serve(app, handler_cancellation=True))
            return Proxy(url, app)

        yield start


@pytest.fixture
def canned(aiohttp_server):
    """Factory: `await canned(body, content_type)` → the origin of a server that answers every POST
    with that body and status 200 (a captive portal's page, a compatible provider's odd answer);
    with `stream_body`, a request whose JSON asks for a stream gets that event stream instead."""
    from aiohttp import web

    async def start(body: bytes | str, content_type: str = "text/html", *, stream_body: bytes | None = None) -> str:
        async def answer(request: web.Request) -> web.Response:
            if stream_body is not None and (await request.json()).get("stream"):
                return web.Response(body=stream_body, content_type="text/event-stream")
            return web.Response(body=body.encode() if isinstance(body, str) else body, content_type=content_type)

        app = web.Application()
        app.router.add_post("/{tail:.*}", answer)
        server = await aiohttp_server(app)
        return f"http://127.0.0.1:{server.port}"
    return start
