"""The benchmark: clewdr-lite against a bare aiohttp relay, on loopback, against one fake upstream.

    python3 tests/bench/run.py                 # the full run (about 13 minutes)
    python3 tests/bench/run.py --quick         # shorter load points and soak, for a look

Prints one Markdown table per case (relay, proxy, proxy ÷ relay, and for pass-through and claude.ai
web the floors of `floor.py`: the same upstream client in a server that does nothing else), the
streaming and memory checks, and the budgets of issue 6 with a verdict each; `--json FILE` keeps
every figure. Exit status 1 when a budget is missed. Linux only (CPU and RSS come from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import compileall
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench import load, streams  # noqa: E402
from tests.bench.procs import (MIB, ROOT, RssSampler, Server, cpu_seconds, free_port, has_module, rss,  # noqa: E402
                               start_upstream, target_argv)
from tests.bench.upstream import COOKIES  # noqa: E402
from tests.conftest import make_cookie  # noqa: E402

PASSWORD = "bench-password-" + "p" * 24
API_KEY = "sk-ant-api03-" + "B" * 93 + "AA"
CONNS = (1, 16, 64)
STARTS = 3
ANTHROPIC = {"Content-Type": "application/json", "x-api-key": PASSWORD, "anthropic-version": "2023-06-01"}
OPENAI = {"Content-Type": "application/json", "Authorization": f"Bearer {PASSWORD}"}


def _messages(model: str, text: str = "Hello, how are you?", **extra) -> bytes:
    return json.dumps({"model": model, "max_tokens": 256, **extra,
                       "messages": [{"role": "user", "content": text}]}).encode()


CASES = {  # name → (path, body, headers)
    "direct": ("/v1/messages", _messages("bench-model"), ANTHROPIC),
    "pass-through": ("/v1/messages", _messages("bench-model"), ANTHROPIC),
    "conversion": ("/v1/chat/completions", _messages("bench-model"), OPENAI),
    "claude.ai web": ("/v1/messages", _messages("claude-sonnet-4-5"), ANTHROPIC),
    "stream 50": ("/v1/messages", _messages("bench-model", stream=True), ANTHROPIC),
}
PROBE = CASES["pass-through"]
FLOORS = {  # case → [(floor.py kind, label)]: the least an aiohttp server does with the same client
    "pass-through": [("wire", "floor: relay on the lean client")],
    "claude.ai web": [("web", "floor: the two calls, lean curl"), ("web-session", "floor: the two calls, AsyncSession")],
}


def proxy_config(folder: Path, api: str, web_base: str) -> Path:
    cookies = ",\n".join(f'  {{ cookie = "{make_cookie(i)}" }}' for i in range(COOKIES))
    path = folder / "clewdr.toml"
    path.write_text(f'''password = "{PASSWORD}"
admin_password = "bench-admin-{'a' * 24}"
rproxy = "{web_base}"
cookie_array = [
{cookies}
]

[[providers]]
name = "bench"
type = "anthropic"
base_url = "{api}"
keys = ["{API_KEY}"]
models = ["bench-*"]
''')
    path.chmod(0o600)
    return path


class Tally:
    """One target's figures for one case, gathered over the interleaved rounds."""

    def __init__(self, pid: int) -> None:
        self.pid, self.cpu, self.requests = pid, 0.0, 0
        self.points: dict[int, list] = {c: [] for c in CONNS}
        self.peak = 0
        self.after = 0.0

    def add(self, conns: int, cpu: float, result: load.Load) -> None:
        self.cpu += cpu
        self.requests += result.requests
        self.points[conns].append(result)

    def summary(self) -> dict:
        mid = lambda values: statistics.median(values)  # noqa: E731
        return {"cpu_ms": self.cpu / self.requests * 1000, "requests": self.requests,
                "conns": {c: {"rps": mid([r.rps for r in rs]), "p50_ms": mid([r.p50_ms for r in rs]),
                              "p99_ms": mid([r.p99_ms for r in rs])} for c, rs in self.points.items()},
                "rss_load_mib": self.peak / MIB, "rss_after_mib": self.after}


def _point(pid: int, url: str, case: str, conns: int, seconds: float, tally: Tally) -> None:
    path, body, headers = CASES[case]
    with RssSampler(pid) as sampler:
        before = cpu_seconds(pid)
        result = load.run(url + path, body, headers, conns, seconds)
        cpu = cpu_seconds(pid) - before
    if result.failures:
        raise RuntimeError(f"{case} at {conns} connections on {url}: {result.failures} failures")
    tally.peak = max(tally.peak, sampler.peak)
    tally.add(conns, cpu, result)


