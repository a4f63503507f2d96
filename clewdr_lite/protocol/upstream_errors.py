"""Classify an upstream answer into what the pool and the retry loop should do (claude-web.md §13)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from clewdr_lite import errors

OK, BLOCKED, RETIRE, PARK, CODE_DENIED, TRANSIENT, CLIENT = (
    "ok", "blocked", "retire", "park", "code_denied", "transient", "client")

TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504, 529})
DEFAULT_PARK_S = 3600
BLOCKED_MESSAGE = ("The upstream host blocked the request (Cloudflare challenge or IP block). "
                   "This is not a cookie problem: set `proxy` to route claude.ai traffic through "
                   "another IP, or point `rproxy` at another host or mirror.")
_DISABLED = "This organization has been disabled."
_OAUTH_DENIED = "oauth authentication is currently not allowed for this organization"


@dataclass(frozen=True)
class Outcome:
    """What happened: `action` (one of the constants above), pool reason and park time, the error."""

    action: str
    error: errors.ProxyError | None = None
    reason: Any = None
    until: int | None = None


@dataclass(frozen=True)
class ErrorBody:
    """An upstream error body, read leniently."""

    message: str
    type: str | None
    detail: Any  # `message` parsed as JSON when it is itself a JSON document, else None


def read_body(body: bytes) -> ErrorBody:
    """Read `{"error": {"message", "type"}}` (with or without a top-level type) or anything else."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON from a broken mirror
        return ErrorBody(text.strip()[:500] or "empty error body", None, None)
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, str):
        return ErrorBody(err, data.get("type") if isinstance(data.get("type"), str) else None, None)
    if not isinstance(err, dict):
        return ErrorBody(f"Unknown error: {text.strip()[:500]}", None, None)
    message = err.get("message")
    detail = None
    if isinstance(message, str) and message[:1] in "{[":
        try:
            detail = json.loads(message)
        except (ValueError, RecursionError):
            detail = None
    if message is None:
        message = f"Unknown error: {text.strip()[:500]}"
    elif not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    kind = err.get("type") if isinstance(err.get("type"), str) else None
    return ErrorBody(message, kind, detail)


def reset_time(body: ErrorBody, headers: Mapping[str, str], now: float) -> int:
    """When a 429 ends: `resetsAt` in the message, else the unified-reset header, else now + 1 h."""
    detail = body.detail
    if isinstance(detail, dict):
        value = detail.get("resetsAt")
        if isinstance(value, (int, float)) and value > 0:
            return int(value)
    header = headers.get("anthropic-ratelimit-unified-reset")
    if header:
        try:
            return int(float(header))
        except ValueError:
            pass
    return int(now) + DEFAULT_PARK_S


def _is_cloudflare(status: int, headers: Mapping[str, str], body: bytes) -> bool:
    if status == 302:
        return True
    if status != 403:
        return False
    if headers.get("cf-mitigated", "").lower() == "challenge":
        return True
    head = body[:512].lstrip().lower()
    return head.startswith(b"<!doctype html") or head.startswith(b"<html")


def classify(status: int, headers: Mapping[str, str], body: bytes, *, now: float) -> Outcome:
    """Map one upstream answer to an Outcome (claude-web.md §13)."""
    if 200 <= status < 300:
        return Outcome(OK)
    if _is_cloudflare(status, headers, body):
        return Outcome(BLOCKED, errors.UpstreamBlocked(BLOCKED_MESSAGE))
    info = read_body(body)
    lower = info.message.lower()
    err = errors.UpstreamError(info.message, status=status,
                               type=info.type or errors.anthropic_type(status))
    if status == 400 and info.message.strip() == _DISABLED:
        return Outcome(RETIRE, err, "Disabled")
    if status == 401:
        return Outcome(RETIRE, err, "Null")
    if status == 403 and _OAUTH_DENIED in lower:
        return Outcome(CODE_DENIED, err)
    if status == 403 and "invalid authorization" in lower:
        return Outcome(RETIRE, err, "Null")
    if status == 429:
        until = reset_time(info, headers, now)
        return Outcome(PARK, err, {"TooManyRequest": until}, until)
    if status in TRANSIENT_STATUSES or info.type == "overloaded_error":
        err.retryable = True
        if status == 529 or info.type == "overloaded_error":
            err.type = "overloaded_error"
        return Outcome(TRANSIENT, err)
    return Outcome(CLIENT, err)


def classify_event(event: dict) -> Outcome:
    """An in-stream `error` event: overloaded / api errors are transient, others client errors."""
    err = event.get("error") if isinstance(event.get("error"), dict) else {}
    kind = err.get("type") or "api_error"
    message = err.get("message") or "upstream error"
    status = {"overloaded_error": 529, "rate_limit_error": 429, "invalid_request_error": 400,
              "authentication_error": 401, "permission_error": 403}.get(kind, 502)
    error = errors.UpstreamError(str(message), status=status, type=kind)
    if kind in ("overloaded_error", "api_error"):
        error.retryable = True
        return Outcome(TRANSIENT, error)
    return Outcome(CLIENT, error)
