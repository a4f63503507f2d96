"""Cookie rotation and health: banned, rate-limited, invalid, disabled, overloaded, Cloudflare."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from tests.conftest import PASSWORD, make_cookie

MODEL = "claude-sonnet-4-6"
MSG = [{"role": "user", "content": "hello there"}]


def anth(proxy) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0)


async def test_rotation_past_banned_and_rate_limited(fake_web, start_proxy, clock):
    banned, limited, good = make_cookie("banned"), make_cookie("limited"), make_cookie("good")
    fake_web.add_account(banned, flags=[("banned", int(time.time()) + 86400)])
    reset = int(clock.now) + 600
    fake_web.add_account(limited, behaviour="rate_limited", resets_at=reset)
    fake_web.add_account(good)
    fake_web.reply = "served by the good one"
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[banned, limited, good])
    async with anth(proxy) as c:
        for stream in (False, True):
            if stream:
                async with c.messages.stream(model=MODEL, max_tokens=50, messages=MSG) as s:
                    msg = await s.get_final_message()
            else:
                msg = await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
            assert msg.content[0].text == "served by the good one"
    pool = proxy.state.pool
    assert [r["cookie"] for r in pool.valid] == [good]
    assert pool.exhausted[0]["cookie"] == limited and pool.exhausted[0]["reset_time"] == reset
    assert pool.invalid == [{"cookie": banned, "reason": "Banned", "last_error": pool.invalid[0]["last_error"]}]
    # the rate-limited cookie comes back by itself once its reset time has passed
    clock.now = reset + 1
    async with anth(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    assert {r["cookie"] for r in pool.valid} == {good, limited} and pool.exhausted == []


@pytest.mark.parametrize("behaviour, reason", [("unauthorized", "Null"), ("disabled", "Disabled"),
                                               ("invalid_authorization", "Null"),
                                               ("null_account", "Null")])
async def test_bad_cookies_are_retired_with_reason(fake_web, start_proxy, behaviour, reason):
    bad, good = make_cookie("bad"), make_cookie("good")
    fake_web.add_account(bad, behaviour=behaviour)
    fake_web.add_account(good)
    fake_web.reply = "ok"
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[bad, good])
    async with anth(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    assert msg.content[0].text == "ok"
    assert proxy.state.pool.invalid[0]["cookie"] == bad
    assert proxy.state.pool.invalid[0]["reason"] == reason


async def test_free_account_retired_when_skip_non_pro(fake_web, start_proxy):
    free, good = make_cookie("free"), make_cookie("good")
    fake_web.add_account(free, pro=False)
    fake_web.add_account(good)
    proxy = await start_proxy({"rproxy": fake_web.base_url, "skip_non_pro": True}, cookies=[free, good])
    async with anth(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    assert proxy.state.pool.invalid[0]["reason"] == "Free"


async def test_free_account_used_without_model(fake_web, start_proxy):
    free = make_cookie("free")
    fake_web.add_account(free, pro=False)
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[free])
    async with anth(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    assert "model" not in fake_web.completions[-1] and fake_web.violations == []


async def test_restricted_flag_parks_when_skip_restricted(fake_web, start_proxy):
    restricted, good = make_cookie("r"), make_cookie("good")
    until = int(time.time()) + 7200
    fake_web.add_account(restricted, flags=[("restricted", until)])
    fake_web.add_account(good)
    proxy = await start_proxy({"rproxy": fake_web.base_url, "skip_restricted": True},
                              cookies=[restricted, good])
    async with anth(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    assert proxy.state.pool.exhausted[0]["cookie"] == restricted
    assert proxy.state.pool.exhausted[0]["reset_time"] == until


async def test_overloaded_is_retried_on_the_next_cookie(fake_web, start_proxy):
    busy, good = make_cookie("busy"), make_cookie("good")
    fake_web.add_account(busy, behaviour="overloaded")
    fake_web.add_account(good)
    fake_web.reply = "second try"
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[busy, good])
    async with anth(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    assert msg.content[0].text == "second try"
    assert len(proxy.state.pool.valid) == 2  # a transient error is not the cookie's fault


async def test_cloudflare_block_is_not_a_cookie_problem(fake_web, start_proxy):
    blocked = make_cookie("cf")
    fake_web.add_account(blocked, behaviour="cloudflare")
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[blocked])
    async with anth(proxy) as c:
        with pytest.raises(anthropic.InternalServerError) as info:
            await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    assert info.value.status_code == 502
    assert "Cloudflare" in info.value.message and "proxy" in info.value.message
    assert "cookie" not in info.value.message.lower().split("not a cookie")[0]
    assert proxy.state.pool.counts() == (1, 0, 0)


async def test_redirect_is_a_block_too(fake_web, start_proxy):
    blocked = make_cookie("302")
    fake_web.add_account(blocked, behaviour="redirect")
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[blocked])
    async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
        with pytest.raises(openai.InternalServerError) as info:
            await c.chat.completions.create(model=MODEL, messages=MSG)
    assert info.value.status_code == 502 and "blocked" in info.value.message
    assert fake_web.requests_to("completion") == []


@pytest.mark.parametrize("dialect", ["anthropic", "openai"])
async def test_only_exhausted_cookies_answer_429(fake_web, start_proxy, clock, dialect):
    limited = make_cookie("limited")
    fake_web.add_account(limited, behaviour="rate_limited", resets_at=int(clock.now) + 900)
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[limited])
    if dialect == "anthropic":
        async with anth(proxy) as c:
            with pytest.raises(anthropic.RateLimitError) as info:
                await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    else:
        async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
            with pytest.raises(openai.RateLimitError) as info:
                await c.chat.completions.create(model=MODEL, messages=MSG)
    # the first attempt gets the upstream 429 itself; later requests find only parked cookies
    assert info.value.status_code == 429
    async with anth(proxy) as c:
        with pytest.raises(anthropic.RateLimitError) as again:
            await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    assert again.value.response.headers["retry-after"] == "900"
    assert fake_web.accounts[limited].calls["completion"] == 1


async def test_no_cookie_at_all_is_503(fake_web, start_proxy):
    proxy = await start_proxy({"rproxy": fake_web.base_url})
    async with anth(proxy) as c:
        with pytest.raises(anthropic.APIStatusError) as info:
            await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    assert info.value.status_code == 503 and "No cookie available" in info.value.message


async def test_all_cookies_invalid_says_why(fake_web, start_proxy):
    bad = make_cookie("bad")
    fake_web.add_account(bad, behaviour="unauthorized")
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[bad])
    async with anth(proxy) as c:
        with pytest.raises(anthropic.APIStatusError) as info:
            await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    assert info.value.status_code == 503
    assert "No cookie available" in info.value.message and "invalid" in info.value.message


async def test_retries_are_bounded_by_max_retries(fake_web, start_proxy):
    cookies = [make_cookie(f"busy{i}") for i in range(4)]
    for cookie in cookies:
        fake_web.add_account(cookie, behaviour="overloaded")
    proxy = await start_proxy({"rproxy": fake_web.base_url, "max_retries": 2}, cookies=cookies)
    async with anth(proxy) as c:
        with pytest.raises(anthropic.APIStatusError) as info:
            await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    assert info.value.status_code == 529  # the last upstream error is shown
    assert sum(a.calls["completion"] for a in fake_web.accounts.values()) == 3


async def test_bootstrap_is_cached_per_cookie(fake_web, start_proxy):
    good = make_cookie("good")
    fake_web.add_account(good)
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[good])
    async with anth(proxy) as c:
        for _ in range(3):
            await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    assert len(fake_web.requests_to("bootstrap")) == 1
    assert len(fake_web.requests_to("completion")) == 3


async def test_usage_recorded_per_cookie(fake_web, start_proxy):
    good = make_cookie("good")
    fake_web.add_account(good)
    fake_web.reply = "some reply text"
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[good])
    async with anth(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=50, messages=MSG)
    record = proxy.state.pool.valid[0]
    for bucket in ("session_usage", "weekly_usage", "weekly_sonnet_usage", "lifetime_usage"):
        assert record[bucket]["total_input_tokens"] == msg.usage.input_tokens
        assert record[bucket]["sonnet_output_tokens"] == msg.usage.output_tokens
    assert "weekly_opus_usage" not in record


async def test_a_whole_answer_goes_to_the_next_cookie_on_an_error_before_content(fake_web, start_proxy, monkeypatch):
    """A non-streaming client has no stream to start, so the claude.ai stream is held until its
    content without a deadline: an error event before any text that comes after HOLD_SECONDS
    is still a failed attempt, and the next cookie answers."""
    import asyncio

    from clewdr_lite.upstream import relay
    from tests.fakes.claude_web import Reply

    monkeypatch.setattr(relay, "HOLD_SECONDS", 0.02)
    first, second = make_cookie("first"), make_cookie("second")
    fake_web.add_account(first)
    fake_web.add_account(second)
    replies = iter([Reply(error={"type": "overloaded_error", "message": "Overloaded"}), Reply(text="second try")])
    fake_web.reply_hook = lambda body: next(replies)
    fake_web.stall_after = 1  # message_start goes out; the error waits
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[first, second])
    async with anth(proxy) as c:
        asking = asyncio.ensure_future(c.messages.create(model=MODEL, max_tokens=50, messages=MSG))
        await asyncio.wait_for(fake_web.stream_stalled.wait(), 5)
        await asyncio.sleep(0.1)  # five hold deadlines
        fake_web.release()
        msg = await asyncio.wait_for(asking, 5)
    assert msg.content[0].text == "second try"
    assert len(fake_web.completions) == 2


async def test_a_whole_answer_client_leaving_mid_answer_frees_the_cookie_and_the_stream(fake_web, start_proxy):
    """A non-streaming client's answer is drained into the accumulator (WebStream.drain): when the
    client leaves mid-answer the drain is cancelled, the claude.ai stream is closed and the cookie's
    slot is given back, with what was counted so far recorded."""
    import asyncio

    import aiohttp

    good = make_cookie("good")
    fake_web.add_account(good)
    fake_web.reply = "a long answer that never ends"
    fake_web.stall_after = 4  # message_start, block start, two deltas: content flows, then nothing
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[good])
    async with aiohttp.ClientSession() as s:
        with pytest.raises(asyncio.TimeoutError):
            async with s.post(proxy.url + "/v1/messages", headers={"x-api-key": PASSWORD},
                              timeout=aiohttp.ClientTimeout(total=0.5),
                              json={"model": MODEL, "max_tokens": 50, "messages": MSG}) as r:
                await r.read()
    await asyncio.wait_for(fake_web.stream_cancelled.wait(), 5)  # the proxy closed its claude.ai stream
    for _ in range(100):
        if not proxy.state.pool.inflight:
            break
        await asyncio.sleep(0.01)
    assert fake_web.cancelled_streams == 1 and proxy.state.pool.inflight == {}
    assert proxy.state.pool.valid[0]["lifetime_usage"]["total_input_tokens"] > 0


ODD_EVENTS = {  # claude.ai streams that are event streams but carry what no converter can read
    "null-message": b'event: message_start\ndata: {"type":"message_start","message":null}\n\n',
    "string-delta": b'event: message_start\ndata: {"type":"message_start","message":{}}\n\n'
                    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
                    b'"content_block":{"type":"text","text":""}}\n\n'
                    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":"x"}\n\n',
}


@pytest.mark.parametrize("odd", list(ODD_EVENTS))
async def test_odd_claude_ai_events_are_clean_errors_in_both_dialects(odd, start_proxy, caplog):
    """Before the content: a failed attempt (502 alone); after it: the stream ends with an error
    event. Never a 500 or a logged traceback (a string delta gave both)."""
    import logging

    import aiohttp
    from aiohttp import web

    from tests.fakes.claude_web import FakeClaudeWeb
    from tests.fakes.claude_web_wire import SSE_HEADERS

    class OddWeb(FakeClaudeWeb):
        async def _completion(self, request):
            return web.Response(body=ODD_EVENTS[odd], headers=SSE_HEADERS)

    async with OddWeb() as fake:
        fake.add_account(make_cookie(1))
        proxy = await start_proxy({"rproxy": fake.base_url, "max_retries": 0}, cookies=[make_cookie(1)])
        async with aiohttp.ClientSession() as s:
            for path, headers in (("/v1/messages", {"x-api-key": PASSWORD}),
                                  ("/v1/chat/completions", {"Authorization": f"Bearer {PASSWORD}"})):
                for stream in (False, True):
                    async with s.post(proxy.url + path, headers=headers, json={
                            "model": MODEL, "max_tokens": 5, "stream": stream, "messages": MSG}) as r:
                        text = await r.text()
                    assert r.status in (200, 502) and "malformed event" in text, (path, stream, r.status, text)
                    assert r.status == 502 or (stream and odd == "string-delta")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
