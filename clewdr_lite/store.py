"""SQLite request log, usage and client-key spend (gateway.md §9.2, §9.5, §11), never on the loop.

One writer thread owns the write connection. `record()` only appends a row to an in-memory queue;
the thread commits whatever is queued in ONE transaction at most about once per `batch_s` (sooner
on `flush()` or `close()`, or when `batch_rows` rows wait: then those rows, as one INSERT statement
that is its own transaction), so an SD card or phone flash sees one small write a second, not one
per request. Reads use a second connection (WAL lets it read while the writer
writes); they block, so the server calls them and `close()` via `asyncio.to_thread` (it opens
the store before it listens, when blocking the loop keeps no request waiting).
Under `no_fs` (path None or ":memory:") the database lives in memory and, since a private memory
database cannot be opened twice, reads share the writer's connection under a lock.

    event loop ─ record(row) ─► queue ─► writer thread (≤ 1 txn per batch_s) ─► clewdr.db (WAL)
    to_thread ─ recent · get · usage · spend · stats ─► read connection ─────────────┘

Client-key spend lives in `client_key_usage` as one row per key per UTC day, written in the same
transaction as the log rows and never pruned: every budget period (§9.5) starts at a UTC midnight,
so any period's spend is a sum of whole days, and it outlives the log's retention.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import operator
import os
import sqlite3
import threading
import time
from collections import deque
from itertools import chain
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

DAY = 86_400
MAX_TRIES = 5  # a batch whose commit fails this often in a row is dropped, and counted
BODY_MODES = {False: "off", True: "all", "off": "off", "errors": "errors", "all": "all"}

# Every `requests` column but `id`, in table order (§11.2): (name, kind, fallback). Values are
# coerced to the kind in the writer; a missing or unusable value becomes the fallback (None = NULL),
# so one odd row can never make a whole batch fail.
COLUMNS: tuple[tuple[str, str, Any], ...] = (
    ("ts", "real", 0.0), ("request_id", "text", None), ("client_key_id", "text", None),
    ("route", "text", None), ("dialect", "text", None), ("model_requested", "text", None),
    ("provider", "text", None), ("model_upstream", "text", None), ("credential", "text", None),
    ("scenario", "text", None), ("stream", "int", 0), ("status", "int", None),
    ("error_type", "text", None), ("attempts", "int", 1), ("fallback_used", "int", 0),
    ("ttfb_ms", "int", None), ("duration_ms", "int", None), ("overhead_ms", "int", None),
    ("input_tokens", "int", 0), ("output_tokens", "int", 0), ("cache_read_tokens", "int", 0),
    ("cache_write_tokens", "int", 0), ("estimated", "int", 0), ("cost_usd", "real", 0.0),
    ("shadow_cost_usd", "real", 0.0), ("user_agent", "text", None), ("client_ip", "text", None),
)
NAMES = tuple(name for name, _, _ in COLUMNS)
WIDTH = len(NAMES)
AT = {name: i for i, name in enumerate(NAMES)}
BODY_FIELDS = ("request_body", "response_body")
ACCEPTED = frozenset(NAMES + BODY_FIELDS)

SCHEMA_V1 = """
CREATE TABLE requests (
  id INTEGER PRIMARY KEY, ts REAL NOT NULL, request_id TEXT, client_key_id TEXT, route TEXT,
  dialect TEXT, model_requested TEXT, provider TEXT, model_upstream TEXT, credential TEXT,
  scenario TEXT, stream INTEGER NOT NULL DEFAULT 0, status INTEGER, error_type TEXT,
  attempts INTEGER NOT NULL DEFAULT 1, fallback_used INTEGER NOT NULL DEFAULT 0, ttfb_ms INTEGER,
  duration_ms INTEGER, overhead_ms INTEGER, input_tokens INTEGER NOT NULL DEFAULT 0,
  output_tokens INTEGER NOT NULL DEFAULT 0, cache_read_tokens INTEGER NOT NULL DEFAULT 0,
  cache_write_tokens INTEGER NOT NULL DEFAULT 0, estimated INTEGER NOT NULL DEFAULT 0,
  cost_usd REAL NOT NULL DEFAULT 0, shadow_cost_usd REAL NOT NULL DEFAULT 0, user_agent TEXT,
  client_ip TEXT);
