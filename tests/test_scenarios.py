"""Scenario routing (gateway.md §4): CCR's precedence, the two fixes of §4.4, rules, fallback."""

from __future__ import annotations

import json

import pytest

from clewdr_lite.protocol.tokens import estimate_request
from clewdr_lite.providers import parse_providers
from clewdr_lite.router import resolve
from clewdr_lite.scenarios import (
    LastUsage,
    check_router,
    declarative_rules,
    fallbacks,
    make_scenario_hook,
    router_enabled,
    scenario_for,
    session_id,
    strip_subagent_tag,
    subagent_target,
)
from tests.test_layering import IMPURE, PACKAGE, check

ROUTER = {
    "default": "claude_code,claude-sonnet-4-6",
    "background": "gemini,gemini-2.5-flash",
    "think": "claude_code,claude-opus-4-6",
    "longContext": "gemini,gemini-2.5-pro",
    "longContextThreshold": 60000,
    "webSearch": "openrouter,perplexity/sonar",
    "image": "gemini,gemini-2.5-flash-image",
    "fallback": {"default": ["openrouter,anthropic/claude-sonnet-4.5"],
                 "longContext": ["openrouter,google/gemini-2.5-pro", "openrouter,anthropic/claude-sonnet-4.5"]},
}
TAG = "<CCR-SUBAGENT-MODEL>openrouter,qwen/qwen3-coder</CCR-SUBAGENT-MODEL>"
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
WEB = [{"type": "web_search_20250305", "name": "web_search"}]


def req(model="claude-sonnet-4-5", *, text="hi", system=None, tools=None, thinking=None, messages=None):
    body = {"model": model, "max_tokens": 100,
            "messages": messages or [{"role": "user", "content": [{"type": "text", "text": text}]}]}
    for key, value in (("system", system), ("tools", tools), ("thinking", thinking)):
        if value is not None:
            body[key] = value
    return body


def tagged(model="claude-sonnet-4-5", **kw):
    system = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2"},
              {"type": "text", "text": "You are Claude Code."},
              {"type": "text", "text": TAG + "You review code."}]
    return req(model, system=system, **kw)


def with_image(model="claude-sonnet-4-5", *, in_tool_result=False):
    block = {"type": "tool_result", "tool_use_id": "t1", "content": [IMAGE]} if in_tool_result else IMAGE
    return req(model, messages=[{"role": "user", "content": [block, {"type": "text", "text": "what?"}]}])


THINK = {"type": "enabled", "budget_tokens": 2048}
HAIKU = "claude-haiku-4-5-20251001"
BIG, SMALL = 70000, 1000

