"""The upstream client alone: aiohttp's ClientSession against the lean client (upstream/wire.py).

Both send the same small Anthropic request, one after another, to the benchmark's fake upstream
(its own process) and read the answer; the figure is this process's CPU per request (all of it:
the client, the event loop and the socket calls), taken in turn over a few rounds.

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    upstream = subprocess.Popen(python(str(ROOT / "tests/bench/upstream.py")), stdout=subprocess.PIPE, cwd=ROOT)
    try:
        url = json.loads(upstream.stdout.readline())["api"] + "/v1/messages"
        figures: dict = {"aiohttp ClientSession": [], "lean client (wire.py)": []}
        for _ in range(args.rounds):
            figures["aiohttp ClientSession"].append(asyncio.run(aiohttp_session(url, args.requests)))
            figures["lean client (wire.py)"].append(asyncio.run(lean(url, args.requests)))
    finally:
        upstream.terminate()
        upstream.wait()
    print("| client | CPU µs per request (median) | rounds |\n|---|---|---|")
    for name, values in figures.items():
        print(f"| {name} | {statistics.median(values):.0f} | {', '.join(f'{v:.0f}' for v in values)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
