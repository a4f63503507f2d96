"""Hub → OpenAI-compatible upstream requests (conversions.md §6, §10, §11; gateway.md §2.4, §2.5; CCR pitfalls §15)."""

from __future__ import annotations

import copy
import json

import pytest

from clewdr_lite.protocol.openai_upstream import EXIT_TOOL, hub_to_openai
from clewdr_lite.protocol.openai_upstream_stream import QUIRK_DEFAULTS
from clewdr_lite.providers import QUIRK_DEFAULTS as PROVIDER_DEFAULTS
from clewdr_lite.providers import parse_providers, quirks_for

CC = {"type": "ephemeral"}
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBO"}
PDF = {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}


def req(*messages, **fields) -> dict:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1000,
            "messages": list(messages) or [{"role": "user", "content": "Hi"}], **fields}


def text(value: str, **extra) -> dict:
    return {"type": "text", "text": value, **extra}


def convert(request: dict, warnings: list | None = None, **quirks) -> dict:
    sink = warnings if warnings is not None else []
    return hub_to_openai(request, model="up-model", quirks=quirks, warn=sink.append)


def test_quirk_defaults_agree_with_the_provider_table():
    for name, value in QUIRK_DEFAULTS.items():
        assert PROVIDER_DEFAULTS[name] == value, name


def test_minimal_request_names_the_upstream_model():
    original = req()
    snapshot = copy.deepcopy(original)
    assert convert(original) == {"model": "up-model", "max_tokens": 1000,
                                 "messages": [{"role": "user", "content": "Hi"}]}
    assert original == snapshot  # the hub request is not modified


# ------------------------------------------------------------------------------------- system (§6)

SYSTEM_CASES = [
    # (system, quirks, expected leading messages)
    ("be brief", {}, [{"role": "system", "content": "be brief"}]),
    ([text("a"), text(" "), text("b")], {}, [{"role": "system", "content": "a\n\nb"}]),
    ([text("a", cache_control=CC), text("b")], {}, [{"role": "system", "content": "a\n\nb"}]),
    ([text("a", cache_control=CC), text("b")], {"keep_cache_control": True},
     [{"role": "system", "content": [text("a", cache_control=CC), text("b")]}]),
    ([text("a"), text("b")], {"keep_cache_control": True}, [{"role": "system", "content": "a\n\nb"}]),
    ([], {}, []),
    ("", {}, []),
]


@pytest.mark.parametrize("system, quirks, expected", SYSTEM_CASES)
def test_system(system, quirks, expected):
    body = convert(req(system=system), **quirks)
    assert body["messages"][:-1] == expected


def test_system_messages_stay_in_place():
    body = convert(req({"role": "user", "content": "q"},
                       {"role": "system", "content": [text("mid"), text("dle")]},
                       {"role": "assistant", "content": "a"}, {"role": "system", "content": "late"},
                       system="top"))
    assert body["messages"] == [{"role": "system", "content": "top"}, {"role": "user", "content": "q"},
                                {"role": "system", "content": "mid\n\ndle"},
                                {"role": "assistant", "content": "a"},
                                {"role": "system", "content": "late"}]


# ---------------------------------------------------------------------------------- user (§6, §11)

