"""Hub (Anthropic Messages) request → OpenAI chat request for OpenAI-compatible upstreams (conversions §6, §10, §11).

Every body-shaping quirk flag of gateway.md §2.4 applies here (`auth` is the upstream layer's).
The body is built from scratch: hub fields with no OpenAI form are dropped (and `warn` hears of
it), since strict servers refuse unknown parameters. Answers coming back are converted in
openai_upstream_stream.py; `classify_openai` maps error answers to pool outcomes (gateway §5.1).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Callable

from .openai_upstream_errors import classify_openai
from .openai_upstream_stream import EXIT_TOOL, OpenAIToHub, flags, openai_to_hub_message, stream_signal
from .sse import dumps

__all__ = ["EXIT_TOOL", "OpenAIToHub", "classify_openai", "hub_to_openai", "openai_to_hub_message",
           "stream_signal"]

DEFAULT_MAX_TOKENS = 8192
# §3.3 reversed: hub tool_choice type -> OpenAI tool_choice ("any" is "required", never "any")
_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# §10: Anthropic output_config.effort -> reasoning_effort (OpenAI stops at "high")
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
# hub fields this converter reads; any other field has no OpenAI form and is dropped
_HANDLED = frozenset({"model", "max_tokens", "messages", "system", "temperature", "top_p", "top_k",
                      "stop_sequences", "stream", "thinking", "tools", "tool_choice", "metadata",
                      "output_config", "output_format"})
# JSON Schema keys whose values are maps of names (not keywords) or plain data
_NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_DATA_KEYS = frozenset({"enum", "const", "default", "examples"})
FORCE_TOOL_REMINDER = (
    "<system-reminder>Tool mode is active: answer by calling the most suitable tool. When no tool "
    f"fits the task, call `{EXIT_TOOL}` with your answer as `response`; that is the only way to "
    "leave tool mode.</system-reminder>")
EXIT_TOOL_FUNCTION = {"type": "function", "function": {
    "name": EXIT_TOOL,
    "description": "Leave tool mode and answer the user directly, when no other tool fits.",
    "parameters": {"type": "object", "properties": {"response": {
        "type": "string", "description": "The answer to give the user."}}, "required": ["response"]}}}


def _ignore(_message: str) -> None:
    return None


def hub_to_openai(req: dict, *, model: str, quirks: dict,
                  warn: Callable[[str], None] | None = None) -> dict:
    """An OpenAI chat request body for a hub request, sent to `model` with these quirk flags."""
    q, warn = flags(quirks), warn or _ignore
    convert = _Messages(q, warn)
    messages = convert.system(req.get("system"))
    for msg in req.get("messages") or ():
        if isinstance(msg, dict):
            messages += convert.message(msg)
    body = {"model": model, "messages": messages, q["max_tokens_field"]: _max_tokens(req, q)}
    _sampling(req, body, q, warn)
    if req.get("stream"):
        body["stream"] = True
        if q["stream_usage"]:  # without it many servers send no usage at all (§8)
            body["stream_options"] = {"include_usage": True}
    _tools(req, body, q, warn)
    _reasoning(req, body, q)
    _response_format(req, body)
    metadata = req.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
        body["user"] = metadata["user_id"]  # the reverse of §3's `user` → metadata.user_id
    _force_tool_mode(body, q)
    for key in sorted(set(req) - _HANDLED):
        warn(f"dropped {key!r} (no OpenAI form)")
    for key in q["drop_params"]:
        body.pop(key, None)
    _merge(body, q["extra_body"])
    return body


def _merge(target: dict, extra: Mapping) -> None:
    """Deep-merge `extra` into `target` (quirk extra_body); tables merge, other values replace."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


# ------------------------------------------------------------------------------ generation fields


def _max_tokens(req: Mapping, q: Mapping) -> int:
    value = req.get("max_tokens")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        value = DEFAULT_MAX_TOKENS
    cap = q["max_tokens_cap"]
    return min(value, cap) if cap else value


def _sampling(req: Mapping, body: dict, q: Mapping, warn: Callable[[str], None]) -> None:
    for key in ("temperature", "top_p"):
        if req.get(key) is not None:
            body[key] = req[key]
    if req.get("top_k") is not None:
        if q["supports_top_k"]:
            body["top_k"] = req["top_k"]
        else:
            warn("dropped top_k (quirk supports_top_k is off)")
    stops = [s for s in req.get("stop_sequences") or () if isinstance(s, str) and s]
    limit = q["max_stop_sequences"]  # 0: no limit, as max_tokens_cap
    if limit and len(stops) > limit:
        warn(f"dropped {len(stops) - limit} stop sequences over the upstream's limit of {limit}")
        stops = stops[:limit]
    if stops:
        body["stop"] = stops


def _effort(thinking: Mapping, output: Mapping) -> str:
    """§10: reasoning_effort for enabled (by budget) or adaptive (by output_config.effort) thinking."""
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            return "medium"
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    return _EFFORTS.get(output.get("effort"), "medium")


