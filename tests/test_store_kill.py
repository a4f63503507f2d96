"""A store killed with SIGKILL at any moment leaves an intact clewdr.db holding every committed row."""

from __future__ import annotations

import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from clewdr_lite.store import Store

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 10

# Records rows as fast as it can while its writer commits every 2 ms on its own. "recorded N" lines
# come every 250 rows and before each flush(), so a kill right after one lands anywhere among
# records, background commits and flushes; "committed N" comes after flush() returns: all N rows
# are on disk by then.
CHILD = r'''
import random, sys
from clewdr_lite.store import Store

path, tag, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
store = Store(path, batch_s=0.002, retention_rows=0, retention_days=0, retention_mb=0)
n = 0
while True:
    for _ in range(rng.randint(1, 2000)):
        store.record({"request_id": f"{tag}-{n}", "client_key_id": "k1", "cost_usd": 0.001,
                      "provider": "p", "input_tokens": n, "user_agent": "x" * rng.randint(0, 500)})
        n += 1
        if n % 250 == 0:
            print(f"recorded {n}", flush=True)
    print(f"recorded {n}", flush=True)
    store.flush()
    print(f"committed {n}", flush=True)
'''


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.strip())
    lines.put(None)


def _committed(line: str, before: int) -> int:
    kind, count = line.split()
    return int(count) if kind == "committed" else before


def _run_and_kill(path: Path, tag: str, reports: int, seed: int) -> int:
    """Start the child, read `reports` progress lines, SIGKILL it; the rows it reported committed."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), tag, str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
    reader.start()
    committed = 0
    try:
        for _ in range(reports):
            line = lines.get(timeout=10)
            assert line is not None, proc.stderr.read()
            committed = _committed(line, committed)
        # killed at once: after "recorded" the child is flushing, after "committed" recording
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        reader.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    while (line := lines.get(timeout=10)) is not None:
        committed = _committed(line, committed)  # printed before the kill landed
    return committed


def test_sigkill_while_writing_never_loses_a_committed_row(tmp_path):
    path = tmp_path / "clewdr.db"
    rng = random.Random(20252)
    expected: set[str] = set()
    for round_no in range(ROUNDS):
        tag = f"r{round_no}"
        committed = _run_and_kill(path, tag, rng.randint(1, 40), rng.randrange(2 ** 32))
        expected |= {f"{tag}-{n}" for n in range(committed)}
        conn = sqlite3.connect(str(path))
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        ids = [r[0] for r in conn.execute("SELECT request_id FROM requests")]
        assert len(ids) == len(set(ids)), f"round {round_no}: a row written twice"
        assert expected <= set(ids), f"round {round_no}: a reported row is missing"
        # log rows and client-key counters go in one transaction: they never disagree
        counted = conn.execute("SELECT SUM(requests) FROM client_key_usage").fetchone()[0]
        assert counted == len(ids)
        conn.close()
    with Store(path) as store:  # and the store itself opens it again and carries on
        assert store.stats()["rows"] >= len(expected)
        store.record({"request_id": "after"})
        store.flush()
        assert store.recent(1)[0]["request_id"] == "after"
