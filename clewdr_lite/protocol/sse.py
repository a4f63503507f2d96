"""Server-sent events: an incremental decoder (WHATWG event-stream rules) and an encoder."""

from __future__ import annotations

import json
import re
from typing import NamedTuple

COMMENT_KEEPALIVE = b": keep-alive\n\n"

_UTF8_BOM = "\ufeff"
# SSE line ends are \r\n, \n and \r only; str.splitlines() would also split on \x85, \u2028 ….
_LINE_END = re.compile(r"\r\n|\r|\n")
# One encoder instance each: json.dumps() builds a fresh JSONEncoder on every call with non-default
# options. `dumps`: compact JSON text, non-ASCII kept (as OpenAI and Anthropic write it).
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_ascii_dumps = json.JSONEncoder(separators=(",", ":")).encode


def json_bytes(obj: object) -> bytes:
    """Compact JSON as UTF-8 bytes; a lone surrogate (valid JSON, not UTF-8) stays \\u-escaped."""
    text = dumps(obj)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _ascii_dumps(obj).encode("ascii")


def ends_event(data: bytes) -> bool:
    """Whether a chunk of an event stream ends on an event boundary (a blank line)."""
    return data.endswith((b"\n\n", b"\r\n\r\n", b"\r\r"))


class ByteRelay:
    """A stream translator (send_stream's feed/close) for upstream event-stream bytes passed on as
    they come; `relay()` may edit them. A hub `error` event (the upstream failed after the first
    byte) is written as `error_bytes()` renders it in the dialect, after a blank line when an
    upstream event was left open."""

    def __init__(self) -> None:
        self.at_boundary = True

    def feed(self, data: bytes | dict) -> bytes:
        """The bytes (relayed), or an error event's."""
        if isinstance(data, dict):
            return (b"" if self.at_boundary else b"\n\n") + self.error_bytes(data)
        data = self.relay(data)
        self.at_boundary = ends_event(data)
        return data

    def relay(self, data: bytes) -> bytes:
        """The bytes as they came."""
        return data

    def error_bytes(self, event: dict) -> bytes:
        """An `error` event in the stream's dialect."""
        raise NotImplementedError

    def close(self) -> bytes:
        """Nothing trails."""
        return b""


class Event(NamedTuple):
    """One dispatched event; `event` is "" when the stream gave no `event:` line."""

    event: str
    data: str
    id: str | None


# Builds an Event in C: NamedTuple's Python-level __new__ costs twice as much on the hot path.
_new_tuple = tuple.__new__


