"""Hub rules: validation, model rules (claude-code.md §7), Hi, thinking hygiene, aggregation."""

from __future__ import annotations

import copy

import pytest

from clewdr_lite.errors import BadRequest
from clewdr_lite.protocol import anthropic as an
from clewdr_lite.protocol import model_rules as mr

ADAPTIVE = {"type": "adaptive", "display": "summarized"}
EXTENDED = {"type": "enabled", "budget_tokens": 4096}
ALL_EFFORTS = ("low", "medium", "high", "xhigh", "max")


def req(model="claude-sonnet-4-5", **extra):
    body = {"model": model, "max_tokens": 32000, "messages": [{"role": "user", "content": "hi"}]}
    body.update(extra)
    return body


# ---------------------------------------------------------------- validate

@pytest.mark.parametrize("body, field", [
    ([], "JSON object"),
    ("text", "JSON object"),
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": 3, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "m"}, "messages"),
    ({"model": "m", "messages": {}}, "messages"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": ["hi"]}, "messages.0"),
    ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    ({"model": "m", "messages": [{"content": "x"}]}, "messages.0.role"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"},
                                 {"role": "user", "content": 5}]}, "messages.1.content"),
    ({"model": "m", "messages": [{"role": "user"}]}, "messages.0.content"),
    ({"model": "m", "messages": [{"role": "user", "content": ["x"]}]}, "messages.0.content.0"),
    (req(max_tokens="100"), "max_tokens"),
    (req(max_tokens=1.5), "max_tokens"),
    (req(max_tokens=True), "max_tokens"),
    (req(max_tokens=0), "max_tokens"),
    (req(stream="yes"), "stream"),
    (req(stream=1), "stream"),
    (req(stop_sequences="END"), "stop_sequences"),
    (req(stop_sequences=["END", 3]), "stop_sequences"),
    (req(system=5), "system"),
])
def test_validate_rejects(body, field):
    with pytest.raises(BadRequest) as info:
        an.validate(body)
    assert field in info.value.message
    assert info.value.status == 400


def test_validate_defaults_and_normalises():
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "top_k": 0,
            "stream": None, "stop_sequences": None, "x_unknown": {"a": 1}}
    out = an.validate(body)
    assert out["max_tokens"] == an.DEFAULT_MAX_TOKENS == 8192
    assert "top_k" not in out and "stream" not in out and "stop_sequences" not in out
    assert out["x_unknown"] == {"a": 1}
    assert body["top_k"] == 0  # the input is not touched


@pytest.mark.parametrize("extra, key, expected", [
    ({"top_k": 5}, "top_k", 5),
    ({"max_tokens": 4096.0}, "max_tokens", 4096),
    ({"max_tokens": None}, "max_tokens", 8192),
    ({"stream": True}, "stream", True),
    ({"stop_sequences": ["a", ""]}, "stop_sequences", ["a", ""]),
])
def test_validate_keeps_valid_values(extra, key, expected):
    assert an.validate(req(**extra))[key] == expected


def test_validate_accepts_system_role_and_blocks():
    body = req(messages=[{"role": "system", "content": "s"},
                         {"role": "user", "content": [{"type": "text", "text": "x", "extra": 1}]}])
    out = an.validate(body)
    assert out["messages"] == body["messages"]
    assert out is body  # nothing to normalise: the client's request itself (its bytes can be forwarded)


def test_validate_normalises_a_copy_and_leaves_the_body_alone():
    body = req(max_tokens=4096.0, top_k=0, system=None)
    out = an.validate(body)
    assert out is not body
    assert (out["max_tokens"], "top_k" in out, "system" in out) == (4096, False, False)
    assert (body["max_tokens"], body["top_k"], body["system"]) == (4096.0, 0, None)


# ---------------------------------------------------------------- model parsing (§7.1, §7.2)

