"""Hub stream events → Gemini stream bytes, SSE and JSON-array forms (conversions.md §9.4, gemini.md §10.2)."""

from __future__ import annotations

import io
import json

import pytest

from clewdr_lite.protocol.gemini import GeminiStream
from clewdr_lite.protocol.sse import SSEDecoder

MODEL, RID = "gemini-2.5-flash", "resp-1"
LOST = {"error": {"code": 500, "message": "upstream connection lost", "status": "INTERNAL"}}


# ------------------------------------------------------------------------------- event builders

def start(input_tokens=25, **usage) -> dict:
    return {"type": "message_start",
            "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "c",
                        "stop_reason": None, "stop_sequence": None,
                        "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage}}}


def block(index, kind, **fields) -> dict:
    blocks = {"text": {"type": "text", "text": ""},
              "thinking": {"type": "thinking", "thinking": "", "signature": ""},
              "tool_use": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
              "server_tool_use": {"type": "server_tool_use", "id": "srv", "name": "web_search", "input": {}}}
    return {"type": "content_block_start", "index": index, "content_block": {**blocks[kind], **fields}}


def delta(index, kind, value) -> dict:
    key = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature",
           "input_json_delta": "partial_json"}[kind]
    return {"type": "content_block_delta", "index": index, "delta": {"type": kind, key: value}}


def stop(index) -> dict:
    return {"type": "content_block_stop", "index": index}


def end(reason="end_turn", output_tokens=15, **usage) -> list:
    return [{"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
             "usage": {"output_tokens": output_tokens, **usage}}, {"type": "message_stop"}]


def chunk(*parts) -> dict:
    return {"candidates": [{"content": {"role": "model", "parts": list(parts)}, "index": 0}],
            "modelVersion": MODEL, "responseId": RID}


def final(reason="STOP", prompt=25, output=15) -> dict:
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": reason,
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": output,
                              "totalTokenCount": prompt + output},
            "modelVersion": MODEL, "responseId": RID}


# ------------------------------------------------------------------------------------- parsing

def parse_sse(raw: bytes) -> list:
    assert raw == b"" or raw.endswith(b"\n\n")
    frames = raw.decode().split("\n\n")[:-1]
    for frame in frames:
        assert frame.startswith("data: ") and "\n" not in frame, frame
    return [json.loads(frame[6:]) for frame in frames]


def run(events, *, sse=True, include_thoughts=False, close=True, names=None) -> list:
    stream = GeminiStream(model=MODEL, response_id=RID, include_thoughts=include_thoughts, sse=sse,
                          tool_names=names)
    pieces = [stream.feed(e) for e in events]
    if close:
        pieces.append(stream.close())
        assert stream.close() == b""  # close() is once
    raw = b"".join(pieces)
    return parse_sse(raw) if sse else json.loads(raw)


SIMPLE = [start(), block(0, "text"), {"type": "ping"}, delta(0, "text_delta", "Hel"),
          delta(0, "text_delta", "lo"), stop(0), *end()]


def test_text_stream_sse():
    assert run(SIMPLE) == [chunk({"text": "Hel"}), chunk({"text": "lo"}), final()]


def test_text_stream_json_array_is_incremental():
    stream = GeminiStream(model=MODEL, response_id=RID, include_thoughts=False, sse=False)
    pieces = [stream.feed(e) for e in SIMPLE] + [stream.close()]
    written = [p for p in pieces if p]
    assert written[0].startswith(b"[{") and all(p.startswith(b",\n{") for p in written[1:-1])
    assert written[-1] == b"]"
    assert json.loads(b"".join(pieces)) == [chunk({"text": "Hel"}), chunk({"text": "lo"}), final()]


THOUGHT_EVENTS = [start(), block(0, "thinking"), delta(0, "thinking_delta", "let me"),
                  delta(0, "signature_delta", "sig"), stop(0), block(1, "text"), delta(1, "text_delta", "A"),
                  stop(1), *end()]


