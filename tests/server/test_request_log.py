"""The request log's row per request (gateway.md §11.2): usage split, failover, estimates, client."""

from __future__ import annotations

import time

import anthropic
import pytest

from tests.conftest import PASSWORD, make_cookie
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.anthropic_wire import Script

KEY = "sk-ant-api03-" + "r" * 40
MSG = [{"role": "user", "content": "hello there"}]


def console(name: str, api: FakeAnthropic, models: list[str]) -> dict:
    return {"name": name, "type": "anthropic", "base_url": api.origin, "keys": [KEY], "models": models}


def rows(proxy, n: int) -> list[dict]:
    proxy.state.store.flush()
    return proxy.state.store.recent(n)


async def test_cache_tokens_and_the_client_are_logged_streamed_or_not(clock, start_proxy):
    async with FakeAnthropic(clock=clock) as api:
        api.add_key(KEY)
        api.reply = Script(text="cached answer", input_tokens=12, cache_read_input_tokens=30,
                           cache_creation_input_tokens=5)
        proxy = await start_proxy({"providers": [console("console", api, ["claude-*"])]})
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
            await c.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=MSG)
            async with c.messages.stream(model="claude-sonnet-4-6", max_tokens=20, messages=MSG) as s:
                await s.get_final_message()
        streamed, whole = rows(proxy, 2)
    for row, stream in ((whole, 0), (streamed, 1)):
        assert row["stream"] == stream and row["provider"] == "console"
        assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (47, 30, 5)
        assert row["estimated"] == 0 and row["fallback_used"] == 0 and row["client_ip"] == "127.0.0.1"


async def test_a_request_served_by_a_fallback_provider_says_so(clock, start_proxy):
    async with FakeAnthropic(clock=clock) as first, FakeAnthropic(clock=clock) as second:
        first.add_key(KEY, behaviour="overloaded")
        second.add_key(KEY)
        proxy = await start_proxy({"providers": [console("one", first, []), console("two", second, [])],
                                   "aliases": {"smart": ["one/claude-sonnet-4-6", "two/claude-sonnet-4-6"]},
                                   "max_retries": 0})
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
            await c.messages.create(model="smart", max_tokens=20, messages=MSG)
        (row,) = rows(proxy, 1)
    assert row["provider"] == "two" and row["fallback_used"] == 1


async def test_claude_web_counts_are_marked_as_estimates(fake_web, start_proxy):
    fake_web.add_account(make_cookie(1))
    proxy = await start_proxy({"rproxy": fake_web.base_url}, cookies=[make_cookie(1)])
    async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
        await c.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=MSG)
    (row,) = rows(proxy, 1)
    assert row["provider"] == "claude_web" and row["estimated"] == 1 and row["input_tokens"] > 0


async def test_a_fault_in_the_request_log_never_fails_an_answered_request(clock, start_proxy, caplog):
    async with FakeAnthropic(clock=clock) as api:
        api.add_key(KEY)
        proxy = await start_proxy({"providers": [console("console", api, ["claude-*"])]})

        def broken(row, **kwargs):
            raise OSError("disk gone")
        proxy.state.store.record = broken
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0) as c:
            msg = await c.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=MSG)
            async with c.messages.stream(model="claude-sonnet-4-6", max_tokens=20, messages=MSG) as s:
                streamed = await s.get_final_message()
    assert msg.content[0].text and streamed.content[0].text == msg.content[0].text
    failures = [r for r in caplog.records if "request accounting failed" in r.getMessage()]
    assert len(failures) == 2 and "disk gone" in failures[0].exc_text


