"""Gemini request normalisation (gemini.md §9.1, §9.2): every rule and the three real-client variants."""

from __future__ import annotations

import copy

import pytest

from clewdr_lite.errors import BadRequest
from clewdr_lite.protocol.gemini import normalize
from clewdr_lite.protocol.gemini_normalize import camel

# §9.2 rule 1, the whole list: snake_case name -> camelCase name
RULE1 = [
    ("system_instruction", "systemInstruction"), ("generation_config", "generationConfig"),
    ("safety_settings", "safetySettings"), ("tool_config", "toolConfig"),
    ("function_calling_config", "functionCallingConfig"),
    ("allowed_function_names", "allowedFunctionNames"),
    ("function_declarations", "functionDeclarations"), ("function_call", "functionCall"),
    ("function_response", "functionResponse"), ("inline_data", "inlineData"),
    ("file_data", "fileData"), ("mime_type", "mimeType"), ("file_uri", "fileUri"),
    ("max_output_tokens", "maxOutputTokens"), ("stop_sequences", "stopSequences"),
    ("candidate_count", "candidateCount"), ("top_p", "topP"), ("top_k", "topK"),
    ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty"),
    ("response_mime_type", "responseMimeType"), ("response_schema", "responseSchema"),
    ("response_json_schema", "responseJsonSchema"), ("response_modalities", "responseModalities"),
    ("thinking_config", "thinkingConfig"), ("include_thoughts", "includeThoughts"),
    ("thinking_budget", "thinkingBudget"), ("thinking_level", "thinkingLevel"),
    ("cached_content", "cachedContent"), ("thought_signature", "thoughtSignature"),
    ("google_search", "googleSearch"), ("code_execution", "codeExecution"),
    ("url_context", "urlContext"),
]


@pytest.mark.parametrize("snake, camel_name", RULE1)
def test_rule1_every_listed_name(snake, camel_name):
    assert camel(snake) == camel_name
    assert normalize({"x": {snake: 1}}) == {"x": {camel_name: 1}}


def test_rule1_nested_protocol_objects():
    body = {"contents": [{"role": "user", "parts": [
        {"inline_data": {"mime_type": "image/png", "data": "AA"}},
        {"file_data": {"file_uri": "https://x/y.png", "mime_type": "image/png"}},
        {"function_call": {"name": "f", "args": {}}, "thought_signature": "sig"}]}],
        "tool_config": {"function_calling_config": {"mode": "ANY",
                                                    "allowed_function_names": ["f"]}}}
    out = normalize(body)
    parts = out["contents"][0]["parts"]
    assert parts[0] == {"inlineData": {"mimeType": "image/png", "data": "AA"}}
    assert parts[1] == {"fileData": {"fileUri": "https://x/y.png", "mimeType": "image/png"}}
    assert parts[2] == {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "sig"}
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY",
                                                           "allowedFunctionNames": ["f"]}}


USER_DATA = [
    # (body, path to the user data, expected value unchanged)
    ({"contents": [{"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"file_path": "a", "nested_obj": {"max_len": 1}}}}]}]},
     ("contents", 0, "parts", 0, "functionCall", "args"), {"file_path": "a", "nested_obj": {"max_len": 1}}),
    ({"contents": [{"role": "user", "parts": [{"function_response": {"name": "f", "response": {"exit_code": 0}}}]}]},
     ("contents", 0, "parts", 0, "functionResponse", "response"), {"exit_code": 0}),
    ({"tools": [{"function_declarations": [{"name": "f", "parameters": {"type": "OBJECT", "properties": {"file_path": {"type": "STRING"}}}}]}]},
     ("tools", 0, "functionDeclarations", 0, "parameters"), {"type": "OBJECT", "properties": {"file_path": {"type": "STRING"}}}),
    ({"tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object", "properties": {"dir_path": {"type": "string"}}, "required": ["dir_path"]}}]}]},
     ("tools", 0, "functionDeclarations", 0, "parametersJsonSchema"), {"type": "object", "properties": {"dir_path": {"type": "string"}}, "required": ["dir_path"]}),
    ({"generation_config": {"response_schema": {"type": "OBJECT", "properties": {"max_score": {"type": "INTEGER"}}}}},
     ("generationConfig", "responseSchema"), {"type": "OBJECT", "properties": {"max_score": {"type": "INTEGER"}}}),
    ({"generationConfig": {"response_json_schema": {"properties": {"complexity_score": {"type": "INTEGER"}}}}},
     ("generationConfig", "responseJsonSchema"), {"properties": {"complexity_score": {"type": "INTEGER"}}}),
    ({"labels": {"team_name": "x"}}, ("labels",), {"team_name": "x"}),
]


