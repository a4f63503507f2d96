"""Hub message → GenerateContentResponse, the §12/§13/§14 tables, safety, "Hi", countTokens (gemini.md §7, §10, §11)."""

from __future__ import annotations

import copy

import pytest

from clewdr_lite.protocol.anthropic import HI_TEXT
from clewdr_lite.protocol.gemini import (SAFETY_CATEGORIES, apply_safety, count_response, finish_reason,
                                         from_hub, google_error, hi_response, hub_error, hub_usage, is_hi,
                                         names_safety_setting, relaxed_safety, stop_reason, usage_metadata)

MODEL = "gemini-2.5-flash"


def message(*content, stop="end_turn", usage=None) -> dict:
    return {"id": "msg_abc", "type": "message", "role": "assistant", "model": "claude-x",
            "content": list(content), "stop_reason": stop, "stop_sequence": None,
            "usage": usage or {"input_tokens": 5, "output_tokens": 2}}


THINK = {"type": "thinking", "thinking": "hmm", "signature": "sig"}
TEXT = {"type": "text", "text": "Hello"}
CALL = {"type": "tool_use", "id": "read_file_1_0", "name": "read_file", "input": {"file_path": "a"}}


# ------------------------------------------------------------------------------------ §9.4, §10.1

def test_spec_example_shape():
    out = from_hub(message(TEXT), model=MODEL, include_thoughts=False)
    assert out == {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}]},
                                   "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7},
                   "modelVersion": MODEL, "responseId": "msg_abc"}


