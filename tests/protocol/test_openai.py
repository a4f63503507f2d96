"""OpenAI chat request → hub and hub message → chat.completion (conversions.md §3, §4, §10–13, §15)."""

from __future__ import annotations

import copy

import pytest

from clewdr_lite.errors import BadRequest
from clewdr_lite.protocol import openai
from clewdr_lite.protocol.openai import (finish_reason, from_hub, include_usage, to_hub,
                                         tool_name_map, usage_from_hub)

HI = [{"role": "user", "content": "Hi"}]
PNG = "data:image/png;base64,iVBORw0KGgo="
PDF = "data:application/pdf;base64,JVBERi0x"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}},
                                            "strict": True}}


def hub_of(**fields) -> dict:
    body = {"model": "claude-sonnet-4-5", "messages": HI, **fields}
    return to_hub(body)


def msgs(*messages, **fields) -> list:
    return to_hub({"model": "m", "messages": list(messages), **fields})["messages"]


def call(call_id: str, name: str = "get_weather", arguments: str = '{"city":"Paris"}') -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def use(call_id: str, name: str = "get_weather", inp=None) -> dict:
    return {"type": "tool_use", "id": call_id, "name": name,
            "input": {"city": "Paris"} if inp is None else inp}


def result(call_id: str, content="18C") -> dict:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


# --------------------------------------------------------------------------- §3 request fields