CREATE INDEX requests_ts ON requests (ts);
CREATE INDEX requests_key_ts ON requests (client_key_id, ts);
CREATE INDEX requests_provider_ts ON requests (provider, ts);
CREATE TABLE request_bodies (
  id INTEGER PRIMARY KEY, request_id TEXT, request_body TEXT, response_body TEXT);
CREATE TABLE client_key_usage (
  key_id TEXT NOT NULL, period_start INTEGER NOT NULL, spent_usd REAL NOT NULL DEFAULT 0,
  shadow_spent_usd REAL NOT NULL DEFAULT 0, tokens_in INTEGER NOT NULL DEFAULT 0,
  tokens_out INTEGER NOT NULL DEFAULT 0, requests INTEGER NOT NULL DEFAULT 0, last_used_at REAL,
  PRIMARY KEY (key_id, period_start)) WITHOUT ROWID
"""


def _v1(conn: sqlite3.Connection) -> None:
    """Version 1: the request log, its bodies and the client-key day counters."""
    # executescript() would COMMIT first; the step must stay inside migrate()'s transaction
    for statement in SCHEMA_V1.split(";"):
        conn.execute(statement)


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1,)

CACHE_KIB = -512  # page cache per connection (negative: KiB); appends and the admin's reads need little
# sqlite3 looks up an adapter for every None it binds and, finding none, builds and discards an
# AttributeError (type(None) is not a type it binds directly): ~3,000 instructions per NULL, five
# NULLs a row. A registered adapter is found at once; `{}.get` is a C callable that maps None to None.
sqlite3.register_adapter(type(None), {}.get)
MAX_CHUNK = 256  # rows per INSERT statement at most (fewer when SQLite allows fewer parameters)


def chunk_sizes(count: int, largest: int, whole: int = 0) -> list[int]:
    """`count` rows as INSERT statements of power-of-two sizes up to `largest` (a power of two);
    a count of exactly `whole` rows (a full batch, when within `largest`) is one statement.

    executemany() runs a statement per row, and sqlite3 releases and retakes the GIL around each
    step: with the event loop busy, every retake waits for the loop's thread to let go (gateway.md
    §11.3 says logging must never slow requests). A batch of 200 rows is one statement here, other
    counts a few (100 = 64 + 32 + 4), and the few sizes keep their prepared statements in sqlite3's
    cache.
    """
    if count and count == whole <= largest:
        return [count]
    sizes = []
    while count:
        size = min(largest, 1 << (count.bit_length() - 1))
        sizes.append(size)
        count -= size
    return sizes


@functools.lru_cache(maxsize=32)
def insert_rows_sql(count: int, ids: bool = True) -> str:
    """One INSERT of `count` request rows; without `ids`, SQLite numbers them (the next ids in turn)."""
    columns = ("id", *NAMES) if ids else NAMES
    row = "(" + ", ".join("?" * len(columns)) + ")"
    return f"INSERT INTO requests ({', '.join(columns)}) VALUES " + ", ".join([row] * count)


INSERT_BODY = "INSERT OR REPLACE INTO request_bodies VALUES (?, ?, ?, ?)"
UPSERT_SPEND = """INSERT INTO client_key_usage VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key_id, period_start) DO UPDATE SET spent_usd = spent_usd + excluded.spent_usd,
  shadow_spent_usd = shadow_spent_usd + excluded.shadow_spent_usd,
  tokens_in = tokens_in + excluded.tokens_in, tokens_out = tokens_out + excluded.tokens_out,
  requests = requests + excluded.requests, last_used_at = MAX(last_used_at, excluded.last_used_at)"""

ERROR_SQL = "(COALESCE(status, 0) >= 400 OR error_type IS NOT NULL)"
AGGREGATES = f"""COUNT(*) AS requests, SUM(input_tokens) AS input_tokens,
  SUM(output_tokens) AS output_tokens, SUM(cache_read_tokens) AS cache_read_tokens,
  SUM(cache_write_tokens) AS cache_write_tokens, SUM(cost_usd) AS cost_usd,
  SUM(shadow_cost_usd) AS shadow_cost_usd, SUM({ERROR_SQL}) AS errors,
  SUM(estimated) AS estimated"""
# group_by → (SQL for the "group" value, whether rows also carry their provider, time-ordered)
GROUPS = {
    "key": ("client_key_id", False, False), "client_key": ("client_key_id", False, False),
    "provider": ("provider", False, False), "credential": ("credential", True, False),
    "model": ("COALESCE(model_upstream, model_requested)", False, False),
    "day": ("date(ts, 'unixepoch')", False, True),
    # weeks start on Monday 00:00 UTC, as weekly budgets do (§9.5)
    "week": ("date(ts, 'unixepoch', 'weekday 0', '-6 days')", False, True),
    "month": ("strftime('%Y-%m', ts, 'unixepoch')", False, True),
}


def migrate(conn: sqlite3.Connection) -> int:
    """Run the missing migration steps, one transaction each; returns the schema version."""
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # read inside the write transaction: two processes opening one file migrate once
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise RuntimeError(f"clewdr.db has schema version {version}, newer than this "
                                   f"program's {len(MIGRATIONS)}")
            if version < len(MIGRATIONS):
                MIGRATIONS[version](conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        if version >= len(MIGRATIONS):
            return version


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _tighten(path: Path | None) -> None:
    """Mode 0600 for the database and whichever of its -wal and -shm files exist."""
    if path is None:
        return
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(OSError):
            os.chmod(name, 0o600)


def _open_writer(path: Path | None, busy_timeout_ms: int) -> sqlite3.Connection:
    """The write connection, set up per §11.1; the file is created 0600 before SQLite opens it."""
    if path is None:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # SQLite gives the -wal and -shm files it creates the mode of the main file
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        _tighten(path)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute(f"PRAGMA cache_size = {CACHE_KIB}")
        # auto_vacuum only takes on a database without tables, i.e. when it is created
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        # a multi-row INSERT keeps a statement journal; on disk that is a temp file per batch
        conn.execute("PRAGMA temp_store = MEMORY")
        # a checkpointed WAL shrinks back to 4 MB instead of keeping its high-water size on flash
        conn.execute("PRAGMA journal_size_limit = 4194304")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    _tighten(path)
    return conn


def _largest_chunk(conn: sqlite3.Connection) -> int:
    """The largest power-of-two row count whose INSERT stays within SQLite's parameter limit."""
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if hasattr(conn, "getlimit") else 999
    largest = MAX_CHUNK
    while largest > 1 and largest * (len(NAMES) + 1) > limit:
        largest //= 2
    return largest


