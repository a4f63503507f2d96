"""Error answers of OpenAI-compatible upstreams → pool outcomes (gateway.md §5.1 generic rules).

401 retires the key (`invalid`); 402 or a quota/credit message retires it (`no_credit`, re-enabled
by hand; OpenAI says `insufficient_quota` with a 429); 429 parks it until `retry-after` or a reset
header; 408, 5xx and 529 are transient; other 4xx are the client's problem.
"""

from __future__ import annotations

import math
import re
from email.utils import parsedate_to_datetime
from typing import Mapping

from .. import errors
from .upstream_errors import CLIENT, OK, PARK, RETIRE, TRANSIENT, TRANSIENT_STATUSES, Outcome, read_body

PARK_S = 60  # a 429 without any reset information cools the key for 60 s
_CREDIT_WORDS = ("insufficient_quota", "credit", "balance")
_LIMITS = ("requests", "tokens")  # x-ratelimit-{remaining,reset}-<limit> (OpenAI, Groq …)
# Go-style durations as OpenAI sends them: "1s", "6m0s", "20ms", "1h2m3.5s"
_DURATION = re.compile(r"(?:\d+(?:\.\d*)?(?:ms|us|µs|ns|h|m|s))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?)(ms|us|µs|ns|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def duration(value: str | None) -> float | None:
    """Seconds in a reset duration: a plain number of seconds or a Go-style duration like "6m0s"."""
    value = (value or "").strip()
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    if not _DURATION.fullmatch(value):
        return None
    return sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(value))


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """`retry-after-ms`, or `retry-after` in seconds or as an HTTP date."""
    ms = _number(headers.get("retry-after-ms", "").strip())
    if ms is not None:
        return now + ms / 1000
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    seconds = _number(value)
    if seconds is not None:
        return now + seconds
    try:
        return max(parsedate_to_datetime(value).timestamp(), now)
    except (TypeError, ValueError, IndexError):
        return None


def _reset_headers(headers: Mapping[str, str], now: float) -> float | None:
    """The x-ratelimit reset that matters: the latest exhausted limit's, else the earliest one."""
    resets, exhausted = [], []
    for limit in _LIMITS:
        seconds = duration(headers.get(f"x-ratelimit-reset-{limit}"))
        if seconds is None:
            continue
        resets.append(seconds)
        if headers.get(f"x-ratelimit-remaining-{limit}", "").strip() == "0":
            exhausted.append(seconds)
    if resets:
        return now + (max(exhausted) if exhausted else min(resets))
    stamp = _number(headers.get("x-ratelimit-reset", "").strip())  # OpenRouter: epoch milliseconds
    if stamp is None:
        return None
    return stamp / 1000 if stamp > 1e11 else stamp if stamp > 1e9 else now + stamp


def park_until(headers: Mapping[str, str], now: float) -> int:
    """When a 429 ends: retry-after, else the rate-limit reset headers, else now + 60 s."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    until = _retry_after(lowered, now)
    if until is None:
        until = _reset_headers(lowered, now)
    return math.ceil(until if until is not None else now + PARK_S)


def classify_openai(status: int, headers: Mapping[str, str], body: bytes, *, now: float) -> Outcome:
    """Map an OpenAI-compatible answer to an Outcome (reasons `invalid`, `no_credit`, `rate_limited`)."""
    if 200 <= status < 300:
        return Outcome(OK)
    info = read_body(body)
    # the OpenAI error type is not an Anthropic one: the status decides what clients see
    err = errors.UpstreamError(info.message, status=status, type=errors.anthropic_type(status))
    if status == 401:
        return Outcome(RETIRE, err, "invalid")
    text = body[:8192].decode("utf-8", "replace").lower()  # `code` carries insufficient_quota
    if status == 402 or (400 <= status < 500 and any(w in text for w in _CREDIT_WORDS)):
        return Outcome(RETIRE, err, "no_credit")
    if status == 429:
        return Outcome(PARK, err, "rate_limited", park_until(headers, now))
    if status >= 500 or status in TRANSIENT_STATUSES:
        err.retryable = True
        if status == 529:
            err.type = "overloaded_error"
        return Outcome(TRANSIENT, err)
    return Outcome(CLIENT, err)
