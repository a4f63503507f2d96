"""AI Studio keys: format, health classification of Google errors, empty answers (gemini.md §3.3, §4).

`classify_gemini` returns an upstream_errors.Outcome whose action is one of
OK, BLOCKED, RETIRE, PARK, TRANSIENT, CLIENT, or COUNT_403 (defined here):

    COUNT_403  a 403 that names no cause: the caller adds 1 to the key's count_403 and moves on to
               the next key at once. When count_403 + 1 reaches max_403 the action is RETIRE with
               reason "forbidden" instead (the caller may record the final count too).
               A success resets count_403 to 0 (the caller's job: §4.3).
"""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime, timezone
from typing import Any

from clewdr_lite import errors
from clewdr_lite.protocol import upstream_errors as ue

COUNT_403 = "count_403"
RATE_LIMIT_COOL_S = 60
DAY_S = 86400

_KEY_RE = re.compile(r"^AIzaSy[A-Za-z0-9_-]{33}$")
_NOT_KEY_CHARS = re.compile(r"[^A-Za-z0-9=_-]")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)s\s*$")
_TYPE_PREFIX = "type.googleapis.com/google.rpc."

# ErrorInfo.reason -> disabled reason (§4.3); any status, the reason is specific enough
_RETIRE_REASONS = {
    "API_KEY_INVALID": "invalid",
    "CONSUMER_SUSPENDED": "suspended",
    "SERVICE_DISABLED": "api_disabled",
}
# fallbacks for bodies without details (older answers, mirrors): message fragment -> reason
_RETIRE_MESSAGES = (
    ("api key not valid", "invalid"),
    ("api key expired", "invalid"),
    ("has been suspended", "suspended"),
)
_REGION_MESSAGE = "user location is not supported"
REGION_HINT = ("Google refuses requests from this machine's location (not a key problem): set "
               "`proxy` to send Gemini traffic through a supported region.")
# Google's "unavailable"-family answers and our transient set: no key change, next key (§4.3)
_TRANSIENT = ue.TRANSIENT_STATUSES


# ----------------------------------------------------------------- key format

def clean_key(text: str) -> str:
    """Drop every character except ASCII letters, digits, `=`, `_` and `-` (§4.1)."""
    return _NOT_KEY_CHARS.sub("", text)


def valid_key(key: str) -> bool:
    """True for the AI Studio key shape `AIzaSy` + 33 characters."""
    return bool(_KEY_RE.match(key))


def mask_key(key: str) -> str:
    """First 8 and last 4 characters, for logs and the admin list."""
    if len(key) <= 12:
        return "*" * len(key)
    return f"{key[:8]}...{key[-4:]}"


# ----------------------------------------------------------------- Pacific midnight

def _nth_sunday(year: int, month: int, n: int) -> int:
    first = 1 + (6 - date(year, month, 1).weekday()) % 7  # weekday(): Monday 0 … Sunday 6
    return first + 7 * (n - 1)


def _utc(year: int, month: int, day: int, hour: int) -> int:
    return int(datetime(year, month, day, hour, tzinfo=timezone.utc).timestamp())


def pacific_offset(t: float) -> int:
    """UTC offset in seconds of US Pacific time at instant `t` (current US DST rules, no tz data)."""
    year = datetime.fromtimestamp(t, timezone.utc).year  # never near New Year, so UTC year is fine
    # 02:00 PST on the second Sunday of March is 10:00 UTC; 02:00 PDT on the first Sunday of
    # November is 09:00 UTC.
    start = _utc(year, 3, _nth_sunday(year, 3, 2), 10)
    end = _utc(year, 11, _nth_sunday(year, 11, 1), 9)
    return -7 * 3600 if start <= t < end else -8 * 3600


def next_pacific_midnight(now: float) -> int:
    """The next 00:00 in America/Los_Angeles strictly after `now`, as epoch seconds."""
    local = now + pacific_offset(now)
    midnight_local = (math.floor(local / DAY_S) + 1) * DAY_S
    guess = midnight_local - pacific_offset(now)
    # a DST change at 02:00 between now and midnight moves the offset: take the one at midnight
    return int(midnight_local - pacific_offset(guess))


# ----------------------------------------------------------------- Google error bodies

