"""Pure wire shapes of the fake OpenAI-compatible server: scripts, plans, chat.completion bodies and chunks."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Union

from tests.fakes.claude_web_wire import dumps, split_text

Pieces = Union[str, list[str]]

FLAVOURS = ("openai", "deepseek", "openrouter")
ID_STYLES = ("call", "numeric", "none")
FINGERPRINT = "fp_c1ewd0fake"
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
# OpenRouter keeps slow connections open with SSE comments before the first chunk.
OPENROUTER_COMMENT = b": OPENROUTER PROCESSING\n\n"
DONE = b"data: [DONE]\n\n"

DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini"),
    "deepseek": ("deepseek-chat", "deepseek-reasoner"),
    "openrouter": ("openai/gpt-4o", "anthropic/claude-sonnet-4.5", "deepseek/deepseek-r1", "google/gemini-2.5-pro"),
}
OWNED_BY = {"openai": "system", "deepseek": "deepseek", "openrouter": "openrouter"}

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass
class OToolCall:
    """One function call the scripted model makes; `arguments` is the JSON string it writes, in `pieces` fragments."""

    name: str
    arguments: str = "{}"
    id: str | None = None  # None: one in the script's id_style
    pieces: int = 3


@dataclass
class OScript:
    """What one chat call answers: reasoning, then text, then tool calls."""

    text: Pieces = ""
    reasoning: Pieces | None = None  # reasoning_content (openai, deepseek) or reasoning (openrouter)
    tool_calls: list[OToolCall] = field(default_factory=list)
    finish_reason: str | None = None  # None: "tool_calls" with tool calls, else "stop"
    usage: dict[str, Any] | bool | None = None  # None: computed; a dict overrides keys; False: no usage at all
    id_style: str = "call"  # "call": call_…; "numeric": JSON integers (some servers); "none": no id


@dataclass(frozen=True)
class Call:
    """A tool call resolved for one answer."""

    index: int
    id: str | int | None
    name: str
    arguments: str
    fragments: list[str]


@dataclass(frozen=True)
class Plan:
    """A script resolved against one request: ids, pieces and usage fixed."""

    flavour: str
    id: str
    model: str
    created: int
    reasoning: list[str] | None
    text: list[str]
    calls: list[Call]
    finish_reason: str
    usage: dict[str, Any] | None
    seed: str


def alnum(seed: str, size: int) -> str:
    """`size` base-62 characters derived from `seed`."""
    number = int.from_bytes(hashlib.sha512(seed.encode()).digest(), "big")
    chars = []
    for _ in range(size):
        number, rem = divmod(number, 62)
        chars.append(_B62[rem])
    return "".join(chars)


def completion_id(flavour: str, seed: str, created: int) -> str:
    """A completion id as each flavour writes it."""
    if flavour == "deepseek":
        h = hashlib.sha256(seed.encode()).hexdigest()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
    if flavour == "openrouter":
        return f"gen-{created}-{alnum(seed, 20)}"
    return "chatcmpl-" + alnum(seed, 29)


def _call_id(style: str, seed: str) -> str | int | None:
    if style == "numeric":
        return int(hashlib.sha256(seed.encode()).hexdigest()[:12], 16)
    if style == "none":
        return None
    return "call_" + alnum(seed, 24)


def go_duration(seconds: float) -> str:
    """Seconds as OpenAI's x-ratelimit-reset-* values write them: "6m0s", "20s", "1.5s", "12ms"."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".")
    return (f"{int(hours)}h" if hours else "") + (f"{int(minutes)}m" if hours or minutes else "") + f"{text}s"