# (case, request, token count, last session input, router overrides, expected (scenario, target))
PRECEDENCE = [
    ("7 default", req(), SMALL, None, {}, ("default", ROUTER["default"])),
    # rule 0 image: before everything, even an explicit model and long context
    ("0 image", with_image(), SMALL, None, {}, ("image", ROUTER["image"])),
    ("0 image in a tool_result", with_image(in_tool_result=True), SMALL, None, {}, ("image", ROUTER["image"])),
    ("0 image beats explicit", with_image("openrouter,x/y"), SMALL, None, {}, ("image", ROUTER["image"])),
    ("0 image beats longContext", with_image(), BIG, None, {}, ("image", ROUTER["image"])),
    ("0 image: model already the image model", with_image(ROUTER["image"]), SMALL, None, {},
     ("default", ROUTER["image"])),
    ("0 image: forceUseImageAgent", with_image(), SMALL, None, {"forceUseImageAgent": True},
     ("default", ROUTER["default"])),
    ("0 image: not set", with_image(), SMALL, None, {"image": None}, ("default", ROUTER["default"])),
    ("0 image: only in an earlier user message",
     req(messages=[{"role": "user", "content": [IMAGE]}, {"role": "assistant", "content": "ok"},
                   {"role": "user", "content": "and now?"}]), SMALL, None, {}, ("default", ROUTER["default"])),
    ("0 image: the last user message even under a prefill",
     req(messages=[{"role": "user", "content": [IMAGE]}, {"role": "assistant", "content": "It"}]),
     SMALL, None, {}, ("image", ROUTER["image"])),
    # rule 1 explicit: nothing else is checked
    ("1 explicit beats longContext", req("deepseek,deepseek-chat"), BIG, None, {},
     ("default", "deepseek,deepseek-chat")),
    ("1 explicit beats think and tag", tagged("deepseek,deepseek-chat", thinking=THINK), SMALL, None, {},
     ("default", "deepseek,deepseek-chat")),
    # rule 2 longContext
    ("2 long: over the threshold", req(), 60001, None, {}, ("longContext", ROUTER["longContext"])),
    ("2 long: at the threshold is not over", req(), 60000, None, {}, ("default", ROUTER["default"])),
    ("2 long: custom threshold", req(), 5001, None, {"longContextThreshold": 5000},
     ("longContext", ROUTER["longContext"])),
    ("2 long: last session input and count > 20000", req(), 20001, 61000, {},
     ("longContext", ROUTER["longContext"])),
    ("2 long: last session input but count ≤ 20000", req(), 20000, 61000, {}, ("default", ROUTER["default"])),
    ("2 long: last session input under the threshold", req(), 50000, 59000, {}, ("default", ROUTER["default"])),
    ("2 long: not set", req(), BIG, None, {"longContext": None}, ("default", ROUTER["default"])),
    ("2 long beats the tag", tagged(), BIG, None, {}, ("longContext", ROUTER["longContext"])),
    ("2 long beats background", req(HAIKU), BIG, None, {}, ("longContext", ROUTER["longContext"])),
    # rule 3 sub-agent tag, in any system text block (compatibility extension of §4.4)
    ("3 tag in the third block", tagged(), SMALL, None, {}, ("default", "openrouter,qwen/qwen3-coder")),
    ("3 tag in system[1] as CCR", req(system=[{"type": "text", "text": "billing"},
                                              {"type": "text", "text": TAG + "p"}]), SMALL, None, {},
     ("default", "openrouter,qwen/qwen3-coder")),
    ("3 tag in a string system", req(system=TAG + "prompt"), SMALL, None, {},
     ("default", "openrouter,qwen/qwen3-coder")),
    ("3 tag not at the start", req(system=[{"type": "text", "text": "see " + TAG}]), SMALL, None, {},
     ("default", ROUTER["default"])),
    ("3 tag beats background", tagged(HAIKU), SMALL, None, {}, ("default", "openrouter,qwen/qwen3-coder")),
    ("3 tag beats think", tagged(thinking=THINK), SMALL, None, {}, ("default", "openrouter,qwen/qwen3-coder")),
    # rule 4 background
    ("4 background: claude + haiku", req(HAIKU), SMALL, None, {}, ("background", ROUTER["background"])),
    ("4 background: claude-3-5-haiku", req("claude-3-5-haiku-20241022"), SMALL, None, {},
     ("background", ROUTER["background"])),
    ("4 background: haiku without claude", req("haiku-lite"), SMALL, None, {}, ("default", ROUTER["default"])),
    ("4 background: not set", req(HAIKU), SMALL, None, {"background": None}, ("default", ROUTER["default"])),
    ("4 background beats webSearch", req(HAIKU, tools=WEB), SMALL, None, {},
     ("background", ROUTER["background"])),
    # rule 5 webSearch ranks above think
    ("5 webSearch", req(tools=WEB), SMALL, None, {}, ("webSearch", ROUTER["webSearch"])),
    ("5 webSearch beats think", req(tools=WEB, thinking=THINK), SMALL, None, {},
     ("webSearch", ROUTER["webSearch"])),
    ("5 webSearch: other tools only", req(tools=[{"name": "Bash", "input_schema": {}}]), SMALL, None, {},
     ("default", ROUTER["default"])),
    ("5 webSearch: not set", req(tools=WEB), SMALL, None, {"webSearch": None}, ("default", ROUTER["default"])),
    # rule 6 think (§4.4 fix 2: only enabled and adaptive)
    ("6 think: enabled", req(thinking=THINK), SMALL, None, {}, ("think", ROUTER["think"])),
    ("6 think: adaptive", req(thinking={"type": "adaptive"}), SMALL, None, {}, ("think", ROUTER["think"])),
    ("6 think: disabled is not think", req(thinking={"type": "disabled"}), SMALL, None, {},
     ("default", ROUTER["default"])),
    ("6 think: not set", req(thinking=THINK), SMALL, None, {"think": None}, ("default", ROUTER["default"])),
    # groups are targets too
    ("7 default: a group", req(), SMALL, None, {"default": ["a,b", "c,d"]}, ("default", ["a,b", "c,d"])),
]


