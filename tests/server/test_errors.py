"""Bad input, unknown routes, auth, disconnects and mid-stream failures, in each caller's dialect."""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp
import pytest

from clewdr_lite.protocol.sse import SSEDecoder
from clewdr_lite.server import streaming
from tests.conftest import PASSWORD, make_cookie
from tests.fakes.claude_web import Reply

MODEL = "claude-sonnet-4-6"
AUTH = {"x-api-key": PASSWORD}
MSGS = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def proxy(fake_web, start_proxy):
    fake_web.add_account(make_cookie(1))
    return await start_proxy({"rproxy": fake_web.base_url, "max_body_mb": 1}, cookies=[make_cookie(1)])


async def post(proxy, path, body, headers=AUTH):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    if isinstance(data, str):
        data = data.encode()
    data = io.BytesIO(data) if len(data) > 1 << 20 else data
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + path, data=data, headers=headers) as r:
            return r.status, await r.json(content_type=None), r.headers


def anthropic_error(body, kind):
    assert body["type"] == "error" and body["error"]["type"] == kind, body
    return body["error"]["message"]


def openai_error(body, kind):
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["type"] == kind, body
    return body["error"]["message"]


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "not valid JSON"),
    (b'{"model": "\xff"}', "not valid JSON"),  # not UTF-8
    (b'{"model": "\xed\xa0\x80"}', "not valid JSON"),  # an encoded lone surrogate: not UTF-8 either
    (b"", "empty"),
    (b"[1, 2]", "JSON object"),
    ({"messages": MSGS, "max_tokens": 10}, "model"),
    ({"model": MODEL, "max_tokens": 10}, "messages"),
    ({"model": MODEL, "messages": "hi", "max_tokens": 10}, "messages"),
    ({"model": MODEL, "messages": MSGS, "max_tokens": "ten"}, "max_tokens"),
    ({"model": MODEL, "messages": [{"role": "robot", "content": "x"}], "max_tokens": 10}, "role"),
])
async def test_bad_input_anthropic(proxy, body, needle):
    status, data, _ = await post(proxy, "/v1/messages", body)
    assert status == 400
    assert needle in anthropic_error(data, "invalid_request_error")


@pytest.mark.parametrize("body, needle", [
    (b"{not json", "not valid JSON"),
    ({"messages": MSGS}, "model"),
    ({"model": MODEL, "messages": []}, "messages"),
    ({"model": MODEL, "messages": MSGS, "n": 2}, "n > 1"),
])
async def test_bad_input_openai(proxy, body, needle):
    status, data, _ = await post(proxy, "/v1/chat/completions", body, {"Authorization": f"Bearer {PASSWORD}"})
    assert status == 400
    assert needle in openai_error(data, "invalid_request_error")


async def test_body_too_large_in_each_dialect(proxy):
    big = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * (2 << 20)}]})
    status, data, _ = await post(proxy, "/v1/messages", big)
    assert status == 413 and anthropic_error(data, "request_too_large")
    status, data, _ = await post(proxy, "/v1/chat/completions", big, {"Authorization": f"Bearer {PASSWORD}"})
    assert status == 413 and openai_error(data, "invalid_request_error")


async def test_json_without_content_type_is_accepted(proxy, fake_web):
    fake_web.reply = "fine"
    status, data, _ = await post(proxy, "/v1/messages", json.dumps(
        {"model": MODEL, "max_tokens": 20, "messages": MSGS}).encode(), {**AUTH, "Content-Type": "text/plain"})
    assert status == 200 and data["content"][0]["text"] == "fine"


@pytest.mark.parametrize("method, path, dialect", [
    ("POST", "/v1/nothing", "anthropic"), ("GET", "/v1/chat/completions/x", "openai"),
    ("POST", "/v1beta/models/x:unknown", "gemini"), ("GET", "/api/nothing", "admin"),
    ("POST", "/elsewhere", "anthropic")])
async def test_unknown_routes_are_404_in_the_path_dialect(proxy, method, path, dialect):
    async with aiohttp.ClientSession() as s:
        async with s.request(method, proxy.url + path, headers=AUTH) as r:
            status, body = r.status, await r.json(content_type=None)
    assert status == 404
    if dialect == "anthropic":
        anthropic_error(body, "not_found_error")
    elif dialect == "openai":
        openai_error(body, "not_found_error")
    elif dialect == "gemini":
        assert body["error"]["status"] == "NOT_FOUND" and body["error"]["code"] == 404
    else:
        assert "error" in body


