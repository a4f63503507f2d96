"""Hub stream events → OpenAI chunks (conversions.md §5, §12, §13, §15)."""

from __future__ import annotations

import json

import pytest

from clewdr_lite.protocol.openai_stream import OpenAIStream

ID, CREATED, MODEL = "chatcmpl-abc", 1760000000, "gpt-ish"
ENVELOPE = {"id": ID, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
            "system_fingerprint": None}
LOST = {"error": {"message": "upstream connection lost", "type": "server_error", "param": None,
                  "code": None}}


def parse(raw: bytes) -> list:
    """Decode `data: …` frames: a dict per JSON chunk, the string "[DONE]" for the end marker."""
    assert raw.endswith(b"\n\n") or raw == b""
    out = []
    for frame in raw.decode("utf-8").split("\n\n")[:-1]:
        assert frame.startswith("data: ") and "\n" not in frame, frame
        payload = frame[len("data: "):]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def run(events: list, *, close: bool = True, include_usage: bool = False,
        mode: str = "reasoning_content", names=None) -> list:
    stream = OpenAIStream(model=MODEL, id=ID, created=CREATED, include_usage=include_usage,
                          thinking_output=mode, tool_names=names)
    raw = b"".join(stream.feed(event) for event in events)
    if close:
        raw += stream.close()
    return parse(raw)


def deltas(chunks: list) -> list:
    """The delta of each choice chunk, checking the full envelope on the way (ClewdR quirk 5)."""
    out = []
    for chunk in chunks:
        if chunk == "[DONE]" or "error" in chunk or not chunk["choices"]:
            continue
        assert {k: chunk[k] for k in ENVELOPE} == ENVELOPE
        (choice,) = chunk["choices"]
        assert choice["index"] == 0 and choice["logprobs"] is None
        out.append((choice["delta"], choice["finish_reason"]))
    return out


# ------------------------------------------------------------------------------- event builders

def start(input_tokens=25, output_tokens=1, **usage) -> dict:
    return {"type": "message_start",
            "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [],
                        "model": MODEL, "stop_reason": None, "stop_sequence": None,
                        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                                  **usage}}}


def block(index: int, kind: str, **fields) -> dict:
    defaults = {"text": {"text": ""}, "thinking": {"thinking": "", "signature": ""},
                "tool_use": {"input": {}}}.get(kind, {})
    return {"type": "content_block_start", "index": index,
            "content_block": {"type": kind, **defaults, **fields}}


def delta(index: int, kind: str, value: str) -> dict:
    key = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json",
           "signature_delta": "signature"}[kind]
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, key: value}}


def stop(index: int) -> dict:
    return {"type": "content_block_stop", "index": index}


def end(reason="end_turn", output_tokens=15, **usage) -> list:
    return [{"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
             "usage": {"output_tokens": output_tokens, **usage}},
            {"type": "message_stop"}]


PING = {"type": "ping"}
HELLO = [start(), block(0, "text"), PING, delta(0, "text_delta", "Hel"),
         delta(0, "text_delta", "lo"), stop(0), *end()]
ROLE = ({"role": "assistant", "content": ""}, None)


# ---------------------------------------------------------------------------------------- tests

def test_text_stream_full_shape():
    chunks = run(HELLO)
    assert deltas(chunks) == [ROLE, ({"content": "Hel"}, None), ({"content": "lo"}, None),
                              ({}, "stop")]
    assert chunks[-1] == "[DONE]"
    assert all("usage" not in c for c in chunks[:-1])


def test_usage_chunk_when_asked():
    chunks = run([start(input_tokens=20, cache_read_input_tokens=4, cache_creation_input_tokens=1),
                  *HELLO[1:-2], *end(output_tokens=9)], include_usage=True)
    assert chunks[-1] == "[DONE]"
    usage_chunk = chunks[-2]
    assert usage_chunk == {**ENVELOPE, "choices": [],
                           "usage": {"prompt_tokens": 25, "completion_tokens": 9, "total_tokens": 34,
                                     "prompt_tokens_details": {"cached_tokens": 4}}}


def test_usage_is_cumulative_from_message_delta():
    events = [start(output_tokens=1), block(0, "text"), delta(0, "text_delta", "x"), stop(0),
              {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
               "usage": {"output_tokens": 5, "input_tokens": 30, "cache_read_input_tokens": None}},
              {"type": "message_stop"}]
    usage = run(events, include_usage=True)[-2]["usage"]
    assert usage == {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35,
                     "prompt_tokens_details": {"cached_tokens": 0}}


@pytest.mark.parametrize("reason,expected", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"), ("tool_use", "tool_calls"),
    ("pause_turn", "stop"), ("refusal", "content_filter"), (None, "stop")])
