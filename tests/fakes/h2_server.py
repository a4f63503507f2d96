"""An HTTP/2 upstream over TLS (hypercorn, ALPN h2) for the lean curl path: claude.ai speaks HTTP/2,
and several calls share one connection there, each a stream of its own.

Routes: `/echo` (method, HTTP version and the client's address as JSON), `/endless` (an SSE stream
that runs until the client goes; `gone` counts the streams the client left), `/big` (4 × HIGH_WATER
bytes as fast as the connection takes them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
from contextlib import asynccontextmanager

from hypercorn.asyncio import serve
from hypercorn.config import Config

BIG_PART = 64 * 1024


class H2App:
    """The ASGI app; its counters tell a test what the server saw."""

    def __init__(self, big_parts: int) -> None:
        self.big_parts = big_parts
        self.gone = 0
        self.gone_event = asyncio.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path == "/echo":
            await self._whole(send, json.dumps({"method": scope["method"], "http_version": scope["http_version"],
                                                "client": list(scope["client"])}).encode())
        elif path == "/endless":
            await self._endless(receive, send)
        elif path == "/big":
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream")]})
            for n in range(self.big_parts):
                await send({"type": "http.response.body", "body": bytes([n % 256]) * BIG_PART, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await self._whole(send, b"not found", 404)

    @staticmethod
    async def _whole(send, body: bytes, status: int = 200) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def _endless(self, receive, send) -> None:
        while (await receive()).get("more_body"):  # the request's body first
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        disconnect = asyncio.ensure_future(receive())  # the next message: the client went
        try:
            while not disconnect.done():
                await send({"type": "http.response.body", "body": b"data: x\n\n", "more_body": True})
                await asyncio.wait([disconnect], timeout=0.02)
        finally:
            if not disconnect.done():
                disconnect.cancel()
        self.gone += 1
        self.gone_event.set()


@asynccontextmanager
async def serve_h2(cert: str, key: str, big_parts: int = 16):
    """Run the app on 127.0.0.1 at a port the kernel picks; yield (origin, app)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) the listening socket
    config.certfile, config.keyfile = cert, key
    config.alpn_protocols = ["h2"]
    config.accesslog = config.errorlog = None
    config.graceful_timeout = 0.5
    app = H2App(big_parts)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    try:
        yield f"https://localhost:{port}", app
    finally:
        stop.set()
        # a connection the client is closing at the same moment (GOAWAY, then close_notify) can make
        # asyncio's TLS shutdown raise APPLICATION_DATA_AFTER_CLOSE_NOTIFY: the fake's teardown, not
        # a behaviour under test
        with contextlib.suppress(ssl.SSLError):
            await asyncio.wait_for(task, 10)
