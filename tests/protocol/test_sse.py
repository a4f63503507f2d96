"""SSE decoder and encoder: realistic streams replayed whole, cut at every byte, and byte by byte."""

from __future__ import annotations

import json
import random

import pytest

from clewdr_lite.protocol import sse
from clewdr_lite.protocol.sse import (COMMENT_KEEPALIVE, Event, SSEDecoder, UsageScanner, dumps, encode,
                                      encode_json, loads, loads_bytes)

ANTHROPIC = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant",'
    b'"content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":25,"output_tokens":1}}}\n'
    b"\n"
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n'
    b"\n"
    b"event: ping\n"
    b'data: {"type": "ping"}\n'
    b"\n"
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}\n'
    b"\n"
    b"event: content_block_delta\n"
    + 'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" 世界 👋🏽 ¿qué?"}}\n'.encode()
    + b"\n"
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":0}\n'
    b"\n"
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":15}}\n'
    b"\n"
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n'
    b"\n"
)

ANTHROPIC_EVENTS = [
    ("message_start", "message_start"),
    ("content_block_start", "content_block_start"),
    ("ping", "ping"),
    ("content_block_delta", "content_block_delta"),
    ("content_block_delta", "content_block_delta"),
    ("content_block_stop", "content_block_stop"),
    ("message_delta", "message_delta"),
    ("message_stop", "message_stop"),
]

WITH_COMMENTS = (
    COMMENT_KEEPALIVE
    + b":\n: keep-alive\n\n"
    + ANTHROPIC.replace(b"event: ping\n", b": a comment inside an event\nevent: ping\n")
    + b": trailing comment\n\n"
)

MULTILINE = (
    "data: first line\ndata: second line\ndata:\ndata:  two spaces kept as one\n\n"
    "event: note\ndata\n\n"  # a field name alone: data is ""
    "event: dropped\n\n"  # no data lines: not dispatched, and the event name does not leak
    "id: 7\nretry: 1000\nunknown: ignored\ndata:no space\n\n"
    "data: id persists\n\n"
    "id\ndata: id reset to empty\n\n"
    "data: 日本語の文字列と絵文字 🧪👩‍🔬\ndata: 한국어\n\n"
).encode()

MULTILINE_EVENTS = [
    Event("", "first line\nsecond line\n\n two spaces kept as one", None),
    Event("note", "", None),
    Event("", "no space", "7"),
    Event("", "id persists", "7"),
    Event("", "id reset to empty", ""),
    Event("", "日本語の文字列と絵文字 🧪👩‍🔬\n한국어", ""),
]

OPENAI = (
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"\xc3\xa9t\xc3\xa9"}}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)


def _line_endings(stream: bytes, end: bytes) -> bytes:
    return stream.replace(b"\n", end)


def _mixed(stream: bytes) -> bytes:
    """Rotate through \\n, \\r\\n and \\r line by line (never \\r then a blank \\n line: that is \\r\\n)."""
    out, prev = [], b""
    for i, line in enumerate(stream.split(b"\n")[:-1]):
        end = (b"\n", b"\r\n", b"\r")[i % 3]
        if prev == b"\r" and not line and end == b"\n":
            end = b"\r\n"
        out.append(line + end)
        prev = end
    return b"".join(out)


FIXTURES = {
    "anthropic-lf": ANTHROPIC,
    "anthropic-crlf": _line_endings(ANTHROPIC, b"\r\n"),
    "anthropic-cr": _line_endings(ANTHROPIC, b"\r"),
    "anthropic-mixed": _mixed(ANTHROPIC),
    "anthropic-bom": b"\xef\xbb\xbf" + ANTHROPIC,
    "comments-lf": WITH_COMMENTS,
    "comments-crlf": _line_endings(WITH_COMMENTS, b"\r\n"),
    "multiline-lf": MULTILINE,
    "multiline-crlf": _line_endings(MULTILINE, b"\r\n"),
    "multiline-cr": _line_endings(MULTILINE, b"\r"),
    "multiline-mixed": _mixed(MULTILINE),
    "openai-lf": OPENAI,
    "openai-crlf": _line_endings(OPENAI, b"\r\n"),
}


def decode(chunks) -> list[Event]:
    decoder = SSEDecoder()
    events: list[Event] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def expected(name: str) -> list[Event]:
    return decode([FIXTURES[name]])


