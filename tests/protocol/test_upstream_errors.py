"""Upstream answer classification (claude-web.md §13, gateway.md §7.2): one row per table line."""

from __future__ import annotations

import json
import re

import pytest

from clewdr_lite import errors
from clewdr_lite.protocol import upstream_errors as ue

NOW = 1_760_000_000.0
DEFAULT_UNTIL = int(NOW) + 3600
CF_PAGE = (b"<!DOCTYPE html><html lang=\"en-US\"><head><title>Just a moment...</title></head>"
           b"<body>Enable JavaScript and cookies to continue</body></html>")


def body(message, kind: str | None = None, *, top: bool = True) -> bytes:
    """An Anthropic-style error body; `top` adds the top-level `"type": "error"`."""
    err = {"message": message} if kind is None else {"type": kind, "message": message}
    return json.dumps({"type": "error", "error": err} if top else {"error": err}).encode()


def limit_message(**fields) -> str:
    """claude.ai's 429 message: a JSON document inside the `message` string."""
    return json.dumps({"type": "exceeded_limit", "message": "limit", **fields})


def classify(status, headers=None, raw=b"", now=NOW) -> ue.Outcome:
    return ue.classify(status, headers or {}, raw, now=now)


# ---------------------------------------------------------------- 2xx


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_is_ok(status):
    assert classify(status, {}, body("ignored", "api_error")) == ue.Outcome(ue.OK)


# ---------------------------------------------------------------- Cloudflare / IP block

BLOCKED_ROWS = [
    (302, {"location": "https://claude.ai/login"}, b""),
    (302, {}, body("whatever", "authentication_error")),
    (403, {}, CF_PAGE),
    (403, {}, b"  \r\n<html><body>Access denied</body></html>"),
    (403, {}, b"<!doctype HTML>\n<title>Attention Required! | Cloudflare</title>"),
    (403, {"cf-mitigated": "challenge"}, b""),
    (403, {"cf-mitigated": "Challenge"}, body("Invalid authorization", "permission_error")),
]


@pytest.mark.parametrize("status, headers, raw", BLOCKED_ROWS,
                         ids=["302", "302-json", "403-cf-page", "403-html-ws", "403-doctype-case",
                              "403-cf-mitigated", "403-cf-mitigated-wins"])
def test_cloudflare_block(status, headers, raw):
    outcome = classify(status, headers, raw)
    assert outcome.action == ue.BLOCKED
    assert outcome.reason is None and outcome.until is None  # the pool does nothing
    err = outcome.error
    assert isinstance(err, errors.UpstreamBlocked)
    assert (err.status, err.type, err.retryable) == (502, "api_error", False)
    assert "Cloudflare" in err.message and "IP" in err.message
    assert "`proxy`" in err.message and "`rproxy`" in err.message
    # Users mistake Cloudflare blocks for auth failures: never suggest the cookie is bad.
    lower = err.message.lower()
    for phrase in ("invalid", "expired", "revoked", "unauthori", "banned", "bad cookie",
                   "cookie is", "log in again", "re-login"):
        assert phrase not in lower


@pytest.mark.parametrize("status, headers, raw, action", [
    (403, {}, body("forbidden", "permission_error"), ue.CLIENT),  # JSON 403 without the header
    (403, {"cf-mitigated": "managed"}, body("no", "permission_error"), ue.CLIENT),
    (200, {}, CF_PAGE, ue.OK),
    (401, {}, CF_PAGE, ue.RETIRE),
    (503, {}, CF_PAGE, ue.TRANSIENT),
    (429, {"cf-mitigated": "challenge"}, b"", ue.PARK),
], ids=["403-json", "403-other-mitigation", "200-html", "401-html", "503-html", "429-cf-header"])
def test_not_a_cloudflare_block(status, headers, raw, action):
    assert classify(status, headers, raw).action == action


# ---------------------------------------------------------------- cookie reasons

RETIRE_ROWS = [
    (400, body("This organization has been disabled.", "invalid_request_error"), "Disabled",
     "invalid_request_error"),
    (400, body("This organization has been disabled.", top=False), "Disabled",
     "invalid_request_error"),
    (401, body("Invalid bearer token", "authentication_error"), "Null", "authentication_error"),
    (401, b"", "Null", "authentication_error"),
    (401, b"Unauthorized", "Null", "authentication_error"),
    (403, body("Invalid authorization", "permission_error"), "Null", "permission_error"),
    (403, body("Invalid authorization header: session expired", "permission_error"), "Null",
     "permission_error"),
]


