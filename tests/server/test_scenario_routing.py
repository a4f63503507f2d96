"""Claude Code Router scenarios end to end: which provider and model each kind of request reaches."""

from __future__ import annotations

import anthropic

from tests.conftest import PASSWORD
from tests.fakes.openai_api import FakeOpenAI, OScript


async def test_scenarios_pick_targets_and_strip_the_subagent_tag(clock, start_proxy):
    async with FakeOpenAI(clock=clock, flavour="openrouter") as fake:
        fake.open_access = True
        fake.accept_any_model = True
        fake.reply_hook = lambda body: OScript(text=body["model"])  # answer with the model it got
        router = {"default": "lan,main-model", "think": "lan,thinker", "background": "lan,small",
                  "longContext": "lan,long", "longContextThreshold": 2000, "webSearch": "lan,searcher"}
        proxy = await start_proxy({"providers": [{"name": "lan", "type": "openai", "base_url": fake.base_url}],
                                   "router": router})
        cases = [
            ({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi there"}]}, "main-model"),
            ({"model": "claude-haiku-4-5-20251001", "messages": [{"role": "user", "content": "title?"}]}, "small"),
            ({"model": "claude-sonnet-4-6", "thinking": {"type": "enabled", "budget_tokens": 2048},
              "messages": [{"role": "user", "content": "think"}]}, "thinker"),
            ({"model": "claude-sonnet-4-6", "thinking": {"type": "disabled"},
              "messages": [{"role": "user", "content": "no think"}]}, "main-model"),
            ({"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "x" * 9000}]}, "long"),
            ({"model": "claude-sonnet-4-6", "tools": [{"type": "web_search_20250305", "name": "web_search"}],
              "messages": [{"role": "user", "content": "news"}]}, "searcher"),
            ({"model": "claude-sonnet-4-6", "system": [{"type": "text", "text":
              "<CCR-SUBAGENT-MODEL>lan,sub-model</CCR-SUBAGENT-MODEL>You are a sub-agent."}],
              "messages": [{"role": "user", "content": "do it"}]}, "sub-model"),
        ]
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
            for body, expected in cases:
                msg = await c.messages.create(max_tokens=4000, **body)
                assert msg.content[-1].text == expected, body
                assert msg.model == body["model"]
        sent = fake.requests_to("chat")[-1].json["messages"][0]["content"]
        assert "CCR-SUBAGENT-MODEL" not in sent and "You are a sub-agent." in sent