async def test_health_and_probes_need_no_key(proxy):
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/health") as r:
            body = await r.json()
        async with s.head(proxy.url + "/code") as head:
            assert head.status == 200
        async with s.get(proxy.url + "/readyz") as ready:
            assert ready.status == 200 and "providers" not in await ready.json()
    assert body["status"] == "ok" and body["http_client"] == "aiohttp"


@pytest.mark.parametrize("headers, needle", [
    ({}, "Key/Password Invalid"), ({"x-api-key": "wrong"}, "Key/Password Invalid"),
    ({"Authorization": "Bearer undefined"}, "undefined"),
    ({"Authorization": "Bearer " + "admin-password-" + "y" * 20}, "Key/Password Invalid")])
async def test_auth_failures(proxy, headers, needle, caplog):
    status, data, _ = await post(proxy, "/v1/messages", {"model": MODEL, "messages": MSGS}, headers)
    assert status == 401 and needle in anthropic_error(data, "authentication_error")
    status, data, _ = await post(proxy, "/v1/chat/completions", {"model": MODEL, "messages": MSGS}, headers)
    assert status == 401 and openai_error(data, "authentication_error")
    assert "401 on POST /v1/chat/completions" in caplog.text
    assert "wrong" not in caplog.text  # the presented key is masked


async def test_wrong_key_with_right_bearer_is_accepted(proxy, fake_web):
    fake_web.reply = "ok"
    status, _, _ = await post(proxy, "/v1/messages", {"model": MODEL, "max_tokens": 5, "messages": MSGS},
                              {"x-api-key": "stale", "Authorization": f"Bearer {PASSWORD}"})
    assert status == 200


async def stream_events(resp) -> list:
    decoder, events = SSEDecoder(), []
    async for chunk in resp.content.iter_any():
        events += decoder.feed(chunk)
    return events + decoder.close()


@pytest.fixture(params=["aiohttp", "curl_cffi"])
async def any_backend(request, fake_web, start_proxy):
    """The proxy on each claude.ai client."""
    if request.param == "curl_cffi":
        pytest.importorskip("curl_cffi")
    fake_web.add_account(make_cookie(1))
    return await start_proxy({"rproxy": fake_web.base_url}, cookies=[make_cookie(1)], backend=request.param)


async def test_client_disconnect_cancels_upstream(any_backend, fake_web):
    proxy = any_backend
    fake_web.reply = "a b c d e f g h"
    fake_web.stall_after = 3
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/v1/messages", headers=AUTH, json={
                "model": MODEL, "max_tokens": 50, "stream": True, "messages": MSGS}) as r:
            assert r.status == 200
            await r.content.readline()
    await asyncio.wait_for(fake_web.stream_cancelled.wait(), 10)
    assert fake_web.cancelled_streams == 1
    await asyncio.wait_for(_released(proxy), 10)


@pytest.mark.parametrize("stall", [0, 1])
async def test_client_leaving_before_the_first_content_cancels_upstream(any_backend, fake_web, caplog, stall):
    # the proxy holds the stream until content (so an early error can still retry): a client
    # that gives up meanwhile must not leave the upstream stream running, nor an error behind
    proxy = any_backend
    fake_web.reply = "a b c d e f g h"
    fake_web.stall_after = stall
    async with aiohttp.ClientSession() as s:
        with pytest.raises(asyncio.TimeoutError):
            async with s.post(proxy.url + "/v1/messages", headers=AUTH, timeout=aiohttp.ClientTimeout(total=0.3),
                              json={"model": MODEL, "max_tokens": 50, "stream": True, "messages": MSGS}) as r:
                await r.read()
    await asyncio.wait_for(fake_web.stream_cancelled.wait(), 10)
    assert fake_web.cancelled_streams == 1
    await asyncio.wait_for(_released(proxy), 10)
    assert not [r for r in caplog.records if r.levelno >= 40]


async def _released(proxy):
    while proxy.state.pool.inflight:
        await asyncio.sleep(0.01)


async def test_transport_failure_mid_stream_sends_error_event(proxy, fake_web):
    fake_web.reply = "a b c d e f g h i j k"
    fake_web.cut_after = 5
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/v1/messages", headers=AUTH, json={
                "model": MODEL, "max_tokens": 50, "stream": True, "messages": MSGS}) as r:
            events = await stream_events(r)
    assert events[-1].event == "error"
    assert json.loads(events[-1].data)["error"]["message"] == "upstream connection lost"
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {PASSWORD}"},
                          json={"model": MODEL, "stream": True, "messages": MSGS}) as r:
            events = await stream_events(r)
    assert events[-1].data == "[DONE]" and "error" in json.loads(events[-2].data)