USER_CASES = [
    # (hub user content, quirks, expected OpenAI messages)
    ("plain", {}, [{"role": "user", "content": "plain"}]),
    ([text("one")], {}, [{"role": "user", "content": "one"}]),
    ([text("a"), text("b")], {}, [{"role": "user", "content": [text("a"), text("b")]}]),
    ([{"type": "image", "source": PNG}, text("what?")], {},
     [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                                   text("what?")]}]),
    ([{"type": "image", "source": {"type": "url", "url": "https://x.test/cat.png"}}], {},
     [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}]}]),
    # documents are kept (CCR pitfall 10)
    ([{"type": "document", "source": PDF}, text("sum up")], {},
     [{"role": "user", "content": [{"type": "file", "file": {"filename": "document.pdf",
                                                             "file_data": "data:application/pdf;base64,JVBE"}},
                                   text("sum up")]}]),
    ([{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}},
      text("q")], {}, [{"role": "user", "content": [text("doc"), text("q")]}]),
    ([{"type": "document", "source": {"type": "content", "content": [text("c1")]}}], {},
     [{"role": "user", "content": "c1"}]),
    # quirk image_url_only: data URLs dropped, URLs kept
    ([{"type": "image", "source": PNG}, {"type": "document", "source": PDF},
      {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}, text("q")],
     {"image_url_only": True},
     [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                                   text("q")]}]),
    # cache_control removed unless kept
    ([text("a", cache_control=CC), {"type": "image", "source": PNG, "cache_control": CC}], {},
     [{"role": "user", "content": [text("a"), {"type": "image_url",
                                               "image_url": {"url": "data:image/png;base64,iVBO"}}]}]),
    ([text("a", cache_control=CC)], {"keep_cache_control": True},
     [{"role": "user", "content": [text("a", cache_control=CC)]}]),
    ([{"type": "search_result", "title": "T", "source": "https://s.test", "content": [text("body")]}], {},
     [{"role": "user", "content": "T https://s.test\nbody"}]),
    ([{"type": "image", "source": {"type": "file", "file_id": "f1"}}, text("q")], {},
     [{"role": "user", "content": "q"}]),
    ([{"type": "thinking", "thinking": "t", "signature": "s"}], {}, []),
]


@pytest.mark.parametrize("content, quirks, expected", USER_CASES)
def test_user_content(content, quirks, expected):
    body = convert(req({"role": "user", "content": content}), **quirks)
    assert body["messages"] == expected


def test_dropped_blocks_are_reported():
    warnings: list = []
    convert(req({"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}},
                                             {"type": "container_upload", "file_id": "f"}, text("q")]}),
            warnings)
    assert any("file source" in w for w in warnings) and any("container_upload" in w for w in warnings)


def call(call_id: str, name: str, args: dict) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args, separators=(",", ":"))}}


TOOL_HISTORY = [
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": [text("Checking."), {"type": "tool_use", "id": "toolu_1", "name": "get",
                                                          "input": {"city": "Paris"}},
                                      {"type": "tool_use", "id": "toolu_2", "name": "snap", "input": {}}]},
]

TOOL_RESULT_CASES = [
    # (tool results + user blocks, expected messages after the assistant turn)
    ([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
      {"type": "tool_result", "tool_use_id": "toolu_2", "content": [text("shot"), {"type": "image", "source": PNG}]},
      text("thanks")],
     [{"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
      {"role": "tool", "tool_call_id": "toolu_2", "content": "shot"},
      {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                                   text("thanks")]}]),
    # the user's text comes first in the hub message: tool messages still go first
    ([text("also"), {"type": "tool_result", "tool_use_id": "toolu_1", "content": "x", "is_error": True},
      {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True}],
     [{"role": "tool", "tool_call_id": "toolu_1", "content": "Error: x"},
      {"role": "tool", "tool_call_id": "toolu_2", "content": "Error"},
      {"role": "user", "content": "also"}]),
    ([{"type": "tool_result", "tool_use_id": "toolu_1", "content": [text("a"), text("b")]},
      {"type": "tool_result", "tool_use_id": "toolu_2", "content": []}],
     [{"role": "tool", "tool_call_id": "toolu_1", "content": "a\nb"},
      {"role": "tool", "tool_call_id": "toolu_2", "content": ""}]),
    # images in a result, no user text: an extra user message of its own (not JSON text: CCR pitfall 11)
    ([{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "image", "source": PNG}]},
      {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "document", "source": PDF}]}],
     [{"role": "tool", "tool_call_id": "toolu_1", "content": ""},
      {"role": "tool", "tool_call_id": "toolu_2", "content": ""},
      {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
                                   {"type": "file", "file": {"filename": "document.pdf",
                                                             "file_data": "data:application/pdf;base64,JVBE"}}]}]),
]


@pytest.mark.parametrize("blocks, expected", TOOL_RESULT_CASES)
def test_tool_results(blocks, expected):
    body = convert(req(*TOOL_HISTORY, {"role": "user", "content": blocks}))
    assert body["messages"][1] == {"role": "assistant", "content": "Checking.",
                                   "tool_calls": [call("toolu_1", "get", {"city": "Paris"}),
                                                  call("toolu_2", "snap", {})]}
    assert body["messages"][2:] == expected


