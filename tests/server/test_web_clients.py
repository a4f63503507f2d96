"""Raw requests exactly as SillyTavern and other real clients send them, and the web options."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import PASSWORD, make_cookie
from tests.fakes.common import serve

MODEL = "claude-sonnet-4-6"
ST_HEADERS = {"x-api-key": PASSWORD, "anthropic-version": "2023-06-01",
              "User-Agent": "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)"}


async def start(fake_web, start_proxy, **settings):
    fake_web.add_account(make_cookie(1))
    return await start_proxy({"rproxy": fake_web.base_url, **settings}, cookies=[make_cookie(1)])


async def call(proxy, method, path, body=None, headers=None):
    async with aiohttp.ClientSession() as s:
        async with s.request(method, proxy.url + path, json=body, headers=headers or ST_HEADERS) as r:
            return r.status, await r.read(), r.headers


async def test_sillytavern_claude_source(fake_web, start_proxy):
    proxy = await start(fake_web, start_proxy)
    fake_web.reply = "ST reply"
    body = {"messages": [{"role": "user", "content": "[Start a new chat]\nhello"},
                         {"role": "assistant", "content": "Greetings."},
                         {"role": "user", "content": "go on"}],
            "model": MODEL, "max_tokens": 300, "stop_sequences": [], "temperature": 1,
            "top_p": 1, "top_k": 0, "stream": False}
    status, raw, _ = await call(proxy, "POST", "/v1/messages", body)
    data = json.loads(raw)
    assert status == 200 and data["content"][0]["text"] == "ST reply"
    prompt = fake_web.completions[-1]["attachments"][0]["extracted_content"]
    assert prompt == "[Start a new chat]\nhello\n\n\x08Assistant: Greetings.\n\n\x08Human: go on"
    assert "top_k" not in fake_web.completions[-1] and fake_web.violations == []


async def test_sillytavern_connection_test(fake_web, start_proxy):
    proxy = await start(fake_web, start_proxy)
    status, raw, _ = await call(proxy, "POST", "/v1/messages", {
        "messages": [{"role": "user", "content": "Hi"}], "model": MODEL, "max_tokens": 1, "stream": False})
    assert status == 200 and json.loads(raw)["content"][0]["text"].startswith("Claude Reverse Proxy")


async def test_sillytavern_custom_source_with_scattered_system(fake_web, start_proxy):
    proxy = await start(fake_web, start_proxy)
    fake_web.reply = "custom reply"
    body = {"messages": [{"role": "system", "content": "You are Aria."},
                         {"role": "user", "content": "hi Aria"},
                         {"role": "assistant", "content": "Hello!"},
                         {"role": "system", "content": "[Keep replies short]"},
                         {"role": "user", "content": "how are you"}],
            "model": MODEL, "temperature": 1, "max_tokens": 300, "stream": True,
            "presence_penalty": 0, "frequency_penalty": 0, "top_p": 1, "logit_bias": {}}
    status, raw, headers = await call(proxy, "POST", "/v1/chat/completions", body,
                                      {"Authorization": f"Bearer {PASSWORD}"})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                   for line in raw.decode().split("\n\n") if line.startswith("data: {"))
    assert text == "custom reply"
    prompt = fake_web.completions[-1]["attachments"][0]["extracted_content"]
    assert prompt == ("You are Aria.\n\n\x08Human: hi Aria\n\n\x08Assistant: Hello!"
                      "\n\n\x08System: [Keep replies short]\n\n\x08Human: how are you")


async def test_sillytavern_models_status_check(fake_web, start_proxy):
    proxy = await start(fake_web, start_proxy)
    status, raw, _ = await call(proxy, "GET", "/v1/models", headers={"Authorization": f"Bearer {PASSWORD}"})
    data = json.loads(raw)
    assert status == 200 and data["object"] == "list"
    assert all({"id", "object", "type", "display_name", "created_at"} <= set(m) for m in data["data"])
    assert data["first_id"] == data["data"][0]["id"] and data["has_more"] is False


async def test_model_list_shapes(fake_web, start_proxy):
    import anthropic

    proxy = await start(fake_web, start_proxy)
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD) as c:
        ids = [m.id async for m in c.models.list()]
        one = await c.models.retrieve("claude-opus-4-8")
    assert "claude-opus-4-8-thinking" in ids and one.id == "claude-opus-4-8"
    status, raw, _ = await call(proxy, "GET", "/v1/models?key=" + PASSWORD, headers={})
    assert status == 200 and json.loads(raw)["models"][0]["name"].startswith("models/claude-")


async def test_beta_query_and_any_version_tolerated(fake_web, start_proxy):
    proxy = await start(fake_web, start_proxy)
    fake_web.reply = "ok"
    status, _, _ = await call(proxy, "POST", "/v1/messages?beta=true", {
        "model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]},
        {"Authorization": f"Bearer {PASSWORD}", "anthropic-version": "2026-10-21",
         "anthropic-beta": "interleaved-thinking-2025-05-14"})
    assert status == 200


async def test_raw_rendering_mode_for_non_streaming(fake_web, start_proxy):
    proxy = await start(fake_web, start_proxy, web_rendering_mode="raw")
    fake_web.reply = ["raw ", "mode ", "text"]
    status, raw, _ = await call(proxy, "POST", "/v1/messages", {
        "model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    data = json.loads(raw)
    assert status == 200 and data["content"] == [{"type": "text", "text": "raw mode text"}]
    assert data["stop_reason"] == "end_turn" and data["model"] == MODEL
    assert fake_web.completions[-1]["rendering_mode"] == "raw"


async def test_preserved_chats_and_custom_prompt(fake_web, start_proxy, clock):
    proxy = await start(fake_web, start_proxy, preserve_chats=True, custom_prompt="be nice",
                        web_timezone="Europe/Paris")
    fake_web.reply = "ok"
    await call(proxy, "POST", "/v1/messages", {"model": MODEL, "max_tokens": 10,
                                               "messages": [{"role": "user", "content": "x"}]})
    conv = next(iter(fake_web.conversations.values()))
    assert conv.is_temporary is False and conv.name.startswith("clewdr-lite-2025-")
    assert not conv.deleted
    stamp = datetime.fromtimestamp(clock.now, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    assert conv.name == f"clewdr-lite-{stamp}"  # the clock's second, in UTC
    clock.now += 61  # the next conversation is named after its own second
    await call(proxy, "POST", "/v1/messages", {"model": MODEL, "max_tokens": 10,
                                               "messages": [{"role": "user", "content": "y"}]})
    later = datetime.fromtimestamp(clock.now, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    assert [c.name for c in fake_web.conversations.values()] == [f"clewdr-lite-{stamp}", f"clewdr-lite-{later}"]
    body = fake_web.completions[-1]
    assert body["prompt"] == "be nice" and body["timezone"] == "Europe/Paris"
    assert fake_web.violations == []


@pytest.mark.parametrize("stream", [False, True])
async def test_expressions_classifier_shortcut(fake_web, start_proxy, stream):
    proxy = await start(fake_web, start_proxy, st_expressions_shortcut=True)
    prompt = ("Pause the roleplay. From the list below, choose a word that best represents a character's "
              "outfit description, action, or emotion in their last message.\n\nadmiration, anger, neutral")
    status, raw, _ = await call(proxy, "POST", "/v1/messages", {
        "model": MODEL, "max_tokens": 10, "stream": stream, "messages": [{"role": "user", "content": prompt}]})
    assert status == 200 and b"neutral" in raw and fake_web.requests == []


async def test_external_images_downloaded_only_when_allowed(fake_web, start_proxy):
    png = b"\x89PNG\r\n\x1a\n" + b"\1" * 40

    async def image(request):
        return web.Response(body=png, content_type="image/png")

    app = web.Application()
    app.router.add_get("/cat.png", image)
    async with serve(app) as host:
        msg = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": host + "/cat.png"}},
            {"type": "text", "text": "what?"}]}]}
        proxy = await start(fake_web, start_proxy)
        await call(proxy, "POST", "/v1/messages", msg)
        assert fake_web.uploads == []
        allowed = await start_proxy({"rproxy": fake_web.base_url, "allow_external_images": True},
                                    cookies=[make_cookie(1)])
        status, _, _ = await call(allowed, "POST", "/v1/messages", msg)
    assert status == 200
    assert [(u.filename, u.data) for u in fake_web.uploads] == [("image.png", png)]


async def test_pdf_document_is_uploaded(fake_web, start_proxy):
    proxy = await start(fake_web, start_proxy)
    pdf = base64.b64encode(b"%PDF-1.4 fake").decode()
    await call(proxy, "POST", "/v1/messages", {"model": MODEL, "max_tokens": 10, "messages": [
        {"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}},
            {"type": "text", "text": "summarise"}]}]})
    assert [(u.filename, u.content_type) for u in fake_web.uploads] == [("document.pdf", "application/pdf")]


async def test_global_web_search_switch(fake_web, start_proxy):
    proxy = await start(fake_web, start_proxy, web_search=True)
    await call(proxy, "POST", "/v1/messages", {"model": MODEL, "max_tokens": 10,
                                               "messages": [{"role": "user", "content": "x"}]})
    assert fake_web.completions[-1]["tools"] == [{"name": "web_search", "type": "web_search_v0"}]
