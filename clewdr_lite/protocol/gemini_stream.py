"""Hub (Anthropic) stream events → Gemini `streamGenerateContent` bytes (conversions.md §9.4, gemini.md §10.2).

With `sse=True` each chunk is `data: <json>\\n\\n` (google-genai and Gemini CLI split on any blank
line, `\\n\\n` or `\\r\\n\\r\\n`); with `sse=False` the chunks form one JSON array written as it grows:
`[` first, `,\\n` next …, `]` at close().
"""

from __future__ import annotations

from typing import Mapping

from .lenient import tool_input
from .gemini_response import finish_reason, google_error, hub_error, usage_metadata
from .sse import dumps

LOST_MESSAGE = "upstream connection lost"


def _order(index) -> int:
    return index if isinstance(index, int) else -1


class _Call:
    """A tool_use block being collected until it is complete."""

    __slots__ = ("id", "name", "start_input", "fragments")

    def __init__(self, block: dict) -> None:
        self.id = block.get("id")
        self.name = block.get("name") or ""
        self.start_input = block.get("input") if isinstance(block.get("input"), dict) else {}
        self.fragments: list[str] = []

    def args(self) -> dict:
        """The call's arguments: the deltas parsed leniently, else the input the start carried."""
        return tool_input("".join(self.fragments)) if self.fragments else self.start_input


class GeminiStream:
    """Translates one hub event stream into Gemini chunks: `feed(event)` per event, `close()` once."""

    def __init__(self, *, model: str, response_id: str, include_thoughts: bool, sse: bool,
                 tool_names: Mapping[str, str] | None = None) -> None:
        # The envelope is fixed for the whole stream: each text chunk is two constant strings
        # around its part, with no dict building on the hot path.
        self._tail = f',"modelVersion":{dumps(model)},"responseId":{dumps(response_id)}}}'
        self._head = '{"candidates":[{"content":{"role":"model","parts":['
        self._part_tail = ']},"index":0}]' + self._tail
        self._include_thoughts = include_thoughts
        self._sse = sse
        self._names = tool_names or {}
        self._written = 0  # objects written (the JSON array form needs `[` before the first)
        self._calls: dict = {}  # hub block index -> _Call, for open tool_use blocks
        self._usage: dict = {}
        self._stop_reason: str | None = None
        self._stopped = self._errored = self._closed = False
        self._events = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    def feed(self, event: dict) -> bytes:
        """Bytes for one hub event (often b""); events after message_stop or error are ignored."""
        if self._stopped or self._errored:
            return b""
        handler = self._events.get(event.get("type"))
        return handler(event) if handler else b""  # ping and unknown events: nothing

    def close(self) -> bytes:
        """What is left at the end: an error chunk when the message never ended, and `]`."""
        if self._closed:
            return b""
        self._closed = True
        out = b""
        if not (self._stopped or self._errored):
            out = self._object(dumps(google_error(500, LOST_MESSAGE)))
        if self._sse:
            return out
        return out + (b"]" if self._written else b"[]")

    # ------------------------------------------------------------------------------------ chunks

    def _object(self, text: str) -> bytes:
        if self._sse:
            return ("data: " + text + "\n\n").encode("utf-8", "replace")
        prefix = ",\n" if self._written else "["
        self._written += 1
        return (prefix + text).encode("utf-8", "replace")

    def _text(self, text: str, thought: bool = False) -> bytes:
        mark = ',"thought":true' if thought else ""
        return self._object(self._head + '{"text":' + dumps(text) + mark + "}" + self._part_tail)

    def _call(self, call: _Call) -> bytes:
        part = {"functionCall": {"id": call.id, "name": self._names.get(call.name, call.name),
                                 "args": call.args()}}
        if call.id is None:
            del part["functionCall"]["id"]
        return self._object(self._head + dumps(part) + self._part_tail)

    def _final(self) -> bytes:
        candidate = {"content": {"role": "model", "parts": [{"text": ""}]},
                     "finishReason": finish_reason(self._stop_reason), "index": 0}
        body = dumps({"candidates": [candidate], "usageMetadata": usage_metadata(self._usage)})
        return self._object(body[:-1] + self._tail)

    # ------------------------------------------------------------------------------------ events

    def _message_start(self, event: dict) -> bytes:
        usage = (event.get("message") or {}).get("usage")
        if usage:
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        return b""

    def _block_start(self, event: dict) -> bytes:
        block = event.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use":
            self._calls[event.get("index")] = _Call(block)
        elif kind == "text" and block.get("text"):
            return self._text(block["text"])
        elif kind == "thinking" and block.get("thinking") and self._include_thoughts:
            return self._text(block["thinking"], thought=True)
        return b""  # server tools, redacted thinking: nothing

    def _block_delta(self, event: dict) -> bytes:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return self._text(delta["text"])
        if kind == "thinking_delta" and delta.get("thinking") and self._include_thoughts:
            return self._text(delta["thinking"], thought=True)
        if kind == "input_json_delta" and event.get("index") in self._calls:
            self._calls[event["index"]].fragments.append(delta.get("partial_json") or "")
        return b""  # signatures, citations: nothing

    def _block_stop(self, event: dict) -> bytes:
        call = self._calls.pop(event.get("index"), None)
        return self._call(call) if call else b""  # a call goes out once it is complete

    def _message_delta(self, event: dict) -> bytes:
        usage = event.get("usage")
        if usage:  # cumulative counts: later values replace earlier ones
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        reason = (event.get("delta") or {}).get("stop_reason")
        if reason:
            self._stop_reason = reason
        return b""

    def _message_stop(self, _event: dict) -> bytes:
        self._stopped = True
        # calls whose block never closed still reach the client, in block order
        out = b"".join(self._call(self._calls[i]) for i in sorted(self._calls, key=_order))
        self._calls.clear()
        return out + self._final()

    def _error(self, event: dict) -> bytes:
        self._errored = True
        return self._object(dumps(hub_error(event.get("error"))))