def _open_reader(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A second connection for the admin reads; query_only, so it can never take the write lock."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA query_only = 1")
    conn.execute(f"PRAGMA cache_size = {CACHE_KIB}")
    return conn


# per column, the value types stored as they are (None becomes the column's fallback)
_READY = tuple(frozenset({{"text": str, "int": int, "real": float}[kind], type(None)}) for _, kind, _ in COLUMNS)
_NULLABLE = tuple(fallback is None for _, _, fallback in COLUMNS)
_VALUES = operator.itemgetter(*NAMES)
_REALS = operator.itemgetter(*(i for i, (_, kind, _) in enumerate(COLUMNS) if kind == "real"))
INT_MIN, INT_MAX = -(2 ** 63), 2 ** 63 - 1  # SQLite's INTEGER
# what a batch of rows taken as they are may fail with before anything is written: an int beyond
# SQLite's INTEGER, a type sqlite3 cannot bind, a NULL in a NOT NULL column, a value that is not a
# number in the sums of the client keys' spend
BIND_ERRORS = (OverflowError, TypeError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
               sqlite3.IntegrityError)
_TYPED: set[tuple] = set()  # column type signatures known to be stored as they are
_TYPED_MAX = 256


def _typed(types: tuple) -> bool:
    """Every column's type stored as it is, and no NULL in a NOT NULL column."""
    if types in _TYPED:
        return True
    ok = all(kind in ready and (nullable or kind is not type(None))
             for kind, ready, nullable in zip(types, _READY, _NULLABLE))
    if ok and len(_TYPED) < _TYPED_MAX:
        _TYPED.add(types)
    return ok


