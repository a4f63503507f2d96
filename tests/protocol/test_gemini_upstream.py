"""Hub ⇄ Gemini upstream: request (conversions.md §9.2, §10), response and stream (§9.3, §12, §13), round trips."""

from __future__ import annotations

import copy
import json

import pytest

from clewdr_lite.errors import UpstreamError
from clewdr_lite.protocol.anthropic import Accumulator
from clewdr_lite.protocol.gemini import (SKIP_SIGNATURE, GeminiStream, GeminiToHub, from_hub,
                                         gemini_to_hub_message, hub_to_gemini, thinking_config, to_hub)

from .test_gemini_normalize import GEMINI_CLI

SIG = "clewdr-lite:0123456789abcdef"
MSG_ID = "msg_abc123"


def req(*messages, **fields) -> dict:
    return {"model": "gemini-2.5-pro", "max_tokens": 1000,
            "messages": list(messages) or [{"role": "user", "content": "Hi"}], **fields}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


# --------------------------------------------------------------------------------- request (§9.2)

def test_minimal_request():
    assert hub_to_gemini(req()) == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                                    "generationConfig": {"maxOutputTokens": 1000}}


SYSTEM_CASES = [
    ("be brief", [{"text": "be brief"}]),
    ([text("a"), text(""), text("b")], [{"text": "a"}, {"text": "b"}]),
    ([], None),
    ("  ", None),
]


@pytest.mark.parametrize("system, parts", SYSTEM_CASES)
def test_system(system, parts):
    body = hub_to_gemini(req(system=system))
    assert body.get("systemInstruction") == (None if parts is None else {"parts": parts})


def test_system_messages_appended_to_the_instruction():
    body = hub_to_gemini(req({"role": "user", "content": "q"}, {"role": "system", "content": "mid"},
                             {"role": "assistant", "content": "a"},
                             {"role": "system", "content": [text("late")]}, system="top"))
    assert body["systemInstruction"] == {"parts": [{"text": "top"}, {"text": "mid"}, {"text": "late"}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model"]


BLOCK_CASES = [
    # (hub content blocks, Gemini parts)
    ([text("a"), text(""), text("b")], [{"text": "a"}, {"text": "b"}]),
    ([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}],
     [{"inlineData": {"mimeType": "image/png", "data": "AA"}}]),
    ([{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JV"}}],
     [{"inlineData": {"mimeType": "application/pdf", "data": "JV"}}]),
    ([{"type": "image", "source": {"type": "url", "url": "https://x.test/a/cat.PNG?s=1"}}],
     [{"fileData": {"mimeType": "image/png", "fileUri": "https://x.test/a/cat.PNG?s=1"}}]),
    ([{"type": "image", "source": {"type": "url", "url": "https://x.test/cat"}}],
     [{"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/cat"}}]),
    ([{"type": "document", "source": {"type": "url", "url": "https://x.test/doc"}}],
     [{"fileData": {"mimeType": "application/pdf", "fileUri": "https://x.test/doc"}}]),
    ([{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain"}}],
     [{"text": "plain"}]),
    ([{"type": "document", "source": {"type": "content", "content": [text("c1"), text("c2")]}}],
     [{"text": "c1"}, {"text": "c2"}]),
    ([{"type": "image", "source": {"type": "file", "file_id": "f"}}, text("a")], [{"text": "a"}]),
    ([{"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "redacted_thinking", "data": "d"},
      text("a")], [{"text": "a"}]),
    ([{"type": "search_result", "source": "s", "title": "t", "content": []}, text("a")], [{"text": "a"}]),
]


@pytest.mark.parametrize("blocks, parts", BLOCK_CASES)
def test_blocks(blocks, parts):
    body = hub_to_gemini(req({"role": "user", "content": blocks}))
    assert body["contents"] == [{"role": "user", "parts": parts}]


def test_dropped_blocks_warn_but_thinking_is_silent():
    warnings = []
    hub_to_gemini(req({"role": "user", "content": [{"type": "search_result"}, text("a")]},
                      {"role": "assistant", "content": [{"type": "thinking", "thinking": "t"}, text("b")]},
                      tools=[{"type": "bash_20250124", "name": "bash"}]), warn=warnings.append)
    assert len(warnings) == 2


def test_tool_round_in_history():
    body = hub_to_gemini(req(
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "t", "signature": "s"}, text("Checking."),
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [text("no clock"), text("at all")]},
            {"type": "tool_result", "tool_use_id": "toolu_9",
             "content": [text("img"), {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                   "data": "AA"}}]},
            {"type": "tool_result", "tool_use_id": "toolu_1"},
            text("thanks")]}))
    assert body["contents"][1] == {"role": "model", "parts": [
        {"text": "Checking."},
        {"functionCall": {"id": "toolu_1", "name": "get_weather", "args": {"city": "Paris"}},
         "thoughtSignature": SKIP_SIGNATURE},
        {"functionCall": {"id": "toolu_2", "name": "get_time", "args": {}}, "thoughtSignature": SKIP_SIGNATURE}]}
    assert body["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"id": "toolu_1", "name": "get_weather", "response": {"output": "18C"}}},
        {"functionResponse": {"id": "toolu_2", "name": "get_time", "response": {"error": "no clock\nat all"}}},
        {"functionResponse": {"id": "toolu_9", "name": "toolu_9", "response": {"output": "img"}}},
        {"inlineData": {"mimeType": "image/png", "data": "AA"}},
        {"functionResponse": {"id": "toolu_1", "name": "get_weather", "response": {"output": ""}}},
        {"text": "thanks"}]}