@pytest.mark.parametrize("status, raw, reason, kind", RETIRE_ROWS,
                         ids=["400-disabled", "400-disabled-no-top", "401", "401-empty",
                              "401-text", "403-invalid-authorization", "403-invalid-auth-longer"])
def test_retire(status, raw, reason, kind):
    outcome = classify(status, {}, raw)
    assert outcome.action == ue.RETIRE
    assert outcome.reason == reason
    assert outcome.until is None
    assert isinstance(outcome.error, errors.UpstreamError)
    assert not isinstance(outcome.error, errors.UpstreamBlocked)
    assert (outcome.error.status, outcome.error.type, outcome.error.retryable) == (status, kind, False)


@pytest.mark.parametrize("message", [
    "This organization has been disabled",        # no full stop
    "this organization has been disabled.",       # not exactly
    "This organization has been disabled. Contact support.",
])
def test_disabled_needs_the_exact_message(message):
    outcome = classify(400, {}, body(message, "invalid_request_error"))
    assert outcome.action == ue.CLIENT
    assert outcome.error.message == message


@pytest.mark.parametrize("message", [
    "OAuth authentication is currently not allowed for this organization.",
    "OAUTH AUTHENTICATION IS CURRENTLY NOT ALLOWED FOR THIS ORGANIZATION",
    "Request failed: oauth authentication is currently not allowed for this organization (code 7)",
])
def test_oauth_not_allowed_is_code_denied(message):
    outcome = classify(403, {}, body(message, "permission_error"))
    assert outcome.action == ue.CODE_DENIED
    assert outcome.reason is None and outcome.until is None  # the cookie stays valid for web
    assert (outcome.error.status, outcome.error.type) == (403, "permission_error")
    assert outcome.error.message == message


def test_oauth_not_allowed_only_on_403():
    message = "OAuth authentication is currently not allowed for this organization."
    assert classify(400, {}, body(message, "invalid_request_error")).action == ue.CLIENT


# ---------------------------------------------------------------- 429


@pytest.mark.parametrize("message, headers, now, until", [
    # 1. resetsAt inside the JSON message wins over the header.
    (limit_message(resetsAt=1_760_001_234), {"anthropic-ratelimit-unified-reset": "1760009999"},
     NOW, 1_760_001_234),
    (limit_message(resetsAt=1_760_001_234.9), {}, NOW, 1_760_001_234),
    # 2. The unified-reset header.
    (limit_message(), {"anthropic-ratelimit-unified-reset": "1760009999"}, NOW, 1_760_009_999),
    ("Rate limited", {"anthropic-ratelimit-unified-reset": "1760009999.7"}, NOW, 1_760_009_999),
    (limit_message(resetsAt=0), {"anthropic-ratelimit-unified-reset": "1760005555"}, NOW,
     1_760_005_555),
    (limit_message(resetsAt=-1), {"anthropic-ratelimit-unified-reset": "1760005555"}, NOW,
     1_760_005_555),
    (limit_message(resetsAt="tomorrow"), {"anthropic-ratelimit-unified-reset": "1760005555"}, NOW,
     1_760_005_555),
    # 3. Now + 1 h.
    ("Rate limited", {}, NOW, DEFAULT_UNTIL),
    ("Rate limited", {"anthropic-ratelimit-unified-reset": "soon"}, NOW, DEFAULT_UNTIL),
    ("Rate limited", {"anthropic-ratelimit-unified-reset": ""}, NOW, DEFAULT_UNTIL),
    (json.dumps([{"resetsAt": 1_760_001_234}]), {}, NOW, DEFAULT_UNTIL),
    ("{not json", {}, NOW, DEFAULT_UNTIL),
    ("Rate limited", {}, NOW + 0.75, DEFAULT_UNTIL),
    ("Rate limited", {}, 1_700_000_000.0, 1_700_003_600),
], ids=["json-wins", "json-float", "header", "header-float", "json-zero", "json-negative",
        "json-string", "default", "header-garbage", "header-empty", "json-list", "json-broken",
        "default-fraction", "default-other-now"])
def test_429_parks_until_reset(message, headers, now, until):
    outcome = classify(429, headers, body(message, "rate_limit_error"), now=now)
    assert outcome.action == ue.PARK
    assert outcome.until == until
    assert outcome.reason == {"TooManyRequest": until}
    assert (outcome.error.status, outcome.error.type) == (429, "rate_limit_error")
    assert outcome.error.message == message