def measure_cases(targets: dict, cases: list[str], args, floors: dict | None = None) -> dict:
    """Every case on every target (and on the floors given for it: case → {name: (pid, url)}); each
    load point runs on the targets back to back, round after round, so the machine's drift falls
    on all of them alike (the figures are medians and totals)."""
    out = {name: {} for name in targets}
    for case in cases:
        here = {**targets, **(floors or {}).get(case, {})}
        tallies = {name: Tally(pid) for name, (pid, _) in here.items()}
        path, body, headers = CASES[case]
        for name, (pid, url) in here.items():  # warm: connections, lazy imports, caches
            warm = load.run(url + path, body, headers, 16, 1.0)
            if warm.failures:
                raise RuntimeError(f"{case} on {name}: {warm.failures} failed requests while warming up")
        for _ in range(args.rounds):
            for conns in CONNS:
                for name, (pid, url) in here.items():
                    _point(pid, url, case, conns, args.seconds, tallies[name])
        time.sleep(1.0)
        for name, tally in tallies.items():
            tally.after = rss(tally.pid) / MIB
            out.setdefault(name, {})[case] = tally.summary()
            print(f"  {name:6} {case:14} {out[name][case]['cpu_ms']:.3f} ms CPU/request", flush=True)
    return out


def first_tokens(urls: dict, args) -> dict:
    """Median time to the first streamed token per target, the requests taken in turn."""
    path, body, headers = CASES["stream 50"]
    samples = asyncio.run(streams.first_tokens_interleaved({n: u + path for n, u in urls.items()}, body,
                                                           headers, args.ttft_rounds))
    return {name: statistics.median(values) * 1000 for name, values in samples.items()}


def start_all(servers: dict) -> dict:
    """Cold starts, taken in turn per target (median of STARTS); the last one keeps running."""
    starts = {name: [] for name in servers}
    for n in range(STARTS):
        for name, server in servers.items():
            time.sleep(1.0)
            server.start(PROBE)
            starts[name].append(server.startup_s)
            if n + 1 < STARTS:
                server.stop()
    time.sleep(0.5)
    return {name: {"startup_s": statistics.median(values), "startups_s": values,
                   "idle_rss_mib": rss(servers[name].pid) / MIB,
                   "curl_at_idle": has_module(servers[name].pid, "curl_cffi")} for name, values in starts.items()}


def streaming_checks(server: Server, args) -> dict:
    """Chunk-by-chunk forwarding, the 64-stream soak, then 1,000 held streams on a fresh process."""
    path, _, headers = CASES["stream 50"]
    url = f"http://127.0.0.1:{server.port}{path}"
    out = {}
    paced = _messages("bench-model", "pace:10", stream=True)
    out["paced_reads"], out["paced_spread_ms"] = asyncio.run(streams.paced_reads(url, paced, headers))
    if args.soak:
        time.sleep(1.0)
        out["soak_before_mib"] = rss(server.pid) / MIB
        soak = load.run(url, CASES["stream 50"][1], headers, 64, args.soak)
        time.sleep(2.0)
        out["soak_after_mib"] = rss(server.pid) / MIB
        out["soak_requests"], out["soak_failures"] = soak.requests, soak.failures
    server.stop()  # the held streams start from a fresh process: a defined baseline
    time.sleep(2.0)
    server.start(PROBE)
    time.sleep(0.5)
    held = asyncio.run(streams.hold_streams(server.pid, url, _messages("bench-model", "hold", stream=True),
                                            headers, args.streams, 4))
    out["held"] = {"opened": held.opened, "rss_mib": held.rss_mib, "failures": held.failures,
                   "kib_per_stream": held.slope_kib(), "r2": held.r_squared()}
    return out


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def _ratio(mine: float, theirs: float) -> str:
    return f"{mine / theirs:.2f}×" if theirs else "–"


