"""OpenAI-compatible providers: Claude clients through the converters, OpenAI clients passed through,
failover before the first byte and never after it."""

from __future__ import annotations

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import PASSWORD
from tests.fakes.openai_api import FakeOpenAI, OScript, OToolCall

KEY = "sk-test-" + "o" * 40
TOOLS = [{"name": "get_weather", "description": "weather", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
         {"name": "get_time", "description": "time", "input_schema": {
             "type": "object", "properties": {"tz": {"type": "string"}}}}]


@pytest.fixture
async def upstream(clock):
    async with FakeOpenAI(clock=clock, flavour="deepseek") as fake:
        fake.add_key(KEY)
        yield fake


def provider(fake, name="deep", **extra) -> dict:
    return {"name": name, "type": "openai", "base_url": fake.base_url, "keys": [KEY],
            "models": ["deepseek-*"], **extra}


async def test_claude_client_with_parallel_tools_streamed(upstream, start_proxy):
    proxy = await start_proxy({"providers": [provider(upstream)]})
    upstream.reply = OScript(text="Checking both.", reasoning=["think ", "first"], tool_calls=[
        OToolCall("get_weather", '{"city": "Paris"}'), OToolCall("get_time", '{"tz": "CET"}')])
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
        async with c.messages.stream(model="deepseek-chat", max_tokens=500, tools=TOOLS,
                                     messages=[{"role": "user", "content": "weather and time?"}]) as s:
            events = [e.type async for e in s]
            final = await s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert final.content[0].signature.startswith("clewdr-lite:")
    assert [(b.name, b.input) for b in final.content[2:]] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    assert final.stop_reason == "tool_use" and final.model == "deepseek-chat"
    assert final.usage.input_tokens > 0 and events[0] == "message_start"
    # the tool results go back as tool messages; the proxy's synthetic thinking is not sent back
    history = [{"role": "user", "content": "weather and time?"},
               {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
               {"role": "user", "content": [
                   {"type": "tool_result", "tool_use_id": final.content[2].id, "content": "sunny"},
                   {"type": "tool_result", "tool_use_id": final.content[3].id, "content": "12:00", "is_error": False},
                   {"type": "text", "text": "thanks"}]}]
    upstream.reply = OScript(text="Sunny at noon.")
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
        msg = await c.messages.create(model="deepseek-chat", max_tokens=500, tools=TOOLS, messages=history)
    assert msg.content[-1].text == "Sunny at noon."
    sent = upstream.requests_to("chat")[-1].json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "user"]
    assert "reasoning_content" not in sent[1]
    assert upstream.violations == []


async def test_openai_client_passes_through(upstream, start_proxy):
    proxy = await start_proxy({"providers": [provider(upstream)], "aliases": {"fast": "deep/deepseek-chat"}})
    upstream.reply = OScript(text=["pass", "ed"])
    async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
        resp = await c.chat.completions.create(model="fast", messages=[{"role": "user", "content": "x"}])
        stream = await c.chat.completions.create(model="fast", stream=True, messages=[{"role": "user", "content": "x"}])
        chunks = [ch async for ch in stream]
    assert resp.choices[0].message.content == "passed" and resp.model == "fast"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "passed"
    assert all(ch.model == "fast" for ch in chunks)
    sent = upstream.requests_to("chat")[-1]
    assert sent.json["model"] == "deepseek-chat" and sent.key == KEY
    assert sent.json["stream_options"] == {"include_usage": True}


async def test_failover_to_second_provider_before_first_byte(clock, start_proxy):
    async with FakeOpenAI(clock=clock) as first, FakeOpenAI(clock=clock, flavour="deepseek") as second:
        first.add_key(KEY, behaviour="unavailable")
        second.add_key(KEY)
        second.reply = OScript(text="from the second")
        aliases = {"smart": ["one/gpt-4o", "two/deepseek-chat"]}
        proxy = await start_proxy({"providers": [provider(first, "one", models=[]), provider(second, "two", models=[])],
                                   "aliases": aliases, "max_retries": 0})
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
            raw = await c.messages.with_raw_response.create(model="smart", max_tokens=50,
                                                            messages=[{"role": "user", "content": "x"}])
    msg = await raw.parse()
    assert msg.content[0].text == "from the second" and raw.headers["x-clewdr-provider"] == "two"
    assert len(first.requests_to("chat")) == 1


async def test_no_failover_after_the_first_byte(clock, start_proxy):
    async with FakeOpenAI(clock=clock) as first, FakeOpenAI(clock=clock) as second:
        first.add_key(KEY, behaviour="stream_error")
        second.add_key(KEY)
        first.reply = OScript(text="a fairly long answer that gets cut in the middle")
        proxy = await start_proxy({"providers": [provider(first, "one", models=[]), provider(second, "two", models=[])],
                                   "aliases": {"smart": ["one/gpt-4o", "two/gpt-4o"]}})
        async with aiohttp.ClientSession() as s:
            async with s.post(proxy.url + "/v1/messages", headers={"x-api-key": PASSWORD}, json={
                    "model": "smart", "max_tokens": 50, "stream": True,
                    "messages": [{"role": "user", "content": "x"}]}) as r:
                body = await r.text()
    assert "event: error" in body and second.requests_to("chat") == []


async def test_key_rotation_and_local_server_without_keys(clock, start_proxy):
    async with FakeOpenAI(clock=clock) as fake:
        fake.add_key("sk-bad-" + "b" * 30, behaviour="invalid")
        fake.add_key(KEY)
        fake.reply = OScript(text="ok")
        proxy = await start_proxy({"providers": [
            {"name": "oa", "type": "openai", "base_url": fake.base_url, "keys": ["sk-bad-" + "b" * 30, KEY],
             "models": ["gpt-*"]}]})
        async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
            for _ in range(2):
                resp = await c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        assert resp.choices[0].message.content == "ok"
        assert proxy.state.keyed["oa"].pool.find("sk-bad-" + "b" * 30).state == "disabled"
    async with FakeOpenAI(clock=clock) as local:
        local.open_access = True
        local.accept_any_model = True
        local.reply = OScript(text="llama here")
        proxy = await start_proxy({"providers": [{"name": "lan", "type": "openai", "base_url": local.base_url,
                                                  "models": ["llama*"]}]})
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
            msg = await c.messages.create(model="llama3", max_tokens=20, messages=[{"role": "user", "content": "x"}])
    assert msg.content[0].text == "llama here" and "Authorization" not in local.requests_to("chat")[-1].headers


async def test_breaker_opens_and_skips_a_failing_provider(clock, start_proxy):
    import aiohttp

    from tests.conftest import ADMIN_PASSWORD

    async with FakeOpenAI(clock=clock) as first, FakeOpenAI(clock=clock, flavour="deepseek") as second:
        first.add_key(KEY, behaviour="server_error")
        second.add_key(KEY)
        second.reply = OScript(text="backup")
        proxy = await start_proxy({
            "providers": [provider(first, "one", models=[]), provider(second, "two", models=[])],
            "aliases": {"smart": ["one/gpt-4o", "two/deepseek-chat"]}, "max_retries": 0,
            "breaker": {"failures": 2, "open_s": 30}})
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
            for _ in range(4):
                msg = await c.messages.create(model="smart", max_tokens=20, messages=[{"role": "user", "content": "x"}])
                assert msg.content[0].text == "backup"
        assert len(first.requests_to("chat")) == 2  # then skipped while open
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_PASSWORD}"}) as s:
            async with s.get(proxy.url + "/readyz") as r:
                ready = await r.json()
        assert ready["providers"]["one"]["breaker"] == "open" and ready["providers"]["two"]["breaker"] == "closed"
        clock.now += 31  # half-open: one probe goes through again
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
            await c.messages.create(model="smart", max_tokens=20, messages=[{"role": "user", "content": "x"}])
        assert len(first.requests_to("chat")) == 3


