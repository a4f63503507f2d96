"""Streaming checks: time to first token, chunk-by-chunk forwarding, many open streams at once."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import aiohttp

from tests.bench.procs import MIB, rss

DELTA = b"content_block_delta"


async def _first_token(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict) -> float:
    began = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 200, resp.status
        first = None
        async for chunk in resp.content.iter_any():
            if first is None and DELTA in chunk:
                first = time.perf_counter() - began
        return first


async def first_tokens_interleaved(urls: dict, body: bytes, headers: dict, rounds: int) -> dict:
    """Seconds from sending a streaming request to its first text delta, per target; the targets
    take turns request by request, so a busy moment of the machine falls on all of them."""
    sessions = {name: aiohttp.ClientSession() for name in urls}
    samples: dict = {name: [] for name in urls}
    try:
        for name, url in urls.items():
            for _ in range(20):  # warm the connections and the server's lazy imports
                await _first_token(sessions[name], url, body, headers)
        for _ in range(rounds):
            for name, url in urls.items():
                samples[name].append(await _first_token(sessions[name], url, body, headers))
    finally:
        for session in sessions.values():
            await session.close()
    return samples


async def paced_reads(url: str, body: bytes, headers: dict) -> tuple[int, float]:
    """Reads that carried a delta when the upstream paces them, and the spread of their arrival (ms).

    A relay that forwards chunks as they arrive gives one read per delta spread over the upstream's
    pacing; one that buffers gives a single read.
    """
    arrivals = []
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=headers) as resp:
            assert resp.status == 200, resp.status
            async for chunk in resp.content.iter_any():
                if DELTA in chunk:
                    arrivals.append(time.perf_counter())
    return len(arrivals), (arrivals[-1] - arrivals[0]) * 1000 if arrivals else 0.0


@dataclass
class Held:
    opened: list[int]       # streams open at each step
    rss_mib: list[float]    # the server's RSS at each step
    failures: int

    def slope_kib(self) -> float:
        """Least-squares KiB per open stream."""
        xs, ys = self.opened, [r * 1024 for r in self.rss_mib]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)

    def r_squared(self) -> float:
        """How well a straight line fits RSS against open streams (1 = exactly linear)."""
        return statistics.correlation(self.opened, self.rss_mib) ** 2


async def hold_streams(pid: int, url: str, body: bytes, headers: dict, total: int, steps: int) -> Held:
    """Open `total` streams in `steps` batches, each held after its first delta; RSS after each batch."""
    held = Held([0], [rss(pid) / MIB], 0)
    tasks: list[asyncio.Task] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one(started: asyncio.Future) -> None:
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    if resp.status != 200:
                        raise RuntimeError(resp.status)
                    async for chunk in resp.content.iter_any():
                        if DELTA in chunk and not started.done():
                            started.set_result(True)
            except (aiohttp.ClientError, RuntimeError) as exc:
                if not started.done():
                    started.set_exception(exc)

        per_step = total // steps
        for _ in range(steps):
            batch = [asyncio.get_running_loop().create_future() for _ in range(per_step)]
            tasks += [asyncio.create_task(one(fut)) for fut in batch]
            done = await asyncio.gather(*batch, return_exceptions=True)
            held.failures += sum(1 for d in done if d is not True)
            await asyncio.sleep(0.5)
            held.opened.append(held.opened[-1] + per_step)
            held.rss_mib.append(rss(pid) / MIB)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return held
