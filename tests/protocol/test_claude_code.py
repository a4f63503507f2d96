"""Claude Code Messages request (claude-code.md §6): betas, billing block, system, headers."""

from __future__ import annotations

import copy
import hashlib

import pytest

from clewdr_lite.protocol import claude_code as cc

V = "2.1.76"
BILLING_HEY = "x-anthropic-billing-header: cc_version=2.1.76.4dc; cc_entrypoint=cli; cch=00000;"


def user(content) -> dict:
    return {"role": "user", "content": content}


def req(*messages, **fields) -> dict:
    return {"model": "claude-sonnet-4-5", "max_tokens": 1024,
            "messages": list(messages) or [user("hey")], **fields}


def text(t: str, **extra) -> dict:
    return {"type": "text", "text": t, **extra}


# ---------------------------------------------------------------- betas (§6.2)


@pytest.mark.parametrize("client, extra, drop, base, expected", [
    (None, (), (), cc.OAUTH_BETA, "oauth-2025-04-20"),
    ("", (), (), cc.OAUTH_BETA, "oauth-2025-04-20"),
    ("a, b ,,c", (), (), cc.OAUTH_BETA, "oauth-2025-04-20,a,b,c"),
    ("a,oauth-2025-04-20,a", ("b", "a"), (), cc.OAUTH_BETA, "oauth-2025-04-20,a,b"),
    ("context-1m-2025-08-07,x", (cc.LONG_CONTEXT_BETA,), (cc.LONG_CONTEXT_BETA,), cc.OAUTH_BETA,
     "oauth-2025-04-20,x"),
    ("a", ("x, y", " "), (), cc.OAUTH_BETA, "oauth-2025-04-20,a,x,y"),
    ("a,b", (), (), None, "a,b"),
    (None, (), (), None, ""),
    (" b , a ", ["c"], [" a "], None, "b,c"),
], ids=["base-only", "empty-client", "trim-and-drop-empty", "dedup-keep-first", "drop-1m",
        "extra-with-commas", "api-key-no-base", "nothing", "drop-trimmed"])
def test_merge_betas(client, extra, drop, base, expected):
    assert cc.merge_betas(client, extra, drop=drop, base=base) == expected


def test_merge_betas_base_is_asked_for_and_extra_may_be_a_generator():
    assert cc.merge_betas("b", (t for t in ["c"]), base=cc.OAUTH_BETA) == "oauth-2025-04-20,b,c"
    with pytest.raises(TypeError):
        cc.merge_betas("b")  # a caller must say whether the OAuth beta leads (API keys: it must not)


# ---------------------------------------------------------------- billing (§6.3)


@pytest.mark.parametrize("request_, expected", [
    (req(user("hey")), "hey"),
    (req(user([text("first"), text("second")])), "first"),
    (req(user([{"type": "image", "source": {}}, text("after image")])), "after image"),
    (req({"role": "system", "content": "sys"}, {"role": "assistant", "content": "a"},
         user("u1"), user("u2")), "u1"),
    (req(user([{"type": "image", "source": {}}]), user("later")), ""),
    (req(user(None)), ""),
    ({"messages": []}, ""),
    ({}, ""),
])
def test_first_user_text(request_, expected):
    assert cc.first_user_text(request_) == expected


def reference_hash(text: str, version: str) -> str:
    """The CLI's algorithm written out plainly (UTF-16 units, "0" when out of range)."""
    units = text.encode("utf-16-le", "surrogatepass")
    picked = []
    for i in (4, 7, 20):
        if 2 * i + 1 < len(units):
            unit = int.from_bytes(units[2 * i:2 * i + 2], "little")
            picked.append("\ufffd" if 0xD800 <= unit <= 0xDFFF else chr(unit))
        else:
            picked.append("0")
    return hashlib.sha256(("59cf53e54c78" + "".join(picked) + version).encode()).hexdigest()[:3]


@pytest.mark.parametrize("first, version, expected", [
    ("hey", "2.1.76", "4dc"),
    ("Hello there, this is a longer message", "2.1.76", "670"),
])
def test_billing_hash_spec_examples(first, version, expected):
    assert cc.billing_hash(first, version) == expected