async def test_first_byte_timeout_fails_over(clock, start_proxy):
    async with FakeOpenAI(clock=clock) as slow, FakeOpenAI(clock=clock, flavour="deepseek") as fast:
        slow.add_key(KEY)
        slow.stall_before_headers = True
        fast.add_key(KEY)
        fast.reply = OScript(text="fast one")
        proxy = await start_proxy({
            "providers": [provider(slow, "slow", models=[], first_byte_timeout=0.3),
                          provider(fast, "fast", models=[])],
            "aliases": {"smart": ["slow/gpt-4o", "fast/deepseek-chat"]}, "max_retries": 0})
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
            async with c.messages.stream(model="smart", max_tokens=20,
                                         messages=[{"role": "user", "content": "x"}]) as s:
                msg = await s.get_final_message()
        slow.release()
    assert msg.content[0].text == "fast one" and slow.stalled_streams == 1


async def test_credential_breaker_skips_a_failing_key(clock, start_proxy):
    bad = "sk-flaky-" + "f" * 30
    async with FakeOpenAI(clock=clock) as fake:
        fake.add_key(bad, behaviour="server_error")
        fake.add_key(KEY)
        fake.reply = OScript(text="ok")
        proxy = await start_proxy({"providers": [{"name": "oa", "type": "openai", "base_url": fake.base_url,
                                                  "keys": [bad, KEY], "models": ["gpt-*"]}],
                                   "breaker": {"failures": 2, "open_s": 30}})
        async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
            for _ in range(6):
                resp = await c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
                assert resp.choices[0].message.content == "ok"
        assert fake.keys[bad].calls["chat"] == 2  # skipped once its breaker opened
        assert proxy.state.breakers.state("oa", bad, clock.now) == "open"


