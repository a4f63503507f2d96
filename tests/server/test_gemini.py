"""Gemini through the proxy: google-genai (v1 and v1beta), SillyTavern's makersuite shape, key health,
Vertex service accounts, the OpenAI-compatible routes, and Gemini ⇄ Claude across dialects."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from tests.conftest import PASSWORD
from tests.fakes.gemini_api import FakeGoogle, FunctionCall, GScript

MODEL = "gemini-2.5-flash"


def key(n: int) -> str:
    return "AIzaSy" + f"{n:02d}" + "x" * 31


@pytest.fixture
async def google(clock):
    async with FakeGoogle(clock=clock) as fake:
        yield fake


async def start(start_proxy, google, keys, **settings):
    return await start_proxy({"gemini_base": google.base_url, "vertex_base": google.base_url,
                              "gemini_keys": [{"key": k} for k in keys], **settings})


def genai_client(proxy, version: str, prefix: str = "") -> genai.Client:
    return genai.Client(api_key=PASSWORD, http_options=types.HttpOptions(
        base_url=proxy.url + prefix + "/", api_version=version))


@pytest.mark.parametrize("version", ["v1", "v1beta"])
async def test_google_genai_generate_stream_count(google, start_proxy, version):
    google.add_key(key(1))
    proxy = await start(start_proxy, google, [key(1)])
    google.reply = GScript(text=["Hello ", "from ", "Gemini"])
    client = genai_client(proxy, version)
    resp = await client.aio.models.generate_content(model=MODEL, contents="hi there")
    assert resp.text == "Hello from Gemini"
    pieces = [c.text async for c in await client.aio.models.generate_content_stream(model=MODEL, contents="go")]
    assert "".join(p or "" for p in pieces) == "Hello from Gemini" and len(pieces) > 1
    counted = await client.aio.models.count_tokens(model=MODEL, contents="count me")
    assert counted.total_tokens > 0
    calls = google.requests_to("generateContent") + google.requests_to("streamGenerateContent")
    assert all(c.headers.get("x-goog-api-key") == key(1) for c in calls)
    assert all("key" not in c.query for c in calls)  # the client's password never travels upstream
    assert all(c.path.startswith("/v1beta/") for c in calls)
    sent = calls[0].json
    assert [s["threshold"] for s in sent["safetySettings"]] == ["OFF"] * 5
    assert google.violations == []


async def test_function_call_round_trip_keeps_ids(google, start_proxy):
    google.add_key(key(1))
    proxy = await start(start_proxy, google, [key(1)])
    google.reply = GScript(calls=[FunctionCall("read_file", {"path": "a.txt"}, id="read_file_1_0")])
    client = genai_client(proxy, "v1beta")
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="read_file", description="read", parameters_json_schema={
            "type": "object", "properties": {"path": {"type": "string"}}})])
    resp = await client.aio.models.generate_content(model=MODEL, contents="read a.txt",
                                                    config=types.GenerateContentConfig(tools=[tool]))
    call = resp.function_calls[0]
    assert (call.name, call.args, call.id) == ("read_file", {"path": "a.txt"}, "read_file_1_0")


async def test_sillytavern_makersuite_request(google, start_proxy):
    google.add_key(key(1))
    proxy = await start(start_proxy, google, [key(1)])
    google.reply = GScript(text="ST gemini reply")
    body = {"contents": [{"role": "model", "parts": [{"text": "Greetings!"}]},
                         {"role": "user", "parts": [{"text": "hello"}]}],
            "safetySettings": [{"category": c, "threshold": "BLOCK_NONE"} for c in (
                "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_SEXUALLY_EXPLICIT",
                "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_CIVIC_INTEGRITY")],
            "generationConfig": {"stopSequences": [], "candidateCount": 1, "maxOutputTokens": 300,
                                 "temperature": 1, "topP": 1},
            "system_instruction": {"parts": {"text": "You are Aria."}}}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{proxy.url}/v1beta/models/{MODEL}:generateContent?key={PASSWORD}", json=body) as r:
            data = await r.json()
            assert r.status == 200, data
    assert data["candidates"][0]["content"]["parts"][0]["text"] == "ST gemini reply"
    sent = google.requests_to("generateContent")[-1].json
    assert "safety_settings" not in sent and sent["safetySettings"][0]["threshold"] == "OFF"
    assert sent["system_instruction"] == body["system_instruction"]  # forwarded as received


async def test_hi_answered_locally_in_gemini_shape(google, start_proxy):
    proxy = await start(start_proxy, google, [key(1)])
    resp = await genai_client(proxy, "v1beta").aio.models.generate_content(model=MODEL, contents="Hi")
    assert resp.text.startswith("Claude Reverse Proxy is working") and google.requests == []


@pytest.mark.parametrize("behaviour, state, reason", [
    ("invalid", "disabled", "invalid"), ("suspended", "disabled", "suspended"),
    ("api_disabled", "disabled", "api_disabled"), ("rate_limited", "cooling", "rate_limited"),
    ("daily_quota", "cooling", "daily_quota")])
async def test_key_health_rules(google, start_proxy, behaviour, state, reason):
    google.add_key(key(1), behaviour=behaviour)
    google.add_key(key(2))
    proxy = await start(start_proxy, google, [key(1), key(2)])
    google.reply = GScript(text="ok")
    resp = await genai_client(proxy, "v1beta").aio.models.generate_content(model=MODEL, contents="x")
    assert resp.text == "ok"
    entry = proxy.state.google["gemini"].pool.find(key(1))
    assert (entry.state, entry.reason) == (state, reason)


async def test_daily_quota_cools_until_pacific_midnight(google, start_proxy, clock):
    from clewdr_lite.protocol.gemini_keys import next_pacific_midnight

    google.add_key(key(1), behaviour="daily_quota")
    proxy = await start(start_proxy, google, [key(1)])
    with pytest.raises(genai.errors.APIError) as info:
        await genai_client(proxy, "v1beta").aio.models.generate_content(model=MODEL, contents="x")
    assert info.value.code == 429
    assert proxy.state.google["gemini"].pool.find(key(1)).until == next_pacific_midnight(clock.now)


async def test_repeated_403_disables_after_the_limit(google, start_proxy):
    google.add_key(key(1), behaviour="forbidden")
    google.add_key(key(2))
    proxy = await start(start_proxy, google, [key(1), key(2)], gemini_max_403=2, max_retries=1)
    client = genai_client(proxy, "v1beta")
    for _ in range(4):
        await client.aio.models.generate_content(model=MODEL, contents="x")
    entry = proxy.state.google["gemini"].pool.find(key(1))
    assert entry.state == "disabled" and entry.reason == "forbidden"


async def test_region_block_is_not_the_keys_fault(google, start_proxy):
    google.add_key(key(1), behaviour="region_blocked")
    proxy = await start(start_proxy, google, [key(1)])
    with pytest.raises(genai.errors.APIError) as info:
        await genai_client(proxy, "v1beta").aio.models.generate_content(model=MODEL, contents="x")
    assert info.value.code == 400 and "proxy" in info.value.message
    assert proxy.state.google["gemini"].pool.find(key(1)).state == "active"


async def test_empty_answers_retried_then_last_body(google, start_proxy):
    google.add_key(key(1), behaviour="empty")
    google.add_key(key(2), behaviour="finish_other")
    proxy = await start(start_proxy, google, [key(1), key(2)], max_retries=1)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{proxy.url}/v1beta/models/{MODEL}:generateContent",
                          headers={"x-goog-api-key": PASSWORD},
                          json={"contents": [{"parts": [{"text": "x"}]}]}) as r:
            assert r.status == 200  # ClewdR answered 204 here
            data = await r.json()
    assert data["candidates"][0]["finishReason"] == "OTHER"
    assert len(google.requests_to("generateContent")) == 2


async def test_transient_503_retried_on_next_key(google, start_proxy):
    google.add_key(key(1), behaviour="unavailable")
    google.add_key(key(2))
    proxy = await start(start_proxy, google, [key(1), key(2)])
    google.reply = GScript(text="second")
    resp = await genai_client(proxy, "v1beta").aio.models.generate_content(model=MODEL, contents="x")
    assert resp.text == "second"


async def test_no_keys_at_all_is_503_in_google_shape(google, start_proxy):
    proxy = await start(start_proxy, google, [])
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{proxy.url}/v1beta/models/{MODEL}:generateContent",
                          headers={"x-goog-api-key": PASSWORD}, json={"contents": [{"parts": [{"text": "x"}]}]}) as r:
            body = await r.json()
    assert r.status == 503 and body["error"]["status"] == "UNAVAILABLE"


async def test_bad_password_and_bad_json_in_google_shape(google, start_proxy):
    proxy = await start(start_proxy, google, [key(1)])
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{proxy.url}/v1beta/models/{MODEL}:generateContent?key=nope", json={}) as r:
            assert r.status == 401 and (await r.json())["error"]["status"] == "UNAUTHENTICATED"
        async with s.post(f"{proxy.url}/v1beta/models/{MODEL}:generateContent",
                          headers={"x-goog-api-key": PASSWORD}, data=b"{oops") as r:
            assert r.status == 400 and (await r.json())["error"]["status"] == "INVALID_ARGUMENT"


async def test_openai_compatible_gemini_route(google, start_proxy):
    google.add_key(key(1))
    proxy = await start(start_proxy, google, [key(1)])
    google.reply = GScript(text="via openai")
    async with openai.AsyncOpenAI(base_url=proxy.url + "/gemini", api_key=PASSWORD, max_retries=0) as c:
        resp = await c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
        stream = await c.chat.completions.create(model=MODEL, stream=True, messages=[{"role": "user", "content": "x"}])
        text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
    assert resp.choices[0].message.content == "via openai" and text == "via openai"
    assert google.requests_to("openai_chat")[-1].headers["Authorization"] == f"Bearer {key(1)}"


async def test_vertex_native_and_openai(google, start_proxy):
    sa = google.make_service_account("proj-1")
    proxy = await start_proxy({"vertex_base": google.base_url, "vertex": {"credentials": [sa]}})
    google.reply = GScript(text="from vertex")
    for prefix in ("/vertex", "/v1/vertex"):
        client = genai_client(proxy, "v1beta", prefix)
        assert (await client.aio.models.generate_content(model=MODEL, contents="x")).text == "from vertex"
    async with openai.AsyncOpenAI(base_url=proxy.url + "/gemini/vertex", api_key=PASSWORD, max_retries=0) as c:
        resp = await c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].message.content == "from vertex"
    assert google.token_exchanges == 1  # cached until shortly before expiry
    sent = google.requests_to("vertex_openai_chat")[-1].json
    assert sent["model"] == "google/" + MODEL and "frequency_penalty" not in sent


async def test_vertex_not_configured(google, start_proxy):
    proxy = await start_proxy({"vertex_base": google.base_url})
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{proxy.url}/v1/vertex/v1beta/models/{MODEL}:generateContent",
                          headers={"x-goog-api-key": PASSWORD}, json={"contents": [{"parts": [{"text": "x"}]}]}) as r:
            body = await r.json()
    assert r.status == 400 and "Vertex is not configured" in body["error"]["message"]


async def test_anthropic_and_openai_clients_reach_gemini(google, start_proxy):
    google.add_key(key(1))
    proxy = await start(start_proxy, google, [key(1)])
    google.reply = GScript(text=["cross ", "dialect"])
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=100, system="be brief",
                                      messages=[{"role": "user", "content": "x"}])
        async with c.messages.stream(model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "x"}]) as s:
            streamed = await s.get_final_message()
    assert msg.content[0].text == "cross dialect" and streamed.content[0].text == "cross dialect"
    assert msg.model == MODEL and msg.usage.output_tokens > 0
    sent = google.requests_to("generateContent")[-1].json
    assert sent["systemInstruction"]["parts"][0]["text"] == "be brief"
    async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=PASSWORD, max_retries=0) as c:
        resp = await c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].message.content == "cross dialect"


async def test_gemini_client_reaches_a_claude_model(google, start_proxy, clock):
    from tests.fakes.anthropic_api import FakeAnthropic, Script

    async with FakeAnthropic(clock=clock) as api:
        api.add_key("sk-ant-api03-" + "k" * 40)
        api.reply = Script(text=["claude ", "answers"])
        provider = {"name": "console", "type": "anthropic", "base_url": api.origin,
                    "keys": ["sk-ant-api03-" + "k" * 40], "models": ["claude-*"]}
        proxy = await start_proxy({"providers": [provider]})
        client = genai_client(proxy, "v1beta")
        resp = await client.aio.models.generate_content(
            model="claude-sonnet-4-6", contents="x",
            config=types.GenerateContentConfig(system_instruction="be brief", max_output_tokens=200))
        pieces = [c.text async for c in await client.aio.models.generate_content_stream(
            model="claude-sonnet-4-6", contents="y")]
    assert resp.text == "claude answers" and "".join(p or "" for p in pieces) == "claude answers"
    sent = api.requests_to("messages")[0].json
    assert sent["system"] == [{"type": "text", "text": "be brief"}] and sent["max_tokens"] == 200


async def test_gemini_keepalive_for_slow_answers(google, start_proxy, monkeypatch):
    from clewdr_lite.server import gemini_api

    monkeypatch.setattr(gemini_api, "KEEPALIVE_FIRST_S", 0.05)
    google.add_key(key(1))
    proxy = await start(start_proxy, google, [key(1)], gemini_keepalive=True)
    upstream = proxy.state.google["gemini"]
    gate, real = asyncio.Event(), upstream.native

    async def slow_native(*args, **kwargs):  # the upstream takes longer than the first wait
        await gate.wait()
        return await real(*args, **kwargs)
    monkeypatch.setattr(upstream, "native", slow_native)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{proxy.url}/v1beta/models/{MODEL}:generateContent",
                          headers={"x-goog-api-key": PASSWORD}, json={"contents": [{"parts": [{"text": "x"}]}]}) as r:
            assert r.status == 200
            first = await r.content.readexactly(1)
            gate.set()
            rest = await r.read()
    assert first == b"\n"
    assert json.loads(rest)["candidates"]


async def test_admin_gemini_keys(google, start_proxy):
    from tests.conftest import ADMIN_PASSWORD

    proxy = await start(start_proxy, google, [key(1)])
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_PASSWORD}"}) as s:
        async with s.post(proxy.url + "/api/key", json={"key": key(2)}) as r:
            assert r.status == 200
        async with s.post(proxy.url + "/api/key", json={"key": "nope"}) as r:
            assert r.status == 400 and await r.json() == {"error": "Invalid key"}
        async with s.get(proxy.url + "/api/keys") as r:
            listed = (await r.json())["valid"]
        async with s.delete(proxy.url + "/api/key", json={"key": key(1)}) as r:
            assert r.status == 204
    assert len(listed) == 2 and all(key(1) not in str(v) for v in listed)


@pytest.mark.parametrize("version", ["v1", "v1beta"])
async def test_model_list_relays_upstream_and_adds_ours(google, start_proxy, version):
    google.add_key(key(1))
    proxy = await start(start_proxy, google, [key(1)])
    client = genai_client(proxy, version)
    names = [m.name async for m in await client.aio.models.list()]
    assert f"models/{MODEL}" in names and "models/claude-sonnet-4-6" in names
    again = [m.name async for m in await client.aio.models.list()]
    assert again == names and len(google.requests_to("models")) == 1  # cached for an hour


async def test_safety_rejection_retried_relaxed(google, start_proxy):
    google.add_key(key(1), behaviour="safety_rejected")
    proxy = await start(start_proxy, google, [key(1)])
    google.reply = GScript(text="relaxed")
    resp = await genai_client(proxy, "v1beta").aio.models.generate_content(model=MODEL, contents="x")
    assert resp.text == "relaxed"
    last = google.requests_to("generateContent")[-1].json["safetySettings"]
    assert {s["threshold"] for s in last} == {"BLOCK_NONE"}
    assert "HARM_CATEGORY_CIVIC_INTEGRITY" not in {s["category"] for s in last}


async def test_admin_vertex_credentials(google, start_proxy):
    from tests.conftest import ADMIN_PASSWORD

    sa = google.make_service_account("proj-9")
    proxy = await start_proxy({"vertex_base": google.base_url})
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_PASSWORD}"}) as s:
        async with s.post(proxy.url + "/api/vertex/credential", json={"credential": {"project_id": "x"}}) as r:
            assert r.status == 400 and (await r.json())["error"] == "client_email is required"
        async with s.post(proxy.url + "/api/vertex/credential", json={"credential": sa}) as r:
            assert r.status == 200
        async with s.get(proxy.url + "/api/vertex/credentials") as r:
            listed = await r.json()
    assert listed == [{"client_email": sa["client_email"], "project_id": "proj-9",
                       "private_key_id": sa["private_key_id"]}]
    google.reply = GScript(text="added at runtime")
    resp = await genai_client(proxy, "v1beta", "/vertex").aio.models.generate_content(model=MODEL, contents="x")
    assert resp.text == "added at runtime"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_PASSWORD}"}) as s:
        async with s.delete(proxy.url + "/api/vertex/credential", json={"client_email": sa["client_email"]}) as r:
            assert r.status == 204


async def test_key_health_saved_in_clewdr_toml(google, start_proxy, tmp_path):
    import tomlkit

    from clewdr_lite.config_file import ConfigFile
    from clewdr_lite.server.app import save_pool

    google.add_key(key(1), behaviour="invalid")
    google.add_key(key(2))
    path = tmp_path / "clewdr.toml"
    path.write_text(f'# keys\ngemini_keys = [{{ key = "{key(1)}", count_403 = 0 }}, {{ key = "{key(2)}" }}]\n')
    file = ConfigFile(path, no_fs=False)
    file.load({})
    proxy = await start_proxy({"gemini_base": google.base_url,
                               "gemini_keys": [{"key": key(1), "count_403": 0}, {"key": key(2)}]}, config_file=file)
    await genai_client(proxy, "v1beta").aio.models.generate_content(model=MODEL, contents="x")
    await save_pool(proxy.state)
    saved = {k["key"]: k for k in tomlkit.parse(path.read_text())["gemini_keys"]}
    assert saved[key(1)]["disabled_reason"] == "invalid" and path.read_text().startswith("# keys")


async def test_vertex_rejected_account_is_disabled_and_the_next_serves(google, start_proxy):
    bad = google.make_service_account("proj-bad", token_error="invalid_grant")
    good = google.make_service_account("proj-good")
    proxy = await start_proxy({"vertex_base": google.base_url, "vertex": {"credentials": [bad, good]}})
    google.reply = GScript(text="second account")
    client = genai_client(proxy, "v1beta", "/vertex")
    for _ in range(2):
        assert (await client.aio.models.generate_content(model=MODEL, contents="x")).text == "second account"
    pool = proxy.state.google["vertex"].pool
    assert pool.find(bad["client_email"].lower()).state == "disabled"
    assert google.service_accounts[bad["client_email"]].exchanges == 0  # rejected, never issued
    assert {r.project for r in google.requests_to("vertex_generateContent")} == {"proj-good"}


async def test_client_key_limits_on_gemini_routes(google, start_proxy):
    from clewdr_lite.client_keys import new_key

    plain, table = new_key(b"g" * 32, now=0, name="gem", rpm=1)
    google.add_key(key(1))
    proxy = await start(start_proxy, google, [key(1)], client_keys=[table])
    client = genai.Client(api_key=plain, http_options=types.HttpOptions(base_url=proxy.url + "/",
                                                                        api_version="v1beta"))
    assert (await client.aio.models.generate_content(model=MODEL, contents="x")).text
    with pytest.raises(genai.errors.APIError) as info:
        await client.aio.models.generate_content(model=MODEL, contents="x")
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize("alt", ["?alt=sse", ""])
async def test_a_native_stream_cut_midway_ends_with_googles_error(google, start_proxy, caplog, alt):
    google.add_key(key(1))
    google.cut_after = 2  # two chunks, then the connection closes
    proxy = await start(start_proxy, google, [key(1)], max_retries=0)
    body = {"contents": [{"role": "user", "parts": [{"text": "tell me a long story"}]}]}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        async with s.post(proxy.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent" + alt,
                          headers={"x-goog-api-key": PASSWORD}, json=body) as r:
            text = await r.text()  # the response ends: the client is not left waiting
    assert r.status == 200 and '"candidates"' in text
    error = '{"error":{"code":500,"message":"upstream connection lost","status":"INTERNAL"}}'
    if alt:
        assert text.endswith("data: " + error + "\n\n")
    else:
        assert text.endswith(",\n" + error + "]")
    assert not [r for r in caplog.records if "unhandled error" in r.getMessage()]


@pytest.mark.parametrize("method, alt", [("generateContent", ""), ("streamGenerateContent", "?alt=sse"),
                                         ("streamGenerateContent", "")], ids=["whole", "sse", "json-array"])
async def test_native_answers_count_the_usage_google_reports(google, start_proxy, method, alt):
    """Relayed bytes are never decoded whole, yet the usageMetadata Google reports (the last of a
    stream's running counts) reaches the request log, and so costs and budgets."""
    google.add_key(key(1))
    proxy = await start(start_proxy, google, [key(1)])
    google.reply = GScript(text=["Hello ", "from ", "Gemini"], usage={
        "promptTokenCount": 40, "cachedContentTokenCount": 10, "candidatesTokenCount": 7,
        "thoughtsTokenCount": 3, "totalTokenCount": 50})
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{proxy.url}/v1beta/models/{MODEL}:{method}{alt}",
                          headers={"x-goog-api-key": PASSWORD}, json=body) as r:
            assert r.status == 200 and "Gemini" in await r.text()
    proxy.state.store.flush()
    row = proxy.state.store.recent(1)[0]
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (40, 10, 10)
    assert row["cost_usd"] > 0 and row["estimated"] == 0