@pytest.mark.parametrize("model, stripped", [
    ("claude-opus-4-6", ("claude-opus-4-6", False, False)),
    ("claude-opus-4-6-thinking", ("claude-opus-4-6", True, False)),
    ("claude-opus-4-6-1M", ("claude-opus-4-6", False, True)),
    ("claude-opus-4-6-thinking-1M", ("claude-opus-4-6", True, True)),
    ("claude-opus-4-6-1M-thinking", ("claude-opus-4-6", True, True)),
    ("gpt-4o-thinking", ("gpt-4o", True, False)),
])
def test_split_model_suffixes(model, stripped):
    assert an.split_model_suffixes(model) == stripped


@pytest.mark.parametrize("model, line, generation", [
    ("claude-opus-4-6", "opus", (4, 6)),
    ("claude-3-7-sonnet-20250219", "sonnet", (3, 7)),
    ("claude-opus-5", "opus", (5, 0)),
    ("claude-sonnet-4-20250514", "sonnet", (4, 0)),
    ("claude-sonnet-4-5-20250929", "sonnet", (4, 5)),
    ("claude-haiku-4-5-20251001", "haiku", (4, 5)),
    ("claude-3-haiku-20240307", "haiku", (3, 0)),
    ("claude-fable-5", "fable", (5, 0)),
    ("claude-mythos-5-thinking", "fable", (5, 0)),
    ("claude-opus-4-1-20250805", "opus", (4, 1)),
    ("claude-instant-1-2", "other", (1, 2)),
    ("Claude-Opus-4-7", "opus", (4, 7)),
    ("anthropic/claude-opus-4.5", "opus", (4, 5)),
])
def test_parse_model(model, line, generation):
    assert mr.parse_model(model) == (line, generation)


@pytest.mark.parametrize("model", ["gpt-4o", "deepseek-chat", "claude-opus", "llama-3-70b", ""])
def test_parse_model_unknown(model):
    assert mr.parse_model(model) is None


@pytest.mark.parametrize("model, thinking, sampling, efforts", [
    ("claude-fable-5", "always", False, ALL_EFFORTS),
    ("claude-mythos-4-6", "always", False, ALL_EFFORTS),
    ("claude-opus-4-7", "adaptive", False, ALL_EFFORTS),
    ("claude-opus-5", "adaptive", False, ALL_EFFORTS),
    ("claude-sonnet-5", "adaptive", False, ALL_EFFORTS),
    ("claude-sonnet-4-6", "both", True, ("low", "medium", "high", "max")),
    ("claude-opus-4-6", "both", True, ("low", "medium", "high", "max")),
    ("claude-opus-4-5-20251101", "extended", True, ("low", "medium", "high")),
    ("claude-sonnet-4-5-20250929", "extended", True, ()),
    ("claude-haiku-4-5-20251001", "extended", True, ()),
    ("claude-3-7-sonnet-20250219", "extended", True, ()),
])
def test_traits(model, thinking, sampling, efforts):
    assert mr.traits(mr.parse_model(model)) == (thinking, sampling, efforts)


# ---------------------------------------------------------------- rules (§7.3)

@pytest.mark.parametrize("model, expected", [
    ("claude-fable-5-thinking", ADAPTIVE),
    ("claude-opus-4-6-thinking", ADAPTIVE),
    ("claude-sonnet-4-6-thinking", ADAPTIVE),
    ("claude-opus-4-7-thinking", ADAPTIVE),
    ("claude-opus-5-thinking", ADAPTIVE),
    ("claude-sonnet-4-5-thinking", EXTENDED),
    ("claude-opus-4-5-20251101-thinking", EXTENDED),
    ("claude-3-7-sonnet-20250219-thinking", EXTENDED),
])
def test_rule1_suffix_adds_thinking(model, expected):
    out = an.apply_model_rules(req(model))
    assert out["thinking"] == expected
    assert out["model"] == an.split_model_suffixes(model)[0]


