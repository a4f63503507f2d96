"""What a request-log row costs the writer thread, alone on the machine (no event loop competing).

    python3 tests/bench/store.py              # 100,000 rows, three interleaved rounds
    python3 tests/bench/store.py 20000 --rounds 5

`Store.record()` is called from this thread, as the event loop calls it, in bursts of about 200
rows (the writer's batches under load); the figure is the writer thread's own CPU per row, from
record to commit. The same with the three indexes dropped, and with `auto_vacuum` off, shows what
those parts of gateway.md §11's schema (both required there) cost it. Under load the writer
measured several times its cost here: it shares two cores with the loop, the load generator and
the upstream (tests/bench/run.py, README).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from clewdr_lite import store  # noqa: E402

BATCH = 200


def bench_row() -> dict:
    """A pass-through request's row as the proxy records it (tests/bench/run.py's case)."""
    return {"ts": time.time(), "request_id": None, "client_key_id": None, "route": "/v1/messages",
            "dialect": "anthropic", "model_requested": "bench-model", "provider": "bench",
            "credential": "sk-ant-a…WXYZ", "scenario": None, "stream": 0, "status": 200, "error_type": None,
            "attempts": 1, "fallback_used": 0, "duration_ms": 1, "ttfb_ms": 0, "overhead_ms": 0,
            "input_tokens": 12, "output_tokens": 10, "cache_read_tokens": 0, "cache_write_tokens": 0,
            "estimated": 0, "cost_usd": 0.0001, "shadow_cost_usd": 0.0, "model_upstream": "bench-model",
            "user_agent": "wrk", "client_ip": "127.0.0.1"}


def writer_cost(rows: int, *, indexes: bool = True, auto_vacuum: bool = True) -> float:
    """The writer thread's CPU µs per row, rows recorded in bursts of a batch; `indexes` or
    `auto_vacuum` False takes that part of gateway.md §11's schema out of the store's database
    before the first row (a measurement only: the store always has both)."""
    with tempfile.TemporaryDirectory() as folder:
        log = store.Store(Path(folder) / "clewdr.db")
        log.prune()  # the start-up retention pass is over: the writer now waits for rows
        conn = log._wconn  # idle until the first row is recorded
        if not indexes:
            for name in ("requests_ts", "requests_key_ts", "requests_provider_ts"):
                conn.execute(f"DROP INDEX {name}")
        if not auto_vacuum:
            conn.execute("PRAGMA auto_vacuum = NONE")
            conn.execute("VACUUM")  # an empty database changes mode at once
        clock = time.pthread_getcpuclockid(log._thread.ident)
        started = time.clock_gettime(clock)
        for n in range(rows):
            log.record(bench_row())
            if n % BATCH == BATCH - 1:
                time.sleep(0.0005)  # the writer takes a batch while the next one is recorded
        log.flush()
        spent = time.clock_gettime(clock) - started
        log.close()
    return spent / rows * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="?", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is shown")
    args = parser.parse_args()
    cases = {"the store as it is (schema of gateway.md §11)": lambda: writer_cost(args.rows),
             "without the three indexes": lambda: writer_cost(args.rows, indexes=False),
             "without auto_vacuum": lambda: writer_cost(args.rows, auto_vacuum=False)}
    figures: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(args.rounds):  # interleaved: a busy spell of the host spreads over every case
        for label, measure in cases.items():
            figures[label].append(measure())
    print(f"| the writer thread, record → commit | CPU µs per row, median ({args.rows:,} rows) | rounds |")
    print("|---|---|---|")
    for label, values in figures.items():
        print(f"| {label} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
