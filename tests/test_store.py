"""The SQLite request log (gateway.md §9.5, §11): batched writes off the loop, retention, reads."""

from __future__ import annotations

import math
import os
import sqlite3
import stat
import threading
import time

import pytest

from clewdr_lite.store import COLUMNS, DAY, MAX_TRIES, MIGRATIONS, Store

NOW = 1_760_000_000.0  # the conftest clock's start: Thu 2025-10-09 08:53:20 UTC


@pytest.fixture
def open_store(tmp_path, clock):
    """Build stores on tmp_path (or in memory) with the fake clock; all closed at the end."""
    made: list[Store] = []

    def make(path="clewdr.db", **kwargs) -> Store:
        kwargs.setdefault("clock", clock)
        target = path if path is None or path == ":memory:" else tmp_path / path
        made.append(Store(target, **kwargs))
        return made[-1]
    yield make
    for each in made:
        each.close()


def row(**fields) -> dict:
    """A typical finished request."""
    base = {"ts": NOW, "request_id": "req_1", "client_key_id": "k1", "route": "/v1/messages",
            "dialect": "anthropic", "model_requested": "sonnet", "provider": "claude_web",
            "model_upstream": "claude-sonnet-4-5", "credential": "sk-ant-sid01-…AbCd",
            "scenario": "default", "stream": True, "status": 200, "error_type": None, "attempts": 1,
            "fallback_used": False, "ttfb_ms": 420, "duration_ms": 1800, "overhead_ms": 2,
            "input_tokens": 100, "output_tokens": 50, "cache_read_tokens": 10,
            "cache_write_tokens": 5, "estimated": False, "cost_usd": 0.01,
            "shadow_cost_usd": 0.02, "user_agent": "SillyTavern", "client_ip": "192.168.1.7"}
    return {**base, **fields}


def raw(path) -> sqlite3.Connection:
    """A plain connection, as another process would open the file."""
    return sqlite3.connect(str(path), isolation_level=None)


# ---------------------------------------------------------------- schema (§11.1, §11.2)

def test_database_is_opened_and_created_per_spec(open_store, tmp_path):
    open_store("data/clewdr.db")  # the parent directory is created
    conn = raw(tmp_path / "data" / "clewdr.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(requests)")]
    assert columns == ["id", *(name for name, _, _ in COLUMNS)]
    indexes = {r[1]: [c[2] for c in conn.execute(f"PRAGMA index_info({r[1]})")]
               for r in conn.execute("PRAGMA index_list(requests)")}
    assert sorted(indexes.values()) == [["client_key_id", "ts"], ["provider", "ts"], ["ts"]]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"requests", "request_bodies", "client_key_usage"}
    conn.close()


