"""OpenAI-compatible upstream answers → hub: a stream to hub events (conversions §8), a response to a message (§7).

Both paths read reasoning per quirk `reasoning_field`, fix tool ids per `fix_tool_ids`, map
`finish_reason` (§12) and usage (§13) the same way. In the stream, tool blocks stay open until the
end so interleaved fragments of parallel calls always land in an open block, and text after a tool
call opens a new block at a new index (the CCR pitfalls of §15).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Mapping

from ..errors import UpstreamError, anthropic_type
from .lenient import tool_input
from .openai import safe_id
from .sse import dumps
from .tokens import estimate_output, token_count

# The flags of providers.QUIRK_DEFAULTS this converter pair reads, for callers that pass only some
# (a test checks they agree with the provider table).
QUIRK_DEFAULTS = {
    "max_tokens_field": "max_tokens", "max_tokens_cap": 0, "reasoning_field": "auto",
    "reasoning_request": "effort", "send_reasoning_back": False, "stream_usage": True,
    "supports_top_k": False, "max_stop_sequences": 4, "keep_cache_control": False,
    "strip_schema_keys": (), "fix_tool_ids": True, "repair_tool_json": True,
    "force_tool_mode": False, "drop_params": (), "extra_body": {}, "image_url_only": False,
}
EXIT_TOOL = "ExitTool"  # quirk force_tool_mode: the model's way out of tool mode (gateway §2.4)
EMPTY_MESSAGE = "the upstream ended the stream without a response"
# §12 reverse: OpenAI finish_reason -> Anthropic stop_reason; null or unknown -> end_turn
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                 "function_call": "tool_use", "content_filter": "refusal"}
# quirk reasoning_field -> the message/delta keys reasoning is read from, first non-empty wins
_REASONING_KEYS = {"auto": ("reasoning_content", "reasoning"), "reasoning_content": ("reasoning_content",),
                   "reasoning": ("reasoning",), "none": ()}
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")


def flags(quirks: Mapping | None) -> dict:
    """Every quirk flag: the defaults overridden by `quirks`."""
    return {**QUIRK_DEFAULTS, **(quirks or {})}


def stop_reason(finish: str | None, has_tools: bool, refused: bool = False) -> str:
    """§12: Anthropic stop_reason for a finish_reason, given whether real tool calls came back."""
    reason = _STOP_REASONS.get(finish, "end_turn")
    if reason == "tool_use" and not has_tools:  # e.g. only an ExitTool call, turned into text
        return "end_turn"
    if reason == "end_turn" and has_tools:  # servers that send "stop" with tool calls
        return "tool_use"
    return "refusal" if reason == "end_turn" and refused else reason


def hub_usage(usage: Mapping) -> dict:
    """§13 reverse: cached prompt tokens split off `prompt_tokens` (DeepSeek's own field too)."""
    details = usage.get("prompt_tokens_details")
    cached = (token_count(details.get("cached_tokens")) or 0) if isinstance(details, dict) else 0
    cached = cached or token_count(usage.get("prompt_cache_hit_tokens")) or 0
    prompt = token_count(usage.get("prompt_tokens")) or 0
    return {"input_tokens": max(prompt - cached, 0), "output_tokens": token_count(usage.get("completion_tokens")) or 0,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def reasoning_text(message: Mapping, field: str) -> str:
    """The reasoning of a message or delta, read per quirk `reasoning_field`."""
    for key in _REASONING_KEYS.get(field, ()):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def content_text(content) -> str:
    """`content` as text: a string, or the text parts of a list (some servers send parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content
                       if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def fresh_tool_id(msg_id: str, n: int) -> str:
    """`toolu_<random>` for the n-th replaced id; the randomness is the (random) message id's."""
    return f"toolu_{safe_id(msg_id.removeprefix('msg_'))}_{n}"


def tool_arguments(raw, repair: bool) -> dict:
    """Tool `input` from `arguments`: JSON, then (quirk repair_tool_json) lenient JSON, else raw."""
    if isinstance(raw, dict):  # some local servers send the object itself
        return copy.deepcopy(raw)
    if not isinstance(raw, str) or not raw.strip():
        return {}
    if repair:
        return tool_input(raw)
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw_arguments": raw}
    return value if isinstance(value, dict) else {"_raw_arguments": raw}


def exit_text(arguments: dict) -> str:
    """The plain answer carried by an ExitTool call (quirk force_tool_mode)."""
    response = arguments.get("response")
    if isinstance(response, str):
        return response
    return dumps(arguments) if arguments else ""


def upstream_error(error) -> UpstreamError:
    """An `{"error": …}` body that came with a 2xx status, as an UpstreamError."""
    error = error if isinstance(error, dict) else {"message": str(error)}
    code = error.get("code")
    status = code if isinstance(code, int) and not isinstance(code, bool) and code >= 400 else 502
    return UpstreamError(str(error.get("message") or "upstream error"), status=status,
                         type=anthropic_type(status))


def stream_signal(chunk: Mapping) -> dict | None:
    """What a parsed OpenAI stream chunk means to a hold before the answer: a hub `error` event
    for an `{"error": …}` chunk, `{"type": "content_block_start"}` once the answer begins (text,
    reasoning, a tool call, a refusal or a finish), else None (a role chunk, usage, keep-alive)."""
    if chunk.get("error") is not None:
        error = upstream_error(chunk["error"])
        return {"type": "error", "error": {"type": error.type, "message": error.message}}
    choice = _first_choice(chunk)
    delta = choice.get("delta")
    if choice.get("finish_reason") or (isinstance(delta, dict) and any(
            delta.get(key) for key in ("content", "reasoning_content", "reasoning", "tool_calls", "refusal"))):
        return {"type": "content_block_start"}
    return None


def _first_choice(data: Mapping) -> dict:
    choices = data.get("choices")
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}


class _ToolIds:
    """Tool ids as they go to the client: kept when valid, else `toolu_<random>` (quirk fix_tool_ids)."""

    def __init__(self, msg_id: str, fix: bool) -> None:
        self.msg_id, self.fix, self.made = msg_id, fix, 0

    def __call__(self, raw) -> str:
        """The id to send for the upstream's `raw` id."""
        if isinstance(raw, (str, int)) and not isinstance(raw, bool) and str(raw):
            if not self.fix or (isinstance(raw, str) and _SAFE_ID.fullmatch(raw)):
                return str(raw)
        self.made += 1
        return fresh_tool_id(self.msg_id, self.made - 1)


# --------------------------------------------------------------------------- non-streaming (§7)


def openai_to_hub_message(resp: dict, *, model: str, msg_id: str, signature: str, quirks: dict,
                          input_tokens: int = 0) -> dict:
    """A hub message for a `chat.completion` (§7); an `{"error": …}` body raises UpstreamError."""
    if resp.get("error") is not None:
        raise upstream_error(resp["error"])
    q = flags(quirks)
    choice = _first_choice(resp)
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content, texts = [], [content_text(message.get("content"))]
    thinking = reasoning_text(message, q["reasoning_field"])
    if thinking:  # thinking first (CCR put it last)
        content.append({"type": "thinking", "thinking": thinking, "signature": signature})
    refusal = message.get("refusal")
    if isinstance(refusal, str):
        texts.append(refusal)
    calls = _tool_uses(message, q, msg_id, texts)
    text = "".join(texts)
    if text:
        content.append({"type": "text", "text": text})
    content += calls
    usage = resp.get("usage")
    if isinstance(usage, dict) and ("prompt_tokens" in usage or "completion_tokens" in usage):
        usage = hub_usage(usage)
    else:  # no usage from the upstream: the local estimates (§13)
        emitted = thinking + text + "".join(dumps(c["input"]) for c in calls)
        usage = {"input_tokens": input_tokens, "output_tokens": estimate_output(emitted),
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason(choice.get("finish_reason"), bool(calls), isinstance(refusal, str)),
            "stop_sequence": None, "usage": usage}


def _tool_uses(message: Mapping, q: Mapping, msg_id: str, texts: list) -> list:
    """tool_use blocks for the message's tool calls; ExitTool calls go to `texts` instead."""
    calls = message.get("tool_calls") if isinstance(message.get("tool_calls"), list) else []
    if isinstance(message.get("function_call"), dict):  # the legacy single-call form
        calls = calls + [{"function": message["function_call"]}]
    ids, blocks = _ToolIds(msg_id, q["fix_tool_ids"]), []
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            continue
        name = str(fn.get("name") or "")
        arguments = tool_arguments(fn.get("arguments"), q["repair_tool_json"])
        if q["force_tool_mode"] and name == EXIT_TOOL:
            texts.append(exit_text(arguments))
            continue
        blocks.append({"type": "tool_use", "id": ids(call.get("id")), "name": name, "input": arguments})
    return blocks


# --------------------------------------------------------------------------------- stream (§8)


class _Tool:
    """One streamed tool call: its hub block index (None for an ExitTool), id, name, argument text."""

    __slots__ = ("index", "id", "name", "args")

    def __init__(self, index: int | None, call_id: str, name: str) -> None:
        self.index, self.id, self.name, self.args = index, call_id, name, []


class OpenAIToHub:
    """Translates parsed OpenAI stream chunks into hub events: `feed(chunk)` each, `close()` once."""

    def __init__(self, *, model: str, msg_id: str, signature: str, input_tokens: int, quirks: dict) -> None:
        q = flags(quirks)
        self._model, self._msg_id, self._signature = model, msg_id, signature
        self._input_tokens = input_tokens
        self._reasoning_field, self._force = q["reasoning_field"], q["force_tool_mode"]
        self._ids = _ToolIds(msg_id, q["fix_tool_ids"])
        self._next = 0  # next hub block index
        self._open: tuple[str, int] | None = None  # ("text" | "thinking", index) of the open block
        self._tools: dict = {}  # OpenAI tool-call key (its `index`) -> _Tool, in arrival order
        self._last_key = None
        self._emitted: list[str] = []  # for the output estimate when usage never comes
        self._finish: str | None = None
        self._usage: dict | None = None
        self._refused = self._started = self._done = False

    def feed(self, chunk: dict) -> list[dict]:
        """Hub events for one parsed chunk; an error chunk ends the stream with an `error` event."""
        if self._done:
            return []
        if chunk.get("error") is not None:
            self._done = True
            message = upstream_error(chunk["error"]).message
            return [{"type": "error", "error": {"type": "api_error", "message": message}}]
        out = [] if self._started else self._start(chunk)
        if isinstance(chunk.get("usage"), dict):  # may come late, in a chunk with `choices: []`
            self._usage = chunk["usage"]
        choice = _first_choice(chunk)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            out += self._delta(delta)
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
        return out

    def close(self) -> list[dict]:
        """Close every block in order; message_delta with stop_reason and usage; message_stop."""
        if self._done:
            return []
        self._done = True
        if not self._started:
            return [{"type": "error", "error": {"type": "api_error", "message": EMPTY_MESSAGE}}]
        out = self._close_open()
        real = sorted((t for t in self._tools.values() if t.index is not None), key=lambda t: t.index)
        out += [{"type": "content_block_stop", "index": t.index} for t in real]
        for tool in self._tools.values():
            if tool.index is None:  # an ExitTool call: its answer as plain text
                out += self._exit_block(tool)
        reason = stop_reason(self._finish, bool(real), self._refused)
        out.append({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                    "usage": self._final_usage()})
        out.append({"type": "message_stop"})
        return out

    # ------------------------------------------------------------------------------------ blocks

    def _start(self, chunk: dict) -> list[dict]:
        self._started = True
        usage = chunk.get("usage")
        if isinstance(usage, dict) and token_count(usage.get("prompt_tokens")):
            usage = hub_usage(usage)
        else:  # the local estimate: never 0 input tokens here (CCR pitfall)
            usage = {"input_tokens": self._input_tokens, "cache_creation_input_tokens": 0,
                     "cache_read_input_tokens": 0}
        usage["output_tokens"] = 1  # as Anthropic's own message_start
        message = {"id": self._msg_id, "type": "message", "role": "assistant", "content": [],
                   "model": self._model, "stop_reason": None, "stop_sequence": None, "usage": usage}
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _delta(self, delta: dict) -> list[dict]:
        out = []
        thinking = reasoning_text(delta, self._reasoning_field)
        if thinking:
            out += self._append("thinking", thinking)
        text = content_text(delta.get("content"))
        if isinstance(delta.get("refusal"), str) and delta["refusal"]:
            self._refused = True
            text += delta["refusal"]
        if text:
            out += self._append("text", text)
        calls = delta.get("tool_calls")
        for position, call in enumerate(calls if isinstance(calls, list) else ()):
            if isinstance(call, dict):
                out += self._tool_delta(call, position)
        if isinstance(delta.get("function_call"), dict):  # the legacy single-call form
            out += self._tool_delta({"index": "function_call", "function": delta["function_call"]}, 0)
        return out

    def _append(self, kind: str, text: str) -> list[dict]:
        out = []
        if self._open is None or self._open[0] != kind:
            out += self._close_open()
            out.append(self._open_block(kind))
        self._emitted.append(text)
        delta = ({"type": "thinking_delta", "thinking": text} if kind == "thinking"
                 else {"type": "text_delta", "text": text})
        out.append({"type": "content_block_delta", "index": self._open[1], "delta": delta})
        return out

    def _open_block(self, kind: str) -> dict:
        """Start a text or thinking block at a new index, never a stale one (CCR pitfall)."""
        index, self._next = self._next, self._next + 1
        self._open = (kind, index)
        block = ({"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking"
                 else {"type": "text", "text": ""})
        return {"type": "content_block_start", "index": index, "content_block": block}

    def _close_open(self) -> list[dict]:
        if self._open is None:
            return []
        kind, index = self._open
        self._open = None
        out = []
        if kind == "thinking":  # no Anthropic signature upstream: the synthetic one (§8.3)
            out.append({"type": "content_block_delta", "index": index,
                        "delta": {"type": "signature_delta", "signature": self._signature}})
        out.append({"type": "content_block_stop", "index": index})
        return out

    def _key(self, call: dict, position: int):
        """Which call a fragment belongs to: its `index`, else its id, else the last call seen."""
        index = call.get("index")
        if isinstance(index, (int, str)) and not isinstance(index, bool):
            return index
        if call.get("id"):
            return ("id", str(call["id"]))
        return self._last_key if self._last_key is not None else position

    def _tool_delta(self, call: dict, position: int) -> list[dict]:
        key = self._last_key = self._key(call, position)
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        out, tool = [], self._tools.get(key)
        if tool is None:
            name = str(fn.get("name") or "")
            if self._force and name == EXIT_TOOL:  # buffered: it becomes text at the end
                tool = _Tool(None, "", name)
            else:
                out += self._close_open()
                index, self._next = self._next, self._next + 1
                tool = _Tool(index, self._ids(call.get("id")), name)
                out.append({"type": "content_block_start", "index": index, "content_block":
                            {"type": "tool_use", "id": tool.id, "name": name, "input": {}}})
            self._tools[key] = tool
        # a late id or name cannot be re-sent: the block has started (§8.2 item 5)
        args = fn.get("arguments")
        args = dumps(args) if isinstance(args, dict) else args
        if isinstance(args, str) and args:
            tool.args.append(args)
            if tool.index is not None:  # that tool's own block, still open
                out.append({"type": "content_block_delta", "index": tool.index,
                            "delta": {"type": "input_json_delta", "partial_json": args}})
        return out

    def _exit_block(self, tool: _Tool) -> list[dict]:
        text = exit_text(tool_input("".join(tool.args)))
        if not text:
            return []
        out = [self._open_block("text")]
        self._emitted.append(text)
        out.append({"type": "content_block_delta", "index": self._open[1],
                    "delta": {"type": "text_delta", "text": text}})
        return out + self._close_open()

    def _final_usage(self) -> dict:
        usage = self._usage
        if isinstance(usage, dict) and ("prompt_tokens" in usage or "completion_tokens" in usage):
            out = hub_usage(usage)
            if not token_count(usage.get("prompt_tokens")):  # only the output is known
                del out["input_tokens"]
            return out
        emitted = "".join(self._emitted) + "".join(a for t in self._tools.values() for a in t.args)
        return {"output_tokens": estimate_output(emitted)}
