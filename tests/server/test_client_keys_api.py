"""Client keys through the proxy: model allow-lists, rpm, budgets (403, never 429), expiry."""

from __future__ import annotations

import anthropic
import openai
import pytest

from clewdr_lite.client_keys import new_key
from tests.conftest import PASSWORD, make_cookie

MODEL = "claude-sonnet-4-6"
MSG = [{"role": "user", "content": "hello there"}]


def make_key(seed: int, **fields) -> tuple[str, dict]:
    plain, table = new_key(bytes([seed]) * 32, now=0, name=f"k{seed}")
    table.update(fields)
    return plain, table


@pytest.fixture
async def proxy_with(fake_web, start_proxy):
    fake_web.add_account(make_cookie(1))
    fake_web.reply = "a reply of some length to be priced"

    async def start(*tables):
        return await start_proxy({"rproxy": fake_web.base_url, "client_keys": list(tables)},
                                 cookies=[make_cookie(1)])
    return start


async def test_client_key_works_and_password_still_works(proxy_with):
    plain, table = make_key(1)
    proxy = await proxy_with(table)
    for secret in (plain, PASSWORD):
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=secret, max_retries=0) as c:
            assert (await c.messages.create(model=MODEL, max_tokens=20, messages=MSG)).content
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key="sk-clewdr-unknown", max_retries=0) as c:
        with pytest.raises(anthropic.AuthenticationError):
            await c.messages.create(model=MODEL, max_tokens=20, messages=MSG)


async def test_model_allow_list(proxy_with):
    plain, table = make_key(2, models=["claude-haiku-*"])
    proxy = await proxy_with(table)
    async with openai.AsyncOpenAI(base_url=proxy.url + "/v1", api_key=plain, max_retries=0) as c:
        with pytest.raises(openai.PermissionDeniedError) as info:
            await c.chat.completions.create(model=MODEL, messages=MSG)
    assert "model not allowed" in info.value.message


async def test_rpm_limit_answers_429_with_retry_after(proxy_with):
    plain, table = make_key(3, rpm=1)
    proxy = await proxy_with(table)
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=plain, max_retries=0) as c:
        await c.messages.create(model=MODEL, max_tokens=20, messages=MSG)
        with pytest.raises(anthropic.RateLimitError) as info:
            await c.messages.create(model=MODEL, max_tokens=20, messages=MSG)
    assert int(info.value.response.headers["retry-after"]) >= 1


async def test_budget_exhausted_is_403_and_priced_from_the_table(start_proxy, clock):
    from tests.fakes.anthropic_api import FakeAnthropic

    api_key = "sk-ant-api03-" + "p" * 40
    plain, table = make_key(4, budget_usd=0.000001, budget_period="monthly")
    async with FakeAnthropic(clock=clock) as api:
        api.add_key(api_key)
        proxy = await start_proxy({"client_keys": [table], "providers": [
            {"name": "console", "type": "anthropic", "base_url": api.origin, "keys": [api_key],
             "models": ["claude-*"]}]})
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=plain, max_retries=0) as c:
            await c.messages.create(model=MODEL, max_tokens=20, messages=MSG)
            with pytest.raises(anthropic.PermissionDeniedError) as info:
                await c.messages.create(model=MODEL, max_tokens=20, messages=MSG)
    assert "budget exhausted" in info.value.message
    assert sum(proxy.state.spend.values()) > 0.000001


async def test_subscription_traffic_costs_nothing_but_has_a_shadow_cost(proxy_with):
    plain, table = make_key(8, budget_usd=0.000001, budget_period="monthly")
    proxy = await proxy_with(table)
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=plain, max_retries=0) as c:
        for _ in range(2):  # claude.ai web: no per-call price, so the budget is untouched
            await c.messages.create(model=MODEL, max_tokens=20, messages=MSG)
    proxy.state.store.flush()
    row = proxy.state.store.recent(1)[0]
    assert row["cost_usd"] == 0 and row["shadow_cost_usd"] > 0