def row_values(record: dict | tuple) -> tuple:
    """A log row's values in column order, each as its column's type (see _coerce), but where the
    bind itself refuses a value: the writer then coerces the whole batch (`coerced`, BIND_ERRORS).

    Rows the proxy makes are tuples, complete and typed by their maker: they are taken as they are,
    only their reals checked (in C; a NaN or an infinity is coerced). A value
    SQLite cannot bind, a NULL in a NOT NULL column or an int beyond its INTEGER fails the batch's
    statement before anything is written. The writer shares the GIL with the event loop, so no
    Python loop runs over a tuple's columns. A dict row (tests, other callers) is checked by its
    column types (a set lookup) and, when odd, coerced value by value.
    """
    if type(record) is tuple:
        try:
            if all(map(math.isfinite, _REALS(record))):
                return record
        except TypeError:  # not a number in a real column
            pass
        return coerced(record)
    try:
        row = _VALUES(record)
    except KeyError:
        row = tuple(map(record.get, NAMES))
    if _typed(tuple(map(type, row))) and all(map(math.isfinite, _REALS(row))):
        return row
    return coerced(row)


def coerced(row: tuple) -> tuple:
    """Every value of a row (in column order) coerced to its column's type, ints to SQLite's range."""
    return tuple(_coerce(v, kind, fallback) for v, (_, kind, fallback) in zip(row, COLUMNS))


def _coerce(value: Any, kind: str, fallback: Any) -> Any:
    """The value as its column's type; anything unusable becomes the fallback."""
    if value is None:
        return fallback
    if kind == "text":
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    try:
        number = float(value) if kind == "real" else int(value)
    except (TypeError, ValueError, OverflowError):
        return fallback
    if kind == "real":
        return number if math.isfinite(number) else fallback
    return number if INT_MIN <= number <= INT_MAX else fallback


def _clip(body: Any, limit: int) -> str | None:
    """A stored body: text, cut to `limit` UTF-8 bytes (§11.4 body_max_kb)."""
    if body is None:
        return None
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body).decode("utf-8", "replace")
    elif not isinstance(body, str):
        body = json.dumps(body, ensure_ascii=False, default=str)
    raw = body.encode("utf-8")
    return body if len(raw) <= limit else raw[:limit].decode("utf-8", "ignore")