class SSEDecoder:
    """Incremental event-stream decoder: feed() bytes as they arrive, close() at end of stream.

    Bytes are buffered up to the last line end of each chunk and the complete part is decoded at
    once, so a UTF-8 character split across chunks is decoded whole (line ends are ASCII and never
    occur inside a multi-byte sequence). A chunk ending in `\\r` may be the first half of a `\\r\\n`
    split across chunks: the `\\n` that may open the next chunk is then swallowed, not read as a
    blank line (the bug that made Clove merge or split events).
    """

    __slots__ = ("_pending", "_cr", "_started", "_event", "_data", "_id")

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # a line that has not ended yet, in pieces
        self._cr = False  # the last chunk ended in \r
        self._started = False  # the first line has been decoded (BOM check done)
        self._event = ""
        self._data: str | None = None  # None: no data line yet, so nothing to dispatch
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        """Take the next chunk of the stream; return the events it completes."""
        if not chunk:
            return []
        if self._cr:
            self._cr = False
            if chunk[0] == 10:  # the \n of a \r\n split across chunks
                chunk = chunk[1:]
                if not chunk:
                    return []
        last = chunk[-1]
        if last == 10:
            end = len(chunk)
        elif last == 13:
            end = len(chunk)
            self._cr = True
        else:
            end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
            if not end:
                self._pending.append(chunk)
                return []
        if self._pending:
            self._pending.append(chunk[:end])
            region = b"".join(self._pending)
            self._pending = [chunk[end:]] if end < len(chunk) else []
        elif end < len(chunk):
            region = chunk[:end]
            self._pending = [chunk[end:]]
        else:
            region = chunk
        text = region.decode("utf-8", "replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        lines.pop()  # the region ends with a line end, so the last piece is always ""
        return self._lines(lines)

    def feed_sparse(self, chunk: bytes, markers: tuple[bytes, ...]) -> list[Event]:
        """feed() for a caller that wants only the events containing one of `markers` (bytes
        without line ends): when the decoder is between events, the whole events that open the
        chunk before the first marker are passed over undecoded (unless one has an `id:` field,
        which outlives its event). The rest, chunks arriving mid-event and `\r` line ends are
        decoded as feed() does. Every event returned is one feed() returns; every event with a
        marker is returned.
        """
        if (self._pending or self._cr or self._data is not None or self._event or not self._started
                or b"\r" in chunk):
            return self.feed(chunk)
        first = len(chunk)
        for marker in markers:
            at = chunk.find(marker, 0, first)
            if at >= 0:
                first = at
        skip = chunk.rfind(b"\n\n", 0, first) + 2  # the end of the last whole event before it
        if skip < 2 or b"\nid:" in chunk[:skip] or chunk.startswith(b"id:"):
            return self.feed(chunk)
        return self.feed(chunk[skip:]) if skip < len(chunk) else []

    def close(self) -> list[Event]:
        """End of stream: return the last event if it had data but no closing blank line.

        WHATWG discards such an event; we dispatch it (treating the end of the stream as the end of
        the last line too), because some OpenAI-compatible servers omit the final blank line after
        `data: [DONE]` or their last chunk, and losing a final event is worse than handing a
        truncated one to the caller, whose JSON parse then fails loudly.
        """
        lines = [b"".join(self._pending).decode("utf-8", "replace")] if self._pending else []
        lines.append("")
        self._pending = []
        self._cr = False
        return self._lines(lines)

    def _lines(self, lines: list[str]) -> list[Event]:
        """Interpret complete lines (no line ends) and return the events they dispatch."""
        if not self._started and lines:
            self._started = True
            if lines[0].startswith(_UTF8_BOM):  # UTF-8 decode strips one leading BOM (WHATWG)
                lines[0] = lines[0][1:]
        events: list[Event] = []
        event, data, last_id = self._event, self._data, self._id
        for line in lines:
            if not line:
                # A blank line dispatches; an event without data lines is dropped but still resets.
                if data is not None:
                    events.append(_new_tuple(Event, (event, data, last_id)))
                    data = None
                event = ""
                continue
            name, _, value = line.partition(":")  # no colon: the whole line names a field, value ""
            if value[:1] == " ":
                value = value[1:]
            # Comment lines have an empty name and fall through; `retry` is ignored: we never reconnect.
            if name == "data":
                data = value if data is None else data + "\n" + value
            elif name == "event":
                event = value
            elif name == "id" and "\0" not in value:
                last_id = value  # WHATWG: the last event ID persists across events
        self._event, self._data, self._id = event, data, last_id
        return events


def encode(data: str, event: str | None = None) -> bytes:
    """One event as bytes; a data string with line ends becomes several `data:` lines."""
    if "\n" in data or "\r" in data:
        data = "\ndata: ".join(_LINE_END.split(data))
    if event is None:
        return f"data: {data}\n\n".encode()
    if "\n" in event or "\r" in event:
        raise ValueError("SSE event name must not contain a line end")
    return f"event: {event}\ndata: {data}\n\n".encode()


def encode_json(obj: object, event: str | None = None) -> bytes:
    """One event whose data is `obj` as compact JSON (non-ASCII kept; JSON never has raw line ends)."""
    data = dumps(obj)
    if event is None:
        return f"data: {data}\n\n".encode()
    if "\n" in event or "\r" in event:
        raise ValueError("SSE event name must not contain a line end")
    return f"event: {event}\ndata: {data}\n\n".encode()
