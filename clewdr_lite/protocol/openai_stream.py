"""Hub (Anthropic) stream events → OpenAI `chat.completion.chunk` SSE bytes (conversions.md §5)."""

from __future__ import annotations

from typing import Mapping

from .openai import check_thinking_output, finish_reason, usage_from_hub
from .sse import dumps

DONE = b"data: [DONE]\n\n"
LOST_MESSAGE = "upstream connection lost"

# §14: Anthropic error type -> OpenAI error type; anything else is a server error
_ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "request_too_large": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
}
# thinking_output mode -> the delta key thinking text goes out under (None: not sent)
_THINKING_KEY = {"reasoning_content": "reasoning_content", "think_tags": "content", "drop": None}


def _error_chunk(message: str, kind: str) -> bytes:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return ("data: " + dumps(body) + "\n\n").encode("utf-8", "replace")


def error_chunk(event: dict) -> bytes:
    """A hub `error` event as an OpenAI stream's error chunk."""
    error = event.get("error") or {}
    kind = _ERROR_TYPES.get(error.get("type"), "server_error")
    return _error_chunk(str(error.get("message") or "upstream error"), kind)


class OpenAIStream:
    """Translates one hub event stream into OpenAI chunks: `feed(event)` per event, `close()` once."""

    def __init__(self, *, model: str, id: str, created: int, include_usage: bool,
                 thinking_output: str = "reasoning_content",
                 tool_names: Mapping[str, str] | None = None) -> None:
        check_thinking_output(thinking_output)
        # The envelope is fixed for the whole stream, so each chunk is two constant strings around
        # its delta: no dict building or full json.dumps per text delta on the hot path.
        self._envelope = (f'{{"id":{dumps(id)},"object":"chat.completion.chunk","created":{int(created)},'
                          f'"model":{dumps(model)},"system_fingerprint":null')
        self._head = "data: " + self._envelope + ',"choices":[{"index":0,"delta":'
        self._tail = ',"logprobs":null,"finish_reason":null}]}\n\n'
        self._content = self._head + '{"content":'
        key = _THINKING_KEY[thinking_output]
        self._thinking = key and self._head + '{"' + key + '":'
        self._think_tags = thinking_output == "think_tags"
        self._include_usage = include_usage
        self._names = tool_names or {}
        self._tools: dict = {}  # Anthropic block index -> tool-call ordinal k (function tools only)
        self._start_input: dict = {}  # block index -> input given at block start, until a delta comes
        self._thinking_blocks: set = set()
        self._usage: dict = {}
        self._started = self._finished = self._stopped = self._errored = self._closed = False
        self._events = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "content_block_stop": self._block_stop,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }
        self._deltas = {
            "text_delta": self._text_delta,
            "thinking_delta": self._thinking_delta,
            "input_json_delta": self._json_delta,
        }

    def feed(self, event: dict) -> bytes:
        """SSE bytes for one hub event (often b""); events after message_stop or error are ignored."""
        if self._stopped or self._errored:
            return b""
        handler = self._events.get(event.get("type"))
        return handler(event) if handler else b""  # ping and unknown events: nothing

    def close(self) -> bytes:
        """What is left at the end of the upstream stream: finish/usage/error chunks and [DONE]."""
        if self._closed:
            return b""
        self._closed = True
        if self._errored:
            return DONE
        out = b"" if self._finished else self._finish("stop")
        if self._stopped:
            return out + self._usage_chunk() + DONE if self._include_usage else out + DONE
        return out + _error_chunk(LOST_MESSAGE, "server_error") + DONE

    # ------------------------------------------------------------------------------------ chunks

    def _chunk(self, delta_json: str) -> bytes:
        return (self._head + delta_json + self._tail).encode("utf-8", "replace")

    def _text(self, prefix: str, text: str) -> bytes:
        return (prefix + dumps(text) + "}" + self._tail).encode("utf-8", "replace")

    def _finish(self, reason: str) -> bytes:
        self._finished = True
        return (self._head + '{},"logprobs":null,"finish_reason":"' + reason + '"}]}\n\n').encode()

    def _usage_chunk(self) -> bytes:
        usage = dumps(usage_from_hub(self._usage))
        return ("data: " + self._envelope + ',"choices":[],"usage":' + usage + "}\n\n").encode()

    def _tool_args(self, k: int, arguments: str) -> bytes:
        return self._chunk('{"tool_calls":[{"index":%d,"function":{"arguments":%s}}]}'
                           % (k, dumps(arguments)))

    # ------------------------------------------------------------------------------------ events

    def _message_start(self, event: dict) -> bytes:
        usage = (event.get("message") or {}).get("usage")
        if usage:
            self._usage.update(usage)
        if self._started:
            return b""
        self._started = True
        return self._chunk('{"role":"assistant","content":""}')

    def _block_start(self, event: dict) -> bytes:
        block = event.get("content_block") or {}
        kind, index = block.get("type"), event.get("index")
        if kind == "text":
            text = block.get("text")
            return self._text(self._content, text) if text else b""
        if kind == "thinking":
            self._thinking_blocks.add(index)
            out = self._chunk('{"content":"<think>"}') if self._think_tags else b""
            text = block.get("thinking")
            return out + self._text(self._thinking, text) if text and self._thinking else out
        if kind != "tool_use":  # server tools, redacted thinking: nothing (§5)
            return b""
        k = self._tools[index] = len(self._tools)
        if block.get("input"):
            self._start_input[index] = block["input"]
        name = block.get("name") or ""
        call = {"index": k, "id": block.get("id") or "", "type": "function",
                "function": {"name": self._names.get(name, name), "arguments": ""}}
        return self._chunk('{"tool_calls":[' + dumps(call) + "]}")

    def _block_delta(self, event: dict) -> bytes:
        delta = event.get("delta") or {}
        handler = self._deltas.get(delta.get("type"))
        return handler(delta, event.get("index")) if handler else b""  # signature, citations: nothing

    def _text_delta(self, delta: dict, _index) -> bytes:
        text = delta.get("text")
        return self._text(self._content, text) if text else b""

    def _thinking_delta(self, delta: dict, _index) -> bytes:
        text = delta.get("thinking")
        return self._text(self._thinking, text) if text and self._thinking else b""

    def _json_delta(self, delta: dict, index) -> bytes:
        k = self._tools.get(index)
        if k is None:  # a server tool's input: not shown to OpenAI clients
            return b""
        self._start_input.pop(index, None)
        partial = delta.get("partial_json")
        return self._tool_args(k, partial) if partial else b""

    def _block_stop(self, event: dict) -> bytes:
        index = event.get("index")
        if index in self._thinking_blocks:
            self._thinking_blocks.discard(index)
            return self._chunk('{"content":"</think>"}') if self._think_tags else b""
        start_input = self._start_input.pop(index, None)
        if start_input:  # a converter that put the whole input in the start block and sent no deltas
            return self._tool_args(self._tools[index], dumps(start_input))
        return b""

    def _message_delta(self, event: dict) -> bytes:
        usage = event.get("usage")
        if usage:  # cumulative counts (§2.3): later values replace earlier ones
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        if self._finished:
            return b""
        return self._finish(finish_reason((event.get("delta") or {}).get("stop_reason")))

    def _message_stop(self, _event: dict) -> bytes:
        self._stopped = True
        return b""

    def _error(self, event: dict) -> bytes:
        self._errored = True
        return error_chunk(event)
