"""Pure wire shapes of the fake claude.ai: JSON bodies, error answers and SSE events."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any, Union

# Endpoint names; they are the aiohttp route names and the keys of `fail_on`.
ENDPOINTS = ("bootstrap", "organizations", "create", "settings", "upload", "completion", "delete")

# Where each failure behaviour strikes unless the account says otherwise (`fail_on`).
# Cookie-level and Cloudflare failures hit every call; usage-level ones hit the completion.
DEFAULT_FAIL_ON: dict[str, tuple[str, ...]] = {
    "unauthorized": ENDPOINTS,
    "invalid_authorization": ENDPOINTS,
    "cloudflare": ENDPOINTS,
    "redirect": ENDPOINTS,
    "disabled": ("completion",),
    "rate_limited": ("completion",),
    "overloaded": ("completion",),
    "null_account": ("bootstrap",),
}

DISABLED_MESSAGE = "This organization has been disabled."

CLOUDFLARE_HTML = (
    "<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title></head>"
    "<body><noscript>Enable JavaScript and cookies to continue</noscript></body></html>"
)

SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}

SIGNATURE = "RmFrZVNpZ25hdHVyZQ=="

Pieces = Union[str, list[str]]


@dataclass
class Reply:
    """What one completion answers: text, optional thinking, stop reason, optional error."""

    text: Pieces = ""
    thinking: Pieces | None = None  # None: the fake's default when paprika_mode is "extended"
    stop_reason: str = "end_turn"
    error: dict[str, Any] | None = None  # e.g. {"type": "overloaded_error", ...}: ends the stream
    search_query: str = "fake search"


@dataclass(frozen=True)
class WireError:
    """An error answer: status, headers and body text."""

    status: int
    headers: dict[str, str]
    body: str


def dumps(value: Any) -> str:
    """Compact JSON with raw UTF-8, as claude.ai writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def error_json(status: int, err_type: str, message: str) -> WireError:
    """An Anthropic-shaped JSON error answer."""
    body = {"type": "error", "error": {"type": err_type, "message": message}}
    return WireError(status, {"Content-Type": "application/json"}, dumps(body))


def rate_limit_error(resets_at: int, *, in_body: bool, in_header: bool) -> WireError:
    """429 whose `error.message` is itself a JSON string carrying `resetsAt` (spec §13)."""
    if in_body:
        inner = {"type": "exceeded_limit", "resetsAt": resets_at, "remaining": None, "perModelLimit": False}
        message = dumps(inner)
    else:
        message = "Rate limit exceeded"
    err = error_json(429, "rate_limit_error", message)
    if in_header:
        err.headers["anthropic-ratelimit-unified-reset"] = str(resets_at)
    return err


def behaviour_error(behaviour: str, *, resets_at: int, reset_in_body: bool, reset_header: bool,
                    login_path: str) -> WireError:
    """The answer a failing account gets for `behaviour` (keys of DEFAULT_FAIL_ON)."""
    if behaviour == "rate_limited":
        return rate_limit_error(resets_at, in_body=reset_in_body, in_header=reset_header)
    if behaviour == "disabled":
        body = {"error": {"message": DISABLED_MESSAGE, "type": "invalid_request_error"}}
        return WireError(400, {"Content-Type": "application/json"}, dumps(body))
    if behaviour == "cloudflare":
        headers = {"Content-Type": "text/html; charset=UTF-8", "cf-mitigated": "challenge"}
        return WireError(403, headers, CLOUDFLARE_HTML)
    if behaviour == "redirect":
        # A Location on the fake itself: a proxy that follows it stays offline and gets recorded.
        return WireError(302, {"Location": login_path}, "")
    if behaviour == "null_account":
        return WireError(200, {"Content-Type": "application/json"}, dumps({"account": None}))
    return error_json(*_SIMPLE_ERRORS[behaviour])


_SIMPLE_ERRORS: dict[str, tuple[int, str, str]] = {
    "unauthorized": (401, "authentication_error", "Invalid authorization"),
    "invalid_authorization": (403, "permission_error", "Invalid authorization"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
}


def split_text(text: Pieces, size: int) -> list[str]:
    """Cut `text` into pieces of `size` characters; a list is taken as the pieces already."""
    if isinstance(text, list):
        return list(text)
    return [text[i:i + size] for i in range(0, len(text), max(size, 1))]


def encode_event(name: str | None, data: dict[str, Any], newline: str) -> bytes:
    """One SSE event, with an `event:` line when `name` is given."""
    head = f"event: {name}{newline}" if name else ""
    return f"{head}data: {dumps(data)}{newline}{newline}".encode()


def _block(index: int, start: dict[str, Any], deltas: list[dict[str, Any]], ts: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"type": "content_block_start", "index": index, "content_block": start}]
    events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
    events.append({"type": "content_block_stop", "index": index, "stop_timestamp": ts})
    return events


def _thinking_block(index: int, pieces: list[str], ts: str) -> list[dict[str, Any]]:
    start = {"type": "thinking", "thinking": "", "summaries": [], "cut_off": False,
             "start_timestamp": ts, "stop_timestamp": None}
    deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces]
    deltas.append({"type": "signature_delta", "signature": SIGNATURE})
    return _block(index, start, deltas, ts)