FIELD_CASES = [
    # (request fields, expected hub subset, hub keys that must be absent)
    ({}, {"model": "claude-sonnet-4-5", "max_tokens": 8192, "stream": False},
     ["temperature", "stop_sequences", "tools", "thinking", "system", "metadata"]),
    ({"max_tokens": 100}, {"max_tokens": 100}, []),
    ({"max_completion_tokens": 200}, {"max_tokens": 200}, []),
    ({"max_tokens": 100, "max_completion_tokens": 200}, {"max_tokens": 100}, []),
    ({"max_tokens": None, "max_completion_tokens": 300}, {"max_tokens": 300}, []),
    ({"temperature": 1.7}, {"temperature": 1}, []),
    ({"temperature": 0.3}, {"temperature": 0.3}, []),
    ({"temperature": -0.5}, {"temperature": 0}, []),
    ({"temperature": None}, {}, ["temperature"]),
    ({"top_p": 0.9}, {"top_p": 0.9}, []),
    ({"top_k": 40}, {"top_k": 40}, []),
    ({"top_k": 0}, {}, ["top_k"]),
    ({"stop": "END"}, {"stop_sequences": ["END"]}, []),  # ClewdR quirk 3: a string stop is fine
    ({"stop": ["a", "", "b"]}, {"stop_sequences": ["a", "b"]}, []),
    ({"stop": []}, {}, ["stop_sequences"]),
    ({"stop": None}, {}, ["stop_sequences"]),
    ({"stream": True}, {"stream": True}, []),
    ({"stream": False}, {"stream": False}, []),
    ({"stream_options": {"include_usage": True}}, {}, ["stream_options"]),
    ({"user": "u-1"}, {"metadata": {"user_id": "u-1"}}, ["user"]),
    ({"metadata": {"a": "b"}}, {}, ["metadata"]),
    ({"reasoning_effort": "none"}, {}, ["thinking", "output_config"]),  # ClewdR quirk 8
    ({"response_format": {"type": "text"}}, {}, ["output_config", "system"]),
    ({"response_format": {"type": "json_schema",
                          "json_schema": {"name": "p", "strict": True,
                                          "schema": {"type": "object", "properties": {}}}}},
     {"output_config": {"format": {"type": "json_schema",
                                   "schema": {"type": "object", "properties": {}}}}}, []),
    ({"response_format": {"type": "json_object"}},
     {"system": [text("Respond with a single JSON object only.")]}, ["output_config"]),
    ({"web_search_options": {}},
     {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, []),
    ({"n": 1}, {}, ["n"]),
    ({"frequency_penalty": 1, "presence_penalty": 1, "logit_bias": {}, "seed": 1, "logprobs": True,
      "top_logprobs": 2, "store": True, "service_tier": "auto", "prediction": {},
      "modalities": ["text"], "audio": {}}, {},
     ["frequency_penalty", "presence_penalty", "logit_bias", "seed", "logprobs", "top_logprobs",
      "store", "service_tier", "prediction", "modalities", "audio"]),
]


@pytest.mark.parametrize("fields,expected,absent", FIELD_CASES)
def test_request_fields(fields, expected, absent):
    hub = hub_of(**fields)
    for key, value in expected.items():
        assert hub[key] == value, key
    for key in absent:
        assert key not in hub, key


EFFORT_CASES = [
    ("minimal", 1024, "low"),
    ("low", 2048, "low"),
    ("medium", 4096, "medium"),
    ("high", 16384, "high"),
    ("xhigh", 32768, "xhigh"),
    ("max", 65536, "max"),
]


@pytest.mark.parametrize("effort,budget,level", EFFORT_CASES)
def test_reasoning_effort_ladder(effort, budget, level):
    hub = hub_of(reasoning_effort=effort)
    assert hub["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert hub["output_config"] == {"effort": level}


def test_thinking_object_wins_over_reasoning_effort():
    hub = hub_of(reasoning_effort="high", thinking={"type": "adaptive"})
    assert hub["thinking"] == {"type": "adaptive"}
    assert "output_config" not in hub


def test_effort_and_schema_share_output_config():
    hub = hub_of(reasoning_effort="low",
                 response_format={"type": "json_schema", "json_schema": {"schema": {"type": "object"}}})
    assert hub["output_config"] == {"effort": "low",
                                    "format": {"type": "json_schema", "schema": {"type": "object"}}}


def test_include_usage():
    assert include_usage({"stream_options": {"include_usage": True}}) is True
    assert include_usage({"stream_options": {"include_usage": False}}) is False
    assert include_usage({"stream_options": None}) is False
    assert include_usage({}) is False


# --------------------------------------------------------------------------------- §3 tools

def test_tools_converted():  # ClewdR quirk 1: tools are converted, not copied
    hub = hub_of(tools=[WEATHER, {"type": "function", "function": {"name": "now"}},
                        {"type": "code_interpreter"}])
    assert hub["tools"] == [
        {"name": "get_weather", "description": "Weather",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]


def test_web_search_added_after_function_tools():
    hub = hub_of(tools=[WEATHER], web_search_options={"search_context_size": "low"})
    assert [t["name"] for t in hub["tools"]] == ["get_weather", "web_search"]


def test_non_function_tools_warned():
    seen = []
    to_hub({"model": "m", "messages": HI, "tools": [{"type": "file_search"}]}, warn=seen.append)
    assert seen and "tools[0]" in seen[0]


def test_legacy_functions_and_function_call():
    hub = hub_of(functions=[WEATHER["function"]], function_call={"name": "get_weather"})
    assert hub["tools"][0]["name"] == "get_weather"
    assert hub["tool_choice"] == {"type": "tool", "name": "get_weather"}


TOOL_CHOICE_CASES = [
    ({"tool_choice": "auto"}, {"type": "auto"}),
    ({"tool_choice": "none"}, {"type": "none"}),
    ({"tool_choice": "required"}, {"type": "any"}),  # CCR quirk 7, the other way round
    ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
     {"type": "tool", "name": "get_weather"}),
    ({"parallel_tool_calls": False}, {"type": "auto", "disable_parallel_tool_use": True}),
    ({"tool_choice": "required", "parallel_tool_calls": False},
     {"type": "any", "disable_parallel_tool_use": True}),
    ({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"}),
    ({"parallel_tool_calls": True}, None),
    ({}, None),
]


@pytest.mark.parametrize("fields,expected", TOOL_CHOICE_CASES)
def test_tool_choice(fields, expected):
    hub = hub_of(tools=[WEATHER], **fields)
    assert hub.get("tool_choice") == expected


def test_tool_choice_dropped_without_tools():
    assert "tool_choice" not in hub_of(tool_choice="auto")


def test_tool_names_sanitised_and_mapped_back():
    body = {"model": "m", "messages": HI,
            "tools": [{"type": "function", "function": {"name": "github.create issue"}}],
            "tool_choice": {"type": "function", "function": {"name": "github.create issue"}}}
    hub = to_hub(body)
    assert hub["tools"][0]["name"] == "github_create_issue"
    assert hub["tool_choice"]["name"] == "github_create_issue"
    names = tool_name_map(body)
    assert names == {"github_create_issue": "github.create issue"}
    reply = {"id": "msg_1", "content": [use("toolu_1", "github_create_issue", {})],
             "stop_reason": "tool_use"}
    out = from_hub(reply, model="m", created=1, tool_names=names)
    assert out["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "github.create issue"


# ------------------------------------------------------------------------------ §3.1 messages

def test_leading_system_and_developer_hoisted():  # ClewdR quirk 2: developer accepted
    hub = to_hub({"model": "m", "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."},
                                          {"type": "text", "text": "  "}]},
        {"role": "user", "content": "Hi"}]})
    assert hub["system"] == [text("You are terse."), text("Use French.")]
    assert hub["messages"] == [{"role": "user", "content": "Hi"}]


def test_json_object_instruction_appended_to_system():
    hub = to_hub({"model": "m", "response_format": {"type": "json_object"},
                  "messages": [{"role": "system", "content": "S"}, *HI]})
    assert hub["system"] == [text("S"), text("Respond with a single JSON object only.")]


def test_non_leading_system_stays_in_place():
    out = msgs({"role": "system", "content": "lead"}, {"role": "user", "content": "a"},
               {"role": "assistant", "content": "b"},
               {"role": "system", "content": "note 1"},
               {"role": "developer", "content": [{"type": "text", "text": "note 2"}]},
               {"role": "user", "content": "c"})
    assert out == [{"role": "user", "content": "a"},
                   {"role": "assistant", "content": [text("b")]},
                   {"role": "system", "content": "note 1\n\nnote 2"},
                   {"role": "user", "content": "c"}]


def test_no_first_user_placeholder():
    out = msgs({"role": "assistant", "content": "Once upon"})
    assert out == [{"role": "assistant", "content": [text("Once upon")]}]


USER_CONTENT_CASES = [
    ("plain", "Hello", "Hello"),
    ("single text part", [{"type": "text", "text": "Hello"}], "Hello"),
    ("bare string part", ["Hello"], "Hello"),
    ("parts", [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": PNG}}],
     [text("Look"), {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": "iVBORw0KGgo="}}]),
    ("jpg normalised, detail dropped",
     [{"type": "image_url", "image_url": {"url": "data:image/jpg;base64,AAAA", "detail": "high"}}],
     [{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}}]),
    ("url image", [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}],
     [{"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}]),
    ("image_url as a bare string", [{"type": "image_url", "image_url": PNG}],
     [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                   "data": "iVBORw0KGgo="}}]),
    ("pdf", [{"type": "file", "file": {"filename": "a.pdf", "file_data": PDF}}],
     [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                      "data": "JVBERi0x"}}]),
    ("bare base64 pdf", [{"type": "file", "file": {"filename": "A.PDF", "file_data": "JVBERi0x"}}],
     [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                      "data": "JVBERi0x"}}]),
    ("cache_control kept", [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}],
     [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}]),
]


