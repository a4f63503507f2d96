"""Odd request bodies in every dialect, to every kind of upstream (claude.ai, Anthropic, OpenAI, Gemini): each gets an answer or a clear
4xx/5xx in the caller's dialect, never an internal error (a seeded random search over field types)."""

from __future__ import annotations

import json
import logging
import random

import aiohttp
import pytest

from tests.conftest import PASSWORD, make_cookie
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.gemini_api import FakeGoogle
from tests.fakes.openai_api import FakeOpenAI

ODD = [None, True, 0, -1, 1.5, 1e308, "x", "", [], {}, [None], [1], ["x"], [{}], {"a": 1}, [{"type": None}],
       [{"type": "text"}], [{"type": "text", "text": 5}], [{"type": "image"}], [{"type": "tool_use"}],
       [{"type": "tool_result", "content": 5}], {"type": []}, {"type": {}}, {"type": "tool"},
       {"type": "function", "function": []}, [{"type": "image_url", "image_url": 5}],
       [{"type": "image_url", "image_url": {"url": []}}], [{"name": []}], [{"functionDeclarations": [{"name": {}}]}],
       {"thinkingBudget": "x"}, {"includeThoughts": []}, "auto", "high"]
FIELDS = [("model",), ("max_tokens",), ("messages",), ("messages", 0), ("messages", 0, "role"), ("messages", 0, "content"),
          ("messages", 0, "content", 0), ("messages", 0, "content", 0, "type"), ("messages", 0, "tool_calls"),
          ("system",), ("stream",), ("tools",), ("tools", 0), ("tool_choice",), ("tool_choice", "type"), ("thinking",),
          ("thinking", "type"), ("stop_sequences",), ("temperature",), ("metadata",), ("stream_options",),
          ("reasoning_effort",), ("response_format",), ("max_completion_tokens",), ("stop",), ("contents",),
          ("contents", 0, "role"), ("contents", 0, "parts"), ("contents", 0, "parts", 0), ("generationConfig",),
          ("generationConfig", "thinkingConfig"), ("generationConfig", "maxOutputTokens"), ("systemInstruction",),
          ("safetySettings",), ("toolConfig",)]
ANTHROPIC_KEY = "sk-ant-api03-" + "k" * 40
CLAUDE_MSG = [{"role": "user", "content": "hi there"}]
GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "hi there"}]}]}


def mutated(base: dict, rng: random.Random) -> dict:
    body = json.loads(json.dumps(base))
    for _ in range(rng.randint(1, 3)):
        *path, last = rng.choice(FIELDS)
        node = body
        for key in path:
            if isinstance(node, dict) and isinstance(key, str):
                node = node.setdefault(key, {})
            elif isinstance(node, list) and isinstance(key, int) and key < len(node):
                node = node[key]
        value = json.loads(json.dumps(rng.choice(ODD)))
        if isinstance(node, dict) and isinstance(last, str):
            node[last] = value
        elif isinstance(node, list) and isinstance(last, int) and last < len(node):
            node[last] = value
    return body


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "claude-opus-4-5", "gpt-4o", "gemini-2.5-flash"],
                         ids=["claude.ai", "anthropic-provider", "openai-provider", "gemini-provider"])
async def test_odd_bodies_never_meet_an_internal_error(model, fake_web, start_proxy, clock, caplog):
    fake_web.add_account(make_cookie(1))
    async with FakeOpenAI(clock=clock) as oa, FakeGoogle(clock=clock) as google, FakeAnthropic(clock=clock) as api:
        api.add_key(ANTHROPIC_KEY)
        oa.add_key("sk-o" + "x" * 40)
        oa.accept_any_model = True
        google.add_key("AIzaSy01" + "x" * 31)
        proxy = await start_proxy({
            "rproxy": fake_web.base_url, "gemini_base": google.base_url, "gemini_keys": [{"key": "AIzaSy01" + "x" * 31}],
            "providers": [{"name": "oa", "type": "openai", "base_url": oa.base_url, "keys": ["sk-o" + "x" * 40],
                           "models": ["gpt-*"]},
                          {"name": "api", "type": "anthropic", "base_url": api.origin, "keys": [ANTHROPIC_KEY],
                           "models": ["claude-opus-*"]}]}, cookies=[make_cookie(1)])
        targets = [("/v1/messages", {"x-api-key": PASSWORD}, {"model": model, "max_tokens": 5, "messages": CLAUDE_MSG}),
                   ("/v1/messages/count_tokens", {"x-api-key": PASSWORD}, {"model": model, "messages": CLAUDE_MSG}),
                   ("/v1/chat/completions", {"Authorization": f"Bearer {PASSWORD}"}, {"model": model, "messages": CLAUDE_MSG}),
                   (f"/v1beta/models/{model}:generateContent", {"x-goog-api-key": PASSWORD}, GEMINI_BODY),
                   (f"/v1beta/models/{model}:countTokens", {"x-goog-api-key": PASSWORD}, GEMINI_BODY)]
        rng, internal = random.Random(model), []
        async with aiohttp.ClientSession() as s:
            for n in range(1500):
                path, headers, base = targets[n % len(targets)]
                body = mutated(base, rng)
                async with s.post(proxy.url + path, headers=headers, json=body) as r:
                    if "internal error" in await r.text():
                        internal.append((path, body))
    assert internal == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("clewdr") and r.levelno >= logging.ERROR] == []
