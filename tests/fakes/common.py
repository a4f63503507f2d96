"""Shared plumbing for the fake upstreams: serve an aiohttp app on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from aiohttp import web

LOCALHOST = "127.0.0.1"


@asynccontextmanager
async def serve(app: web.Application, **runner_kwargs: Any) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1 at a free port; yield its origin, e.g. ``http://127.0.0.1:41234``."""
    runner = web.AppRunner(app, **runner_kwargs)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOCALHOST, 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


class FakeServer:
    """A fake upstream's lifecycle and stream control, shared by every fake.

    Subclasses provide `make_app()`, `prefix` and the stream knobs' attributes (`stall_before_headers`,
    `stall_after`, `cut_after`, `stream_stalled`, `stream_cancelled`, `_release` and the counters).
    """

    _stack: AsyncExitStack | None = None

    async def start(self) -> str:
        """Listen on 127.0.0.1 at a free port; return base_url."""
        self._stack = AsyncExitStack()
        # handler_cancellation: a client that goes away cancels the handler, so stalls notice it.
        origin = await self._stack.enter_async_context(serve(self.make_app(), handler_cancellation=True))
        self.base_url = self._base_for(origin)
        return self.base_url

    def _base_for(self, origin: str) -> str:
        """The base URL clients use (origin plus the fake's prefix)."""
        self.origin = origin
        return origin + self.prefix

    async def stop(self) -> None:
        """Release stalled streams and stop listening."""
        self.release()
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def release(self) -> None:
        """Let every stalled stream go on."""
        self._release.set()

    async def _stream(self, request: web.Request, chunks: list[bytes], headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(headers=headers)
        try:
            if self.stall_before_headers:
                await self._stall()
            await resp.prepare(request)
            for sent in range(len(chunks) + 1):  # one step past the end: stall or cut before EOF
                if sent == self.cut_after:
                    return self._cut(request, resp)
                if sent == self.stall_after:
                    await self._stall()
                if sent < len(chunks):
                    await self._write(resp, chunks[sent])
            await resp.write_eof()
        except asyncio.CancelledError:
            self._note_cancelled()
            raise
        except ConnectionResetError:
            self._note_cancelled()
            return resp
        self.completed_streams += 1
        return resp

    async def _write(self, resp: web.StreamResponse, chunk: bytes) -> None:
        await resp.write(chunk)
        # Yield between writes so chunks leave as separate sends, not one buffered burst.
        await asyncio.sleep(0)

    async def _stall(self) -> None:
        self.stalled_streams += 1
        self.stream_stalled.set()
        await self._release.wait()

    def _note_cancelled(self) -> None:
        self.cancelled_streams += 1
        self.stream_cancelled.set()

    def _cut(self, request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
        # Close mid-body: the chunked body never ends, which the client sees as a transport failure.
        self.cut_streams += 1
        if request.transport is not None:
            request.transport.close()
        return resp