def _google_error(body: bytes) -> dict:
    """The `error` object of a Google error body (also inside a JSON array), or {}."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    if isinstance(data, list) and data:  # streamGenerateContent without alt=sse wraps in an array
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    return err if isinstance(err, dict) else {}


def _details(err: dict, kind: str) -> list[dict]:
    """The `details` entries of one google.rpc type (ErrorInfo, RetryInfo, QuotaFailure …)."""
    details = err.get("details")
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, dict) and d.get("@type") == _TYPE_PREFIX + kind]


def retry_delay(err: dict) -> float | None:
    """RetryInfo.retryDelay ("37s", "1.5s") in seconds, or None."""
    for info in _details(err, "RetryInfo"):
        match = _DURATION_RE.match(str(info.get("retryDelay", "")))
        if match:
            return float(match.group(1))
    return None


def is_daily_quota(err: dict) -> bool:
    """True when a violated quota is per day (QuotaFailure quotaId/metric or ErrorInfo metadata)."""
    texts: list[Any] = []
    for failure in _details(err, "QuotaFailure"):
        for violation in failure.get("violations") or []:
            if isinstance(violation, dict):
                texts += [violation.get("quotaId"), violation.get("quotaMetric")]
    for info in _details(err, "ErrorInfo"):
        metadata = info.get("metadata")
        if isinstance(metadata, dict):
            texts += list(metadata.values())
    return any(isinstance(text, str) and "PerDay" in text for text in texts)


def _retire_reason(err: dict, message: str) -> str | None:
    for info in _details(err, "ErrorInfo"):
        reason = _RETIRE_REASONS.get(str(info.get("reason")))
        if reason:
            return reason
    lower = message.lower()
    return next((reason for fragment, reason in _RETIRE_MESSAGES if fragment in lower), None)


def _park_until(err: dict, now: float) -> tuple[str, int]:
    """(reason, until) for a 429: a daily quota beats RetryInfo, which Google sends with it too."""
    if is_daily_quota(err):
        return "daily_quota", next_pacific_midnight(now)
    delay = retry_delay(err)
    if delay is None:
        return "rate_limited", math.ceil(now) + RATE_LIMIT_COOL_S
    return "rate_limited", math.ceil(now + max(1, math.ceil(delay)))


def _message(err: dict, body: bytes) -> str:
    message = err.get("message")
    return message if isinstance(message, str) and message else ue.read_body(body).message


def classify_gemini(status: int, body: bytes, *, now: float, count_403: int, max_403: int) -> ue.Outcome:
    """Map one AI Studio answer to an Outcome (gemini.md §4.3; COUNT_403 in the module docstring)."""
    if 200 <= status < 300:
        return ue.Outcome(ue.OK)
    err = _google_error(body)
    message = _message(err, body)
    error = errors.UpstreamError(message, status=status, type=errors.anthropic_type(status),
                                 retryable=True)
    retire = _retire_reason(err, message) if 400 <= status < 500 else None
    if retire:
        return ue.Outcome(ue.RETIRE, error, retire)
    if status == 400 and _REGION_MESSAGE in message.lower():
        error.message, error.retryable = f"{message} {REGION_HINT}", False
        return ue.Outcome(ue.BLOCKED, error)
    if status == 403:
        if count_403 + 1 >= max_403:
            return ue.Outcome(ue.RETIRE, error, "forbidden")
        return ue.Outcome(COUNT_403, error, "forbidden")
    if status == 429:
        reason, until = _park_until(err, now)
        return ue.Outcome(ue.PARK, error, reason, until)
    if status >= 500 or status in _TRANSIENT:
        return ue.Outcome(ue.TRANSIENT, error)
    error.retryable = False
    return ue.Outcome(ue.CLIENT, error)


# ----------------------------------------------------------------- empty answers (§3.3)

def _first(items: Any) -> dict | None:
    if isinstance(items, list) and items and isinstance(items[0], dict):
        return items[0]
    return None


def is_blocked_prompt(data: dict) -> bool:
    """True when Google refused the prompt itself (`promptFeedback.blockReason`): no retry helps."""
    feedback = data.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def is_empty_answer(data: dict) -> bool:
    """No candidates, or the first one ended with `OTHER` — but never a blocked prompt."""
    if is_blocked_prompt(data):
        return False
    first = _first(data.get("candidates"))
    return first is None or first.get("finishReason") == "OTHER"


def is_empty_openai(data: dict) -> bool:
    """The OpenAI-compatible shape: no choices, or the first one finished with `OTHER`."""
    first = _first(data.get("choices"))
    return first is None or str(first.get("finish_reason") or "").upper() == "OTHER"
