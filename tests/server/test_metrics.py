"""/metrics scraped after real traffic: request counts, latencies, tokens, credential states."""

from __future__ import annotations

import aiohttp
import anthropic

from tests.conftest import ADMIN_PASSWORD, PASSWORD, make_cookie


def samples(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def test_metrics_after_traffic(fake_web, start_proxy):
    good, bad = make_cookie("good"), make_cookie("bad")
    fake_web.add_account(good)
    fake_web.add_account(bad, behaviour="unauthorized")
    fake_web.reply = "metered reply"
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[bad, good])
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
        for _ in range(2):
            await c.messages.create(model="claude-sonnet-4-6", max_tokens=20,
                                    messages=[{"role": "user", "content": "count me"}])
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/metrics") as r:
            assert r.status == 401
        async with s.get(proxy.url + "/metrics", headers={"Authorization": f"Bearer {ADMIN_PASSWORD}"}) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()
    values = samples(text)
    requests = {k: v for k, v in values.items() if k.startswith("clewdr_requests_total{")}
    assert sum(requests.values()) == 2 and all('provider="claude_web"' in k for k in requests)
    assert any('status="200"' in k for k in requests)
    assert values['clewdr_credentials{provider="claude_web",state="active"}'] == 1
    assert values['clewdr_credentials{provider="claude_web",state="disabled"}'] == 1
    tokens = [v for k, v in values.items() if k.startswith("clewdr_tokens_total{") and 'kind="output"' in k]
    assert tokens and sum(tokens) > 0
    assert any(k.startswith("clewdr_request_duration_seconds_count") for k in values)


async def test_metrics_public_when_configured(start_proxy):
    proxy = await start_proxy({"metrics": {"public": True}})
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/metrics") as r:
            assert r.status == 200 and "clewdr_requests_total" in await r.text()
