"""OpenAI-compatible upstream error answers → pool outcomes (gateway.md §5.1)."""

from __future__ import annotations

import json

import pytest

from clewdr_lite.protocol.openai_upstream import classify_openai
from clewdr_lite.protocol.openai_upstream_errors import duration
from clewdr_lite.protocol.upstream_errors import CLIENT, OK, PARK, RETIRE, TRANSIENT

NOW = 1_760_000_000.0


def body(message: str, kind: str | None = None, code=None) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


RATE = body("Rate limit reached for requests", "requests", "rate_limit_exceeded")

CASES = [
    # (status, headers, body, action, reason, until)
    (200, {}, b"{}", OK, None, None),
    (401, {}, body("Incorrect API key provided", "invalid_request_error", "invalid_api_key"), RETIRE, "invalid", None),
    (402, {}, body("Insufficient Balance"), RETIRE, "no_credit", None),
    (402, {}, b"payment required", RETIRE, "no_credit", None),
    (429, {"retry-after": "5"}, body("You exceeded your current quota, please check your plan and billing details.",
                                     "insufficient_quota", "insufficient_quota"), RETIRE, "no_credit", None),
    (403, {}, body("This request requires more credits"), RETIRE, "no_credit", None),
    (400, {}, body("Your credit balance is too low"), RETIRE, "no_credit", None),
    (429, {"Retry-After": "20"}, RATE, PARK, "rate_limited", NOW + 20),
    (429, {"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"}, RATE, PARK, "rate_limited", 4096250880),
    (429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, RATE, PARK, "rate_limited", NOW),  # in the past
    (429, {"retry-after-ms": "1500"}, RATE, PARK, "rate_limited", NOW + 2),
    (429, {"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}, RATE,
     PARK, "rate_limited", NOW + 1),
    (429, {"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s",
           "x-ratelimit-remaining-requests": "12", "x-ratelimit-remaining-tokens": "0"}, RATE,
     PARK, "rate_limited", NOW + 360),
    (429, {"x-ratelimit-reset-requests": "2m59.56s", "x-ratelimit-remaining-requests": "0",
           "x-ratelimit-reset-tokens": "7.66s", "x-ratelimit-remaining-tokens": "0"}, RATE,
     PARK, "rate_limited", NOW + 180),
    (429, {"X-RateLimit-Reset": str(int(NOW * 1000) + 30_000)}, RATE, PARK, "rate_limited", NOW + 30),
    (429, {"x-ratelimit-reset-requests": "soon"}, RATE, PARK, "rate_limited", NOW + 60),
    (429, {}, RATE, PARK, "rate_limited", NOW + 60),
    (408, {}, b"timeout", TRANSIENT, None, None),
    (500, {}, body("server error", "server_error"), TRANSIENT, None, None),
    (502, {}, b"<html>bad gateway</html>", TRANSIENT, None, None),
    (503, {}, body("overloaded"), TRANSIENT, None, None),
    (504, {}, b"", TRANSIENT, None, None),
    (529, {}, body("Overloaded"), TRANSIENT, None, None),
    (400, {}, body("max_tokens is too large", "invalid_request_error"), CLIENT, None, None),
    (403, {}, body("Model access denied"), CLIENT, None, None),
    (404, {}, body("The model `x` does not exist", "invalid_request_error", "model_not_found"), CLIENT, None, None),
    (422, {}, b"unprocessable", CLIENT, None, None),
]


@pytest.mark.parametrize("status, headers, raw, action, reason, until", CASES)
def test_classify(status, headers, raw, action, reason, until):
    outcome = classify_openai(status, headers, raw, now=NOW)
    assert (outcome.action, outcome.reason, outcome.until) == (action, reason, until)
    if action == OK:
        assert outcome.error is None
        return
    assert outcome.error.status == status
    assert outcome.error.retryable is (action == TRANSIENT)


def test_error_keeps_the_message_and_gets_an_anthropic_type():
    outcome = classify_openai(400, {}, body("bad stop", "invalid_request_error"), now=NOW)
    assert (outcome.error.message, outcome.error.type) == ("bad stop", "invalid_request_error")
    assert classify_openai(500, {}, body("x", "server_error"), now=NOW).error.type == "api_error"
    assert classify_openai(529, {}, b"", now=NOW).error.type == "overloaded_error"
    assert classify_openai(429, {}, RATE, now=NOW).error.type == "rate_limit_error"


DURATIONS = [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("7.66s", 7.66),
             ("30", 30.0), ("0", 0.0), ("", None), (None, None), ("soon", None), ("-5", None), ("5x", None)]


@pytest.mark.parametrize("text, seconds", DURATIONS)
def test_duration(text, seconds):
    assert duration(text) == pytest.approx(seconds) if seconds is not None else duration(text) is None