async def test_an_openai_stream_cut_midway_ends_with_an_error_chunk(upstream, start_proxy, caplog):
    upstream.reply = OScript(text="a fairly long answer that the upstream never finishes")
    upstream.cut_after = 2  # two chunks, then the connection closes
    proxy = await start_proxy({"providers": [provider(upstream)]})
    got = []
    async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
        stream = await c.chat.completions.create(model="deepseek-chat", stream=True,
                                                 messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.APIError, match="upstream connection lost"):
            async for chunk in stream:
                got.append(chunk)
    assert got and got[0].model == "deepseek-chat"  # the first bytes went through as they came
    assert not [r for r in caplog.records if "unhandled error" in r.getMessage()]


async def test_a_converted_stream_failing_before_content_fails_over(clock, start_proxy):
    async with FakeOpenAI(clock=clock) as first, FakeOpenAI(clock=clock) as second:
        first.add_key(KEY)
        second.add_key(KEY)
        first.cut_after = 1  # the role chunk, then the connection closes: no content yet
        proxy = await start_proxy({"providers": [provider(first, "one", models=[]), provider(second, "two", models=[])],
                                   "aliases": {"smart": ["one/gpt-4o", "two/gpt-4o"]}, "max_retries": 0})
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
            async with c.messages.stream(model="smart", max_tokens=50,
                                         messages=[{"role": "user", "content": "x"}]) as s:
                final = await s.get_final_message()
        assert final.content[0].text and final.stop_reason == "end_turn"
        assert first.cut_streams == 1 and len(second.requests_to("chat")) == 1


