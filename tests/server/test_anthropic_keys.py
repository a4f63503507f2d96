"""Anthropic API-key provider: pass-through, key rotation, cool-down, routing by model."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import anthropic
import openai
import pytest

from clewdr_lite.protocol.sse import SSEDecoder
from tests.conftest import PASSWORD
from tests.fakes.anthropic_api import FakeAnthropic, Script, ToolCall

MODEL = "claude-sonnet-4-6"
MSG = [{"role": "user", "content": "hello there"}]
K1, K2 = "sk-ant-api03-" + "a" * 40, "sk-ant-api03-" + "b" * 40


@pytest.fixture
async def api(clock):
    async with FakeAnthropic(clock=clock) as fake:
        yield fake


async def keyed(start_proxy, api, keys=(K1, K2), **extra):
    provider = {"name": "console", "type": "anthropic", "base_url": api.origin, "keys": list(keys),
                "models": ["claude-*"], **extra}
    return await start_proxy({"providers": [provider]})


def client(proxy) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0)


async def test_routed_by_model_glob_stream_and_not(api, start_proxy):
    for key in (K1, K2):
        api.add_key(key)
    proxy = await keyed(start_proxy, api)
    api.reply = Script(text=["pass ", "through"], thinking="hmm",
                       tools=[ToolCall("calc", {"expr": "1+1"})])
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=3000, messages=MSG,
                                      thinking={"type": "enabled", "budget_tokens": 1024})
        async with c.messages.stream(model=MODEL, max_tokens=3000, messages=MSG,
                                     thinking={"type": "enabled", "budget_tokens": 1024}) as s:
            streamed = await s.get_final_message()
    for m in (msg, streamed):
        assert [b.type for b in m.content] == ["thinking", "text", "tool_use"]
        assert m.content[2].input == {"expr": "1+1"} and m.model == MODEL
    calls = api.requests_to("messages")
    assert {c.headers["x-api-key"] for c in calls} <= {K1, K2}
    assert all("Authorization" not in c.headers for c in calls)  # the client's key never travels
    assert "x-anthropic-billing-header" not in str(calls[-1].json.get("system"))
    assert api.violations == []


async def test_pass_through_keeps_upstream_bytes(api, start_proxy):
    api.add_key(K1)
    proxy = await keyed(start_proxy, api, keys=[K1])
    api.reply = Script(text="exact bytes")
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/v1/messages", headers={"x-api-key": PASSWORD}, json={
                "model": MODEL, "max_tokens": 50, "stream": True, "messages": MSG}) as r:
            body = await r.read()
    events = SSEDecoder().feed(body)
    kinds = [e.event for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop" and "ping" in kinds
    start = events[0].data
    assert f'"model":"{MODEL}"' in start


async def _post_raw(proxy, body: bytes) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/v1/messages", data=body,
                          headers={"x-api-key": PASSWORD, "Content-Type": "application/json"}) as r:
            return r.status, await r.json()


async def test_unchanged_request_goes_upstream_as_the_clients_bytes(api, start_proxy):
    api.add_key(K1)
    proxy = await keyed(start_proxy, api, keys=[K1])
    # spacing, key order and escapes a re-serialiser would all change
    sent = (b'{ "messages": [{"role": "user", "content": "caf\\u00e9 \\ud83d\\ude00"}],\n'
            b'  "model": "' + MODEL.encode() + b'", "max_tokens": 64, "metadata": {"user_id": "u1"} }')
    status, answer = await _post_raw(proxy, sent)
    assert status == 200 and answer["model"] == MODEL
    assert api.requests[-1].raw == sent
    assert api.requests[-1].json["messages"][0]["content"] == "caf\u00e9 \U0001F600"


async def test_a_request_the_rules_change_is_sent_rewritten(api, start_proxy):
    api.add_key(K1)
    proxy = await keyed(start_proxy, api, keys=[K1])
    # max_tokens as a float and SillyTavern's top_k 0 are normalised; a system turn is hoisted
    sent = (b'{"model": "' + MODEL.encode() + b'", "max_tokens": 64.0, "top_k": 0, "messages": ['
            b'{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]}')
    status, _ = await _post_raw(proxy, sent)
    upstream = api.requests[-1]
    assert status == 200 and upstream.raw != sent
    assert upstream.json["max_tokens"] == 64 and type(upstream.json["max_tokens"]) is int
    assert "top_k" not in upstream.json
    assert [m["role"] for m in upstream.json["messages"]] == ["user"]
    assert "be brief" in str(upstream.json["system"])


async def test_an_aliased_model_is_rewritten_both_ways(api, start_proxy):
    api.add_key(K1)
    provider = {"name": "console", "type": "anthropic", "base_url": api.origin, "keys": [K1], "models": []}
    proxy = await start_proxy({"providers": [provider], "aliases": {"house-model": f"console,{MODEL}"}})
    status, answer = await _post_raw(proxy, b'{"model": "house-model", "max_tokens": 64, '
                                            b'"messages": [{"role": "user", "content": "hello"}]}')
    assert status == 200 and answer["model"] == "house-model"
    assert api.requests[-1].json["model"] == MODEL


async def test_429_cools_the_key_and_the_next_serves(api, start_proxy, clock):
    api.add_key(K1, behaviour="rate_limited", resets_at=int(clock.now) + 45)
    api.add_key(K2)
    proxy = await keyed(start_proxy, api)
    async with client(proxy) as c:
        for _ in range(3):
            assert (await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)).content
    pool = proxy.state.keyed["console"].pool
    entry = pool.find(K1)
    assert entry.state == "cooling" and entry.until == int(clock.now) + 45
    assert api.keys[K1].calls["messages"] == 1  # skipped while cooling


async def test_529_retried_on_another_key(api, start_proxy):
    api.add_key(K1, behaviour="overloaded")
    api.add_key(K2)
    proxy = await keyed(start_proxy, api, keys=[K1, K2])
    api.reply = Script(text="recovered")
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert msg.content[0].text == "recovered"
    assert proxy.state.keyed["console"].pool.find(K1).state == "active"  # not the key's fault


async def test_invalid_and_no_credit_keys_are_disabled(api, start_proxy):
    bad, broke, good = "sk-ant-api03-" + "c" * 40, "sk-ant-api03-" + "d" * 40, K1
    api.add_key(bad, behaviour="invalid_key")
    api.add_key(broke, behaviour="no_credit")
    api.add_key(good)
    proxy = await keyed(start_proxy, api, keys=[bad, broke, good], weight=1)
    async with client(proxy) as c:
        for _ in range(3):
            await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    pool = proxy.state.keyed["console"].pool
    assert pool.find(bad).state == "disabled" and pool.find(bad).reason == "invalid"
    assert pool.find(broke).state == "disabled" and pool.find(broke).reason == "no_credit"


async def test_every_key_cooling_answers_429_with_retry_after(api, start_proxy, clock):
    api.add_key(K1, behaviour="rate_limited", resets_at=int(clock.now) + 30)
    proxy = await keyed(start_proxy, api, keys=[K1])
    async with client(proxy) as c:
        with pytest.raises(anthropic.RateLimitError):
            await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
        with pytest.raises(anthropic.RateLimitError) as info:
            await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert info.value.response.headers["retry-after"] == "30"


async def test_foreign_thinking_never_reaches_anthropic(api, start_proxy):
    api.add_key(K1)
    proxy = await keyed(start_proxy, api, keys=[K1])
    history = [{"role": "user", "content": "q"},
               {"role": "assistant", "content": [
                   {"type": "thinking", "thinking": "from elsewhere", "signature": "clewdr-lite:0123456789abcdef"},
                   {"type": "text", "text": "a"}]},
               {"role": "user", "content": "more"}]
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=10, messages=history)
    assert msg.content
    sent = api.requests_to("messages")[-1].json["messages"][1]["content"]
    assert [b["type"] for b in sent] == ["text"]


async def test_explicit_provider_prefix_and_count_tokens(api, start_proxy):
    api.add_key(K1)
    provider = {"name": "console", "type": "anthropic", "base_url": api.origin, "keys": [K1]}
    proxy = await start_proxy({"providers": [provider]})
    async with client(proxy) as c:
        msg = await c.messages.create(model="console/" + MODEL, max_tokens=10, messages=MSG)
    assert msg.model == "console/" + MODEL
    assert api.requests_to("messages")[-1].json["model"] == MODEL
    async with client(proxy) as c:
        counted = await c.messages.count_tokens(model="console/" + MODEL, messages=MSG)
    assert counted.input_tokens > 0
    assert api.requests_to("count_tokens")[-1].json["model"] == MODEL


async def test_openai_client_to_anthropic_keys(api, start_proxy):
    api.add_key(K1)
    proxy = await keyed(start_proxy, api, keys=[K1])
    api.reply = Script(text=["con", "verted"])
    async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
        stream = await c.chat.completions.create(model=MODEL, stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "system", "content": "be kind"},
                                                           {"role": "user", "content": "go"}])
        chunks = [ch async for ch in stream]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "converted"
    assert chunks[-1].usage.completion_tokens > 0
    sent = api.requests_to("messages")[-1].json
    assert sent["system"] == [{"type": "text", "text": "be kind"}]


async def test_clewdr_headers_report_provider_attempts_and_overhead(api, start_proxy):
    api.add_key(K1, behaviour="overloaded", fail_times=1)
    proxy = await keyed(start_proxy, api, keys=[K1])
    async with client(proxy) as c:
        raw = await c.messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=MSG)
    assert raw.headers["x-clewdr-provider"] == "console"
    assert raw.headers["x-clewdr-attempts"] == "2"
    overhead = float(raw.headers["x-clewdr-overhead-ms"])
    assert 0 <= overhead < 1000
    off = await start_proxy({"providers": [{"name": "console", "type": "anthropic", "base_url": api.origin,
                                            "keys": [K1], "models": ["claude-*"]}],
                             "metrics": {"response_headers": False}})
    async with client(off) as c:
        raw = await c.messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=MSG)
    assert "x-clewdr-overhead-ms" not in raw.headers


async def test_short_retry_after_is_waited_out_when_no_other_key(api, start_proxy, clock):
    api.add_key(K1, behaviour="rate_limited", resets_at=int(clock.now) + 5, fail_times=1)
    proxy = await keyed(start_proxy, api, keys=[K1])
    before = clock.now
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert msg.content and clock.now - before >= 5  # waited exactly the reset, then served
    assert api.keys[K1].calls["messages"] == 2


async def test_each_request_logs_its_req_line(api, start_proxy, caplog):
    api.add_key(K1)
    proxy = await keyed(start_proxy, api, keys=(K1,))
    caplog.set_level("INFO", logger="clewdr_lite")
    async with client(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=100, messages=MSG * 3)
        async with c.messages.stream(model=MODEL, max_tokens=100, messages=MSG) as s:
            await s.get_final_message()
    lines = [r.getMessage() for r in caplog.records if "[REQ]" in r.getMessage()]
    assert lines == [
        f"[REQ] stream: False, msgs: 3, model: {MODEL}, think: False, format: Claude, upstream: console",
        f"[REQ] stream: True, msgs: 1, model: {MODEL}, think: False, format: Claude, upstream: console"]


async def test_the_req_line_of_a_request_that_reaches_no_upstream_is_still_written(start_proxy, caplog):
    """The line waits for the first upstream call to go out; an upstream that cannot be reached
    (connection refused, retried) gets the request's one line at its end."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here
    provider = {"name": "console", "type": "anthropic", "base_url": f"http://127.0.0.1:{port}", "keys": [K1],
                "models": ["claude-*"]}
    proxy = await start_proxy({"providers": [provider]})
    caplog.set_level("INFO", logger="clewdr_lite")
    async with client(proxy) as c:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert caught.value.status_code >= 500
    lines = [r.getMessage() for r in caplog.records if "[REQ]" in r.getMessage()]
    assert lines == [f"[REQ] stream: False, msgs: 1, model: {MODEL}, think: False, format: Claude, upstream: console"]