def test_finish_reasons(reason, expected):
    assert deltas(run([start(), *end(reason)]))[-1] == ({}, expected)


THINKING = [start(), block(0, "thinking"), delta(0, "thinking_delta", "Hmm, "),
            delta(0, "thinking_delta", "ok."), delta(0, "signature_delta", "c2ln"), stop(0),
            block(1, "redacted_thinking", data="xyz"), stop(1),
            block(2, "text"), delta(2, "text_delta", "Answer"), stop(2), *end()]

THINKING_CASES = [
    ("reasoning_content", [ROLE, ({"reasoning_content": "Hmm, "}, None),
                           ({"reasoning_content": "ok."}, None), ({"content": "Answer"}, None),
                           ({}, "stop")]),
    ("think_tags", [ROLE, ({"content": "<think>"}, None), ({"content": "Hmm, "}, None),
                    ({"content": "ok."}, None), ({"content": "</think>"}, None),
                    ({"content": "Answer"}, None), ({}, "stop")]),
    ("drop", [ROLE, ({"content": "Answer"}, None), ({}, "stop")]),
]


@pytest.mark.parametrize("mode,expected", THINKING_CASES)
def test_thinking_modes(mode, expected):
    assert deltas(run(THINKING, mode=mode)) == expected


def test_parallel_tool_calls_use_ordinals_not_block_indexes():
    events = [start(), block(0, "thinking"), delta(0, "thinking_delta", "plan"), stop(0),
              block(1, "text"), delta(1, "text_delta", "Checking."), stop(1),
              block(2, "tool_use", id="toolu_A", name="get_weather"),
              block(3, "tool_use", id="toolu_B", name="get_weather"),
              delta(2, "input_json_delta", ""),
              delta(2, "input_json_delta", '{"city":'), delta(3, "input_json_delta", '{"city":"Rome"}'),
              delta(2, "input_json_delta", '"Zürich"}'), stop(2), stop(3), *end("tool_use")]
    got = deltas(run(events, mode="drop"))
    assert got == [
        ROLE,
        ({"content": "Checking."}, None),
        ({"tool_calls": [{"index": 0, "id": "toolu_A", "type": "function",
                          "function": {"name": "get_weather", "arguments": ""}}]}, None),
        ({"tool_calls": [{"index": 1, "id": "toolu_B", "type": "function",
                          "function": {"name": "get_weather", "arguments": ""}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}, None),
        ({"tool_calls": [{"index": 1, "function": {"arguments": '{"city":"Rome"}'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '"Zürich"}'}}]}, None),
        ({}, "tool_calls"),
    ]


def test_tool_input_given_at_block_start_is_sent_at_block_stop():
    events = [start(), block(0, "tool_use", id="toolu_A", name="now", input={"tz": "UTC"}), stop(0),
              *end("tool_use")]
    assert deltas(run(events))[2] == ({"tool_calls": [{"index": 0, "function":
                                                       {"arguments": '{"tz":"UTC"}'}}]}, None)


def test_tool_names_mapped_back():
    events = [start(), block(0, "tool_use", id="toolu_A", name="ns_tool"), stop(0), *end("tool_use")]
    first_call = deltas(run(events, names={"ns_tool": "ns.tool"}))[1][0]["tool_calls"][0]
    assert first_call["function"]["name"] == "ns.tool"


def test_server_tool_blocks_ignored():
    events = [start(), block(0, "server_tool_use", id="srvtoolu_1", name="web_search", input={}),
              delta(0, "input_json_delta", '{"query":"x"}'), stop(0),
              block(1, "web_search_tool_result", tool_use_id="srvtoolu_1", content=[]), stop(1),
              block(2, "text"), delta(2, "text_delta", "Found"),
              {"type": "content_block_delta", "index": 2,
               "delta": {"type": "citations_delta", "citation": {}}}, stop(2),
              block(3, "tool_use", id="toolu_1", name="f"), stop(3), *end("tool_use")]
    got = deltas(run(events))
    assert got[1] == ({"content": "Found"}, None)
    assert got[2][0]["tool_calls"][0]["index"] == 0  # the first function tool, whatever came before


def test_non_ascii_and_escapes_written_compactly():
    stream = OpenAIStream(model=MODEL, id=ID, created=CREATED, include_usage=False)
    stream.feed(start())
    raw = stream.feed(delta(0, "text_delta", 'Grüße "🙂"\n'))
    assert "Grüße".encode() in raw and b", " not in raw and b'": ' not in raw
    assert parse(raw)[0]["choices"][0]["delta"] == {"content": 'Grüße "🙂"\n'}


def test_lone_surrogate_does_not_break_the_stream():
    stream = OpenAIStream(model=MODEL, id=ID, created=CREATED, include_usage=False)
    assert parse(stream.feed(delta(0, "text_delta", "a\ud83d")))[0]["choices"][0]["delta"]["content"]


def test_silent_events_emit_nothing():
    stream = OpenAIStream(model=MODEL, id=ID, created=CREATED, include_usage=True)
    stream.feed(start())
    for event in (PING, block(0, "text"), delta(0, "text_delta", ""), delta(0, "signature_delta", "s"),
                  stop(0), {"type": "brand_new_event"}, {"type": "message_stop"},
                  delta(0, "text_delta", "after the end")):
        assert stream.feed(event) == b""


def test_text_in_block_start_is_sent():
    events = [start(), block(0, "text", text="Pre"), delta(0, "text_delta", "fill"), stop(0), *end()]
    assert deltas(run(events))[1:3] == [({"content": "Pre"}, None), ({"content": "fill"}, None)]


def test_message_stop_without_message_delta_still_finishes():
    chunks = run([start(), block(0, "text"), delta(0, "text_delta", "x"), stop(0),
                  {"type": "message_stop"}])
    assert deltas(chunks)[-1] == ({}, "stop")
    assert chunks[-1] == "[DONE]"


ERROR_CASES = [
    ("overloaded_error", "server_error"), ("api_error", "server_error"),
    ("rate_limit_error", "rate_limit_error"), ("invalid_request_error", "invalid_request_error"),
    ("request_too_large", "invalid_request_error"), ("authentication_error", "authentication_error"),
    ("permission_error", "permission_error"), ("not_found_error", "not_found_error"),
    ("something_else", "server_error"),
]


@pytest.mark.parametrize("kind,expected", ERROR_CASES)
def test_error_mid_stream(kind, expected):
    stream = OpenAIStream(model=MODEL, id=ID, created=CREATED, include_usage=True)
    head = b"".join(stream.feed(e) for e in HELLO[:4])
    error = stream.feed({"type": "error", "error": {"type": kind, "message": "Overloaded"}})
    assert parse(error) == [{"error": {"message": "Overloaded", "type": expected, "param": None,
                                       "code": None}}]
    assert stream.feed(delta(0, "text_delta", "late")) == b""
    assert stream.close() == b"data: [DONE]\n\n"
    assert stream.close() == b""
    assert deltas(parse(head)) == [ROLE, ({"content": "Hel"}, None)]


@pytest.mark.parametrize("cut", [0, 1, 4, 6])
def test_early_end(cut):
    chunks = run(HELLO[:cut], include_usage=True)
    assert chunks[-3:] == [{**ENVELOPE, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                                     "finish_reason": "stop"}]}, LOST, "[DONE]"]
    assert all("usage" not in c for c in chunks if isinstance(c, dict))