@pytest.mark.parametrize("label,content,expected", USER_CONTENT_CASES, ids=[c[0] for c in USER_CONTENT_CASES])
def test_user_content(label, content, expected):
    assert msgs({"role": "user", "content": content, "name": "bob"}) == [
        {"role": "user", "content": expected}]


DROPPED_PARTS = [
    {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}},
    {"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}},
    {"type": "image_url", "image_url": {"url": "ftp://x.test/a.png"}},
    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    {"type": "file", "file": {"file_id": "file-1"}},
    {"type": "file", "file": {"file_data": "data:text/csv;base64,YSxi"}},
    {"type": "video"},
    {"type": ["text"]},  # a type that is no string: dropped, not a crash (it was unhashable)
    {"type": {"type": "text"}},
]


@pytest.mark.parametrize("part", DROPPED_PARTS)
def test_unsupported_parts_dropped_with_warning(part):
    seen = []
    hub = to_hub({"model": "m", "messages": [{"role": "user", "content": [text("x"), part]}]},
                 warn=seen.append)
    assert hub["messages"] == [{"role": "user", "content": "x"}]
    assert len(seen) == 1 and "messages[0]" in seen[0]


ASSISTANT_CASES = [
    ("string", {"content": "Hi there"}, [text("Hi there")]),
    ("text parts", {"content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]},
     [text("A"), text("B")]),
    ("refusal part", {"content": [{"type": "refusal", "refusal": "No."}]}, [text("No.")]),
    ("refusal field", {"content": None, "refusal": "No."}, [text("No.")]),
    ("reasoning_content dropped", {"content": "ok", "reasoning_content": "hmm"}, [text("ok")]),
]


@pytest.mark.parametrize("label,fields,expected", ASSISTANT_CASES, ids=[c[0] for c in ASSISTANT_CASES])
def test_assistant_content(label, fields, expected):
    out = msgs({"role": "user", "content": "q"}, {"role": "assistant", **fields},
               {"role": "user", "content": "next"})
    assert out[1] == {"role": "assistant", "content": expected}


ARGUMENT_CASES = [
    ('{"city":"Paris"}', {"city": "Paris"}),
    ("{'city': 'Paris',}", {"city": "Paris"}),  # lenient repair
    ("not json", {"_raw_arguments": "not json"}),
    ("", {}),
    ({"city": "Paris"}, {"city": "Paris"}),
]


@pytest.mark.parametrize("arguments,expected", ARGUMENT_CASES)
def test_tool_call_arguments(arguments, expected):
    out = msgs({"role": "user", "content": "q"},
               {"role": "assistant", "content": None,
                "tool_calls": [call("call_1", arguments=arguments)]},
               {"role": "tool", "tool_call_id": "call_1", "content": "18C"})
    assert out[1]["content"] == [use("call_1", inp=expected)]


def test_tool_round_trip_merges_with_following_user():
    out = msgs({"role": "user", "content": "Weather in Paris and Rome?"},
               {"role": "assistant", "content": "Checking.",
                "tool_calls": [call("call_1"), call("call_2", arguments='{"city":"Rome"}')]},
               {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
               {"role": "tool", "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "21C"}]},
               {"role": "user", "content": "And tomorrow?"})
    assert out == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [text("Checking."), use("call_1"),
                                          use("call_2", inp={"city": "Rome"})]},
        {"role": "user", "content": [result("call_1"), result("call_2", [text("21C")]),
                                     text("And tomorrow?")]},
    ]


def test_tool_results_first_when_user_text_came_before():
    out = msgs({"role": "user", "content": "q"},
               {"role": "assistant", "content": None, "tool_calls": [call("call_1")]},
               {"role": "user", "content": "by the way"},
               {"role": "tool", "tool_call_id": "call_1", "content": "18C"})
    assert out[2] == {"role": "user", "content": [result("call_1"), text("by the way")]}


def test_tool_result_images_and_empty_content():
    out = msgs({"role": "user", "content": "q"},
               {"role": "assistant", "content": None, "tool_calls": [call("a"), call("b")]},
               {"role": "tool", "tool_call_id": "a",
                "content": [{"type": "image_url", "image_url": {"url": PNG}}]},
               {"role": "tool", "tool_call_id": "b", "content": ""})
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}}
    assert out[2]["content"] == [result("a", [image]), {"type": "tool_result", "tool_use_id": "b"}]