@pytest.mark.parametrize("thinking, expected", [
    ({"type": "enabled", "budget_tokens": 2000}, {"type": "enabled", "budget_tokens": 2000}),
    ({"type": "disabled"}, {"type": "disabled"}),
    # unparseable thinking counts as absent, so the suffix applies
    ({"type": "sometimes"}, EXTENDED),
    ({"type": "enabled"}, EXTENDED),
    ("on", EXTENDED),
    (None, EXTENDED),
])
def test_rule1_explicit_thinking_wins_over_suffix(thinking, expected):
    assert an.apply_model_rules(req("claude-sonnet-4-5-thinking", thinking=thinking))["thinking"] \
        == expected


@pytest.mark.parametrize("thinking", [{"type": "sometimes"}, "on", [], {"type": "enabled",
                                                                      "budget_tokens": "9"}])
def test_unparseable_thinking_is_removed(thinking):
    assert "thinking" not in an.apply_model_rules(req("claude-sonnet-4-5", thinking=thinking))


@pytest.mark.parametrize("model, thinking, expected", [
    ("claude-fable-5", {"type": "disabled"}, None),
    ("claude-fable-5", {"type": "enabled", "budget_tokens": 2000}, ADAPTIVE),
    ("claude-fable-5", {"type": "adaptive"}, {"type": "adaptive"}),
    ("claude-opus-4-7", {"type": "enabled", "budget_tokens": 2000}, ADAPTIVE),
    ("claude-opus-5", {"type": "disabled"}, {"type": "disabled"}),
    ("claude-sonnet-4-6", {"type": "enabled", "budget_tokens": 2000},
     {"type": "enabled", "budget_tokens": 2000}),
    ("claude-sonnet-4-6", {"type": "adaptive", "display": "omitted"},
     {"type": "adaptive", "display": "omitted"}),
    ("claude-sonnet-4-5", {"type": "adaptive"}, EXTENDED),
    ("claude-haiku-4-5-20251001", {"type": "disabled"}, {"type": "disabled"}),
])
def test_rule2_coerce_thinking(model, thinking, expected):
    out = an.apply_model_rules(req(model, thinking=thinking))
    assert out.get("thinking") == expected


@pytest.mark.parametrize("max_tokens, budget, expected", [
    (4096, 16384, 4095),
    (32000, 256, 1024),
    (32000, 8000, 8000),
    (512, 4096, None),
    (1024, 4096, None),  # ceiling 1023 < 1024
    (1025, 4096, 1024),
])
def test_rule3_budget_clamp(max_tokens, budget, expected):
    out = an.apply_model_rules(req("claude-sonnet-4-5", max_tokens=max_tokens,
                                   thinking={"type": "enabled", "budget_tokens": budget}))
    assert (out["thinking"]["budget_tokens"] if "thinking" in out else None) == expected


def test_rule3_applies_to_suffix_thinking_and_keeps_extra_fields():
    out = an.apply_model_rules(req("claude-sonnet-4-5-thinking", max_tokens=2000))
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 1999}
    out = an.apply_model_rules(req("claude-sonnet-4-5", thinking={
        "type": "enabled", "budget_tokens": 99999, "x": 1}))
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 31999, "x": 1}


@pytest.mark.parametrize("model, effort, thinking, expected", [
    ("claude-opus-4-7", "xhigh", None, "xhigh"),
    ("claude-opus-4-7", "max", None, "max"),
    ("claude-sonnet-4-6", "xhigh", None, "high"),
    ("claude-sonnet-4-6", "max", None, "max"),
    ("claude-opus-4-5-20251101", "max", None, "high"),
    ("claude-opus-4-5-20251101", "low", None, "low"),
    ("claude-sonnet-4-5-20250929", "low", None, None),
    ("claude-haiku-4-5-20251001", "high", None, None),
    ("claude-opus-5", "max", {"type": "disabled"}, "high"),
    ("claude-opus-5", "xhigh", {"type": "disabled"}, "high"),
    ("claude-opus-5", "medium", {"type": "disabled"}, "medium"),
    ("claude-opus-5", "max", None, "max"),
    ("claude-opus-4-7", "max", {"type": "disabled"}, "max"),  # the cap is for generation ≥ 5.0
    ("claude-fable-5", "max", None, "max"),
    ("claude-opus-4-7", "ultra", None, "ultra"),  # a rung we do not know yet passes through
    ("claude-sonnet-4-5", "ultra", None, None),
])
def test_rule4_effort(model, effort, thinking, expected):
    body = req(model, output_config={"effort": effort})
    if thinking:
        body["thinking"] = thinking
    out = an.apply_model_rules(body)
    if expected is None:
        assert "output_config" not in out
    else:
        assert out["output_config"] == {"effort": expected}


