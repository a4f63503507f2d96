"""Request validation of the fake OpenAI-compatible server: what OpenAI refuses, and what it merely notes."""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.openai_errors import DEEPSEEK_REASONING_BACK, Bad

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
PART_TYPES = {"user": ("text", "image_url", "input_audio", "file"), "system": ("text",), "developer": ("text",),
              "assistant": ("text", "refusal"), "tool": ("text",), "function": ("text",)}
# Part types and the object each must carry (`{"type": "image_url", "image_url": {...}}`).
PART_FIELDS = {"image_url": "image_url", "input_audio": "input_audio", "file": "file"}
# Every argument OpenAI's chat completions accept; anything else is "Unrecognized request argument".
OPENAI_FIELDS = frozenset((
    "model", "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls", "prediction",
    "presence_penalty", "prompt_cache_key", "prompt_cache_retention", "reasoning_effort", "response_format",
    "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options", "temperature",
    "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options"))
# Anthropic Messages fields a proxy must not leak into an OpenAI request (noted for lenient flavours).
ANTHROPIC_FIELDS = ("system", "stop_sequences", "thinking", "top_k", "anthropic_version", "anthropic_beta",
                    "output_config", "context_management", "container", "mcp_servers")
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")
DEEPSEEK_MAX_TOKENS = {"deepseek-chat": 8192, "deepseek-reasoner": 65536}
NOT_JSON = ("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
            "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you "
            "have trouble figuring out how to fix this, please contact us through our help center at "
            "help.openai.com.)")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", bool: "a boolean", int: "an integer", float: "a decimal",
             str: "a string", type(None): "null"}
    return names.get(type(value), "a value")


def _missing(where: str) -> Bad:
    return Bad(f"Missing required parameter: '{where}'.", param=where, code="missing_required_parameter")


def _wrong_type(where: str, expected: str, value: Any) -> Bad:
    return Bad(f"Invalid type for '{where}': expected {expected}, but got {_kind(value)} instead.", param=where,
               code="invalid_type")


def _bad_value(where: str, value: Any, allowed: tuple[str, ...]) -> Bad:
    quoted = [f"'{a}'" for a in allowed]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
    if len(quoted) == 2:
        listed = f"{quoted[0]} and {quoted[1]}"
    return Bad(f"Invalid value: '{value}'. Supported values are: {listed}.", param=where, code="invalid_value")


def check_body(body: Any, notes: list[str], *, flavour: str, reject_stream_options: bool) -> None:
    """Raise Bad for what the server refuses; append to `notes` the rules broken (passed or refused)."""
    if not isinstance(body, dict):
        raise Bad(NOT_JSON)
    if reject_stream_options and "stream_options" in body:
        notes.append("stream_options sent to a server that rejects it")
        raise Bad("Unrecognized request argument supplied: stream_options")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Bad("you must provide a model parameter")
    if flavour == "openai":
        for name in body:
            if name not in OPENAI_FIELDS:
                raise Bad(f"Unrecognized request argument supplied: {name}")
    else:
        notes += [f"Anthropic field {name!r} in an OpenAI request" for name in ANTHROPIC_FIELDS
                  if name in body and not (name == "top_k" and flavour == "openrouter")]
    if "stream_options" in body and body.get("stream") is not True:
        raise Bad("The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options")
    messages = body.get("messages")
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array", messages)
    if not messages:
        raise Bad("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array "
                  "instead.", param="messages", code="empty_array")
    _check_messages(messages, flavour, notes)
    _check_tools(body.get("tools"))
    _check_flavour(body, flavour)
    if flavour != "openrouter" and "cache_control" in repr(body):
        notes.append("cache_control sent to a server that does not take it")


def _check_messages(messages: list[Any], flavour: str, notes: list[str]) -> None:
    pending: set[str] | None = None  # tool_call ids of the last assistant message still awaiting answers
    pending_at = 0
    for n, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _wrong_type(f"messages[{n}]", "an object", message)
        role = message.get("role")
        if role is None:
            raise _missing(f"messages[{n}].role")
        if role not in ROLES:
            raise _bad_value(f"messages[{n}].role", role, ROLES)
        if "reasoning_content" in message and flavour == "deepseek":
            notes.append(f"messages[{n}] carries reasoning_content back to DeepSeek")
            raise Bad(DEEPSEEK_REASONING_BACK)
        _check_content(message, n, role)
        if role == "tool":
            tool_id = message.get("tool_call_id")
            if tool_id is None:
                raise _missing(f"messages[{n}].tool_call_id")
            if not isinstance(tool_id, str):
                raise _wrong_type(f"messages[{n}].tool_call_id", "a string", tool_id)
            if pending is None:
                raise Bad("Invalid parameter: messages with role 'tool' must be a response to a preceeding message "
                          "with 'tool_calls'.", param=f"messages.[{n}].role")
            if tool_id not in pending:
                raise Bad(f"Invalid parameter: 'tool_call_id' of '{tool_id}' not found in 'tool_calls' of previous "
                          "message.", param=f"messages.[{n}].tool_call_id")
            pending.discard(tool_id)
            continue
        _unanswered(pending, pending_at)
        pending = None
        if role == "assistant" and message.get("tool_calls"):
            pending, pending_at = set(_check_tool_calls(message["tool_calls"], n)), n
    _unanswered(pending, pending_at)