PART_CASES = [
    # (hub content, include_thoughts, Gemini parts)
    ([THINK, TEXT], False, [{"text": "Hello"}]),
    ([THINK, TEXT], True, [{"text": "hmm", "thought": True}, {"text": "Hello"}]),
    ([{"type": "redacted_thinking", "data": "x"}, TEXT], True, [{"text": "Hello"}]),
    ([TEXT, CALL], False, [{"text": "Hello"}, {"functionCall": {"id": "read_file_1_0", "name": "read_file",
                                                                 "args": {"file_path": "a"}}}]),
    ([{"type": "tool_use", "id": "t", "name": "n", "input": {}}], False,
     [{"functionCall": {"id": "t", "name": "n", "args": {}}}]),
    ([{"type": "tool_use", "name": "n", "input": None}], False, [{"functionCall": {"name": "n", "args": {}}}]),
    ([{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
      {"type": "web_search_tool_result", "tool_use_id": "s", "content": []}, TEXT], False, [{"text": "Hello"}]),
    ([{"type": "text", "text": ""}, TEXT], False, [{"text": "Hello"}]),
    ([], False, [{"text": ""}]),  # SillyTavern reads parts[0].text
    ([THINK], False, [{"text": ""}]),
]


@pytest.mark.parametrize("content, include, parts", PART_CASES)
def test_parts(content, include, parts):
    out = from_hub(message(*content), model=MODEL, include_thoughts=include)
    assert out["candidates"][0]["content"] == {"role": "model", "parts": parts}


def test_tool_names_restored():
    msg = message({"type": "tool_use", "id": "t", "name": "mcp_fs_read", "input": {}})
    out = from_hub(msg, model=MODEL, include_thoughts=False, tool_names={"mcp_fs_read": "mcp.fs:read"})
    assert out["candidates"][0]["content"]["parts"][0]["functionCall"]["name"] == "mcp.fs:read"


def test_input_untouched():
    msg = message(THINK, TEXT, CALL)
    before = copy.deepcopy(msg)
    from_hub(msg, model=MODEL, include_thoughts=True)
    assert msg == before


# ------------------------------------------------------------------------------------------ §12

FINISH = [
    ("end_turn", "STOP"), ("stop_sequence", "STOP"), ("max_tokens", "MAX_TOKENS"),
    ("model_context_window_exceeded", "MAX_TOKENS"), ("tool_use", "STOP"), ("pause_turn", "STOP"),
    ("refusal", "SAFETY"), (None, "STOP"), ("something_new", "STOP"),
]


@pytest.mark.parametrize("hub, gemini", FINISH)
def test_finish_reason(hub, gemini):
    assert finish_reason(hub) == gemini
    assert from_hub(message(TEXT, stop=hub), model=MODEL, include_thoughts=False)[
        "candidates"][0]["finishReason"] == gemini


STOP = [
    ("STOP", False, "end_turn"), ("STOP", True, "tool_use"), (None, True, "tool_use"),
    ("MAX_TOKENS", False, "max_tokens"), ("MAX_TOKENS", True, "max_tokens"),
    ("SAFETY", False, "refusal"), ("RECITATION", False, "refusal"), ("BLOCKLIST", False, "refusal"),
    ("PROHIBITED_CONTENT", False, "refusal"), ("SPII", False, "refusal"), ("LANGUAGE", False, "refusal"),
    ("OTHER", False, "end_turn"), ("MALFORMED_FUNCTION_CALL", False, "end_turn"),
    ("FINISH_REASON_UNSPECIFIED", False, "end_turn"), (None, False, "end_turn"),
]


@pytest.mark.parametrize("gemini, calls, hub", STOP)
def test_stop_reason(gemini, calls, hub):
    assert stop_reason(gemini, calls) == hub


# ------------------------------------------------------------------------------------------ §13

USAGE = [
    ({"input_tokens": 25, "output_tokens": 40},
     {"promptTokenCount": 25, "candidatesTokenCount": 40, "totalTokenCount": 65}),
    ({"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 7},
     {"promptTokenCount": 117, "candidatesTokenCount": 4, "totalTokenCount": 121, "cachedContentTokenCount": 100}),
    ({"input_tokens": 3, "output_tokens": None, "cache_read_input_tokens": 0},
     {"promptTokenCount": 3, "candidatesTokenCount": 0, "totalTokenCount": 3}),
    (None, {"promptTokenCount": 0, "candidatesTokenCount": 0, "totalTokenCount": 0}),
]


@pytest.mark.parametrize("hub, meta", USAGE)
def test_usage_metadata(hub, meta):
    assert usage_metadata(hub) == meta


HUB_USAGE = [
    ({"promptTokenCount": 120, "candidatesTokenCount": 30, "thoughtsTokenCount": 50,
      "cachedContentTokenCount": 100, "totalTokenCount": 200},
     {"input_tokens": 20, "output_tokens": 80, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100}),
    ({"promptTokenCount": 5, "candidatesTokenCount": 2},
     {"input_tokens": 5, "output_tokens": 2, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
    ({"promptTokenCount": 5},
     {"input_tokens": 5, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
]


@pytest.mark.parametrize("meta, hub", HUB_USAGE)
def test_hub_usage(meta, hub):
    assert hub_usage(meta) == hub


# ------------------------------------------------------------------------------------- §11, §14

ERRORS = [
    (400, "INVALID_ARGUMENT"), (401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED"), (404, "NOT_FOUND"),
    (413, "INVALID_ARGUMENT"), (429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (502, "INTERNAL"),
    (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED"), (529, "UNAVAILABLE"),
]


@pytest.mark.parametrize("status, name", ERRORS)
def test_google_error(status, name):
    assert google_error(status, "boom") == {"error": {"code": status, "message": "boom", "status": name}}


HUB_ERRORS = [
    ("invalid_request_error", 400, "INVALID_ARGUMENT"), ("authentication_error", 401, "UNAUTHENTICATED"),
    ("permission_error", 403, "PERMISSION_DENIED"), ("not_found_error", 404, "NOT_FOUND"),
    ("request_too_large", 413, "INVALID_ARGUMENT"), ("rate_limit_error", 429, "RESOURCE_EXHAUSTED"),
    ("api_error", 500, "INTERNAL"), ("overloaded_error", 503, "UNAVAILABLE"), ("weird", 500, "INTERNAL"),
]


@pytest.mark.parametrize("kind, code, name", HUB_ERRORS)
def test_hub_error(kind, code, name):
    assert hub_error({"type": kind, "message": "m"}) == {"error": {"code": code, "message": "m", "status": name}}


# ------------------------------------------------------------------------------------- safety (§7)

def test_apply_safety_off_and_block_none_replace_both_spellings():
    body = {"contents": [], "safety_settings": [{"category": "X"}], "safetySettings": [{"category": "Y"}]}
    before = copy.deepcopy(body)
    off = apply_safety(body, "off")
    assert off["safetySettings"] == [{"category": c, "threshold": "OFF"} for c in SAFETY_CATEGORIES]
    assert "safety_settings" not in off and off["contents"] == []
    none = apply_safety(body, "block_none")
    assert none["safetySettings"] == [{"category": c, "threshold": "BLOCK_NONE"} for c in SAFETY_CATEGORIES]
    assert len(SAFETY_CATEGORIES) == 5 and "HARM_CATEGORY_CIVIC_INTEGRITY" in SAFETY_CATEGORIES
    assert body == before


def test_apply_safety_client_untouched():
    body = {"safety_settings": [{"category": "X", "threshold": "BLOCK_LOW_AND_ABOVE"}]}
    assert apply_safety(body, "client") is body


def test_apply_safety_unknown_mode():
    with pytest.raises(ValueError):
        apply_safety({}, "none")


def test_relaxed_safety():
    out = relaxed_safety({"safety_settings": [], "contents": [1]})
    assert out == {"contents": [1], "safetySettings": [
        {"category": c, "threshold": "BLOCK_NONE"} for c in SAFETY_CATEGORIES if "CIVIC" not in c]}


SAFETY_MESSAGES = [
    ("Invalid value at 'safety_settings[4].category' (type.googleapis.com/google.ai.generativelanguage"
     ".v1beta.HarmCategory), \"HARM_CATEGORY_CIVIC_INTEGRITY\"", True),
    ("* GenerateContentRequest.safety_settings[0].threshold: unknown enum label \"OFF\"", True),
    ("Invalid value at 'safetySettings[0].threshold'", True),
    ("The value OFF for the threshold is not supported for this model.", True),
    ("API key not valid. Please pass a valid API key.", False),
    ("* GenerateContentRequest.contents: contents is not specified", False),
    ("", False),
]


@pytest.mark.parametrize("message, expected", SAFETY_MESSAGES)
def test_names_safety_setting(message, expected):
    assert names_safety_setting(message) is expected


# ------------------------------------------------------------------------------- "Hi", countTokens

HI_BODIES = [
    ({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}, True),
    ({"contents": [{"parts": {"text": "Hi"}}], "system_instruction": {"parts": {"text": "s"}}}, True),
    ({"contents": {"role": "user", "parts": [{"text": "Hi"}]}}, True),
    ({"contents": [{"role": "user", "parts": [{"text": "Hi"}, {"text": "there"}]}]}, False),
    ({"contents": [{"role": "user", "parts": [{"text": "Hi!"}]}]}, False),
    ({"contents": [{"role": "model", "parts": [{"text": "Hi"}]}]}, False),
    ({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}, {"role": "model", "parts": [{"text": "x"}]}]},
     False),
    ({}, False), ([], False), ({"contents": [3]}, False), (None, False),
]


@pytest.mark.parametrize("body, expected", HI_BODIES)
def test_is_hi(body, expected):
    assert is_hi(body) is expected


def test_hi_response():
    out = hi_response("gemini-2.5-pro", "resp-1")
    assert out["candidates"][0]["content"]["parts"] == [{"text": HI_TEXT}]
    assert out["candidates"][0]["finishReason"] == "STOP"
    assert out["modelVersion"] == "gemini-2.5-pro" and out["responseId"] == "resp-1"
    assert out["usageMetadata"]["totalTokenCount"] == 0


def test_count_response():
    assert count_response(42) == {"totalTokens": 42}