def count_prompt_tokens(body: dict[str, Any]) -> int:
    """The fake's token rule: len(canonical JSON of messages and tools) // 4, at least 1."""
    canon = json.dumps({"messages": body.get("messages"), "tools": body.get("tools")}, sort_keys=True,
                       separators=(",", ":"), ensure_ascii=False)
    return max(1, len(canon) // 4)


def _usage(flavour: str, prompt: int, completion: int, reasoning: int,
           override: dict[str, Any] | bool | None) -> dict[str, Any] | None:
    if override is False:
        return None
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}
    if flavour == "openai":
        usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
    elif flavour == "deepseek":
        usage["prompt_tokens_details"] = {"cached_tokens": 0}
        if reasoning:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        usage.update(prompt_cache_hit_tokens=0, prompt_cache_miss_tokens=prompt)
    else:
        usage.update(cost=round((prompt * 3 + completion * 15) / 1e6, 8), is_byok=False,
                     prompt_tokens_details={"cached_tokens": 0},
                     completion_tokens_details={"reasoning_tokens": reasoning})
    if isinstance(override, dict):
        usage.update(override)
        if "total_tokens" not in override:
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage


def plan_reply(script: OScript, *, flavour: str, model: str, created: int, prompt_tokens: int, chunk_chars: int,
               seed: str) -> Plan:
    """Resolve a script for one request."""
    if script.id_style not in ID_STYLES:
        raise ValueError(f"unknown id_style {script.id_style!r}")
    reasoning = split_text(script.reasoning, chunk_chars) or None if script.reasoning is not None else None
    text = split_text(script.text, chunk_chars)
    calls = []
    for n, call in enumerate(script.tool_calls):
        size = math.ceil(len(call.arguments) / max(call.pieces, 1)) or 1
        fragments = [call.arguments[i:i + size] for i in range(0, len(call.arguments), size)]
        call_id = call.id if call.id is not None else _call_id(script.id_style, f"{seed}:call:{n}")
        calls.append(Call(n, call_id, call.name, call.arguments, fragments))
    thought = "".join(reasoning or [])
    made = thought + "".join(text) + "".join(c.arguments for c in calls)
    usage = _usage(flavour, prompt_tokens, max(1, math.ceil(len(made) / 4)), math.ceil(len(thought) / 4),
                   script.usage)
    finish = script.finish_reason or ("tool_calls" if calls else "stop")
    return Plan(flavour, completion_id(flavour, seed, created), model, created, reasoning, text, calls, finish,
                usage, seed)


# -- non-streaming ----------------------------------------------------------------------------------------


def _wire_call(call: Call) -> dict[str, Any]:
    item: dict[str, Any] = {} if call.id is None else {"id": call.id}
    item.update(type="function", function={"name": call.name, "arguments": call.arguments})
    return item


def _reasoning_details(text: str) -> list[dict[str, Any]]:
    return [{"type": "reasoning.text", "text": text, "format": "unknown", "index": 0}]