async def test_expired_and_disabled_keys_are_401(proxy_with, clock):
    expired, t1 = make_key(5, expires_at=clock.now - 1)
    disabled, t2 = make_key(6, enabled=False)
    proxy = await proxy_with(t1, t2)
    for secret in (expired, disabled):
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=secret, max_retries=0) as c:
            with pytest.raises(anthropic.AuthenticationError):
                await c.messages.create(model=MODEL, max_tokens=20, messages=MSG)


async def test_request_log_and_usage_by_key(proxy_with):
    import aiohttp

    from tests.conftest import ADMIN_PASSWORD

    plain, table = make_key(7)
    proxy = await proxy_with(table)
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=plain, max_retries=0) as c:
        await c.messages.create(model=MODEL, max_tokens=20, messages=MSG)
        async with c.messages.stream(model=MODEL, max_tokens=20, messages=MSG) as s:
            await s.get_final_message()
    proxy.state.store.flush()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_PASSWORD}"}) as s:
        async with s.get(proxy.url + "/api/logs?limit=10") as r:
            rows = (await r.json())["rows"]
        async with s.get(proxy.url + "/api/usage?group_by=key") as r:
            usage = (await r.json())["rows"]
    assert [(row["stream"], row["status"], row["provider"]) for row in rows] == [
        (1, 200, "claude_web"), (0, 200, "claude_web")]
    assert all(row["client_key_id"] == table["id"] and row["output_tokens"] > 0 for row in rows)
    assert {row["credential"] for row in rows} == {make_cookie(1)[:20] + "..."}  # masked, never whole
    by_credential = await __import__("asyncio").to_thread(proxy.state.store.usage, "credential", None)
    assert by_credential[0]["requests"] == 2 and by_credential[0]["provider"] == "claude_web"
    assert usage[0]["group"] == table["id"] and usage[0]["requests"] == 2
    assert usage[0]["cost_usd"] == 0 and usage[0]["shadow_cost_usd"] > 0  # a subscription


async def test_admin_creates_lists_and_revokes_client_keys(fake_web, start_proxy, tmp_path):
    import aiohttp
    import tomlkit

    from clewdr_lite.config_file import ConfigFile
    from tests.conftest import ADMIN_PASSWORD

    fake_web.add_account(make_cookie(1))
    path = tmp_path / "clewdr.toml"
    path.write_text("# mine\n")
    file = ConfigFile(path, no_fs=False)
    file.load({})
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[make_cookie(1)], config_file=file)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_PASSWORD}"}) as s:
        async with s.post(proxy.url + "/api/client_keys", json={"name": "phone", "models": ["claude-*"]}) as r:
            created = await r.json()
            assert r.status == 201 and created["key"].startswith("sk-clewdr-")
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=created["key"], max_retries=0) as c:
            assert (await c.messages.create(model=MODEL, max_tokens=20, messages=MSG)).content
        async with s.get(proxy.url + "/api/client_keys") as r:
            listed = (await r.json())["keys"]
        assert listed[0]["name"] == "phone" and created["key"] not in str(listed)
        saved = tomlkit.parse(path.read_text())["client_keys"][0]
        assert saved["key_hash"] and created["key"] not in path.read_text()
        async with s.delete(proxy.url + f"/api/client_keys/{created['id']}") as r:
            assert r.status == 204
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=created["key"], max_retries=0) as c:
        with pytest.raises(anthropic.AuthenticationError):
            await c.messages.create(model=MODEL, max_tokens=20, messages=MSG)


async def test_bodies_logged_only_on_errors_when_asked(fake_web, start_proxy):
    fake_web.add_account(make_cookie(1))
    proxy = await start_proxy({"rproxy": fake_web.base_url, "log": {"bodies": "errors"}}, cookies=[make_cookie(1)])
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
        await c.messages.create(model=MODEL, max_tokens=20, messages=MSG)
        with pytest.raises(anthropic.BadRequestError):
            await c.messages.create(model=MODEL, max_tokens=20, messages=[{"role": "robot", "content": "x"}])
    store = proxy.state.store
    store.flush()
    bad, good = store.recent(2)
    assert bad["status"] == 400 and '"robot"' in store.get(bad["id"])["request_body"]
    assert good["status"] == 200 and not store.get(good["id"]).get("request_body")
