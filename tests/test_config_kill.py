"""A save killed with SIGKILL at any moment leaves a whole, parseable clewdr.toml behind."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clewdr_lite.config import parse
from clewdr_lite.config_file import parse_text

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 20

# Loads the file, then saves a growing cookie list as fast as it can; one line per finished save.
CHILD = r'''
import sys
from pathlib import Path
from clewdr_lite.config_file import ConfigFile

cf = ConfigFile(Path(sys.argv[1]), no_fs=False)
cfg, _ = cf.load({})
cf.ensure_written()
cookies = [dict(c) for c in cfg.cookie_array]
n = len(cookies)
while True:
    body = f"{sys.argv[2]}{n:06d}".ljust(86, "x")
    cookies.append({"cookie": f"sk-ant-sid01-{body}-abcdefAA", "count_tokens_allowed": True,
                    "session_usage": {"total_input_tokens": n, "total_output_tokens": 2 * n}})
    cf.save(cookies=cookies, settings={"max_retries": n % 7})
    print(cookies[-1]["cookie"], flush=True)
    n += 1
'''


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.strip())
    lines.put(None)


def _run_and_kill(path: Path, tag: str, saves: int, rng: random.Random) -> list[str]:
    """Start the child, wait for `saves` finished saves, SIGKILL it; the cookies it reported."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), tag], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True)
    reader.start()
    reported = []
    try:
        while len(reported) < saves:
            line = lines.get(timeout=10)
            assert line is not None, proc.stderr.read()
            reported.append(line)
        # a little jitter so the kill lands anywhere in the next save, not only at its start
        time.sleep(rng.random() * 0.004)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        reader.join(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    while (line := lines.get(timeout=10)) is not None:
        reported.append(line)  # printed before the kill landed: those saves finished too
    return reported


def test_sigkill_during_saves_never_loses_a_reported_cookie(tmp_path):
    path = tmp_path / "clewdr.toml"
    rng = random.Random(20251)
    saved: list[str] = []
    for round_no in range(ROUNDS):
        saved += _run_and_kill(path, f"r{round_no:02d}", rng.randint(1, 8), rng)
        doc = parse_text(path, path.read_bytes())  # whole and parseable, never half written
        cfg, warnings = parse(doc, {})
        assert warnings == []
        on_disk = [c["cookie"] for c in cfg.cookie_array]
        assert set(saved) <= set(on_disk), f"round {round_no}"
        # beyond them, at most one save per round finished unreported before the kill
        assert len(on_disk) == len(set(on_disk)) <= len(saved) + round_no + 1
        assert len(cfg.password) == 64
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "clewdr.toml"]
    assert all(name.startswith("clewdr.toml.tmp.") for name in leftovers)
