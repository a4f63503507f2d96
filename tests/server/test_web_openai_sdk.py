"""The official openai SDK on the OpenAI-compatible route, served by the fake claude.ai."""

from __future__ import annotations

import base64

import openai
import pytest

from tests.conftest import PASSWORD, make_cookie

MODEL = "claude-sonnet-4-6"
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


def client(proxy, suffix="/v1") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=proxy.url + suffix, api_key=PASSWORD, max_retries=0)


@pytest.fixture
async def proxy(fake_web, start_proxy):
    fake_web.add_account(make_cookie(1))
    return await start_proxy({"rproxy": fake_web.base_url}, cookies=[make_cookie(1)])


async def test_non_streaming_completion(proxy, fake_web):
    fake_web.reply = "Bonjour"
    async with client(proxy) as c:
        resp = await c.chat.completions.create(model=MODEL, messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hello"}])
    assert resp.object == "chat.completion" and resp.id.startswith("chatcmpl-")
    assert resp.model == MODEL and resp.created > 0
    choice = resp.choices[0]
    assert choice.message.content == "Bonjour" and choice.finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    prompt = fake_web.completions[-1]["attachments"][0]["extracted_content"]
    assert prompt == "Answer in French.\n\n\x08Human: Hello"


async def test_streaming_with_usage_and_done(proxy, fake_web):
    fake_web.reply = "streamed words arrive one by one"
    async with client(proxy) as c:
        stream = await c.chat.completions.create(model=MODEL, stream=True,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "go"}])
        chunks = [chunk async for chunk in stream]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "streamed words arrive one by one"
    assert all(ch.object == "chat.completion.chunk" and ch.model == MODEL for ch in chunks)
    assert len({ch.id for ch in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


async def test_raw_stream_ends_with_done(proxy, fake_web):
    import aiohttp

    fake_web.reply = "x"
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {PASSWORD}"},
                          json={"model": MODEL, "stream": True,
                                "messages": [{"role": "user", "content": "go"}]}) as r:
            body = await r.text()
            assert r.headers["Content-Type"].startswith("text/event-stream")
    assert body.endswith("data: [DONE]\n\n")
    assert "event:" not in body


async def test_image_and_stop_and_reasoning(proxy, fake_web):
    fake_web.reply = "I see a square. END and more"
    fake_web.thinking_text = "looking closely"
    async with client(proxy) as c:
        resp = await c.chat.completions.create(
            model=MODEL, stop="END", reasoning_effort="medium",
            messages=[{"role": "user", "content": [
                {"type": "text", "text": "what is it?"},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "high"}}]}])
    msg = resp.choices[0].message
    assert msg.content == "I see a square. "
    assert msg.model_extra["reasoning_content"] == "looking closely"
    assert [u.filename for u in fake_web.uploads] == ["image.png"]
    conv = next(iter(fake_web.conversations.values()))
    assert conv.settings.get("paprika_mode") == "extended"


async def test_tool_history_is_flattened_for_the_web(proxy, fake_web):
    fake_web.reply = "It is sunny."
    async with client(proxy) as c:
        await c.chat.completions.create(model=MODEL, messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21C"},
            {"role": "developer", "content": "be short"}])
    prompt = fake_web.completions[-1]["attachments"][0]["extracted_content"]
    assert '[Tool call get_weather id=call_1] {"city":"Paris"}' in prompt
    assert "[Tool result id=call_1] sunny, 21C" in prompt
    assert prompt.endswith("System: be short")


async def test_models_list_for_openai_clients(proxy):
    async with client(proxy) as c:
        models = [m.id async for m in c.models.list()]
    assert "claude-sonnet-4-6" in models and "claude-sonnet-4-6-thinking" in models


async def test_root_alias_without_v1(proxy, fake_web):
    fake_web.reply = "rooted"
    async with client(proxy, suffix="") as c:
        resp = await c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].message.content == "rooted"


async def test_hi_answer_is_openai_shaped(proxy, fake_web):
    async with client(proxy) as c:
        resp = await c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert resp.choices[0].message.content.startswith("Claude Reverse Proxy is working")
    assert resp.usage is not None and fake_web.requests == []