@pytest.mark.parametrize("case, body, count, last, overrides, expected", PRECEDENCE,
                         ids=[c[0] for c in PRECEDENCE])
def test_precedence(case, body, count, last, overrides, expected):
    router = {k: v for k, v in {**ROUTER, **overrides}.items() if v is not None}
    got = scenario_for(body, dialect="anthropic", router=router, token_count=count, last_input_tokens=last)
    assert got == expected


@pytest.mark.parametrize("router, dialect, enabled", [
    (ROUTER, "anthropic", True),
    (ROUTER, "openai", False),                                   # apply_to defaults to anthropic
    ({**ROUTER, "apply_to": ["anthropic", "openai"]}, "openai", True),
    ({**ROUTER, "apply_to": []}, "anthropic", False),
    ({k: v for k, v in ROUTER.items() if k != "default"}, "anthropic", False),   # default enables it
    ({"default": ""}, "anthropic", False),
    (None, "anthropic", False),
])
def test_router_applies_to_configured_dialects_only(router, dialect, enabled):
    assert router_enabled(router, dialect) is enabled
    got = scenario_for(req(thinking=THINK), dialect=dialect, router=router, token_count=0)
    assert (got[1] is not None) is enabled


def test_ccr_spellings_are_accepted():
    router = {"default": "a,b", "longcontext": "c,d", "long_context_threshold": 10}
    assert scenario_for(req(), dialect="anthropic", router=router, token_count=11) == ("longContext", "c,d")


def test_an_error_inside_routing_falls_back_to_default():
    class Odd(dict):
        def get(self, key, default=None):
            if key == "tools":
                raise RuntimeError("boom")
            return super().get(key, default)

    got = scenario_for(Odd(req()), dialect="anthropic", router=ROUTER, token_count=0)
    assert got == ("default", ROUTER["default"])


# ---------------------------------------------------------------- the sub-agent tag (fix 1)


def test_strip_removes_the_tag_and_copies():
    body = tagged()
    stripped = strip_subagent_tag(body)
    assert [b["text"] for b in stripped["system"]][2] == "You review code."
    assert body["system"][2]["text"].startswith(TAG)          # the input is untouched
    assert stripped["system"][:2] == body["system"][:2]
    assert strip_subagent_tag(req(system=TAG + "x"))["system"] == "x"
    plain = req(system="no tag")
    assert strip_subagent_tag(plain) is plain
    assert subagent_target(req(system=[{"type": "text", "text": "<CCR-SUBAGENT-MODEL></CCR-SUBAGENT-MODEL>"}])) is None


def hook_for(body, *, router=ROUTER, count=None, last=None, dialect="anthropic", headers=None):
    counter = (lambda r: count) if count is not None else estimate_request
    return make_scenario_hook(router, token_count_fn=counter, req=body, dialect=dialect,
                              headers=headers, last_input_tokens=last)


PROVIDERS = parse_providers({"providers": [
    {"name": "openrouter", "preset": "openrouter", "models": ["anthropic/*"]},
    {"name": "deepseek", "preset": "deepseek"}]}, warn=pytest.fail)


def resolve_with(hook, kind="anthropic"):
    return resolve(hook.model, route_kind=kind, bound=None, providers=PROVIDERS, aliases={"sonnet": "x-sonnet"},
                   default="claude_web", scenario=hook)