def _unanswered(pending: set[str] | None, at: int) -> None:
    if pending:
        raise Bad("An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                  f"'tool_call_id'. The following tool_call_ids did not have response messages: "
                  f"{', '.join(sorted(pending))}", param=f"messages.[{at}].role")


def _check_content(message: dict[str, Any], n: int, role: str) -> None:
    content = message.get("content")
    if role == "assistant" and content is None:
        if not (message.get("tool_calls") or message.get("function_call") or message.get("refusal")):
            raise Bad("Invalid value for 'content': expected a string, got null.", param=f"messages.[{n}].content")
        return
    if "content" not in message:
        raise _missing(f"messages[{n}].content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _wrong_type(f"messages[{n}].content", "one of a string or array of objects", content)
    for k, part in enumerate(content):
        where = f"messages[{n}].content[{k}]"
        if not isinstance(part, dict):
            raise _wrong_type(where, "an object", part)
        kind = part.get("type")
        if kind is None:
            raise _missing(f"{where}.type")
        if kind not in PART_TYPES[role]:
            raise _bad_value(f"{where}.type", kind, PART_TYPES[role])
        if kind in ("text", "refusal") and not isinstance(part.get(kind), str):
            if kind not in part:
                raise _missing(f"{where}.{kind}")
            raise _wrong_type(f"{where}.{kind}", "a string", part[kind])
        if kind in PART_FIELDS and not isinstance(part.get(PART_FIELDS[kind]), dict):
            raise _missing(f"{where}.{PART_FIELDS[kind]}")
        if kind == "image_url" and not isinstance(part["image_url"].get("url"), str):
            raise _missing(f"{where}.image_url.url")


def _check_tool_calls(calls: Any, n: int) -> list[str]:
    if not isinstance(calls, list):
        raise _wrong_type(f"messages[{n}].tool_calls", "an array", calls)
    ids = []
    for k, call in enumerate(calls):
        where = f"messages[{n}].tool_calls[{k}]"
        if not isinstance(call, dict):
            raise _wrong_type(where, "an object", call)
        for name in ("id", "type", "function"):
            if name not in call:
                raise _missing(f"{where}.{name}")
        if not isinstance(call["id"], str):
            raise _wrong_type(f"{where}.id", "a string", call["id"])
        if call["type"] != "function":
            raise _bad_value(f"{where}.type", call["type"], ("function",))
        function = call["function"]
        if not isinstance(function, dict):
            raise _wrong_type(f"{where}.function", "an object", function)
        for name in ("name", "arguments"):
            if name not in function:
                raise _missing(f"{where}.function.{name}")
            if not isinstance(function[name], str):
                raise _wrong_type(f"{where}.function.{name}", "a string", function[name])
        ids.append(call["id"])
    return ids


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _wrong_type("tools", "an array", tools)
    for k, tool in enumerate(tools):
        where = f"tools[{k}]"
        if not isinstance(tool, dict):
            raise _wrong_type(where, "an object", tool)
        if tool.get("type") != "function":
            raise _bad_value(f"{where}.type", tool.get("type"), ("function", "custom"))
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _missing(f"{where}.function")
        name = function.get("name")
        if not isinstance(name, str):
            raise _missing(f"{where}.function.name")
        if not TOOL_NAME.match(name):
            raise Bad(f"Invalid '{where}.function.name': string does not match pattern. Expected a string that "
                      "matches the pattern '^[a-zA-Z0-9_-]+$'.", param=f"{where}.function.name", code="invalid_value")
        if "parameters" in function and not isinstance(function["parameters"], dict):
            raise _wrong_type(f"{where}.function.parameters", "an object", function["parameters"])


def _check_flavour(body: dict[str, Any], flavour: str) -> None:
    model = body["model"]
    if flavour == "openai":
        stop = body.get("stop")
        if isinstance(stop, list) and len(stop) > 4:
            raise Bad(f"Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array "
                      f"with length {len(stop)} instead.", param="stop", code="array_above_max_length")
        if REASONING_MODEL.match(model):
            # Reasoning models take max_completion_tokens and only the default temperature.
            if "max_tokens" in body:
                raise Bad("Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                          "'max_completion_tokens' instead.", param="max_tokens", code="unsupported_parameter")
            temperature = body.get("temperature")
            if temperature is not None and temperature != 1:
                raise Bad(f"Unsupported value: 'temperature' does not support {temperature} with this model. Only "
                          "the default (1) value is supported.", param="temperature", code="unsupported_value")
        elif "reasoning_effort" in body:
            raise Bad("Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                      param="reasoning_effort", code="unsupported_parameter")
    if flavour == "deepseek" and "max_tokens" in body:
        limit = DEEPSEEK_MAX_TOKENS.get(model, 8192)
        value = body["max_tokens"]
        if not isinstance(value, int) or not 1 <= value <= limit:
            raise Bad(f"Invalid max_tokens value, the valid range of max_tokens is [1, {limit}]")
