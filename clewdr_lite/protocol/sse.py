"""Server-sent events: an incremental decoder (WHATWG event-stream rules) and an encoder."""

from __future__ import annotations

import json
import re
from typing import Callable, NamedTuple

COMMENT_KEEPALIVE = b": keep-alive\n\n"

_UTF8_BOM = "\ufeff"
# SSE line ends are \r\n, \n and \r only; str.splitlines() would also split on \x85, \u2028 ….
_LINE_END = re.compile(r"\r\n|\r|\n")


def _compact_encoder():
    """Compact JSON text with non-ASCII kept (as OpenAI and Anthropic write it), at half the cost of
    `JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode`, which builds json's C encoder
    anew on every call (json.dumps() even builds a JSONEncoder): here it is built once, as
    JSONEncoder does it but without the circular-reference check (what is encoded here is made
    from parsed JSON, never circular). Where the C encoder is missing, takes other arguments or
    writes other text, JSONEncoder's own encode is used."""
    plain = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
    try:
        chunks = json.encoder.c_make_encoder(None, plain.default, json.encoder.encode_basestring, None,
                                             ":", ",", False, False, True)
    except (AttributeError, TypeError):  # no C accelerator, or a different signature
        return plain.encode
    join = "".join

    def encode(obj) -> str:
        return join(chunks(obj, 0))
    probe = {"a": [1, 2.5, -0.0, None, True, "é\n\"\ud800"], "b": {}, "c": float("inf")}
    try:
        same = encode(probe) == plain.encode(probe)
    except Exception:  # noqa: BLE001 - any failure means: use the plain encoder
        same = False
    return encode if same else plain.encode


dumps = _compact_encoder()
_ascii_dumps = json.JSONEncoder(separators=(",", ":")).encode


_DECODER = json.JSONDecoder()
_SCAN = _DECODER.scan_once  # the C scanner json.loads() ends in
_JSON_SPACE = " \t\n\r"


def loads(data: str):
    """`json.loads(data)` at a third of its cost, for what is decoded per request or per event (a
    body, an event's data): json.loads wraps the C scanner in two Python calls. Same values;
    anything json.loads rejects raises json.JSONDecodeError (a ValueError) here too."""
    try:
        value, end = _SCAN(data, 0)
    except StopIteration as stop:  # no value at 0: "", leading blanks (json.loads skips them), or bad
        if data[:1] in _JSON_SPACE:
            return json.loads(data)
        raise json.JSONDecodeError("Expecting value", data, stop.value) from None
    except TypeError:  # not a str (bytes, bytearray …): json.loads decodes it, or refuses it
        return json.loads(data)
    if end != len(data):
        rest = data[end:].lstrip(_JSON_SPACE)
        if rest:
            raise json.JSONDecodeError("Extra data", data, len(data) - len(rest))
    return value


def loads_object(data: str) -> dict | None:
    """An event's data as the JSON object a stream converter takes; None for `[DONE]`, bad JSON or
    anything but an object. `loads`' scan is inline (this runs once an event); anything unusual
    (`[DONE]`, bad JSON, blanks around the value, not text) goes through `loads` itself."""
    try:
        obj, end = _SCAN(data, 0)
    except (StopIteration, ValueError, TypeError):
        return _object_or_none(data)
    if end != len(data):
        return _object_or_none(data)
    return obj if type(obj) is dict else None


def _object_or_none(data: str) -> dict | None:
    if data == "[DONE]":
        return None
    try:
        obj = loads(data)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def loads_bytes(raw: bytes, errors: str = "surrogatepass"):
    """`json.loads(raw)` for bytes, through `loads`: a body that opens with `{` and no NUL after it
    is what json.loads takes for UTF-8 (decoded as it decodes, surrogates passed; `errors="strict"`
    refuses encoded surrogates with a UnicodeDecodeError); anything else (UTF-16 or -32, a
    byte-order mark) goes to json.loads, which sniffs the encoding."""
    if raw[:1] == b"{" and raw[1:2] != b"\x00":
        return loads(raw.decode("utf-8", errors))
    return json.loads(raw)


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