async def test_each_route_a_request_fails_over_to_logs_its_req_line(api, start_proxy, caplog):
    """A route whose upstream cannot be reached (nothing sent) still logs its line before the next
    route's, which is written once that route's call is out."""
    api.add_key(K1)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proxy = await start_proxy({
        "providers": [{"name": "down", "type": "anthropic", "base_url": f"http://127.0.0.1:{port}", "keys": [K2]},
                      {"name": "console", "type": "anthropic", "base_url": api.origin, "keys": [K1]}],
        "aliases": {"smart": ["down/" + MODEL, "console/" + MODEL]}, "max_retries": 0})
    caplog.set_level("INFO", logger="clewdr_lite")
    async with client(proxy) as c:
        msg = await c.messages.create(model="smart", max_tokens=10, messages=MSG)
    assert msg.content
    lines = [r.getMessage() for r in caplog.records if "[REQ]" in r.getMessage()]
    assert [line.rsplit("upstream: ", 1)[1] for line in lines] == ["down", "console"]


async def test_a_stream_cut_before_its_content_fails_over_cleanly(clock, start_proxy):
    async with FakeAnthropic(clock=clock) as broken, FakeAnthropic(clock=clock) as good:
        broken.add_key(K1)
        good.add_key(K2)
        broken.cut_after = 1  # message_start, then the connection closes
        proxy = await start_proxy({
            "providers": [{"name": "one", "type": "anthropic", "base_url": broken.origin, "keys": [K1]},
                          {"name": "two", "type": "anthropic", "base_url": good.origin, "keys": [K2]}],
            "aliases": {"smart": ["one/" + MODEL, "two/" + MODEL]}, "max_retries": 0})
        async with client(proxy) as c:
            async with c.messages.stream(model="smart", max_tokens=20, messages=MSG) as s:
                final = await s.get_final_message()
            assert final.content[0].text and final.model == "smart"
            assert broken.cut_streams == 1 and len(good.requests_to("messages")) == 1
            # with nowhere else to go, the client gets a clean error in its dialect, not a 500
            alone = await start_proxy({"providers": [
                {"name": "one", "type": "anthropic", "base_url": broken.origin, "keys": [K1],
                 "models": ["claude-*"]}], "max_retries": 0})
            async with client(alone) as c2:
                with pytest.raises(anthropic.APIStatusError) as caught:
                    async with c2.messages.stream(model=MODEL, max_tokens=20, messages=MSG) as s:
                        await s.get_final_message()
    assert caught.value.status_code in (502, 503)
    assert "connection lost before the first content" in caught.value.message


