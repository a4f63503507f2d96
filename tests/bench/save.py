"""What a pool save of clewdr.toml costs: CPU per save for a pool of N cookies, as the debounced
saver makes them under load (at most one per 2 s, claude-web.md §14): each save after one
exchange was counted on one cookie and the queue turned by one (round robin).

    python3 tests/bench/save.py                # 4, 20 and 100 cookies, both file styles
    python3 tests/bench/save.py 50 --saves 40

Both ways ClewdR files hold cookies are measured: `[[cookie_array]]` tables, and one inline
table per cookie in `cookie_array = [ … ]`. The save runs in a worker thread off the event loop;
its CPU still counts against the device (a phone's battery, a Pi's core).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from clewdr_lite.config_file import ConfigFile  # noqa: E402
from clewdr_lite.pool import add_usage  # noqa: E402
from tests.conftest import make_cookie  # noqa: E402

HEAD = f'password = "{"p" * 40}"\nadmin_password = "{"a" * 40}"\n'


def file_text(count: int, style: str) -> str:
    if style == "tables":
        return HEAD + "".join(f'\n[[cookie_array]]\ncookie = "{make_cookie(i)}"\n' for i in range(count))
    entries = ",\n".join(f'  {{ cookie = "{make_cookie(i)}" }}' for i in range(count))
    return HEAD + f"cookie_array = [\n{entries},\n]\n"


def measure(count: int, style: str, saves: int) -> tuple[float, int]:
    """(CPU ms per save, file size) over `saves` saves of a pool that has served a while."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clewdr.toml"
        path.write_text(file_text(count, style))
        path.chmod(0o600)
        config = ConfigFile(path, no_fs=False)
        config.load(os.environ)
        records = [{"cookie": make_cookie(i)} for i in range(count)]
        for record in records:  # every cookie has served: its five usage buckets exist
            add_usage(record, "claude-sonnet-4-5", 1200, 300)
        config.save(cookies=copy.deepcopy(records), wasted=[])
        started = time.process_time()
        for _ in range(saves):
            add_usage(records[0], "claude-sonnet-4-5", 1200, 300)
            records.append(records.pop(0))
            config.save(cookies=copy.deepcopy(records), wasted=[])  # the pool hands over a copy
        return (time.process_time() - started) / saves * 1000, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("counts", nargs="*", type=int, default=[4, 20, 100])
    parser.add_argument("--saves", type=int, default=20)
    args = parser.parse_args()
    print("| cookies | `[[cookie_array]]` tables | inline `cookie_array = [ … ]` |")
    print("|---|---|---|")
    for count in args.counts:
        cells = []
        for style in ("tables", "inline"):
            ms, size = measure(count, style, args.saves)
            cells.append(f"{ms:.1f} ms ({size / 1024:.0f} KiB)")
        print(f"| {count} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
