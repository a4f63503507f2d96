"""Pure wire shapes of the fake api.anthropic.com: constants, errors, scripted replies, SSE events."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Union

from tests.fakes.claude_web_wire import WireError, dumps, split_text

Pieces = Union[str, list[str]]

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
REDIRECT_URI = "https://console.anthropic.com/oauth/code/callback"
SCOPES = frozenset({"user:profile", "user:inference", "user:sessions:claude_code", "org:create_api_key"})
OAUTH_BETA = "oauth-2025-04-20"
LONG_CONTEXT_BETA = "context-1m-2025-08-07"
BILLING_PREFIX = "x-anthropic-billing-header: cc_version="
PRELUDE = "You are Claude Code, Anthropic's official CLI for Claude."
BILLING_SALT = "59cf53e54c78"

CLAUDE_CODE_ONLY = ("This credential is only authorized for use with Claude Code and cannot be used for other "
                    "API requests.")
OAUTH_EXPIRED = "OAuth token has expired. Please obtain a new token or refresh your existing token."
OAUTH_UNSUPPORTED = "OAuth authentication is currently not supported."
OAUTH_DENIED = "OAuth authentication is currently not allowed for this organization."
LONG_CONTEXT_DENIED = "The long context beta is not yet available for this subscription."
NO_CREDIT = ("Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to "
             "upgrade or purchase credits.")
RATE_LIMITED = "This request would exceed your account's rate limit. Please try again later."
REFRESH_INVALID = "Refresh token not found or invalid"

# The Cloudflare WAF answers the token endpoint this way for browser-like clients (claude-code.md §3.3).
WAF_HTML = ("<!DOCTYPE html><html lang=\"en-US\"><head><title>Attention Required! | Cloudflare</title></head>"
            "<body><h1>Sorry, you have been blocked</h1><p>You are unable to access anthropic.com</p>"
            "</body></html>")

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}

DEFAULT_MODELS: tuple[tuple[str, str, str], ...] = (
    ("claude-opus-4-8", "Claude Opus 4.8", "2026-05-01T00:00:00Z"),
    ("claude-sonnet-5", "Claude Sonnet 5", "2026-04-01T00:00:00Z"),
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-01T00:00:00Z"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-01T00:00:00Z"),
    ("claude-opus-4-5-20251101", "Claude Opus 4.5", "2025-11-01T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-01T00:00:00Z"),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-14T00:00:00Z"),
)

# Status of a non-streaming answer whose script carries an error.
ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                "not_found_error": 404, "rate_limit_error": 429, "api_error": 500, "overloaded_error": 529}

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass
class ToolCall:
    """One tool_use block the scripted model emits; its input JSON streams in `pieces` fragments."""

    name: str
    input: dict[str, Any]
    id: str | None = None  # None: a fresh toolu_… id
    pieces: int = 3


@dataclass
class Script:
    """What one messages call answers; blocks come out as thinking, text, then tool_use."""

    text: Pieces = ""  # "" or []: no text block
    thinking: Pieces | None = None  # None: the fake's thinking_text when the request asks for thinking
    tools: list[ToolCall] = field(default_factory=list)
    stop_reason: str | None = None  # None: "tool_use" with tools, else "end_turn"
    input_tokens: int | None = None  # None: the count rule (count_input_tokens)
    output_tokens: int | None = None  # None: ceil(characters generated / 4)
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    # `event: error` after the blocks, with no message_delta; the status of ERROR_STATUS if not streaming.
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class Plan:
    """A script resolved against one request: ids, signature, pieces and usage fixed."""

    message_id: str
    model: str
    thinking: list[str] | None
    signature: str
    text: list[str]
    tools: list[tuple[str, str, dict[str, Any], list[str]]]  # (id, name, input, json fragments)
    stop_reason: str
    usage: dict[str, Any]
    output_tokens: int
    error: dict[str, Any] | None


def ident(prefix: str, seed: str) -> str:
    """A real-looking id (msg_01…, toolu_01…, req_011C…) derived from `seed`."""
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    chars = []
    while len(chars) < 24:
        number, rem = divmod(number, 62)
        chars.append(_B62[rem])
    return prefix + "".join(chars)


def token_string(kind: str, seed: str) -> str:
    """An OAuth token shaped like the real ones: sk-ant-oat01-… / sk-ant-ort01-…."""
    raw = hashlib.sha512(seed.encode()).digest() + hashlib.sha512(seed.encode() + b"2").digest()
    body = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return f"sk-ant-{kind}01-{body[:86]}-{body[86:92]}AA"


def signature_for(thinking: str, seed: str) -> str:
    """A real-looking thinking signature (base64 of a protobuf-ish blob, starting "Er")."""
    blob = b"\x12\xd0\x02\n" + b"".join(hashlib.sha512(f"{seed}:{i}:{thinking}".encode()).digest()
                                        for i in range(5))
    return base64.b64encode(blob).decode()


def pkce_challenge(verifier: str) -> str:
    """base64url without padding of SHA-256(verifier) (RFC 7636 S256)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def billing_hash(first_user_text: str, version: str) -> str:
    """The 3 hex characters after cc_version=<version>. (claude-code.md §6.3)."""
    units = first_user_text.encode("utf-16-le", "surrogatepass")
    picks = []
    for index in (4, 7, 20):
        if 2 * index + 2 > len(units):
            picks.append("0")
            continue
        unit = int.from_bytes(units[2 * index:2 * index + 2], "little")
        # A lone half of a surrogate pair encodes to UTF-8 as U+FFFD in the JavaScript CLI.
        picks.append("\ufffd" if 0xD800 <= unit <= 0xDFFF else chr(unit))
    return hashlib.sha256((BILLING_SALT + "".join(picks) + version).encode()).hexdigest()[:3]