def test_rule4_output_config_kept_for_format():
    fmt = {"type": "json_schema", "schema": {}}
    out = an.apply_model_rules(req("claude-sonnet-4-5", output_config={"effort": "low",
                                                                       "format": fmt}))
    assert out["output_config"] == {"format": fmt}
    out = an.apply_model_rules(req("claude-sonnet-4-5", output_config={"format": fmt}))
    assert out["output_config"] == {"format": fmt}
    out = an.apply_model_rules(req("claude-sonnet-4-5", output_config={}))
    assert "output_config" not in out


SAMPLES = {"temperature": 0.7, "top_p": 0.9, "top_k": 40}


@pytest.mark.parametrize("model, thinking, kept", [
    ("claude-fable-5", None, set()),
    ("claude-opus-4-7", None, set()),
    ("claude-opus-5", {"type": "disabled"}, set()),
    ("claude-sonnet-4-6", ADAPTIVE, set()),
    ("claude-sonnet-4-6", {"type": "enabled", "budget_tokens": 2000}, set()),
    ("claude-sonnet-4-6", None, {"temperature", "top_k"}),
    ("claude-sonnet-4-6", {"type": "disabled"}, {"temperature", "top_k"}),
    ("claude-sonnet-4-5", {"type": "enabled", "budget_tokens": 2000}, set()),
    ("claude-sonnet-4-5", {"type": "adaptive"}, set()),  # coerced to enabled first
    ("claude-sonnet-4-5", None, {"temperature", "top_k"}),
    ("claude-opus-4-1-20250805", None, {"temperature", "top_k"}),
    ("claude-sonnet-4-20250514", None, {"temperature", "top_p", "top_k"}),
    ("claude-3-7-sonnet-20250219", None, {"temperature", "top_p", "top_k"}),
])
def test_rule5_sampling(model, thinking, kept):
    body = req(model, **SAMPLES)
    if thinking:
        body["thinking"] = thinking
    out = an.apply_model_rules(body)
    assert {k for k in SAMPLES if k in out} == kept


def test_rule5_top_p_alone_is_kept():
    out = an.apply_model_rules(req("claude-sonnet-4-5", top_p=0.9))
    assert out["top_p"] == 0.9


@pytest.mark.parametrize("system, removed", [
    (None, True),
    ("", True),
    ("   \n", True),
    ([], True),
    ([{"type": "text", "text": " "}, {"type": "text", "text": ""}], True),
    ("You are helpful.", False),
    ([{"type": "text", "text": "x"}], False),
    ([{"type": "text", "text": ""}, {"type": "image", "source": {}}], False),
])
def test_rule6_blank_system(system, removed):
    out = an.apply_model_rules(req("claude-sonnet-4-5", system=system))
    assert ("system" not in out) == removed


def test_unknown_model_is_untouched_but_stripped():
    body = req("gpt-4o-thinking-1M", system="", temperature=0.5, top_p=0.9,
               thinking={"type": "enabled", "budget_tokens": 10})
    out = an.apply_model_rules(body)
    assert out == {**body, "model": "gpt-4o"}


def test_apply_model_rules_does_not_mutate_input():
    body = req("claude-opus-4-7-thinking", temperature=1, output_config={"effort": "max"},
               system=" ")
    before = copy.deepcopy(body)
    an.apply_model_rules(body)
    assert body == before