@pytest.mark.parametrize("first", [
    "", "abcd", "abcde", "abcdefgh", "x" * 20, "x" * 21, "Привет, как у тебя дела сегодня?",
    "abc😀defghijklmnop😀rst", "ab😀cdefghijklmnopqrstu",
])
def test_billing_hash_matches_reference(first):
    # none of these put two halves of one pair side by side in the picked units
    assert cc.billing_hash(first, V) == reference_hash(first, V)


def test_billing_hash_counts_utf16_units_not_code_points():
    # the emoji is two UTF-16 units, so index 4 is its low half (a lone surrogate → U+FFFD)
    expected = hashlib.sha256(("59cf53e54c78" + "\ufffd" + "f" + "0" + V).encode()).hexdigest()[:3]
    assert cc.billing_hash("abc😀def", V) == expected


def test_billing_hash_lone_surrogate_in_input():
    expected = hashlib.sha256(("59cf53e54c78" + "\ufffd00" + V).encode()).hexdigest()[:3]
    assert cc.billing_hash("abcd\ud83d", V) == expected


@pytest.mark.parametrize("first, middle", [
    # units a b c d D83D DE00 D83D DE01: c4 is the high half of one emoji, c7 the low half of
    # the next; JS concatenation pairs them into one character
    ("abcd😀😁", "\U0001F601" + "0"),
    # c4 = D83D, c7 = DE00 pair up; c20 = D83D stays alone
    ("😀" * 11, "😀" + "\ufffd"),
])
def test_billing_hash_adjacent_halves_pair_like_javascript(first, middle):
    expected = hashlib.sha256(("59cf53e54c78" + middle + V).encode()).hexdigest()[:3]
    assert cc.billing_hash(first, V) == expected


@pytest.mark.parametrize("entrypoint, shown", [("cli", "cli"), ("", "cli"), ("  ", "cli"),
                                               ("sdk-ts", "sdk-ts")])
def test_billing_block(entrypoint, shown):
    block = cc.billing_block(req(user("hey")), version=V, entrypoint=entrypoint)
    assert block == text(f"x-anthropic-billing-header: cc_version=2.1.76.4dc; "
                         f"cc_entrypoint={shown}; cch=00000;")


# ---------------------------------------------------------------- system (§6.3)

CLIENT_BILLING = text("x-anthropic-billing-header: cc_version=2.1.197.123; cc_entrypoint=sdk-cli;")
PRE = text(cc.PRELUDE)


@pytest.mark.parametrize("system, custom, prelude, expected_after_billing", [
    (None, None, False, []),
    ("", None, False, []),
    ("   ", None, False, []),
    ("Be nice.", None, False, [text("Be nice.")]),
    ([text("a"), text("b")], None, False, [text("a"), text("b")]),
    ([CLIENT_BILLING, text("a")], None, False, [text("a")]),
    ([CLIENT_BILLING, CLIENT_BILLING], None, False, []),
    ("Be nice.", "Custom", False, [text("Custom"), text("Be nice.")]),
    ("Be nice.", "  ", False, [text("Be nice.")]),
    ("Be nice.", None, True, [PRE, text("Be nice.")]),
    (None, "Custom", True, [PRE, text("Custom")]),
    (cc.PRELUDE, None, True, [PRE]),
    ([CLIENT_BILLING, text(cc.PRELUDE, cache_control={"type": "ephemeral"}), text("rest")], None,
     True, [text(cc.PRELUDE, cache_control={"type": "ephemeral"}), text("rest")]),
    ([CLIENT_BILLING, PRE, text("rest")], None, False, [PRE, text("rest")]),
    ([{"type": "unknown_block", "x": 1}], None, False, [{"type": "unknown_block", "x": 1}]),
], ids=["absent", "empty", "blank", "string", "array", "client-billing-removed",
        "only-billing", "custom", "blank-custom", "prelude", "prelude-custom",
        "string-equals-prelude", "client-prelude-moved-up", "prelude-not-asked", "unknown-block"])
