"""CPU per streamed event when the upstream paces its events, as a model writes them.

    python3 tests/bench/paced.py                       # 50 events 2 ms apart, 32 streams at once
    python3 tests/bench/paced.py --pace 20 --streams 64 --seconds 10

run.py's "stream 50" case gets its 50 events in a burst, so a read takes many at once; a real
answer arrives event by event, and every event then costs a read, a wake-up and a write. Here the
fake upstream paces its events (`pace:N`, N ms apart) and an aiohttp client (in this process, not
counted) keeps the given number of streams open against the bare relay and clewdr-lite, taking
turns round by round; CPU comes from each server's /proc accounting.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.procs import ROOT, Server, cpu_seconds, free_port, start_upstream, target_argv  # noqa: E402
from tests.bench.run import ANTHROPIC, _messages, proxy_config  # noqa: E402
from tests.bench.upstream import CHUNKS  # noqa: E402

PATH = "/v1/messages"
EVENTS = CHUNKS + 5  # the deltas, and the start and end events around them


async def _drive(port: int, body: bytes, streams: int, seconds: float) -> int:
    """Streams read to their end, `streams` at a time, for `seconds`; how many were read."""
    done = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with session.post(f"http://127.0.0.1:{port}{PATH}", data=body, headers=ANTHROPIC) as resp:
                    assert resp.status == 200, resp.status
                    async for _ in resp.content.iter_any():
                        pass
                done += 1
        await asyncio.gather(*(one() for _ in range(streams)))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pace", type=int, default=2, help="ms between the upstream's events")
    parser.add_argument("--streams", type=int, default=32, help="streams open at once")
    parser.add_argument("--seconds", type=float, default=6.0, help="per target and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    body = _messages("bench-model", f"pace:{args.pace}", stream=True)
    folder = Path(tempfile.mkdtemp(prefix="clewdr-paced-"))
    upstream, origins = start_upstream(folder)
    servers = {}
    try:
        config = proxy_config(folder, origins["api"], origins["web"])
        for name, target in (("relay", "relay"), ("clewdr-lite", "proxy")):
            port = free_port()
            servers[name] = Server(name, target_argv(target, port, api=origins["api"], config=config), port,
                                   log=folder / f"{target}.log", cwd=ROOT)
            servers[name].start((PATH, body, ANTHROPIC))
        totals = {name: [0.0, 0] for name in servers}
        for _ in range(args.rounds):  # interleaved: a busy spell of the host falls on both
            for name, server in servers.items():
                before = cpu_seconds(server.pid)
                read = asyncio.run(_drive(server.port, body, args.streams, args.seconds))
                totals[name][0] += cpu_seconds(server.pid) - before
                totals[name][1] += read
        print(f"{EVENTS} events {args.pace} ms apart, {args.streams} streams at once, {args.rounds} rounds")
        print("| target | CPU ms per stream | CPU µs per event | streams |")
        print("|---|---|---|---|")
        per = {name: cpu / count for name, (cpu, count) in totals.items()}
        for name, (cpu, count) in totals.items():
            print(f"| {name} | {per[name] * 1000:.3f} | {per[name] / EVENTS * 1e6:.1f} | {count:,} |")
        print(f"| ratio | {per['clewdr-lite'] / per['relay']:.2f}× | | |")
    finally:
        for server in servers.values():
            server.stop()
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    main()