@pytest.mark.parametrize("body, expected", [
    (req("claude-sonnet-4-5-thinking"), True),
    (req("claude-opus-4-7-thinking", thinking=None), True),
    (req("claude-sonnet-4-5-thinking", thinking={"type": "enabled", "budget_tokens": 2000}),
     False),
    (req("claude-sonnet-4-5-thinking", thinking={"type": "disabled"}), False),
    (req("claude-sonnet-4-5"), False),
    (req("gpt-4o-thinking"), False),
])
def test_thinking_from_suffix(body, expected):
    assert an.thinking_from_suffix(body) is expected


# ---------------------------------------------------------------- Hi (claude-web.md §17)

@pytest.mark.parametrize("messages, expected", [
    ([{"role": "user", "content": "Hi"}], True),
    ([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], True),
    ([{"role": "user", "content": "hi"}], False),
    ([{"role": "user", "content": "Hi "}], False),
    ([{"role": "assistant", "content": "Hi"}], False),
    ([{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hi"}], False),
    ([{"role": "user", "content": [{"type": "text", "text": "Hi"},
                                   {"type": "text", "text": "Hi"}]}], False),
    ([{"role": "user", "content": [{"type": "image", "source": {}}]}], False),
])
def test_is_hi(messages, expected):
    assert an.is_hi({"model": "m", "messages": messages}) is expected


def test_hi_message():
    assert an.hi_message("claude-x", "msg_1") == {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text",
                     "text": "Claude Reverse Proxy is working, please send a real message."}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    assert an.new_message_id("ab12") == "msg_ab12"


# ---------------------------------------------------------------- thinking hygiene, API shape

def test_strip_foreign_thinking():
    good = {"type": "thinking", "thinking": "t", "signature": "EuYBCkQ"}
    body = {"model": "m", "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "a", "signature": ""},
            {"type": "thinking", "thinking": "b"},
            {"type": "thinking", "thinking": "c", "signature": "clewdr-lite:0123456789abcdef"},
            good, {"type": "text", "text": "answer"}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "d",
                                           "signature": "clewdr-lite:ff"}]},
        {"role": "user", "content": "more"},
    ]}
    before = copy.deepcopy(body)
    out = an.strip_foreign_thinking(body)
    assert out["messages"] == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [good, {"type": "text", "text": "answer"}]},
        {"role": "user", "content": "more"},
    ]
    assert body == before


def test_prepare_for_api_hoists_system_and_adds_placeholder():
    body = {"model": "m", "system": "top", "messages": [
        {"role": "system", "content": "first"},
        {"role": "assistant", "content": "prefill"},
        {"role": "system", "content": [{"type": "text", "text": "mid", "cache_control": {}}]},
        {"role": "user", "content": "q"},
    ]}
    out = an.prepare_for_api(body)
    assert out["system"] == [{"type": "text", "text": "top"}, {"type": "text", "text": "first"},
                             {"type": "text", "text": "mid", "cache_control": {}}]
    assert out["messages"] == [{"role": "user", "content": "(continue)"},
                               {"role": "assistant", "content": "prefill"},
                               {"role": "user", "content": "q"}]


@pytest.mark.parametrize("body, system, first", [
    ({"model": "m", "messages": [{"role": "user", "content": "q"}]}, None, "q"),
    ({"model": "m", "system": "s", "messages": [{"role": "user", "content": "q"}]}, "s", "q"),
    ({"model": "m", "messages": [{"role": "system", "content": "s"}]},
     [{"type": "text", "text": "s"}], "..."),
])
def test_prepare_for_api_cases(body, system, first):
    out = an.prepare_for_api(body, placeholder="...")
    assert out.get("system") == system
    assert out["messages"][0] == {"role": "user", "content": first}


def test_requests_that_need_no_change_come_back_as_themselves_and_others_as_copies():
    plain = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "thinking", "thinking": "t", "signature": "EuYBCkQ"}, {"type": "text", "text": "q"}]}]}
    assert an.strip_foreign_thinking(plain) is plain and an.prepare_for_api(plain) is plain
    blank_system = {"model": "m", "messages": [{"role": "system", "content": " "}, {"role": "user", "content": "q"}]}
    before = copy.deepcopy(blank_system)
    out = an.prepare_for_api(blank_system)  # nothing to hoist, yet the system message goes
    assert out is not blank_system and out["messages"] == [{"role": "user", "content": "q"}]
    assert "system" not in out and blank_system == before
    assert an.strip_foreign_thinking({"model": "m"}) == {"model": "m", "messages": []}
    assert an.prepare_for_api({"model": "m"}, placeholder="...")["messages"] == [{"role": "user", "content": "..."}]


