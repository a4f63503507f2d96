"""AI Studio key format, Google error classification (gemini.md §4.3), empty answers (§3.3)."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from clewdr_lite import errors
from clewdr_lite.protocol import gemini_keys as gk
from clewdr_lite.protocol import upstream_errors as ue

NOW = 1_760_000_000.0  # 2025-10-09 08:53:20 UTC = 01:53:20 PDT
KEY = "AIzaSy" + "A1b2C3d4E5f6G7h8I9j0K_L-M1n2O3p4Q"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
HELP = {"@type": "type.googleapis.com/google.rpc.Help",
        "links": [{"description": "Learn more about Gemini API quotas",
                   "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]}


def google(code: int, status: str, message: str, *details: dict) -> bytes:
    """A Google error body as AI Studio sends it."""
    err = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = list(details)
    return json.dumps({"error": err}, indent=2).encode()


def error_info(reason: str, **metadata) -> dict:
    return {"@type": ERROR_INFO, "reason": reason, "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com", **metadata}}


def classify(status: int, body: bytes, *, now: float = NOW, count_403: int = 0, max_403: int = 3):
    return gk.classify_gemini(status, body, now=now, count_403=count_403, max_403=max_403)


INVALID_KEY = google(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
                     error_info("API_KEY_INVALID"),
                     {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                      "message": "API key not valid. Please pass a valid API key."})
EXPIRED_KEY = google(400, "INVALID_ARGUMENT", "API key expired. Please renew the API key.",
                     error_info("API_KEY_INVALID"))
SUSPENDED = google(403, "PERMISSION_DENIED",
                   "Permission denied: Consumer 'api_key:AIzaSyXXXX' has been suspended.",
                   error_info("CONSUMER_SUSPENDED", consumer="projects/123456789012",
                              containerInfo="123456789012"))
SERVICE_DISABLED = google(
    403, "PERMISSION_DENIED",
    "Generative Language API has not been used in project 123456789012 before or it is disabled. "
    "Enable it by visiting https://console.developers.google.com/apis/api/generativelanguage."
    "googleapis.com/overview?project=123456789012 then retry.",
    error_info("SERVICE_DISABLED", consumer="projects/123456789012",
               activationUrl="https://console.developers.google.com/apis/api/"
                             "generativelanguage.googleapis.com/overview?project=123456789012",
               serviceTitle="Generative Language API", containerInfo="123456789012"),
    {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
     "message": "Generative Language API has not been used in project 123456789012 before."},
    {"@type": "type.googleapis.com/google.rpc.Help",
     "links": [{"description": "Google developers console API activation",
                "url": "https://console.developers.google.com/apis/api/generativelanguage."
                       "googleapis.com/overview?project=123456789012"}]})
KEY_BLOCKED = google(403, "PERMISSION_DENIED",
                     "Requests to this API generativelanguage.googleapis.com method "
                     "google.ai.generativelanguage.v1beta.GenerativeService.GenerateContent are blocked.",
                     error_info("API_KEY_SERVICE_BLOCKED", consumer="projects/123456789012"))
RATE_PER_MINUTE = google(
    429, "RESOURCE_EXHAUSTED",
    "You exceeded your current quota, please check your plan and billing details.\n* Quota exceeded "
    "for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10, "
    "model: gemini-2.5-flash\nPlease retry in 37.617621543s.",
    {"@type": QUOTA_FAILURE, "violations": [{
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"}, "quotaValue": "10"}]},
    HELP, {"@type": RETRY_INFO, "retryDelay": "37s"})
RATE_PER_DAY = google(
    429, "RESOURCE_EXHAUSTED",
    "You exceeded your current quota, please check your plan and billing details.\n* Quota exceeded "
    "for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 50, "
    "model: gemini-2.5-pro\nPlease retry in 22.1s.",
    {"@type": QUOTA_FAILURE, "violations": [{
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        "quotaDimensions": {"location": "global", "model": "gemini-2.5-pro"}, "quotaValue": "50"}]},
    HELP, {"@type": RETRY_INFO, "retryDelay": "22s"})
RATE_PER_DAY_METADATA = google(
    429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Generate Content API requests per day'.",
    error_info("RATE_LIMIT_EXCEEDED", quota_metric="generativelanguage.googleapis.com/generate_requests",
               quota_limit="GenerateContentRequestsPerDayPerProject", quota_limit_value="1500",
               consumer="projects/123456789012"))
RATE_PLAIN = google(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
REGION = google(400, "FAILED_PRECONDITION", "User location is not supported for the API use.")
BAD_REQUEST = google(400, "INVALID_ARGUMENT",
                     "Invalid JSON payload received. Unknown name \"contentz\": Cannot find field.",
                     {"@type": "type.googleapis.com/google.rpc.BadRequest",
                      "fieldViolations": [{"description": "Invalid JSON payload received. "
                                                          "Unknown name \"contentz\": Cannot find field."}]})
NOT_FOUND = google(404, "NOT_FOUND", "models/gemini-9-ultra is not found for API version v1beta, or is "
                                     "not supported for generateContent.")
INTERNAL = google(500, "INTERNAL", "An internal error has occurred. Please retry or report in "
                                   "https://developers.generativeai.google/guide/troubleshooting")
UNAVAILABLE = google(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
DEADLINE = google(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.")


# ----------------------------------------------------------------- key format


def test_clean_key_keeps_only_key_characters():
    assert gk.clean_key(f"  {KEY}\n") == KEY
    assert gk.clean_key(f'"{KEY[:10]} \u200b{KEY[10:]}",') == KEY
    assert gk.clean_key("a=b_c-d!é/+.") == "a=b_c-d"


@pytest.mark.parametrize("key, ok", [
    (KEY, True),
    (KEY[:-1], False),
    (KEY + "x", False),
    ("AIzaSx" + KEY[6:], False),
    (KEY[:-1] + "=", False),
    (KEY[:-1] + "_", True),
    ("", False),
])
def test_valid_key(key, ok):
    assert gk.valid_key(key) is ok


def test_mask_key_shows_first_8_and_last_4():
    masked = gk.mask_key(KEY)
    assert masked.startswith(KEY[:8]) and masked.endswith(KEY[-4:])
    assert KEY[8:-4] not in masked
    assert gk.mask_key("short") == "*****"


# ----------------------------------------------------------------- §4.3, one test per row


def test_success_is_ok():
    assert classify(200, b"{}").action == ue.OK


@pytest.mark.parametrize("body", [INVALID_KEY, EXPIRED_KEY])
def test_invalid_key_is_retired(body):
    outcome = classify(400, body)
    assert (outcome.action, outcome.reason) == (ue.RETIRE, "invalid")
    assert isinstance(outcome.error, errors.UpstreamError)
    assert outcome.error.status == 400
    assert outcome.error.message == json.loads(body)["error"]["message"]


def test_invalid_key_by_message_alone():
    body = google(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
    assert (classify(400, body).action, classify(400, body).reason) == (ue.RETIRE, "invalid")


def test_suspended_key_is_retired():
    outcome = classify(403, SUSPENDED)
    assert (outcome.action, outcome.reason) == (ue.RETIRE, "suspended")
    assert outcome.error.status == 403


def test_suspended_by_message_alone():
    body = google(403, "PERMISSION_DENIED", "Permission denied: Consumer 'api_key:x' has been suspended.")
    assert classify(403, body).reason == "suspended"


def test_service_disabled_is_retired():
    outcome = classify(403, SERVICE_DISABLED)
    assert (outcome.action, outcome.reason) == (ue.RETIRE, "api_disabled")
    assert "has not been used in project" in outcome.error.message


@pytest.mark.parametrize("count_403, action", [(0, gk.COUNT_403), (1, gk.COUNT_403), (2, ue.RETIRE),
                                               (7, ue.RETIRE)])
def test_other_403_counts_then_retires_at_max(count_403, action):
    outcome = classify(403, KEY_BLOCKED, count_403=count_403, max_403=3)
    assert outcome.action == action
    assert outcome.reason == "forbidden"
    assert outcome.error.status == 403
    assert outcome.error.retryable  # another key may work


def test_403_counter_walk_with_a_caller():
    """The caller's loop: add one on COUNT_403; the third consecutive 403 retires the key."""
    count, actions = 0, []
    for _ in range(3):
        outcome = classify(403, KEY_BLOCKED, count_403=count, max_403=3)
        actions.append(outcome.action)
        if outcome.action == gk.COUNT_403:
            count += 1
    assert actions == [gk.COUNT_403, gk.COUNT_403, ue.RETIRE]
    assert classify(403, b"<html>forbidden</html>", count_403=0, max_403=1).action == ue.RETIRE