async def test_a_200_page_that_is_no_stream_fails_over_and_is_never_relayed(clock, start_proxy, canned):
    portal = await canned("<html>please log in</html>")  # a misbehaving reverse proxy in front of the API
    async with FakeAnthropic(clock=clock) as good:
        good.add_key(K2)
        providers = [{"name": "one", "type": "anthropic", "base_url": portal, "keys": [K1]},
                     {"name": "two", "type": "anthropic", "base_url": good.origin, "keys": [K2]}]
        proxy = await start_proxy({"providers": providers, "max_retries": 0,
                                   "aliases": {"smart": ["one/" + MODEL, "two/" + MODEL]}})
        async with client(proxy) as c:
            async with c.messages.stream(model="smart", max_tokens=20, messages=MSG) as s:
                final = await s.get_final_message()
        assert final.content[0].text and len(good.requests_to("messages")) == 1
        alone = await start_proxy({"providers": [{**providers[0], "models": ["claude-*"]}], "max_retries": 0})
        async with aiohttp.ClientSession() as s:
            async with s.post(alone.url + "/v1/messages", headers={"x-api-key": PASSWORD}, json={
                    "model": MODEL, "max_tokens": 20, "stream": True, "messages": MSG}) as r:
                text = await r.text()
    assert r.status == 502 and "html" not in text
    assert "ended its stream before any content" in text