def test_thoughts_only_when_asked():
    assert run(THOUGHT_EVENTS, include_thoughts=True) == [
        chunk({"text": "let me", "thought": True}), chunk({"text": "A"}), final()]
    assert run(THOUGHT_EVENTS) == [chunk({"text": "A"}), final()]


def test_function_call_emitted_once_complete():
    events = [start(), block(0, "text"), delta(0, "text_delta", "Checking."), stop(0),
              block(1, "tool_use", id="read_file_1_0", name="read_file"),
              delta(1, "input_json_delta", '{"file_pa'), delta(1, "input_json_delta", 'th": "a"}'), stop(1),
              block(2, "tool_use", id="t2", name="ls"), delta(2, "input_json_delta", "{'dir': 'x',}"), stop(2),
              *end("tool_use")]
    stream = GeminiStream(model=MODEL, response_id=RID, include_thoughts=False, sse=True)
    outputs = [stream.feed(e) for e in events]
    assert outputs[5] == outputs[6] == b""  # nothing while the arguments stream
    assert parse_sse(b"".join(outputs) + stream.close()) == [
        chunk({"text": "Checking."}),
        chunk({"functionCall": {"id": "read_file_1_0", "name": "read_file", "args": {"file_path": "a"}}}),
        chunk({"functionCall": {"id": "t2", "name": "ls", "args": {"dir": "x"}}}),  # repaired leniently
        final("STOP")]  # tool_use → STOP (§12)


def test_call_input_in_start_block_and_unclosed_calls():
    events = [start(), block(0, "tool_use", id="a", name="f", input={"k": 1}), stop(0),
              block(1, "tool_use", id="b", name="g"), delta(1, "input_json_delta", '{"x":2}'),
              *end("tool_use")]  # block 1 never closed
    assert run(events) == [chunk({"functionCall": {"id": "a", "name": "f", "args": {"k": 1}}}),
                           chunk({"functionCall": {"id": "b", "name": "g", "args": {"x": 2}}}), final()]


def test_tool_names_restored_and_server_tools_hidden():
    events = [start(), block(0, "server_tool_use"), delta(0, "input_json_delta", '{"query":"x"}'), stop(0),
              block(1, "tool_use", id="a", name="mcp_fs_read"), stop(1), *end()]
    assert run(events, names={"mcp_fs_read": "mcp.fs:read"}) == [
        chunk({"functionCall": {"id": "a", "name": "mcp.fs:read", "args": {}}}), final()]


def test_text_in_block_start_is_sent():
    assert run([start(), block(0, "text", text="pre"), stop(0), *end()]) == [chunk({"text": "pre"}), final()]


FINISH_CASES = [("end_turn", "STOP"), ("max_tokens", "MAX_TOKENS"), ("refusal", "SAFETY"),
                ("stop_sequence", "STOP"), ("model_context_window_exceeded", "MAX_TOKENS")]


@pytest.mark.parametrize("reason, finish", FINISH_CASES)
def test_finish_reasons(reason, finish):
    assert run([start(), *end(reason)])[-1]["candidates"][0]["finishReason"] == finish


def test_usage_cumulative_and_cached():
    events = [start(10, cache_read_input_tokens=90), delta(0, "text_delta", "x"),
              {"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": 3}},
              *end(output_tokens=7)]
    last = run(events)[-1]
    assert last["usageMetadata"] == {"promptTokenCount": 100, "candidatesTokenCount": 7, "totalTokenCount": 107,
                                     "cachedContentTokenCount": 90}


