"""Gemini request → hub request (conversions.md §9.1, §10, §3.3; gemini.md §9, §10.3)."""

from __future__ import annotations

import copy

import pytest

from clewdr_lite.errors import BadRequest
from clewdr_lite.protocol.gemini import count_body_to_hub, json_schema, to_hub, tool_name_map
from clewdr_lite.protocol.openai import JSON_OBJECT_INSTRUCTION, WEB_SEARCH_TOOL

from .test_gemini_normalize import GEMINI_CLI, GOOGLE_GENAI, SILLYTAVERN

HI = [{"role": "user", "parts": [{"text": "Hi there"}]}]


def hub_of(**fields) -> dict:
    return to_hub({"contents": HI, **fields}, model="claude-sonnet-4-5")


def messages(*contents) -> list:
    return to_hub({"contents": list(contents)}, model="m")["messages"]


def user(*parts) -> dict:
    return {"role": "user", "parts": list(parts)}


def model(*parts) -> dict:
    return {"role": "model", "parts": list(parts)}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def call(name="get_weather", args=None, id=None) -> dict:
    fc = {"name": name, "args": {"city": "Paris"} if args is None else args}
    if id is not None:
        fc["id"] = id
    return {"functionCall": fc}


def response(name="get_weather", value=None, id=None) -> dict:
    fr = {"name": name, "response": {"temp": 18} if value is None else value}
    if id is not None:
        fr["id"] = id
    return {"functionResponse": fr}


# ------------------------------------------------------------------------ generationConfig (§9.1)