@pytest.mark.parametrize("model, count, scenario, provider, upstream", [
    ("claude-sonnet-4-5", BIG, "longContext", "gemini", "gemini-2.5-pro"),        # long context wins…
    ("claude-sonnet-4-5", SMALL, "default", "openrouter", "qwen/qwen3-coder"),   # …else the tag
    ("deepseek,deepseek-chat", SMALL, "default", "deepseek", "deepseek-chat"),   # explicit: hook unused
])
def test_the_tag_is_stripped_whichever_rule_wins(model, count, scenario, provider, upstream):
    hook = hook_for(tagged(model), count=count)
    route = resolve_with(hook)
    assert (hook.scenario, route.provider, route.model) == (scenario, provider, upstream)
    assert all(not b["text"].startswith("<CCR") for b in hook.request["system"])


def test_the_tag_stays_when_the_router_does_not_apply():
    hook = hook_for(tagged(), dialect="openai")
    assert hook.request["system"][2]["text"].startswith(TAG)
    assert resolve_with(hook, "openai").via == "default"


# ---------------------------------------------------------------- the hook in router.resolve


def test_hook_routes_scenarios_through_resolve():
    hook = hook_for(req(thinking=THINK))
    route = resolve_with(hook)
    assert (route.provider, route.model, route.via, hook.scenario) == (
        "claude_code", "claude-opus-4-6", "scenario", "think")


def test_hook_sees_the_alias_target():
    hook = hook_for(req("sonnet"))
    resolve_with(hook)
    assert hook.scenario == "default" and hook.target == ROUTER["default"]


def test_hook_image_rule_runs_before_the_router():
    hook = hook_for(with_image("deepseek,deepseek-chat"))
    assert hook.model == ROUTER["image"] and hook.scenario == "image"
    route = resolve_with(hook)
    assert (route.provider, route.model) == ("gemini", "gemini-2.5-flash-image")
    bare = hook_for(with_image(), router={**ROUTER, "image": "gemini-2.5-flash-image"})
    assert bare("claude-sonnet-4-5", "anthropic") == "gemini-2.5-flash-image"   # even unasked


def test_hook_counts_tokens_only_when_long_context_is_configured():
    calls = []
    router = {k: v for k, v in ROUTER.items() if k != "longContext"}
    make = lambda r: make_scenario_hook(r, token_count_fn=lambda b: calls.append(b) or BIG, req=req())
    make(router)("claude-sonnet-4-5", "anthropic")
    assert calls == []
    hook = make(ROUTER)
    assert hook("claude-sonnet-4-5", "anthropic") == ROUTER["longContext"] and len(calls) == 1


def test_hook_survives_a_failing_counter():
    def boom(_):
        raise ValueError("bad")
    hook = make_scenario_hook(ROUTER, token_count_fn=boom, req=req())
    assert hook("claude-sonnet-4-5", "anthropic") == ROUTER["default"]


def test_hook_uses_last_usage():
    hook = hook_for(req(text="x" * 66000), last=61000)   # ~22000 estimated tokens
    assert hook("claude-sonnet-4-5", "anthropic") == ROUTER["longContext"]


# ---------------------------------------------------------------- declarative rules (§4.6)

RULES = [
    {"when": {"header": "X-App", "equals": "cli"}, "set_model": "deepseek,deepseek-chat"},
    {"when": {"body": "metadata.user_id", "matches": r"^user_team"}, "set_model": "gemini,gemini-2.5-pro"},
    {"when": [{"body": "messages.0.role", "equals": "user"}, {"body": "stream", "exists": True}],
     "set_model": ["a,b", "c,d"]},
    {"when": {"body": "tags", "contains": "cheap"}, "set_model": "gemini,gemini-2.5-flash"},
]


@pytest.mark.parametrize("headers, extra, expected", [
    ({"x-app": "cli"}, {}, "deepseek,deepseek-chat"),                   # header names: any case
    ({"X-APP": "web"}, {}, None),
    ({}, {"metadata": {"user_id": "user_team_1"}}, "gemini,gemini-2.5-pro"),
    ({}, {"metadata": {"user_id": "other"}}, None),
    ({}, {"stream": True}, ["a,b", "c,d"]),                              # every condition of a list
    ({}, {"tags": ["cheap", "x"]}, "gemini,gemini-2.5-flash"),
    ({"x-app": "cli"}, {"stream": True}, "deepseek,deepseek-chat"),     # first match wins
])
def test_declarative_rules(headers, extra, expected):
    assert declarative_rules(RULES, {**req(), **extra}, headers) == expected