def table(results: dict) -> str:
    head = ["case", "target", "CPU ms/req"] + [f"req/s @{c}" for c in CONNS] + \
           [f"p50 / p99 ms @{c}" for c in CONNS] + ["RSS load MiB", "RSS after MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(case, target, r):
        cells = [case, target, _fmt(r["cpu_ms"], 3)] + [_fmt(r["conns"][c]["rps"], 0) for c in CONNS]
        cells += [f"{_fmt(r['conns'][c]['p50_ms'])} / {_fmt(r['conns'][c]['p99_ms'])}" for c in CONNS]
        cells += [_fmt(r["rss_load_mib"], 1), _fmt(r["rss_after_mib"], 1)]
        lines.append("| " + " | ".join(cells) + " |")

    row("direct", "fake upstream", results["direct"]["cases"]["direct"])
    for case in CASES:
        if case == "direct":
            continue
        relay, proxy = results["relay"]["cases"][case], results["proxy"]["cases"][case]
        row(case, "bare relay", relay)
        row(case, "clewdr-lite", proxy)
        cells = [case, "ratio", _ratio(proxy["cpu_ms"], relay["cpu_ms"])]
        cells += [_ratio(proxy["conns"][c]["rps"], relay["conns"][c]["rps"]) for c in CONNS]
        cells += [f"{_ratio(proxy['conns'][c]['p50_ms'], relay['conns'][c]['p50_ms'])} / "
                  f"{_ratio(proxy['conns'][c]['p99_ms'], relay['conns'][c]['p99_ms'])}" for c in CONNS]
        cells += [_ratio(proxy["rss_load_mib"], relay["rss_load_mib"]),
                  _ratio(proxy["rss_after_mib"], relay["rss_after_mib"])]
        lines.append("| " + " | ".join(cells) + " |")
        for label, floor in results.get("floors", {}).get(case, {}).items():
            row(case, f"{label} ({_ratio(floor['cpu_ms'], relay['cpu_ms'])} CPU)", floor)
    return "\n".join(lines)


def servers_table(results: dict) -> str:
    lines = ["| target | start to first 200 | idle RSS | first token (median) | extra over direct "
             "| paced deltas / reads | 1,000 open streams (fresh process): RSS | KiB per stream, R² | RSS before → after soak |",
             "|---|---|---|---|---|---|---|---|---|"]
    direct_ttft = results["direct"]["ttft_ms"]
    lines.append(f"| fake upstream | – | – | {direct_ttft:.2f} ms | – | – | – | – | – |")
    for name, label in (("relay", "bare relay"), ("proxy", "clewdr-lite")):
        r = results[name]
        held = r["held"]
        soak = (f"{r['soak_before_mib']:.1f} → {r['soak_after_mib']:.1f} MiB ({r['soak_requests']:,} streams)"
                if "soak_before_mib" in r else "–")
        lines.append(
            f"| {label} | {r['startup_s'] * 1000:.0f} ms (median of {len(r['startups_s'])}) | {r['idle_rss_mib']:.1f} MiB | {r['ttft_ms']:.2f} ms "
            f"| {r['ttft_ms'] - direct_ttft:+.2f} ms | 50 / {r['paced_reads']} over {r['paced_spread_ms']:.0f} ms "
            f"| {held['rss_mib'][0]:.1f} → {max(held['rss_mib']):.1f} MiB ({held['opened'][-1] - held['failures']} "
            f"open) | {held['kib_per_stream']:.1f}, {held['r2']:.3f} | {soak} |")
    return "\n".join(lines)


def budgets(results: dict, args) -> list[tuple[str, bool, str]]:
    relay, proxy = results["relay"], results["proxy"]
    cpu = lambda case: proxy["cases"][case]["cpu_ms"] / relay["cases"][case]["cpu_ms"]  # noqa: E731
    extra = proxy["ttft_ms"] - results["direct"]["ttft_ms"]
    held = proxy["held"]
    def floors(case: str) -> str:  # what the same client alone costs, as a ratio to the relay
        found = results.get("floors", {}).get(case, {})
        return "".join(f"; {label} {floor['cpu_ms'] / relay['cases'][case]['cpu_ms']:.2f}×"
                       for label, floor in found.items())
    checks = [
        ("pass-through CPU ≤ 1.3 × bare relay", cpu("pass-through") <= 1.3,
         f"{cpu('pass-through'):.2f}×{floors('pass-through')}"),
        ("conversion CPU ≤ 2 × bare relay", cpu("conversion") <= 2.0, f"{cpu('conversion'):.2f}×"),
        ("claude.ai web CPU ≤ 3 × bare relay", cpu("claude.ai web") <= 3.0,
         f"{cpu('claude.ai web'):.2f}×{floors('claude.ai web')}"),
        ("extra time to first token ≤ 1 ms over direct", extra <= 1.0, f"{extra:+.2f} ms"),
        ("chunks forwarded as they arrive", proxy["paced_reads"] == 50, f"{proxy['paced_reads']} reads for 50"),
        ("idle RSS ≤ 40 MiB, curl_cffi not loaded", proxy["idle_rss_mib"] <= 40 and not proxy["curl_at_idle"],
         f"{proxy['idle_rss_mib']:.1f} MiB, curl_cffi {'loaded' if proxy['curl_at_idle'] else 'not loaded'}"),
        ("start-up to first 200 ≤ 400 ms", proxy["startup_s"] <= 0.4, f"{proxy['startup_s'] * 1000:.0f} ms"),
        (f"{args.streams:,} open streams, linear, < 100 MiB",
         not held["failures"] and max(held["rss_mib"]) < 100 and held["r2"] >= 0.95,
         f"{max(held['rss_mib']):.1f} MiB, R² {held['r2']:.3f}, {held['failures']} failed"),
    ]
    if "soak_before_mib" in proxy:
        grew = proxy["soak_after_mib"] - proxy["soak_before_mib"]
        checks.append((f"RSS after 64 streams for {args.soak:.0f} s within 10 MiB", grew <= 10 and not
                       proxy["soak_failures"], f"{grew:+.1f} MiB, {proxy['soak_failures']} failures"))
    return checks


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}, "
            f"load from {load.generator()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load point")
    parser.add_argument("--soak", type=float, default=60.0, help="64 concurrent streams for this long (0: skip)")
    parser.add_argument("--streams", type=int, default=1000, help="streams held open at once")
    parser.add_argument("--ttft-rounds", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="2 s load points, 10 s soak")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per load point")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.soak, args.ttft_rounds, args.rounds = 2.0, min(args.soak, 10.0), 100, 1
    # pip compiles bytecode when it installs; a checkout run under PYTHONDONTWRITEBYTECODE would
    # otherwise compile every module at every start and add that to start-up
    for folder in ("clewdr_lite", "tests/fakes", "tests/bench"):
        compileall.compile_dir(ROOT / folder, quiet=1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    folder = Path(tempfile.mkdtemp(prefix="clewdr-bench-"))
    upstream, origins = start_upstream(folder)
    try:
        api = origins["api"]
        config = proxy_config(folder, api, origins["web"])
        print(f"machine: {machine()}\nfigures in {folder}", flush=True)
        results = {"machine": machine()}
        servers = {}
        for name in ("relay", "proxy"):
            port = free_port()
            servers[name] = Server(name, target_argv(name, port, api=api, config=config), port,
                                   log=folder / f"{name}.log", cwd=ROOT)
        floors = {}
        try:
            results.update(start_all(servers))
            for case, kinds in FLOORS.items():  # started after the start-up figures are taken
                for kind, label in kinds:
                    port = free_port()
                    floors[label] = Server(label, target_argv(kind, port, api=api, config=config, web=origins["web"]),
                                           port, log=folder / f"floor-{kind}.log", cwd=ROOT)
                    floors[label].start(CASES[case])
            results["direct"] = {"cases": measure_cases({"direct": (upstream.pid, api)}, ["direct"], args)["direct"]}
            urls = {name: f"http://127.0.0.1:{server.port}" for name, server in servers.items()}
            measured = measure_cases({name: (servers[name].pid, url) for name, url in urls.items()},
                                     [c for c in CASES if c != "direct"], args,
                                     floors={case: {label: (floors[label].pid, f"http://127.0.0.1:{floors[label].port}")
                                                    for _, label in kinds} for case, kinds in FLOORS.items()})
            results["floors"] = {case: {label: measured[label][case] for _, label in kinds}
                                 for case, kinds in FLOORS.items()}
            for floor in floors.values():  # idle, their timers would still wake during what follows
                floor.stop()
            ttft = first_tokens({"direct": api, **urls}, args)
            results["direct"]["ttft_ms"] = ttft["direct"]
            for name, server in servers.items():
                results[name].update(cases=measured[name], ttft_ms=ttft[name])
                results[name].update(streaming_checks(server, args))
        finally:
            for server in [*servers.values(), *floors.values()]:
                server.stop()
    finally:
        upstream.terminate()
        upstream.wait()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print("\n" + table(results) + "\n\n" + servers_table(results) + "\n")
    checks = budgets(results, args)
    for name, ok, figure in checks:
        print(f"{'met   ' if ok else 'MISSED'}  {name}: {figure}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
