"""Anthropic Messages answers as values: credential outcomes, stream usage, the model echo.

Covers claude-code.md §6.5–§6.7 (cookie-derived OAuth tokens) and gateway.md §2.3 / §5.1 (API keys).
"""

from __future__ import annotations

import json
import math
from email.utils import parsedate_to_datetime
from typing import Mapping

from .. import errors
from .claude_web_account import parse_rfc3339
from .sse import json_bytes
from .tokens import token_count
from .upstream_errors import (CLIENT, OK, PARK, RETIRE, TRANSIENT, TRANSIENT_STATUSES, Outcome,
                              classify, read_body, reset_time)

API_KEY_PARK_S = 60  # gateway §2.3: a 429 without any reset information cools the key for 60 s
RESET_HEADERS = tuple(f"anthropic-ratelimit-{kind}-reset"
                      for kind in ("requests", "tokens", "input-tokens", "output-tokens"))
UNIFIED_RESET = "anthropic-ratelimit-unified-reset"
_CREDIT_WORDS = ("credit", "balance", "insufficient_quota")  # gateway §5.1
_CREDIT_STATUSES = (400, 402)
INPUT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def header(headers: Mapping[str, str], name: str, default: str = "") -> str:
    """A header value by case-insensitive name (plain dicts from tests, CIMultiDict from aiohttp)."""
    value = headers.get(name)
    if value is None and not type(headers).__name__.startswith("CIMultiDict"):  # those match any case
        name = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return default if value is None else str(value)


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): str(v) for k, v in headers.items()}


# ---------------------------------------------------------------- API keys (gateway §2.3, §5.1)


def _retry_after(value: str, now: float) -> float | None:
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:  # the HTTP-date form of Retry-After
            return parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, IndexError):
            return None
    return now + seconds if math.isfinite(seconds) and seconds >= 0 else None


def api_key_reset(headers: Mapping[str, str], now: float) -> int:
    """When a 429 on an API key ends: retry-after, else the earliest future reset header, else +60 s."""
    lowered = _lowered(headers)
    until = _retry_after(lowered.get("retry-after", ""), now)
    if until is None:
        resets = [parse_rfc3339(lowered.get(name)) for name in RESET_HEADERS]
        future = [t for t in resets if t is not None and t > now]
        until = min(future) if future else now + API_KEY_PARK_S
    return math.ceil(until)


def _upstream_error(status: int, message: str, kind: str | None) -> errors.UpstreamError:
    return errors.UpstreamError(message, status=status, type=kind or errors.anthropic_type(status))


def classify_api_key(status: int, headers: Mapping[str, str], body: bytes, *, now: float) -> Outcome:
    """Map an Anthropic API-key answer to an Outcome (reasons `invalid`, `no_credit`, `rate_limited`)."""
    if 200 <= status < 300:
        return Outcome(OK)
    info = read_body(body)
    err = _upstream_error(status, info.message, info.type)
    text = f"{info.type or ''} {info.message}".lower()
    if status == 401:
        return Outcome(RETIRE, err, "invalid")
    if status == 402 or (status in _CREDIT_STATUSES and any(w in text for w in _CREDIT_WORDS)):
        return Outcome(RETIRE, err, "no_credit")  # re-enabled by hand once topped up
    if status == 429:
        return Outcome(PARK, err, "rate_limited", api_key_reset(headers, now))
    if status >= 500 or status in TRANSIENT_STATUSES or info.type == "overloaded_error":
        err.retryable = True
        if status == 529:
            err.type = "overloaded_error"
        return Outcome(TRANSIENT, err)
    return Outcome(CLIENT, err)  # 403 permission_error is usually model access: no state change


# ---------------------------------------------------------------- OAuth tokens (§6.7)


def _unified_reset(headers: Mapping[str, str]) -> int | None:
    try:
        value = float(headers.get(UNIFIED_RESET, ""))
    except ValueError:
        return None
    return int(value) if math.isfinite(value) and value > 0 else None


