"""Claude Code upstream: the anthropic SDK on /code, the proxy against the fake api.anthropic.com."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.conftest import PASSWORD, make_cookie
from tests.fakes.anthropic_api import FakeAnthropic, Script, ToolCall

MODEL = "claude-sonnet-4-6"
MSG = [{"role": "user", "content": "hello there"}]


@pytest.fixture
async def api(clock):
    async with FakeAnthropic(clock=clock) as fake:
        yield fake


def code_settings(api) -> dict:
    return {"rproxy": api.base_url, "claude_code_token_url": api.url("v1/oauth/token"),
            "claude_code_usage_url": api.url("api/oauth/usage")}


@pytest.fixture
async def proxy(api, start_proxy):
    api.add_account(make_cookie(1))
    return await start_proxy(code_settings(api), cookies=[make_cookie(1)])


def client(proxy) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=proxy.url + "/code", api_key=PASSWORD, max_retries=0)


async def test_oauth_exchange_then_messages(proxy, api):
    api.reply = Script(text=["Hi ", "from ", "Claude Code"])
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=100, messages=MSG)
    assert msg.content[0].text == "Hi from Claude Code" and msg.model == MODEL
    assert api.exchanges == 1
    sent = api.requests_to("messages")[-1]
    assert "beta=true" in sent.query
    assert sent.headers["anthropic-beta"].startswith("oauth-2025-04-20")
    system = sent.json["system"]
    assert system[0]["text"].startswith("x-anthropic-billing-header: cc_version=2.1.76.")
    assert api.violations == []
    token = proxy.state.pool.valid[0]["token"]
    assert token["access_token"].startswith("sk-ant-oat01-") and token["refresh_token"]
    # the token is reused, not exchanged again
    async with client(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=100, messages=MSG)
    assert api.exchanges == 1


async def test_streaming_tools_and_thinking(proxy, api):
    api.reply = Script(text="Let me check.", thinking=["Need ", "the weather."],
                       tools=[ToolCall("get_weather", {"city": "Paris", "units": "metric"})])
    tools = [{"name": "get_weather", "description": "weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    async with client(proxy) as c:
        async with c.messages.stream(model=MODEL, max_tokens=4000, tools=tools, messages=MSG,
                                     thinking={"type": "enabled", "budget_tokens": 2048}) as s:
            final = await s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == "Need the weather." and final.content[0].signature
    assert final.content[2].input == {"city": "Paris", "units": "metric"}
    assert final.stop_reason == "tool_use" and final.model == MODEL
    assert final.usage.output_tokens > 0
    # the next turn sends the signed thinking back; the fake verifies the signature
    history = MSG + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": final.content[2].id,
                                                   "content": "sunny"}]}]
    api.reply = Script(text="It is sunny.")
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=4000, tools=tools, messages=history,
                                      thinking={"type": "enabled", "budget_tokens": 2048})
    assert msg.content[-1].text == "It is sunny." and api.violations == []


async def test_usage_recorded_from_upstream_figures(proxy, api):
    api.reply = Script(text="x", input_tokens=120, output_tokens=7, cache_read_input_tokens=30)
    async with client(proxy) as c:
        async with c.messages.stream(model=MODEL, max_tokens=100, messages=MSG) as s:
            await s.get_final_message()
    record = proxy.state.pool.valid[0]
    assert record["lifetime_usage"]["total_input_tokens"] == 150
    assert record["lifetime_usage"]["total_output_tokens"] == 7


async def test_count_tokens_upstream_and_cached(proxy, api):
    async with client(proxy) as c:
        first = await c.messages.count_tokens(model=MODEL, messages=MSG)
        again = await c.messages.count_tokens(model=MODEL, messages=MSG)
    assert first.input_tokens == again.input_tokens > 0
    assert len(api.requests_to("count_tokens")) == 1


async def test_count_tokens_falls_back_to_estimate(proxy, api):
    api.count_tokens_status = 404
    async with client(proxy) as c:
        counted = await c.messages.count_tokens(model=MODEL, messages=MSG)
        other = await c.messages.count_tokens(model=MODEL, messages=MSG + [
            {"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}])
    assert counted.input_tokens > 0 and other.input_tokens > counted.input_tokens
    assert proxy.state.pool.valid[0]["count_tokens_allowed"] is False
    assert len(api.requests_to("count_tokens")) == 1  # not asked again once known


async def test_expired_token_is_refreshed(proxy, api, clock):
    async with client(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
        clock.now += 28800  # past expiry
        await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert api.exchanges == 1 and api.refreshes == 1


async def test_rejected_refresh_reauthorizes(proxy, api, clock):
    async with client(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
        api.refresh_tokens_invalid = True
        clock.now += 28800
        await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert api.exchanges == 2


async def test_401_mid_life_refreshes_and_retries(proxy, api):
    async with client(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
        api.expire_all_tokens()
        msg = await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert msg.content and api.refreshes == 1


async def test_token_endpoint_waf_block_falls_back(proxy, api):
    api.token_waf_block = 1
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert msg.content and api.exchanges == 1


async def test_oauth_denied_keeps_cookie_for_web(api, start_proxy):
    denied, good = make_cookie("denied"), make_cookie("good")
    api.add_account(denied, oauth_denied=True)
    api.add_account(good)
    proxy = await start_proxy(code_settings(api), cookies=[denied, good])
    async with client(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    records = {r["cookie"]: r for r in proxy.state.pool.valid}
    assert records[denied]["code_allowed"] is False and len(records) == 2


async def test_free_account_is_web_only(api, start_proxy):
    free = make_cookie("free")
    api.add_account(free, pro=False)
    proxy = await start_proxy(code_settings(api), cookies=[free])
    async with client(proxy) as c:
        with pytest.raises(anthropic.APIStatusError) as info:
            await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert info.value.status_code == 503 and "web-only" in info.value.message
    assert proxy.state.pool.valid[0]["code_allowed"] is False


async def test_prelude_added_when_the_upstream_asks(api, start_proxy):
    cookie = make_cookie("prelude")
    api.add_account(cookie, needs_prelude=True)
    proxy = await start_proxy(code_settings(api), cookies=[cookie])
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
        await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert msg.content
    calls = api.requests_to("messages")
    assert len(calls) == 3  # one refused, then the prelude is remembered
    assert calls[-1].json["system"][1]["text"].startswith("You are Claude Code")


async def test_long_context_beta_dropped_when_denied(api, start_proxy):
    cookie = make_cookie("short")
    api.add_account(cookie, behaviour="long_context_denied")
    proxy = await start_proxy(code_settings(api), cookies=[cookie])
    async with client(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=10, messages=MSG,
                                extra_headers={"anthropic-beta": "context-1m-2025-08-07,effort-2025-11-24"})
    last = api.requests_to("messages")[-1]
    assert "context-1m" not in last.headers["anthropic-beta"] and "effort-2025-11-24" in last.headers["anthropic-beta"]
    assert proxy.state.pool.valid[0]["supports_claude_1m"] is False


async def test_rate_limited_cookie_parked_and_next_used(api, start_proxy, clock):
    limited, good = make_cookie("limited"), make_cookie("good")
    api.add_account(limited, behaviour="rate_limited", resets_at=int(clock.now) + 500)
    api.add_account(good)
    proxy = await start_proxy(code_settings(api), cookies=[limited, good])
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert msg.content
    assert proxy.state.pool.exhausted[0]["cookie"] == limited
    assert proxy.state.pool.exhausted[0]["reset_time"] == int(clock.now) + 500


async def test_overloaded_in_stream_retried_before_first_byte(api, start_proxy):
    busy, good = make_cookie("busy"), make_cookie("good")
    api.add_account(busy, behaviour="overloaded_in_stream")
    api.add_account(good)
    api.reply = Script(text="fine")
    proxy = await start_proxy(code_settings(api), cookies=[busy, good])
    async with client(proxy) as c:
        async with c.messages.stream(model=MODEL, max_tokens=10, messages=MSG) as s:
            final = await s.get_final_message()
    assert final.content[0].text == "fine"


async def test_sticky_session_keeps_one_cookie(api, start_proxy):
    cookies = [make_cookie(f"s{i}") for i in range(3)]
    for cookie in cookies:
        api.add_account(cookie)
    proxy = await start_proxy(code_settings(api), cookies=cookies)
    async with client(proxy) as c:
        for _ in range(4):
            await c.messages.create(model=MODEL, max_tokens=10, messages=MSG,
                                    extra_headers={"X-Claude-Code-Session-Id": "session-1"})
    used = {r.headers["Authorization"] for r in api.requests_to("messages")}
    assert len(used) == 1


async def test_openai_client_on_code_route(proxy, api):
    api.reply = Script(text="converted", tools=[ToolCall("lookup", {"q": "x"})])
    async with openai.AsyncOpenAI(base_url=proxy.url + "/code/v1", api_key=PASSWORD, max_retries=0) as c:
        resp = await c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "go"}],
                                               tools=[{"type": "function", "function": {
                                                   "name": "lookup", "parameters": {"type": "object"}}}])
    choice = resp.choices[0]
    assert choice.message.content == "converted" and choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "lookup"


async def test_code_models_and_hi(proxy, api):
    async with client(proxy) as c:
        ids = [m.id async for m in c.models.list()]
        hi = await c.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "Hi"}])
    assert "claude-opus-4-8" in ids and hi.content[0].text.startswith("Claude Reverse Proxy")
    assert api.requests_to("messages") == []


async def test_imported_cli_login_without_cookie(api, start_proxy, tmp_path, clock):
    import json as _json

    import aiohttp
    import tomlkit

    from clewdr_lite.config_file import ConfigFile
    from clewdr_lite.server.app import save_pool
    from tests.conftest import ADMIN_PASSWORD

    owner = make_cookie("owner")  # the account the login belongs to; its cookie is not in the pool
    api.add_account(owner)
    tokens = api.issue_tokens(owner)
    credentials = _json.dumps({"claudeAiOauth": {"accessToken": tokens.access_token,
                                                 "refreshToken": tokens.refresh_token,
                                                 "expiresAt": int(tokens.expires_at * 1000), "scopes": []}})
    path = tmp_path / "clewdr.toml"
    path.write_text("# mine\n")
    file = ConfigFile(path, no_fs=False)
    file.load({})
    proxy = await start_proxy(code_settings(api), config_file=file)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_PASSWORD}"}) as s:
        async with s.post(proxy.url + "/api/oauth_token", json={"credentials": credentials}) as r:
            assert r.status == 200 and (await r.json())["added"] is True
        async with s.post(proxy.url + "/api/oauth_token", json={"credentials": "nonsense"}) as r:
            assert r.status == 400
    async with client(proxy) as c:
        msg = await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
        assert msg.content and api.exchanges == 0
        assert api.requests_to("messages")[-1].headers["Authorization"] == f"Bearer {tokens.access_token}"
        clock.now = tokens.expires_at + 1  # expired: refreshed with its own refresh token
        await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
        assert api.refreshes == 1
    # an imported login never serves the web route
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
        with pytest.raises(anthropic.APIStatusError) as info:
            await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert info.value.status_code == 503
    await save_pool(proxy.state)
    doc = tomlkit.parse(path.read_text())
    assert "cookie_array" not in doc or not doc["cookie_array"]
    saved = doc["claude_code_tokens"][0]
    assert saved["id"].startswith("oauth-") and saved["token"]["refresh_token"] != tokens.refresh_token
    # once its refresh token is gone, it is retired (no cookie to authorize again)
    api.refresh_tokens_invalid = True
    clock.now += 30000
    async with client(proxy) as c:
        with pytest.raises(anthropic.APIStatusError):
            await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    assert proxy.state.pool.invalid[0]["reason"] == "Null"


async def test_usage_windows_probed_after_an_exchange(proxy, api, clock):
    api.accounts[make_cookie(1)].usage = {
        "five_hour": {"utilization": 37.4, "resets_at": "2025-10-09T12:00:00Z"},
        "seven_day": {"utilization": 12.0, "resets_at": "2025-10-14T00:00:00Z"},
        "seven_day_sonnet": None, "seven_day_opus": None}
    async with client(proxy) as c:
        await c.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    import asyncio
    for _ in range(200):
        if proxy.state.pool.valid[0].get("session_resets_at"):
            break
        await asyncio.sleep(0.01)
    record = proxy.state.pool.valid[0]
    assert record["session_resets_at"] == 1760011200 and record["session_has_reset"] is True
    assert record["weekly_has_reset"] is True and record["weekly_sonnet_has_reset"] is False
    assert record["session_utilization"] == 37
    assert len(api.requests_to("usage")) == 1


async def test_claude_code_body_fields_pass_through(proxy, api):
    import aiohttp

    body = {"model": "claude-opus-4-8-1M", "max_tokens": 64000, "stream": False,
            "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.abc; cc_entrypoint=sdk-cli;"},
                       {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}]},
                         {"role": "system", "content": "agent types: none"}],
            "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "metadata": {"user_id": '{"device_id":"d","account_uuid":"","session_id":"s-1"}'},
            "tools": [{"name": "Bash", "description": "run", "input_schema": {
                "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                "properties": {}, "additionalProperties": False}}]}
    headers = {"x-api-key": PASSWORD, "anthropic-version": "2023-06-01",
               "anthropic-beta": "claude-code-20250219,mid-conversation-system-2026-04-07,effort-2025-11-24"}
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.url + "/code/v1/messages?beta=true", json=body, headers=headers) as r:
            data = await r.json()
            assert r.status == 200, data
    assert data["model"] == "claude-opus-4-8-1M"
    sent = api.requests_to("messages")[-1]
    assert sent.json["model"] == "claude-opus-4-8"
    for key in ("thinking", "output_config", "context_management", "metadata", "tools"):
        assert sent.json[key] == body[key], key
    assert sent.json["messages"][1] == {"role": "system", "content": "agent types: none"}
    billing = [b for b in sent.json["system"] if b["text"].startswith("x-anthropic-billing-header")]
    assert len(billing) == 1 and "cc_version=2.1.76." in billing[0]["text"]
    betas = sent.headers["anthropic-beta"].split(",")
    assert betas[0] == "oauth-2025-04-20" and "context-1m-2025-08-07" in betas
    assert "mid-conversation-system-2026-04-07" in betas
