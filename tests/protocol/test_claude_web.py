"""claude.ai web upstream logic: cookies, account checks, flattening, bodies, event pipelines."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from clewdr_lite.errors import BadRequest, UpstreamError
from clewdr_lite.protocol import anthropic as an
from clewdr_lite.protocol import claude_web as cw
from clewdr_lite.protocol import claude_web_account as acct
from clewdr_lite.protocol.claude_web_stream import RawEvents, WebEvents
from clewdr_lite.protocol.tokens import estimate_text

BODY = "A1b2_C3d4-" * 8 + "xyzXYZ"  # 86 characters
TAIL = "Qw3_-zAA"
BARE = f"{BODY}-{TAIL}"
COOKIE = f"sk-ant-sid01-{BARE}"


# ---------------------------------------------------------------- cookies (§4)

@pytest.mark.parametrize("text, expected", [
    (COOKIE, COOKIE),
    (f"  {COOKIE}\n", COOKIE),
    (f"sessionKey={COOKIE}", COOKIE),
    (f'"sessionKey={COOKIE}"', COOKIE),
    (f"sessionKey={COOKIE}; lastActiveOrg=0b7a5c2e-1f2d-4c3b-9a8e-1234567890ab; "
     "intercom-device-id=abc", COOKIE),
    (f"anthropic-device-id=x; sessionKey={COOKIE}", COOKIE),
    (COOKIE.replace("sid01", "sid02"), COOKIE.replace("sid01", "sid02")),
    (BARE, COOKIE),
    (f" {BARE} ", COOKIE),
])
def test_parse_cookie_accepts(text, expected):
    assert cw.parse_cookie(text) == expected


@pytest.mark.parametrize("text", [
    "",
    "hello",
    "sk-ant-sid01-short-abcdefAA",
    f"sk-ant-sid01-{BODY}-{TAIL[:-2]}BB",
    f"{BODY[:80]}-{TAIL}",  # body too short
    f"{BODY}{'x' * 35}-{TAIL}",  # body over 120 characters
    f"sk-ant-sid1-{BODY}-{TAIL}x",  # no two-digit sid, and the bare form must end in AA
])
def test_parse_cookie_rejects(text):
    with pytest.raises(ValueError, match="Invalid cookie format"):
        cw.parse_cookie(text)


def test_masks():
    assert cw.mask_log(COOKIE) == COOKIE[:20] + "..."
    assert cw.mask_ui(COOKIE) == COOKIE[:6] + "..." + COOKIE[-6:]
    assert cw.mask_ui("short") == "short"


# ---------------------------------------------------------------- reasons (§14)

@pytest.mark.parametrize("reason, toml, text", [
    (acct.NORMAL_PRO, "NormalPro", "Normal Pro account"),
    (acct.FREE, "Free", "Free account"),
    (acct.DISABLED, "Disabled", "Organization Disabled"),
    (acct.BANNED, "Banned", "Banned"),
    (acct.NULL, "Null", "Null"),
    (acct.restricted(1760000000), {"Restricted": 1760000000},
     "Restricted/Warning: until UTC 2025-10-09 08:53:20"),
    (acct.too_many_requests(1760000000), {"TooManyRequest": 1760000000},
     "429 Too many request: until UTC 2025-10-09 08:53:20"),
])
def test_reason_round_trip(reason, toml, text):
    assert cw.reason_to_toml(reason) == toml
    assert cw.reason_from_toml(toml) == reason
    assert cw.reason_text(reason) == text
    assert cw.reason_parts(reason) == (reason.name, reason.until) == tuple(reason)


def test_reason_aliases_and_rejects():
    assert cw.reason_from_toml("NonPro") == acct.FREE
    assert cw.reason_from_toml({"Restricted": 17.9}) == cw.Reason("Restricted", 17)
    for bad in ("Weird", {"Banned": 1}, {"Restricted": "1"}, {"Restricted": True}, 3,
                {"Restricted": 1, "Null": 2}, "Restricted"):
        with pytest.raises(ValueError):
            cw.reason_from_toml(bad)
    assert acct.REASON_EFFECT["NormalPro"] == "skip"
    assert acct.REASON_EFFECT["TooManyRequest"] == "exhausted"
    assert acct.REASON_EFFECT["Banned"] == "invalid"


# ---------------------------------------------------------------- bootstrap, orgs, flags (§5)

def _boot(caps, email="a@b.c"):
    return {"account": {"uuid": "u", "email_address": email, "memberships": [
        {"organization": {"uuid": "o0", "capabilities": ["api"]}},
        {"organization": {"uuid": "o1", "capabilities": caps}},
    ]}}


@pytest.mark.parametrize("caps, skip, pro, reason", [
    (["chat", "claude_pro"], False, True, None),
    (["chat", "claude_max"], True, True, None),
    (["chat", "raven"], True, True, None),
    (["chat", "enterprise_x"], True, True, None),
    (["chat"], False, False, None),
    (["chat"], True, False, acct.FREE),
])
def test_read_bootstrap(caps, skip, pro, reason):
    out = cw.read_bootstrap(_boot(caps), skip_non_pro=skip)
    assert out == (pro, reason, "a@b.c", caps)


def test_read_bootstrap_null_and_no_chat():
    assert cw.read_bootstrap({"account": None}, skip_non_pro=False).reason == acct.NULL
    assert cw.read_bootstrap({}, skip_non_pro=False).reason == acct.NULL
    with pytest.raises(UpstreamError) as info:
        cw.read_bootstrap(_boot(["api"]), skip_non_pro=False)
    assert info.value.status == 500


def test_choose_org():
    orgs = [{"uuid": "a", "capabilities": ["api", "x", "y", "z"]},
            {"uuid": "b", "capabilities": ["chat"]},
            {"uuid": "c", "capabilities": ["chat", "claude_pro", "x"]},
            {"uuid": "d", "capabilities": ["chat", "x"]}]
    assert cw.choose_org(orgs)["uuid"] == "c"
    assert cw.choose_org([{"uuid": "a", "capabilities": ["api"]}]) is None
    assert cw.choose_org("nope") is None


NOW = datetime(2025, 10, 1, tzinfo=timezone.utc).timestamp()
FUTURE, LATER, PAST = "2025-10-02T00:00:00Z", "2025-10-05T12:00:00.123456+00:00", \
    "2025-09-01T00:00:00Z"
FUTURE_TS = int(datetime(2025, 10, 2, tzinfo=timezone.utc).timestamp())
LATER_TS = int(datetime(2025, 10, 5, 12, tzinfo=timezone.utc).timestamp())
NO_SKIP = dict(skip_restricted=False, skip_second_warning=False, skip_first_warning=False,
               skip_normal_pro=False)
ALL_SKIP = dict(skip_restricted=True, skip_second_warning=True, skip_first_warning=True,
                skip_normal_pro=True)


def _org(*flags):
    return {"uuid": "o", "active_flags": [{"type": t, "expires_at": e} for t, e in flags]}


@pytest.mark.parametrize("org, opts, expected", [
    ({"uuid": "o"}, ALL_SKIP, None),  # no active_flags key: nothing applies
    (_org(), NO_SKIP, None),
    (_org(), ALL_SKIP, acct.NORMAL_PRO),
    (_org(("consumer_banned", FUTURE)), NO_SKIP, acct.BANNED),
    (_org(("consumer_banned", PAST)), NO_SKIP, None),
    (_org(("consumer_banned", None)), NO_SKIP, acct.BANNED),
    (_org(("consumer_restricted", FUTURE), ("consumer_restricted", LATER)), ALL_SKIP,
     acct.restricted(LATER_TS)),
    (_org(("consumer_restricted", FUTURE)), NO_SKIP, None),
    # restricted present without skip: accepted, the warnings below are not consulted
    (_org(("consumer_restricted", FUTURE), ("first_warning", LATER)),
     {**ALL_SKIP, "skip_restricted": False}, None),
    (_org(("consumer_restricted", PAST), ("second_warning", FUTURE)), ALL_SKIP,
     acct.restricted(FUTURE_TS)),
    (_org(("second_warning", FUTURE), ("first_warning", LATER)),
     {**ALL_SKIP, "skip_second_warning": False}, None),
    (_org(("first_warning", LATER)), ALL_SKIP, acct.restricted(LATER_TS)),
    (_org(("first_warning", LATER)), {**ALL_SKIP, "skip_first_warning": False}, None),
    (_org(("first_warning", PAST)), ALL_SKIP, acct.NORMAL_PRO),
    (_org(("consumer_banned", FUTURE), ("consumer_restricted", FUTURE)), ALL_SKIP, acct.BANNED),
])
def test_check_flags(org, opts, expected):
    assert cw.check_flags(org, now=NOW, **opts) == expected


def test_active_flags_and_rfc3339():
    org = _org(("a", FUTURE), ("b", PAST), ("c", "garbage"))
    assert acct.active_flags(org, now=NOW) == [("a", float(FUTURE_TS)), ("c", None)]
    assert acct.parse_rfc3339("2025-10-02T02:00:00.5+0200") == FUTURE_TS + 0.5
    assert acct.parse_rfc3339("2025-10-02 00:00:00") == FUTURE_TS
    assert acct.parse_rfc3339("2025-13-02T00:00:00Z") is None
    assert acct.parse_rfc3339(None) is None


# ---------------------------------------------------------------- flattening (§7.1)

def _msgs(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


CHAT = _msgs(("user", "hi"), ("assistant", "hello"), ("user", "more"))


@pytest.mark.parametrize("system, opts, expected", [
    ("SYS", {}, "SYS\n\n\x08Human: hi\n\n\x08Assistant: hello\n\n\x08Human: more"),
    (None, {}, "hi\n\n\x08Assistant: hello\n\n\x08Human: more"),
    ("", {}, "hi\n\n\x08Assistant: hello\n\n\x08Human: more"),
    ("SYS", {"use_real_roles": False}, "SYS\n\nHuman: hi\n\nAssistant: hello\n\nHuman: more"),
    (None, {"use_real_roles": False}, "hi\n\nAssistant: hello\n\nHuman: more"),
    ("SYS", {"custom_h": "User", "custom_a": "Claude"},
     "SYS\n\n\x08User: hi\n\n\x08Claude: hello\n\n\x08User: more"),
    ("SYS", {"custom_h": "", "custom_a": None},
     "SYS\n\n\x08Human: hi\n\n\x08Assistant: hello\n\n\x08Human: more"),
    ([{"type": "text", "text": "  A  "}, {"type": "text", "text": "B\n"}], {},
     "A\nB\n\n\x08Human: hi\n\n\x08Assistant: hello\n\n\x08Human: more"),
    ("  SYS \n", {}, "SYS\n\n\x08Human: hi\n\n\x08Assistant: hello\n\n\x08Human: more"),
])
def test_flatten_examples(system, opts, expected):
    body = {"model": "m", "messages": CHAT}
    if system is not None:
        body["system"] = system
    out = cw.flatten(body, **opts)
    assert out.text == expected
    assert out.files == [] and out.urls == [] and out.warnings == []


def test_flatten_trims_folds_and_drops_empty():
    body = {"model": "m", "messages": [
        {"role": "user", "content": "  a  "},
        {"role": "user", "content": [{"type": "text", "text": " b "}, {"type": "text", "text": "c"}]},
        {"role": "assistant", "content": "   "},
        {"role": "user", "content": "d"},
        {"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": ""},
                                          {"type": "text", "text": "y"}]},
        {"role": "user", "content": []},
        {"role": "assistant", "content": "Sure,"},  # trailing assistant: a pseudo-prefill
    ]}
    assert cw.flatten(body).text == "a\nb\nc\nd\n\n\x08Assistant: x\n\ny\nSure,"
    # sanitize_messages drops the blank text block instead of leaving an empty line
    assert cw.flatten(body, sanitize=True).text == "a\nb\nc\nd\n\n\x08Assistant: x\ny\nSure,"


def test_flatten_trailing_assistant_is_labelled():
    body = {"model": "m", "messages": _msgs(("user", "q"), ("user", "r"), ("assistant", "Sure,"))}
    assert cw.flatten(body).text == "q\nr\n\n\x08Assistant: Sure,"


@pytest.mark.parametrize("messages", [
    _msgs(("user", "")),
    _msgs(("user", "  "), ("assistant", [{"type": "thinking", "thinking": "t", "signature": "s"}])),
    _msgs(("user", [{"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": "AAAA"}}])),
])
def test_flatten_empty_is_bad_request(messages):
    with pytest.raises(BadRequest, match="Request body is empty"):
        cw.flatten({"model": "m", "system": "S", "messages": messages})


# ---------------------------------------------------------------- flattening (§7.2)

def test_flatten_system_role_messages_in_place():
    body = {"model": "m", "system": "S", "messages": _msgs(
        ("user", "q"), ("system", "be brief"), ("assistant", "a"))}
    assert cw.flatten(body).text == "S\n\n\x08Human: q\n\n\x08System: be brief\n\n\x08Assistant: a"
    body = {"model": "m", "messages": _msgs(("system", "rules"), ("user", "q"))}
    assert cw.flatten(body).text == "rules\n\n\x08Human: q"


def test_flatten_tool_blocks_as_text():
    body = {"model": "m", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"city": "Paris", "unit": "°C"}, "caller": None}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 degrees"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "timeout"},
                         {"type": "image", "source": {"type": "base64",
                                                      "media_type": "image/png", "data": "PNG"}}]},
            {"type": "text", "text": "thanks"}]},
    ]}
    out = cw.flatten(body)
    assert out.text == (
        "weather?\n\n\x08Assistant: Checking.\n"
        '[Tool call get_weather id=toolu_1] {"city":"Paris","unit":"°C"}'
        "\n\n\x08Human: [Tool result id=toolu_1] 18 degrees\n"
        "[Tool result id=toolu_2 error] timeout\nthanks")
    assert out.files == [cw.Attachment("image/png", "PNG", "image.png")]


def test_flatten_images_documents_and_urls():
    body = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "J"}},
        {"type": "image", "source": {"type": "url", "url": "data:image/webp;base64,W"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,K", "detail": "high"}},
        {"type": "image_url", "image_url": "data:image/gif;base64,G"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
        {"type": "image_url", "image_url": {"url": "http://example.com/dog.jpg"}},
        {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
        {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": "PDF"}},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                        "data": " doc text "}},
        {"type": "document", "source": {"type": "content",
                                        "content": [{"type": "text", "text": "part"}]}},
        {"type": "text", "text": "describe"},
    ]}]}
    out = cw.flatten(body)
    assert out.text == "doc text\npart\ndescribe"
    assert out.files == [
        cw.Attachment("image/jpeg", "J", "image.jpg"),
        cw.Attachment("image/webp", "W", "image.webp"),
        cw.Attachment("image/jpeg", "K", "image.jpg"),
        cw.Attachment("image/gif", "G", "image.gif"),
        cw.Attachment("application/pdf", "PDF", "document.pdf"),
    ]
    assert out.urls == ["https://example.com/cat.png", "http://example.com/dog.jpg"]
    assert len(out.warnings) == 2
    assert "file" in out.warnings[0]


def test_flatten_does_not_mutate():
    body = {"model": "m", "system": [{"type": "text", "text": " s "}], "messages": copy.deepcopy(CHAT)}
    before = copy.deepcopy(body)
    cw.flatten(body, sanitize=True)
    assert body == before


@pytest.mark.parametrize("mime, name", [
    ("image/png", "image.png"), ("IMAGE/PNG", "image.png"), ("image/jpeg", "image.jpg"),
    ("image/jpg", "image.jpg"), ("image/gif", "image.gif"), ("image/webp", "image.webp"),
    ("application/pdf", "document.pdf"), ("image/png; charset=x", "image.png"),
    ("image/bmp", "file"), ("", "file"),
])
def test_upload_name(mime, name):
    assert cw.upload_name(mime) == name


@pytest.mark.parametrize("url, expected", [
    ("data:image/png;base64,AAA", ("image/png", "AAA")),
    ("data:image/jpg;name=x;base64,AAA", ("image/jpeg", "AAA")),
    ("data:image/png,AAA", None),
    ("https://x", None),
])
def test_parse_data_url(url, expected):
    assert cw.parse_data_url(url) == expected


# ---------------------------------------------------------------- bodies (§6, §11)

@pytest.mark.parametrize("thinking, wanted", [
    ({"type": "enabled", "budget_tokens": 2000}, True), ({"type": "adaptive"}, True),
    ({"type": "disabled"}, False), (None, False),
])
def test_thinking_wanted(thinking, wanted):
    body = {"model": "m", "messages": []}
    if thinking:
        body["thinking"] = thinking
    assert cw.thinking_wanted(body) is wanted


@pytest.mark.parametrize("body, switch, wanted", [
    ({}, True, True),
    ({}, False, False),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, False, True),
    ({"tools": [{"name": "get_weather", "input_schema": {}}]}, False, False),
    ({"web_search_options": {}}, False, True),
])
def test_web_search_wanted(body, switch, wanted):
    assert cw.web_search_wanted(body, switch) is wanted


def test_completion_body():
    text = "héllo"
    assert cw.completion_body(text, model="claude-opus-4-6-thinking", max_tokens=100,
                              rendering_mode="messages", custom_prompt="", timezone="UTC",
                              web_search=True, file_uuids=["f1", "f2"]) == {
        "max_tokens_to_sample": 100,
        "attachments": [{"extracted_content": text, "file_name": "paste.txt", "file_type": "txt",
                         "file_size": 6}],
        "files": ["f1", "f2"],
        "model": "claude-opus-4-6",
        "rendering_mode": "messages",
        "prompt": "",
        "timezone": "UTC",
        "tools": [{"name": "web_search", "type": "web_search_v0"}],
    }
    free = cw.completion_body(text, model=None, max_tokens=8192, rendering_mode="raw",
                              custom_prompt="P", timezone=cw.DEFAULT_TIMEZONE, web_search=False,
                              file_uuids=[])
    assert "model" not in free
    assert free["tools"] == [] and free["prompt"] == "P"
    assert free["timezone"] == "America/New_York"


def test_create_and_settings_bodies():
    assert cw.create_body("u-1", temporary=True, now_str="2025-01-02 03:04:05") == {
        "uuid": "u-1", "name": "", "is_temporary": True}
    assert cw.create_body("u-1", temporary=False, now_str="2025-01-02 03:04:05") == {
        "uuid": "u-1", "name": "clewdr-lite-2025-01-02 03:04:05", "is_temporary": False}
    assert cw.settings_body(True) == {"settings": {"paprika_mode": "extended"}}
    assert cw.settings_body(False) == {"settings": {"paprika_mode": None}}


@pytest.mark.parametrize("created, thinking, needed", [
    ({"settings": {"paprika_mode": "extended"}}, True, False),
    ({"settings": {"paprika_mode": None}}, True, True),
    ({"settings": {"paprika_mode": None}}, False, False),
    ({"settings": {}}, False, False),
    ({}, False, False),
    ({}, True, True),
    ({"settings": {"paprika_mode": "extended"}}, False, True),
])
def test_settings_needed(created, thinking, needed):
    assert cw.settings_needed(created, thinking) is needed


# ---------------------------------------------------------------- WebEvents (§9, §12)

def _start():
    return {"type": "message_start", "message": {
        "id": "", "type": "message", "role": "assistant", "model": "", "content": [],
        "stop_reason": None, "stop_sequence": None, "x_parent_uuid": "p1"}}


def _text_block(i):
    return {"type": "content_block_start", "index": i,
            "content_block": {"type": "text", "text": "", "citations": []}}


def _delta(i, text, kind="text_delta", field="text"):
    return {"type": "content_block_delta", "index": i, "delta": {"type": kind, field: text}}


def _run(pipeline, events):
    out = []
    for event in events:
        out.extend(pipeline.feed(event))
    return out


def _web(stops=()):
    return WebEvents(model="claude-sonnet-4-5-thinking", msg_id="msg_abc", input_tokens=42,
                     stops=list(stops))


def test_web_events_rewrites_and_drops():
    pipe = _web()
    out = _run(pipe, [
        _start(),
        {"type": "message_limit", "message_limit": {"type": "within_limit"}},
        {"type": "ping"},
        _text_block(0),
        _delta(0, "Hello", ),
        _delta(0, " world"),
        {"type": "content_block_stop", "index": 0, "stop_timestamp": "t"},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}},
        {"type": "message_limit", "message_limit": {}},
        {"type": "message_stop"},
    ])
    assert [e["type"] for e in out] == [
        "message_start", "ping", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    message = out[0]["message"]
    assert message["model"] == "claude-sonnet-4-5-thinking"
    assert message["id"] == "msg_abc"
    assert message["usage"] == {"input_tokens": 42, "output_tokens": 0}
    assert message["x_parent_uuid"] == "p1"  # unknown fields survive
    assert out[5] == {"type": "content_block_stop", "index": 0, "stop_timestamp": "t"}
    counted = estimate_text("Hello") + estimate_text(" world")
    assert pipe.output_tokens == counted
    assert out[6]["usage"] == {"output_tokens": counted}
    assert pipe.done


def test_web_events_keeps_upstream_values():
    pipe = _web()
    start = _start()
    start["message"].update(id="msg_up", usage={"input_tokens": 7, "output_tokens": 1})
    out = _run(pipe, [start, {"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                              "usage": {"output_tokens": 99, "x": 1}}])
    assert out[0]["message"]["id"] == "msg_up"
    assert out[0]["message"]["usage"] == {"input_tokens": 7, "output_tokens": 1}
    assert out[0]["message"]["model"] == "claude-sonnet-4-5-thinking"
    assert out[1]["usage"] == {"output_tokens": 99, "x": 1}
    partial = _start()
    partial["message"]["usage"] = {"output_tokens": 1}
    assert _web().feed(partial)[0]["message"]["usage"] == {"output_tokens": 1, "input_tokens": 42}


def test_web_events_stop_sequence_spanning_deltas():
    pipe = _web(stops=["\nHuman:", "STOP"])
    out = _run(pipe, [
        _start(), _text_block(0),
        _delta(0, "The answer is 4."),
        _delta(0, "\nHu"),
        _delta(0, "man: and"),
        _delta(0, "never sent"),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_stop"},
    ])
    assert out[2:] == [
        _delta(0, "The answer is 4."),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta",
         "delta": {"stop_reason": "stop_sequence", "stop_sequence": "\nHuman:"},
         "usage": {"output_tokens": estimate_text("The answer is 4.")}},
        {"type": "message_stop"},
    ]
    assert pipe.done
    assert pipe.feed({"type": "ping"}) == []


def test_web_events_held_text_flushed_before_block_stop():
    pipe = _web(stops=["STOP"])
    out = _run(pipe, [_start(), _text_block(0), _delta(0, "almost ST"), _delta(0, "O"),
                      {"type": "content_block_stop", "index": 0, "extra": 1}])
    assert out[2:] == [_delta(0, "almost "), _delta(0, "STO"),
                       {"type": "content_block_stop", "index": 0, "extra": 1}]
    assert pipe.output_tokens == estimate_text("almost ") + estimate_text("STO")
    assert not pipe.done


def test_web_events_one_delta_per_upstream_delta_and_unknown_delta_fields():
    pipe = _web(stops=["zz"])
    event = {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": "abc", "x": 1}, "y": 2}
    out = _run(pipe, [_start(), _text_block(0), event])
    assert out[2] == {"type": "content_block_delta", "index": 0,
                      "delta": {"type": "text_delta", "text": "abc", "x": 1}, "y": 2}


def test_web_events_thinking_is_not_matched_but_counted():
    pipe = _web(stops=["STOP"])
    thinking = [{"type": "content_block_start", "index": 0,
                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
                _delta(0, "I will not STOP here", "thinking_delta", "thinking"),
                _delta(0, "sig", "signature_delta", "signature"),
                {"type": "content_block_stop", "index": 0}]
    out = _run(pipe, [_start(), *thinking, _text_block(1), _delta(1, "ok STOP no")])
    assert out[1:5] == thinking
    assert out[6] == _delta(1, "ok ")
    assert out[8]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}
    assert pipe.output_tokens == estimate_text("I will not STOP here") + estimate_text("ok ")


def test_web_events_match_decided_at_block_end():
    # "ab" is complete but "abc" could still start at the same place: decided by the block's end
    pipe = _web(stops=["ab", "abcd"])
    out = _run(pipe, [_start(), _text_block(0), _delta(0, "x ab"), _delta(0, "c"),
                      {"type": "content_block_stop", "index": 0}])
    assert out[2:] == [
        _delta(0, "x "),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": "ab"},
         "usage": {"output_tokens": estimate_text("x ")}},
        {"type": "message_stop"},
    ]
    assert pipe.done


def test_web_events_no_stops_passes_text_through():
    pipe = _web(stops=["", ""])
    events = [_start(), _text_block(0), _delta(0, "STOP"), {"type": "content_block_stop", "index": 0}]
    assert _run(pipe, events)[1:] == events[1:]


def test_web_events_error_ends_stream():
    pipe = _web()
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert _run(pipe, [_start(), error]) [1] == error
    assert pipe.done
    assert pipe.feed(_delta(0, "late")) == []


def test_web_events_close_flushes_held_text():
    pipe = _web(stops=["STOP"])
    _run(pipe, [_start(), _text_block(0), _delta(0, "tail ST")])
    assert pipe.close() == [_delta(0, "ST")]
    assert pipe.close() == []


def test_web_events_aggregate_with_accumulator():
    pipe = _web(stops=["END"])
    acc = an.Accumulator()
    events = [
        _start(),
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        _delta(0, "plan END plan", "thinking_delta", "thinking"),
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {
            "type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}},
        _delta(1, '{"query": "x",}', "input_json_delta", "partial_json"),
        {"type": "content_block_stop", "index": 1},
        _text_block(2),
        _delta(2, "Result E"),
        _delta(2, "ND tail"),
        {"type": "message_limit"},
    ]
    for event in _run(pipe, events):
        acc.feed(event)
    out = acc.result()
    assert out["id"] == "msg_abc" and out["model"] == "claude-sonnet-4-5-thinking"
    assert out["content"] == [
        {"type": "thinking", "thinking": "plan END plan", "signature": ""},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
         "input": {"query": "x"}},
        {"type": "text", "text": "Result ", "citations": []},
    ]
    assert out["stop_reason"] == "stop_sequence" and out["stop_sequence"] == "END"
    assert out["usage"] == {"input_tokens": 42, "output_tokens": pipe.output_tokens}


# ---------------------------------------------------------------- RawEvents (§8.2, §10.2)

def _raw(stops=()):
    return RawEvents(model="claude-x", msg_id="msg_raw", input_tokens=9, stops=list(stops))


def _aggregate(pipe, objs):
    acc = an.Accumulator()
    for event in _run(pipe, objs) + pipe.close():
        acc.feed(event)
    return acc


def test_raw_events_synthesise_a_message():
    pipe = _raw()
    out = _run(pipe, [{"completion": "Hello", "stop_reason": None, "model": ""},
                      {"completion": " there", "stop_reason": None},
                      {"completion": "", "stop_reason": "stop_sequence", "stop": "\n\nHuman:"}])
    assert out == [
        {"type": "message_start", "message": {
            "id": "msg_raw", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 9, "output_tokens": 0}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        _delta(0, "Hello"),
        _delta(0, " there"),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": estimate_text("Hello") + estimate_text(" there")}},
        {"type": "message_stop"},
    ]
    assert pipe.done and pipe.close() == []


@pytest.mark.parametrize("upstream, expected", [
    ("max_tokens", "max_tokens"), ("stop_sequence", "end_turn"), ("refusal", "refusal"),
    (None, "end_turn"), ("weird", "end_turn"),
])
def test_raw_events_stop_reason_map(upstream, expected):
    acc = _aggregate(_raw(), [{"completion": "x", "stop_reason": upstream}])
    assert acc.result()["stop_reason"] == expected
    assert acc.result()["content"] == [{"type": "text", "text": "x"}]


def test_raw_events_stop_sequences_and_empty_stream():
    acc = _aggregate(_raw(stops=["END"]), [{"completion": "abc E"}, {"completion": "ND more"}])
    out = acc.result()
    assert out["content"] == [{"type": "text", "text": "abc "}]
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "END")
    assert out["usage"] == {"input_tokens": 9, "output_tokens": estimate_text("abc ")}
    empty = _aggregate(_raw(), []).result()
    assert empty["content"] == [{"type": "text", "text": ""}]
    assert empty["stop_reason"] == "end_turn" and empty["id"] == "msg_raw"
    held = _aggregate(_raw(stops=["END"]), [{"completion": "abc EN"}]).result()
    assert held["content"] == [{"type": "text", "text": "abc EN"}]


def test_raw_events_error():
    pipe = _raw()
    out = _run(pipe, [{"completion": "a"},
                      {"completion": "", "error": {"type": "overloaded_error",
                                                   "message": "Overloaded"}}])
    assert out[-1] == {"type": "error", "error": {"type": "overloaded_error",
                                                  "message": "Overloaded"}}
    assert pipe.done and pipe.close() == []
    acc = an.Accumulator()
    for event in out:
        acc.feed(event)
    assert acc.error["error"]["type"] == "overloaded_error"