@pytest.mark.parametrize("body, path, expected", USER_DATA)
def test_rule2_user_data_untouched(body, path, expected):
    value = normalize(body)
    for step in path:
        value = value[step]
    assert value == expected


def test_rule3_camel_wins_and_warns():
    warnings = []
    out = normalize({"generationConfig": {"max_output_tokens": 5, "maxOutputTokens": 7},
                     "safety_settings": [], "safetySettings": [{"category": "C"}]},
                    warnings.append)
    assert out == {"generationConfig": {"maxOutputTokens": 7}, "safetySettings": [{"category": "C"}]}
    assert len(warnings) == 2 and all("kept" in w for w in warnings)
    # the camel key first: the same result
    out = normalize({"generationConfig": {"maxOutputTokens": 7, "max_output_tokens": 5}})
    assert out == {"generationConfig": {"maxOutputTokens": 7}}


SYSTEMS = [
    ("be brief", {"parts": [{"text": "be brief"}]}),
    ({"parts": [{"text": "a"}, {"text": "b"}]}, {"parts": [{"text": "a"}, {"text": "b"}]}),
    ({"parts": {"text": "st"}}, {"parts": [{"text": "st"}]}),  # SillyTavern
    ({"parts": [{"text": "cli"}], "role": "user"}, {"parts": [{"text": "cli"}]}),  # Gemini CLI, google-genai
    ({"role": "system", "parts": [{"text": "s"}]}, {"parts": [{"text": "s"}]}),
    ({"text": "a bare part"}, {"parts": [{"text": "a bare part"}]}),
    ([{"text": "x"}, "y"], {"parts": [{"text": "x"}, {"text": "y"}]}),
]


@pytest.mark.parametrize("system, expected", SYSTEMS)
def test_rule4_system_instruction_shapes(system, expected):
    assert normalize({"systemInstruction": system})["systemInstruction"] == expected
    assert normalize({"system_instruction": system})["systemInstruction"] == expected


def test_rule4_null_system_removed():
    assert normalize({"systemInstruction": None}) == {}


CONTENTS = [
    ({"role": "user", "parts": {"text": "a"}}, [{"role": "user", "parts": [{"text": "a"}]}]),
    ([{"role": "user", "parts": {"text": "a"}}], [{"role": "user", "parts": [{"text": "a"}]}]),
    ([{"parts": [{"text": "a"}]}], [{"role": "user", "parts": [{"text": "a"}]}]),  # rule 6
    ([{"role": "", "parts": [{"text": "a"}]}], [{"role": "user", "parts": [{"text": "a"}]}]),
    ("hello", [{"role": "user", "parts": [{"text": "hello"}]}]),
    ([{"role": "model", "parts": [{"text": "first"}]}, {"role": "user", "parts": [{"text": "u"}]}],
     [{"role": "model", "parts": [{"text": "first"}]}, {"role": "user", "parts": [{"text": "u"}]}]),  # rule 7
    ([{"role": "user"}], [{"role": "user", "parts": []}]),
]


@pytest.mark.parametrize("contents, expected", CONTENTS)
def test_rules5_to_7_contents_shapes(contents, expected):
    assert normalize({"contents": contents})["contents"] == expected


def test_rule9_ids_and_signatures_kept():
    body = {"contents": [{"role": "model", "parts": [
        {"functionCall": {"id": "read_file_1_0", "name": "read_file", "args": {"p": 1}},
         "thoughtSignature": "skip_thought_signature_validator"}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "read_file_1_0", "name": "read_file",
                                                         "response": {"output": "x"}}}]}]}
    assert normalize(body) == body


def test_rule10_thinking_config_values_kept():
    body = {"generationConfig": {"thinking_config": {"thinking_budget": -1, "thinking_level": "HIGH"}}}
    assert normalize(body)["generationConfig"]["thinkingConfig"] == {"thinkingBudget": -1,
                                                                     "thinkingLevel": "HIGH"}


