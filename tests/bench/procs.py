"""Processes under measurement: start, wait for the first 200, CPU and RSS from /proc (Linux)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat_cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the whole process (every thread), from its own accounting."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def thread_cpu(pid: int) -> dict[int, float]:
    """User + system CPU per thread id, from the threads' own accounting."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = _stat_cpu(task / "stat")
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
    return out


def rss(pid: int) -> int:
    """Resident set size in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def has_module(pid: int, name: str) -> bool:
    """Whether a shared object whose path contains `name` is mapped (curl_cffi's, say)."""
    return name in Path(f"/proc/{pid}/maps").read_text()


class RssSampler:
    """The highest RSS of a process while a block runs (sampled every 50 ms)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            self._stop.wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss(self.pid))


def post_once(port: int, path: str, body: bytes, headers: dict, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Sequential:
    """One case's requests sent one after another on one keep-alive connection, each answered 200."""

    def __init__(self, port: int, request: tuple[str, bytes, dict], label: str) -> None:
        self.path, self.body, self.headers = request
        self.label = label
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def send(self, n: int) -> None:
        for _ in range(n):
            self.conn.request("POST", self.path, body=self.body, headers=self.headers)
            resp = self.conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{self.label}: status {resp.status}")

    def close(self) -> None:
        self.conn.close()


class Server:
    """A server process: started, timed to its first 200 on a real request, stopped."""

    def __init__(self, name: str, argv: list[str], port: int, *, log: Path, cwd: Path | None = None,
                 env=None) -> None:
        self.name, self.argv, self.port = name, argv, port
        self.log, self.cwd, self.env = log, cwd, env
        self.proc: subprocess.Popen | None = None
        self.startup_s = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, probe: tuple[str, bytes, dict], deadline_s: float = 20.0) -> None:
        """Start and send `probe` (path, body, headers) until it answers 200: start-up to first 200."""
        path, body, headers = probe
        began = time.perf_counter()
        with open(self.log, "wb") as out:  # a file, never a pipe: a full pipe would stall the server
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=out, stderr=out)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                status, answer = post_once(self.port, path, body, headers)
            except OSError:
                if time.perf_counter() - began > deadline_s:
                    raise RuntimeError(f"{self.name} did not answer within {deadline_s} s") from None
                time.sleep(0.002)
                continue
            if status != 200:
                raise RuntimeError(f"{self.name} answered {status}: {answer[:500]!r}")
            self.startup_s = time.perf_counter() - began
            return

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def start_upstream(folder: Path, *options: str) -> tuple[subprocess.Popen, dict]:
    """The fake upstream (tests/bench/upstream.py, with its `options`), its log in `folder`:
    (process, {"api", "web"} origins)."""
    upstream = subprocess.Popen(python(str(ROOT / "tests/bench/upstream.py"), *options), stdout=subprocess.PIPE,
                                stderr=open(folder / f"upstream{''.join(options)}.log", "wb"), cwd=ROOT)
    return upstream, json.loads(upstream.stdout.readline())


FLOOR_KINDS = ("wire", "web", "web-session")  # floor.py's kinds


def target_argv(target: str, port: int, *, api: str, config: Path, web: str = "") -> list[str]:
    """How the bare relay ("relay"), a floor of floor.py (FLOOR_KINDS; `web`: the fake claude.ai's
    origin) or clewdr-lite ("proxy", on `config`) is started on `port`."""
    if target == "relay":
        return python(str(ROOT / "tests/bench/relay.py"), str(port), api)
    if target in FLOOR_KINDS:
        return python(str(ROOT / "tests/bench/floor.py"), target, str(port), api, web)
    return python("-m", "clewdr_lite", "-c", str(config), "--host", "127.0.0.1", "--port", str(port))