async def test_every_column_of_a_proxied_request_is_logged_in_its_place(clock, start_proxy):
    # the proxy hands the store a tuple in COLUMNS order: a value in the wrong place shows here
    async with FakeAnthropic(clock=clock) as api:
        api.add_key(KEY)
        api.reply = Script(text="fine", input_tokens=12, output_tokens=7)
        proxy = await start_proxy({"providers": [console("console", api, ["claude-*"])],
                                   "aliases": {"house": ["console/claude-sonnet-4-6"]}})
        async with anthropic.AsyncAnthropic(base_url=proxy.url, api_key=PASSWORD, max_retries=0,
                                            default_headers={"User-Agent": "row-test/1.0"}) as c:
            await c.messages.create(model="house", max_tokens=20, messages=MSG)
            try:
                await c.messages.create(model="claude-sonnet-4-6", max_tokens=-1, messages=MSG)
            except anthropic.BadRequestError:
                pass
        failed, row = rows(proxy, 2)
        issued = api.request_ids
    assert abs(row["ts"] - time.time()) < 60  # arrival, wall clock
    assert {k: row[k] for k in ("request_id", "client_key_id", "route", "dialect", "model_requested", "provider",
                                "model_upstream", "scenario", "stream", "status", "error_type", "attempts",
                                "fallback_used", "input_tokens", "output_tokens", "cache_read_tokens",
                                "cache_write_tokens", "estimated", "shadow_cost_usd", "user_agent",
                                "client_ip")} == {
        "request_id": issued[-1], "client_key_id": None, "route": "/v1/messages", "dialect": "anthropic",
        "model_requested": "house", "provider": "console", "model_upstream": "claude-sonnet-4-6",
        "scenario": None, "stream": 0, "status": 200, "error_type": None, "attempts": 1, "fallback_used": 0,
        "input_tokens": 12, "output_tokens": 7, "cache_read_tokens": 0, "cache_write_tokens": 0,
        "estimated": 0, "shadow_cost_usd": 0.0, "user_agent": "row-test/1.0", "client_ip": "127.0.0.1"}
    assert row["credential"] == "sk-ant-a…rrrr" and row["cost_usd"] > 0
    assert all(isinstance(row[k], int) and row[k] >= 0 for k in ("ttfb_ms", "duration_ms", "overhead_ms"))
    assert row["ttfb_ms"] <= row["duration_ms"] and row["overhead_ms"] <= row["duration_ms"]
    assert (failed["status"], failed["error_type"], failed["output_tokens"]) == (400, "invalid_request_error", 0)
    assert failed["request_id"] is None  # refused here: no upstream was asked, none gave an id


def test_a_row_is_stamped_with_the_arrival_of_its_request():
    # gateway.md §11.2: ts is the arrival; the spend of a long stream counts on the day it ended
    # (ts + duration_ms), so a ts taken at the end would move it on by the stream's length
    from aiohttp.test_utils import make_mocked_request

    from clewdr_lite.server.accounting import _new_record, _row
    from clewdr_lite.store import NAMES
    from clewdr_lite.upstream.http import Timing
    now = time.monotonic()
    clock = Timing(arrived=now - 90.0)
    request = make_mocked_request("POST", "/v1/messages", headers={"User-Agent": "unit"})
    record = {**_new_record(), "input_tokens": 3, "shadow_cost": 0.0}
    row = dict(zip(NAMES, _row(request, record, clock, 200, "/v1/messages", now, 1.0, None, 0.0), strict=True))
    assert abs(row["ts"] - (time.time() - 90.0)) < 5 and row["duration_ms"] == 90_000
    assert (row["input_tokens"], row["user_agent"], row["status"]) == (3, "unit", 200)


def test_the_logged_request_id_is_the_answering_upstreams():
    from multidict import CIMultiDict

    from clewdr_lite.upstream.http import Timing
    clock = Timing(arrived=0.0)
    seen = []
    for headers in ({"request-id": "req_a"}, CIMultiDict({"X-Request-Id": "chatcmpl-b"}), {"content-type": "x"}):
        clock.identify(headers)  # Anthropic, OpenAI-style, none (claude.ai, Gemini): the latest wins
        seen.append(clock.request_id)
    assert seen == ["req_a", "chatcmpl-b", None]


@pytest.mark.parametrize("usage, expected", [
    ({"input_tokens": 10, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2, "output_tokens": 3},
     {"input_tokens": 17, "cache_read": 5, "cache_write": 2, "output_tokens": 3}),
    ({"input_tokens": -2, "output_tokens": -1}, {"input_tokens": 0, "cache_read": 0, "cache_write": 0, "output_tokens": 0}),
    ({"input_tokens": 7.9, "cache_creation_input_tokens": "x", "output_tokens": True},
     {"input_tokens": 7, "cache_read": 0, "cache_write": 0, "output_tokens": 0}),
    ({"input_tokens": float("nan"), "cache_read_input_tokens": 4, "output_tokens": 2.0},
     {"input_tokens": 4, "cache_read": 4, "cache_write": 0, "output_tokens": 2}),
    ({"input_tokens": 5, "output_tokens": None}, {"input_tokens": 5, "cache_read": 0, "cache_write": 0, "output_tokens": 11}),
])
def test_usage_counts_are_read_as_token_counts(usage, expected):
    # ints pass as they are; anything else as token_count reads it (None, strings, bools, NaN: 0)
    from aiohttp.test_utils import make_mocked_request

    from clewdr_lite.server.accounting import acct, note_usage
    request = make_mocked_request("POST", "/v1/messages")
    acct(request)["output_tokens"] = 11  # a stream's earlier report: kept when this one has none
    note_usage(request, usage)
    assert {k: acct(request)[k] for k in expected} == expected