def test_count_tokens_wrapped_request_is_shaped_too():
    out = normalize({"generate_content_request": {"model": "models/m", "contents": {"parts": {"text": "a"}},
                                                  "system_instruction": "s"}})
    inner = out["generateContentRequest"]
    assert inner["contents"] == [{"role": "user", "parts": [{"text": "a"}]}]
    assert inner["systemInstruction"] == {"parts": [{"text": "s"}]}


def test_input_untouched_idempotent_and_copied():
    body = {"system_instruction": {"parts": {"text": "x"}},
            "contents": [{"parts": [{"functionCall": {"name": "f", "args": {"k": [1]}}}]}]}
    before = copy.deepcopy(body)
    once = normalize(body)
    assert body == before
    assert normalize(once) == once
    once["contents"][0]["parts"][0]["functionCall"]["args"]["k"].append(2)
    assert body == before  # user data is copied, not shared


def test_not_an_object():
    with pytest.raises(BadRequest):
        normalize([1, 2])


# ---------------------------------------------------------------------------- real clients (§9.1)

GOOGLE_GENAI = {
    "contents": [{"role": "user", "parts": [{"text": "What is this?"},
                                            {"inlineData": {"data": "iVBORw0KGgo=", "mime_type": "image/png"}}]}],
    "systemInstruction": {"parts": [{"text": "Be terse."}], "role": "user"},
    "generationConfig": {"thinkingConfig": {"include_thoughts": True, "thinking_budget": 128}},
    "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather",
                                         "parameters": {"type": "OBJECT",
                                                        "properties": {"city": {"type": "STRING"}},
                                                        "required": ["city"]}}]}],
}
SILLYTAVERN = {
    "contents": [{"role": "model", "parts": [{"text": "Greetings, traveller."}]},
                 {"role": "user", "parts": [{"text": "Hello!"}]}],
    "safetySettings": [{"category": c, "threshold": "BLOCK_NONE"} for c in (
        "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_SEXUALLY_EXPLICIT",
        "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_CIVIC_INTEGRITY")],
    "generationConfig": {"stopSequences": ["\nUser:"], "candidateCount": 1, "maxOutputTokens": 300,
                         "temperature": 0.9, "topP": 0.95},
    "system_instruction": {"parts": {"text": "You are a narrator."}},
}
GEMINI_CLI = {
    "contents": [
        {"role": "user", "parts": [{"text": "<session_context>…</session_context>"}, {"text": "read a.txt"}]},
        {"role": "model", "parts": [{"functionCall": {"id": "read_file_1760000000000_0", "name": "read_file",
                                                      "args": {"file_path": "a.txt"}},
                                     "thoughtSignature": "skip_thought_signature_validator"}]},
        {"role": "user", "parts": [{"functionResponse": {"id": "read_file_1760000000000_0", "name": "read_file",
                                                         "response": {"output": "hello"}}}]},
    ],
    "systemInstruction": {"parts": [{"text": "You are Gemini CLI." * 100}], "role": "user"},
    "tools": [{"functionDeclarations": [
        {"name": "read_file", "description": "Reads a file",
         "parametersJsonSchema": {"type": "object", "properties": {"file_path": {"type": "string"}},
                                  "required": ["file_path"]}}]}],
    "generationConfig": {"temperature": 1, "topP": 0.95, "topK": 64,
                         "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 8192}},
}


def test_google_genai_variant():
    out = normalize(GOOGLE_GENAI)
    assert out["contents"][0]["parts"][1] == {"inlineData": {"data": "iVBORw0KGgo=", "mimeType": "image/png"}}
    assert out["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 128}
    assert out["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    # schema types stay upper case until conversion (rule 8)
    assert out["tools"][0]["functionDeclarations"][0]["parameters"]["type"] == "OBJECT"


def test_sillytavern_variant():
    out = normalize(SILLYTAVERN)
    assert out["systemInstruction"] == {"parts": [{"text": "You are a narrator."}]}
    assert "system_instruction" not in out
    assert out["contents"][0]["role"] == "model"  # rule 7: kept; the API path adds a placeholder
    assert out["safetySettings"] == SILLYTAVERN["safetySettings"]


def test_gemini_cli_variant():
    out = normalize(GEMINI_CLI)
    assert out["contents"] == GEMINI_CLI["contents"]
    assert out["tools"] == GEMINI_CLI["tools"]
    assert out["systemInstruction"] == {"parts": GEMINI_CLI["systemInstruction"]["parts"]}