def test_prepare_system(system, custom, prelude, expected_after_billing):
    request = req(user("hey"))
    if system is not None:
        request["system"] = system
    before = copy.deepcopy(request)
    out = cc.prepare_system(request, version=V, entrypoint="cli", custom_system=custom,
                            prelude=prelude)
    assert out["system"] == [text(BILLING_HEY)] + expected_after_billing
    assert request == before  # the input is never changed


@pytest.mark.parametrize("control, expected", [
    ({"type": "ephemeral", "scope": "global"}, {"type": "ephemeral"}),
    ({"type": "ephemeral", "ttl": "1h", "scope": "org"}, {"type": "ephemeral", "ttl": "1h"}),
    ({"type": "other", "scope": "x"}, {"type": "other", "scope": "x"}),
    ({"ephemeral": {"scope": "s", "ttl": "5m"}}, {"ephemeral": {"ttl": "5m"}}),
    ({"type": "ephemeral"}, {"type": "ephemeral"}),
])
def test_prepare_system_strips_cache_control_scope(control, expected):
    request = req(user("hey"), system=[text("a", cache_control=control)])
    before = copy.deepcopy(request)
    out = cc.prepare_system(request, version=V, entrypoint="cli", custom_system=None, prelude=False)
    assert out["system"][1] == text("a", cache_control=expected)
    assert request == before


# ---------------------------------------------------------------- the whole request (§6.2–§6.4)


@pytest.mark.parametrize("model, want_1m, sent_model, extra", [
    ("claude-sonnet-4-5", True, "claude-sonnet-4-5", []),
    ("claude-sonnet-4-5-1M", True, "claude-sonnet-4-5", [cc.LONG_CONTEXT_BETA]),
    ("claude-sonnet-4-5-1M", False, "claude-sonnet-4-5", []),
    ("claude-opus-4-6-1M-thinking", True, "claude-opus-4-6", [cc.LONG_CONTEXT_BETA]),
    ("claude-opus-4-6-thinking-1M", True, "claude-opus-4-6", [cc.LONG_CONTEXT_BETA]),
    ("some-unknown-model-1M", True, "some-unknown-model", [cc.LONG_CONTEXT_BETA]),
])
def test_prepare_request_model_and_betas(model, want_1m, sent_model, extra):
    out, betas = cc.prepare_request(req(user("hey"), model=model), version=V, entrypoint="cli",
                                    custom_system=None, prelude=False, want_1m=want_1m)
    assert out["model"] == sent_model
    assert betas == extra