def completion_json(plan: Plan) -> dict[str, Any]:
    """The chat.completion body as the flavour writes it."""
    text = "".join(plan.text)
    thought = "".join(plan.reasoning) if plan.reasoning is not None else None
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if plan.calls else "")}
    if plan.flavour == "openrouter":
        message.update(refusal=None, reasoning=thought)
        if thought is not None:
            message["reasoning_details"] = _reasoning_details(thought)
    else:
        if plan.flavour == "openai":
            message.update(refusal=None, annotations=[])
        if thought is not None:
            message["reasoning_content"] = thought
    if plan.calls:
        message["tool_calls"] = [_wire_call(c) for c in plan.calls]
    choice: dict[str, Any] = {"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish_reason}
    if plan.flavour == "openrouter":
        choice["native_finish_reason"] = plan.finish_reason
    body = _envelope(plan, "chat.completion", [choice])
    if plan.usage is not None:
        body["usage"] = plan.usage
    return body


def _envelope(plan: Plan, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    if plan.flavour == "openrouter":
        return {"id": plan.id, "provider": "OpenAI", "model": plan.model, "object": obj, "created": plan.created,
                "choices": choices}
    body: dict[str, Any] = {"id": plan.id, "object": obj, "created": plan.created, "model": plan.model,
                            "choices": choices}
    if plan.flavour == "openai":
        body["service_tier"] = "default"
    body["system_fingerprint"] = FINGERPRINT
    return body


# -- streaming --------------------------------------------------------------------------------------------


def _tool_items(plan: Plan, interleave: bool) -> list[dict[str, Any]]:
    """Tool-call delta items: id, type and name only in each call's first fragment."""
    per_call: list[list[dict[str, Any]]] = []
    for call in plan.calls:
        head: dict[str, Any] = {"index": call.index}
        if call.id is not None:
            head["id"] = call.id
        head.update(type="function", function={"name": call.name, "arguments": ""})
        per_call.append([head] + [{"index": call.index, "function": {"arguments": p}} for p in call.fragments])
    if not interleave:
        return [item for items in per_call for item in items]
    # Parallel calls interleaved: fragment r of call 0, of call 1, …, then fragment r + 1.
    rounds = max((len(items) for items in per_call), default=0)
    return [items[r] for r in range(rounds) for items in per_call if r < len(items)]


def _deltas(plan: Plan, interleave: bool) -> list[dict[str, Any]]:
    flavour = plan.flavour
    items = _tool_items(plan, interleave)
    if flavour == "openrouter":
        first: dict[str, Any] = {"role": "assistant", "content": "", "reasoning": None}
    elif flavour == "deepseek" and plan.reasoning:
        first = {"role": "assistant", "content": None, "reasoning_content": ""}
    elif flavour == "openai" and not plan.reasoning and not plan.text and items:
        # OpenAI's first chunk of a tool-only answer carries the role and the first call's head.
        first = {"role": "assistant", "content": None, "tool_calls": [items.pop(0)], "refusal": None}
    else:
        first = {"role": "assistant", "content": ""}
        if flavour == "openai":
            first["refusal"] = None
    deltas = [first]
    for piece in plan.reasoning or []:
        if flavour == "openrouter":
            deltas.append({"role": "assistant", "content": "", "reasoning": piece,
                           "reasoning_details": _reasoning_details(piece)})
        else:  # DeepSeek (and vLLM-style servers): content is null while reasoning streams.
            deltas.append({"content": None, "reasoning_content": piece})
    for piece in plan.text:
        if flavour == "openrouter":
            deltas.append({"role": "assistant", "content": piece, "reasoning": None})
        elif plan.reasoning:
            deltas.append({"content": piece, "reasoning_content": None})
        else:
            deltas.append({"content": piece})
    lead = {"role": "assistant", "content": ""} if flavour == "openrouter" else {}
    deltas += [{**lead, "tool_calls": [item]} for item in items]
    return deltas


def _choice(plan: Plan, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    if plan.flavour == "openrouter":
        choice["native_finish_reason"] = finish
    return choice


def stream_chunks(plan: Plan, *, include_usage: bool, interleave: bool = True) -> list[dict[str, Any]]:
    """The chat.completion.chunk objects: deltas, the finish chunk, then the usage chunk when asked for."""
    final = {"openai": {}, "deepseek": {"content": ""}, "openrouter": {"role": "assistant", "content": ""}}
    choices = [_choice(plan, d, None) for d in _deltas(plan, interleave)]
    choices.append(_choice(plan, final[plan.flavour], plan.finish_reason))
    chunks = []
    for n, choice in enumerate(choices):
        chunk = _envelope(plan, "chat.completion.chunk", [choice])
        if include_usage and plan.flavour != "openrouter":
            chunk["usage"] = None  # OpenAI and DeepSeek write usage: null on every chunk but the last
        if plan.flavour == "openai":
            chunk["obfuscation"] = alnum(f"{plan.seed}:ob:{n}", 1 + n % 9)
        chunks.append(chunk)
    if include_usage and plan.usage is not None:
        chunks.append({**_envelope(plan, "chat.completion.chunk", []), "usage": plan.usage})
    return chunks


def sse(chunk: dict[str, Any]) -> bytes:
    """One `data:` SSE event."""
    return f"data: {dumps(chunk)}\n\n".encode()


def models_list(flavour: str, models: list[str], created: int) -> dict[str, Any]:
    """A `GET /v1/models` body."""
    data = [{"id": m, "object": "model", "created": created, "owned_by": OWNED_BY[flavour]} for m in models]
    return {"object": "list", "data": data}