async def test_a_client_leaving_during_the_hold_frees_the_upstream_stream(api, start_proxy):
    api.add_key(K1)
    api.stall_after = 1  # message_start, then nothing: the proxy holds for the first content
    proxy = await keyed(start_proxy, api, keys=[K1])
    async with aiohttp.ClientSession() as s:
        with pytest.raises(asyncio.TimeoutError):
            async with s.post(proxy.url + "/v1/messages", headers={"x-api-key": PASSWORD},
                              timeout=aiohttp.ClientTimeout(total=0.3), json={
                                  "model": MODEL, "max_tokens": 50, "stream": True, "messages": MSG}) as r:
                await r.read()
    await asyncio.wait_for(api.stream_cancelled.wait(), 5)  # the proxy closed its upstream stream
    assert api.cancelled_streams == 1


ODD_ANSWERS = {  # what an Anthropic-compatible provider might answer with 200: JSON, not a Messages answer
    "list": (b"[]", b"event: message_start\ndata: []\n\n"),
    "null-content": (b'{"type":"message","content":null,"usage":null}',
                     b'event: message_start\ndata: {"type":"message_start","message":null}\n\n'),
    "string-parts": (b'{"content":"x","usage":{"input_tokens":"a"}}',
                     b'event: message_start\ndata: {"type":"message_start","message":{"usage":"x"}}\n\n'),
    "string-blocks": (b'{"content":["x"]}',
                      b'event: message_start\ndata: {"type":"message_start","message":{}}\n\n'
                      b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
                      b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":"x"}\n\n'
                      b'event: message_delta\ndata: {"type":"message_delta","usage":"x","delta":null}\n\n'),
}