def test_reopening_keeps_rows_and_a_newer_schema_is_refused(open_store, tmp_path):
    first = open_store()
    first.record(row())
    first.close()
    again = open_store()
    assert [r["request_id"] for r in again.recent()] == ["req_1"]
    again.close()
    conn = raw(tmp_path / "clewdr.db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        Store(tmp_path / "clewdr.db")


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_database_files_are_mode_0600(open_store, tmp_path):
    (tmp_path / "old.db").touch(mode=0o644)
    os.chmod(tmp_path / "old.db", 0o644)
    for name in ("new/clewdr.db", "old.db"):
        s = open_store(name)
        s.record(row())
        s.flush()
        files = [tmp_path / name, tmp_path / f"{name}-wal", tmp_path / f"{name}-shm"]
        assert all(f.exists() for f in files)
        assert [stat.S_IMODE(f.stat().st_mode) for f in files] == [0o600] * 3


# ---------------------------------------------------------------- writing and reading back

def test_rows_are_written_and_read_back(open_store, tmp_path):
    s = open_store()
    s.record(row())
    s.record({"request_id": "req_2", "status": 529, "error_type": "overloaded_error"})
    s.flush()
    newest, first = s.recent()
    assert first == {"id": 1, **row(stream=1, fallback_used=0, estimated=0)}
    # a sparse row gets the column defaults, and the store's clock as its arrival time
    assert newest["id"] == 2 and newest["ts"] == NOW and newest["input_tokens"] == 0
    assert newest["attempts"] == 1 and newest["cost_usd"] == 0.0 and newest["provider"] is None
    assert s.get(1) == {**first, "request_body": None, "response_body": None}
    assert s.get(99) is None
    conn = raw(tmp_path / "clewdr.db")  # committed for other readers, not only ours
    assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 2
    conn.close()


def _open_files(path) -> int:
    return sum(os.path.realpath(f"/proc/self/fd/{fd}") == str(path) for fd in os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_the_read_connection_is_opened_by_the_first_read(open_store, tmp_path):
    s = open_store()
    s.record(row())
    s.flush()
    assert _open_files(tmp_path / "clewdr.db") == 1        # the writer's only
    assert len(s.recent()) == 1
    assert _open_files(tmp_path / "clewdr.db") == 2        # and now the reader's
    assert s.stats()["rows"] == 1 and _open_files(tmp_path / "clewdr.db") == 2


def test_recent_filters_and_pages_newest_first(open_store):
    s = open_store()
    s.record(row(request_id="a", ts=NOW - 100, client_key_id="k1", provider="gemini", status=200))
    s.record(row(request_id="b", ts=NOW - 50, client_key_id="k2", provider="gemini", status=429))
    s.record(row(request_id="c", ts=NOW, client_key_id=None, provider="claude_web", status=200,
                 error_type="api_error"))  # failed after the first byte of a stream
    s.flush()

    def ids(**kw):
        return [r["request_id"] for r in s.recent(**kw)]
    assert ids() == ["c", "b", "a"]
    assert ids(limit=2) == ["c", "b"] and ids(before=2) == ["a"]
    assert ids(since=NOW - 60) == ["c", "b"]
    assert ids(key="k1") == ["a"] and ids(provider="gemini") == ["b", "a"]
    assert ids(status=429) == ["b"] and ids(status="429") == ["b"] and ids(status="4xx") == ["b"]
    assert ids(status="error") == ["c", "b"] and ids(status="ok") == ["a"]
    with pytest.raises(ValueError):
        s.recent(status="bad")


def test_unusable_values_are_coerced_never_failing_a_batch(open_store):
    s = open_store()
    with pytest.raises(ValueError, match="unknown"):
        s.record({"request_id": "x", "latency": 5})
    s.record(row(request_id=b"req-bytes", cost_usd=math.nan, input_tokens="lots",
                 output_tokens=2 ** 70, status="200", stream=True, duration_ms=12.7,
                 user_agent=object))
    s.flush()
    (got,) = s.recent()
    assert got["request_id"] == "req-bytes" and got["cost_usd"] == 0.0
    assert got["input_tokens"] == 0 and got["output_tokens"] == 0
    assert got["status"] == 200 and got["stream"] == 1 and got["duration_ms"] == 12
    assert got["user_agent"] == str(object)
    assert s.stats()["write_errors"] == 0


@pytest.mark.parametrize("odd, stored", [
    ({"cost_usd": math.inf}, {"cost_usd": 0.0}),           # a real that is not finite
    ({"output_tokens": 2 ** 63}, {"output_tokens": 0}),   # an int beyond SQLite's INTEGER
    ({"output_tokens": -2 ** 63 - 1, "client_key_id": None}, {"output_tokens": 0}),  # one statement, no spend
    ({"input_tokens": None}, {"input_tokens": 0}),         # NULL in a NOT NULL column
    ({"stream": True}, {"stream": 1}),                     # a bool for an int
    ({"ttfb_ms": None, "status": None}, {"ttfb_ms": None, "status": None}),  # nullable ints
])
def test_each_odd_value_alone_is_coerced(open_store, odd, stored):
    s = open_store()
    s.record(row(request_id="x", **odd))
    s.flush()
    (got,) = s.recent()
    assert {name: got[name] for name in stored} == stored
    assert s.stats()["write_errors"] == 0


def values(**fields) -> tuple:
    """row() as the proxy hands it over: every column's value in COLUMNS order, typed."""
    typed = {**row(**fields)}
    typed.update((k, int(typed[k])) for k in ("stream", "fallback_used", "estimated"))
    return tuple(typed[name] for name, _, _ in COLUMNS)


def test_a_tuple_row_is_taken_in_column_order_with_its_body_apart(open_store):
    s = open_store(bodies="errors")
    with pytest.raises(ValueError, match="27 values, not 3"):
        s.record(("a", "b", "c"))
    s.record(values(request_id="ok"), request_body="not kept: no error")
    s.record(values(request_id="bad", status=502, error_type="api_error"), request_body='{"model": "x"}')
    s.flush()
    ok, bad = s.get(1), s.get(2)
    assert {name: ok[name] for name, _, _ in COLUMNS} == dict(zip([n for n, _, _ in COLUMNS], values(request_id="ok")))
    assert ok["request_body"] is None and bad["request_body"] == '{"model": "x"}' and bad["response_body"] is None
    assert (bad["status"], bad["error_type"]) == (502, "api_error")


def test_an_int_too_big_for_sqlite_fails_its_bind_and_its_batch_is_coerced_whole(open_store):
    # typed rows skip the range check: the bind raises OverflowError, nothing is written, and the
    # batch is written again with every value coerced (the spend counted from the coerced rows)
    s = open_store(batch_s=3600)
    s.record(values(request_id="first", client_key_id=None))
    s.flush()
    s.record(values(request_id="big", input_tokens=2 ** 64, cache_read_tokens=0, cache_write_tokens=0))
    for n in range(3):
        s.record(values(request_id=f"r{n}", input_tokens=10, cache_read_tokens=0, cache_write_tokens=0))
    s.flush()
    got = {s.get(i)["request_id"]: s.get(i)["input_tokens"] for i in range(1, 6)}
    assert got == {"first": 100, "big": 0, "r0": 10, "r1": 10, "r2": 10}
    assert s.stats()["write_errors"] == 0 and s.stats()["batches"] == 2
    (day,) = raw_usage(s)
    assert day[:2] == ("k1", 4) and day[2] == 30  # four requests, 0 + 3 × 10 input tokens


@pytest.mark.parametrize("odd, stored", [
    ({"input_tokens": None}, {"input_tokens": 0}),           # NULL in a NOT NULL column
    ({"user_agent": object}, {"user_agent": str(object)}),  # a type sqlite3 cannot bind
    ({"ts": None}, {"ts": 0.0}),                              # not a number in a real column
    ({"cost_usd": math.nan}, {"cost_usd": 0.0}),             # a real that is not finite
])
def test_an_odd_tuple_row_fails_its_bind_and_its_batch_is_coerced_whole(open_store, odd, stored):
    # tuple rows are taken as typed: the odd one fails the statement, nothing is written, and the
    # batch is written again coerced, its good rows as they were
    s = open_store(batch_s=3600)
    s.record(values(request_id="good", input_tokens=3))
    s.record(values(request_id="odd", **odd))
    s.flush()
    good, odd_row = s.get(1), s.get(2)
    assert (good["request_id"], good["input_tokens"], odd_row["request_id"]) == ("good", 3, "odd")
    assert {name: odd_row[name] for name in stored} == stored
    assert s.stats()["write_errors"] == 0 and s.stats()["batches"] == 1


def test_a_days_spend_beyond_sqlites_integer_fails_its_batch_but_never_the_writer(open_store):
    s = open_store(batch_s=3600)
    for n in range(2):  # each row fits; their day's sum does not
        s.record(values(request_id=f"huge{n}", input_tokens=2 ** 62 + 1, cache_read_tokens=0, cache_write_tokens=0))
    s.flush()  # retried MAX_TRIES times, then dropped and counted
    stats = s.stats()
    assert (stats["write_errors"], stats["dropped"], stats["rows"]) == (MAX_TRIES, 2, 0)
    s.record(values(request_id="after"))
    s.flush()
    assert [r["request_id"] for r in s.recent()] == ["after"] and s._thread.is_alive()


def raw_usage(s: Store) -> list[tuple]:
    with s._rlock:
        return [tuple(r) for r in s._reader().execute(
            "SELECT key_id, requests, tokens_in FROM client_key_usage ORDER BY period_start")]


@pytest.mark.parametrize("mode, kept", [(False, set()), ("errors", {"bad"}), (True, {"ok", "bad"}),
                                        ("all", {"ok", "bad"})])
def test_bodies_are_kept_only_when_allowed(open_store, mode, kept):
    s = open_store(bodies=mode, body_max_kb=1)
    s.record(row(request_id="ok", request_body={"messages": []}, response_body="hi"))
    s.record(row(request_id="bad", status=500, request_body="é" * 600, response_body=b"\xff"))
    s.flush()
    stored = {r["request_id"]: r for r in (s.get(1), s.get(2)) if r["request_body"] is not None}
    assert set(stored) == kept
    if "bad" in kept:
        assert stored["bad"]["request_body"] == "é" * 512  # cut to 1 KB, on a character boundary
        assert stored["bad"]["response_body"] == "\ufffd"
    if "ok" in kept:
        assert stored["ok"]["request_body"] == '{"messages": []}'


# ---------------------------------------------------------------- batching and flush (§11.3)

def test_many_records_make_few_transactions(open_store):
    s = open_store(batch_s=3600, batch_rows=10_000)
    for n in range(1000):
        s.record(row(request_id=f"r{n}"))
    s.flush()
    stats = s.stats()
    # the first row may go at once; everything after it waits for the batch (here: the flush)
    assert stats["writes"] == stats["rows"] == 1000 and stats["batches"] <= 2
    assert stats["last_batch_ms"] is not None and stats["queued"] == 0
    # written by multi-row INSERTs: every row whole and in order
    newest = s.recent(3)
    assert [r["request_id"] for r in newest] == ["r999", "r998", "r997"]
    assert {(r["model_upstream"], r["input_tokens"], r["stream"]) for r in newest} == {("claude-sonnet-4-5", 100, 1)}


def test_a_full_batch_is_written_without_waiting_for_the_interval(open_store):
    s = open_store(batch_s=3600, batch_rows=100)
    s.record(row(request_id="first"))
    s.flush()  # a batch was just written: the next is due in an hour, unless 100 rows wait
    for n in range(100):
        s.record(row(request_id=f"r{n}"))
    with s._cond:  # wait on the writer's own condition: no flush() to hurry it
        assert s._cond.wait_for(lambda: s._counts["writes"] == 101, timeout=10)
    assert s.stats()["batches"] == 2


def test_a_busy_store_writes_each_full_batch_as_one_statement(open_store):
    # BEGIN, the base id and COMMIT would each hand the GIL to a busy loop and wait for it back
    s = open_store(batch_s=3600, batch_rows=200)
    s.record(row(request_id="first", client_key_id=None))
    s.flush()  # the next batch is due in an hour, unless 200 rows wait
    statements: list[str] = []
    s._wconn.set_trace_callback(statements.append)
    for n in range(450):
        s.record(row(request_id=f"r{n}", client_key_id=None))
    with s._cond:  # two full batches go at once; the 50 left wait for the interval
        assert s._cond.wait_for(lambda: s._counts["writes"] == 401, timeout=10)
        assert len(s._queue) == 50 and s._counts["batches"] == 3
    s.flush()
    s._wconn.set_trace_callback(None)
    assert [q.split(" (", 1)[0] for q in statements] == (
        ["INSERT INTO requests"] * 2  # a full batch: one statement, a transaction of its own
        + ["BEGIN IMMEDIATE"] + ["INSERT INTO requests"] * 3 + ["COMMIT"])  # 50 rows: 32 + 16 + 2
    assert [statements[n].count("'r") for n in (0, 1)] == [200, 200]
    assert [s.get(i)["request_id"] for i in (1, 2, 201, 202, 401, 402, 451)] == \
        ["first", "r0", "r199", "r200", "r399", "r400", "r449"]
    assert s.stats()["rows"] == 451 and s.stats()["batches"] == 4


def test_flush_waits_until_everything_recorded_is_committed(open_store, tmp_path):
    s = open_store(batch_s=3600)
    s.flush()  # nothing queued: returns at once
    reader = raw(tmp_path / "clewdr.db")
    for n in range(1, 6):
        for k in range(n * 10):
            s.record(row(request_id=f"{n}-{k}"))
        s.flush()
        assert reader.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 5 * n * (n + 1)
    threads = [threading.Thread(target=s.flush) for _ in range(4)]
    s.record(row(request_id="last"))
    for t in threads:
        t.start()
    s.flush()
    for t in threads:
        t.join()
    assert s.recent(1)[0]["request_id"] == "last"
    reader.close()


def test_record_never_waits_for_a_locked_database(open_store, tmp_path):
    s = open_store(batch_s=0)
    blocker = raw(tmp_path / "clewdr.db")
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    started = time.perf_counter()
    for n in range(2000):
        s.record(row(request_id=f"r{n}"))
    assert time.perf_counter() - started < 1.0  # the writer waits on the lock, record() never does
    blocker.execute("ROLLBACK")
    blocker.close()
    s.flush()
    assert s.stats()["rows"] == 2000 and s.stats()["write_errors"] == 0


def test_a_full_queue_drops_the_oldest_rows_and_counts_them(open_store, tmp_path):
    s = open_store(batch_s=0, max_queue=10)
    blocker = raw(tmp_path / "clewdr.db")
    blocker.execute("BEGIN IMMEDIATE")
    for n in range(25):
        s.record(row(request_id=f"r{n}"))
    blocker.execute("ROLLBACK")
    blocker.close()
    s.flush()
    stats = s.stats()
    assert stats["rows"] + stats["dropped"] == 25 and stats["rows"] >= 10
    assert s.recent(1)[0]["request_id"] == "r24"


def test_failed_commits_are_retried_then_dropped_and_counted(open_store, tmp_path):
    s = open_store(busy_timeout_ms=1)
    s.prune()  # the start-up pass is over before the lock is taken
    blocker = raw(tmp_path / "clewdr.db")
    blocker.execute("BEGIN IMMEDIATE")
    for n in range(3):
        s.record(row(request_id=f"lost{n}"))
    s.flush()  # returns: the rows could not be written MAX_TRIES times, so they are dropped
    blocker.execute("ROLLBACK")
    stats = s.stats()
    assert stats["write_errors"] == MAX_TRIES and stats["dropped"] == 3 and stats["rows"] == 0
    assert "locked" in stats["last_error"]
    s.record(row(request_id="kept"))
    s.flush()
    assert [r["request_id"] for r in s.recent()] == ["kept"]
    blocker.close()


class FlakyConnection:
    """A write connection whose first `failures` log inserts fail like a full disk."""

    def __init__(self, conn: sqlite3.Connection, failures: int) -> None:
        self.conn, self.failures = conn, failures

    def _fail(self, sql):
        if sql.startswith("INSERT INTO requests") and self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql, *args):
        self._fail(sql)
        return self.conn.execute(sql, *args)

    def executemany(self, sql, rows):
        self._fail(sql)
        return self.conn.executemany(sql, rows)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_a_failed_batch_is_rolled_back_and_written_whole_on_retry(open_store):
    s = open_store()
    s.prune()  # the start-up pass is over: the writer is idle before the connection is swapped
    s._wconn = FlakyConnection(s._wconn, failures=2)
    for n in range(3):
        s.record(row(request_id=f"r{n}", client_key_id="k1", cost_usd=1.0))
    s.flush()
    stats = s.stats()
    assert stats["write_errors"] == 2 and stats["dropped"] == 0 and stats["rows"] == 3
    assert s.spend("k1", NOW) == 3.0  # the spend of the failed attempts was rolled back too
    s._wconn = s._wconn.conn


def test_close_flushes_and_later_rows_are_counted_as_dropped(open_store, tmp_path):
    s = open_store(batch_s=3600)
    for n in range(50):
        s.record(row(request_id=f"r{n}"))
    s.close()
    s.record(row(request_id="late"))
    assert s._counts["dropped"] == 1
    s.close()  # twice is harmless
    s.flush()
    conn = raw(tmp_path / "clewdr.db")
    assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 50
    conn.close()


# ---------------------------------------------------------------- retention (§11.4)

def test_retention_by_days_runs_occasionally_under_the_store_clock(open_store, clock):
    s = open_store(retention_days=30, retention_s=3600)
    assert s.prune() == 0  # the start-up pass; the next one is due an hour later
    for name, age_days in (("old", 40), ("mid", 10), ("new", 0)):
        s.record(row(request_id=name, ts=NOW - age_days * DAY))
    s.flush()
    assert s.stats()["rows"] == 3  # not pruned on every batch
    clock.now += 3600
    s.record(row(request_id="next", ts=clock.now))
    s.flush()
    assert [r["request_id"] for r in s.recent()] == ["next", "new", "mid"]
    assert s.stats()["pruned"] == 1
    clock.now += 21 * DAY
    assert s.prune() == 1 and [r["request_id"] for r in s.recent()] == ["next", "new"]


def test_retention_by_rows_keeps_the_newest_and_their_bodies(open_store, tmp_path):
    s = open_store(retention_rows=5, bodies=True)
    for n in range(12):
        s.record(row(request_id=f"r{n}", request_body=f"body{n}"))
    s.flush()
    assert s.prune() == 7
    assert [r["request_id"] for r in s.recent()] == [f"r{n}" for n in range(11, 6, -1)]
    conn = raw(tmp_path / "clewdr.db")
    assert [r[0] for r in conn.execute("SELECT request_id FROM request_bodies ORDER BY id")] \
        == [f"r{n}" for n in range(7, 12)]
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0  # incremental_vacuum ran
    conn.close()


def test_retention_by_size_brings_the_database_under_the_cap(open_store, tmp_path):
    s = open_store(retention_mb=0.25, retention_rows=0, retention_days=0)
    for n in range(300):
        s.record(row(request_id=f"r{n}", user_agent="x" * 2000))
    s.flush()
    assert s.prune() > 0
    conn = raw(tmp_path / "clewdr.db")
    pages, size = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size"))
    assert pages * size <= 0.25 * 2 ** 20
    conn.close()
    assert s.recent(1)[0]["request_id"] == "r299"  # the oldest rows went


def test_spend_outlives_log_retention(open_store):
    s = open_store(retention_rows=1)
    for n in range(4):
        s.record(row(request_id=f"r{n}", client_key_id="k1", cost_usd=0.5))
    s.flush()
    s.prune()
    assert s.stats()["rows"] == 1 and s.spend("k1", 0) == 2.0


# ---------------------------------------------------------------- usage and spend (§9.5, §15)

def test_usage_aggregates_per_group(open_store):
    s = open_store()
    s.record(row(client_key_id="k1", provider="claude_web", credential="c1", cost_usd=0.0,
                 shadow_cost_usd=0.5, model_upstream="claude-sonnet-4-5"))
    s.record(row(client_key_id="k1", provider="anthropic", credential="c1", cost_usd=1.0,
                 shadow_cost_usd=0.0, model_upstream="claude-sonnet-4-5", ts=NOW - DAY))
    s.record(row(client_key_id="k2", provider="anthropic", credential="c2", cost_usd=2.0,
                 shadow_cost_usd=0.0, model_upstream=None, model_requested="opus", status=529,
                 input_tokens=7, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0,
                 estimated=True, ts=NOW - 7 * DAY))
    s.flush()

    def groups(by, since=None, **kw):
        return {r["group"] if by != "credential" else (r["provider"], r["group"]):
                (r["requests"], r["cost_usd"], r["errors"]) for r in s.usage(by, since, **kw)}
    assert groups("key") == groups("client_key") == {"k1": (2, 1.0, 0), "k2": (1, 2.0, 1)}
    assert groups("provider") == {"claude_web": (1, 0.0, 0), "anthropic": (2, 3.0, 1)}
    assert groups("credential") == {("claude_web", "c1"): (1, 0.0, 0),
                                    ("anthropic", "c1"): (1, 1.0, 0),
                                    ("anthropic", "c2"): (1, 2.0, 1)}
    assert groups("model") == {"claude-sonnet-4-5": (2, 1.0, 0), "opus": (1, 2.0, 1)}
    assert list(groups("day")) == ["2025-10-02", "2025-10-08", "2025-10-09"]
    assert groups("week") == {"2025-09-29": (1, 2.0, 1), "2025-10-06": (2, 1.0, 0)}
    assert groups("month") == {"2025-10": (3, 3.0, 1)}
    assert groups("key", NOW - DAY, until=NOW) == {"k1": (1, 1.0, 0)}
    (k2,) = [r for r in s.usage("key") if r["group"] == "k2"]
    assert k2 == {"group": "k2", "requests": 1, "input_tokens": 7, "output_tokens": 0,
                  "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_usd": 2.0,
                  "shadow_cost_usd": 0.0, "errors": 1, "estimated": 1}
    assert s.usage("key", NOW + 1) == []
    with pytest.raises(ValueError):
        s.usage("colour", None)


def test_spend_counts_whole_utc_days_by_completion_time(open_store, tmp_path):
    s = open_store()
    today = NOW // DAY * DAY
    s.record(row(client_key_id="k1", cost_usd=1.0, shadow_cost_usd=0.25, ts=today - 3 * DAY))
    # arrived before midnight, finished after it: it counts for the day it completed (§9.5)
    s.record(row(client_key_id="k1", cost_usd=2.0, shadow_cost_usd=0.0, ts=today - 1,
                 duration_ms=5000))
    s.record(row(client_key_id="k1", cost_usd=4.0, shadow_cost_usd=0.5, ts=NOW))
    s.record(row(client_key_id="k2", cost_usd=8.0, ts=NOW))
    s.record(row(client_key_id=None, cost_usd=16.0, ts=NOW))
    s.flush()
    assert s.spend("k1", today) == 6.0
    assert s.spend("k1", NOW) == 6.0  # rounded down to its UTC day
    assert s.spend("k1", 0) == 7.0 and s.spend("k1", 0, shadow=True) == 7.75
    assert s.spend("k2", today) == 8.0 and s.spend("nobody", 0) == 0.0
    conn = raw(tmp_path / "clewdr.db")
    assert conn.execute("SELECT key_id, period_start, spent_usd, shadow_spent_usd, tokens_in, "
                        "tokens_out, requests, last_used_at FROM client_key_usage "
                        "WHERE key_id = 'k1' ORDER BY period_start").fetchall() == [
        ("k1", today - 3 * DAY, 1.0, 0.25, 115, 50, 1, today - 3 * DAY + 1.8),
        ("k1", today, 6.0, 0.5, 230, 100, 2, NOW + 1.8)]
    conn.close()


# ---------------------------------------------------------------- no_fs: in memory

@pytest.mark.parametrize("path", [None, ":memory:"])
def test_in_memory_store_touches_no_disk(open_store, tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    s = open_store(path, retention_rows=2, bodies="errors")
    other = open_store(path)
    for n in range(3):
        s.record(row(request_id=f"r{n}", status=500, request_body="b"))
    s.flush()
    assert s.stats()["rows"] == 3 and s.stats()["in_memory"] and s.stats()["db_bytes"] > 0
    assert s.get(3)["request_body"] == "b" and s.spend("k1", NOW) == pytest.approx(0.03)
    assert s.usage("provider")[0]["requests"] == 3
    assert s.prune() == 1 and [r["request_id"] for r in s.recent()] == ["r2", "r1"]
    assert other.stats()["rows"] == 0  # each memory store is its own database
    assert list(tmp_path.iterdir()) == []



def test_a_large_batch_is_written_whole_with_consecutive_ids(open_store):
    s = open_store(batch_rows=1000)
    for n in range(300):  # one batch: 256 + 32 + 8 + 4 rows in four INSERTs
        s.record(row(request_id=f"r{n}", stream=1, fallback_used=0, estimated=0))
    s.flush()
    assert [s.get(i)["request_id"] for i in (1, 256, 257, 300)] == ["r0", "r255", "r256", "r299"]
    assert s.get(301) is None and s.stats()["write_errors"] == 0


def test_insert_size_follows_sqlites_parameter_limit():
    import sqlite3

    from clewdr_lite import store
    conn = sqlite3.connect(":memory:")
    assert store._largest_chunk(conn) * (len(store.NAMES) + 1) <= conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # SQLite before 3.32
    assert store._largest_chunk(conn) == 32
    assert store.chunk_sizes(300, 32) == [32] * 9 + [8, 4] and store.chunk_sizes(0, 32) == []
    conn.close()