ASSISTANT_CASES = [
    # (assistant content, quirks, expected message or None)
    ("prefill", {}, {"role": "assistant", "content": "prefill"}),
    ([text("a"), text("b")], {}, {"role": "assistant", "content": "ab"}),
    ([{"type": "tool_use", "id": "t", "name": "f", "input": {"q": "é"}}], {},
     {"role": "assistant", "content": None,
      "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": '{"q":"é"}'}}]}),
    ([{"type": "thinking", "thinking": "hm", "signature": "clewdr-lite:00"},
      {"type": "redacted_thinking", "data": "x"}, text("ok")], {}, {"role": "assistant", "content": "ok"}),
    ([{"type": "thinking", "thinking": "hm", "signature": "s"}, text("ok")], {"send_reasoning_back": True},
     {"role": "assistant", "content": "ok", "reasoning_content": "hm"}),
    ([{"type": "thinking", "thinking": "hm", "signature": "s"}], {}, None),
    ([{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
      {"type": "web_search_tool_result", "tool_use_id": "s", "content": []}, text("found")], {},
     {"role": "assistant", "content": "found"}),
    ([text("a", cache_control=CC)], {"keep_cache_control": True},
     {"role": "assistant", "content": [text("a", cache_control=CC)]}),
]


@pytest.mark.parametrize("content, quirks, expected", ASSISTANT_CASES)
def test_assistant(content, quirks, expected):
    body = convert(req({"role": "user", "content": "q"}, {"role": "assistant", "content": content}), **quirks)
    assert body["messages"][1:] == ([expected] if expected else [])


# -------------------------------------------------------------------------- generation fields (§6)

FIELD_CASES = [
    # (hub fields, quirks, expected body fields (None = absent))
    ({"max_tokens": 20000}, {}, {"max_tokens": 20000}),
    ({"max_tokens": 20000}, {"max_tokens_field": "max_completion_tokens"},
     {"max_completion_tokens": 20000, "max_tokens": None}),
    ({"max_tokens": 20000}, {"max_tokens_cap": 8192}, {"max_tokens": 8192}),
    ({"max_tokens": 100}, {"max_tokens_cap": 8192}, {"max_tokens": 100}),
    ({"temperature": 0.3, "top_p": 0.9}, {}, {"temperature": 0.3, "top_p": 0.9}),  # CCR pitfall 10
    ({"temperature": 0}, {}, {"temperature": 0}),
    ({"top_k": 40}, {}, {"top_k": None}),
    ({"top_k": 40}, {"supports_top_k": True}, {"top_k": 40}),
    ({"stop_sequences": ["a", "b"]}, {}, {"stop": ["a", "b"]}),
    ({"stop_sequences": ["1", "2", "3", "4", "5", "6"]}, {}, {"stop": ["1", "2", "3", "4"]}),
    ({"stop_sequences": ["1", "2", "3"]}, {"max_stop_sequences": 2}, {"stop": ["1", "2"]}),
    ({"stop_sequences": ["1", "2", "3", "4", "5"]}, {"max_stop_sequences": 0},
     {"stop": ["1", "2", "3", "4", "5"]}),
    ({"stop_sequences": []}, {}, {"stop": None}),
    ({"stream": True}, {}, {"stream": True, "stream_options": {"include_usage": True}}),
    ({"stream": True}, {"stream_usage": False}, {"stream": True, "stream_options": None}),
    ({"stream": False}, {}, {"stream": None, "stream_options": None}),
    ({"metadata": {"user_id": "u-1"}}, {}, {"user": "u-1", "metadata": None}),
    ({"metadata": {}}, {}, {"user": None, "metadata": None}),
    ({"output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}, {},
     {"response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"},
                                                                 "strict": True}}, "output_config": None}),
    ({"output_format": {"type": "json_schema", "schema": {"type": "array"}}}, {},
     {"response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "array"},
                                                                 "strict": True}}}),
    ({"context_management": {"edits": []}, "container": "c", "mcp_servers": [], "service_tier": "auto",
      "cache_control": CC}, {},
     {"context_management": None, "container": None, "mcp_servers": None, "service_tier": None,
      "cache_control": None}),
]


@pytest.mark.parametrize("fields, quirks, expected", FIELD_CASES)
def test_fields(fields, quirks, expected):
    body = convert(req(**fields), **quirks)
    for key, value in expected.items():
        assert body.get(key) == value, key