async def test_the_openai_compatible_route_counts_the_usage_google_reports(google, start_proxy):
    google.add_key(key(1))
    proxy = await start(start_proxy, google, [key(1)])
    google.reply = GScript(text=["Hello ", "there"])
    async with openai.AsyncOpenAI(base_url=proxy.url + "/gemini", api_key=PASSWORD, max_retries=0) as c:
        whole = await c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        stream = await c.chat.completions.create(model=MODEL, stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "hi"}])
        reported = [chunk.usage async for chunk in stream]
    proxy.state.store.flush()
    streamed, plain = proxy.state.store.recent(2)
    final = [u for u in reported if u][-1]
    for row, usage in ((plain, whole.usage), (streamed, final)):
        assert (row["input_tokens"], row["output_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
        assert row["input_tokens"] > 0 and row["output_tokens"] > 0


@pytest.mark.parametrize("page", ["<html>please log in</html>", '{"candidates": ['], ids=["html", "cut-json"])
async def test_a_200_page_instead_of_googles_answer_is_a_clean_502(start_proxy, canned, page):
    """A captive portal or proxy answering 200 with HTML, or a cut body: a failed attempt, so the
    client gets a 502 in its dialect (a Claude client got a 500 "internal error"; a Gemini client,
    the page)."""
    portal = await canned(page)
    proxy = await start_proxy({"gemini_base": portal, "gemini_keys": [{"key": key(1)}],
                               "max_retries": 0})
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await c.messages.create(model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502 and "not a JSON object" in caught.value.message
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{proxy.url}/v1beta/models/{MODEL}:generateContent", headers={"x-goog-api-key": PASSWORD},
                          json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}) as r:
            body = await r.json()
    assert r.status == 502 and body["error"]["code"] == 502 and page not in json.dumps(body)
