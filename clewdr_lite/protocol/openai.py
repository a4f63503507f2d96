"""OpenAI Chat Completions clients ⇄ hub (Anthropic Messages) shapes (conversions.md §3, §4, §10–13)."""

from __future__ import annotations

import copy
import re
from typing import Callable, Mapping

from ..errors import BadRequest
from .lenient import tool_input
from .sse import dumps

DEFAULT_MAX_TOKENS = 8192
THINKING_OUTPUTS = ("reasoning_content", "think_tags", "drop")
JSON_OBJECT_INSTRUCTION = "Respond with a single JSON object only."
WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search"}


# §12: Anthropic stop_reason -> OpenAI finish_reason
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}
# §10: reasoning_effort -> (thinking budget, output_config.effort); "none" means no thinking
_EFFORT = {
    "minimal": (1024, "low"),
    "low": (2048, "low"),
    "medium": (4096, "medium"),
    "high": (16384, "high"),
    "xhigh": (32768, "xhigh"),
    "max": (65536, "max"),
}
# §3.3: string tool_choice values
_TOOL_CHOICE = {"auto": "auto", "none": "none", "required": "any"}
# OpenAI role -> hub turn role (tool results travel in user turns, §3.1 item 4)
_TURN_ROLE = {"system": "system", "developer": "system", "user": "user",
              "assistant": "assistant", "tool": "user", "function": "user"}
_SYSTEM_ROLES = frozenset({"system", "developer"})
# §11: what Anthropic accepts as images, and the spelling clients get wrong
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_MEDIA_ALIASES = {"image/jpg": "image/jpeg"}
_PDF = "application/pdf"
# §3.1 item 8: Anthropic tool ids and names are [A-Za-z0-9_-]
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# content-part types each place may hold
_TEXT_PARTS = frozenset({"text"})
_ASSISTANT_PARTS = frozenset({"text", "refusal"})
_USER_PARTS = frozenset({"text", "refusal", "image_url", "file"})


def _ignore(_message: str) -> None:
    return None


def safe_id(value: str) -> str:
    """A tool id or name with every character Anthropic refuses replaced by `_` (deterministic)."""
    return _UNSAFE.sub("_", value)


def finish_reason(stop_reason: str | None) -> str:
    """OpenAI `finish_reason` for an Anthropic `stop_reason` (§12)."""
    return _FINISH.get(stop_reason, "stop")


def usage_from_hub(usage: Mapping | None) -> dict:
    """OpenAI `usage` for Anthropic usage (§13); missing counts are 0."""
    usage = usage or {}
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cached + (usage.get("cache_creation_input_tokens") or 0)
    completion = usage.get("output_tokens") or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}}


def completion_id(message_id: str | None) -> str:
    """`chatcmpl-<message id without msg_>` (§4)."""
    return "chatcmpl-" + (message_id or "").removeprefix("msg_")


def include_usage(body: Mapping) -> bool:
    """Whether the client asked for the final usage chunk (`stream_options.include_usage`)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def check_thinking_output(mode: str) -> None:
    """Raise ValueError for a `thinking_output` setting that is not one of THINKING_OUTPUTS."""
    if mode not in THINKING_OUTPUTS:
        raise ValueError(f"thinking_output must be one of {', '.join(THINKING_OUTPUTS)}, not {mode!r}")


def tool_name_map(body: Mapping) -> dict[str, str]:
    """Sanitised tool name → the client's own name, for the declared names that sanitising changed."""
    names = []
    for tool in body.get("tools") or ():
        fn = tool.get("function") if isinstance(tool, dict) else None
        names.append(fn.get("name") if isinstance(fn, dict) else None)
    for fn in body.get("functions") or ():
        names.append(fn.get("name") if isinstance(fn, dict) else None)
    return {safe_id(n): n for n in names if isinstance(n, str) and safe_id(n) != n}


# ---------------------------------------------------------------------------------------- request


def to_hub(body: dict, *, warn: Callable[[str], None] | None = None) -> dict:
    """A new hub (Anthropic Messages) request for an OpenAI chat request; `warn` hears about drops."""
    _check_body(body)
    warn = warn or _ignore
    system, messages = _Messages(warn).convert(body["messages"])
    hub = {"model": body["model"], "max_tokens": _max_tokens(body), "messages": messages,
           "stream": _flag(body, "stream")}
    _sampling(body, hub)
    _tools(body, hub, warn)
    _reasoning(body, hub)
    _response_format(body, hub, system)
    if system:
        hub["system"] = system
    user = body.get("user")
    if isinstance(user, str) and user:
        hub["metadata"] = {"user_id": user}
    return hub