def test_dropped_fields_and_stops_are_reported():
    warnings: list = []
    convert(req(service_tier="auto", top_k=3, stop_sequences=list("abcde")), warnings)
    assert any("service_tier" in w for w in warnings)
    assert any("top_k" in w for w in warnings)
    assert any("1 stop sequences" in w for w in warnings)


# ------------------------------------------------------------------------------------ tools (§6)

WEATHER = {"name": "get_weather", "description": "Weather now",
           "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                            "properties": {"city": {"type": "string"},
                                           "additionalProperties": {"type": "object", "additionalProperties": False},
                                           "mode": {"enum": [{"$schema": "data"}], "default": {"$schema": "x"}}},
                            "additionalProperties": False, "required": ["city"]}}


def test_tools_become_functions():
    body = convert(req(tools=[WEATHER, {"name": "noargs"}, {"type": "custom", "name": "c", "strict": True,
                                                            "input_schema": {"type": "object"}}]))
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                          "parameters": WEATHER["input_schema"]}},
        {"type": "function", "function": {"name": "noargs", "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "c", "parameters": {"type": "object"}, "strict": True}},
    ]


def test_strip_schema_keys_at_every_depth_but_not_property_names_or_data():
    body = convert(req(tools=[WEATHER]), strip_schema_keys=("$schema", "additionalProperties"))
    assert body["tools"][0]["function"]["parameters"] == {
        "type": "object", "required": ["city"],
        "properties": {"city": {"type": "string"}, "additionalProperties": {"type": "object"},
                       "mode": {"enum": [{"$schema": "data"}], "default": {"$schema": "x"}}}}
    assert "$schema" in WEATHER["input_schema"]  # the hub tool is untouched


def test_server_tools_dropped():
    warnings: list = []
    body = convert(req(tools=[{"type": "web_search_20250305", "name": "web_search"},
                              {"type": "bash_20250124", "name": "bash"}],
                       tool_choice={"type": "any"}), warnings)
    assert "tools" not in body and "tool_choice" not in body
    assert len(warnings) == 2


TOOL_CHOICE_CASES = [
    # (hub tool_choice, expected tool_choice, expected parallel_tool_calls) — CCR pitfall 7: never "any"
    ({"type": "auto"}, "auto", None),
    ({"type": "any"}, "required", None),
    ({"type": "none"}, "none", None),
    ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}, None),
    ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),  # CCR pitfall 10
    ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
    ({"type": "auto", "disable_parallel_tool_use": False}, "auto", None),
    (None, None, None),
]


@pytest.mark.parametrize("choice, expected, parallel", TOOL_CHOICE_CASES)
def test_tool_choice(choice, expected, parallel):
    fields = {"tools": [WEATHER]}
    if choice is not None:
        fields["tool_choice"] = choice
    body = convert(req(**fields))
    assert body.get("tool_choice") == expected
    assert body.get("parallel_tool_calls") == parallel