def test_prepare_request_applies_rules_hygiene_and_system():
    request = req(
        user("hey"),
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "t", "signature": "clewdr-lite:abcd"},
            {"type": "thinking", "thinking": "kept", "signature": "EqRealSig"},
            text("answer")]},
        {"role": "system", "content": "mid-conversation system"},
        user("more"),
        model="claude-opus-4-6-thinking", temperature=0.5, stream=True,
        system=[CLIENT_BILLING, text("sys")], tools=[{"name": "t", "input_schema": {}}],
        context_management={"edits": []}, future_field={"x": 1})
    before = copy.deepcopy(request)
    out, betas = cc.prepare_request(request, version=V, entrypoint="cli", custom_system="C",
                                    prelude=True, want_1m=True)
    assert request == before
    assert betas == []
    assert out["model"] == "claude-opus-4-6"
    assert out["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert "temperature" not in out  # 4.6 with thinking on: sampling removed (§7.3 rule 5)
    assert [b.get("signature") for b in out["messages"][1]["content"]] == ["EqRealSig", None]
    assert out["messages"][2] == {"role": "system", "content": "mid-conversation system"}
    assert out["system"] == [text(BILLING_HEY), PRE, text("C"), text("sys")]
    for key in ("tools", "context_management", "future_field", "stream"):
        assert out[key] == request[key]


def test_prepare_request_blank_system_still_gets_billing():
    out, _ = cc.prepare_request(req(user("hey"), system="  "), version=V, entrypoint="cli",
                                custom_system=None, prelude=False, want_1m=False)
    assert out["system"] == [text(BILLING_HEY)]


# ---------------------------------------------------------------- headers (§6.1)

SECRETS = {
    "Authorization": "Bearer client-password", "x-api-key": "client-key", "Cookie": "a=b",
    "Host": "127.0.0.1:8484", "Content-Length": "123", "Accept-Encoding": "gzip",
    "X-Forwarded-For": "10.0.0.1", "X-Forwarded-Proto": "https", "Connection": "keep-alive",
    "anthropic-dangerous-direct-browser-access": "true",
}


@pytest.mark.parametrize("client, oauth, ua, expected", [
    ({}, True, "claude-cli/2.1.76 (external, cli)",
     {"Authorization": "Bearer tok", "anthropic-version": "2023-06-01",
      "anthropic-beta": "oauth-2025-04-20", "Content-Type": "application/json",
      "User-Agent": "claude-cli/2.1.76 (external, cli)", "x-app": "cli"}),
    ({**SECRETS, "Anthropic-Version": "2024-01-01", "x-claude-code-session-id": "sess-1"}, True,
     "ua", {"Authorization": "Bearer tok", "anthropic-version": "2024-01-01",
            "anthropic-beta": "oauth-2025-04-20", "Content-Type": "application/json",
            "User-Agent": "ua", "x-app": "cli", "X-Claude-Code-Session-Id": "sess-1"}),
    ({"anthropic-version": "bad\r\nX-Evil: 1", "X-Claude-Code-Session-Id": "s\r\nX: y"}, True,
     None, {"Authorization": "Bearer tok", "anthropic-version": "2023-06-01",
            "anthropic-beta": "oauth-2025-04-20", "Content-Type": "application/json",
            "x-app": "cli"}),
], ids=["defaults", "copies-only-allowed", "rejects-line-ends"])
def test_upstream_headers_oauth(client, oauth, ua, expected):
    headers = cc.upstream_headers(client, auth={"Authorization": "Bearer tok"},
                                  betas="oauth-2025-04-20", user_agent=ua, oauth=oauth)
    assert headers == expected


def test_upstream_headers_api_key():
    headers = cc.upstream_headers({**SECRETS, "anthropic-beta": "x"}, auth={"x-api-key": "sk-up"},
                                  betas="", user_agent=None, oauth=False)
    assert headers == {"x-api-key": "sk-up", "anthropic-version": "2023-06-01",
                       "Content-Type": "application/json"}


@pytest.mark.parametrize("auth", [{"Authorization": "Bearer up"}, {"x-api-key": "sk-up"}])
def test_upstream_headers_never_leak_client_secrets(auth):
    headers = cc.upstream_headers(SECRETS, auth=auth, betas="b", user_agent="ua", oauth=True)
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, value in SECRETS.items():
        assert value not in headers.values()
        if name.lower() not in ("authorization", "x-api-key"):
            assert name.lower() not in lowered
    assert len(lowered) == len(headers)  # no name twice in different case


# ---------------------------------------------------------------- retry predicates (§6.2, §6.3)


@pytest.mark.parametrize("status, message, expected", [
    (400, "The long context beta is not yet available for this subscription.", True),
    (403, "This authentication style is incompatible with the long context beta header.", True),
    (429, "The long context beta is not yet available for this subscription.", False),
    (400, "prompt is too long: 250000 tokens > 200000 maximum", False),
    (400, None, False),
])
def test_is_long_context_error(status, message, expected):
    assert cc.is_long_context_error(status, message) is expected


@pytest.mark.parametrize("status, message, expected", [
    (400, "This credential is only authorized for use with Claude Code and cannot be used for "
          "other API requests.", True),
    (403, "This credential is only authorized for use with Claude Code", False),
    (400, "Invalid request", False),
    (400, None, False),
])
def test_is_claude_code_only_error(status, message, expected):
    assert cc.is_claude_code_only_error(status, message) is expected