def test_legacy_function_call_and_function_role():
    out = msgs({"role": "user", "content": "q"},
               {"role": "assistant", "content": None,
                "function_call": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
               {"role": "function", "name": "get_weather", "content": "18C"},
               {"role": "assistant", "content": None,
                "function_call": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
               {"role": "function", "name": "get_weather", "content": "21C"})
    assert out[1:] == [
        {"role": "assistant", "content": [use("call_get_weather_0")]},
        {"role": "user", "content": [result("call_get_weather_0")]},
        {"role": "assistant", "content": [use("call_get_weather_1", inp={"city": "Rome"})]},
        {"role": "user", "content": [result("call_get_weather_1", "21C")]},
    ]


def test_consecutive_same_role_merged():
    out = msgs({"role": "user", "content": "a"}, {"role": "user", "content": "b"},
               {"role": "assistant", "content": "c"}, {"role": "assistant", "content": "d"})
    assert out == [{"role": "user", "content": [text("a"), text("b")]},
                   {"role": "assistant", "content": [text("c"), text("d")]}]


def test_empty_messages_removed_and_neighbours_merged():
    out = msgs({"role": "user", "content": "a"}, {"role": "assistant", "content": None},
               {"role": "assistant", "content": [{"type": "text", "text": ""}]},
               {"role": "user", "content": "   "}, {"role": "user", "content": "b"})
    assert out == [{"role": "user", "content": [text("a"), text("b")]}]


def test_orphan_tool_result_becomes_text():
    out = msgs({"role": "user", "content": "q"}, {"role": "assistant", "content": "no tools"},
               {"role": "tool", "tool_call_id": "call_9", "content": "stale"})
    assert out[2] == {"role": "user", "content": "[Tool result id=call_9] stale"}


def test_duplicate_tool_result_becomes_text():
    out = msgs({"role": "user", "content": "q"},
               {"role": "assistant", "content": None, "tool_calls": [call("call_1")]},
               {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
               {"role": "tool", "tool_call_id": "call_1", "content": "again"})
    assert out[2]["content"] == [result("call_1"), text("[Tool result id=call_1] again")]


def test_unanswered_tool_call_becomes_text():
    out = msgs({"role": "user", "content": "q"},
               {"role": "assistant", "content": None,
                "tool_calls": [call("call_1"), call("call_2", "now", "{}")]},
               {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
               {"role": "assistant", "content": None, "tool_calls": [call("call_3", "now", "{}")]},
               {"role": "user", "content": "never mind"})
    assert out[1]["content"] == [text("[Tool call now] {}"), use("call_1")]
    assert out[3]["content"] == [text("[Tool call now] {}")]


def test_final_assistant_tool_call_kept():
    out = msgs({"role": "user", "content": "q"},
               {"role": "assistant", "content": None, "tool_calls": [call("call_1")]})
    assert out[1]["content"] == [use("call_1")]


def test_system_message_between_call_and_result_is_transparent():
    out = msgs({"role": "user", "content": "q"},
               {"role": "assistant", "content": None, "tool_calls": [call("call_1")]},
               {"role": "system", "content": "note"},
               {"role": "tool", "tool_call_id": "call_1", "content": "18C"})
    assert out[1]["content"] == [use("call_1")]
    assert out[3]["content"] == [result("call_1")]


PREFILL_CASES = [
    ("string", "The answer is \n ", [text("The answer is")]),
    ("last part blank", [{"type": "text", "text": "A "}, {"type": "text", "text": "B\n"}],
     [text("A "), text("B")]),
]


@pytest.mark.parametrize("label,content,expected", PREFILL_CASES, ids=[c[0] for c in PREFILL_CASES])
def test_final_prefill_trailing_whitespace_removed(label, content, expected):
    out = msgs({"role": "user", "content": "q"}, {"role": "assistant", "content": content},
               {"role": "system", "content": "after"})
    assert out[1] == {"role": "assistant", "content": expected}


def test_only_final_assistant_is_trimmed():
    out = msgs({"role": "user", "content": "q"}, {"role": "assistant", "content": "a \n"},
               {"role": "user", "content": "r "})
    assert out[1]["content"] == [text("a \n")]
    assert out[2]["content"] == "r "


def test_tool_ids_and_names_sanitised_deterministically():
    messages = [{"role": "user", "content": "q"},
                {"role": "assistant", "content": None,
                 "tool_calls": [call("call:1/é", "ns.get weather")]},
                {"role": "tool", "tool_call_id": "call:1/é", "content": "18C"}]
    first = msgs(*messages)
    assert first[1]["content"] == [use("call_1__", "ns_get_weather")]
    assert first[2]["content"] == [result("call_1__")]
    assert msgs(*copy.deepcopy(messages)) == first


def test_missing_tool_call_id_gets_legacy_id():
    out = msgs({"role": "user", "content": "q"},
               {"role": "assistant", "content": None,
                "tool_calls": [{"type": "function", "function": {"name": "now", "arguments": "{}"}}]})
    assert out[1]["content"] == [use("call_now_0", "now", {})]


def test_input_not_mutated():
    body = {"model": "m", "stop": "x", "temperature": 2, "reasoning_effort": "high",
            "tools": [WEATHER], "parallel_tool_calls": False,
            "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},
            "messages": [{"role": "system", "content": "s"},
                         {"role": "user", "content": [{"type": "text", "text": "q ",
                                                       "cache_control": {"type": "ephemeral"}}]},
                         {"role": "assistant", "content": "a  ",
                          "tool_calls": [{"id": "c.1", "type": "function",
                                          "function": {"name": "get_weather",
                                                       "arguments": {"city": "X"}}}]},
                         {"role": "tool", "tool_call_id": "c.1", "content": "r"},
                         {"role": "assistant", "content": "prefill   "}]}
    before = copy.deepcopy(body)
    hub = to_hub(body)
    assert body == before
    hub["tools"][0]["input_schema"]["x"] = 1
    hub["messages"][1]["content"][1]["input"]["y"] = 2
    hub["output_config"]["format"]["schema"]["z"] = 3
    hub["messages"][0]["content"][0]["cache_control"]["ttl"] = "1h"
    assert body == before


BAD_REQUESTS = [
    ([], "request body"),
    ({"model": "m"}, "messages"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": "hi"}, "messages"),
    ({"messages": HI}, "model"),
    ({"model": 3, "messages": HI}, "model"),
    ({"model": "m", "messages": HI, "n": 2}, "n > 1 is not supported"),
    ({"model": "m", "messages": ["hi"]}, "messages[0]"),
    ({"model": "m", "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
    ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "m", "messages": [*HI, {"role": "tool", "content": "x"}]}, "messages[1].tool_call_id"),
    ({"model": "m", "messages": [*HI, {"role": "assistant", "tool_calls": [{"function": {}}]}]},
     "messages[1].tool_calls[0].function.name"),
    ({"model": "m", "messages": HI, "max_tokens": 0}, "max_tokens"),
    ({"model": "m", "messages": HI, "max_tokens": "100"}, "max_tokens"),
    ({"model": "m", "messages": HI, "temperature": "hot"}, "temperature"),
    ({"model": "m", "messages": HI, "stream": "yes"}, "stream"),
    ({"model": "m", "messages": HI, "stop": [1]}, "stop"),
    ({"model": "m", "messages": HI, "tools": {"a": 1}}, "tools"),
    ({"model": "m", "messages": HI, "tools": [{"type": "function", "function": {}}]},
     "tools[0].function.name"),
    ({"model": "m", "messages": HI, "tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"model": "m", "messages": HI, "reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"model": "m", "messages": HI, "thinking": "on"}, "thinking"),
    ({"model": "m", "messages": HI, "response_format": {"type": "xml"}}, "response_format"),
    ({"model": "m", "messages": HI, "response_format": {"type": "json_schema"}},
     "response_format.json_schema.schema"),
]


@pytest.mark.parametrize("body,words", BAD_REQUESTS)
def test_bad_requests(body, words):
    with pytest.raises(BadRequest) as info:
        to_hub(body)
    assert words in info.value.message
    assert info.value.status == 400


# ------------------------------------------------------------------------ §4 chat.completion

USAGE = {"input_tokens": 20, "output_tokens": 40, "cache_creation_input_tokens": 3,
         "cache_read_input_tokens": 2}
THINK = {"type": "thinking", "thinking": "Let me think.", "signature": "sig"}
REDACTED = {"type": "redacted_thinking", "data": "xxx"}
SERVER = [{"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
          {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}]


def reply(*content, stop="end_turn", usage=None) -> dict:
    return {"id": "msg_01abc", "type": "message", "role": "assistant", "model": "upstream-name",
            "content": list(content), "stop_reason": stop, "stop_sequence": None,
            "usage": USAGE if usage is None else usage}


def test_completion_envelope():
    out = from_hub(reply(text("Hello")), model="gpt-name", created=1760000000)
    assert out == {
        "id": "chatcmpl-01abc", "object": "chat.completion", "created": 1760000000,
        "model": "gpt-name", "system_fingerprint": None,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 25, "completion_tokens": 40, "total_tokens": 65,
                  "prompt_tokens_details": {"cached_tokens": 2}},
    }


MESSAGE_CASES = [
    ("texts concatenated", [text("Hel"), text("lo")], "reasoning_content",
     {"role": "assistant", "content": "Hello"}),
    ("empty", [], "reasoning_content", {"role": "assistant", "content": ""}),
    ("reasoning_content", [THINK, REDACTED, text("Hi")], "reasoning_content",
     {"role": "assistant", "content": "Hi", "reasoning_content": "Let me think."}),
    ("think_tags", [THINK, text("Hi")], "think_tags",
     {"role": "assistant", "content": "<think>Let me think.</think>Hi"}),
    ("drop", [THINK, text("Hi")], "drop", {"role": "assistant", "content": "Hi"}),
    ("empty thinking is no thinking", [{"type": "thinking", "thinking": "", "signature": "s"},
                                       text("Hi")], "think_tags",
     {"role": "assistant", "content": "Hi"}),
    ("server tools dropped", [*SERVER, text("Found.")], "reasoning_content",
     {"role": "assistant", "content": "Found."}),
    ("tool calls, null content", [use("toolu_1", inp={"city": "Zürich"}), use("toolu_2", "now", {})],
     "reasoning_content",
     {"role": "assistant", "content": None, "tool_calls": [
         {"id": "toolu_1", "type": "function",
          "function": {"name": "get_weather", "arguments": '{"city":"Zürich"}'}},
         {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}]}),
    ("thinking, text and a tool call", [THINK, text("Let me check."), use("toolu_1")],
     "reasoning_content",
     {"role": "assistant", "content": "Let me check.", "reasoning_content": "Let me think.",
      "tool_calls": [{"id": "toolu_1", "type": "function",
                      "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}),
    ("think_tags with only a tool call", [THINK, use("toolu_1", inp={})], "think_tags",
     {"role": "assistant", "content": "<think>Let me think.</think>", "tool_calls": [
         {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}),
]


@pytest.mark.parametrize("label,content,mode,expected", MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES])
def test_completion_message(label, content, mode, expected):
    out = from_hub(reply(*content), model="m", created=1, thinking_output=mode)
    assert out["choices"][0]["message"] == expected


FINISH_CASES = [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"),
    ("pause_turn", "stop"), ("refusal", "content_filter"), (None, "stop"), ("brand_new", "stop"),
]


@pytest.mark.parametrize("stop,expected", FINISH_CASES)
def test_finish_reason(stop, expected):
    assert finish_reason(stop) == expected
    assert from_hub(reply(text("x"), stop=stop), model="m", created=1)["choices"][0]["finish_reason"] \
        == expected


USAGE_CASES = [
    (None, {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
            "prompt_tokens_details": {"cached_tokens": 0}}),
    ({"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": None},
     {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
      "prompt_tokens_details": {"cached_tokens": 0}}),
    (USAGE, {"prompt_tokens": 25, "completion_tokens": 40, "total_tokens": 65,
             "prompt_tokens_details": {"cached_tokens": 2}}),
]


@pytest.mark.parametrize("usage,expected", USAGE_CASES)
def test_usage(usage, expected):
    assert usage_from_hub(usage) == expected


def test_usage_always_present():  # llm fails without it
    msg = reply(text("x"))
    del msg["usage"]
    assert from_hub(msg, model="m", created=1)["usage"]["total_tokens"] == 0


def test_unknown_thinking_output_rejected():
    with pytest.raises(ValueError):
        from_hub(reply(text("x")), model="m", created=1, thinking_output="xml")


def test_protocol_module_is_pure():
    import ast
    import inspect
    for module in (openai, __import__("clewdr_lite.protocol.openai_stream", fromlist=["x"])):
        tree = ast.parse(inspect.getsource(module))
        names = {alias.name.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
        names |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and not node.level}
        assert not names & {"aiohttp", "asyncio", "logging", "time", "tomlkit", "config"}


@pytest.mark.parametrize("field, value", [("role", ["user"]), ("role", {"r": 1}), ("reasoning_effort", ["high"])])
def test_list_or_object_where_a_name_belongs_is_a_bad_request(field, value):
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    if field == "role":
        body["messages"][0]["role"] = value
    else:
        body[field] = value
    with pytest.raises(BadRequest):
        to_hub(body, warn=lambda _: None)