def test_429_with_an_unreadable_body():
    outcome = classify(429, {}, b"<html>slow down</html>")
    assert (outcome.action, outcome.until) == (ue.PARK, DEFAULT_UNTIL)
    assert outcome.error.type == "rate_limit_error"


# ---------------------------------------------------------------- transient


@pytest.mark.parametrize("status, raw, kind", [
    (500, body("Internal server error", "api_error"), "api_error"),
    (500, b"", "api_error"),
    (502, b"<html>Bad Gateway</html>", "api_error"),
    (503, body("Service unavailable"), "api_error"),
    (504, b"upstream timed out", "api_error"),
    (408, b"", None),  # gateway.md §7.2; no Anthropic type of its own
    (529, body("Overloaded", "overloaded_error"), "overloaded_error"),
    (529, b"", "overloaded_error"),
    (529, body("Overloaded", "api_error"), "overloaded_error"),
    (500, body("Overloaded", "overloaded_error"), "overloaded_error"),
    (400, body("Overloaded", "overloaded_error"), "overloaded_error"),
])
def test_transient(status, raw, kind):
    outcome = classify(status, {}, raw)
    assert outcome.action == ue.TRANSIENT
    assert outcome.reason is None and outcome.until is None
    err = outcome.error
    assert (err.status, err.retryable) == (status, True)
    assert kind is None or err.type == kind
    assert err.message


# ---------------------------------------------------------------- other 4xx


