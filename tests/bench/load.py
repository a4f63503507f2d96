"""Load: `wrk` when installed, an aiohttp load generator otherwise. Both give requests, req/s, p50/p99."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp


@dataclass
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int  # non-2xx answers and socket errors

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _lua(body: bytes, headers: dict) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{body.decode()}]==]"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    return "\n".join(lines) + "\n"


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNIT[unit]


def parse_wrk(out: str) -> Load:
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    percentile = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failures = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return Load(int(done.group(1)), _ms(done.group(2) + done.group(3)) / 1000,
                _ms(percentile["50"]), _ms(percentile["99"]), failures)


def wrk(url: str, body: bytes, headers: dict, conns: int, seconds: float) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(body, headers))
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s",
                              "-s", script.name, url], capture_output=True, text=True, check=True).stdout
    finally:
        Path(script.name).unlink()
    return parse_wrk(out)


async def _aiohttp_load(url: str, body: bytes, headers: dict, conns: int, seconds: float) -> Load:
    latencies: list[float] = []
    failures = 0
    end = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while time.perf_counter() < end:
            began = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status < 400
            except aiohttp.ClientError:
                ok = False
            latencies.append(time.perf_counter() - began)
            failures += not ok

    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(conns)))
        took = time.perf_counter() - began
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return Load(len(latencies), took, pick(0.50), pick(0.99), failures)


def run(url: str, body: bytes, headers: dict, conns: int, seconds: float) -> Load:
    """Drive `conns` keep-alive connections posting `body` for `seconds`."""
    if shutil.which("wrk"):
        return wrk(url, body, headers, conns, seconds)
    return asyncio.run(_aiohttp_load(url, body, headers, conns, seconds))


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "aiohttp"