def _reasoning(req: Mapping, body: dict, q: Mapping) -> None:
    """Thinking requested per quirk reasoning_request; disabled or absent thinking sends nothing."""
    thinking = req.get("thinking")
    mode = q["reasoning_request"]
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "adaptive") or mode == "none":
        return
    if mode == "enable_thinking":  # Qwen / vLLM
        body["enable_thinking"] = True
        return
    output = req.get("output_config") if isinstance(req.get("output_config"), dict) else {}
    budget = thinking.get("budget_tokens")
    if mode == "openrouter":
        enabled = kind == "enabled" and isinstance(budget, int) and not isinstance(budget, bool)
        body["reasoning"] = {"max_tokens": budget} if enabled else {"effort": _effort(thinking, output)}
        return
    body["reasoning_effort"] = _effort(thinking, output)


def _response_format(req: Mapping, body: dict) -> None:
    output = req.get("output_config") if isinstance(req.get("output_config"), dict) else {}
    fmt = output.get("format") or req.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "output", "schema": copy.deepcopy(fmt["schema"]), "strict": True}}


# ------------------------------------------------------------------------------------------ tools


def strip_schema(schema, keys: frozenset):
    """A copy of a JSON Schema without the keywords in `keys`, at every depth (quirk strip_schema_keys)."""
    if isinstance(schema, list):
        return [strip_schema(item, keys) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in keys:
            continue
        if key in _DATA_KEYS:
            out[key] = copy.deepcopy(value)
        elif key in _NAME_MAPS and isinstance(value, dict):  # a property may be named like a keyword
            out[key] = {name: strip_schema(sub, keys) for name, sub in value.items()}
        else:
            out[key] = strip_schema(value, keys)
    return out


def _function(tool: Mapping, keys: frozenset) -> dict:
    fn = {"name": tool["name"]}
    if isinstance(tool.get("description"), str) and tool["description"]:
        fn["description"] = tool["description"]
    schema = tool.get("input_schema")
    fn["parameters"] = strip_schema(schema if isinstance(schema, dict) else
                                    {"type": "object", "properties": {}}, keys)
    if isinstance(tool.get("strict"), bool):
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def _tools(req: Mapping, body: dict, q: Mapping, warn: Callable[[str], None]) -> None:
    keys, tools = frozenset(q["strip_schema_keys"]), []
    for tool in req.get("tools") or ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or kind not in (None, "custom") or not tool.get("name"):
            # server tools (web_search_*, …) and Anthropic-defined tools have no function form
            warn(f"dropped the {kind or 'unnamed'} tool (no OpenAI function form)")
            continue
        tools.append(_function(tool, keys))
    if not tools:  # OpenAI refuses tool_choice without tools
        return
    body["tools"] = tools
    choice = req.get("tool_choice")
    if not isinstance(choice, dict):
        return
    if choice.get("type") == "tool" and choice.get("name"):
        body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif isinstance(choice.get("type"), str) and choice["type"] in _CHOICES:
        body["tool_choice"] = _CHOICES[choice["type"]]
    if choice.get("disable_parallel_tool_use") is True:
        body["parallel_tool_calls"] = False


def _force_tool_mode(body: dict, q: Mapping) -> None:
    """Quirk force_tool_mode: a reminder, tool_choice required and the ExitTool way out."""
    if not q["force_tool_mode"] or not body.get("tools") or body.get("tool_choice") == "none":
        return
    body["tools"].append(copy.deepcopy(EXIT_TOOL_FUNCTION))
    if not isinstance(body.get("tool_choice"), dict):  # a named tool stays named
        body["tool_choice"] = "required"
    messages = body["messages"]
    first = messages[0] if messages else None
    if first is None or first["role"] != "system":
        messages.insert(0, {"role": "system", "content": FORCE_TOOL_REMINDER})
    elif isinstance(first["content"], list):
        first["content"].append({"type": "text", "text": FORCE_TOOL_REMINDER})
    else:
        first["content"] = f"{first['content']}\n\n{FORCE_TOOL_REMINDER}"


# --------------------------------------------------------------------------------------- messages


def _texts(content) -> list[dict]:
    """The non-empty text blocks of a `system` value or a message's content."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    return [b for b in content or () if isinstance(b, dict) and b.get("type") == "text"
            and isinstance(b.get("text"), str) and b["text"].strip()]


class _Messages:
    """One conversion of hub `system` and `messages` into OpenAI messages (§6, §11)."""

    def __init__(self, q: Mapping, warn: Callable[[str], None]) -> None:
        self.q, self.warn = q, warn
        self.keep_cache = q["keep_cache_control"]

    def system(self, system) -> list[dict]:
        """The leading system message for the hub `system`, if it has any text."""
        content = self._joined(_texts(system), "\n\n")
        return [{"role": "system", "content": content}] if content else []

    def message(self, msg: dict) -> list[dict]:
        """OpenAI messages for one hub message (a user turn may become several)."""
        role, content = msg.get("role"), msg.get("content")
        if role == "system":  # a mid-conversation system message stays in place
            text = self._joined(_texts(content), "\n\n")
            return [{"role": "system", "content": text}] if text else []
        if role == "assistant":
            return self._assistant(content)
        if isinstance(content, str):
            return [{"role": "user", "content": content}] if content else []
        return self._user(content or [])

    def _joined(self, blocks: list, sep: str):
        """Text blocks as one string, or (quirk keep_cache_control) parts that keep cache_control."""
        if self.keep_cache and any(b.get("cache_control") for b in blocks):
            return [self._text_part(b) for b in blocks]
        return sep.join(b["text"] for b in blocks)

    def _text_part(self, block: Mapping) -> dict:
        part = {"type": "text", "text": block["text"]}
        if self.keep_cache and isinstance(block.get("cache_control"), dict):
            part["cache_control"] = copy.deepcopy(block["cache_control"])
        return part

    def _user(self, blocks: list) -> list[dict]:
        """Tool messages first, then one user message: tool-result media, then the user's parts."""
        tools, media, parts = [], [], []
        for block in blocks:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_result":
                tools.append(self._tool_result(block, media))
            else:
                parts += self._parts(block)
        parts = media + parts
        if not parts:
            return tools
        if len(parts) == 1 and parts[0].keys() == {"type", "text"}:
            return tools + [{"role": "user", "content": parts[0]["text"]}]
        return tools + [{"role": "user", "content": parts}]

    def _tool_result(self, block: Mapping, media: list) -> dict:
        """A tool message; images and PDFs in the result go to `media` (they cannot sit in it)."""
        content = block.get("content")
        texts = []
        for item in [{"type": "text", "text": content}] if isinstance(content, str) else content or ():
            for part in self._parts(item) if isinstance(item, dict) else ():
                if part["type"] == "text":
                    texts.append(part["text"])
                else:
                    media.append(part)
        text = "\n".join(texts)
        if block.get("is_error") is True:  # kept, not dropped (CCR pitfall)
            text = f"Error: {text}" if text else "Error"
        return {"role": "tool", "tool_call_id": str(block.get("tool_use_id") or ""), "content": text}

    def _parts(self, block: Mapping) -> list[dict]:
        """OpenAI content parts for one user-side hub block; unsupported blocks are dropped."""
        kind = block.get("type")
        if kind == "text":
            return [self._text_part(block)] if isinstance(block.get("text"), str) and block["text"] else []
        if kind in ("image", "document"):
            return self._media(block)
        if kind == "search_result":
            head = " ".join(str(block.get(k)) for k in ("title", "source") if block.get(k))
            texts = [head] + [b["text"] for b in _texts(block.get("content"))]
            return [{"type": "text", "text": "\n".join(t for t in texts if t)}]
        if kind not in ("thinking", "redacted_thinking"):
            self.warn(f"dropped a {kind} block (no OpenAI form)")
        return []

    def _media(self, block: Mapping) -> list[dict]:
        """§11: image → image_url part, PDF → file part, text documents → text parts."""
        source = block.get("source") if isinstance(block.get("source"), dict) else {}
        kind, is_image = source.get("type"), block.get("type") == "image"
        if kind == "text" and isinstance(source.get("data"), str):
            return [{"type": "text", "text": source["data"]}] if source["data"] else []
        if kind == "content":
            return [part for b in _texts(source.get("content")) for part in self._parts(b)]
        if kind == "url" and is_image and isinstance(source.get("url"), str):
            return [{"type": "image_url", "image_url": {"url": source["url"]}}]
        if kind == "base64" and isinstance(source.get("data"), str):
            if self.q["image_url_only"]:  # cannot be satisfied without hosting the data (§11)
                self.warn(f"dropped a base64 {block.get('type')} (quirk image_url_only)")
                return []
            media = source.get("media_type") or ("image/jpeg" if is_image else "application/pdf")
            url = f"data:{media};base64,{source['data']}"
            if is_image:
                return [{"type": "image_url", "image_url": {"url": url}}]
            return [{"type": "file", "file": {"filename": "document.pdf", "file_data": url}}]
        self.warn(f"dropped a {block.get('type')} with a {kind} source (no OpenAI form)")
        return []

    def _assistant(self, content) -> list[dict]:
        """One assistant message: text as content, tool_use as tool_calls, thinking per quirk."""
        if isinstance(content, str):
            return [{"role": "assistant", "content": content}] if content else []
        blocks = [b for b in content or () if isinstance(b, dict)]
        calls = [{"id": str(b.get("id") or ""), "type": "function",
                  "function": {"name": str(b.get("name") or ""),
                               "arguments": dumps(b["input"] if isinstance(b.get("input"), dict) else {})}}
                 for b in blocks if b.get("type") == "tool_use"]
        text = self._joined(_texts(blocks), "")
        thinking = "".join(str(b.get("thinking") or "") for b in blocks if b.get("type") == "thinking")
        reasoning = thinking if self.q["send_reasoning_back"] else ""  # DeepSeek refuses it in input
        if not text and not calls and not reasoning:
            return []
        msg = {"role": "assistant", "content": text or (None if calls else "")}
        if reasoning:
            msg["reasoning_content"] = reasoning
        if calls:
            msg["tool_calls"] = calls
        return [msg]