def _search_blocks(index: int, query: str, tool_id: str, ts: str) -> list[dict[str, Any]]:
    use = {"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {}}
    partial = dumps({"query": query})
    half = len(partial) // 2
    deltas = [{"type": "input_json_delta", "partial_json": p} for p in (partial[:half], partial[half:])]
    hit = {"type": "web_search_result", "title": "Fake result", "url": "https://example.com/fake",
           "encrypted_content": "ZmFrZQ==", "page_age": None}
    result = {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": [hit]}
    return _block(index, use, deltas, ts) + _block(index + 1, result, [], ts)


def message_limit_event() -> dict[str, Any]:
    """claude.ai's extra usage event (not part of the Anthropic API)."""
    limit = {"type": "within_limit", "resetsAt": None, "remaining": None, "perModelLimit": None,
             "representativeClaim": "five_hour", "overageInUse": False,
             "windows": {"5h": {"status": "within_limit", "resets_at": None, "utilization": 0.01}}}
    return {"type": "message_limit", "message_limit": limit}


@dataclass(frozen=True)
class StreamPlan:
    """Everything a messages-mode stream needs; ids and time come in from outside."""

    text: list[str]
    thinking: list[str] | None
    search_query: str | None
    stop_reason: str
    error: dict[str, Any] | None
    message_id: str
    tool_id: str
    timestamp: str


def messages_events(plan: StreamPlan) -> list[dict[str, Any]]:
    """claude.ai `rendering_mode: messages` events: model "", no usage, a message_limit extra."""
    message = {"id": plan.message_id, "type": "message", "role": "assistant", "model": "",
               "content": [], "stop_reason": None, "stop_sequence": None, "trace_id": "fake-trace"}
    events: list[dict[str, Any]] = [{"type": "message_start", "message": message}]
    index = 0
    if plan.thinking is not None:
        events += _thinking_block(index, plan.thinking, plan.timestamp)
        index += 1
    if plan.search_query is not None:
        events += _search_blocks(index, plan.search_query, plan.tool_id, plan.timestamp)
        index += 2
    if plan.text:
        start = {"start_timestamp": plan.timestamp, "stop_timestamp": None, "flags": None,
                 "type": "text", "text": "", "citations": []}
        deltas = [{"type": "text_delta", "text": p} for p in plan.text]
        events += _block(index, start, deltas, plan.timestamp)
    if plan.error is not None:
        return events + [{"type": "error", "error": plan.error}]
    events.append({"type": "message_delta", "delta": {"stop_reason": plan.stop_reason, "stop_sequence": None}})
    return events + [message_limit_event(), {"type": "message_stop"}]


def raw_events(pieces: list[str], model: str, error: dict[str, Any] | None) -> list[dict[str, Any]]:
    """claude.ai `rendering_mode: raw` objects; the last one carries stop_reason "stop_sequence"."""
    events = [{"completion": p, "stop_reason": None, "model": model} for p in pieces]
    if error is not None:
        return events + [{"completion": "", "stop_reason": None, "model": model, "error": error}]
    last = {"completion": "", "stop_reason": "stop_sequence", "model": model, "stop": "\n\nHuman:",
            "log_id": "fake-log", "messageLimit": {"type": "within_limit"}}
    return events + [last]


def now_iso() -> str:
    """The current UTC time as claude.ai stamps it."""
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def is_uuid4(value: str) -> bool:
    """Whether `value` is a UUID version 4 (spec §6.1)."""
    try:
        return uuid.UUID(value).version == 4
    except ValueError:
        return False


def session_key(cookie_header: str | None) -> str | None:
    """The single `sessionKey` value of a Cookie header, or None."""
    pairs = [p.strip().partition("=") for p in (cookie_header or "").split(";")]
    keys = [value for name, sep, value in pairs if name == "sessionKey" and sep]
    return keys[0] if len(keys) == 1 else None


def echo_last_line(body: dict[str, Any]) -> str:
    """Reply hook: answer with the last line of the pasted prompt (the attachment)."""
    attachments = body.get("attachments") or [{}]
    return str(attachments[0].get("extracted_content", "")).rsplit("\n", 1)[-1]


def completion_violations(body: dict[str, Any], pro: bool, uploaded: set[str]) -> list[str]:
    """Spec §6.4 rules a completion body breaks: model only for pro, one paste.txt attachment, …"""
    found = []
    if ("model" in body) != pro:
        found.append(f"completion model key present={'model' in body} for pro={pro}")
    attachments = body.get("attachments")
    if not (isinstance(attachments, list) and len(attachments) == 1):
        found.append(f"completion attachments {attachments!r}")
    else:
        att = attachments[0]
        text = str(att.get("extracted_content", ""))
        if att.get("file_size") != len(text.encode()) or att.get("file_name") != "paste.txt":
            found.append(f"completion attachment fields {dict(att, extracted_content='…')!r}")
    unknown = [f for f in body.get("files", []) if f not in uploaded]
    if unknown:
        found.append(f"completion files not uploaded: {unknown!r}")
    if not isinstance(body.get("tools"), list) or not isinstance(body.get("timezone"), str):
        found.append("completion tools/timezone missing")
    return found
