"""What the pieces of a claude.ai answer cost: the claude.ai web case with the fake claude.ai writing
a completion's events one write each (as claude.ai does, so each arrives as a piece of its own) and
with all of them in one write.

    python3 tests/bench/pieces.py                      # 16 connections, 3 rounds of 6 s per target
    python3 tests/bench/pieces.py --conns 64 --seconds 10

Starts the two fake upstreams (tests/bench/upstream.py, and with --one-write), the bare relay (the
reference of every ratio, on the pass-through case), the lean floor of floor.py and clewdr-lite on
each, then runs wrk's load (aiohttp's without wrk) on each target in turn, round after round. CPU
per request comes from each server's /proc accounting; the difference between the two upstreams,
spread over the pieces that one write saves, is what a piece costs the process that reads it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench import load  # noqa: E402
from tests.bench.procs import ROOT, Server, cpu_seconds, free_port, start_upstream, target_argv  # noqa: E402
from tests.bench.run import CASES, proxy_config  # noqa: E402
from tests.bench.upstream import WEB_REPLY, BenchClaudeWeb  # noqa: E402
from tests.fakes.claude_web_state import Conversation  # noqa: E402
from tests.fakes.claude_web_wire import Reply  # noqa: E402


def events_per_answer() -> int:
    """How many events (one write each) the fake claude.ai's answer to the benchmark holds: the
    fake's own chunks for it (a conversation without thinking, no tools)."""
    conversation = Conversation(uuid="", org="", cookie="", name="", is_temporary=True, settings={})
    return len(BenchClaudeWeb()._messages_chunks({}, conversation, Reply(text=WEB_REPLY)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0, help="per target and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="clewdr-pieces-"))
    upstreams, servers = {}, {}
    try:
        for shape, options in (("events", ()), ("one", ("--one-write",))):
            upstreams[shape] = start_upstream(folder, *options)
        for shape, (_, origins) in upstreams.items():
            (folder / shape).mkdir()
            config = proxy_config(folder / shape, origins["api"], origins["web"])
            targets = (("relay", "pass-through"),) if shape == "events" else ()
            for target, case in (*targets, ("web", "claude.ai web"), ("proxy", "claude.ai web")):
                port = free_port()
                server = Server(f"{target} {shape}", target_argv(target, port, api=origins["api"], config=config,
                                                                 web=origins["web"]),
                                port, log=folder / f"{target}-{shape}.log", cwd=ROOT)
                server.start(CASES[case])
                servers[(target, shape)] = (server, case)
        totals = {key: [0.0, 0] for key in servers}
        for key, (server, case) in servers.items():  # warm: connections, lazy imports
            path, body, headers = CASES[case]
            load.run(f"http://127.0.0.1:{server.port}{path}", body, headers, args.conns, 1.0)
        for _ in range(args.rounds):  # interleaved: a busy spell of the host falls on all of them
            for key, (server, case) in servers.items():
                path, body, headers = CASES[case]
                before = cpu_seconds(server.pid)
                done = load.run(f"http://127.0.0.1:{server.port}{path}", body, headers, args.conns, args.seconds)
                if done.failures:
                    raise RuntimeError(f"{server.name}: {done.failures} failed requests")
                totals[key][0] += cpu_seconds(server.pid) - before
                totals[key][1] += done.requests
        us = {key: cpu / count * 1e6 for key, (cpu, count) in totals.items()}
        relay = us[("relay", "events")]
        saved = events_per_answer() - 1
        print(f"{args.conns} connections, {args.rounds} rounds of {args.seconds:g} s; the completion's "
              f"{saved + 1} events one write each, or all in one; CPU from /proc")
        print("| target | CPU µs a request, one write an event | all in one write | a piece costs |")
        print("|---|---|---|---|")
        print(f"| bare relay (pass-through) | {relay:.0f} (1.00×) | | |")
        for target, label in (("web", "floor: the two calls, lean curl"), ("proxy", "clewdr-lite")):
            many, one = us[(target, "events")], us[(target, "one")]
            print(f"| {label} | {many:.0f} ({many / relay:.2f}×) | {one:.0f} ({one / relay:.2f}×) "
                  f"| {(many - one) / saved:.1f} µs |")
    finally:
        for server, _ in servers.values():
            server.stop()
        for process, _ in upstreams.values():
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
