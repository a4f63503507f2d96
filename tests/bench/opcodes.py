"""Bytecodes per request, per function and per file: where the interpreter's work goes, counted
(repeating within a percent from run to run, unlike time; C work inside a call counts as one opcode).

    python3 tests/bench/opcodes.py                          # pass-through, clewdr-lite against its floor
    python3 tests/bench/opcodes.py "claude.ai web" --top 60
    python3 tests/bench/opcodes.py conversion --target relay

Starts the fake upstream as run.py does and the target (clewdr-lite, the bare relay, or a floor of
floor.py, each under a tracer that counts the opcodes of the event-loop thread between two signals),
warms it with 200 requests, counts the next --requests sequential ones and prints opcodes and calls
per request, per file and for the busiest functions. With --against (default: the case's floor, when
it has one) the second target is counted too and the table shows the difference, the proxy's own
work. Tracing makes the target some ten times slower; only the counts are meant.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import runpy
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.bench.procs import FLOOR_KINDS, ROOT, Sequential, Server, free_port, python, start_upstream, target_argv  # noqa: E402
from tests.bench.run import CASES, proxy_config  # noqa: E402

WARM = 200
TARGETS = ("proxy", "relay", *FLOOR_KINDS)
_PREFIXES = (str(ROOT) + "/", os.path.dirname(os.__file__) + "/site-packages/", os.path.dirname(os.__file__) + "/")


def _traced(out: str, argv: list[str]) -> None:
    """Inside the target: SIGUSR1 starts counting the main thread's opcodes, SIGUSR2 writes them
    (per function: [opcodes, calls]) to `out` and stops; then run `argv` as `python argv…` would."""
    ops: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()

    def local(frame, event, arg):
        if event == "opcode":
            ops[frame.f_code] += 1
        return local

    def on_call(frame, event, arg):
        frame.f_trace_opcodes = True
        calls[frame.f_code] += 1
        return local

    def frames(top):  # the frames already running (the loop's): counted from now on too
        while top is not None:
            yield top
            top = top.f_back

    def start(signum, frame) -> None:
        ops.clear()
        calls.clear()
        sys.settrace(on_call)
        for running in frames(frame):
            running.f_trace, running.f_trace_opcodes = local, True

    def stop(signum, frame) -> None:
        sys.settrace(None)
        for running in frames(frame):
            running.f_trace = None
        named = {}
        for code in ops.keys() | calls.keys():
            path = code.co_filename
            for prefix in _PREFIXES:
                if path.startswith(prefix):
                    path = path[len(prefix):]
                    break
            named[f"{path}:{code.co_firstlineno} {code.co_qualname}"] = [ops[code], calls[code]]
        Path(out).write_text(json.dumps(named))
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = argv
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.path.insert(0, os.path.dirname(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")


def count(case: str, target: str, requests: int, folder: Path, origins: dict) -> dict[str, list[int]]:
    """[opcodes, calls] per function over `requests` sequential requests of `case` to `target`."""
    port = free_port()
    argv = target_argv(target, port, api=origins["api"], web=origins["web"],
                       config=proxy_config(folder, origins["api"], origins["web"]))
    out = folder / f"opcodes-{target}.json"
    server = Server(target, python(__file__, "--inside", str(out), *argv[1:]), port,
                    log=folder / f"{target}.log", cwd=ROOT)
    try:
        server.start(CASES[case], deadline_s=60)
        sequential = Sequential(port, CASES[case], f"{case} on {target}")
        sequential.send(WARM)
        time.sleep(0.3)  # the loop back in its wait: the signal's handler runs there
        server.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        sequential.send(requests)
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        sequential.close()
        return json.loads(out.read_text())
    finally:
        server.stop()


def table(counts: dict, against: dict | None, requests: int, top: int) -> str:
    """Per file, then the busiest functions: opcodes (and calls) per request, less `against`'s."""
    base = against or {}
    rows = {name: ((ops - base.get(name, [0, 0])[0]) / requests, (calls - base.get(name, [0, 0])[1]) / requests)
            for name, (ops, calls) in counts.items()}
    for name, (ops, calls) in base.items():
        rows.setdefault(name, (-ops / requests, -calls / requests))
    files: collections.Counter = collections.Counter()
    for name, (ops, _) in rows.items():
        files[name.split(":", 1)[0]] += ops
    lines = [f"{sum(files.values()):,.0f} opcodes per request" + (" more than the comparison" if against else ""),
             "", "| opcodes | file |", "|---|---|"]
    lines += [f"| {ops:,.0f} | {name} |" for name, ops in sorted(files.items(), key=lambda kv: -abs(kv[1]))[:top]]
    lines += ["", "| opcodes | calls | function |", "|---|---|---|"]
    lines += [f"| {ops:,.1f} | {calls:.2f} | {name} |"
              for name, (ops, calls) in sorted(rows.items(), key=lambda kv: -abs(kv[1][0]))[:top]]
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--inside"]:
        _traced(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", nargs="?", default="pass-through", choices=[c for c in CASES if c != "direct"])
    parser.add_argument("--target", choices=TARGETS, default="proxy")
    parser.add_argument("--against", choices=(*TARGETS, "none"),
                        help="count this target too and show the difference (default: the case's lean floor)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    against = args.against or {"pass-through": "wire", "claude.ai web": "web"}.get(args.case, "none")
    with tempfile.TemporaryDirectory(prefix="clewdr-opcodes-") as tmp:
        folder = Path(tmp)
        upstream, origins = start_upstream(folder)
        try:
            counts = count(args.case, args.target, args.requests, folder, origins)
            other = None if against == "none" else count(args.case, against, args.requests, folder, origins)
        finally:
            upstream.terminate()
    total = sum(ops for ops, _ in counts.values()) / args.requests
    print(f"{args.target}, {args.case}: {total:,.0f} opcodes per request on the event-loop thread"
          + (f"; {sum(o for o, _ in other.values()) / args.requests:,.0f} for {against}" if other else ""))
    print()
    print(table(counts, other, args.requests, args.top))


if __name__ == "__main__":
    main()