def test_anthropic_stream_decodes_to_the_expected_events():
    events = decode([ANTHROPIC])
    assert [(e.event, json.loads(e.data)["type"]) for e in events] == ANTHROPIC_EVENTS
    assert json.loads(events[4].data)["delta"]["text"] == " 世界 👋🏽 ¿qué?"
    assert events[2].data == '{"type": "ping"}'
    assert all(e.id is None for e in events)


@pytest.mark.parametrize(
    "name", ["anthropic-crlf", "anthropic-cr", "anthropic-mixed", "anthropic-bom", "comments-lf", "comments-crlf"]
)
def test_line_endings_comments_and_bom_do_not_change_the_events(name):
    assert expected(name) == decode([ANTHROPIC])


@pytest.mark.parametrize("name", ["multiline-lf", "multiline-crlf", "multiline-cr", "multiline-mixed"])
def test_multiline_fields_and_ids(name):
    assert expected(name) == MULTILINE_EVENTS


def test_openai_stream():
    events = decode([OPENAI])
    assert [e.data for e in events][-1] == "[DONE]"
    assert json.loads(events[0].data)["choices"][0]["delta"]["content"] == "été"
    assert expected("openai-crlf") == events


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_single_cut(name):
    stream, want = FIXTURES[name], expected(name)
    for i in range(len(stream) + 1):
        assert decode([stream[:i], stream[i:]]) == want, f"cut at byte {i}"


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_one_byte_at_a_time(name):
    stream = FIXTURES[name]
    assert decode([stream[i : i + 1] for i in range(len(stream))]) == expected(name)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_random_multi_cuts_and_empty_chunks(name):
    stream, want, rng = FIXTURES[name], expected(name), random.Random(name)
    for _ in range(200):
        cuts = sorted(rng.sample(range(len(stream) + 1), rng.randint(2, 6)))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
        assert decode(chunks) == want, cuts


MARKERS = (b"message_delta", b"message_stop", b"persists")


def decode_sparse(chunks) -> list[Event]:
    decoder = SSEDecoder()
    events: list[Event] = []
    for chunk in chunks:
        events += decoder.feed_sparse(chunk, MARKERS)
    return events + decoder.close()


def wanted(event: Event) -> bool:
    return any(m.decode() in event.event + event.data for m in MARKERS)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_sparse_feeding_returns_every_marked_event_and_only_real_ones(name):
    stream, want, rng = FIXTURES[name], expected(name), random.Random("sparse" + name)
    cuttings = [[stream]] + [[stream[:i], stream[i:]] for i in range(0, len(stream) + 1, 7)]
    for _ in range(200):
        cuts = sorted(rng.sample(range(len(stream) + 1), rng.randint(2, 6)))
        cuttings.append([stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])])
    for chunks in cuttings:
        got = decode_sparse(chunks)
        assert [e for e in got if wanted(e)] == [e for e in want if wanted(e)], chunks
        rest = iter(want)
        assert all(any(e == w for w in rest) for e in got), chunks  # a subsequence of feed()'s


def test_sparse_feeding_passes_over_whole_unmarked_events_undecoded():
    decoder = SSEDecoder()
    head, deltas = ANTHROPIC.split(b"event: content_block_delta\n", 1)
    assert [e.event for e in decoder.feed(head)] == ["message_start", "content_block_start", "ping"]
    body = b"event: content_block_delta\n" + deltas
    cut = body.index(b"event: message_delta")
    assert decoder.feed_sparse(body[:cut], MARKERS) == []      # two deltas and a block stop skipped
    assert [e.event for e in decoder.feed_sparse(body[cut:], MARKERS)] == ["message_delta", "message_stop"]
    # an id field outlives its event: never skipped
    decoder = SSEDecoder()
    decoder.feed(b"data: first\n\n")
    assert decoder.feed_sparse(b"id: 9\ndata: x\n\n", MARKERS) == [Event("", "x", "9")]


