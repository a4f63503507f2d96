"""Shared plumbing for the fake upstreams: serve an aiohttp app on 127.0.0.1, port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