def _add_spend(acc: dict, row: tuple) -> None:
    """Count one row into its key's counters for the UTC day it completed on (§9.5)."""
    done_at = row[AT["ts"]] + (row[AT["duration_ms"]] or 0) / 1000
    counters = acc.setdefault((row[AT["client_key_id"]], int(done_at // DAY) * DAY),
                              [0.0, 0.0, 0, 0, 0, done_at])
    counters[0] += row[AT["cost_usd"]]
    counters[1] += row[AT["shadow_cost_usd"]]
    counters[2] += sum(row[AT[n]] for n in ("input_tokens", "cache_read_tokens", "cache_write_tokens"))
    counters[3] += row[AT["output_tokens"]]
    counters[4] += 1
    counters[5] = max(counters[5], done_at)


def _status_filter(status: int | str) -> tuple[str, list]:
    """SQL for the log's status filter: a code, "4xx"-style class, "ok" or "error"."""
    text = str(status).strip().lower()
    if text.isdigit():
        return "status = ?", [int(text)]
    if len(text) == 3 and text[0].isdigit() and text[1:] == "xx":
        return "status >= ? AND status < ?", [int(text[0]) * 100, int(text[0]) * 100 + 100]
    if text in ("error", "errors"):
        return ERROR_SQL, []
    if text == "ok":
        return f"NOT {ERROR_SQL}", []
    raise ValueError(f"unknown status filter {status!r}")


class Store:
    """The request log and client-key counters in SQLite; `record()` never waits for the disk."""

    def __init__(self, path: str | Path | None, *, clock: Callable[[], float] = time.time,
                 batch_s: float = 1.0, batch_rows: int = 200, max_queue: int = 10_000,
                 retention_rows: int = 200_000, retention_days: float = 30,
                 retention_mb: float = 100, retention_s: float = 3600.0,
                 bodies: bool | str = False, body_max_kb: int = 64,
                 busy_timeout_ms: int = 5000) -> None:
        if not retention_s > 0 or not batch_s >= 0:
            raise ValueError("retention_s must be positive and batch_s not negative")
        self.path = None if path is None or str(path) == ":memory:" else Path(path)
        self.batch_s = batch_s  # read every cycle: conserve mode may stretch it (§11.3)
        self._clock = clock
        self._batch_rows, self._max_queue = batch_rows, max_queue
        self._wake_at = frozenset((1, batch_rows))  # queue lengths at which record() wakes the writer
        self._retention = (retention_rows, retention_days, retention_mb)
        self._retention_s = retention_s
        self._bodies = BODY_MODES[bodies]
        self.keeps_bodies = self._bodies != "off"  # whether record() may keep any body at all
        self._body_max = body_max_kb * 1024
        self._wconn = _open_writer(self.path, busy_timeout_ms)
        self._chunk = _largest_chunk(self._wconn)
        self._busy_timeout_ms = busy_timeout_ms
        self._rlock = threading.Lock()
        if self.path is None:
            self._rconn: sqlite3.Connection | None = self._wconn
            self._rconn.row_factory = sqlite3.Row
            self._wlock: Any = self._rlock
        else:
            self._rconn = None  # opened by the first read: a gateway nobody asks keeps one connection
            self._wlock = contextlib.nullcontext()
        # everything below is shared with the writer thread and guarded by _cond
        self._cond = threading.Condition()
        self._lock = self._cond._lock if hasattr(self._cond, "_lock") else self._cond  # see record()
        self._queue: deque = deque()
        self._carry: list = []  # a batch whose commit failed, retried first
        self._tries = 0
        self._seq = self._done = 0  # rows recorded / rows committed or dropped, in record order
        self._flushers = 0
        self._prune_wanted, self._prune_gen, self._last_pruned = False, 0, 0
        self._stopping = self._dead = False
        self._counts = dict.fromkeys(("writes", "batches", "write_errors", "dropped", "pruned"), 0)
        self._last_batch_ms: float | None = None
        self._last_error: str | None = None
        self._last_commit = -math.inf  # monotonic; paces the batches
        self._next_prune = clock()  # the store's clock: the first pass runs at start
        self._thread = threading.Thread(target=self._run, name="clewdr-store", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the loop's side

    def record(self, row: dict | tuple, *, request_body: str | None = None) -> None:
        """Queue one log row; returns at once, never touches disk.

        `row` is either a dict (keys: COLUMNS names and bodies) or, as the proxy makes them, a tuple
        of every column's value in COLUMNS order with the request body apart (`request_body`, for a
        tuple only). The loop's side only
        checks the keys or the length and keeps the row; the writer thread orders and coerces the
        values (gateway.md §11.3: logging must not slow requests).
        """
        if type(row) is tuple:
            if len(row) != WIDTH:
                raise ValueError(f"a request log row has {WIDTH} values, not {len(row)}")
            kept = None if request_body is None else \
                self._kept((request_body, None), row[AT["status"]], row[AT["error_type"]])
        else:
            if not ACCEPTED.issuperset(row):
                raise ValueError(f"unknown request log fields: {sorted(row.keys() - ACCEPTED)}")
            if row.get("ts") is None:
                row = {**row, "ts": self._clock()}
            kept = self._kept((row.get("request_body"), row.get("response_body")), row.get("status"),
                              row.get("error_type"))
        # the condition's own lock, taken in C: the condition's `with` is two Python calls a row
        with self._lock:
            if self._stopping or self._dead:
                self._counts["dropped"] += 1
                return
            queue = self._queue
            if len(queue) >= self._max_queue:
                # the oldest row goes: requests are never slowed by logging (§11.3)
                queue.popleft()
                self._counts["dropped"] += 1
            self._seq = seq = self._seq + 1
            queue.append((seq, row, kept))
            # only the two changes the writer waits for: work to do, a full batch (each wake-up
            # on a busy loop costs a GIL hand-over; the writer re-checks both before it waits)
            if len(queue) in self._wake_at:
                self._cond.notify_all()

    def _kept(self, bodies: tuple, status: Any, error_type: Any) -> tuple | None:
        """The row's bodies when `bodies` allows keeping them (§11.4), else None."""
        if not self.keeps_bodies or bodies == (None, None):
            return None
        failed = (isinstance(status, int) and status >= 400) or error_type is not None
        return bodies if self._bodies == "all" or failed else None

    def flush(self) -> None:
        """Block until every row recorded so far is committed (or counted as dropped)."""
        with self._cond:
            target = self._seq
            self._flushers += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: self._done >= target or self._dead)
            finally:
                self._flushers -= 1
            if self._done < target:
                raise RuntimeError("the store's writer thread has stopped")

    def prune(self) -> int:
        """Apply retention now (blocking); returns the number of log rows deleted."""
        with self._cond:
            generation = self._prune_gen
            self._prune_wanted = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._prune_gen > generation or self._dead)
            return self._last_pruned if self._prune_gen > generation else 0

    def close(self) -> None:
        """Flush, stop the writer thread and close both connections; later rows are dropped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
        with self._rlock:
            if self._rconn is not None:
                self._rconn.close()
            self._wconn.close()

    def _reader(self) -> sqlite3.Connection:
        """The read connection, opened on first use (call with `_rlock` held)."""
        if self._rconn is None:
            self._rconn = _open_reader(self.path, self._busy_timeout_ms)
            self._rconn.row_factory = sqlite3.Row
        return self._rconn

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        try:
            while self._cycle():
                pass
        except BaseException:
            log.exception("request log writer stopped")
        finally:
            with self._cond:
                lost = len(self._queue) + len(self._carry)
                self._counts["dropped"] += lost
                self._queue.clear()
                self._carry = []
                self._dead = True
                self._cond.notify_all()

    def _has_work(self) -> bool:
        return bool(self._queue or self._carry or self._stopping or self._prune_wanted)

    def _urgent(self) -> bool:
        # a waiting flush() hurries only rows still to write, so the thread never spins on it
        return (self._stopping or self._prune_wanted or len(self._queue) >= self._batch_rows
                or (self._flushers > 0 and bool(self._queue or self._carry)))

    def _cycle(self) -> bool:
        """Wait until a batch is due, prune when due, write the batch; False once stopped."""
        with self._cond:
            until_prune = self._next_prune - self._clock()
            self._cond.wait_for(self._has_work, timeout=min(self._retention_s, max(0.0, until_prune)))
            # at most one transaction per batch_s, unless 200 rows wait or someone needs it now
            delay = self._last_commit + self.batch_s - time.monotonic()
            if delay > 0:
                self._cond.wait_for(self._urgent, timeout=delay)
            items = self._take()
            until_prune = self._next_prune - self._clock()
            # a wall clock set back by more than an interval must not postpone pruning for days
            prune = self._prune_wanted or not 0 < until_prune <= self._retention_s
        # pruning first, so a flush() that follows a due pass returns after it
        if prune:
            self._prune()
        if items:
            self._write(items)
        with self._cond:
            return not (self._stopping and not self._queue and not self._carry)

    def _take(self) -> list:
        """The rows to write now (call with `_cond` held): a full batch when more wait, so a busy
        gateway writes batches of exactly `batch_rows` rows (one statement each); else all."""
        queue = self._queue
        if self._carry or len(queue) <= self._batch_rows:
            items = self._carry + list(queue)
            queue.clear()
            return items
        return [queue.popleft() for _ in range(self._batch_rows)]

    def _write(self, items: list) -> None:
        """Commit the rows in one transaction; on failure keep them for the next cycle."""
        started = time.monotonic()
        conn = self._wconn
        try:
            with self._wlock:
                try:
                    self._commit(conn, items, row_values)
                except BIND_ERRORS:  # a value its bind, its column or the spend's sums refused
                    self._commit(conn, items, lambda record: coerced(row_values(record)))
        except (sqlite3.Error, OverflowError) as exc:  # OverflowError again: a day's spend beyond 2**63
            self._last_commit = time.monotonic()
            self._failed(items, exc)
            return
        self._last_commit = time.monotonic()
        with self._cond:
            self._carry, self._tries = [], 0
            self._counts["writes"] += len(items)
            self._counts["batches"] += 1
            self._last_batch_ms = (self._last_commit - started) * 1000
            self._done = max(self._done, items[-1][0])
            self._cond.notify_all()

    def _commit(self, conn: sqlite3.Connection, items: list, values: Callable) -> None:
        """Write the queued items, their rows made by `values`; nothing is written when it raises."""
        rows, bodies, spend = self._prepare(items, values)
        self._insert(conn, rows, bodies, spend)

    def _insert(self, conn: sqlite3.Connection, rows: list, bodies: list, spend: list) -> None:
        """Write one batch: as one statement when it can be, else in one transaction."""
        sizes = chunk_sizes(len(rows), self._chunk, self._batch_rows)
        if len(sizes) == 1 and not bodies and not spend:
            # one statement is a transaction of its own: BEGIN, the base id and COMMIT would each
            # give the GIL away and wait to get it back from a busy loop
            conn.execute(insert_rows_sql(sizes[0], ids=False), list(chain.from_iterable(rows)))
        else:
            self._transaction(conn, rows, sizes, bodies, spend)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, rows: list, sizes: list, bodies: list, spend: list) -> None:
        """Several statements in one transaction: rows in chunks, kept bodies, spend upserts."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            # with bodies the ids are given here, so kept bodies can share their row's id
            base = conn.execute("SELECT COALESCE(MAX(id), 0) FROM requests").fetchone()[0] if bodies else None
            start = 0
            for size in sizes:
                if base is None:
                    values = list(chain.from_iterable(rows[start:start + size]))
                else:
                    values = []
                    for n in range(start, start + size):
                        values.append(base + n + 1)
                        values.extend(rows[n])
                conn.execute(insert_rows_sql(size, ids=base is not None), values)
                start += size
            if bodies:
                conn.executemany(INSERT_BODY, [(base + n, *body) for n, *body in bodies])
            if spend:
                conn.executemany(UPSERT_SPEND, spend)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _prepare(self, items: list, values: Callable) -> tuple[list, list, list]:
        """The log rows (`values` of each), kept bodies (row number first) and the spend upserts."""
        rows = [values(record) for _, record, _ in items]
        bodies, spend = [], {}
        request_id, key_id = AT["request_id"], AT["client_key_id"]
        for number, (row, (_, _, kept)) in enumerate(zip(rows, items), 1):
            if kept:
                bodies.append((number, row[request_id], *(_clip(body, self._body_max) for body in kept)))
            if row[key_id] is not None:
                _add_spend(spend, row)
        return rows, bodies, [(*key, *counters) for key, counters in spend.items()]

    def _failed(self, items: list, exc: Exception) -> None:
        """Count a failed commit; retry its rows next cycle, or drop them after MAX_TRIES."""
        log.warning("request log: writing %d rows failed: %s", len(items), exc)
        with self._cond:
            self._counts["write_errors"] += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._tries += 1
            keep = [] if self._tries >= MAX_TRIES else items[-self._max_queue:]
            self._counts["dropped"] += len(items) - len(keep)
            self._carry = keep
            if not keep:
                self._tries = 0
                self._done = max(self._done, items[-1][0])
                self._cond.notify_all()

    def _prune(self) -> None:
        """Retention by age, row count and size (§11.4), then hand the freed pages back."""
        now = self._clock()
        deleted = 0
        conn = self._wconn
        try:
            with self._wlock:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    deleted = self._delete_old(conn, now)
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
                if deleted:
                    # each step of this pragma frees one page, and execute() steps a statement
                    # without result columns only once; executescript() steps it to its end
                    conn.executescript("PRAGMA incremental_vacuum;")
        except sqlite3.Error as exc:
            log.warning("request log: pruning failed: %s", exc)
            with self._cond:
                self._counts["write_errors"] += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
        self._next_prune = now + self._retention_s
        with self._cond:
            self._counts["pruned"] += deleted
            self._last_pruned = deleted
            self._prune_wanted = False
            self._prune_gen += 1
            self._cond.notify_all()

    def _delete_old(self, conn: sqlite3.Connection, now: float) -> int:
        """Delete the rows retention no longer keeps, and their bodies; returns how many."""
        rows_max, days, mb = self._retention
        deleted = 0
        if days:
            deleted += conn.execute("DELETE FROM requests WHERE ts < ?", (now - days * DAY,)).rowcount
        keep = rows_max or None
        if mb:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            used, limit = (pages - free) * page_size, mb * 2 ** 20
            if used > limit:
                count = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
                # aim a little under the cap, so the next pass does not have to delete again
                fit = int(count * limit / used * 0.9)
                keep = fit if keep is None else min(keep, fit)
        if keep is not None:
            deleted += conn.execute(
                "DELETE FROM requests WHERE id <= "
                "(SELECT id FROM requests ORDER BY id DESC LIMIT 1 OFFSET ?)", (keep,)).rowcount
        if deleted:
            conn.execute("DELETE FROM request_bodies WHERE id NOT IN (SELECT id FROM requests)")
        return deleted

    # ------------------------------------------------------------------ reads (call via to_thread)

    def _read(self, sql: str, params: list | tuple = ()) -> list[dict]:
        with self._rlock:
            return [dict(row) for row in self._reader().execute(sql, params)]

    def recent(self, limit: int = 100, *, since: float | None = None, before: int | None = None,
               key: str | None = None, provider: str | None = None,
               status: int | str | None = None) -> list[dict]:
        """Log rows, newest first; `before` is a row id, `status` a code, "5xx", "ok" or "error"."""
        where, params = [], []
        for clause, value in (("ts >= ?", since), ("id < ?", before),
                              ("client_key_id = ?", key), ("provider = ?", provider)):
            if value is not None:
                where.append(clause)
                params.append(value)
        if status is not None:
            clause, args = _status_filter(status)
            where.append(clause)
            params += args
        sql = "SELECT * FROM requests" + (" WHERE " + " AND ".join(where) if where else "")
        return self._read(sql + " ORDER BY id DESC LIMIT ?", [*params, max(1, min(int(limit), 1000))])

    def get(self, row_id: int) -> dict | None:
        """One log row with its bodies (None when none were kept), or None."""
        rows = self._read("SELECT r.*, b.request_body, b.response_body FROM requests r "
                          "LEFT JOIN request_bodies b ON b.id = r.id WHERE r.id = ?", (row_id,))
        return rows[0] if rows else None

    def usage(self, group_by: str, since: float | None = None, *,
              until: float | None = None) -> list[dict]:
        """Requests, tokens, cost, shadow cost and errors per group; periods in order, else by cost."""
        if group_by not in GROUPS:
            raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
        expr, with_provider, by_time = GROUPS[group_by]
        columns = f'{expr} AS "group"' + (", provider" if with_provider else "")
        where, params = [], []
        for clause, value in (("ts >= ?", since), ("ts < ?", until)):
            if value is not None:
                where.append(clause)
                params.append(value)
        order = '"group"' if by_time else 'cost_usd DESC, requests DESC, "group"'
        sql = (f"SELECT {columns}, {AGGREGATES} FROM requests"
               + (" WHERE " + " AND ".join(where) if where else "")
               + f" GROUP BY {expr}{', provider' if with_provider else ''} ORDER BY {order}")
        return self._read(sql, params)

    def spend(self, key_id: str, since: float, *, shadow: bool = False) -> float:
        """USD a client key spent from `since` (rounded down to its UTC day) in committed batches."""
        column = "spent_usd + shadow_spent_usd" if shadow else "spent_usd"
        rows = self._read(f"SELECT COALESCE(SUM({column}), 0) AS spent FROM client_key_usage "
                          "WHERE key_id = ? AND period_start >= ?", (key_id, int(since // DAY) * DAY))
        return float(rows[0]["spent"])

    def stats(self) -> dict:
        """Rows, database size and the writer's counters (for /metrics and the admin UI)."""
        with self._rlock:
            rows = self._reader().execute("SELECT COUNT(*) FROM requests").fetchone()[0]
            pages = self._reader().execute("PRAGMA page_count").fetchone()[0]
            page_size = self._reader().execute("PRAGMA page_size").fetchone()[0]
        size = pages * page_size
        if self.path is not None:
            size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        with self._cond:
            return {"rows": rows, "db_bytes": size, **self._counts, "queued":
                    len(self._queue) + len(self._carry), "last_batch_ms": self._last_batch_ms,
                    "last_error": self._last_error, "in_memory": self.path is None}