def test_early_end_after_message_delta_does_not_finish_twice():
    chunks = run(HELLO[:-1], include_usage=True)
    assert [d for d in deltas(chunks) if d[1]] == [({}, "stop")]
    assert chunks[-2:] == [LOST, "[DONE]"]


def test_first_chunk_only_once():
    assert deltas(run([start(), start(), *end()])) == [ROLE, ({}, "stop")]


def test_round_trip_through_openai_sdk_accumulator():
    """The openai SDK's own stream accumulator reads our chunks into a full completion."""
    openai_lib = pytest.importorskip("openai")
    from openai.lib.streaming.chat import ChatCompletionStreamState

    events = [start(), block(0, "thinking"), delta(0, "thinking_delta", "t"), stop(0),
              block(1, "text"), delta(1, "text_delta", "Hi"), stop(1),
              block(2, "tool_use", id="toolu_A", name="f"), delta(2, "input_json_delta", '{"a":1}'),
              stop(2), *end("tool_use")]
    state = ChatCompletionStreamState()
    for chunk in run(events, include_usage=True):
        if chunk != "[DONE]":
            state.handle_chunk(openai_lib.types.chat.ChatCompletionChunk.model_validate(chunk))
    done = state.get_final_completion()
    assert done.id == ID and done.model == MODEL
    message = done.choices[0].message
    assert message.content == "Hi" and done.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls[0].function.arguments == '{"a":1}'
    assert done.usage.prompt_tokens == 25 and done.usage.completion_tokens == 15


def test_unknown_thinking_output_rejected():
    with pytest.raises(ValueError):
        OpenAIStream(model=MODEL, id=ID, created=CREATED, include_usage=False, thinking_output="xml")