def count_input_tokens(body: dict[str, Any]) -> int:
    """The fake's token rule: len(canonical JSON of system, messages and tools) // 4, at least 1."""
    canon = json.dumps({"system": body.get("system"), "messages": body.get("messages"), "tools": body.get("tools")},
                       sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return max(1, len(canon) // 4)


def api_error(status: int, err_type: str, message: str, request_id: str) -> WireError:
    """An Anthropic API error answer, with its request_id as the real API adds it."""
    body = {"type": "error", "error": {"type": err_type, "message": message}, "request_id": request_id}
    return WireError(status, {"Content-Type": "application/json", "request-id": request_id}, dumps(body))


def oauth_error(status: int, error: str, description: str) -> WireError:
    """An OAuth token-endpoint error: `{"error", "error_description"}`."""
    return WireError(status, {"Content-Type": "application/json"},
                     dumps({"error": error, "error_description": description}))


def waf_block() -> WireError:
    """The Cloudflare WAF's 429 HTML page."""
    return WireError(429, {"Content-Type": "text/html; charset=UTF-8", "Server": "cloudflare",
                           "cf-ray": "8f00000000000000-FRA"}, WAF_HTML)


def rfc3339(epoch: float) -> str:
    """Epoch seconds as RFC 3339 UTC with a Z."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def default_usage(now: float) -> dict[str, Any]:
    """An `api/oauth/usage` body for an idle Max account: opus has no separate limit."""
    def window(hours: int) -> dict[str, Any]:
        return {"utilization": 0.0, "resets_at": rfc3339(now + hours * 3600)}
    return {"five_hour": window(5), "seven_day": window(168), "seven_day_sonnet": window(168),
            "seven_day_opus": None}


def models_page(models: list[tuple[str, str, str]], limit: int, after_id: str | None) -> dict[str, Any]:
    """A `GET v1/models` page."""
    ids = [m[0] for m in models]
    start = ids.index(after_id) + 1 if after_id in ids else 0
    page = models[start:start + limit]
    data = [{"type": "model", "id": i, "display_name": n, "created_at": c} for i, n, c in page]
    return {"data": data, "has_more": start + limit < len(models),
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


def plan_reply(script: Script, *, model: str, input_tokens: int, thinking_on: bool, thinking_text: Pieces,
               chunk_chars: int, seed: str) -> Plan:
    """Resolve a script for one request (thinking only when the request enables it, as the model does)."""
    thinking = None
    if thinking_on:
        pieces = split_text(thinking_text if script.thinking is None else script.thinking, chunk_chars)
        thinking = pieces or None
    text = split_text(script.text, chunk_chars)
    tools = []
    for n, call in enumerate(script.tools):
        partial = dumps(call.input)
        size = math.ceil(len(partial) / max(call.pieces, 1)) or 1
        fragments = [partial[i:i + size] for i in range(0, len(partial), size)]
        tools.append((call.id or ident("toolu_01", f"{seed}:tool:{n}"), call.name, call.input, fragments))
    made = "".join(thinking or []) + "".join(text) + "".join(dumps(t[2]) for t in tools)
    output = script.output_tokens if script.output_tokens is not None else max(1, math.ceil(len(made) / 4))
    usage = {"input_tokens": script.input_tokens if script.input_tokens is not None else input_tokens,
             "cache_creation_input_tokens": script.cache_creation_input_tokens,
             "cache_read_input_tokens": script.cache_read_input_tokens,
             "cache_creation": {"ephemeral_5m_input_tokens": script.cache_creation_input_tokens,
                                "ephemeral_1h_input_tokens": 0},
             "service_tier": "standard"}
    stop = script.stop_reason or ("tool_use" if tools else "end_turn")
    signature = signature_for("".join(thinking or []), seed)
    return Plan(ident("msg_01", seed), model, thinking, signature, text, tools, stop, usage, output, script.error)


def message_json(plan: Plan) -> dict[str, Any]:
    """The non-streaming Messages body."""
    content: list[dict[str, Any]] = []
    if plan.thinking is not None:
        content.append({"type": "thinking", "thinking": "".join(plan.thinking), "signature": plan.signature})
    if plan.text:
        content.append({"type": "text", "text": "".join(plan.text)})
    content += [{"type": "tool_use", "id": i, "name": n, "input": inp} for i, n, inp, _ in plan.tools]
    return {"id": plan.message_id, "type": "message", "role": "assistant", "model": plan.model,
            "content": content, "stop_reason": plan.stop_reason, "stop_sequence": None,
            "usage": {**plan.usage, "output_tokens": plan.output_tokens}}


def _block(index: int, start: dict[str, Any], deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"type": "content_block_start", "index": index, "content_block": start}]
    events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
    return events + [{"type": "content_block_stop", "index": index}]


def stream_events(plan: Plan) -> list[dict[str, Any]]:
    """The exact Anthropic event sequence: message_start, blocks (ping after the first start), delta, stop."""
    start = {k: v for k, v in message_json(plan).items() if k != "content"}
    start.update(content=[], stop_reason=None, usage={**plan.usage, "output_tokens": 1})
    head: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
    blocks: list[list[dict[str, Any]]] = []
    if plan.thinking is not None:
        deltas = [{"type": "thinking_delta", "thinking": p} for p in plan.thinking]
        deltas.append({"type": "signature_delta", "signature": plan.signature})
        blocks.append(_block(len(blocks), {"type": "thinking", "thinking": "", "signature": ""}, deltas))
    if plan.text:
        blocks.append(_block(len(blocks), {"type": "text", "text": ""},
                             [{"type": "text_delta", "text": p} for p in plan.text]))
    for tool_id, name, _, fragments in plan.tools:
        blocks.append(_block(len(blocks), {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
                             [{"type": "input_json_delta", "partial_json": p} for p in fragments]))
    body = [e for b in blocks for e in b]
    if body:
        # The real API sends its ping right after the first content_block_start (conversions.md §2.3).
        body.insert(1, {"type": "ping"})
    if plan.error is not None:
        return head + body + [{"type": "error", "error": plan.error}]
    usage = {k: plan.usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
    delta = {"type": "message_delta", "delta": {"stop_reason": plan.stop_reason, "stop_sequence": None},
             "usage": {**usage, "output_tokens": plan.output_tokens}}
    return head + body + [delta, {"type": "message_stop"}]


def encode(event: dict[str, Any]) -> bytes:
    """One SSE event with its `event:` line."""
    return f"event: {event['type']}\ndata: {dumps(event)}\n\n".encode()