async def test_in_stream_upstream_error_is_relayed(proxy, fake_web):
    fake_web.reply = Reply("partial answer here", error={"type": "overloaded_error", "message": "Overloaded"})
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/v1/messages", headers=AUTH, json={
                "model": MODEL, "max_tokens": 50, "stream": True, "messages": MSGS}) as r:
            events = await stream_events(r)
    assert all(e.event for e in events)  # every event has its event: line
    assert events[-1].event == "error" and "Overloaded" in events[-1].data
    status, data, _ = await post(proxy, "/v1/messages", {"model": MODEL, "max_tokens": 50, "messages": MSGS})
    assert status == 529 and anthropic_error(data, "overloaded_error") == "Overloaded"


async def test_keepalive_during_silence(proxy, fake_web, monkeypatch):
    monkeypatch.setattr(streaming, "KEEPALIVE_S", 0.05)
    fake_web.reply = "slow reply"
    fake_web.stall_after = 2  # message_start and content_block_start went out, then silence
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/v1/messages", headers=AUTH, json={
                "model": MODEL, "max_tokens": 50, "stream": True, "messages": MSGS}) as r:
            seen = b""
            while seen.count(b"event: ping") < 2:
                seen += await r.content.readany()
            fake_web.release()
            events = await stream_events(r)
    assert events[-1].event == "message_stop"


async def test_cors_on_inference_routes_only(proxy):
    async with aiohttp.ClientSession() as s:
        async with s.options(proxy.url + "/v1/messages", headers={
                "Origin": "http://app.local", "Access-Control-Request-Headers": "x-api-key,anthropic-version"}) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == "http://app.local"
            assert r.headers["Access-Control-Allow-Headers"] == "x-api-key,anthropic-version"
        async with s.get(proxy.url + "/api/version", headers={"Origin": "http://app.local"}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
            assert (await r.text()).startswith("clewdr-lite v")


@pytest.mark.parametrize("encode", [
    lambda t: t.encode(),
    lambda t: t.encode("utf-8-sig"),
    lambda t: t.encode("utf-16-le"),
    lambda t: t.encode("utf-16"),
])
async def test_a_json_body_is_read_in_any_encoding_json_allows(proxy, encode):
    # parsed (the missing model is what it reports), whatever the encoding
    text = json.dumps({"messages": [{"role": "user", "content": "héllo 世界"}], "max_tokens": 10}, ensure_ascii=False)
    status, data, _ = await post(proxy, "/v1/messages", encode(text))
    assert status == 400 and "model" in anthropic_error(data, "invalid_request_error")


async def test_a_body_that_is_not_utf8_is_refused_clearly(proxy):
    status, data, _ = await post(proxy, "/v1/messages", b'{"model": "\xff\xfe", "messages": []}')
    assert status == 400 and "not valid JSON" in anthropic_error(data, "invalid_request_error")


async def test_cors_and_clewdr_headers_on_errors_streams_and_listings(proxy):
    origin = {"Origin": "http://app.local"}
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/v1/messages", data=b"{not json", headers={**AUTH, **origin}) as r:
            assert r.status == 400 and r.headers["Access-Control-Allow-Origin"] == "http://app.local"
            assert "x-clewdr-overhead-ms" in r.headers and r.headers["x-clewdr-attempts"] == "0"
        async with s.post(proxy.url + "/v1/messages", json={"model": MODEL, "messages": MSGS}, headers=origin) as r:
            assert r.status == 401 and r.headers["Access-Control-Allow-Origin"] == "http://app.local"
        async with s.post(proxy.url + "/v1/messages", headers={**AUTH, **origin}, json={
                "model": MODEL, "messages": MSGS, "max_tokens": 10, "stream": True}) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            assert r.headers["Access-Control-Allow-Origin"] == "http://app.local"
            assert float(r.headers["x-clewdr-overhead-ms"]) >= 0
            assert b"message_stop" in await r.read()
        async with s.get(proxy.url + "/v1/models", headers={**AUTH, **origin}) as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "http://app.local"
            assert "x-clewdr-overhead-ms" not in r.headers  # a listing, not a proxied request