@pytest.mark.parametrize("body, count, expected", [
    (req(), SMALL, ("rule", "deepseek,deepseek-chat")),
    (req(thinking=THINK), SMALL, ("rule", "deepseek,deepseek-chat")),     # before think
    (req(), BIG, ("rule", "deepseek,deepseek-chat")),                     # before rule 2
    (tagged(), SMALL, ("rule", "deepseek,deepseek-chat")),                # before the tag
    (req("gemini,gemini-2.5-pro"), SMALL, ("default", "gemini,gemini-2.5-pro")),  # after rule 1
    (with_image(), SMALL, ("image", ROUTER["image"])),                   # after rule 0
])
def test_rules_run_before_rule_2(body, count, expected):
    router = {**ROUTER, "rules": RULES[:1]}
    assert scenario_for(body, dialect="anthropic", router=router, token_count=count,
                        headers={"X-App": "cli"}) == expected


def test_broken_rules_never_match():
    rules = [{"when": {"body": "model", "matches": "("}, "set_model": "a,b"}, {"set_model": "c,d"},
             {"when": {"header": "h"}, "set_model": 5}, "junk"]
    assert declarative_rules(rules, req(), {"h": "1"}) is None


# ---------------------------------------------------------------- fallback (§4.7)


@pytest.mark.parametrize("scenario, expected", [
    ("longContext", ["openrouter,google/gemini-2.5-pro", "openrouter,anthropic/claude-sonnet-4.5"]),
    ("default", ["openrouter,anthropic/claude-sonnet-4.5"]),
    ("think", ["openrouter,anthropic/claude-sonnet-4.5"]),      # no list of its own: default's
])
def test_fallbacks(scenario, expected):
    assert fallbacks(ROUTER, scenario) == expected


def test_fallbacks_without_a_table():
    assert fallbacks({"default": "a,b"}, "default") == []
    assert fallbacks({"fallback": {"think": "x,y"}}, "think") == ["x,y"]


# ---------------------------------------------------------------- session id and lastUsage (§4.2)


@pytest.mark.parametrize("headers, user_id, expected", [
    ({"X-Claude-Code-Session-Id": "hdr"}, json.dumps({"session_id": "json"}), "hdr"),
    ({}, json.dumps({"device_id": "d", "session_id": "json"}), "json"),
    ({}, "user_abc_account__session_5f0e", "5f0e"),
    ({}, "plain", None),
    ({}, None, None),
])
def test_session_id(headers, user_id, expected):
    body = {**req(), "metadata": {"user_id": user_id}} if user_id else req()
    assert session_id(body, headers) == expected


def test_last_usage_is_an_lru():
    lru = LastUsage(capacity=2)
    lru.put("a", {"input_tokens": 1})
    lru.put("b", {"input_tokens": 2})
    assert lru.input_tokens("a") == 1          # a is now the most recent
    lru.put("c", {"input_tokens": 3})
    assert (lru.input_tokens("a"), lru.input_tokens("b"), lru.input_tokens("c")) == (1, None, 3)
    assert lru.input_tokens(None) is None


# ---------------------------------------------------------------- config checks and purity


def test_check_router():
    assert check_router(ROUTER) == []
    problems = check_router({"default": 5, "longContextThreshold": -1, "apply_to": ["klingon"],
                             "rules": [{"when": {"body": "x", "matches": "("}, "set_model": "a,b"}, 7]})
    assert len(problems) == 5 and all(p.startswith("router.") for p in problems)


@pytest.mark.parametrize("name", ["scenarios.py", "breaker.py", "client_keys.py"])
def test_new_modules_are_pure(name):
    assert check(PACKAGE / name, IMPURE) == []
