"""Sticky cache-affinity keys (claude-code.md §9) and the count_tokens cache key (§10)."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest

from clewdr_lite.protocol import claude_code as cc

EPH = {"type": "ephemeral"}
SESSION = "5f8c1d1e-8a55-4e7b-9f1a-0c6c4c1a2b3c"


def text(t: str, **extra) -> dict:
    return {"type": "text", "text": t, **extra}


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def turn1() -> dict:
    """A Claude Code first turn: cached system, cached last user block."""
    return {"model": "claude-opus-4-6", "max_tokens": 100,
            "system": [text("billing"), text("You are Claude Code", cache_control=EPH),
                       text("tools and rules", cache_control=EPH)],
            "messages": [{"role": "user", "content": [text("hello", cache_control=EPH)]}]}


def turn2() -> dict:
    """The next turn: the same prefix, cache_control moved to the newest user block."""
    req = turn1()
    req["messages"] = [
        {"role": "user", "content": [text("hello")]},
        {"role": "assistant", "content": [text("hi there")]},
        {"role": "user", "content": [text("next", cache_control=EPH)]},
    ]
    return req


# ---------------------------------------------------------------- session key


@pytest.mark.parametrize("headers, metadata, expected", [
    ({"X-Claude-Code-Session-Id": SESSION}, None, SESSION),
    ({"x-claude-code-session-id": f" {SESSION} "}, {"user_id": "user_x_session_other"}, SESSION),
    ({}, {"user_id": json.dumps({"device_id": "d", "account_uuid": "", "session_id": SESSION})},
     SESSION),
    ({}, {"user_id": f"user_{'a' * 64}_account_{'b' * 8}_session_{SESSION}"}, SESSION),
    ({}, {"user_id": json.dumps({"device_id": "d"})}, None),
    ({}, {"user_id": "{not json"}, None),
    ({}, {"user_id": "plain-user"}, None),
    ({}, {"user_id": "user_x_session_"}, None),
    ({}, {"user_id": 5}, None),
    ({"X-Claude-Code-Session-Id": "  "}, None, None),
    ({}, None, None),
], ids=["header", "header-wins", "json-user-id", "legacy-user-id", "json-without-session",
        "broken-json", "no-session", "empty-legacy", "not-a-string", "blank-header", "nothing"])
def test_session_id(headers, metadata, expected):
    req = turn1()
    if metadata is not None:
        req["metadata"] = metadata
    assert cc.session_id(req, headers) == expected
    keys = cc.sticky_keys(req, headers)
    assert (keys[0] == "s:" + expected) if expected else not keys[0].startswith("s:")


def test_long_session_ids_are_hashed():
    long_id = "x" * 500
    keys = cc.sticky_keys(turn1(), {"X-Claude-Code-Session-Id": long_id})
    assert keys[0] == "s:" + hashlib.sha256(long_id.encode()).hexdigest()


# ---------------------------------------------------------------- key order and content


def reference_checkpoints(req: dict) -> list[str]:
    """The §9 chain written out plainly (cache_control left out of each hashed block)."""
    def strip(block):
        return {k: v for k, v in block.items() if k != "cache_control"}

    rolling, found = hashlib.sha256(canonical(req["model"]) + b"\n"), []
    for block in req["system"]:
        rolling.update(canonical(strip(block)) + b"\n")
        if "cache_control" in block:
            found.append(rolling.hexdigest())
    for msg in req["messages"]:
        for block in msg["content"]:
            rolling.update(canonical([msg["role"], strip(block)]) + b"\n")
            if "cache_control" in block:
                found.append(rolling.hexdigest())
    return found[::-1]


def test_key_order_session_then_longest_prefix_then_system_hash():
    req = turn1()
    keys = cc.sticky_keys(req, {"X-Claude-Code-Session-Id": SESSION})
    cached_system = [text("You are Claude Code"), text("tools and rules")]
    assert keys == (["s:" + SESSION]
                    + ["p:" + h for h in reference_checkpoints(req)]
                    + ["h:" + hashlib.sha256(canonical(cached_system)).hexdigest()])
    assert len(keys) == 5


@pytest.mark.parametrize("system, messages, kinds", [
    ("plain string system", [{"role": "user", "content": "hi"}], []),
    (None, [{"role": "user", "content": [text("hi", cache_control=EPH)]}], ["p"]),
    ([text("s", cache_control=EPH)], [{"role": "user", "content": "hi"}], ["p", "h"]),
    ([text("s")], [{"role": "user", "content": "hi"}], []),
], ids=["nothing-cached", "message-only", "system-only", "uncached-system"])
def test_which_keys_exist(system, messages, kinds):
    req = {"model": "m", "messages": messages}
    if system is not None:
        req["system"] = system
    assert [k[0] for k in cc.sticky_keys(req, {})] == kinds


def test_keys_are_stable_and_do_not_change_the_request():
    req = turn1()
    before = copy.deepcopy(req)
    assert cc.sticky_keys(req, {}) == cc.sticky_keys(copy.deepcopy(req), {})
    assert req == before


def test_next_turn_finds_the_previous_turns_checkpoints():
    first, second = cc.sticky_keys(turn1(), {}), cc.sticky_keys(turn2(), {})
    # the system checkpoints and the system hash are shared; turn 2's longest prefix is new
    assert set(first) & set(second) == {k for k in first if k != first[0]}
    assert second[0] not in first


def test_previous_turns_breakpoint_matches_even_with_cache_control_moved():
    req = turn2()
    req["messages"][0]["content"][0]["cache_control"] = EPH  # the client kept this breakpoint too
    assert cc.sticky_keys(turn1(), {})[0] in cc.sticky_keys(req, {})


@pytest.mark.parametrize("change", [
    lambda r: r.update(model="claude-sonnet-4-5"),
    lambda r: r["system"][1].update(text="Another prompt"),
    lambda r: r["messages"][0]["content"][0].update(text="different"),
    lambda r: r["messages"][0].update(role="assistant"),
], ids=["model", "system", "message", "role"])
def test_a_different_prefix_gives_different_checkpoints(change):
    req = turn1()
    change(req)
    assert cc.sticky_keys(req, {})[0] != cc.sticky_keys(turn1(), {})[0]


def test_string_content_equals_one_text_block():
    as_string = {"model": "m", "system": [text("s", cache_control=EPH)],
                 "messages": [{"role": "user", "content": "hi"}]}
    as_block = copy.deepcopy(as_string)
    as_block["messages"][0]["content"] = [text("hi")]
    assert cc.sticky_keys(as_string, {}) == cc.sticky_keys(as_block, {})


def test_checkpoints_are_bounded():
    req = {"model": "m", "messages": [{"role": "user", "content": [
        text(str(i), cache_control=EPH) for i in range(20)]}]}
    keys = cc.sticky_keys(req, {})
    assert len(keys) == 8
    assert keys[0] == "p:" + reference_checkpoints({**req, "system": []})[0]


def test_odd_shapes_do_not_raise():
    req = {"model": None, "system": 5, "messages": ["x", {"role": "user"}, {"content": [1, None]}]}
    assert cc.sticky_keys(req, {}) == []


# ---------------------------------------------------------------- count_tokens cache key


def test_count_cache_key_is_canonical():
    a = {"model": "m", "messages": [{"role": "user", "content": "foo"}], "tools": [{"name": "t"}]}
    b = json.loads(json.dumps(a, indent=4, sort_keys=False))
    reordered = {"tools": a["tools"], "messages": a["messages"], "model": "m"}
    assert cc.count_cache_key(a) == cc.count_cache_key(b) == cc.count_cache_key(reordered)
    assert cc.count_cache_key(a) == hashlib.sha256(canonical(a)).hexdigest()
    assert cc.count_cache_key({**a, "model": "n"}) != cc.count_cache_key(a)
    assert len(cc.count_cache_key({"x": "\ud83d é"})) == 64  # lone surrogates do not raise