def test_message_stop_without_message_delta():
    assert run([start(), {"type": "message_stop"}])[-1]["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize("sse", [True, False])
def test_error_event_then_end(sse):
    events = [start(), block(0, "text"), delta(0, "text_delta", "par"),
              {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
              delta(0, "text_delta", "ignored"), *end()]
    assert run(events, sse=sse) == [chunk({"text": "par"}),
                                    {"error": {"code": 503, "message": "Overloaded", "status": "UNAVAILABLE"}}]


@pytest.mark.parametrize("sse", [True, False])
def test_early_end_is_an_error(sse):
    assert run([start(), block(0, "text"), delta(0, "text_delta", "par")], sse=sse) == [chunk({"text": "par"}), LOST]


@pytest.mark.parametrize("sse", [True, False])
def test_nothing_at_all(sse):
    assert run([], sse=sse) == [LOST]


def test_error_chunk_starts_with_error_key():
    """google-genai recognises an in-stream error only by the text `{"error":` at the start."""
    stream = GeminiStream(model=MODEL, response_id=RID, include_thoughts=False, sse=True)
    raw = stream.feed({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}})
    assert raw.startswith(b'data: {"error":')


def test_unicode_is_kept():
    raw = GeminiStream(model=MODEL, response_id=RID, include_thoughts=False, sse=True).feed(
        delta(0, "text_delta", "naïve 🌍 \"q\"\n"))
    assert "naïve 🌍".encode() in raw
    assert parse_sse(raw) == [chunk({"text": "naïve 🌍 \"q\"\n"})]


def test_sse_bytes_decode_with_our_decoder_at_every_split():
    raw = b"".join(GeminiStream(model=MODEL, response_id=RID, include_thoughts=True, sse=True).feed(e)
                   for e in THOUGHT_EVENTS)
    whole = [json.loads(e.data) for e in SSEDecoder().feed(raw)]
    assert len(whole) == 3
    for cut in range(1, len(raw)):
        decoder = SSEDecoder()
        events = decoder.feed(raw[:cut]) + decoder.feed(raw[cut:]) + decoder.close()
        assert [json.loads(e.data) for e in events] == whole


# ------------------------------------------------------------------- google-genai as the reader

def _genai_read(raw: bytes) -> list:
    """Our bytes through google-genai 3.4's own SSE splitter and response model."""
    requests = pytest.importorskip("requests")
    api_client = pytest.importorskip("google.genai._api_client")
    from google.genai import models, types

    body = requests.Response()
    body.status_code, body.raw = 200, io.BytesIO(raw)
    response = api_client.HttpResponse(headers={}, response_stream=body)
    return [types.GenerateContentResponse._from_response(
        response=models._GenerateContentResponse_from_mldev(segment), kwargs={})
        for segment in response.segments()]


def test_google_genai_reads_the_stream():
    events = [start(), block(0, "thinking"), delta(0, "thinking_delta", "hmm"), stop(0),
              block(1, "text"), delta(1, "text_delta", "Hello"), delta(1, "text_delta", " world"), stop(1),
              block(2, "tool_use", id="c1", name="read_file"), delta(2, "input_json_delta", '{"p":"a"}'), stop(2),
              *end("tool_use")]
    stream = GeminiStream(model=MODEL, response_id=RID, include_thoughts=True, sse=True)
    raw = b"".join(stream.feed(e) for e in events) + stream.close()
    responses = _genai_read(raw)
    assert responses[0].candidates[0].content.parts[0].thought is True
    assert "".join(r.text or "" for r in responses[1:]) == "Hello world"
    (call,) = [c for r in responses for c in r.function_calls or ()]
    assert (call.id, call.name, call.args) == ("c1", "read_file", {"p": "a"})
    assert responses[-1].candidates[0].finish_reason == "STOP"
    assert responses[-1].usage_metadata.total_token_count == 40
    assert responses[-1].model_version == MODEL and responses[-1].response_id == RID


def test_google_genai_raises_the_in_stream_error():
    errors = pytest.importorskip("google.genai.errors")
    stream = GeminiStream(model=MODEL, response_id=RID, include_thoughts=False, sse=True)
    raw = stream.feed(start()) + stream.feed({"type": "error", "error": {"type": "rate_limit_error",
                                                                         "message": "slow down"}})
    (segment,) = [json.loads(e.data) for e in SSEDecoder().feed(raw)]
    with pytest.raises(errors.APIError) as info:
        errors.APIError.raise_error(segment["error"]["code"], segment, None)
    assert info.value.code == 429 and "slow down" in str(info.value)
