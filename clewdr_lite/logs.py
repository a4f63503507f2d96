"""Log output that costs little per line: ClewdR's line format, and flushes batched off the event loop.

A proxy logs a `[REQ]` line per request. With the standard handlers each line costs a `strftime`
and a flush (a write system call) on the event loop. Here the time prefix is rebuilt once a second,
and INFO lines to a file or pipe are flushed by a helper thread at most FLUSH_S later (all queued
lines in one write); WARNING and worse, and anything to a terminal, are flushed at once.
"""

from __future__ import annotations

import io
import logging
import threading
import time

FLUSH_S = 0.2


def lean_records() -> None:
    """Skip what our line format never shows: caller lookup, thread and process names per record."""
    logging._srcfile = None  # the logging HOWTO's "Optimization" section names this switch
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


class ClockFormatter(logging.Formatter):
    """`HH:MM:SS.mmm LEVEL message` (compat.md §10.2), local time."""

    def __init__(self) -> None:
        super().__init__("%(message)s")
        self._second = -1
        self._prefix = ""

    def stamp(self, created: float) -> str:
        """`HH:MM:SS.mmm` of a time.time() value."""
        second = int(created)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%H:%M:%S", time.localtime(second))
        return f"{self._prefix}.{str(int((created - second) * 1000) + 1000)[1:]}"  # 3 digits, no format spec

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.stamp(record.created)} {record.levelname:<5} {record.getMessage()}"
        if record.exc_info or record.stack_info:
            if record.exc_info and not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
            line += "\n" + (record.exc_text or "") + ("\n" + self.formatStack(record.stack_info)
                                                      if record.stack_info else "")
        return line


class _Flusher:
    """One daemon thread that flushes handlers whose lines are waiting; asleep while none are."""

    def __init__(self) -> None:
        self._waiting: set = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def want(self, handler: "LazyFlush") -> None:
        if handler in self._waiting:  # already due (a set test is atomic; the thread swaps the set)
            return
        with self._cond:
            if handler in self._waiting:
                return
            self._waiting.add(handler)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-flush", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._waiting)
            time.sleep(FLUSH_S)  # let the lines of the next requests join this write
            with self._cond:
                handlers, self._waiting = self._waiting, set()
            for handler in handlers:
                try:
                    handler.flush_now()
                except (OSError, ValueError):  # closed meanwhile (shutdown): nothing left to write
                    pass


FLUSHER = _Flusher()


class LazyFlush:
    """Mixin for a StreamHandler subclass: see the module docstring."""

    _urgent = True
    _tty: bool | None = None

    def handle(self, record: logging.LogRecord) -> bool:
        if self._tty is None:
            self._tty = _is_tty(self)
        self._urgent = record.levelno >= logging.WARNING or self._tty
        return super().handle(record)

    def flush(self) -> None:
        if self._urgent:
            self.flush_now()
        else:
            FLUSHER.want(self)

    def flush_now(self) -> None:
        super().flush()

    def close(self) -> None:
        self._urgent = True
        self.flush_now()
        super().close()


def info(logger: logging.Logger, message: str) -> None:
    """`logger.info(message)` for a line per request, at a fraction of the cost.

    When every handler the record would reach is our console handler with our formatter and
    nothing filters, the line is formatted and written here, without a LogRecord; otherwise (a
    file handler, a test's capture, a filter) it goes through `logger.info` as usual.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    handlers = []
    node = logger
    while node is not None:
        if node.filters:
            return logger.info("%s", message)
        for handler in node.handlers:
            if type(handler) is not StreamHandler or handler.filters \
                    or type(handler.formatter) is not ClockFormatter:
                return logger.info("%s", message)
            if handler.level <= logging.INFO:
                handlers.append(handler)
        node = node.parent if node.propagate else None
    for handler in handlers:
        handler.write_line(f"{handler.formatter.stamp(time.time())} INFO  {message}")


def _is_tty(handler) -> bool:
    stream = getattr(handler, "stream", None)
    try:
        return bool(stream is not None and stream.isatty())
    except (ValueError, OSError):
        return False


class StreamHandler(LazyFlush, logging.StreamHandler):
    """Console lines."""

    def write_line(self, line: str) -> None:
        """An INFO line formatted by `info()`: written as emit() would, flushed lazily."""
        if self._tty is None:
            self._tty = _is_tty(self)
        with self.lock:
            try:
                self._urgent = self._tty
                self.stream.write(line + self.terminator)
                self.flush()
            except Exception:  # as logging does: a failing stream must not break the caller
                self.handleError(logging.makeLogRecord({"msg": line}))


def console(stream):
    """`stream` itself on a terminal; else a buffered text stream on its file descriptor.

    PYTHONUNBUFFERED (set by many service units and container images) makes sys.stdout write
    each line with its own system call on the event loop; the lines to a file or pipe are
    batched here whatever it says. A stream without a descriptor (a test's capture) is kept.
    """
    try:
        fd = stream.fileno()
        if stream.isatty():
            return stream
    except (AttributeError, ValueError, OSError):
        return stream
    raw = io.FileIO(fd, "w", closefd=False)
    buffered = io.TextIOWrapper(io.BufferedWriter(raw, 65536), encoding=getattr(stream, "encoding", None) or "utf-8",
                                errors="backslashreplace", newline=None, write_through=False)
    buffered.origin = stream  # the descriptor's owner lives as long as we write to it
    return buffered


def flush_all() -> None:
    """Write out every waiting line now (before something else writes to the same descriptor)."""
    for handler in logging.getLogger().handlers:
        (handler.flush_now if isinstance(handler, LazyFlush) else handler.flush)()


def file_handler(path):
    """The daily file (`log_to_file`), rotated at midnight, 14 kept."""
    from logging.handlers import TimedRotatingFileHandler

    class _Daily(LazyFlush, TimedRotatingFileHandler):
        pass
    return _Daily(path, when="midnight", backupCount=14)
