"""Log lines: ClewdR's format, INFO flushed in batches off the loop, warnings at once."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time

import pytest

from clewdr_lite import logs


class Sink(io.StringIO):
    """A non-terminal stream that counts its flushes."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


@contextlib.contextmanager
def logging_to(stream, name: str = "clewdr_lite.test_logs"):
    """A logger whose only handler is our StreamHandler on `stream`: (logger, handler)."""
    handler = logs.StreamHandler(stream)
    handler.setFormatter(logs.ClockFormatter())
    log = logging.getLogger(name)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield log, handler
    finally:
        log.removeHandler(handler)
        handler.close()


@pytest.fixture
def logger():
    sink = Sink()
    with logging_to(sink) as (log, _):
        yield log, sink


def test_lines_have_clewdrs_format(logger):
    log, sink = logger
    log.info("[REQ] stream: %s, msgs: %d", False, 3)
    log.warning("cookie %s retired", "sk-…AA")
    lines = sink.getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} INFO  \[REQ\] stream: False, msgs: 3", lines[0])
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} WARNING cookie sk-…AA retired", lines[1])


def test_a_traceback_follows_its_line(logger):
    log, sink = logger
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("handler failed")
    text = sink.getvalue()
    assert "ERROR handler failed\nTraceback" in text and "ValueError: boom" in text


def test_info_is_flushed_in_one_batch_shortly_after(logger):
    log, sink = logger
    for n in range(50):
        log.info("line %d", n)
    assert sink.flushes == 0  # nothing flushed on the caller's time
    deadline = time.monotonic() + 5
    while sink.flushes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.flushes == 1
    assert sink.getvalue().count("\n") == 50


def test_warnings_are_flushed_at_once(logger):
    log, sink = logger
    log.warning("now")
    assert sink.flushes == 1


def test_a_terminal_gets_every_line_at_once():
    class Tty(Sink):
        def isatty(self) -> bool:
            return True
    sink = Tty()
    handler = logs.StreamHandler(sink)
    handler.setFormatter(logs.ClockFormatter())
    handler.handle(logging.makeLogRecord({"msg": "hello", "levelno": logging.INFO, "levelname": "INFO"}))
    assert sink.flushes == 1 and sink.getvalue().endswith("hello\n")


def _write_calls() -> int:
    """write(2)-family system calls made by this process so far (Linux)."""
    with open("/proc/self/io") as io_file:
        return int(next(line for line in io_file if line.startswith("syscw:")).split()[1])


def test_console_lines_to_a_file_are_batched_whatever_the_stream_buffering(tmp_path):
    # PYTHONUNBUFFERED gives sys.stdout no buffer: buffering=0 stands for it here
    raw = open(tmp_path / "out.log", "wb", buffering=0)
    unbuffered = io.TextIOWrapper(raw, write_through=True)
    stream = logs.console(unbuffered)
    try:
        with logging_to(stream, "console-test") as (log, handler):
            before = _write_calls()
            for n in range(50):
                log.info("line %d", n)
            logged = _write_calls()
            handler.flush_now()
            flushed = _write_calls()
    finally:
        stream.close()
        unbuffered.close()
    assert logged - before == 0 and flushed - logged == 1      # 50 lines, one write
    lines = (tmp_path / "out.log").read_text().splitlines()
    assert [line.split()[-1] for line in lines] == [str(n) for n in range(50)]


def test_console_keeps_a_terminal_or_a_stream_without_a_descriptor():
    sink = io.StringIO()
    assert logs.console(sink) is sink


def test_the_console_stream_keeps_its_origin_alive(tmp_path):
    import gc
    stream = logs.console(open(tmp_path / "out.log", "w"))     # nobody else holds the file
    gc.collect()
    stream.write("still open\n")
    stream.flush()
    assert (tmp_path / "out.log").read_text() == "still open\n"
    stream.close()
    stream.origin.close()


def test_info_lines_skip_the_log_record_yet_read_the_same(logger, monkeypatch):
    log, sink = logger
    log.info("[REQ] model: %s", "a")

    def no_records(*args, **kwargs):
        raise AssertionError("the fast path made a LogRecord")
    monkeypatch.setattr(log, "makeRecord", no_records)
    logs.info(log, "[REQ] model: b")
    assert sink.flushes == 0  # batched like any INFO line
    first, second = sink.getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} INFO  \[REQ\] model: a", first)
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} INFO  \[REQ\] model: b", second)


def test_info_lines_honour_levels(logger):
    log, sink = logger
    log.setLevel(logging.WARNING)
    logs.info(log, "not shown")
    log.setLevel(logging.INFO)
    log.handlers[0].setLevel(logging.WARNING)
    logs.info(log, "not shown either")
    assert sink.getvalue() == ""


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_info_lines_reach_other_handlers_and_filters_as_records(logger):
    log, sink = logger
    other = Records()
    log.addHandler(other)
    logs.info(log, "to both")
    log.removeHandler(other)
    seen = []
    log.addFilter(lambda record: seen.append(record.getMessage()) or True)
    logs.info(log, "filtered")
    assert [r.getMessage() for r in other.records] == ["to both"]
    assert seen == ["filtered"]
    assert [line.split("INFO  ")[1] for line in sink.getvalue().splitlines()] == ["to both", "filtered"]


def test_the_time_stamp_gives_milliseconds_as_three_digits():
    import time as _time

    from clewdr_lite.logs import ClockFormatter
    fmt = ClockFormatter()
    base = 1_760_000_000  # a whole second
    prefix = _time.strftime("%H:%M:%S", _time.localtime(base))
    stamps = [fmt.stamp(base + fraction) for fraction in (0.0, 0.005, 0.0509, 0.5, 0.9999)]
    assert stamps == [f"{prefix}.{ms}" for ms in ("000", "005", "050", "500", "999")]