@pytest.mark.parametrize(
    ("chunks", "events"),
    [
        # \r\n split across chunks: one line end, not a line end plus a blank line.
        ([b"data: a\r", b"\ndata: b\r\n\r\n"], [Event("", "a\nb", None)]),
        ([b"data: a\r", b"\n", b"\r\n"], [Event("", "a", None)]),
        ([b"data: a\r", b"", b"\n\r", b"\n"], [Event("", "a", None)]),
        # \r then \r is two line ends: the second one is a blank line that dispatches.
        ([b"data: a\r", b"\rdata: b\r\r"], [Event("", "a", None), Event("", "b", None)]),
        ([b"data: a\r\n\r", b"\ndata: b\n\n"], [Event("", "a", None), Event("", "b", None)]),
        # A lone \n opening a chunk after a complete \r\n is a blank line.
        ([b"data: a\r\n", b"\ndata: b\n\n"], [Event("", "a", None), Event("", "b", None)]),
    ],
)
def test_cr_split_across_chunks(chunks, events):
    assert decode(chunks) == events


def test_utf8_split_inside_a_character():
    raw = "data: 🙂é中\n\n".encode()
    for i in range(len(raw) + 1):
        assert decode([raw[:i], raw[i:]]) == [Event("", "🙂é中", None)]


def test_invalid_utf8_becomes_replacement_character():
    assert decode([b"data: a\xffb\n\n"]) == [Event("", "a\ufffdb", None)]


def test_bom_is_stripped_only_at_the_start():
    assert decode([b"\xef\xbb", b"\xbfdata: x\n\n"]) == [Event("", "x", None)]
    assert decode([b"data: x\n\n\xef\xbb\xbfdata: y\n\n"]) == [Event("", "x", None)]


def test_feed_returns_events_as_soon_as_their_blank_line_arrives():
    decoder = SSEDecoder()
    assert decoder.feed(b"event: ping\ndata: {}\n") == []
    assert decoder.feed(b"\nevent: message_stop\ndata: 1") == [Event("ping", "{}", None)]
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\n") == [Event("message_stop", "1", None)]
    assert decoder.close() == []


@pytest.mark.parametrize(
    ("stream", "events"),
    [
        (b"data: [DONE]\n", [Event("", "[DONE]", None)]),  # no final blank line: still dispatched
        (b"data: [DONE]", [Event("", "[DONE]", None)]),  # unterminated last line counts as a line
        (b"data: [DONE]\r", [Event("", "[DONE]", None)]),
        (b"event: x\ndata: 1\n\nevent: y\n", [Event("x", "1", None)]),  # no data: nothing
        (b": only a comment", []),
        (b"", []),
    ],
)
def test_close_dispatches_a_final_event_that_has_data(stream, events):
    assert decode([stream]) == events


def test_keepalive_comment_decodes_to_nothing():
    assert decode([COMMENT_KEEPALIVE * 3]) == []


def test_encode_exact_bytes():
    assert encode("hi") == b"data: hi\n\n"
    assert encode("hi", "ping") == b"event: ping\ndata: hi\n\n"
    assert encode("a\nb\r\nc\rd", "x") == b"event: x\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    assert encode("") == b"data: \n\n"


def test_encode_json_is_compact_and_keeps_non_ascii():
    obj = {"type": "content_block_delta", "delta": {"text": "é 世界\n"}}
    assert encode_json(obj, "content_block_delta") == (
        'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"é 世界\\n"}}\n\n'
    ).encode()
    assert encode_json([1, None]) == b"data: [1,null]\n\n"


def test_event_name_with_a_line_end_is_refused():
    with pytest.raises(ValueError):
        encode("x", "a\nb")
    with pytest.raises(ValueError):
        encode_json({}, "a\rb")


@pytest.mark.parametrize(
    ("data", "decoded"),
    [
        ("plain", "plain"),
        ("", ""),
        (" leading space", " leading space"),
        ("two\nlines", "two\nlines"),
        ("trailing newline\n", "trailing newline\n"),
        ("\n\n", "\n\n"),
        ("crlf\r\nand cr\r", "crlf\nand cr\n"),  # SSE has one line end: \n
        ("sep\u2028and\x85kept", "sep\u2028and\x85kept"),  # not SSE line ends
        (": looks like a comment", ": looks like a comment"),
        ("emoji 👩‍🚀 中文", "emoji 👩‍🚀 中文"),
    ],
)
def test_encode_decode_round_trip(data, decoded):
    for event in (None, "message"):
        raw = encode(data, event)
        want = [Event(event or "", decoded, None)]
        assert decode([raw]) == want
        assert decode([raw[i : i + 1] for i in range(len(raw))]) == want