def test_without_thinking():
    msg = {"id": "m", "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                                  {"type": "redacted_thinking", "data": "x"},
                                  {"type": "text", "text": "hello"}]}
    assert an.without_thinking(msg)["content"] == [{"type": "text", "text": "hello"}]


# ---------------------------------------------------------------- Accumulator (§10.1)

def _events():
    return [
        {"type": "message_start", "message": {
            "id": "msg_up", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 3}}},
        {"type": "ping"},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "thinking_delta", "thinking": "Let me "}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "thinking_delta", "thinking": "think."}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "signature_delta", "signature": "EqQBCg"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                           "input": {}}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '{"query": '}},
        {"type": "content_block_delta", "index": 1,
         "delta": {"type": "input_json_delta", "partial_json": '"paris"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {
            "type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
            "content": [{"type": "web_search_result", "url": "https://x", "title": "X"}]}},
        {"type": "content_block_stop", "index": 2},
        {"type": "content_block_start", "index": 3,
         "content_block": {"type": "text", "text": "", "x_future": 1}},
        {"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": "It "}},
        {"type": "content_block_delta", "index": 3,
         "delta": {"type": "citations_delta", "citation": {"type": "web_search_result_location",
                                                           "url": "https://x"}}},
        {"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": "rains."}},
        {"type": "content_block_stop", "index": 3},
        {"type": "content_block_start", "index": 4, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}},
        # claude.ai can emit non-strict JSON: single quotes and a trailing comma
        {"type": "content_block_delta", "index": 4,
         "delta": {"type": "input_json_delta", "partial_json": "{'city': 'Par"}},
        {"type": "content_block_delta", "index": 4,
         "delta": {"type": "input_json_delta", "partial_json": "is',}"}},
        {"type": "content_block_stop", "index": 4},
        {"type": "message_delta", "delta": {"stop_reason": None, "stop_sequence": None},
         "usage": {"output_tokens": 10}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
         "usage": {"output_tokens": 40}},
        {"type": "message_stop"},
    ]


def test_accumulator_builds_message():
    acc = an.Accumulator()
    for event in _events():
        acc.feed(event)
    assert acc.error is None
    assert acc.result() == {
        "id": "msg_up", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCg"},
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
             "input": {"query": "paris"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
             "content": [{"type": "web_search_result", "url": "https://x", "title": "X"}]},
            {"type": "text", "text": "It rains.", "x_future": 1,
             "citations": [{"type": "web_search_result_location", "url": "https://x"}]},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        # cumulative: the last message_delta value, never the sum
        "usage": {"input_tokens": 25, "output_tokens": 40, "cache_read_input_tokens": 3},
    }