def test_429_with_retry_info_cools_for_the_delay():
    outcome = classify(429, RATE_PER_MINUTE)
    assert (outcome.action, outcome.reason, outcome.until) == (ue.PARK, "rate_limited", int(NOW) + 37)
    assert outcome.error.status == 429 and outcome.error.type == "rate_limit_error"


@pytest.mark.parametrize("delay, seconds", [("37s", 37), ("1.5s", 2), ("0.2s", 1), ("0s", 1),
                                            ("0.000500s", 1), ("120.000000001s", 121), (".5s", 1)])
def test_retry_info_delay_rounds_up_to_at_least_one_second(delay, seconds):
    body = google(429, "RESOURCE_EXHAUSTED", "quota", {"@type": RETRY_INFO, "retryDelay": delay})
    assert classify(429, body).until == int(NOW) + seconds


def test_retry_info_fractional_now_is_rounded_up():
    body = google(429, "RESOURCE_EXHAUSTED", "quota", {"@type": RETRY_INFO, "retryDelay": "1.5s"})
    assert classify(429, body, now=NOW + 0.7).until == int(NOW) + 3  # ceil(NOW + 0.7 + 2)


@pytest.mark.parametrize("delay", ["37", "soon", "-3s", "", None, 37])
def test_unreadable_retry_delay_falls_back_to_60_s(delay):
    body = google(429, "RESOURCE_EXHAUSTED", "quota", {"@type": RETRY_INFO, "retryDelay": delay})
    assert classify(429, body).until == int(NOW) + 60