async def test_passed_through_answers_count_the_usage_the_provider_reports(upstream, start_proxy):
    """The bytes are relayed, never decoded whole, yet the tokens the provider reports reach the
    request log (and so costs and client-key budgets), streamed or not."""
    proxy = await start_proxy({"providers": [provider(upstream)]})
    upstream.reply = OScript(text=["pass", "ed"])
    async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
        whole = await c.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "x"}])
        stream = await c.chat.completions.create(model="deepseek-chat", stream=True,
                                                 messages=[{"role": "user", "content": "x"}])
        reported = [chunk.usage async for chunk in stream]
    proxy.state.store.flush()
    streamed, plain = proxy.state.store.recent(2)
    final = [u for u in reported if u][-1]  # the proxy asked for it (stream_options), the bytes carry it
    for row, usage in ((plain, whole.usage), (streamed, final)):
        assert (row["input_tokens"], row["output_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
        assert row["input_tokens"] > 0 and row["output_tokens"] > 0 and row["cost_usd"] > 0


async def test_a_passed_through_stream_failing_before_content_fails_over(clock, start_proxy):
    """OpenAI clients get the provider's bytes, but held until the answer begins: a connection lost
    after the role chunk is a failed attempt, and the next provider answers the stream."""
    async with FakeOpenAI(clock=clock) as first, FakeOpenAI(clock=clock) as second:
        first.add_key(KEY)
        second.add_key(KEY)
        first.cut_after = 1  # the role chunk, then the connection closes: no content yet
        second.reply = OScript(text=["from ", "the ", "second"])
        proxy = await start_proxy({"providers": [provider(first, "one", models=[]), provider(second, "two", models=[])],
                                   "aliases": {"smart": ["one/gpt-4o", "two/gpt-4o"]}, "max_retries": 0})
        async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
            stream = await c.chat.completions.create(model="smart", stream=True,
                                                     messages=[{"role": "user", "content": "x"}])
            chunks = [chunk async for chunk in stream]
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "from the second"
        assert all(ch.model == "smart" for ch in chunks)
        assert first.cut_streams == 1 and len(second.requests_to("chat")) == 1


class ScriptedBody:
    """An upstream response whose body is the given chunks."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks, self.closed = chunks, False

    async def chunks(self):
        for chunk in self._chunks:
            yield chunk

    async def close(self) -> None:
        self.closed = True


OPENROUTER_WAIT = b": OPENROUTER PROCESSING\n\n"
ROLE = b'data: {"id":"g","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'


@pytest.mark.parametrize("failure, status", [
    (b'data: {"id":"g","error":{"code":502,"message":"Provider returned error"}}\n\n', 502),
    (b"data: [DONE]\n\n", 502),
    (b"<html>captive portal</html>", 502),
])
async def test_a_passed_through_stream_is_held_until_its_answer_begins(failure, status):
    from clewdr_lite.upstream import openai_compat, relay

    body = ScriptedBody([OPENROUTER_WAIT, ROLE, failure])
    with pytest.raises(relay.EarlyError) as caught:
        await relay.hold_events(openai_compat._raw_items(body))
    assert caught.value.outcome.action == "transient" and caught.value.outcome.error.status == status
    assert body.closed
    answer = [OPENROUTER_WAIT, ROLE, b'data: {"id":"g","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n',
              b'data: {"id":"g","error":{"code":502,"message":"after the answer began: relayed"}}\n\n']
    held = await relay.hold_events(openai_compat._raw_items(ScriptedBody(answer)))
    assert [item["raw"] async for item in held] == answer  # every byte, in order, once


async def test_a_200_page_fails_over_and_is_never_relayed(clock, start_proxy, canned):
    """A reverse proxy or captive portal answering 200 with HTML is a failed attempt on the
    pass-through path too, streamed or not; alone, the client gets a clean 502 without the page."""
    portal = await canned("<html>please log in</html>")
    async with FakeOpenAI(clock=clock) as good:
        good.add_key(KEY)
        good.reply = OScript(text="from the good one")
        portal_provider = {"name": "one", "type": "openai", "base_url": portal + "/v1",
                           "keys": [KEY], "models": []}
        proxy = await start_proxy({"providers": [portal_provider, provider(good, "two", models=[])],
                                   "aliases": {"smart": ["one/gpt-4o", "two/gpt-4o"]}, "max_retries": 0})
        async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
            whole = await c.chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
            stream = await c.chat.completions.create(model="smart", stream=True, messages=[{"role": "user", "content": "x"}])
            text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
        assert whole.choices[0].message.content == text == "from the good one"
        assert len(good.requests_to("chat")) == 2
    alone = await start_proxy({"providers": [{**portal_provider, "models": ["gpt-*"]}], "max_retries": 0})
    async with aiohttp.ClientSession() as s:
        for stream in (False, True):
            async with s.post(alone.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {PASSWORD}"},
                              json={"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "x"}]}) as r:
                body = await r.text()
            assert r.status == 502 and "html" not in body, (stream, body)
