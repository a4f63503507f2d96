"""Anthropic answers (claude-code.md §6.5–§6.7, gateway.md §2.3/§5.1): outcomes, usage, model echo."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from clewdr_lite.protocol import claude_code as cc
from clewdr_lite.protocol import upstream_errors as ue
from clewdr_lite.protocol.sse import SSEDecoder

NOW = 1_760_000_000.0


def body(message, kind: str | None = None) -> bytes:
    err = {"message": message} if kind is None else {"type": kind, "message": message}
    return json.dumps({"type": "error", "error": err}).encode()


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- API keys


@pytest.mark.parametrize("status, raw, action, reason", [
    (200, b"{}", ue.OK, None),
    (401, body("invalid x-api-key", "authentication_error"), ue.RETIRE, "invalid"),
    (400, body("Your credit balance is too low to access the Anthropic API.",
               "invalid_request_error"), ue.RETIRE, "no_credit"),
    (400, body("insufficient_quota"), ue.RETIRE, "no_credit"),
    (402, body("Payment required"), ue.RETIRE, "no_credit"),
    (400, body("max_tokens: must be positive", "invalid_request_error"), ue.CLIENT, None),
    (403, body("Your API key does not have permission to use the specified resource.",
               "permission_error"), ue.CLIENT, None),
    (404, body("model: claude-x", "not_found_error"), ue.CLIENT, None),
    (413, body("too large", "request_too_large"), ue.CLIENT, None),
    (500, body("Internal server error", "api_error"), ue.TRANSIENT, None),
    (503, b"<html>bad gateway</html>", ue.TRANSIENT, None),
    (529, body("Overloaded", "overloaded_error"), ue.TRANSIENT, None),
    (400, body("Overloaded", "overloaded_error"), ue.TRANSIENT, None),
], ids=["ok", "401", "credit-balance", "insufficient-quota", "402", "other-400", "403-permission",
        "404", "413", "500", "503-html", "529", "overloaded-type"])
def test_classify_api_key(status, raw, action, reason):
    outcome = cc.classify_api_key(status, {}, raw, now=NOW)
    assert outcome.action == action
    assert outcome.reason == reason
    if action == ue.OK:
        assert outcome.error is None
        return
    assert outcome.error.status == status
    assert outcome.error.retryable is (action == ue.TRANSIENT)
    if status == 529:
        assert outcome.error.type == "overloaded_error"


FUTURE = [NOW + 30, NOW + 10, NOW + 90, NOW + 50]
RESET_NAMES = [f"anthropic-ratelimit-{k}-reset"
               for k in ("requests", "tokens", "input-tokens", "output-tokens")]


@pytest.mark.parametrize("headers, until", [
    ({"retry-after": "17"}, int(NOW) + 17),
    ({"Retry-After": "2.5"}, int(NOW) + 3),
    ({"retry-after": "Wed, 15 Oct 2025 08:55:00 GMT"}, 1760518500),
    ({"retry-after": "soon", "anthropic-ratelimit-tokens-reset": rfc3339(NOW + 40)}, int(NOW) + 40),
    ({"retry-after": "-5"}, int(NOW) + 60),
    ({"retry-after": "20", "anthropic-ratelimit-requests-reset": rfc3339(NOW + 5)}, int(NOW) + 20),
    (dict(zip(RESET_NAMES, map(rfc3339, FUTURE))), int(NOW) + 10),
    ({"anthropic-ratelimit-requests-reset": rfc3339(NOW - 100),
      "anthropic-ratelimit-output-tokens-reset": rfc3339(NOW + 70)}, int(NOW) + 70),
    ({"Anthropic-RateLimit-Input-Tokens-Reset": "2025-10-09T09:07:00.5+00:00"},
     1760000821),
    ({"anthropic-ratelimit-requests-reset": rfc3339(NOW - 100)}, int(NOW) + 60),
    ({"anthropic-ratelimit-requests-reset": "garbage"}, int(NOW) + 60),
    ({}, int(NOW) + 60),
], ids=["retry-after", "fractional", "http-date", "bad-retry-after", "negative", "retry-after-wins",
        "earliest-reset", "past-ignored", "case-and-fraction", "only-past", "garbage", "nothing"])
def test_api_key_429_park_time(headers, until):
    outcome = cc.classify_api_key(429, headers, body("rate limited", "rate_limit_error"), now=NOW)
    assert outcome.action == ue.PARK
    assert outcome.reason == "rate_limited"
    assert outcome.until == until


# ---------------------------------------------------------------- OAuth tokens (§6.7)


def limit_message(resets_at: int) -> str:
    return json.dumps({"type": "exceeded_limit", "resetsAt": resets_at})


@pytest.mark.parametrize("headers, raw, until", [
    ({"anthropic-ratelimit-unified-reset": str(int(NOW) + 100)}, body(limit_message(int(NOW) + 500)),
     int(NOW) + 100),
    ({"Anthropic-Ratelimit-Unified-Reset": f"{NOW + 200}"}, body("x"), int(NOW) + 200),
    ({}, body(limit_message(int(NOW) + 500)), int(NOW) + 500),
    ({"anthropic-ratelimit-unified-reset": "soon"}, body(limit_message(int(NOW) + 500)),
     int(NOW) + 500),
    ({}, body("Too many requests", "rate_limit_error"), int(NOW) + 3600),
], ids=["header-before-resetsAt", "header-case", "resetsAt", "bad-header", "default"])
def test_oauth_429_order(headers, raw, until):
    outcome = cc.classify_oauth(429, headers, raw, now=NOW)
    assert outcome == ue.Outcome(ue.PARK, outcome.error, {"TooManyRequest": until}, until)
    assert outcome.error.status == 429


@pytest.mark.parametrize("status, raw, action", [
    (200, b"{}", ue.OK),
    (401, body("invalid token", "authentication_error"), ue.RETIRE),
    (403, body("OAuth authentication is currently not allowed for this organization.",
               "permission_error"), ue.CODE_DENIED),
    (529, body("Overloaded", "overloaded_error"), ue.TRANSIENT),
    (400, body("This credential is only authorized for use with Claude Code"), ue.CLIENT),
    (403, b"<!DOCTYPE html><html>challenge</html>", ue.BLOCKED),
])
def test_oauth_other_answers_follow_claude_web_table(status, raw, action):
    ours, theirs = cc.classify_oauth(status, {}, raw, now=NOW), ue.classify(status, {}, raw, now=NOW)
    assert ours.action == action
    assert (ours.action, ours.reason, ours.until) == (theirs.action, theirs.reason, theirs.until)
    if theirs.error is not None:
        assert (ours.error.status, ours.error.type, ours.error.message, ours.error.retryable) == \
            (theirs.error.status, theirs.error.type, theirs.error.message, theirs.error.retryable)


# ---------------------------------------------------------------- stream usage (§6.5)

START = {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-opus-4-6",
    "content": [], "stop_reason": None,
    "usage": {"input_tokens": 10, "cache_creation_input_tokens": 200,
              "cache_read_input_tokens": 3000, "output_tokens": 1}}}


def delta(output: int, stop: str | None = None, **usage) -> dict:
    return {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": output, **usage}}


@pytest.mark.parametrize("events, input_tokens, output_tokens, stop, saw_stop", [
    ([], 0, 0, None, False),
    ([START], 3210, 1, None, False),
    ([START, {"type": "content_block_start", "index": 0}, delta(57, "end_turn"),
      {"type": "message_stop"}], 3210, 57, "end_turn", True),
    ([START, delta(20), delta(57, "tool_use"), {"type": "message_stop"}], 3210, 57, "tool_use",
     True),
    ([START, delta(57, "end_turn", input_tokens=15, cache_read_input_tokens=0)], 3215, 57,
     "end_turn", False),
    ([{"type": "message_start", "message": {"usage": {"input_tokens": 5,
                                                     "cache_read_input_tokens": None}}},
      delta(3, "max_tokens")], 5, 3, "max_tokens", False),
    ([{"type": "message_start"}, {"type": "ping"}, {"type": "error", "error": {}}], 0, 0, None,
     False),
], ids=["nothing", "start-only", "full", "last-delta-wins-never-summed", "delta-input-figures",
        "null-cache-field", "malformed"])
def test_usage_tracker(events, input_tokens, output_tokens, stop, saw_stop):
    tracker = cc.UsageTracker()
    for event in events:
        tracker.feed(event)
    assert (tracker.input_tokens, tracker.output_tokens, tracker.stop_reason, tracker.saw_stop) == \
        (input_tokens, output_tokens, stop, saw_stop)


@pytest.mark.parametrize("message, expected", [
    ({"usage": {"input_tokens": 10, "cache_creation_input_tokens": 2,
                "cache_read_input_tokens": 3, "output_tokens": 7}}, (15, 7)),
    ({"usage": {"input_tokens": 10}}, (10, 0)),
    ({"usage": None}, (0, 0)),
    ({}, (0, 0)),
    ([], (0, 0)),
])
def test_usage_from_message(message, expected):
    assert cc.usage_from_message(message) == expected


# ---------------------------------------------------------------- model echo (§6.5)

PAYLOAD = json.dumps(START).encode()


@pytest.mark.parametrize("data", [
    PAYLOAD,
    b"event: message_start\ndata: " + PAYLOAD + b"\n\n",
    b"event: message_start\r\ndata:" + PAYLOAD + b"\r\n\r\n",
    b"event: message_start\rdata: " + PAYLOAD + b"\r\r",
    b"event: message_start\ndata: " + PAYLOAD + b"\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n",
], ids=["bare-json", "lf", "crlf-no-space", "cr", "two-events"])
def test_echo_model_event(data):
    out = cc.echo_model_event(data, "claude-opus-4-6-thinking-1M")
    if data.startswith(b"{"):
        message = json.loads(out)
        assert b": " not in out  # compact
    else:
        decoder = SSEDecoder()
        events = decoder.feed(out) + decoder.close()
        assert [e.event for e in events] == [e.event for e in SSEDecoder().feed(data)]
        message = json.loads(events[0].data)
        assert events[0].event == "message_start"
        assert out.endswith(data[-2:])
    assert message["message"]["model"] == "claude-opus-4-6-thinking-1M"
    assert {k: v for k, v in message["message"].items() if k != "model"} == \
        {k: v for k, v in START["message"].items() if k != "model"}
    assert list(message["message"]) == list(START["message"])  # key order kept


@pytest.mark.parametrize("data", [
    b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\n",
    b"event: message_start\ndata: {broken\n\n",
    b"data: [DONE]\n\n",
    b"",
    b"event: ping\ndata: {\"type\":\"ping\",\"note\":\"message_start\"}\n\n",
    json.dumps({"type": "message_start", "message": {"model": "same"}}).encode(),
])
def test_echo_model_event_leaves_other_bytes_alone(data):
    assert cc.echo_model_event(data, "same") is data


def test_echo_model_event_keeps_non_ascii_and_lone_surrogates():
    start = {"type": "message_start", "message": {"model": "m", "id": "msg_é", "x": "\ud83d"}}
    raw = json.dumps(start).encode()  # ASCII escapes, as upstreams may send them
    out = cc.echo_model_event(raw, "modèle")
    assert json.loads(out)["message"] == {"model": "modèle", "id": "msg_é", "x": "\ud83d"}
