"""The upstream clients alone: aiohttp's ClientSession against the lean client (upstream/wire.py),
and curl_cffi's AsyncSession (as clewdr-lite used it for claude.ai) against the lean curl path
(upstream/curl_lean.py), both impersonating Chrome.

Each sends the same small Anthropic request, one after another, to the benchmark's fake upstream
(its own process) and reads the answer, streamed for the curl pair as claude.ai's completions are;
the figure is this process's CPU per request (all of it: the client, the event loop and the socket
calls), taken in turn over a few rounds. The curl pair needs curl_cffi (0.16 or later).

    python3 tests/bench/client.py [--requests 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import aiohttp  # noqa: E402

from clewdr_lite.upstream import http  # noqa: E402
from tests.bench.procs import python  # noqa: E402

BODY = json.dumps({"model": "bench-model", "max_tokens": 256,
                   "messages": [{"role": "user", "content": "Hello, how are you?"}]}).encode()
HEADERS = {"Content-Type": "application/json", "x-api-key": "k", "anthropic-version": "2023-06-01"}
WARM = 200


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _per_request(send, count: int) -> float:
    for _ in range(WARM):
        await send()
    started = _cpu()
    for _ in range(count):
        await send()
    return (_cpu() - started) / count * 1e6


async def aiohttp_session(url: str, count: int) -> float:
    async with aiohttp.ClientSession() as session:
        async def send():
            async with session.post(url, data=BODY, headers=HEADERS) as resp:
                assert resp.status == 200
                await resp.read()
        return await _per_request(send, count)


async def lean(url: str, count: int) -> float:
    client = http.AiohttpClient()  # direct, no uploads: the lean path
    try:
        async def send():
            resp = await client.request("POST", url, data=BODY, headers=HEADERS)
            assert resp.status == 200
            await resp.read()
        return await _per_request(send, count)
    finally:
        await client.close()


async def curl_session(url: str, count: int) -> float:
    from curl_cffi.requests import AsyncSession
    session = AsyncSession(max_clients=64, impersonate="chrome", discard_cookies=True)
    try:
        async def send():
            resp = await session.request("POST", url, data=BODY, headers=HEADERS, stream=True,
                                         allow_redirects=False, timeout=(15.0, 300.0), impersonate="chrome")
            assert resp.status_code == 200
            async for _ in resp.aiter_content():
                pass
        return await _per_request(send, count)
    finally:
        await session.close()


async def curl_lean(url: str, count: int) -> float:
    client = http.CurlClient()
    try:
        async def send():
            resp = await client.request("POST", url, data=BODY, headers=HEADERS)
            assert resp.status == 200
            async for _ in resp.chunks():
                pass
            await resp.close()  # as clewdr-lite does: the handle goes back for the next call
        return await _per_request(send, count)
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    upstream = subprocess.Popen(python(str(ROOT / "tests/bench/upstream.py")), stdout=subprocess.PIPE, cwd=ROOT)
    try:
        url = json.loads(upstream.stdout.readline())["api"] + "/v1/messages"
        clients = {"aiohttp ClientSession": aiohttp_session, "lean client (wire.py)": lean}
        if http.curl_available():
            clients.update({"curl_cffi AsyncSession, Chrome": curl_session,
                            "lean curl path (curl_lean.py), Chrome": curl_lean})
        figures: dict = {name: [] for name in clients}
        for _ in range(args.rounds):
            for name, run in clients.items():
                figures[name].append(asyncio.run(run(url, args.requests)))
    finally:
        upstream.terminate()
        upstream.wait()
    print("| client | CPU µs per request (median) | rounds |\n|---|---|---|")
    for name, values in figures.items():
        print(f"| {name} | {statistics.median(values):.0f} | {', '.join(f'{v:.0f}' for v in values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