def test_roles_merge_and_empty_messages_skipped():
    body = hub_to_gemini(req({"role": "user", "content": "a"}, {"role": "user", "content": [text("b")]},
                             {"role": "assistant", "content": []}, {"role": "user", "content": ""},
                             {"role": "assistant", "content": "c"}))
    assert body["contents"] == [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                                {"role": "model", "parts": [{"text": "c"}]}]


CONFIG_CASES = [
    ({"temperature": 0.5, "top_p": 0.9, "top_k": 40},
     {"maxOutputTokens": 1000, "temperature": 0.5, "topP": 0.9, "topK": 40}),
    ({"stop_sequences": ["a", "b", "c", "d", "e", "f", "g"]},
     {"maxOutputTokens": 1000, "stopSequences": ["a", "b", "c", "d", "e"]}),
    ({"stop_sequences": []}, {"maxOutputTokens": 1000}),
    ({"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}},
     {"maxOutputTokens": 1000, "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}}),
    ({"output_format": {"type": "json_schema", "schema": {"type": "string"}}},
     {"maxOutputTokens": 1000, "responseMimeType": "application/json", "responseJsonSchema": {"type": "string"}}),
    ({"metadata": {"user_id": "u"}, "service_tier": "auto", "stream": True, "context_management": {}},
     {"maxOutputTokens": 1000}),
]


@pytest.mark.parametrize("fields, config", CONFIG_CASES)
def test_generation_config(fields, config):
    body = hub_to_gemini(req(**fields))
    assert body["generationConfig"] == config
    assert set(body) <= {"contents", "generationConfig"}


# §10: hub thinking → thinkingConfig, per model family
THINKING_CASES = [
    ("gemini-2.5-pro", {"type": "enabled", "budget_tokens": 4096}, None, {"includeThoughts": True, "thinkingBudget": 4096}),
    ("gemini-2.5-pro", {"type": "enabled", "budget_tokens": 64}, None, {"includeThoughts": True, "thinkingBudget": 128}),
    ("gemini-2.5-pro", {"type": "enabled", "budget_tokens": 65536}, None, {"includeThoughts": True, "thinkingBudget": 32768}),
    ("gemini-2.5-flash", {"type": "enabled", "budget_tokens": 65536}, None, {"includeThoughts": True, "thinkingBudget": 24576}),
    ("gemini-2.5-flash", {"type": "enabled", "budget_tokens": 2048}, None, {"includeThoughts": True, "thinkingBudget": 2048}),
    ("gemini-2.5-flash-lite", {"type": "enabled", "budget_tokens": 1024}, None, {"includeThoughts": True, "thinkingBudget": 1024}),
    ("gemini-2.5-pro", {"type": "adaptive"}, None, {"includeThoughts": True, "thinkingBudget": -1}),
    ("gemini-2.5-flash", {"type": "adaptive"}, "high", {"includeThoughts": True, "thinkingBudget": -1}),
    ("gemini-3-pro-preview", {"type": "enabled", "budget_tokens": 4096}, None, {"includeThoughts": True, "thinkingLevel": "LOW"}),
    ("gemini-3.1-pro-preview", {"type": "enabled", "budget_tokens": 8192}, None, {"includeThoughts": True, "thinkingLevel": "HIGH"}),
    ("gemini-3.5-flash", {"type": "adaptive"}, "low", {"includeThoughts": True, "thinkingLevel": "LOW"}),
    ("gemini-3.5-flash", {"type": "adaptive"}, "medium", {"includeThoughts": True, "thinkingLevel": "HIGH"}),
    ("gemini-3.5-flash", {"type": "adaptive"}, None, {"includeThoughts": True, "thinkingLevel": "HIGH"}),
    ("gemini-2.5-pro", {"type": "disabled"}, None, None),
    ("gemini-2.5-pro", None, None, None),
    ("gemini-2.5-flash", None, None, {"thinkingBudget": 0}),  # 2.5 Flash thinks unless told not to
    ("gemini-2.5-flash", {"type": "disabled"}, None, {"thinkingBudget": 0}),
    ("gemini-3-flash", None, None, None),
]


@pytest.mark.parametrize("model, thinking, effort, expected", THINKING_CASES)
def test_thinking(model, thinking, effort, expected):
    assert thinking_config(thinking, effort, model) == expected
    fields = {"model": model}
    if thinking:
        fields["thinking"] = thinking
    if effort:
        fields["output_config"] = {"effort": effort}
    body = hub_to_gemini(req(**fields))
    assert body["generationConfig"].get("thinkingConfig") == expected


WEATHER = {"name": "get_weather", "description": "Weather",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TOOL_CHOICES = [
    (None, None),
    ({"type": "auto"}, {"mode": "AUTO"}),
    ({"type": "any"}, {"mode": "ANY"}),
    ({"type": "none"}, {"mode": "NONE"}),
    ({"type": "tool", "name": "get_weather"}, {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ({"type": "auto", "disable_parallel_tool_use": True}, {"mode": "AUTO"}),
]


@pytest.mark.parametrize("choice, calling", TOOL_CHOICES)
def test_tools_and_choice(choice, calling):
    fields = {"tools": [WEATHER, {"name": "bare", "type": "custom"}]}
    if choice:
        fields["tool_choice"] = choice
    body = hub_to_gemini(req(**fields))
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather", "parametersJsonSchema": WEATHER["input_schema"]},
        {"name": "bare", "parametersJsonSchema": {"type": "object", "properties": {}}}]}]
    assert body.get("toolConfig") == (None if calling is None else {"functionCallingConfig": calling})


def test_web_search_and_server_tools():
    body = hub_to_gemini(req(tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
                                    {"type": "code_execution_20250522", "name": "code_execution"}],
                             tool_choice={"type": "any"}))
    assert body["tools"] == [{"googleSearch": {}}]
    assert "toolConfig" not in body  # no function to choose
    body = hub_to_gemini(req(tools=[WEATHER, {"type": "web_search_20250305", "name": "web_search"}]))
    assert body["tools"][1] == {"googleSearch": {}}


def test_request_input_untouched():
    hub = req({"role": "user", "content": [text("x")]}, tools=[WEATHER], system="s",
              thinking={"type": "enabled", "budget_tokens": 2000})
    before = copy.deepcopy(hub)
    hub_to_gemini(hub)
    assert hub == before


# ------------------------------------------------------------------------- response (§9.3, §12)

def response(*parts, finish="STOP", usage=None, **extra) -> dict:
    out = {"candidates": [{"content": {"role": "model", "parts": list(parts)}, "finishReason": finish,
                           "index": 0}],
           "modelVersion": "gemini-2.5-pro", "responseId": "r1", **extra}
    if usage is not False:
        out["usageMetadata"] = usage or {"promptTokenCount": 10, "candidatesTokenCount": 5,
                                         "thoughtsTokenCount": 3, "totalTokenCount": 18}
    return out


def message_of(resp: dict) -> dict:
    return gemini_to_hub_message(resp, model="claude-requested", msg_id=MSG_ID, signature=SIG)


def test_message_envelope_and_usage():
    msg = message_of(response({"text": "Hello"}))
    assert msg == {"id": MSG_ID, "type": "message", "role": "assistant", "content": [text("Hello")],
                   "model": "claude-requested", "stop_reason": "end_turn", "stop_sequence": None,
                   "usage": {"input_tokens": 10, "output_tokens": 8, "cache_creation_input_tokens": 0,
                             "cache_read_input_tokens": 0}}


MESSAGE_CASES = [
    # (Gemini parts, hub content, stop_reason)
    ([{"text": "a"}, {"text": "b"}], [text("ab")], "end_turn"),
    ([{"text": "plan", "thought": True}, {"text": " more", "thought": True}, {"text": "A"}],
     [{"type": "thinking", "thinking": "plan more", "signature": SIG}, text("A")], "end_turn"),
    ([{"text": "", "thoughtSignature": "abc"}, {"text": "A", "thoughtSignature": "def"}], [text("A")], "end_turn"),
    ([{"text": "Checking."}, {"functionCall": {"id": "read_file_1_0", "name": "read_file", "args": {"p": "a"}},
                              "thoughtSignature": "x"}],
     [text("Checking."), {"type": "tool_use", "id": "read_file_1_0", "name": "read_file", "input": {"p": "a"}}],
     "tool_use"),
    ([{"functionCall": {"name": "f", "args": {}}}, {"functionCall": {"name": "g"}}],
     [{"type": "tool_use", "id": "toolu_abc123_0", "name": "f", "input": {}},
      {"type": "tool_use", "id": "toolu_abc123_1", "name": "g", "input": {}}], "tool_use"),
    ([{"functionCall": {"id": "bad id!", "name": "f", "args": {"a": [1]}}}, {"text": "after"}],
     [{"type": "tool_use", "id": "bad_id_", "name": "f", "input": {"a": [1]}}, text("after")], "tool_use"),
    ([{"executableCode": {"language": "PYTHON", "code": "1+1"}}, {"codeExecutionResult": {"output": "2"}}],
     [text("```python\n1+1\n```2")], "end_turn"),
    ([], [], "end_turn"),
]


@pytest.mark.parametrize("parts, content, stop", MESSAGE_CASES)
def test_message_content(parts, content, stop):
    msg = message_of(response(*parts))
    assert msg["content"] == content and msg["stop_reason"] == stop


FINISH_CASES = [("STOP", "end_turn"), ("MAX_TOKENS", "max_tokens"), ("SAFETY", "refusal"),
                ("RECITATION", "refusal"), ("PROHIBITED_CONTENT", "refusal"), ("OTHER", "end_turn"),
                ("MALFORMED_FUNCTION_CALL", "end_turn"), (None, "end_turn")]


@pytest.mark.parametrize("finish, stop", FINISH_CASES)
def test_message_stop_reasons(finish, stop):
    assert message_of(response({"text": "a"}, finish=finish))["stop_reason"] == stop


def test_max_tokens_with_call_stays_max_tokens():
    assert message_of(response({"functionCall": {"name": "f"}}, finish="MAX_TOKENS"))["stop_reason"] == "max_tokens"


def test_usage_with_cache():
    msg = message_of(response({"text": "a"}, usage={"promptTokenCount": 1000, "cachedContentTokenCount": 800,
                                                    "candidatesTokenCount": 5, "totalTokenCount": 1005}))
    assert msg["usage"] == {"input_tokens": 200, "output_tokens": 5, "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 800}


def test_missing_usage_is_estimated():
    msg = message_of(response({"text": "abcdef"}, usage=False))
    assert msg["usage"] == {"input_tokens": 0, "output_tokens": 2}


def test_blocked_prompt_is_a_refusal():
    msg = message_of({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                      "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}})
    assert msg["stop_reason"] == "refusal"
    assert msg["content"] == [text("Gemini blocked the prompt (PROHIBITED_CONTENT)")]
    assert msg["usage"]["input_tokens"] == 7


def test_empty_answer():
    msg = message_of({"candidates": [], "usageMetadata": {"promptTokenCount": 3}})
    assert msg["content"] == [] and msg["stop_reason"] == "end_turn"


def test_error_body_raises():
    with pytest.raises(UpstreamError) as info:
        message_of({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}})
    assert info.value.status == 429 and info.value.type == "rate_limit_error"


# ---------------------------------------------------------------------------------- stream (§9.3)

def convert(chunks, input_tokens=42) -> tuple[list, dict]:
    """Events of the chunks fed one by one, and the message the Accumulator folds them into."""
    conv = GeminiToHub(model="claude-requested", msg_id=MSG_ID, signature=SIG, input_tokens=input_tokens)
    events = [e for c in chunks for e in conv.feed(c)] + conv.close()
    assert conv.close() == [] and conv.feed({"candidates": []}) == []
    acc = Accumulator()
    for event in events:
        acc.feed(event)
    return events, acc.result()


def chunk(*parts, finish=None, usage=None) -> dict:
    cand = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    out = {"candidates": [cand]}
    if usage:
        out["usageMetadata"] = usage
    return out


STREAM = [
    chunk({"text": "Let me", "thought": True}, usage={"promptTokenCount": 10}),
    chunk({"text": " think", "thought": True}),
    chunk({"text": "Sure, "}),
    chunk({"text": "reading."}, {"functionCall": {"id": "c1", "name": "read_file", "args": {"p": "a"}}}),
    chunk({"functionCall": {"name": "ls", "args": {}}}),
    chunk({"text": "Done."}, finish="STOP",
          usage={"promptTokenCount": 10, "candidatesTokenCount": 6, "thoughtsTokenCount": 4}),
]


def test_stream_events_in_order():
    events, _ = convert(STREAM)
    kinds = [(e["type"], e.get("index"), (e.get("delta") or e.get("content_block") or {}).get("type"))
             for e in events]
    assert kinds == [
        ("message_start", None, None), ("ping", None, None),
        ("content_block_start", 0, "thinking"), ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"), ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"), ("content_block_delta", 1, "text_delta"),
        ("content_block_delta", 1, "text_delta"), ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"), ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, "tool_use"), ("content_block_delta", 3, "input_json_delta"),
        ("content_block_stop", 3, None),
        ("content_block_start", 4, "text"), ("content_block_delta", 4, "text_delta"),
        ("content_block_stop", 4, None),
        ("message_delta", None, None), ("message_stop", None, None)]
    assert events[0]["message"]["usage"] == {"input_tokens": 10, "output_tokens": 1,
                                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    assert events[0]["message"]["model"] == "claude-requested" and events[0]["message"]["id"] == MSG_ID
    assert events[5]["delta"] == {"type": "signature_delta", "signature": SIG}
    assert events[12]["delta"] == {"type": "input_json_delta", "partial_json": '{"p":"a"}'}


def test_stream_folds_into_the_message():
    _, msg = convert(STREAM)
    assert msg["content"] == [
        {"type": "thinking", "thinking": "Let me think", "signature": SIG},
        text("Sure, reading."),
        {"type": "tool_use", "id": "c1", "name": "read_file", "input": {"p": "a"}},
        {"type": "tool_use", "id": "toolu_abc123_1", "name": "ls", "input": {}},
        text("Done.")]
    assert msg["stop_reason"] == "tool_use" and msg["stop_sequence"] is None
    assert msg["usage"] == {"input_tokens": 10, "output_tokens": 10, "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 0}


def test_stream_and_whole_response_agree():
    whole = response({"text": "a", "thought": True}, {"text": "b"}, {"functionCall": {"name": "f", "args": {}}})
    streamed = [chunk({"text": "a", "thought": True}), chunk({"text": "b"}),
                chunk({"functionCall": {"name": "f", "args": {}}}, finish="STOP", usage=whole["usageMetadata"])]
    assert convert(streamed)[1] == message_of(whole)


def test_stream_without_usage_estimates():
    _, msg = convert([chunk({"text": "abcdef"}), chunk(finish="MAX_TOKENS")], input_tokens=42)
    assert msg["usage"] == {"input_tokens": 42, "output_tokens": 2}
    assert msg["stop_reason"] == "max_tokens"


def test_stream_error_chunk():
    events, _ = convert([chunk({"text": "par"}), {"error": {"code": 503, "message": "overloaded",
                                                           "status": "UNAVAILABLE"}}, chunk({"text": "no"})])
    assert events[-1] == {"type": "error", "error": {"type": "api_error", "message": "overloaded"}}
    assert [e["type"] for e in events].count("message_stop") == 0


def test_stream_error_chunk_rate_limit():
    events, _ = convert([{"error": {"code": 429, "message": "quota"}}])
    assert events == [{"type": "error", "error": {"type": "rate_limit_error", "message": "quota"}}]


def test_empty_stream_is_an_error():
    events, _ = convert([])
    assert events == [{"type": "error", "error": {"type": "api_error",
                                                  "message": "Gemini ended the stream without a response"}}]


def test_stream_blocked_prompt():
    events, msg = convert([{"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4}}])
    assert msg["stop_reason"] == "refusal"
    assert msg["content"] == [text("Gemini blocked the prompt (SAFETY)")]


# ------------------------------------------------------------------------------------- round trips

def test_gemini_client_ids_survive_a_gemini_upstream():
    """Gemini CLI → hub → Gemini upstream keeps function-call ids, names and the signature placeholder."""
    body = hub_to_gemini({**to_hub(GEMINI_CLI, model="gemini-2.5-flash"), "model": "gemini-2.5-flash"})
    call, = body["contents"][1]["parts"]
    assert call == {"functionCall": {"id": "read_file_1760000000000_0", "name": "read_file",
                                     "args": {"file_path": "a.txt"}}, "thoughtSignature": SKIP_SIGNATURE}
    result, = body["contents"][2]["parts"]
    assert result == {"functionResponse": {"id": "read_file_1760000000000_0", "name": "read_file",
                                           "response": {"output": "hello"}}}
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "read_file", "description": "Reads a file",
         "parametersJsonSchema": GEMINI_CLI["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]}]}]
    assert body["systemInstruction"] == {"parts": GEMINI_CLI["systemInstruction"]["parts"]}
    assert body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 8192}


def test_gemini_answer_ids_survive_to_a_gemini_client():
    """Gemini upstream answer → hub → Gemini client: the call id comes back unchanged."""
    upstream = response({"text": "t", "thought": True},
                        {"functionCall": {"id": "read_file_99_0", "name": "read_file", "args": {"p": 1}}})
    msg = message_of(upstream)
    out = from_hub(msg, model="gemini-2.5-pro", include_thoughts=True)
    assert out["candidates"][0]["content"]["parts"] == [
        {"text": "t", "thought": True},
        {"functionCall": {"id": "read_file_99_0", "name": "read_file", "args": {"p": 1}}}]
    assert out["candidates"][0]["finishReason"] == "STOP" and out["responseId"] == MSG_ID

    conv = GeminiToHub(model="m", msg_id=MSG_ID, signature=SIG, input_tokens=0)
    stream = GeminiStream(model="gemini-2.5-pro", response_id="r", include_thoughts=True, sse=True)
    raw = b"".join(stream.feed(e) for e in conv.feed(upstream) + conv.close()) + stream.close()
    chunks = [json.loads(line[6:]) for line in raw.decode().split("\n\n") if line]
    calls = [p["functionCall"] for c in chunks for p in c["candidates"][0]["content"]["parts"] if "functionCall" in p]
    assert calls == [{"id": "read_file_99_0", "name": "read_file", "args": {"p": 1}}]
    assert chunks[-1]["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 8, "totalTokenCount": 18}


def test_history_round_trip_gemini_to_hub_to_gemini_is_stable():
    """A hub request made from Gemini and sent back to Gemini converts back to the same hub request."""
    first = to_hub(GEMINI_CLI, model="gemini-2.5-flash")
    again = to_hub(hub_to_gemini(first), model="gemini-2.5-flash")
    assert again["messages"] == first["messages"]
    assert again["tools"] == first["tools"] and again["system"] == first["system"]