@pytest.mark.parametrize("status, raw, kind, message", [
    (400, body("prompt is too long: 250000 tokens > 200000 maximum", "invalid_request_error"),
     "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
    (403, body("You do not have access to this model", "permission_error"), "permission_error",
     "You do not have access to this model"),
    (404, body("model: claude-x", "not_found_error", top=False), "not_found_error", "model: claude-x"),
    (413, body("Request exceeds the maximum size", "request_too_large"), "request_too_large",
     "Request exceeds the maximum size"),
    (422, body("bad field", "unprocessable_entity_error"), "unprocessable_entity_error", "bad field"),
    (409, body("conversation busy"), "invalid_request_error", "conversation busy"),
    (404, b"Not Found", "not_found_error", "Not Found"),
])
def test_other_4xx_is_a_client_error(status, raw, kind, message):
    outcome = classify(status, {}, raw)
    assert outcome.action == ue.CLIENT
    assert outcome.reason is None and outcome.until is None
    err = outcome.error
    assert type(err) is errors.UpstreamError
    assert (err.status, err.type, err.retryable, err.message) == (status, kind, False, message)


@pytest.mark.parametrize("raw", [b"", b"null", b"{}", b"[1]", b"\xff\xfe\x00", CF_PAGE,
                                 body("m", "api_error"), body({"odd": True})])
def test_every_non_2xx_status_gets_an_outcome_with_an_error(raw):
    for status in range(300, 600):
        outcome = classify(status, {}, raw)
        assert outcome.action in {ue.BLOCKED, ue.RETIRE, ue.PARK, ue.CODE_DENIED,
                                  ue.TRANSIENT, ue.CLIENT}
        assert isinstance(outcome.error, errors.UpstreamError)
        assert isinstance(outcome.error.message, str) and outcome.error.message


# ---------------------------------------------------------------- read_body


@pytest.mark.parametrize("raw, message, kind, detail", [
    (body("m", "x"), "m", "x", None),
    (body("m", "x", top=False), "m", "x", None),
    (body("m"), "m", None, None),
    (body('{"resetsAt": 5, "type": "exceeded_limit"}', "rate_limit_error"),
     '{"resetsAt": 5, "type": "exceeded_limit"}', "rate_limit_error",
     {"resetsAt": 5, "type": "exceeded_limit"}),
    (body("[1, 2]", "x"), "[1, 2]", "x", [1, 2]),
    (body("{not json", "x"), "{not json", "x", None),
    (body("", "x"), "", "x", None),
    (body("m", 5), "m", None, None),                          # a type that is not a string
    (b'{"type": "error", "error": "boom"}', "boom", "error", None),
    (b'{"error": "boom"}', "boom", None, None),
    (b'{"error": "boom", "type": 7}', "boom", None, None),
], ids=["top-type", "no-top-type", "no-type", "json-message", "json-list-message",
        "broken-json-message", "empty-message", "type-not-str", "error-is-str-top-type",
        "error-is-str", "error-is-str-odd-type"])
def test_read_body(raw, message, kind, detail):
    assert ue.read_body(raw) == ue.ErrorBody(message, kind, detail)


@pytest.mark.parametrize("message, shown", [
    ({"code": 7, "text": "nested"}, ['"code"', "7", "nested"]),
    (42, ["42"]),
    (["a", "b"], ['"a"', '"b"']),
    (None, []),
])
def test_read_body_message_that_is_not_a_string(message, shown):
    info = ue.read_body(json.dumps({"error": {"type": "x", "message": message}}).encode())
    assert isinstance(info.message, str)
    assert all(part in info.message for part in shown)
    assert (info.type, info.detail) == ("x", None)


@pytest.mark.parametrize("raw, text", [
    (b"Bad Gateway", "Bad Gateway"),
    (b"  upstream connect error\n", "upstream connect error"),
    (b"<html><body>502</body></html>", "<html><body>502</body></html>"),
    (b"\xff\xfeoops", "oops"),
])
def test_read_body_not_json(raw, text):
    info = ue.read_body(raw)
    assert text in info.message
    assert (info.type, info.detail) == (None, None)


def test_read_body_not_json_is_truncated():
    info = ue.read_body(b"x" * 5000)
    assert 0 < len(info.message) <= 500 and set(info.message) == {"x"}


@pytest.mark.parametrize("raw", [b"", b"   \n\t"])
def test_read_body_empty(raw):
    info = ue.read_body(raw)
    assert info.message.strip()  # the client always gets some text
    assert (info.type, info.detail) == (None, None)


@pytest.mark.parametrize("raw", [b'{"detail": "x"}', b"[1, 2]", b'"just text"', b"null", b"17",
                                 b'{"error": null}', b'{"error": 5}'])
def test_read_body_other_json_shapes(raw):
    info = ue.read_body(raw)
    assert info.message.startswith("Unknown error: ")
    assert raw.decode() in info.message
    assert (info.type, info.detail) == (None, None)


@pytest.mark.parametrize("raw", [
    b"[" * 100_000,
    json.dumps({"error": {"type": "x", "message": "[" * 100_000}}).encode(),
], ids=["body", "message"])
def test_read_body_survives_deep_nesting(raw):
    assert isinstance(classify(500, {}, raw).error.message, str)


# ---------------------------------------------------------------- in-stream error events


@pytest.mark.parametrize("event, action, status, kind, message", [
    ({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
     ue.TRANSIENT, 529, "overloaded_error", "Overloaded"),
    ({"type": "error", "error": {"type": "api_error", "message": "Internal"}},
     ue.TRANSIENT, 502, "api_error", "Internal"),
    ({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
     ue.CLIENT, 429, "rate_limit_error", "slow"),
    ({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}},
     ue.CLIENT, 400, "invalid_request_error", "bad"),
    ({"type": "error", "error": {"type": "authentication_error", "message": "who"}},
     ue.CLIENT, 401, "authentication_error", "who"),
    ({"type": "error", "error": {"type": "permission_error", "message": "no"}},
     ue.CLIENT, 403, "permission_error", "no"),
    ({"type": "error", "error": {"type": "weird_error", "message": "?"}},
     ue.CLIENT, 502, "weird_error", "?"),
    ({"type": "error", "error": {"type": "overloaded_error", "message": 5}},
     ue.TRANSIENT, 529, "overloaded_error", "5"),
], ids=["overloaded", "api", "rate-limit", "invalid", "auth", "permission", "unknown",
        "message-not-str"])
def test_classify_event(event, action, status, kind, message):
    outcome = ue.classify_event(event)
    assert outcome.action == action
    assert outcome.reason is None and outcome.until is None
    err = outcome.error
    assert isinstance(err, errors.UpstreamError)
    assert (err.status, err.type, err.message) == (status, kind, message)
    assert err.retryable is (action == ue.TRANSIENT)


@pytest.mark.parametrize("event", [
    {"type": "error"},
    {"type": "error", "error": "boom"},
    {"type": "error", "error": None},
    {"type": "error", "error": {}},
    {"type": "error", "error": {"message": ""}},
])
def test_classify_event_odd_shapes_are_retryable_api_errors(event):
    outcome = ue.classify_event(event)
    assert outcome.action == ue.TRANSIENT
    assert (outcome.error.status, outcome.error.type, outcome.error.retryable) == (502, "api_error", True)
    assert re.search(r"\w", outcome.error.message)