def test_encode_json_round_trip_of_a_whole_stream():
    objs = [json.loads(e.data) for e in decode([ANTHROPIC])]
    raw = b"".join(encode_json(o, o["type"]) for o in objs)
    assert [(e.event, json.loads(e.data)) for e in decode([raw])] == [(o["type"], o) for o in objs]


def test_json_bytes_is_compact_utf8_and_keeps_a_lone_surrogate_escaped():
    from clewdr_lite.protocol.sse import json_bytes
    assert json_bytes({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()
    assert json_bytes({"a": "\ud83d é"}) == b'{"a":"\\ud83d \\u00e9"}'  # JSON allows it, UTF-8 does not
    assert json.loads(json_bytes({"a": "\ud83d"})) == {"a": "\ud83d"}


def test_byte_relay_writes_an_error_after_a_blank_line_only_when_an_event_was_left_open():
    from clewdr_lite.protocol.sse import ByteRelay

    class Upper(ByteRelay):
        def relay(self, data: bytes) -> bytes:
            return data.upper()

        def error_bytes(self, event: dict) -> bytes:
            return b"data: " + event["error"]["message"].encode() + b"\n\n"

    error = {"type": "error", "error": {"message": "lost"}}
    out = Upper()
    assert out.feed(b"data: a\n\n") == b"DATA: A\n\n" and out.feed(error) == b"data: lost\n\n"
    out = Upper()
    assert out.feed(b"data: {\"cut") == b"DATA: {\"CUT" and out.feed(error) == b"\n\ndata: lost\n\n"
    out = Upper()
    assert out.feed(b"data: a\r\n\r\n") and out.feed(error) == b"data: lost\n\n" and out.close() == b""


# ---------------------------------------------------------------- usage read from relayed bytes

OPENAI_USAGE = {"prompt_tokens": 14, "completion_tokens": 2, "total_tokens": 16}
OPENAI_BODY = (b'data: {"id":"1","choices":[{"delta":{"content":"say \\"usage\\": {\\"prompt_tokens\\": 9}"}}],'
               b'"usage":null}\n\n'
               b'data: {"id":"1","choices":[{"delta":{"content":"usage"},"finish_reason":"stop"}],"usage" : null}\n\n'
               b'data: {"id":"1","choices":[],"usage": ' + json.dumps(OPENAI_USAGE).encode() + b'}\n\n'
               b'data: [DONE]\n\n')
GEMINI_BODY = b"[" + b",\n".join(json.dumps({"candidates": [{"content": {"parts": [{"text": f"part {n}"}]}}],
                                              "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": n}}).encode()
                                  for n in (1, 2, 3)) + b"]"


def scan(key: str, body: bytes, cuts: list[int]) -> list[dict]:
    found: list[dict] = []
    scanner = UsageScanner(key, found.append)
    edges = [0, *cuts, len(body)]
    for a, b in zip(edges, edges[1:]):
        scanner.feed(body[a:b])
    return found


@pytest.mark.parametrize("key, body, expected", [
    ("usage", OPENAI_BODY, [OPENAI_USAGE]),
    ("usageMetadata", GEMINI_BODY, [{"promptTokenCount": 7, "candidatesTokenCount": n} for n in (1, 2, 3)]),
])
def test_usage_is_read_from_bytes_however_they_are_cut(key, body, expected):
    """Nulls and the key inside a string are passed over; values cut by a chunk's end are joined."""
    rng = random.Random(7)
    assert scan(key, body, []) == expected
    assert scan(key, body, list(range(1, len(body)))) == expected  # a byte at a time
    for _ in range(500):
        cuts = sorted(rng.sample(range(1, len(body)), rng.randint(1, 30)))
        assert scan(key, body, cuts) == expected, cuts


def test_usage_scanning_skips_what_is_not_a_usage_value():
    big = b'{"usage": {"x": "' + b"a" * (UsageScanner.LIMIT + 10) + b'"}}'
    assert scan("usage", big, [100, 5000]) == []  # longer than a usage object can be
    assert scan("usage", b'["usage", {"usage": nope}, {"usage": {"prompt_tokens": 1}}]', [12]) == [{"prompt_tokens": 1}]
    assert scan("usage", b'data: {"usage": {"prompt_tokens": 1', []) == []  # cut and never completed


@pytest.mark.parametrize("data", [
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hé \\ud83d\\ude00"}}',
    '[1, 2.5, "x", null, true, false]', '"text"', "42", "-0.5e3", "null", "NaN", "-Infinity",
    '{"a":1}  ', '{"a":1}\r\n', ' {"a":1}', '\t[1]', b'{"a":1}', '{"a":"\\ud800"}', bytearray(b'[1, "x"]'),
])
def test_loads_gives_what_json_loads_gives(data):
    value = loads(data)
    expected = json.loads(data)
    assert value == expected or (value != value and expected != expected)  # NaN is not equal to itself
    assert type(value) is type(expected)


@pytest.mark.parametrize("data", ["", "   ", "[DONE]", '{"a":', '{"a":1} x', '{"a":1}{"b":2}', "tru",
                                  "\ufeff{}", '{"a":1}\x00', "'a'", "{a:1}"])
def test_loads_rejects_what_json_loads_rejects(data):
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(data)
    with pytest.raises(json.JSONDecodeError) as mine:
        loads(data)
    assert isinstance(mine.value, ValueError)
    if not data.startswith("\ufeff"):  # json names the byte-order mark; here it is a value that is missing
        assert (mine.value.msg, mine.value.pos) == (expected.value.msg, expected.value.pos)


@pytest.mark.parametrize("raw", [
    '{"text":"Hé \U0001F600"}'.encode(), b'{"a":1}', b"{}", b'{"a":"\xed\xa0\x80"}',  # an encoded lone surrogate
    '{"a":"é"}'.encode("utf-16-le"), '{"a":"é"}'.encode("utf-16"), '{"a":"é"}'.encode("utf-32"),
    '{"a":1}'.encode("utf-8-sig"), b' {"a":1}', b"[1,2]",
])
def test_loads_bytes_gives_what_json_loads_gives(raw):
    assert loads_bytes(raw) == json.loads(raw)


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a":1} x', b'{"a":"\xff"}', b"\x00\x00"])
def test_loads_bytes_rejects_what_json_loads_rejects(raw):
    with pytest.raises(ValueError):
        json.loads(raw)
    with pytest.raises(ValueError):
        loads_bytes(raw)


@pytest.mark.parametrize("data", [None, 42, 1.5, ["{}"], {"a": 1}])
def test_loads_refuses_what_is_not_text_as_json_loads_does(data):
    with pytest.raises(TypeError) as expected:
        json.loads(data)
    with pytest.raises(TypeError) as mine:
        loads(data)
    assert str(mine.value) == str(expected.value)


def test_loads_nested_too_deep_raises_as_json_does():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecursionError):
        json.loads(deep)
    with pytest.raises(RecursionError):
        loads(deep)


COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@pytest.mark.parametrize("value", [
    {"type": "message", "content": [{"type": "text", "text": "Hé \u2028 \ud83d\ude00 \"q\" \\ \n\t\x00"}],
     "usage": {"input_tokens": 12, "output_tokens": 0}, "stop": None, "ok": True, "no": False},
    [1, -2, 3.25, -0.0, 1e300, 10 ** 30, float("nan"), float("inf"), -float("inf")],
    "a lone surrogate \ud800", 7, 2.5, None, True, [], {}, ((1, 2), [3]), {"nested": [[{"deep": [[]]}]]},
])
def test_dumps_writes_what_the_compact_json_encoder_writes(value):
    assert dumps(value) == COMPACT.encode(value)


def test_dumps_refuses_what_json_cannot_write():
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"a": object()})
    with pytest.raises(TypeError):
        dumps({(1, 2): "tuple keys are not JSON"})
    assert dumps({"after": "a failure"}) == '{"after":"a failure"}'  # nothing left over


@pytest.mark.parametrize("missing", ["no accelerator", "other arguments", "other text"])
def test_without_json_s_c_encoder_dumps_is_json_s_own(monkeypatch, missing):
    real = json.encoder.c_make_encoder

    def other(markers, *rest):  # a Python whose C encoder differs for the arguments sse passes
        if markers is not None:  # JSONEncoder's own call (it checks for circular references)
            return real(markers, *rest)
        if missing == "other arguments":
            raise TypeError("c_make_encoder() takes other arguments here")
        return lambda obj, level: ["[]"]
    monkeypatch.setattr(json.encoder, "c_make_encoder", None if missing == "no accelerator" else other)
    encode = sse._compact_encoder()
    assert encode({"x": ["é", 1.5]}) == '{"x":["é",1.5]}'
    assert getattr(encode, "__self__", None).__class__ is json.JSONEncoder  # the plain encoder's method


