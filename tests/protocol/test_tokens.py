"""Token estimator: exact values on small inputs, monotonicity, and no exceptions on odd shapes."""

from __future__ import annotations

import pytest

from clewdr_lite.protocol.tokens import (
    PER_ATTACHMENT,
    PER_MESSAGE,
    estimate_block,
    estimate_content,
    estimate_output,
    estimate_request,
    estimate_text,
    token_count,
)

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo" * 500}}


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("a", 1),
        ("abc", 1),
        ("abcd", 2),
        ("é", 1),  # 2 bytes
        ("日本", 2),  # 6 bytes
        ("日本語", 3),  # 9 bytes
        ("👋", 2),  # 4 bytes
        ("\ud800", 1),  # a lone surrogate from a JSON escape: counted, not an error
    ],
)
def test_estimate_text(text, tokens):
    assert estimate_text(text) == tokens
    assert estimate_output(text) == tokens


@pytest.mark.parametrize(
    ("block", "tokens"),
    [
        ({"type": "text", "text": "Hello"}, 2),
        ({"type": "thinking", "thinking": "hmm…", "signature": "c2ln" * 100}, 2),  # 6 bytes; the signature is free
        ({"type": "redacted_thinking", "data": "abcdef"}, 2),
        (IMAGE, PER_ATTACHMENT),
        ({"type": "document", "source": {"type": "url", "url": "https://x/y.pdf"}}, PER_ATTACHMENT),
        # input '{"city":"Paris"}' is 16 characters (6) plus the name (4).
        ({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}, 10),
        ({"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}, 2),
        ({"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}, IMAGE]}, 1602),
        ({"type": "tool_result", "tool_use_id": "toolu_1"}, 0),
        ({"type": "weird", "x": 1}, 8),  # unknown: its compact JSON, 22 characters
        ("bare string", 4),
    ],
)
def test_estimate_block(block, tokens):
    assert estimate_block(block) == tokens


def test_estimate_request_exact():
    req = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "You are terse.",  # 14 bytes: 5
        "messages": [
            {"role": "user", "content": "Hello"},  # 4 + 2
            {"role": "assistant", "content": [{"type": "text", "text": "Hi!"}]},  # 4 + 1
            {"role": "user", "content": [{"type": "text", "text": "Look"}, IMAGE]},  # 4 + 2 + 1600
        ],
        "tools": [WEATHER_TOOL],  # 133 characters of compact JSON: 45
    }
    assert estimate_request(req) == 5 + 6 + 5 + 1606 + 45


def test_system_as_blocks_and_messages_only():
    assert estimate_request({"messages": [{"role": "user", "content": "Hello"}]}) == PER_MESSAGE + 2
    assert estimate_request({"system": [{"type": "text", "text": "abc"}, {"type": "text", "text": "def"}]}) == 2
    assert estimate_request({"messages": []}) == 0
    assert estimate_request({}) == 0


def test_monotonic():
    base = {"messages": [{"role": "user", "content": "What is the weather in Paris?"}]}
    with_system = {**base, "system": "Be brief."}
    with_tools = {**with_system, "tools": [WEATHER_TOOL]}
    two_messages = {**with_tools, "messages": [*base["messages"], {"role": "assistant", "content": "Sunny."}]}
    counts = [estimate_request(r) for r in (base, with_system, with_tools, two_messages)]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert estimate_request({"messages": [{"role": "user", "content": ""}]}) == PER_MESSAGE


@pytest.mark.parametrize(
    "req",
    [
        None,
        [],
        "text",
        {"messages": None},
        {"messages": "a string"},
        {"messages": [None, 3, "x", {"content": 5}, {"content": {"type": "text", "text": "x"}}]},
        {"system": 5, "tools": "not a list"},
        {"messages": [{"role": "user", "content": [{"type": ["list"]}, {"type": "text", "text": 7}, None, 1.5]}]},
        {"messages": [{"role": "user", "content": [{"type": "tool_use", "name": 3, "input": {1: {1, 2}}}]}]},
        {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": {"odd": True}}]}]},
    ],
)
def test_odd_shapes_never_raise(req):
    assert estimate_request(req) >= 0  # type: ignore[arg-type]


def test_circular_value_does_not_raise():
    loop: dict = {"type": "weird"}
    loop["self"] = loop
    assert estimate_block(loop) == 0
    assert estimate_content([loop, "abc"]) == 1


@pytest.mark.parametrize("value, expected", [(12, 12), (12.7, 12), (-3, 0), (0, 0), (True, None), ("12", None),
                                             (None, None), (float("nan"), None), (float("inf"), None), (10 ** 30, 10 ** 30)])
def test_a_token_count_is_a_number_an_upstream_reported(value, expected):
    assert token_count(value) == expected
