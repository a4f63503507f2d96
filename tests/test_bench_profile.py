"""tests/bench/profile.py's summing of py-spy samples (the recording itself needs py-spy and load)."""

from tests.bench.profile import Profile, function_of, package_of, parse_raw, report, thread_table

ROOT = "thread (101): MainThread;<module> (clewdr_lite/__main__.py:4);run_forever (asyncio/base_events.py:607)"
RAW = [
    f"{ROOT};timing (clewdr_lite/server/accounting.py:102);_row (clewdr_lite/server/accounting.py:215) 6\n",
    f"{ROOT};timing (clewdr_lite/server/accounting.py:99);_row (clewdr_lite/server/accounting.py:216) 2\n",
    f"{ROOT};timing (clewdr_lite/server/accounting.py:102) 1\n",
    f"{ROOT};_parse_head (clewdr_lite/upstream/wire.py:120);_parse_head (clewdr_lite/upstream/wire.py:140) 3\n",
    f"{ROOT};write (asyncio/selector_events.py:1070) 4\n",
    f"{ROOT};select (selectors.py:468) 2\n",
    "thread (102): clewdr-store;_write (clewdr_lite/store.py:530) 5\n",
    "\n",
    "not a sample line\n",
]


def test_functions_are_summed_over_their_lines():
    assert function_of("_row (clewdr_lite/server/accounting.py:215)") == "_row (clewdr_lite/server/accounting.py)"
    assert function_of("<module> (<frozen runpy>:88)") == "<module> (<frozen runpy>)"
    assert function_of("bare") == "bare"


def test_packages_name_clewdr_subpackages_and_library_folders():
    assert package_of("_row (clewdr_lite/server/accounting.py:215)") == "clewdr_lite/server"
    assert package_of("record (clewdr_lite/store.py:380)") == "clewdr_lite"
    assert package_of("write (asyncio/selector_events.py:1070)") == "asyncio"
    assert package_of("select (selectors.py:468)") == "selectors.py"


def test_the_loop_threads_samples_are_counted_inclusive_and_self():
    profile = parse_raw(RAW)
    assert profile.loop_samples == 18
    timing, row = "timing (clewdr_lite/server/accounting.py)", "_row (clewdr_lite/server/accounting.py)"
    assert profile.inclusive[timing] == 9 and profile.own[timing] == 1
    assert profile.inclusive[row] == 8 and profile.own[row] == 8
    # a function twice on one stack (recursion) counts once for that sample
    assert profile.inclusive["_parse_head (clewdr_lite/upstream/wire.py)"] == 3
    assert profile.packages == {"clewdr_lite/server": 9, "clewdr_lite/upstream": 3, "asyncio": 4, "selectors.py": 2}
    # only the event-loop thread's samples count
    assert "_write (clewdr_lite/store.py)" not in profile.inclusive and "clewdr_lite" not in profile.packages


def test_report_leaves_out_the_frames_under_every_sample():
    text = report(parse_raw(RAW), top=10)
    assert "(MainThread, 18 busy samples)" in text and "| clewdr_lite/server | 50.0 % |" in text
    inclusive = text.split("inclusive (on the stack):")[1].split("self (at the top):")[0]
    assert "| 50.0 % | `timing (clewdr_lite/server/accounting.py)` |" in inclusive
    assert "run_forever" not in inclusive and "<module>" not in inclusive
    empty = report(Profile(), top=5)  # no samples: three tables without rows, no division by zero
    assert empty.count("| share |") == 3 and not [line for line in empty.splitlines() if "%" in line]


def test_thread_table_gives_cpu_per_request_busiest_first():
    names = parse_raw(RAW).names
    assert names == {101: "MainThread", 102: "clewdr-store"}
    before = {101: 1.0, 102: 0.5, 103: 0.2}
    after = {101: 1.9, 102: 0.6, 103: 0.2, 104: 0.01}
    rows = thread_table(before, after, requests=1000, names=names).splitlines()[2:]
    # a thread that started during the load counts from zero; an idle one is left out; one py-spy
    # never saw busy goes by its id
    assert rows == ["| MainThread | 900.0 |", "| clewdr-store | 100.0 |", "| thread 104 | 10.0 |"]
