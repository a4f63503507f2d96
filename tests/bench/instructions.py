"""Instructions per request in callgrind: a count that does not move with the host's load, where CPU
time on this VM spreads wider than most single changes.

    python3 tests/bench/instructions.py                                  # pass-through, 300 sequential
    python3 tests/bench/instructions.py "claude.ai web"
    python3 tests/bench/instructions.py pass-through --conns 16 --seconds 20   # under wrk's load
    python3 tests/bench/instructions.py pass-through --target relay
    python3 tests/bench/instructions.py "claude.ai web" --target web          # a floor of floor.py

Starts the fake upstream as run.py does and the target (clewdr-lite, or the bare relay) under
valgrind's callgrind with one count per thread; warms it with 100 requests, zeroes the counts,
sends the requests (one after another, or wrk's load at --conns for --seconds), dumps the counts
and prints instructions per request on the event-loop thread and over all threads (the request
log's writer, the console flusher). Sequential requests repeat within a few tenths of a percent on
the event-loop thread (0.939M and 0.936M for pass-through), the writer's batches less (1.041M and
1.019M over all threads); under load the order in which requests meet the loop moves the counts by
a percent or two. Needs valgrind (`apt-get install valgrind`) and, for --conns, wrk.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench import load  # noqa: E402
from tests.bench.procs import FLOOR_KINDS, ROOT, Sequential, Server, free_port, start_upstream, target_argv  # noqa: E402
from tests.bench.run import CASES, proxy_config  # noqa: E402

WARM = 100


def dumped(folder: Path) -> dict[int, int]:
    """Instructions per thread (1 is the main thread) in callgrind's first requested dump."""
    counts = {}
    for path in folder.glob("cg.out.1-*"):
        thread = int(path.name.rsplit("-", 1)[1])
        summary = re.search(r"^(?:summary|totals): (\d+)", path.read_text(errors="replace"), re.M)
        counts[thread] = int(summary.group(1)) if summary else 0
    return counts


def measure(case: str, target: str, requests: int, conns: int, seconds: float,
            keep: Path | None = None) -> tuple[int, dict[int, int]]:
    request = CASES[case]
    path, body, headers = request
    with tempfile.TemporaryDirectory(prefix="clewdr-instructions-") as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        upstream, origins = start_upstream(folder)
        port = free_port()
        argv = target_argv(target, port, api=origins["api"], web=origins["web"],
                           config=proxy_config(folder, origins["api"], origins["web"]))
        server = Server(target, ["valgrind", "--tool=callgrind", "--separate-threads=yes",
                                 f"--callgrind-out-file={folder / 'cg.out'}", *argv], port,
                        log=folder / "server.log", cwd=ROOT)
        try:
            server.start(request, deadline_s=120)  # start-up under valgrind is slow
            sequential = Sequential(port, request, case)
            sequential.send(WARM)
            subprocess.run(["callgrind_control", "-z", str(server.pid)], capture_output=True, check=True)
            if conns:
                done = load.wrk(f"http://127.0.0.1:{port}{path}", body, headers, conns, seconds)
                if done.failures:
                    raise RuntimeError(f"{case}: {done.failures} failed requests under load")
                requests = done.requests
            else:
                sequential.send(requests)
            sequential.close()
            subprocess.run(["callgrind_control", "-d", str(server.pid)], capture_output=True, check=True)
            return requests, dumped(folder)
        finally:
            server.stop()
            upstream.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", nargs="?", default="pass-through", choices=[c for c in CASES if c != "direct"])
    parser.add_argument("--target", choices=("proxy", "relay", *FLOOR_KINDS), default="proxy",
                        help="clewdr-lite, the bare relay, or a floor of floor.py")
    parser.add_argument("--requests", type=int, default=300, help="sequential requests counted")
    parser.add_argument("--conns", type=int, default=0, help="wrk's connections instead (0: sequential)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of wrk's load")
    parser.add_argument("--keep", type=Path, help="leave callgrind's files in this folder "
                        "(cg.out.1-01 is the event-loop thread's: callgrind_annotate --inclusive=yes reads it)")
    args = parser.parse_args()
    missing = [tool for tool in ("valgrind", "callgrind_control") + (("wrk",) if args.conns else ())
               if shutil.which(tool) is None]
    if missing:
        sys.exit(f"needs {', '.join(missing)}")
    requests, counts = measure(args.case, args.target, args.requests, args.conns, args.seconds, args.keep)
    how = f"wrk, {args.conns} connections, {args.seconds:g} s" if args.conns else "sequential"
    print(f"{args.target}, {args.case}, {requests} requests ({how}): "
          f"{counts.get(1, 0) / requests / 1e6:.3f}M instructions per request on the event-loop thread, "
          f"{sum(counts.values()) / requests / 1e6:.3f}M over all threads")


if __name__ == "__main__":
    main()