def _check_body(body) -> None:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty array")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model must be a non-empty string")
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise BadRequest("n > 1 is not supported")


def _flag(body: Mapping, key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadRequest(f"{key} must be a boolean")
    return value


def _number(body: Mapping, key: str):
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise BadRequest(f"{key} must be a number")
    return value


def _max_tokens(body: Mapping) -> int:
    key = "max_tokens" if body.get("max_tokens") is not None else "max_completion_tokens"
    value = body.get(key)
    if value is None:
        return DEFAULT_MAX_TOKENS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest(f"{key} must be a positive integer")
    return value


def _sampling(body: Mapping, hub: dict) -> None:
    temperature = _number(body, "temperature")
    if temperature is not None:
        hub["temperature"] = min(max(temperature, 0), 1)  # OpenAI allows 0–2, Anthropic 0–1
    top_p = _number(body, "top_p")
    if top_p is not None:
        hub["top_p"] = top_p
    top_k = _number(body, "top_k")
    if top_k:  # 0 means "unset" for the clients that send it
        hub["top_k"] = top_k
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is None:
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise BadRequest("stop must be a string or an array of strings")
    stop = [s for s in stop if s]
    if stop:
        hub["stop_sequences"] = stop


def _tools(body: Mapping, hub: dict, warn: Callable[[str], None]) -> None:
    source = body.get("tools")
    if source is None and isinstance(body.get("functions"), list):  # legacy `functions`
        source = [{"type": "function", "function": fn} for fn in body["functions"]]
    if source is not None and not isinstance(source, list):
        raise BadRequest("tools must be an array")
    tools = []
    for j, tool in enumerate(source or ()):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            warn(f"tools[{j}]: dropped a non-function tool")
            continue
        tools.append(_tool_definition(tool.get("function"), j))
    if body.get("web_search_options") is not None and all(t["name"] != "web_search" for t in tools):
        tools.append(dict(WEB_SEARCH_TOOL))
    if tools:  # Anthropic refuses tool_choice without tools
        hub["tools"] = tools
        choice = _tool_choice(body)
        if choice:
            hub["tool_choice"] = choice


def _tool_definition(fn, j: int) -> dict:
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not name:
        raise BadRequest(f"tools[{j}].function.name must be a non-empty string")
    schema = fn.get("parameters")
    schema = copy.deepcopy(schema) if isinstance(schema, dict) else {"type": "object", "properties": {}}
    schema.setdefault("type", "object")
    tool = {"name": safe_id(name)}
    description = fn.get("description")
    if isinstance(description, str) and description:
        tool["description"] = description
    tool["input_schema"] = schema
    return tool


def _tool_choice(body: Mapping) -> dict | None:
    raw = body.get("tool_choice")
    if raw is None:
        raw = body.get("function_call")  # legacy request field: "auto" / "none" / {"name": N}
    choice = None if raw is None else _choice(raw)
    if body.get("parallel_tool_calls") is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":  # Anthropic's "none" choice takes no flag
            choice["disable_parallel_tool_use"] = True
    return choice


def _choice(raw) -> dict:
    if isinstance(raw, str) and raw in _TOOL_CHOICE:
        return {"type": _TOOL_CHOICE[raw]}
    if isinstance(raw, dict):
        fn = raw.get("function") if raw.get("type") == "function" else raw
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and name:
            return {"type": "tool", "name": safe_id(name)}
    raise BadRequest('tool_choice must be "auto", "none", "required" or '
                     '{"type": "function", "function": {"name": …}}')


def _reasoning(body: Mapping, hub: dict) -> None:
    thinking = body.get("thinking")
    if thinking is not None:  # non-standard Anthropic-shaped field: wins over reasoning_effort
        if not isinstance(thinking, dict) or not isinstance(thinking.get("type"), str):
            raise BadRequest('thinking must be an object with a "type"')
        hub["thinking"] = copy.deepcopy(thinking)
        return
    effort = body.get("reasoning_effort")
    if effort is None or effort == "none":
        return
    if not isinstance(effort, str) or effort not in _EFFORT:
        raise BadRequest("reasoning_effort must be one of none, " + ", ".join(_EFFORT))
    budget, level = _EFFORT[effort]
    hub["thinking"] = {"type": "enabled", "budget_tokens": budget}
    hub.setdefault("output_config", {})["effort"] = level


def _response_format(body: Mapping, hub: dict, system: list) -> None:
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else fmt
    if kind is None or kind == "text":
        return
    if kind == "json_object":
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
        return
    if kind != "json_schema":
        raise BadRequest("response_format.type must be text, json_object or json_schema")
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise BadRequest("response_format.json_schema.schema must be an object")
    hub.setdefault("output_config", {})["format"] = {"type": "json_schema",
                                                     "schema": copy.deepcopy(schema)}


# --------------------------------------------------------------------------------------- messages


def _role(msg, i: int) -> str:
    if not isinstance(msg, dict):
        raise BadRequest(f"messages[{i}] must be an object")
    role = msg.get("role")
    if not isinstance(role, str) or role not in _TURN_ROLE:  # a list or object is no key of it
        raise BadRequest(f"messages[{i}].role must be one of {', '.join(_TURN_ROLE)}")
    return role


def _text(text, cache_control=None) -> dict | None:
    """A text block, or None for empty or blank text (Anthropic refuses those)."""
    if not isinstance(text, str) or not text.strip():
        return None
    block = {"type": "text", "text": text}
    if cache_control:
        block["cache_control"] = copy.deepcopy(cache_control)
    return block


def _data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:<type>[;params];base64,<data>` URL, else None."""
    head, sep, data = url[5:].partition(",")
    params = [p.strip().lower() for p in head.split(";")]
    if not sep or "base64" not in params[1:]:
        return None
    return _MEDIA_ALIASES.get(params[0], params[0]), data


def _media_block(media: str, data: str) -> dict | None:
    source = {"type": "base64", "media_type": media, "data": data}
    if media in _IMAGE_TYPES:
        return {"type": "image", "source": source}
    return {"type": "document", "source": source} if media == _PDF else None


def _image(url) -> dict | None:
    if not isinstance(url, str):
        return None
    scheme = url[:8].lower()
    if scheme.startswith("data:"):
        parsed = _data_url(url)
        return _media_block(*parsed) if parsed else None
    if scheme.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None


def _tool_use(call_id: str, name: str, arguments) -> dict:
    if isinstance(arguments, dict):  # some clients send the object itself
        args = copy.deepcopy(arguments)
    else:
        args = tool_input(arguments) if isinstance(arguments, str) else {}
    return {"type": "tool_use", "id": safe_id(call_id), "name": safe_id(name), "input": args}


class _Messages:
    """One conversion of an OpenAI `messages` list (§3.1); holds the legacy function-call counters."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.calls: dict[str, int] = {}
        self.results: dict[str, int] = {}

    def convert(self, messages: list) -> tuple[list, list]:
        """(hub system blocks, hub messages)."""
        system, start = [], 0
        while start < len(messages) and _role(messages[start], start) in _SYSTEM_ROLES:
            system += self.parts(messages[start].get("content"), start, _TEXT_PARTS)
            start += 1
        turns: list[tuple[str, list]] = []
        for i in range(start, len(messages)):
            role = _role(messages[i], i)
            blocks = getattr(self, "_" + role)(messages[i], i)
            role = _TURN_ROLE[role]
            if not blocks:  # a message left empty is removed (§3.1 item 7)
                continue
            if turns and turns[-1][0] == role:  # §3.1 item 6
                turns[-1][1].extend(blocks)
            else:
                turns.append((role, blocks))
        _pair_tools(turns)
        _trim_prefill(turns)
        return system, [_finish(role, blocks) for role, blocks in turns]

    def legacy_id(self, counters: dict, name: str) -> str:
        """`call_<name>_<n>`: the n-th call and the n-th result of a name get the same id (§3.1 item 5)."""
        n = counters.get(name, 0)
        counters[name] = n + 1
        return f"call_{name}_{n}"

    def parts(self, content, i: int, allowed: frozenset) -> list:
        """Hub blocks for a message's `content` (string, parts or null); empty ones left out."""
        if content is None:
            return []
        if isinstance(content, str):
            block = _text(content)
            return [block] if block else []
        if not isinstance(content, list):
            raise BadRequest(f"messages[{i}].content must be a string, an array of content parts or null")
        blocks = []
        for part in content:
            if isinstance(part, str):
                part = {"type": "text", "text": part}
            kind = part.get("type") if isinstance(part, dict) else None
            if not isinstance(kind, str) or kind not in allowed:
                self.warn(f"messages[{i}]: dropped a content part of type {kind!r}")
                continue
            block = self._part(kind, part, i)
            if block:
                blocks.append(block)
        return blocks

    def _part(self, kind: str, part: dict, i: int) -> dict | None:
        if kind == "text":
            return _text(part.get("text"), part.get("cache_control"))
        if kind == "refusal":
            return _text(part.get("refusal"))
        if kind == "image_url":
            ref = part.get("image_url")
            block = _image(ref.get("url") if isinstance(ref, dict) else ref)
        else:
            block = self._file(part.get("file"))
        if block is None:
            self.warn(f"messages[{i}]: dropped an unsupported {kind} part")
        elif isinstance(part.get("cache_control"), dict):
            block["cache_control"] = copy.deepcopy(part["cache_control"])
        return block

    def _file(self, file) -> dict | None:
        data = file.get("file_data") if isinstance(file, dict) else None
        if not isinstance(data, str):
            return None  # `file_id` references cannot be resolved here
        if data.startswith("data:"):
            parsed = _data_url(data)
            return _media_block(*parsed) if parsed else None
        name = file.get("filename")
        if isinstance(name, str) and name.lower().endswith(".pdf"):  # bare base64 with a PDF name
            return _media_block(_PDF, data)
        return None

    def _system(self, msg: dict, i: int) -> list:
        return self.parts(msg.get("content"), i, _TEXT_PARTS)

    _developer = _system

    def _user(self, msg: dict, i: int) -> list:
        return self.parts(msg.get("content"), i, _USER_PARTS)

    def _assistant(self, msg: dict, i: int) -> list:
        blocks = self.parts(msg.get("content"), i, _ASSISTANT_PARTS)
        refusal = _text(msg.get("refusal"))
        if refusal:
            blocks.append(refusal)
        calls = msg.get("tool_calls") or []
        if not isinstance(calls, list):
            raise BadRequest(f"messages[{i}].tool_calls must be an array")
        for j, call in enumerate(calls):
            fn = call.get("function") if isinstance(call, dict) else None
            name = fn.get("name") if isinstance(fn, dict) else None
            if not isinstance(name, str) or not name:
                raise BadRequest(f"messages[{i}].tool_calls[{j}].function.name must be a non-empty string")
            call_id = call.get("id")
            if not isinstance(call_id, str) or not call_id:
                call_id = self.legacy_id(self.calls, name)
            blocks.append(_tool_use(call_id, name, fn.get("arguments")))
        legacy = msg.get("function_call")
        if isinstance(legacy, dict) and isinstance(legacy.get("name"), str) and legacy["name"]:
            name = legacy["name"]
            blocks.append(_tool_use(self.legacy_id(self.calls, name), name, legacy.get("arguments")))
        return blocks

    def _tool(self, msg: dict, i: int) -> list:
        call_id = msg.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise BadRequest(f"messages[{i}].tool_call_id must be a non-empty string")
        return [self._result(call_id, msg.get("content"), i)]

    def _function(self, msg: dict, i: int) -> list:
        name = msg.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"messages[{i}].name must be a non-empty string")
        return [self._result(self.legacy_id(self.results, name), msg.get("content"), i)]

    def _result(self, call_id: str, content, i: int) -> dict:
        block = {"type": "tool_result", "tool_use_id": safe_id(call_id)}
        if isinstance(content, (dict, int, float)) and not isinstance(content, bool):
            content = dumps(content)  # not OpenAI, but some agent frameworks send raw JSON values
        if isinstance(content, str):
            if content.strip():
                block["content"] = content
        else:
            parts = self.parts(content, i, _USER_PARTS)
            if parts:
                block["content"] = parts
        return block


# ------------------------------------------------------------------------- consistency (§3.1 #7)


def _next_turn(turns: list, k: int) -> tuple | None:
    """The next non-system turn: in-place system messages are hoisted later for the API upstreams."""
    for turn in turns[k + 1:]:
        if turn[0] != "system":
            return turn
    return None


def _call_as_text(block: dict) -> dict:
    return {"type": "text", "text": f"[Tool call {block['name']}] {dumps(block['input'])}"}


def _result_as_blocks(block: dict) -> list:
    content = block.get("content") or ""
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    text = "\n".join(p["text"] for p in parts if p["type"] == "text")
    head = {"type": "text", "text": f"[Tool result id={block['tool_use_id']}] {text}".rstrip()}
    return [head] + [p for p in parts if p["type"] != "text"]


def _pair_tools(turns: list) -> None:
    """Turn tool calls without a result, and results without a call, into text (Anthropic 400s)."""
    calls: set = set()  # tool_use ids of the previous non-system turn, when it was the assistant's
    for k, (role, blocks) in enumerate(turns):
        if role == "system":
            continue
        if role == "assistant":
            after = _next_turn(turns, k)
            if after is not None:  # a final assistant turn keeps its calls
                answered = {b["tool_use_id"] for b in after[1] if b["type"] == "tool_result"}
                blocks[:] = [b if b["type"] != "tool_use" or b["id"] in answered else _call_as_text(b)
                             for b in blocks]
            # text first, calls last, so a call turned into text never sits after a live call
            blocks.sort(key=lambda b: b["type"] == "tool_use")
            calls = {b["id"] for b in blocks if b["type"] == "tool_use"}
            continue
        fixed = []
        for b in blocks:
            if b["type"] == "tool_result" and b["tool_use_id"] in calls:
                calls.discard(b["tool_use_id"])  # a second result for the same call is an orphan
                fixed.append(b)
            else:
                fixed.extend(_result_as_blocks(b) if b["type"] == "tool_result" else [b])
        fixed.sort(key=lambda b: b["type"] != "tool_result")  # tool results first (§3.1 item 4)
        blocks[:] = fixed
        calls = set()


def _trim_prefill(turns: list) -> None:
    """Strip trailing whitespace of a final assistant turn (a prefill); Anthropic rejects it."""
    last = next((turn for turn in reversed(turns) if turn[0] != "system"), None)
    if last is not None and last[0] == "assistant" and last[1][-1]["type"] == "text":
        # blank text blocks were never made, so the stripped text is not empty
        last[1][-1]["text"] = last[1][-1]["text"].rstrip()


def _finish(role: str, blocks: list) -> dict:
    if role == "system":  # kept in place as one text (see module docs of the hoisting step)
        return {"role": "system", "content": "\n\n".join(b["text"] for b in blocks)}
    if role == "user" and len(blocks) == 1 and blocks[0].keys() == {"type", "text"}:
        return {"role": "user", "content": blocks[0]["text"]}
    return {"role": role, "content": blocks}


# --------------------------------------------------------------------------------------- response


def from_hub(msg: dict, *, model: str, created: int, thinking_output: str = "reasoning_content",
             tool_names: Mapping[str, str] | None = None) -> dict:
    """An OpenAI `chat.completion` for a hub message (§4); `model` is the name the client sent."""
    check_thinking_output(thinking_output)
    names = tool_names or {}
    texts, thoughts, calls = [], [], []
    for block in msg.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thoughts.append(block.get("thinking") or "")
        elif kind == "tool_use":  # server tools and redacted thinking are dropped
            name = block.get("name") or ""
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": names.get(name, name),
                                       "arguments": dumps(block.get("input") or {})}})
    thinking, content = "".join(thoughts), "".join(texts)
    if thinking and thinking_output == "think_tags":
        content = f"<think>{thinking}</think>{content}"
    message = {"role": "assistant", "content": content if content or not calls else None}
    if thinking and thinking_output == "reasoning_content":
        message["reasoning_content"] = thinking
    if calls:
        message["tool_calls"] = calls
    choice = {"index": 0, "message": message, "logprobs": None,
              "finish_reason": finish_reason(msg.get("stop_reason"))}
    return {"id": completion_id(msg.get("id")), "object": "chat.completion", "created": created,
            "model": model, "system_fingerprint": None, "choices": [choice],
            "usage": usage_from_hub(msg.get("usage"))}