def test_daily_quota_cools_until_pacific_midnight_even_with_retry_info():
    outcome = classify(429, RATE_PER_DAY)
    # NOW is 01:53:20 PDT on 2025-10-09: the next midnight is 2025-10-10 00:00 PDT = 07:00 UTC
    expected = int(datetime(2025, 10, 10, 7, tzinfo=timezone.utc).timestamp())
    assert (outcome.action, outcome.reason, outcome.until) == (ue.PARK, "daily_quota", expected)


def test_daily_quota_in_error_info_metadata():
    outcome = classify(429, RATE_PER_DAY_METADATA)
    assert (outcome.reason, outcome.until) == ("daily_quota", gk.next_pacific_midnight(NOW))


def test_other_429_cools_60_s():
    outcome = classify(429, RATE_PLAIN)
    assert (outcome.action, outcome.reason, outcome.until) == (ue.PARK, "rate_limited", int(NOW) + 60)
    assert classify(429, b"Too Many Requests").until == int(NOW) + 60


def test_region_block_keeps_the_key_and_suggests_proxy():
    outcome = classify(400, REGION, count_403=2, max_403=3)
    assert outcome.action == ue.BLOCKED
    assert outcome.reason is None and outcome.until is None
    assert outcome.error.status == 400 and not outcome.error.retryable
    assert outcome.error.message.startswith("User location is not supported")
    assert "`proxy`" in outcome.error.message


@pytest.mark.parametrize("status, body", [(500, INTERNAL), (503, UNAVAILABLE), (504, DEADLINE),
                                          (502, b"<html>Bad Gateway</html>"), (529, b"")])
def test_server_errors_are_transient(status, body):
    outcome = classify(status, body)
    assert outcome.action == ue.TRANSIENT
    assert outcome.error.status == status and outcome.error.retryable


@pytest.mark.parametrize("status, body", [(400, BAD_REQUEST), (404, NOT_FOUND),
                                          (413, google(413, "INVALID_ARGUMENT", "Request too large")),
                                          (401, google(401, "UNAUTHENTICATED", "Request had invalid "
                                                                               "authentication credentials."))])
def test_other_4xx_are_client_errors(status, body):
    outcome = classify(status, body)
    assert outcome.action == ue.CLIENT
    assert outcome.error.status == status and not outcome.error.retryable
    assert outcome.error.message == json.loads(body)["error"]["message"]


def test_error_inside_a_json_array_is_read():
    body = json.dumps([json.loads(INVALID_KEY)]).encode()  # streamGenerateContent without alt=sse
    assert classify(400, body).reason == "invalid"


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"error": "plain"}', b"[[[[" * 10_000,
                                  b'{"error": {"code": 400, "details": "nope"}}',
                                  b'{"error": {"details": [null, 3, {"@type": 5}]}}'])
def test_odd_bodies_do_not_crash(body):
    outcome = classify(400, body)
    assert outcome.action == ue.CLIENT and outcome.error.message


def test_retire_reasons_only_apply_to_4xx():
    body = google(500, "INTERNAL", "API key not valid", error_info("API_KEY_INVALID"))
    assert classify(500, body).action == ue.TRANSIENT


# ----------------------------------------------------------------- Pacific midnight


def zoneinfo_midnight(now: float) -> int:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        la = zoneinfo.ZoneInfo("America/Los_Angeles")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no tz data")
    local = datetime.fromtimestamp(now, la)
    nxt = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=la)
    return int(nxt.timestamp())


def transition_neighbourhoods():
    """The 8 days around each DST change of 2019–2031 (every 30 min, and 1 s either side of each
    hour), and the days around the UTC and the local New Year."""
    points = []
    for year in range(2019, 2032):
        for start, days in (((year, 3, 7), 9), ((year, 10, 31), 9), ((year, 12, 31), 2)):
            base = datetime(*start, tzinfo=timezone.utc).timestamp()
            points += [base + minutes * 60 for minutes in range(0, days * 1440, 30)]
            points += [base + hour * 3600 + side for hour in range(days * 24) for side in (-1, 1)]
    return points