def classify_oauth(status: int, headers: Mapping[str, str], body: bytes, *, now: float) -> Outcome:
    """claude-web.md §13 for a Messages answer, with §6.7's 429 order (unified-reset header first)."""
    lowered = _lowered(headers)
    outcome = classify(status, lowered, body, now=now)
    if outcome.action != PARK:
        return outcome
    until = _unified_reset(lowered)
    if until is None:  # then `resetsAt` in the message, then now + 1 h
        until = reset_time(read_body(body), {}, now)
    return Outcome(PARK, outcome.error, {"TooManyRequest": until}, until)


# ---------------------------------------------------------------- usage (§6.5, §6.6)


class UsageTracker:
    """Reads usage and the stop reason from Anthropic stream events as they pass (§6.5)."""

    __slots__ = ("_input", "output_tokens", "stop_reason", "saw_stop")

    def __init__(self) -> None:
        self._input: dict[str, int] = {}
        self.output_tokens = 0
        self.stop_reason: str | None = None
        self.saw_stop = False

    @property
    def input_tokens(self) -> int:
        """Uncached + cache-write + cache-read input tokens."""
        return sum(self._input.values())

    def as_usage(self) -> dict:
        """The counts as an Anthropic `usage` object (the input fields the upstream reported)."""
        return {**self._input, "output_tokens": self.output_tokens}

    def feed(self, event: dict) -> None:
        """Take one decoded stream event."""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            self._take(message.get("usage") if isinstance(message, dict) else None, start=True)
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") is not None:
                self.stop_reason = delta["stop_reason"]
            self._take(event.get("usage"), start=False)
        elif kind == "message_stop":
            self.saw_stop = True

    def _take(self, usage, *, start: bool) -> None:
        if not isinstance(usage, dict):
            return
        for name in INPUT_FIELDS:
            value = token_count(usage.get(name))
            # message_delta repeats input figures (final, cumulative) only with server tools;
            # a zero there never overrides what message_start reported
            if value is not None and (start or value > 0):
                self._input[name] = value
        output = token_count(usage.get("output_tokens"))
        if output is not None:
            # cumulative: the last value is the total (ClewdR's sum double-counts)
            self.output_tokens = output


def usage_from_message(body: dict) -> tuple[int, int]:
    """(input incl. cache reads and writes, output) of a non-streaming Messages answer (§6.6)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    inputs = sum(token_count(usage.get(name)) or 0 for name in INPUT_FIELDS)
    return inputs, token_count(usage.get("output_tokens")) or 0


# ---------------------------------------------------------------- model echo (§6.5)


def _rewrite_payload(payload: bytes, model: str) -> bytes | None:
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("type") != "message_start":
        return None
    message = obj.get("message")
    if not isinstance(message, dict) or message.get("model") == model:
        return None
    message["model"] = model  # an existing key keeps its place in the object
    return json_bytes(obj)  # a lone surrogate escaped in the upstream JSON stays escaped


def _rewrite_line(line: bytes, model: str) -> bytes:
    if not line.startswith(b"data:"):
        return line
    body = line.rstrip(b"\r\n")
    value = body[5:]
    rewritten = _rewrite_payload(value[1:] if value[:1] == b" " else value, model)
    return line if rewritten is None else b"data: " + rewritten + line[len(body):]


def echo_model_event(data: bytes, model: str) -> bytes:
    """`message.model` set to the client's model in a message_start payload or SSE bytes.

    Takes the bare JSON payload, or event-stream bytes (one event block or several); each `data:`
    line is looked at alone, since Anthropic writes every payload on one line. Bytes that carry no
    message_start come back unchanged (the same object).
    """
    if data.lstrip()[:1] == b"{":
        rewritten = _rewrite_payload(data.strip(), model)
        return data if rewritten is None else rewritten
    if b"message_start" not in data:  # the pass-through path sees every chunk: stay cheap
        return data
    lines = data.splitlines(keepends=True)
    out = [_rewrite_line(line, model) for line in lines]
    if all(a is b for a, b in zip(out, lines)):
        return data
    return b"".join(out)
