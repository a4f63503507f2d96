"""Where a request's CPU goes: CPU per thread, and py-spy samples of the event-loop thread under load.

    python3 tests/bench/profile.py                         # pass-through, 16 connections, 10 s
    python3 tests/bench/profile.py "claude.ai web" --top 40
    python3 tests/bench/profile.py conversion --target relay
    python3 tests/bench/profile.py "claude.ai web" --target web      # a floor of floor.py

Starts the fake upstream and clewdr-lite (or the bare relay) as run.py does, drives one case with
wrk (the aiohttp load generator otherwise) and records the server with py-spy (`pip install
py-spy`; it reads the server's memory, so it needs ptrace rights: root, or
kernel.yama.ptrace_scope = 0). Prints the CPU per request over the load and per thread (from
/proc), then for the event-loop thread the share of its samples per package (self), and the
functions with the most samples inclusive (on the stack) and self (at its top). py-spy keeps only
samples of busy threads, but its idle detection is approximate (some `EpollSelector.select`
samples are the loop waiting; helper threads look busier than they are, hence /proc for threads).
py-spy pauses the process for each sample, so the CPU and req/s printed here are worse than
run.py's: take figures from there.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench import load  # noqa: E402
from tests.bench.procs import (FLOOR_KINDS, ROOT, Server, cpu_seconds, free_port, start_upstream,  # noqa: E402
                               target_argv, thread_cpu)

LOOP_THREAD = "MainThread"


@dataclass
class Profile:
    """py-spy's raw samples of the event-loop thread, summed per function (inclusive and self) and
    per package (self)."""

    loop_samples: int = 0
    names: dict[int, str] = field(default_factory=dict)  # OS thread id → Python thread name
    inclusive: collections.Counter = field(default_factory=collections.Counter)
    own: collections.Counter = field(default_factory=collections.Counter)
    packages: collections.Counter = field(default_factory=collections.Counter)


def function_of(frame: str) -> str:
    """`name (path:line)` → `name (path)`: a function's samples, whatever line they were on."""
    name, _, where = frame.rpartition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if name else frame


def package_of(frame: str) -> str:
    """The package a frame's file belongs to: `clewdr_lite/server` for clewdr-lite's subpackages, the
    top folder for libraries (`aiohttp`, `asyncio`), the module for a single-file one (`selectors.py`)."""
    path = frame.rpartition(" (")[2].rsplit(":", 1)[0]
    parts = path.split("/")
    if parts[0] == "clewdr_lite" and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0]


def parse_raw(lines) -> Profile:
    """Sum py-spy's `--format raw --threads` lines: `thread (tid): name;frame;…;frame count`."""
    profile = Profile()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        tid, _, name = thread.partition(": ")
        if tid.startswith("thread (") and tid[8:-1].isdigit():
            profile.names[int(tid[8:-1])] = name
        if name != LOOP_THREAD or not frames:
            continue
        samples = int(count)
        profile.loop_samples += samples
        for function in dict.fromkeys(map(function_of, frames)):  # a recursive function counts once
            profile.inclusive[function] += samples
        profile.own[function_of(frames[-1])] += samples
        profile.packages[package_of(frames[-1])] += samples
    return profile


def report(profile: Profile, top: int) -> str:
    """The event-loop thread's tables: packages, top functions inclusive and self."""
    loop = profile.loop_samples or 1
    out = [f"event-loop thread ({LOOP_THREAD}, {profile.loop_samples} busy samples), self samples per package:",
           "", "| package | share |", "|---|---|"]
    out += [f"| {name} | {100 * n / loop:.1f} % |" for name, n in profile.packages.most_common(top)]
    # the frames under (nearly) every sample (runpy, cli.main, the loop's _run_once …) tell nothing
    below_root = collections.Counter({name: n for name, n in profile.inclusive.items() if n < 0.99 * loop})
    for title, counter in (("inclusive (on the stack)", below_root), ("self (at the top)", profile.own)):
        out += ["", f"event-loop thread, functions by samples {title}:", "", "| share | function |", "|---|---|"]
        out += [f"| {100 * n / loop:.1f} % | `{name}` |" for name, n in counter.most_common(top)]
    return "\n".join(out)


def thread_table(before: dict[int, float], after: dict[int, float], requests: int, names: dict[int, str]) -> str:
    """CPU per request of each thread (by id, named as py-spy saw it) over the load, from /proc."""
    spent = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    out = ["| thread | CPU µs/request |", "|---|---|"]
    out += [f"| {names.get(tid, f'thread {tid}')} | {seconds / requests * 1e6:.1f} |" for tid, seconds in
            sorted(spent.items(), key=lambda item: -item[1]) if seconds > 0]
    return "\n".join(out)


def record(pid: int, seconds: float, rate: int, raw: Path) -> None:
    done = subprocess.run(["py-spy", "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                           "--rate", str(rate), "--format", "raw", "--threads",
                           "--output", str(raw)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"py-spy failed ({done.returncode}): {done.stderr.strip()[-1000:]}")


def main() -> int:
    from tests.bench.run import CASES, proxy_config  # the benchmark's cases and proxy configuration

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", nargs="?", default="pass-through", choices=[c for c in CASES if c != "direct"])
    parser.add_argument("--target", choices=("proxy", "relay", *FLOOR_KINDS), default="proxy",
                        help="clewdr-lite, the bare relay, or a floor of floor.py")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the recording")
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw samples here")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy not found: pip install py-spy")

    folder = Path(tempfile.mkdtemp(prefix="clewdr-profile-"))
    raw = args.raw or folder / "samples.txt"
    upstream, origins = start_upstream(folder)
    server = None
    try:
        port = free_port()
        argv = target_argv(args.target, port, api=origins["api"],
                           config=proxy_config(folder, origins["api"], origins["web"]), web=origins["web"])
        server = Server(args.target, argv, port, log=folder / "server.log", cwd=ROOT)
        path, body, headers = CASES[args.case]
        server.start((path, body, headers))
        url = f"http://127.0.0.1:{port}{path}"
        load.run(url, body, headers, args.conns, 2.0)  # warm: connections, lazy imports, caches
        result = {}
        driver = threading.Thread(target=lambda: result.update(load=load.run(url, body, headers, args.conns,
                                                                             args.seconds + 2)))
        before, threads_before = cpu_seconds(server.pid), thread_cpu(server.pid)
        driver.start()
        time.sleep(1.0)  # the recording starts and ends inside the load
        record(server.pid, args.seconds, args.rate, raw)
        driver.join()
        spent, threads_after = cpu_seconds(server.pid) - before, thread_cpu(server.pid)
        done = result["load"]
        if done.failures:
            raise SystemExit(f"{done.failures} requests failed under load; see {folder}")
        print(f"{args.target}, {args.case}, {args.conns} connections ({load.generator()}): "
              f"{spent / done.requests * 1000:.3f} ms CPU/request, {done.rps:,.0f} req/s; samples in {raw}\n")
        with open(raw) as lines:
            profile = parse_raw(lines)
        print(thread_table(threads_before, threads_after, done.requests, profile.names) + "\n")
        print(report(profile, args.top))
    finally:
        if server is not None:
            server.stop()
        upstream.terminate()
        upstream.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