def test_force_tool_mode():
    body = convert(req(tools=[WEATHER], system="sys"), force_tool_mode=True)
    assert body["tool_choice"] == "required"
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", EXIT_TOOL]
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][0]["content"].startswith("sys\n\n<system-reminder>Tool mode is active")
    named = convert(req(tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"}),
                    force_tool_mode=True)
    assert named["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert named["messages"][0]["role"] == "system"
    for fields in ({"tools": [WEATHER], "tool_choice": {"type": "none"}}, {}):  # nothing to force
        plain = convert(req(**fields), force_tool_mode=True)
        assert all(t["function"]["name"] != EXIT_TOOL for t in plain.get("tools", []))
        assert plain["messages"][0]["role"] == "user"


# -------------------------------------------------------------------------------- reasoning (§10)

ENABLED_1K = {"type": "enabled", "budget_tokens": 1024}
REASONING_CASES = [
    # (thinking, output_config, reasoning_request, expected extra body fields)
    (ENABLED_1K, None, "effort", {"reasoning_effort": "low"}),
    ({"type": "enabled", "budget_tokens": 4095}, None, "effort", {"reasoning_effort": "low"}),
    ({"type": "enabled", "budget_tokens": 4096}, None, "effort", {"reasoning_effort": "medium"}),
    ({"type": "enabled", "budget_tokens": 16383}, None, "effort", {"reasoning_effort": "medium"}),
    ({"type": "enabled", "budget_tokens": 16384}, None, "effort", {"reasoning_effort": "high"}),
    ({"type": "adaptive"}, None, "effort", {"reasoning_effort": "medium"}),
    ({"type": "adaptive"}, {"effort": "low"}, "effort", {"reasoning_effort": "low"}),
    ({"type": "adaptive"}, {"effort": "xhigh"}, "effort", {"reasoning_effort": "high"}),
    ({"type": "adaptive"}, {"effort": "max"}, "effort", {"reasoning_effort": "high"}),
    ({"type": "enabled", "budget_tokens": 5000}, None, "openrouter", {"reasoning": {"max_tokens": 5000}}),
    ({"type": "adaptive"}, {"effort": "high"}, "openrouter", {"reasoning": {"effort": "high"}}),
    (ENABLED_1K, None, "enable_thinking", {"enable_thinking": True}),
    ({"type": "adaptive"}, None, "enable_thinking", {"enable_thinking": True}),
    (ENABLED_1K, None, "none", {}),
    ({"type": "disabled"}, {"effort": "high"}, "effort", {}),
    ({"type": "disabled"}, None, "openrouter", {}),
    (None, {"effort": "high"}, "effort", {}),
]
REASONING_KEYS = ("reasoning_effort", "reasoning", "enable_thinking", "thinking", "output_config")


@pytest.mark.parametrize("thinking, output, mode, expected", REASONING_CASES)
def test_reasoning_request(thinking, output, mode, expected):
    fields = {}
    if thinking is not None:
        fields["thinking"] = thinking
    if output is not None:
        fields["output_config"] = output
    body = convert(req(**fields), reasoning_request=mode)
    assert {k: body[k] for k in REASONING_KEYS if k in body} == expected


# --------------------------------------------------------------------------- drop_params, extra_body


def test_drop_params_and_extra_body():
    body = convert(req(temperature=0.5, stream=True),
                   drop_params=("temperature", "stream_options"),
                   extra_body={"provider": {"only": ["a"]}, "stream_options": {"x": 1}})
    assert "temperature" not in body
    assert body["provider"] == {"only": ["a"]}
    assert body["stream_options"] == {"x": 1}
    merged = convert(req(stream=True), extra_body={"stream_options": {"extra": True}})
    assert merged["stream_options"] == {"include_usage": True, "extra": True}


# ------------------------------------------------------------------------------- presets (§2.5)


def preset_quirks(preset: str, model: str, **quirks) -> dict:
    entry = {"name": "p", "preset": preset, "quirks": quirks}
    provider = parse_providers({"providers": [entry]}, warn=pytest.fail)[-1]
    return quirks_for(provider, model)


def test_presets_shape_the_body():
    thinking = {"type": "enabled", "budget_tokens": 20000}
    cached = req({"role": "user", "content": [text("q", cache_control=CC)]}, max_tokens=20000,
                 thinking=thinking, stream=True)
    openai = hub_to_openai(cached, model="gpt-5", quirks=preset_quirks("openai", "gpt-5"))
    assert openai["max_completion_tokens"] == 20000 and openai["reasoning_effort"] == "high"
    assert openai["messages"] == [{"role": "user", "content": "q"}]
    router = hub_to_openai(cached, model="anthropic/claude-sonnet-4.5",
                           quirks=preset_quirks("openrouter", "anthropic/claude-sonnet-4.5"))
    assert router["reasoning"] == {"max_tokens": 20000}
    assert router["messages"] == [{"role": "user", "content": [text("q", cache_control=CC)]}]
    other = hub_to_openai(cached, model="openai/gpt-4o", quirks=preset_quirks("openrouter", "openai/gpt-4o"))
    assert other["messages"] == [{"role": "user", "content": "q"}]
    deepseek = hub_to_openai(cached, model="deepseek-chat", quirks=preset_quirks("deepseek", "deepseek-chat"))
    assert deepseek["max_tokens"] == 8192
    ollama = hub_to_openai(req(top_k=20), model="llama3", quirks=preset_quirks("ollama", "llama3"))
    assert ollama["top_k"] == 20
    groq = hub_to_openai(req(tools=[WEATHER]), model="m", quirks=preset_quirks("groq", "m"))
    assert "$schema" not in groq["tools"][0]["function"]["parameters"]