CONFIG_CASES = [
    # (generationConfig, expected hub subset, hub keys that must be absent)
    (None, {"model": "claude-sonnet-4-5", "max_tokens": 8192},
     ["temperature", "top_p", "top_k", "stop_sequences", "thinking", "output_config", "stream", "system"]),
    ({}, {"max_tokens": 8192}, ["temperature"]),
    ({"maxOutputTokens": 300}, {"max_tokens": 300}, []),
    ({"maxOutputTokens": 300.0}, {"max_tokens": 300}, []),
    ({"temperature": 1.7}, {"temperature": 1}, []),
    ({"temperature": 0.4}, {"temperature": 0.4}, []),
    ({"temperature": -1}, {"temperature": 0}, []),
    ({"topP": 0.95}, {"top_p": 0.95}, []),
    ({"topK": 64}, {"top_k": 64}, []),
    ({"topK": 0}, {}, ["top_k"]),
    ({"stopSequences": ["\nUser:", "END"]}, {"stop_sequences": ["\nUser:", "END"]}, []),
    ({"stopSequences": "END"}, {"stop_sequences": ["END"]}, []),
    ({"stopSequences": []}, {}, ["stop_sequences"]),
    ({"stopSequences": ["", "x"]}, {"stop_sequences": ["x"]}, []),
    ({"candidateCount": 1}, {}, []),
    ({"presencePenalty": 0.5, "frequencyPenalty": 0.5, "seed": 1, "responseModalities": ["TEXT"]}, {},
     ["presencePenalty", "seed"]),
    ({"responseMimeType": "application/json",
      "responseSchema": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER", "nullable": True}}}},
     {"output_config": {"format": {"type": "json_schema", "schema": {
         "type": "object", "properties": {"n": {"type": ["integer", "null"]}}}}}}, []),
    ({"responseMimeType": "application/json",  # Gemini CLI's classifier: upper case in a JSON Schema
      "responseJsonSchema": {"type": "OBJECT", "properties": {"complexity_reasoning": {"type": "STRING"},
                                                              "complexity_score": {"type": "INTEGER"}},
                             "required": ["complexity_reasoning", "complexity_score"]}},
     {"output_config": {"format": {"type": "json_schema", "schema": {
         "type": "object", "properties": {"complexity_reasoning": {"type": "string"},
                                          "complexity_score": {"type": "integer"}},
         "required": ["complexity_reasoning", "complexity_score"]}}}}, []),
    ({"responseMimeType": "application/json"},
     {"system": [{"type": "text", "text": JSON_OBJECT_INSTRUCTION}]}, ["output_config"]),
    ({"responseMimeType": "text/plain", "responseSchema": {"type": "STRING"}}, {}, ["output_config"]),
]


@pytest.mark.parametrize("config, expected, absent", CONFIG_CASES)
def test_generation_config(config, expected, absent):
    hub = hub_of(generationConfig=config) if config is not None else hub_of()
    assert {k: hub.get(k) for k in expected} == expected
    assert not set(absent) & set(hub)


# §10: thinkingConfig → thinking (+ effort)
THINKING_CASES = [
    ({"thinkingBudget": 8192}, {"type": "enabled", "budget_tokens": 8192}, None),
    ({"thinkingBudget": 128}, {"type": "enabled", "budget_tokens": 1024}, None),
    ({"thinkingBudget": 1024}, {"type": "enabled", "budget_tokens": 1024}, None),
    ({"thinkingBudget": -1}, {"type": "adaptive"}, None),
    ({"thinkingBudget": 0}, None, None),
    ({"thinkingBudget": 0, "includeThoughts": True}, None, None),
    ({"thinkingLevel": "LOW"}, {"type": "adaptive"}, "low"),
    ({"thinkingLevel": "HIGH", "includeThoughts": True}, {"type": "adaptive"}, "high"),
    ({"thinkingLevel": "high"}, {"type": "adaptive"}, "high"),
    ({"thinkingLevel": "MEDIUM"}, {"type": "adaptive"}, "medium"),
    ({"thinkingLevel": "MINIMAL"}, {"type": "adaptive"}, "low"),
    ({"includeThoughts": True}, {"type": "adaptive"}, None),
    ({"includeThoughts": False}, None, None),
    ({}, None, None),
]


@pytest.mark.parametrize("config, thinking, effort", THINKING_CASES)
def test_thinking_config(config, thinking, effort):
    hub = hub_of(generationConfig={"thinkingConfig": config})
    assert hub.get("thinking") == thinking
    assert (hub.get("output_config") or {}).get("effort") == effort


BAD_BODIES = [
    ({}, "contents"),
    ({"contents": []}, "contents"),
    ({"contents": [{"role": "user", "parts": [{"text": "  "}]}]}, "no text"),
    ({"contents": [{"role": "robot", "parts": [{"text": "a"}]}]}, "contents[0]"),
    ({"contents": [7]}, "contents[0]"),
    ({"contents": HI, "generationConfig": {"candidateCount": 2}}, "candidateCount"),
    ({"contents": HI, "generationConfig": {"maxOutputTokens": 0}}, "maxOutputTokens"),
    ({"contents": HI, "generationConfig": {"maxOutputTokens": "9"}}, "maxOutputTokens"),
    ({"contents": HI, "generationConfig": {"temperature": "hot"}}, "temperature"),
    ({"contents": HI, "generationConfig": {"stopSequences": [1]}}, "stopSequences"),
    ({"contents": HI, "generationConfig": []}, "generationConfig"),
    ({"contents": HI, "cachedContent": "cachedContents/abc"}, "cachedContent"),
    ({"contents": HI, "tools": "x"}, "tools"),
    ({"contents": HI, "tools": [{"functionDeclarations": [{"description": "no name"}]}]}, "name"),
    ({"contents": [model({"functionCall": {"args": {}}})]}, "functionCall.name"),
]


@pytest.mark.parametrize("body, words", BAD_BODIES)
def test_bad_requests_say_what_is_wrong(body, words):
    with pytest.raises(BadRequest) as info:
        to_hub(body, model="m")
    assert words in info.value.message


def test_stream_and_safety_are_not_copied():
    hub = to_hub({"contents": HI, "safetySettings": [{"category": "X", "threshold": "OFF"}],
                  "labels": {"a": "b"}}, model="m")
    assert set(hub) == {"model", "max_tokens", "messages"}


def test_input_untouched():
    body = copy.deepcopy(GEMINI_CLI)
    to_hub(body, model="m")
    assert body == GEMINI_CLI


# -------------------------------------------------------------------------------- contents (§9.1)

PART_CASES = [
    # (parts of one user content, expected hub blocks)
    ([{"text": "a"}, {"text": "b"}], [text("a"), text("b")]),
    ([{"text": "thinking…", "thought": True}, {"text": "a"}], [text("a")]),
    ([{"text": ""}, {"text": "a"}], [text("a")]),
    ([{"inlineData": {"mimeType": "image/png", "data": "AA"}}],
     [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}]),
    ([{"inlineData": {"mimeType": "image/jpg", "data": "AA"}}],
     [{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AA"}}]),
    ([{"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}}],
     [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}]),
    ([{"inlineData": {"mimeType": "audio/wav", "data": "AA"}}, {"text": "a"}], [text("a")]),
    ([{"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}}],
     [{"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]),
    ([{"fileData": {"fileUri": "http://example.com/cat"}}],
     [{"type": "image", "source": {"type": "url", "url": "http://example.com/cat"}}]),
    ([{"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/a.pdf"}}],
     [{"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}]),
    ([{"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/cat.png"}}, {"text": "a"}], [text("a")]),
    ([{"fileData": {"mimeType": "image/png",
                    "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}}, {"text": "a"}],
     [text("a")]),
    ([{"executableCode": {"language": "PYTHON", "code": "print(1)"}}], [text("```python\nprint(1)\n```")]),
    ([{"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "1\n"}}], [text("1\n")]),
    ([{"thoughtSignature": "abc"}, {"text": "a"}], [text("a")]),
    ([{"videoMetadata": {}}, {"text": "a"}], [text("a")]),
]


@pytest.mark.parametrize("parts, blocks", PART_CASES)
def test_parts(parts, blocks):
    assert messages(user(*parts)) == [{"role": "user", "content": blocks}]


def test_dropped_parts_warn():
    warnings = []
    to_hub({"contents": [user({"fileData": {"mimeType": "image/png", "fileUri": "gs://b/c.png"}},
                              {"inlineData": {"mimeType": "audio/wav", "data": "A"}}, {"text": "a"})],
            "tools": [{"codeExecution": {}}, {"urlContext": {}}]},
           model="m", warn=warnings.append)
    assert len(warnings) == 4
    assert any("gs://b/c.png" in w for w in warnings) and any("audio/wav" in w for w in warnings)


def test_roles_merge_and_leading_model_turn_kept():
    out = messages(model({"text": "Greetings"}), user({"text": "a"}), user({"text": "b"}),
                   {"role": "model", "parts": [{"text": "c"}]}, model({"text": "d "}))
    assert out == [{"role": "assistant", "content": [text("Greetings")]},
                   {"role": "user", "content": [text("a"), text("b")]},
                   # the final model turn is a prefill: trailing whitespace goes
                   {"role": "assistant", "content": [text("c"), text("d")]}]


def test_empty_contents_are_skipped_before_merging():
    out = messages(user({"text": "a"}), model({"text": "  "}), user({"text": "b"}))
    assert out == [{"role": "user", "content": [text("a"), text("b")]}]


def test_function_role_is_user():
    out = messages(user({"text": "q"}), model(call(id="c1")),
                   {"role": "function", "parts": [response(id="c1")]})
    assert out[-1]["role"] == "user" and out[-1]["content"][0]["tool_use_id"] == "c1"


# ------------------------------------------------------------------------ function calls (§9.1)

def tool_use(id, name="get_weather", input=None) -> dict:
    return {"type": "tool_use", "id": id, "name": name, "input": {"city": "Paris"} if input is None else input}


def tool_result(id, content='{"temp":18}', **extra) -> dict:
    return {"type": "tool_result", "tool_use_id": id, "content": content, **extra}


def test_call_ids_kept_and_results_matched_by_id():
    out = messages(user({"text": "q"}),
                   model(call(id="a_1"), call(name="read_file", args={"p": "x"}, id="b_2")),
                   user(response(name="read_file", value={"output": "data"}, id="b_2"), response(id="a_1")))
    assert out[1] == {"role": "assistant",
                      "content": [tool_use("a_1"), tool_use("b_2", "read_file", {"p": "x"})]}
    assert out[2] == {"role": "user", "content": [tool_result("b_2", "data"), tool_result("a_1")]}


def test_calls_without_ids_generated_and_matched_by_name_in_order():
    out = messages(user({"text": "q"}),
                   model(call(args={"city": "A"}), call(args={"city": "B"}), call(name="other", args={})),
                   user(response(name="other", value={"r": 0}), response(value={"r": 1}),
                        response(value={"r": 2})),
                   model(call(args={"city": "C"})), user(response(value={"r": 3})))
    assert [b["id"] for b in out[1]["content"]] == ["toolu_get_weather_0", "toolu_get_weather_1",
                                                    "toolu_other_0"]
    assert [(b["tool_use_id"], b["content"]) for b in out[2]["content"]] == [
        ("toolu_other_0", '{"r":0}'), ("toolu_get_weather_0", '{"r":1}'), ("toolu_get_weather_1", '{"r":2}')]
    assert out[3]["content"][0]["id"] == "toolu_get_weather_2"
    assert out[4]["content"][0]["tool_use_id"] == "toolu_get_weather_2"


def test_response_with_unknown_id_falls_back_to_name():
    out = messages(user({"text": "q"}), model(call(id="real")), user(response(id="stale")))
    assert out[2]["content"] == [tool_result("real")]


RESPONSE_CONTENT = [
    ({"output": "hello\nworld"}, {"content": "hello\nworld"}),  # Gemini CLI: unwrapped, readable
    ({"error": "no such file"}, {"content": "no such file", "is_error": True}),
    ({"output": {"a": 1}}, {"content": '{"output":{"a":1}}'}),
    ({"result": "x", "n": 1}, {"content": '{"result":"x","n":1}'}),
    ({"text": "naïve"}, {"content": '{"text":"naïve"}'}),
    ({}, {"content": "{}"}),
    (None, {}),
]


@pytest.mark.parametrize("value, fields", RESPONSE_CONTENT)
def test_function_response_content(value, fields):
    fr = {"name": "f", "id": "c"}
    if value is not None:
        fr["response"] = value
    out = messages(user({"text": "q"}), model(call(name="f", args={}, id="c")),
                   user({"functionResponse": fr}))
    assert out[2]["content"] == [{"type": "tool_result", "tool_use_id": "c", **fields}]


def test_unpaired_calls_and_results_become_text():
    out = messages(user(response(id="orphan")), model(call(id="c1")), user({"text": "never answered"}))
    assert out[0]["content"] == [text('[Tool result id=orphan] {"temp":18}')]
    assert out[1]["content"] == [text('[Tool call get_weather] {"city":"Paris"}')]


def test_final_unanswered_call_is_kept():
    out = messages(user({"text": "q"}), model(call(id="c1")))
    assert out[-1]["content"] == [tool_use("c1")]


def test_tool_results_first_in_user_turn():
    out = messages(user({"text": "q"}), model(call(id="c1")), user({"text": "and"}, response(id="c1")))
    assert [b["type"] for b in out[2]["content"]] == ["tool_result", "text"]


def test_unsafe_ids_and_names_sanitised_consistently():
    out = messages(user({"text": "q"}), model(call(name="mcp.fs:read", args={}, id="id.1")),
                   user(response(name="mcp.fs:read", value={"output": "x"}, id="id.1")))
    assert out[1]["content"] == [tool_use("id_1", "mcp_fs_read", {})]
    assert out[2]["content"] == [tool_result("id_1", "x")]


# ------------------------------------------------------------------------------- system, tools

def test_system_instruction():
    hub = hub_of(systemInstruction={"parts": [{"text": "a"}, {"text": " "}, {"text": "b"}]})
    assert hub["system"] == [text("a"), text("b")]
    assert "system" not in hub_of(systemInstruction={"parts": []})


DECLARATION_CASES = [
    ({"name": "f", "description": "d",
      "parameters": {"type": "OBJECT", "properties": {
          "s": {"type": "STRING", "nullable": True, "enum": ["a", "b"], "format": "enum"},
          "l": {"type": "ARRAY", "items": {"type": "NUMBER"}},
          "o": {"type": "OBJECT", "properties": {"type": {"type": "BOOLEAN"}}},
          "u": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]}},
          "required": ["s"], "propertyOrdering": ["s", "l"]}},
     {"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {
         "s": {"type": ["string", "null"], "enum": ["a", "b"], "format": "enum"},
         "l": {"type": "array", "items": {"type": "number"}},
         "o": {"type": "object", "properties": {"type": {"type": "boolean"}}},
         "u": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
         "required": ["s"], "propertyOrdering": ["s", "l"]}}),
    ({"name": "g", "parametersJsonSchema": {"type": "object", "properties": {"p": {"type": "string"}},
                                            "additionalProperties": False, "$schema": "x"}},
     {"name": "g", "input_schema": {"type": "object", "properties": {"p": {"type": "string"}},
                                    "additionalProperties": False, "$schema": "x"}}),
    ({"name": "h"}, {"name": "h", "input_schema": {"type": "object", "properties": {}}}),
    ({"name": "h", "parameters": {"properties": {}}},
     {"name": "h", "input_schema": {"properties": {}, "type": "object"}}),
    ({"name": "my.tool", "description": ""}, {"name": "my_tool", "input_schema": {"type": "object", "properties": {}}}),
]


@pytest.mark.parametrize("decl, tool", DECLARATION_CASES)
def test_function_declarations(decl, tool):
    assert hub_of(tools=[{"functionDeclarations": [decl]}])["tools"] == [tool]


def test_json_schema_nullable_and_lists():
    assert json_schema({"type": ["STRING", "NULL"], "nullable": True}) == {"type": ["string", "null"]}
    assert json_schema({"nullable": True, "description": "x"}) == {"description": "x"}
    assert json_schema({"type": "NULL", "nullable": True}) == {"type": "null"}
    assert json_schema({"items": [{"type": "STRING"}]}) == {"items": [{"type": "string"}]}


def test_tools_across_entries_search_and_drops():
    hub = hub_of(tools=[{"functionDeclarations": [{"name": "a"}, {"name": "b"}]},
                        {"googleSearch": {}}, {"functionDeclarations": [{"name": "c"}]},
                        {"codeExecution": {}}, {"googleSearchRetrieval": {}}])
    assert [t["name"] for t in hub["tools"]] == ["a", "b", "c", "web_search"]
    assert hub["tools"][-1] == WEB_SEARCH_TOOL


def test_only_dropped_tools_leave_no_tools_and_no_choice():
    hub = hub_of(tools=[{"codeExecution": {}}], toolConfig={"functionCallingConfig": {"mode": "ANY"}})
    assert "tools" not in hub and "tool_choice" not in hub


TOOL_CHOICES = [
    ({"mode": "AUTO"}, {"type": "auto"}),
    ({"mode": "NONE"}, {"type": "none"}),
    ({"mode": "ANY"}, {"type": "any"}),
    ({"mode": "any"}, {"type": "any"}),
    ({"mode": "ANY", "allowedFunctionNames": ["f"]}, {"type": "tool", "name": "f"}),
    ({"mode": "ANY", "allowedFunctionNames": ["f", "g"]}, {"type": "any"}),
    ({"mode": "VALIDATED"}, {"type": "auto"}),
    ({"mode": "MODE_UNSPECIFIED"}, None),
    ({}, None),
]


@pytest.mark.parametrize("config, choice", TOOL_CHOICES)
def test_tool_config(config, choice):
    hub = hub_of(tools=[{"functionDeclarations": [{"name": "f"}, {"name": "g"}]}],
                 toolConfig={"functionCallingConfig": config})
    assert hub.get("tool_choice") == choice


def test_tool_name_map():
    body = {"tools": [{"function_declarations": [{"name": "mcp.fs:read"}, {"name": "plain"}]}]}
    assert tool_name_map(body) == {"mcp_fs_read": "mcp.fs:read"}
    assert tool_name_map({}) == {}


# --------------------------------------------------------------------------------- real clients

def test_google_genai_request():
    hub = to_hub(GOOGLE_GENAI, model="claude-x")
    assert hub["system"] == [text("Be terse.")]
    assert hub["messages"][0]["content"][1]["source"] == {"type": "base64", "media_type": "image/png",
                                                          "data": "iVBORw0KGgo="}
    assert hub["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert hub["tools"][0]["input_schema"] == {"type": "object", "properties": {"city": {"type": "string"}},
                                               "required": ["city"]}


def test_sillytavern_request():
    hub = to_hub(SILLYTAVERN, model="claude-x")
    assert hub["system"] == [text("You are a narrator.")]
    # the leading model turn is kept; the first-user placeholder is the API path's job
    assert [m["role"] for m in hub["messages"]] == ["assistant", "user"]
    assert hub["stop_sequences"] == ["\nUser:"] and hub["max_tokens"] == 300
    assert hub["temperature"] == 0.9 and hub["top_p"] == 0.95


def test_gemini_cli_request():
    hub = to_hub(GEMINI_CLI, model="claude-x")
    assert hub["messages"][1] == {"role": "assistant", "content": [
        tool_use("read_file_1760000000000_0", "read_file", {"file_path": "a.txt"})]}
    assert hub["messages"][2] == {"role": "user", "content": [tool_result("read_file_1760000000000_0", "hello")]}
    assert hub["tools"][0]["input_schema"] == GEMINI_CLI["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"]
    assert hub["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert hub["top_k"] == 64 and hub["temperature"] == 1


# ------------------------------------------------------------------------------ countTokens (§10.3)

def test_count_body_forms():
    plain = count_body_to_hub({"contents": HI}, model="m")
    wrapped = count_body_to_hub({"generateContentRequest": {"model": "models/m", "contents": HI,
                                                            "generationConfig": {"candidateCount": 4}}},
                                model="m")
    snake = count_body_to_hub({"generate_content_request": {"contents": HI,
                                                            "system_instruction": "s"}}, model="m")
    assert plain["messages"] == wrapped["messages"] == snake["messages"]
    assert snake["system"] == [text("s")]
    with pytest.raises(BadRequest):
        count_body_to_hub({}, model="m")