def test_loads_bytes_strict_refuses_encoded_surrogates_and_takes_the_rest():
    with pytest.raises(UnicodeDecodeError):
        loads_bytes(b'{"a":"\xed\xa0\x80"}', errors="strict")
    assert loads_bytes('{"a":"é"}'.encode(), errors="strict") == {"a": "é"}
    assert loads_bytes('{"a":"é"}'.encode("utf-16"), errors="strict") == {"a": "é"}  # sniffed as before


def _reference(stream: bytes) -> list[Event]:
    """The WHATWG event-stream rules, written out line by line on the whole stream (an oracle
    apart from the decoder; the last event counts without its blank line, as close() does)."""
    text = stream.decode("utf-8", "replace")
    text = text[1:] if text.startswith("\ufeff") else text
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] != "":  # the stream's end ends its last line
        lines.append("")
    events, name, data, last_id = [], "", None, None
    for line in lines:
        if line == "":
            if data is not None:
                events.append(Event(name, "\n".join(data), last_id))
            name, data = "", None
            continue
        field, colon, value = line.partition(":")
        value = value[1:] if colon and value.startswith(" ") else value
        if field == "data":
            data = [*(data or []), value]
        elif field == "event":
            name = value
        elif field == "id" and "\0" not in value:
            last_id = value
    return events


_PIECES = [
    b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"\xc3\xa9"}}\n\n',
    b"data: [DONE]\n\n", b"event: \ndata: empty name\n\n", b"data: \n\n", b"data:\n\n",
    b"event: ping\ndata:  two spaces\n\n", b": keep-alive\n\n", b"id: 9\ndata: with an id\n\n",
    b"data: one\ndata: two\n\n", b"event: a\nevent: b\ndata: twice named\n\n", b"event: only a name\n\n",
    b"data: x\r\n\r\n", b"event: cr\rdata: cr\r\r", b"retry: 5\ndata: r\n\n", b"data: no end yet\n",
    b"\n", b"data: \xe4\xb8\xad\xf0\x9f\x99\x82\n\n", b"data: data: nested\n\n", b"eventx: y\ndata: z\n\n",
]


@pytest.mark.parametrize("seed", range(40))
def test_the_decoder_gives_what_the_event_stream_rules_give_for_any_mix_and_any_cuts(seed):
    rng = random.Random(seed)
    plain = _PIECES[:6]  # the events APIs send
    for _ in range(25):
        pieces = rng.choices(plain if rng.random() < 0.5 else _PIECES, k=rng.randint(1, 12))
        stream = (b"\xef\xbb\xbf" if rng.random() < 0.1 else b"") + b"".join(pieces)
        want = _reference(stream)
        assert decode([stream]) == want, stream
        cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randint(1, 5))))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
        assert decode(chunks) == want, (stream, cuts)
        by_event = [p for p in pieces]  # one event a chunk, as a streaming API sends them
        assert decode(by_event) == want, stream


def test_an_id_holds_for_the_plain_events_after_it():
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 4\ndata: a\n\n") == [Event("", "a", "4")]
    assert decoder.feed(b"data: b\n\nevent: e\ndata: c\n\n") == [Event("", "b", "4"), Event("e", "c", "4")]


@pytest.mark.parametrize("data", ['{"a":1}', ' {"a": [1, {"b": null}]}\t', '{"a":1}\n', '{"a":1} x', '{"a":1}{}',
                                  "[DONE]", "[1]", "1", "", "  ", "null", '"text"', '{"a":', "{'a': 1}",
                                  '{"a":NaN}', '{"é":"\\ud83d"}', b'{"a":1}', "\ufeff{}"])
def test_loads_object_gives_an_object_where_json_loads_gives_one_and_none_otherwise(data):
    try:
        want = json.loads(data)
    except ValueError:
        want = None
    assert sse.loads_object(data) == (want if isinstance(want, dict) else None)
    assert sse.loads_object(data) is None or type(sse.loads_object(data)) is dict
