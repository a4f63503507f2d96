"""What a request-log row costs the writer thread, alone on the machine (no event loop competing).

    python3 tests/bench/store.py              # 100,000 rows
    python3 tests/bench/store.py 20000

First the store itself: `Store.record()` from this thread, as the event loop calls it, and the
writer thread's own CPU per row (its batches of about 200 rows, as under load). Then the same
multi-row INSERTs on a bare connection, with the schema of gateway.md §11 and without parts of
it, to show what the indexes and `auto_vacuum = INCREMENTAL` (both required there) cost per row.
Under load the writer measured several times its cost here: it shares two cores with the loop,
the load generator and the upstream (tests/bench/run.py, README).
"""

from __future__ import annotations

import argparse
import sqlite3
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


def writer_cost(rows: int) -> float:
    """The writer thread's CPU µs per row, rows recorded in bursts of a batch."""
    with tempfile.TemporaryDirectory() as folder:
        log = store.Store(Path(folder) / "clewdr.db")
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


def insert_cost(rows: int, *, indexes: bool, auto_vacuum: bool) -> float:
    """CPU µs per row of the store's INSERTs on a bare connection (batches of BATCH rows)."""
    values = store.row_values(bench_row())
    with tempfile.TemporaryDirectory() as folder:
        conn = sqlite3.connect(Path(folder) / "x.db", isolation_level=None)
        if auto_vacuum:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", f"cache_size = {store.CACHE_KIB}"):
            conn.execute(f"PRAGMA {pragma}")
        for statement in store.SCHEMA_V1.split(";"):
            if indexes or "CREATE INDEX" not in statement:
                conn.execute(statement)
        largest = store._largest_chunk(conn)
        started, next_id = time.process_time(), 0
        for _ in range(rows // BATCH):
            conn.execute("BEGIN IMMEDIATE")
            for size in store.chunk_sizes(BATCH, largest):
                flat = []
                for _ in range(size):
                    next_id += 1
                    flat.append(next_id)
                    flat.extend(values)
                conn.execute(store.insert_rows_sql(size), flat)
            conn.execute("COMMIT")
        spent = time.process_time() - started
        conn.close()
    return spent / (rows // BATCH * BATCH) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", nargs="?", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is shown")
    args = parser.parse_args()
    cases = {"the store's writer thread (record → commit)": lambda: writer_cost(args.rows),
             "INSERTs, schema of gateway.md §11": lambda: insert_cost(args.rows, indexes=True, auto_vacuum=True),
             "INSERTs, without the three indexes": lambda: insert_cost(args.rows, indexes=False, auto_vacuum=True),
             "INSERTs, without auto_vacuum": lambda: insert_cost(args.rows, indexes=True, auto_vacuum=False)}
    figures: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(args.rounds):  # interleaved: a busy spell of the host spreads over every case
        for label, measure in cases.items():
            figures[label].append(measure())
    print(f"| what | CPU µs per row, median ({args.rows:,} rows) | rounds |")
    print("|---|---|---|")
    for label, values in figures.items():
        print(f"| {label} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