def test_accumulator_takes_deltas_without_their_block_start_as_one_text_block():
    acc = an.Accumulator()
    acc.feed({"type": "message_start", "message": {"id": "msg_1", "model": "m"}})
    for text in ("Hel", "lo", "!"):
        acc.feed({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
    assert acc.result()["content"] == [{"type": "text", "text": "Hello!"}]


def test_accumulator_defaults_and_edge_cases():
    acc = an.Accumulator()
    acc.feed({"type": "message_start", "message": {"id": "msg_1", "model": "m"}})
    acc.feed({"type": "content_block_start", "index": 0,
              "content_block": {"type": "thinking", "thinking": ""}})
    acc.feed({"type": "content_block_delta", "index": 0,
              "delta": {"type": "thinking_delta", "thinking": "t"}})
    acc.feed({"type": "content_block_start", "index": 1,
              "content_block": {"type": "tool_use", "id": "t1", "name": "f", "input": {}}})
    acc.feed({"type": "content_block_start", "index": 2,
              "content_block": {"type": "tool_use", "id": "t2", "name": "g", "input": {}}})
    acc.feed({"type": "content_block_delta", "index": 2,
              "delta": {"type": "input_json_delta", "partial_json": "not json"}})
    out = acc.result()
    assert out["content"] == [
        {"type": "thinking", "thinking": "t", "signature": ""},
        {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
        {"type": "tool_use", "id": "t2", "name": "g", "input": {"_raw_arguments": "not json"}},
    ]
    assert out["stop_reason"] == "end_turn" and out["stop_sequence"] is None
    assert out["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert out["type"] == "message" and out["role"] == "assistant" and out["id"] == "msg_1"


def test_accumulator_stop_sequence_and_error():
    acc = an.Accumulator()
    acc.feed({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 3,
                                                                            "output_tokens": 0}}})
    acc.feed({"type": "content_block_start", "index": 0, "content_block": {"type": "text",
                                                                           "text": ""}})
    acc.feed({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
                                                                   "text": "ab"}})
    acc.feed({"type": "message_delta", "delta": {"stop_reason": "stop_sequence",
                                                 "stop_sequence": "END"},
              "usage": {"output_tokens": 1}})
    out = acc.result()
    assert out["stop_reason"] == "stop_sequence" and out["stop_sequence"] == "END"
    assert out["content"] == [{"type": "text", "text": "ab"}]
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    acc.feed(error)
    assert acc.error == error


@pytest.mark.parametrize("answer, problem", [
    ({"content": [{"type": "text", "text": "hi"}], "usage": {"input_tokens": 1}}, None),
    ({"content": [], "usage": None}, None),  # a null usage is no usage
    ([], "not a JSON object"),
    ({"content": None}, "content is not a list of blocks"),
    ({"content": ["x"]}, "content is not a list of blocks"),
    ({"content": [], "usage": "x"}, "usage is not an object"),
])
def test_answer_problem_names_what_the_converters_could_not_read(answer, problem):
    assert an.answer_problem(answer) == problem


@pytest.mark.parametrize("event, problem", [
    ({"type": "message_start", "message": {"usage": None}}, None),
    ({"type": "message_delta", "delta": {}, "usage": None}, None),
    ({"type": "ping"}, None),
    ({"type": "message_start", "message": None}, "message_start without a message object"),
    ({"type": "content_block_delta", "delta": "x"}, "content_block_delta without a delta object"),
    ({"type": "message_delta", "delta": {}, "usage": "x"}, "message_delta usage is not an object"),
    ({"type": "message_start", "message": {"usage": [1]}}, "message_start usage is not an object"),
    ({"type": "message_start", "message": {}, "usage": "x"}, None),  # usage is read from the message
    ({"type": "message_delta", "delta": {"usage": "x"}}, None),  # and here from the event
    ({"type": "content_block_start", "content_block": []}, "content_block_start without a content_block object"),
    ({"type": "content_block_start", "content_block": {}, "usage": "x"}, None),
    ({"type": "content_block_delta", "delta": {}}, None),
    ({"type": "content_block_stop", "index": "x"}, None),
    ({"type": None}, None),
    ({}, None),
])
def test_event_problem_names_what_the_converters_could_not_read(event, problem):
    assert an.event_problem(event) == problem


def test_a_count_body_may_have_no_messages_but_needs_a_model():
    assert an.validate_count({"model": "m", "messages": []}) == {"model": "m", "messages": []}
    with pytest.raises(BadRequest, match="model"):
        an.validate_count({"model": "", "messages": []})
    with pytest.raises(BadRequest, match="non-empty"):
        an.validate({"model": "m", "max_tokens": 1, "messages": []})


def test_a_count_body_drops_what_means_not_given_as_a_request_does():
    body = {"model": "m", "messages": [], "stream": None, "system": None, "top_k": 0, "stop_sequences": None}
    assert an.validate_count(body) == {"model": "m", "messages": []}
    with pytest.raises(BadRequest, match="stream"):
        an.validate_count({"model": "m", "messages": [], "stream": "yes"})