_WHITESPACE = b" \t\r\n"
_VALUE = _DECODER.raw_decode


class UsageScanner:
    """The usage objects a JSON or event-stream body reports, read from relayed bytes without
    decoding the body: after each `"<key>":` one JSON value is decoded (across chunks when a
    chunk's end cuts it) and `found(value)` gets it when it is an object (OpenAI streams carry
    `"usage": null` in every chunk). Inside a JSON string the key's quotes are escaped, so text
    never matches; the last object a stream reports is its final count."""

    LIMIT = 4096  # bytes a usage value may take; a longer one is not a usage object

    def __init__(self, key: str, found: Callable[[dict], None]) -> None:
        self._marker = b'"' + key.encode() + b'"'
        self._found = found
        self._cut = b""  # from a marker whose value the last chunk cut
        self._carry = b""  # the last chunk's end, shorter than the marker: a marker may span two

    def feed(self, chunk: bytes) -> None:
        """Scan the next bytes of the body."""
        marker, carry = self._marker, self._carry
        if self._cut:
            data, self._cut = self._cut + chunk, b""
            start = 0
        else:
            data, start = chunk, 0
            if carry:  # only a marker that spans the two chunks is looked for here
                at = (carry + chunk[:len(marker) - 1]).find(marker)
                if at >= 0:
                    data, start = carry + chunk, at
        at = data.find(marker, start)
        while at >= 0:
            end = self._value(data, at)
            if end < 0:  # cut by the chunk's end: wait for the rest (within LIMIT)
                self._cut = data[at:] if len(data) - at < self.LIMIT else b""
                self._carry = b""
                return
            at = data.find(marker, end)
        keep = len(marker) - 1
        self._carry = data[-keep:] if len(data) >= keep else (carry + data)[-keep:]

    def _value(self, data: bytes, at: int) -> int:
        """Decode the value after the marker at `at`; the index to search on from, -1 when cut."""
        pos = self._skip(data, at + len(self._marker))
        if pos == len(data):
            return -1
        if data[pos] != 58:  # no `:` after it: a string that reads like the key, not a key
            return pos
        pos = self._skip(data, pos + 1)
        text = data[pos:pos + self.LIMIT].decode("utf-8", "replace")
        try:
            value, used = _VALUE(text)
        except ValueError:  # not JSON (passed over), or cut by the chunk's end (wait for more)
            cut = pos + self.LIMIT > len(data) and data.find(self._marker, pos) < 0
            return -1 if cut else pos
        if isinstance(value, dict):
            self._found(value)
        return pos + len(text[:used].encode())

    @staticmethod
    def _skip(data: bytes, pos: int) -> int:
        while pos < len(data) and data[pos] in _WHITESPACE:
            pos += 1
        return pos


class ByteRelay:
    """A stream translator (send_stream's feed/close) for upstream event-stream bytes passed on as
    they come; `relay()` may edit them. A hub `error` event (the upstream failed after the first
    byte) is written as `error_bytes()` renders it in the dialect, after a blank line when an
    upstream event was left open. A `usage` scanner sees the bytes as they pass."""

    def __init__(self, usage: UsageScanner | None = None) -> None:
        self.at_boundary = True
        self._usage = usage

    def feed(self, data: bytes | dict) -> bytes:
        """The bytes (relayed), or an error event's."""
        if isinstance(data, dict):
            return (b"" if self.at_boundary else b"\n\n") + self.error_bytes(data)
        if self._usage is not None:
            self._usage.feed(data)
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
        if skip < 2 or chunk.find(b"\nid:", 0, skip) >= 0 or chunk.startswith(b"id:"):
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
            if line.startswith("data: "):  # the usual field lines first: no partition, no second slice
                data = line[6:] if data is None else data + "\n" + line[6:]
                continue
            if line.startswith("event: "):
                event = line[7:]
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
