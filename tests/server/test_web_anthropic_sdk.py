"""The official anthropic SDK against the proxy, the proxy against the fake claude.ai."""

from __future__ import annotations

import base64

import anthropic
import pytest

from tests.conftest import PASSWORD, make_cookie
from tests.fakes.claude_web import Reply
from tests.fakes.claude_web_wire import session_key

MODEL = "claude-sonnet-4-6"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


def client(proxy) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0)


@pytest.fixture(params=["aiohttp", "curl_cffi"])
async def proxy(request, fake_web, start_proxy):
    fake_web.add_account(make_cookie(1))
    return await start_proxy({"rproxy": fake_web.base_url}, cookies=[make_cookie(1)],
                             backend=request.param)


async def test_non_streaming_text(proxy, fake_web):
    fake_web.reply = "Hello from the fake"
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=200, system="Be brief.",
                                      messages=[{"role": "user", "content": "Say hello"}])
    assert msg.content[0].text == "Hello from the fake"
    assert msg.model == MODEL and msg.id
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    body = fake_web.completions[-1]
    prompt = body["attachments"][0]["extracted_content"]
    assert prompt == "Be brief.\n\n\x08Human: Say hello"
    assert body["model"] == MODEL and body["rendering_mode"] == "messages"
    assert fake_web.violations == []


async def test_streaming_relays_events(proxy, fake_web):
    fake_web.reply = "one two three four five six"
    async with client(proxy) as c:
        async with c.messages.stream(model=MODEL, max_tokens=200,
                                     messages=[{"role": "user", "content": "count"}]) as stream:
            pieces = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
    assert "".join(pieces) == "one two three four five six"
    assert len(pieces) > 1  # relayed delta by delta, not buffered
    assert final.model == MODEL and final.usage.output_tokens > 0
    assert fake_web.violations == []


async def test_thinking_uses_the_conversation_setting(proxy, fake_web):
    fake_web.reply = "The answer is 4."
    fake_web.thinking_text = "2 plus 2 makes 4"
    async with client(proxy) as c:
        async with c.messages.stream(model=MODEL, max_tokens=8000,
                                     thinking={"type": "enabled", "budget_tokens": 2048},
                                     messages=[{"role": "user", "content": "2+2?"}]) as stream:
            final = await stream.get_final_message()
    kinds = [b.type for b in final.content]
    assert kinds == ["thinking", "text"]
    assert final.content[0].thinking == "2 plus 2 makes 4"
    conv = next(iter(fake_web.conversations.values()))
    assert conv.settings.get("paprika_mode") == "extended"
    assert "budget_tokens" not in str(fake_web.completions[-1])


async def test_thinking_suffix_hides_thinking_from_sillytavern(proxy, fake_web):
    fake_web.reply = "visible"
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL + "-thinking", max_tokens=8000,
                                      messages=[{"role": "user", "content": "hi there"}])
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == "visible"
    assert msg.model == MODEL + "-thinking"
    assert fake_web.completions[-1]["model"] == MODEL  # suffix never reaches claude.ai


@pytest.mark.parametrize("stream", [False, True])
async def test_stop_sequences_cut_and_removed(proxy, fake_web, stream):
    fake_web.reply = ["alpha be", "ta STO", "P gamma delta"]
    async with client(proxy) as c:
        kwargs = dict(model=MODEL, max_tokens=100, stop_sequences=["STOP"],
                      messages=[{"role": "user", "content": "go"}])
        if stream:
            async with c.messages.stream(**kwargs) as s:
                msg = await s.get_final_message()
        else:
            msg = await c.messages.create(**kwargs)
    assert msg.content[0].text == "alpha beta "
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "STOP"


async def test_image_is_uploaded(proxy, fake_web):
    fake_web.reply = "a tiny png"
    async with client(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": "what is this?"}]}])
    assert [(u.filename, u.content_type) for u in fake_web.uploads] == [("image.png", "image/png")]
    assert fake_web.completions[-1]["files"] == [fake_web.uploads[0].file_uuid]
    assert fake_web.violations == []


async def test_hi_is_answered_locally(proxy, fake_web):
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=10,
                                      messages=[{"role": "user", "content": "Hi"}])
    assert msg.content[0].text.startswith("Claude Reverse Proxy is working")
    assert msg.model == MODEL and fake_web.requests == []


async def test_count_tokens_is_local(proxy, fake_web):
    async with client(proxy) as c:
        small = await c.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        big = await c.messages.count_tokens(model=MODEL, system="x" * 3000,
                                            messages=[{"role": "user", "content": "hi"}])
    assert 0 < small.input_tokens < big.input_tokens
    assert big.input_tokens >= 1000
    assert fake_web.requests == []


async def test_web_search_tool_enables_search(proxy, fake_web):
    fake_web.reply = Reply("found it")
    async with client(proxy) as c:
        msg = await c.messages.create(
            model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "search news"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert fake_web.completions[-1]["tools"] == [{"name": "web_search", "type": "web_search_v0"}]
    types = [b.type for b in msg.content]
    assert "server_tool_use" in types and "web_search_tool_result" in types


@pytest.mark.parametrize("backend", ["aiohttp", "curl_cffi"])
async def test_cookies_claude_ai_sets_never_ride_along(backend, fake_web, start_proxy):
    """claude.ai's answers set cookies (lastActiveOrg names the account's organization): the
    proxy sends each call with its own sessionKey and nothing an earlier answer set, so one
    account's cookies never reach another account's calls."""
    if backend == "curl_cffi":
        pytest.importorskip("curl_cffi")
    cookies = [make_cookie(1), make_cookie(2)]
    for cookie in cookies:
        fake_web.add_account(cookie)
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=cookies, backend=backend)
    async with client(proxy) as c:
        for n in range(6):
            await c.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": f"hi {n}"}])
    sent = [r.headers.getall("Cookie", []) for r in fake_web.requests]
    assert {session_key(h[0]) for h in sent} == set(cookies)  # both accounts served
    assert all(len(h) == 1 and h[0].count("=") == 1 and h[0].startswith("sessionKey=") for h in sent), sent


async def test_a_curl_cffi_older_than_the_lean_path_needs_is_a_clear_error(fake_web, start_proxy, monkeypatch):
    """curl_cffi before 0.16 lacks what the lean path uses: the client gets a 502 saying what to do."""
    curl_lean = pytest.importorskip("clewdr_lite.upstream.curl_lean")
    monkeypatch.setattr(curl_lean, "available", lambda: False)
    fake_web.add_account(make_cookie(1))
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[make_cookie(1)], backend="curl_cffi")
    async with client(proxy) as c:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await c.messages.create(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502
    assert "needs 0.16 or later" in caught.value.message and "pip install -U curl_cffi" in caught.value.message
    assert fake_web.completions == [] and len(proxy.state.pool.valid) == 1  # not the cookie's fault