def test_pacific_midnight_matches_zoneinfo_around_every_transition():
    points = transition_neighbourhoods()
    bad = [(t, ours, theirs) for t in points
           if (ours := gk.next_pacific_midnight(t)) != (theirs := zoneinfo_midnight(t))]
    assert len(points) > 20_000 and bad == []


def test_pacific_offset_matches_zoneinfo_around_every_transition():
    zoneinfo = pytest.importorskip("zoneinfo")
    la = zoneinfo.ZoneInfo("America/Los_Angeles")
    bad = [t for t in transition_neighbourhoods()
           if gk.pacific_offset(t) != datetime.fromtimestamp(t, la).utcoffset().total_seconds()]
    assert bad == []


def test_pacific_midnight_matches_zoneinfo_at_random_times():
    rng = random.Random(20251009)
    start = datetime(2018, 1, 1, tzinfo=timezone.utc).timestamp()
    end = datetime(2036, 1, 1, tzinfo=timezone.utc).timestamp()
    for _ in range(5_000):
        t = rng.uniform(start, end)
        assert gk.next_pacific_midnight(t) == zoneinfo_midnight(t), t


def test_pacific_midnight_is_strictly_after_now():
    midnight = gk.next_pacific_midnight(NOW)
    assert gk.next_pacific_midnight(midnight) == midnight + 86400
    assert gk.next_pacific_midnight(midnight - 0.5) == midnight


@pytest.mark.parametrize("now, expected", [
    # 2025-03-09 01:30 PST: the clocks jump at 02:00, so the next midnight is PDT (07:00 UTC)
    (datetime(2025, 3, 9, 9, 30, tzinfo=timezone.utc), datetime(2025, 3, 10, 7, tzinfo=timezone.utc)),
    # 2025-11-02 01:30 PDT (first pass): next midnight is PST (08:00 UTC)
    (datetime(2025, 11, 2, 8, 30, tzinfo=timezone.utc), datetime(2025, 11, 3, 8, tzinfo=timezone.utc)),
    # 2025-11-01 23:59 PDT: midnight is still PDT
    (datetime(2025, 11, 2, 6, 59, tzinfo=timezone.utc), datetime(2025, 11, 2, 7, tzinfo=timezone.utc)),
])
def test_pacific_midnight_on_change_days(now, expected):
    assert gk.next_pacific_midnight(now.timestamp()) == int(expected.timestamp())


# ----------------------------------------------------------------- empty answers (§3.3)


ANSWER = {"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": "STOP",
                          "index": 0}],
          "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4},
          "modelVersion": "gemini-2.5-flash", "responseId": "abc"}
BLOCKED_PROMPT = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                  "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
                  "modelVersion": "gemini-2.5-flash"}


@pytest.mark.parametrize("data, empty", [
    (ANSWER, False),
    ({"usageMetadata": {"promptTokenCount": 3}}, True),
    ({"candidates": []}, True),
    ({"candidates": [{"finishReason": "OTHER", "index": 0}]}, True),
    ({"candidates": [{"finishReason": "SAFETY", "index": 0}]}, False),
    ({"candidates": [{"content": {"parts": [{"text": "x"}]}}]}, False),
    (BLOCKED_PROMPT, False),
    ({**BLOCKED_PROMPT, "candidates": []}, False),
    ({"candidates": None}, True),
    ({"candidates": ["junk"]}, True),
])
def test_is_empty_answer(data, empty):
    assert gk.is_empty_answer(data) is empty


@pytest.mark.parametrize("data, blocked", [
    (BLOCKED_PROMPT, True),
    (ANSWER, False),
    ({"promptFeedback": {"safetyRatings": []}}, False),
    ({"promptFeedback": {"blockReason": ""}}, False),
    ({"promptFeedback": "x"}, False),
])
def test_is_blocked_prompt(data, blocked):
    assert gk.is_blocked_prompt(data) is blocked


@pytest.mark.parametrize("data, empty", [
    ({"id": "x", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}]}, False),
    ({"id": "x", "choices": []}, True),
    ({"id": "x"}, True),
    ({"choices": [{"index": 0, "message": {"role": "assistant"}, "finish_reason": "OTHER"}]}, True),
    ({"choices": [{"index": 0, "finish_reason": "other"}]}, True),
    ({"choices": [{"index": 0, "finish_reason": None, "message": {"content": "x"}}]}, False),
])
def test_is_empty_openai(data, empty):
    assert gk.is_empty_openai(data) is empty
