"""OpenAI-compatible upstream answers → hub: responses (conversions.md §7) and streams (§8, §12, §13, CCR pitfalls §15)."""

from __future__ import annotations

import pytest

from clewdr_lite.errors import UpstreamError
from clewdr_lite.protocol.anthropic import SYNTHETIC_SIGNATURE_PREFIX, Accumulator
from clewdr_lite.protocol.openai_upstream import OpenAIToHub, openai_to_hub_message
from clewdr_lite.protocol.openai_upstream_stream import fresh_tool_id, hub_usage, stop_reason
from clewdr_lite.protocol.tokens import estimate_output

MODEL = "claude-sonnet-4-5"  # what the client asked for; the upstream calls itself something else
MSG_ID = "msg_0123abcd"
SIG = "clewdr-lite:0123456789abcdef"
INPUT = 321


def response(message: dict, finish: str | None = "stop", usage: dict | None = None) -> dict:
    resp = {"id": "chatcmpl-x", "object": "chat.completion", "model": "upstream-name",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}]}
    if usage is not None:
        resp["usage"] = usage
    return resp


def message(resp: dict, **quirks) -> dict:
    return openai_to_hub_message(resp, model=MODEL, msg_id=MSG_ID, signature=SIG, quirks=quirks)


def fn_call(call_id, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# ------------------------------------------------------------------------------- non-streaming (§7)


def test_full_response_thinking_first_text_then_tools():
    resp = response({"content": "Let me look.", "reasoning_content": "think",
                     "tool_calls": [fn_call("call_1", "get", '{"city":"Paris"}')]}, "tool_calls",
                    {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                     "prompt_tokens_details": {"cached_tokens": 30}})
    assert message(resp) == {
        "id": MSG_ID, "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "thinking", "thinking": "think", "signature": SIG},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "call_1", "name": "get", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 70, "output_tokens": 20, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 30}}


REASONING_CASES = [
    # (message fields, reasoning_field, expected thinking or None)
    ({"reasoning_content": "rc"}, "auto", "rc"),
    ({"reasoning": "r"}, "auto", "r"),
    ({"reasoning_content": "rc", "reasoning": "r"}, "auto", "rc"),  # never both: the same text twice
    ({"reasoning_content": "", "reasoning": "r"}, "auto", "r"),
    ({"reasoning_content": "rc", "reasoning": "r"}, "reasoning", "r"),
    ({"reasoning": "r"}, "reasoning_content", None),
    ({"reasoning_content": "rc"}, "none", None),
    ({"reasoning_content": None}, "auto", None),
]


@pytest.mark.parametrize("fields, field, thinking", REASONING_CASES)
def test_reasoning_field(fields, field, thinking):
    msg = message(response({"content": "answer", **fields}), reasoning_field=field)
    expected = [{"type": "text", "text": "answer"}]
    if thinking:
        expected.insert(0, {"type": "thinking", "thinking": thinking, "signature": SIG})
    assert msg["content"] == expected
    folded = fold(stream_chunks(response({"content": "answer", **fields})), reasoning_field=field)
    assert folded["content"] == expected


TOOL_CASES = [
    # (tool calls, quirks, expected tool_use blocks)
    ([fn_call("call_ok-1", "f", '{"a": 1}')], {}, [("call_ok-1", "f", {"a": 1})]),
    ([fn_call("call.bad:id", "f", "{}")], {}, [(fresh_tool_id(MSG_ID, 0), "f", {})]),
    ([fn_call(7, "f", "{}"), fn_call(None, "g", "")], {},
     [(fresh_tool_id(MSG_ID, 0), "f", {}), (fresh_tool_id(MSG_ID, 1), "g", {})]),
    ([fn_call("call.bad:id", "f", "{}"), fn_call(7, "g", "{}")], {"fix_tool_ids": False},
     [("call.bad:id", "f", {}), ("7", "g", {})]),
    ([fn_call("c", "f", "{'a': 1,}")], {}, [("c", "f", {"a": 1})]),  # lenient repair
    ([fn_call("c", "f", "{'a': 1,}")], {"repair_tool_json": False}, [("c", "f", {"_raw_arguments": "{'a': 1,}"})]),
    ([fn_call("c", "f", "not json")], {}, [("c", "f", {"_raw_arguments": "not json"})]),
    ([fn_call("c", "f", "[1]")], {}, [("c", "f", {"_raw_arguments": "[1]"})]),
    ([{"id": "c", "type": "function", "function": {"name": "f", "arguments": {"obj": True}}}], {},
     [("c", "f", {"obj": True})]),
]


@pytest.mark.parametrize("calls, quirks, expected", TOOL_CASES)
def test_tool_calls(calls, quirks, expected):
    msg = message(response({"content": None, "tool_calls": calls}, "tool_calls"), **quirks)
    assert msg["content"] == [{"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in expected]
    assert msg["stop_reason"] == "tool_use"


def test_legacy_function_call():
    msg = message(response({"content": None, "function_call": {"name": "f", "arguments": '{"x":1}'}},
                           "function_call"))
    assert msg["content"] == [{"type": "tool_use", "id": fresh_tool_id(MSG_ID, 0), "name": "f", "input": {"x": 1}}]
    assert msg["stop_reason"] == "tool_use"


STOP_CASES = [
    # (finish_reason, has real tool calls, refusal text, expected stop_reason) — §12, CCR pitfall 9
    ("stop", False, False, "end_turn"),
    ("length", False, False, "max_tokens"),
    ("tool_calls", True, False, "tool_use"),
    ("function_call", True, False, "tool_use"),
    ("content_filter", False, False, "refusal"),
    (None, False, False, "end_turn"),
    ("something_new", False, False, "end_turn"),
    ("stop", True, False, "tool_use"),  # servers that say "stop" with tool calls
    (None, True, False, "tool_use"),
    ("length", True, False, "max_tokens"),
    ("tool_calls", False, False, "end_turn"),  # only an ExitTool call
    ("stop", False, True, "refusal"),
]


@pytest.mark.parametrize("finish, tools, refused, expected", STOP_CASES)
def test_stop_reason(finish, tools, refused, expected):
    assert stop_reason(finish, tools, refused) == expected


def test_content_filter_and_refusal_messages():
    assert message(response({"content": "no"}, "content_filter"))["stop_reason"] == "refusal"
    msg = message(response({"content": None, "refusal": "I can't help with that."}))
    assert msg["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert msg["stop_reason"] == "refusal"


USAGE_CASES = [
    ({"prompt_tokens": 10, "completion_tokens": 5},
     {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
    ({"prompt_tokens": 100, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 60}},
     {"input_tokens": 40, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60}),
    ({"prompt_tokens": 100, "completion_tokens": 5, "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36},
     {"input_tokens": 36, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 64}),
    ({"prompt_tokens": None, "completion_tokens": 3, "prompt_tokens_details": None},
     {"input_tokens": 0, "output_tokens": 3, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
]


@pytest.mark.parametrize("usage, expected", USAGE_CASES)
def test_usage(usage, expected):
    assert hub_usage(usage) == expected
    assert message(response({"content": "x"}, usage=usage))["usage"] == expected


def test_missing_usage_is_estimated():
    msg = openai_to_hub_message(response({"content": "hello there"}), model=MODEL, msg_id=MSG_ID,
                                signature=SIG, quirks={}, input_tokens=42)
    assert msg["usage"]["input_tokens"] == 42
    assert msg["usage"]["output_tokens"] == estimate_output("hello there") > 0


def test_error_body_raises():
    with pytest.raises(UpstreamError) as info:
        message({"error": {"message": "Rate limited upstream", "code": 429}})
    assert (info.value.status, info.value.type, info.value.message) == (
        429, "rate_limit_error", "Rate limited upstream")
    with pytest.raises(UpstreamError) as info:
        message({"error": "boom"})
    assert info.value.status == 502


def test_exit_tool_becomes_text_in_force_mode():
    calls = [fn_call("c1", "ExitTool", '{"response": "Just an answer."}')]
    msg = message(response({"content": None, "tool_calls": calls}, "tool_calls"), force_tool_mode=True)
    assert msg["content"] == [{"type": "text", "text": "Just an answer."}]
    assert msg["stop_reason"] == "end_turn"
    plain = message(response({"content": None, "tool_calls": calls}, "tool_calls"))
    assert plain["content"][0]["name"] == "ExitTool"  # without the quirk it is an ordinary call


def test_empty_response():
    msg = message({"choices": []})
    assert msg["content"] == [] and msg["stop_reason"] == "end_turn" and msg["model"] == MODEL


# ------------------------------------------------------------------------------------ stream (§8)


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    out = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "model": "upstream-name",
           "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        out["usage"] = usage
    return out


def tool_frag(index: int, args: str = "", call_id: str | None = None, name: str | None = None) -> dict:
    item = {"index": index, "function": {"arguments": args}}
    if call_id is not None:
        item["id"] = call_id
        item["type"] = "function"
    if name is not None:
        item["function"]["name"] = name
    return chunk({"tool_calls": [item]})


def run(chunks: list, **quirks) -> list[dict]:
    conv = OpenAIToHub(model=MODEL, msg_id=MSG_ID, signature=SIG, input_tokens=INPUT, quirks=quirks)
    events = [event for c in chunks for event in conv.feed(c)] + conv.close()
    assert conv.close() == [] and conv.feed(chunk({"content": "late"})) == []
    return events


def check_sequence(events: list) -> None:
    """The hub stream grammar: start, ping, blocks opened at fresh indexes, deltas only into open ones."""
    assert [e["type"] for e in events[:2]] == ["message_start", "ping"]
    assert [e["type"] for e in events[-2:]] == ["message_delta", "message_stop"]
    opened, closed = [], set()
    for event in events[2:-2]:
        index = event.get("index")
        if event["type"] == "content_block_start":
            assert index == len(opened)  # a new index, never a reused one (CCR pitfall 1)
            opened.append(index)
        elif event["type"] == "content_block_delta":
            assert index in opened and index not in closed  # never into a closed block (CCR pitfall 2)
        else:
            assert event["type"] == "content_block_stop" and index in opened and index not in closed
            closed.add(index)
    assert closed == set(opened)


def fold(chunks: list, **quirks) -> dict:
    events = run(chunks, **quirks)
    check_sequence(events)
    acc = Accumulator()
    for event in events:
        acc.feed(event)
    return acc.result()


def stream_chunks(resp: dict) -> list:
    """A whole response replayed as a stream, one field per chunk, as a server would."""
    msg = resp["choices"][0]["message"]
    chunks = [chunk({"role": "assistant", "content": ""})]
    reasoning = {k: msg[k] for k in ("reasoning_content", "reasoning") if k in msg}
    if reasoning:  # a server that sends both sends them in the same delta
        chunks.append(chunk(reasoning))
    if isinstance(msg.get("content"), str):
        chunks.append(chunk({"content": msg["content"]}))
    for i, call in enumerate(msg.get("tool_calls") or ()):
        chunks.append(tool_frag(i, "", call["id"], call["function"]["name"]))
        chunks.append(tool_frag(i, call["function"]["arguments"]))
    chunks.append(chunk({}, resp["choices"][0]["finish_reason"]))
    if resp.get("usage"):
        chunks.append(chunk(None, usage=resp["usage"]))
    return chunks


def test_message_start_ping_model_echo_and_input_estimate():
    events = run([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}, "stop")])
    start = events[0]["message"]
    assert start == {"id": MSG_ID, "type": "message", "role": "assistant", "content": [], "model": MODEL,
                     "stop_reason": None, "stop_sequence": None,
                     "usage": {"input_tokens": INPUT, "cache_creation_input_tokens": 0,
                               "cache_read_input_tokens": 0, "output_tokens": 1}}
    assert events[1] == {"type": "ping"}  # CCR pitfall 3
    assert events[-2] == {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                          "usage": {"output_tokens": estimate_output("Hi")}}
    assert events[-1] == {"type": "message_stop"}


def test_upstream_prompt_count_in_the_first_chunk_wins():
    events = run([chunk({"content": "x"}, usage={"prompt_tokens": 50, "completion_tokens": 1})])
    assert events[0]["message"]["usage"]["input_tokens"] == 50


def test_thinking_then_text_with_synthetic_signature():
    events = run([chunk({"reasoning_content": "Let me "}), chunk({"reasoning_content": "think."}),
                  chunk({"content": "Answer"}), chunk({}, "stop")])
    body = [e for e in events if e["type"].startswith("content_block")]
    assert body == [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Let me "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "think."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": SIG}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Answer"}},
        {"type": "content_block_stop", "index": 1},
    ]
    assert SIG.startswith(SYNTHETIC_SIGNATURE_PREFIX)  # CCR pitfall 6: recognisable, stripped for Anthropic


def test_text_after_a_tool_call_gets_a_new_block():
    msg = fold([chunk({"content": "Before "}), tool_frag(0, "", "call_a", "f"), tool_frag(0, '{"x":'),
                chunk({"content": "after"}), tool_frag(0, "1}"), chunk({}, "tool_calls")])
    assert msg["content"] == [{"type": "text", "text": "Before "},
                              {"type": "tool_use", "id": "call_a", "name": "f", "input": {"x": 1}},
                              {"type": "text", "text": "after"}]
    assert msg["stop_reason"] == "tool_use"


def test_interleaved_parallel_tool_calls_land_in_open_blocks():
    chunks = [chunk({"role": "assistant", "content": None}),
              tool_frag(0, "", "call_a", "get"), tool_frag(1, "", "call_b", "put"),
              tool_frag(0, '{"ci'), tool_frag(1, '{"k": '), tool_frag(0, 'ty": "Paris"}'), tool_frag(1, "2}"),
              chunk({}, "tool_calls"), chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 7})]
    events = run(chunks)
    check_sequence(events)
    deltas = [(e["index"], e["delta"]["partial_json"]) for e in events if e["type"] == "content_block_delta"]
    assert deltas == [(0, '{"ci'), (1, '{"k": '), (0, 'ty": "Paris"}'), (1, "2}")]  # streamed, not buffered
    stops = [e["index"] for e in events if e["type"] == "content_block_stop"]
    assert stops == [0, 1]  # closed at the end, in order
    acc = Accumulator()
    for event in events:
        acc.feed(event)
    msg = acc.result()
    assert msg["content"] == [{"type": "tool_use", "id": "call_a", "name": "get", "input": {"city": "Paris"}},
                              {"type": "tool_use", "id": "call_b", "name": "put", "input": {"k": 2}}]
    assert msg["usage"] == {"input_tokens": 9, "output_tokens": 7, "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 0}


def test_several_calls_in_one_chunk_and_calls_without_index():
    both = chunk({"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}},
                                 {"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]})
    no_index = [chunk({"tool_calls": [{"id": "x", "function": {"name": "f", "arguments": '{"a"'}}]}),
                chunk({"tool_calls": [{"function": {"arguments": ": 1}"}}]})]
    assert [b["id"] for b in fold([both, chunk({}, "tool_calls")])["content"]] == ["a", "b"]
    assert fold(no_index)["content"] == [{"type": "tool_use", "id": "x", "name": "f", "input": {"a": 1}}]


def test_stream_tool_ids_fixed():
    msg = fold([tool_frag(0, "{}", "call.1", "f"), tool_frag(1, "{}", None, "g")])
    assert [b["id"] for b in msg["content"]] == [fresh_tool_id(MSG_ID, 0), fresh_tool_id(MSG_ID, 1)]
    kept = fold([tool_frag(0, "{}", "call.1", "f")], fix_tool_ids=False)
    assert kept["content"][0]["id"] == "call.1"


def test_finish_reason_and_late_usage_remembered():
    events = run([chunk({"content": "Hi"}), chunk({}, "length"),
                  chunk(None, usage={"prompt_tokens": 120, "completion_tokens": 8,
                                     "prompt_tokens_details": {"cached_tokens": 100}})])
    assert events[-2] == {"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                          "usage": {"input_tokens": 20, "output_tokens": 8, "cache_creation_input_tokens": 0,
                                    "cache_read_input_tokens": 100}}


def test_output_only_usage_keeps_the_input_estimate():
    msg = fold([chunk({"content": "Hi"}, "stop", usage={"completion_tokens": 4})])
    assert (msg["usage"]["input_tokens"], msg["usage"]["output_tokens"]) == (INPUT, 4)


def test_content_filter_in_stream():
    assert fold([chunk({"content": "par"}), chunk({}, "content_filter")])["stop_reason"] == "refusal"


def test_error_chunk_ends_the_stream():
    events = run([chunk({"content": "par"}), {"error": {"message": "upstream overloaded", "code": 502}}])
    assert events[-1] == {"type": "error", "error": {"type": "api_error", "message": "upstream overloaded"}}
    assert [e["type"] for e in events[:2]] == ["message_start", "ping"]
    first = run([{"error": {"message": "bad key"}}])
    assert first == [{"type": "error", "error": {"type": "api_error", "message": "bad key"}}]


def test_empty_stream_is_an_error():
    events = run([])
    assert [e["type"] for e in events] == ["error"]


def test_empty_deltas_open_nothing():
    events = run([chunk({"role": "assistant", "content": ""}), chunk({"content": None}), chunk({}, "stop")])
    assert [e["type"] for e in events] == ["message_start", "ping", "message_delta", "message_stop"]


def test_reasoning_key_per_quirk_in_stream():
    chunks = [chunk({"reasoning": "r", "reasoning_content": "rc"}), chunk({"content": "t"})]
    assert fold(chunks)["content"][0]["thinking"] == "rc"
    assert fold(chunks, reasoning_field="reasoning")["content"][0]["thinking"] == "r"
    assert [b["type"] for b in fold(chunks, reasoning_field="none")["content"]] == ["text"]


def test_exit_tool_in_stream_becomes_text():
    chunks = [chunk({"content": "Sure. "}), tool_frag(0, "", "c1", "ExitTool"),
              tool_frag(0, '{"response": "Plain '), tool_frag(0, 'answer."}'), chunk({}, "tool_calls")]
    events = run(chunks, force_tool_mode=True)
    assert not any(e.get("content_block", {}).get("type") == "tool_use" for e in events)
    msg = fold(chunks, force_tool_mode=True)
    assert msg["content"] == [{"type": "text", "text": "Sure. "}, {"type": "text", "text": "Plain answer."}]
    assert msg["stop_reason"] == "end_turn"


def test_text_parts_and_refusal_deltas():
    msg = fold([chunk({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
                chunk({"refusal": "no"}), chunk({}, "stop")])
    assert msg["content"] == [{"type": "text", "text": "abno"}]
    assert msg["stop_reason"] == "refusal"


AGREEMENT_CASES = [
    response({"content": "Hello"}, "stop", {"prompt_tokens": 5, "completion_tokens": 2}),
    response({"content": "x", "reasoning_content": "why"}, "length", {"prompt_tokens": 5, "completion_tokens": 9}),
    response({"content": None, "tool_calls": [fn_call("c1", "f", '{"a": [1, 2]}'), fn_call("c2", "g", "{}")]},
             "tool_calls", {"prompt_tokens": 5, "completion_tokens": 9}),
    response({"content": "Let me check", "reasoning": "plan",
              "tool_calls": [fn_call("bad id", "f", "{}")]}, "stop", {"prompt_tokens": 5, "completion_tokens": 9}),
    response({"content": "filtered"}, "content_filter", {"prompt_tokens": 1, "completion_tokens": 1}),
]


@pytest.mark.parametrize("resp", AGREEMENT_CASES)
def test_stream_and_response_agree(resp):
    whole = message(resp)
    folded = fold(stream_chunks(resp))
    assert folded == whole