@pytest.mark.parametrize("odd", list(ODD_ANSWERS))
async def test_odd_answers_of_a_compatible_provider_are_failed_attempts_in_every_dialect(odd, start_proxy, canned,
                                                                                        caplog):
    """No 500 and nothing logged as an error: an odd answer before the content is a failed attempt
    (a 502 in the client's dialect when alone, a 503 once its breaker opens); an odd event after
    it ends a converted stream with an error event."""
    whole, events = ODD_ANSWERS[odd]
    upstream = await canned(whole, "application/json", stream_body=events)
    proxy = await start_proxy({"providers": [{"name": "odd", "type": "anthropic", "base_url": upstream,
                                              "keys": [K1], "models": ["claude-*"]}], "max_retries": 0})
    msgs = [{"role": "user", "content": "x"}]
    gemini = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
    calls = [("/v1/messages", {"x-api-key": PASSWORD}, {"model": MODEL, "max_tokens": 5, "messages": msgs}),
             ("/v1/chat/completions", {"Authorization": f"Bearer {PASSWORD}"}, {"model": MODEL, "messages": msgs}),
             (f"/v1beta/models/{MODEL}:generateContent", {"x-goog-api-key": PASSWORD}, gemini)]
    async with aiohttp.ClientSession() as s:
        for path, headers, body in calls:
            for stream in (False, True):
                if stream:
                    path = path.replace(":generateContent", ":streamGenerateContent?alt=sse")
                    body = body if "contents" in body else {**body, "stream": True}
                async with s.post(proxy.url + path, headers=headers, json=body) as r:
                    text = await r.text()
                if odd != "string-blocks" or not stream:  # that stream's answer began: an in-stream error
                    assert r.status in (502, 503), (path, stream, r.status, text)  # 503: its breaker opened
                elif path == "/v1/messages":  # the same dialect: the bytes are relayed as they came
                    assert r.status == 200 and '"delta":"x"' in text
                else:  # converted: the odd event ends the stream with an error event
                    assert r.status == 200 and "malformed event" in text, (path, text)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
