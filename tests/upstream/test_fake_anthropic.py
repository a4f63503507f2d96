"""The fake api.anthropic.com behaves as spec/claude-code.md and conversions.md §2 say the real one does."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import anthropic
import pytest

from tests.conftest import FakeClock, make_cookie
from tests.fakes.anthropic_api import FakeAnthropic, Script, ToolCall
from tests.fakes.anthropic_wire import (
    CLAUDE_CODE_ONLY, CLIENT_ID, LONG_CONTEXT_DENIED, OAUTH_DENIED, OAUTH_EXPIRED, PRELUDE, REDIRECT_URI,
    billing_hash, count_input_tokens,
)

KEY = "sk-ant-api03-" + "k" * 93 + "AA"
MODEL = "claude-sonnet-4-6"
COOKIE = make_cookie("anthropic")
UA = "claude-cli/2.1.76 (external, cli)"
TOKEN_HEADERS = {"Accept": "application/json", "anthropic-version": "2023-06-01",
                 "anthropic-beta": "oauth-2025-04-20", "User-Agent": UA}
HI = [{"role": "user", "content": "hey"}]
USE = {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}}
RESULT = {"type": "tool_result", "tool_use_id": "toolu_a", "content": "r"}


def billing(first_user_text: str = "hey", version: str = "2.1.76") -> dict[str, str]:
    text = (f"x-anthropic-billing-header: cc_version={version}.{billing_hash(first_user_text, version)}; "
            "cc_entrypoint=cli; cch=00000;")
    return {"type": "text", "text": text}


@pytest.fixture
async def api(clock: FakeClock):
    async with FakeAnthropic(clock=clock) as fake:
        fake.add_key(KEY)
        fake.add_account(COOKIE)
        yield fake


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def web_headers(api: FakeAnthropic, cookie: str = COOKIE) -> dict[str, str]:
    return {"Cookie": f"sessionKey={cookie}", "Origin": api.origin, "Referer": api.url("new")}


async def authorize(http: aiohttp.ClientSession, api: FakeAnthropic, cookie: str = COOKIE,
                    **override: Any) -> tuple[int, Any, dict[str, str]]:
    org = api.accounts[cookie].org_uuid if cookie in api.accounts else "x"
    verifier, state = b64url(b"v" * 32), b64url(b"s" * 32)
    body = {"response_type": "code", "client_id": CLIENT_ID, "organization_uuid": org, "redirect_uri": REDIRECT_URI,
            "scope": "user:profile user:inference", "state": state,
            "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256",
            **override}
    async with http.post(api.url(f"v1/oauth/{org}/authorize"), json=body, headers=web_headers(api, cookie)) as r:
        return r.status, await r.json(), {"verifier": verifier, "state": state}


async def token_call(http: aiohttp.ClientSession, api: FakeAnthropic, form: list[tuple[str, str]],
                     **headers: str) -> tuple[int, Any]:
    async with http.post(api.url("v1/oauth/token"), data=form, headers={**TOKEN_HEADERS, **headers}) as r:
        return r.status, await (r.json() if r.content_type == "application/json" else r.text())


async def login(http: aiohttp.ClientSession, api: FakeAnthropic, cookie: str = COOKIE) -> dict[str, Any]:
    status, body, secrets = await authorize(http, api, cookie)
    assert status == 200, body
    query = parse_qs(urlsplit(body["redirect_uri"]).query)
    assert body["redirect_uri"].startswith(REDIRECT_URI + "?") and query["state"] == [secrets["state"]]
    form = [("grant_type", "authorization_code"), ("code", query["code"][0]), ("code_verifier", secrets["verifier"]),
            ("client_id", CLIENT_ID), ("redirect_uri", REDIRECT_URI), ("state", secrets["state"])]
    status, tokens = await token_call(http, api, form)
    assert status == 200, tokens
    return tokens


def oauth_headers(token: str, beta: str = "oauth-2025-04-20") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "anthropic-version": "2023-06-01", "anthropic-beta": beta,
            "x-app": "cli", "User-Agent": UA}


def key_headers(key: str = KEY, **extra: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01", **extra}


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if line)
        if lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


async def post(http: aiohttp.ClientSession, api: FakeAnthropic, body: dict[str, Any], headers: dict[str, str],
               path: str = "v1/messages?beta=true") -> tuple[int, Any, Any]:
    async with http.post(api.url(path), json=body, headers=headers) as r:
        raw = await r.read()
        parsed = parse_sse(raw) if r.content_type == "text/event-stream" else json.loads(raw)
        return r.status, parsed, r.headers


# -- web paths and OAuth -------------------------------------------------------------------------------


async def test_bootstrap_and_organizations(api: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    account = api.accounts[COOKIE]
    async with http.get(api.url("api/bootstrap"), headers=web_headers(api)) as r:
        orgs = [m["organization"] for m in (await r.json())["account"]["memberships"]]
    assert orgs[-1]["uuid"] == account.org_uuid and "claude_max" in orgs[-1]["capabilities"]
    async with http.get(api.url("api/organizations"), headers=web_headers(api)) as r:
        assert (await r.json())[-1]["uuid"] == account.org_uuid
    assert api.violations == [] and [r.endpoint for r in api.requests] == ["bootstrap", "organizations"]
    async with http.get(api.url("api/bootstrap"), headers={"Cookie": "sessionKey=nope"}) as r:
        assert r.status == 401
    api.add_account("gone", behaviour="null_account")
    async with http.get(api.url("api/bootstrap"), headers={"Cookie": "sessionKey=gone"}) as r:
        assert (await r.json()) == {"account": None}
    async with http.get(api.url("api/nothing")) as r:
        assert r.status == 404 and "unknown path" in api.violations[-1]


async def test_code_exchange_then_refresh_rotates(api: FakeAnthropic, http: aiohttp.ClientSession,
                                                  clock: FakeClock) -> None:
    tokens = await login(http, api)
    account = api.accounts[COOKIE]
    assert tokens["access_token"].startswith("sk-ant-oat01-") and tokens["refresh_token"].startswith("sk-ant-ort01-")
    assert tokens["expires_in"] == 28800 and tokens["token_type"] == "Bearer"
    assert tokens["organization"]["uuid"] == account.org_uuid and tokens["account"]["uuid"] == account.uuid
    assert api.access_tokens[tokens["access_token"]].expires_at == clock.now + 28800
    form = [("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"]), ("client_id", CLIENT_ID)]
    status, fresh = await token_call(http, api, form)
    assert status == 200 and fresh["refresh_token"] != tokens["refresh_token"]
    status, again = await token_call(http, api, form)  # the old refresh token is spent
    assert (status, again) == (400, {"error": "invalid_grant",
                                     "error_description": "Refresh token not found or invalid"})
    assert (api.exchanges, api.refreshes) == (1, 1) and api.violations == []
    api.revoke_refresh(fresh["refresh_token"])
    form[1] = ("refresh_token", fresh["refresh_token"])
    assert (await token_call(http, api, form))[0] == 400
    api.refresh_tokens_invalid = True
    pair = api.issue_tokens(COOKIE)
    form[1] = ("refresh_token", pair.refresh_token)
    assert (await token_call(http, api, form))[1]["error"] == "invalid_grant"


@pytest.mark.parametrize("field, value", [
    ("response_type", "token"), ("client_id", "other"), ("organization_uuid", "other-org"),
    ("redirect_uri", "https://evil.example/cb"), ("scope", "admin"), ("state", ""), ("code_challenge", "short"),
    ("code_challenge_method", "plain")])
async def test_authorize_rejects_each_bad_field(api: FakeAnthropic, http: aiohttp.ClientSession, field: str,
                                                value: str) -> None:
    status, body, _ = await authorize(http, api, **{field: value})
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


async def test_authorize_denied_and_foreign_org(api: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    api.add_account("denied", oauth_denied=True)
    status, body, _ = await authorize(http, api, "denied")
    assert (status, body["error"]) == (403, {"type": "permission_error", "message": OAUTH_DENIED})
    other = api.add_account("other").org_uuid
    async with http.post(api.url(f"v1/oauth/{other}/authorize"), headers=web_headers(api),
                         json={"response_type": "code", "organization_uuid": other}) as r:
        assert r.status == 400


async def test_token_endpoint_checks(api: FakeAnthropic, http: aiohttp.ClientSession, clock: FakeClock) -> None:
    status, body, secrets = await authorize(http, api)
    code = parse_qs(urlsplit(body["redirect_uri"]).query)["code"][0]
    good = [("grant_type", "authorization_code"), ("code", code), ("code_verifier", secrets["verifier"]),
            ("client_id", CLIENT_ID), ("redirect_uri", REDIRECT_URI), ("state", secrets["state"])]
    bad_pkce = [*good[:2], ("code_verifier", "wrong"), *good[3:]]
    assert (await token_call(http, api, bad_pkce))[1]["error"] == "invalid_grant"
    api.token_waf_block = 1
    status, page = await token_call(http, api, good)
    assert status == 429 and "Cloudflare" in page and api.token_waf_block == 0
    status, page = await token_call(http, api, good, **{"User-Agent": "Mozilla/5.0 Chrome/145"})
    assert status == 429 and "browser-like" in api.violations.pop()
    async with http.post(api.url("v1/oauth/token"), json=dict(good), headers=TOKEN_HEADERS) as r:
        assert r.status == 400 and (await r.json())["error"] == "invalid_request"
    assert (await token_call(http, api, list(reversed(good))))[0] == 200
    assert "form fields" in api.violations.pop() and api.violations == []
    assert (await token_call(http, api, good))[1]["error"] == "invalid_grant"  # codes are single use
    assert api.exchanges == 1


# -- messages: OAuth --------------------------------------------------------------------------------


async def test_oauth_messages_gate_and_expiry(api: FakeAnthropic, http: aiohttp.ClientSession,
                                              clock: FakeClock) -> None:
    token = (await login(http, api))["access_token"]
    body = {"model": MODEL, "max_tokens": 100, "messages": HI, "system": [billing()]}
    status, msg, headers = await post(http, api, body, oauth_headers(token))
    assert status == 200 and msg["content"][0]["text"] == "Hello from the fake Anthropic API."
    assert headers["anthropic-ratelimit-unified-status"] == "allowed" and headers["request-id"].startswith("req_")
    assert api.requests_to("messages")[0].query == "beta=true" and api.violations == []
    status, err, _ = await post(http, api, body, oauth_headers(token, beta="claude-code-20250219"))
    assert status == 401 and err["error"]["type"] == "authentication_error"
    status, err, _ = await post(http, api, {**body, "system": "You are helpful."}, oauth_headers(token))
    assert (status, err["error"]["message"]) == (400, CLAUDE_CODE_ONLY)
    api.accounts[COOKIE].needs_prelude = True
    assert (await post(http, api, body, oauth_headers(token)))[0] == 400
    prelude = {**body, "system": [billing(), {"type": "text", "text": PRELUDE}, billing()]}
    assert (await post(http, api, prelude, oauth_headers(token)))[0] == 200
    assert "2 billing blocks" in api.violations.pop()
    no_app = {k: v for k, v in oauth_headers(token).items() if k != "x-app"}
    assert (await post(http, api, prelude, no_app))[0] == 200 and any("x-app" in v for v in api.violations)
    clock.now += 28800
    status, err, _ = await post(http, api, prelude, oauth_headers(token))
    assert (status, err["error"]["message"]) == (401, OAUTH_EXPIRED)
    fresh = api.issue_tokens(COOKIE).access_token
    assert (await post(http, api, prelude, oauth_headers(fresh)))[0] == 200
    api.expire_all_tokens()
    assert (await post(http, api, prelude, oauth_headers(fresh)))[0] == 401


def test_billing_hash_matches_the_spec_examples() -> None:
    assert billing_hash("hey", "2.1.76") == "4dc"
    assert billing_hash("Hello there, this is a longer message", "2.1.76") == "670"


async def test_billing_version_and_hash_are_checked(api: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    token = api.issue_tokens(COOKIE).access_token
    body = {"model": MODEL, "max_tokens": 10, "messages": HI, "system": [billing("other text")]}
    assert (await post(http, api, body, oauth_headers(token)))[0] == 200
    assert "billing hash" in api.violations.pop()
    body["system"] = [billing(version="2.1.99")]
    await post(http, api, body, oauth_headers(token))
    assert any("does not match User-Agent" in v for v in api.violations)


async def test_client_key_forwarded_is_a_violation(api: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    token = api.issue_tokens(COOKIE).access_token
    body = {"model": MODEL, "max_tokens": 10, "messages": HI, "system": [billing()]}
    status, _, _ = await post(http, api, body, {**oauth_headers(token), "x-api-key": "proxy-password"})
    assert status == 401 and any("client key" in v for v in api.violations)


# -- messages: wire format -----------------------------------------------------------------------------


async def test_stream_event_sequence_and_usage(api: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    api.reply = Script(text="Hello there", tools=[ToolCall("get_weather", {"city": "Paris"})],
                       cache_read_input_tokens=7)
    body = {"model": MODEL, "max_tokens": 2000, "stream": True, "messages": HI,
            "thinking": {"type": "enabled", "budget_tokens": 1024}}
    status, events, headers = await post(http, api, body, key_headers())
    assert status == 200 and headers["content-type"] == "text/event-stream; charset=utf-8"
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    starts = [d["content_block"]["type"] for n, d in events if n == "content_block_start"]
    assert starts == ["thinking", "text", "tool_use"]
    deltas = [d["delta"]["type"] for n, d in events if n == "content_block_delta"]
    assert deltas.count("signature_delta") == 1 and deltas.count("text_delta") == 3
    partial = "".join(d["delta"].get("partial_json", "") for n, d in events if n == "content_block_delta")
    assert json.loads(partial) == {"city": "Paris"} and deltas.count("input_json_delta") == 3
    start_usage = events[0][1]["message"]["usage"]
    assert events[0][1]["message"]["model"] == MODEL
    assert start_usage["input_tokens"] == count_input_tokens(body) and start_usage["cache_read_input_tokens"] == 7
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "tool_use" and final["usage"]["output_tokens"] > 1


async def test_non_streaming_message_json(api: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    api.reply_hook = lambda body: Script(text=f"echo {body['messages'][0]['content']}", output_tokens=42)
    status, msg, _ = await post(http, api, {"model": "claude-opus-4-8", "max_tokens": 50, "messages": HI},
                                key_headers())
    assert status == 200 and msg["model"] == "claude-opus-4-8" and msg["id"].startswith("msg_01")
    assert msg["content"] == [{"type": "text", "text": "echo hey"}] and msg["stop_reason"] == "end_turn"
    assert msg["usage"]["output_tokens"] == 42 and msg["stop_sequence"] is None
    assert api.violations == [] and api.keys[KEY].messages == 1


@pytest.mark.parametrize("patch, status, needle", [
    ({"model": None}, 400, "model: Field required"), ({"max_tokens": None}, 400, "max_tokens: Field required"),
    ({"messages": []}, 400, "at least one message"), ({"model": MODEL + "-thinking"}, 404, "model:"),
    ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, 400, "must be greater than"),
    ({"thinking": {"type": "adaptive"}, "temperature": 0.5}, 400, "`temperature` may only be set to 1"),
    ({"messages": [*HI, {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "x", "signature": "clewdr-lite:abc"}]}]}, 400, "Invalid `signature`"),
    ({"messages": [*HI, {"role": "assistant", "content": "ok"}, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}]}, 400, "unexpected `tool_use_id`"),
    ({"messages": [*HI, {"role": "assistant", "content": [USE]}, {"role": "user", "content": "no result"}]},
     400, "without `tool_result`"),
    ({"max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 1024}, "messages": [
        *HI, {"role": "assistant", "content": [USE]}, {"role": "user", "content": [RESULT]}]},
     400, "must start with a thinking block"),
])
async def test_body_validation(api: FakeAnthropic, http: aiohttp.ClientSession, patch: dict[str, Any],
                               status: int, needle: str) -> None:
    body = {k: v for k, v in {"model": MODEL, "max_tokens": 100, "messages": HI, **patch}.items() if v is not None}
    got, err, _ = await post(http, api, body, key_headers())
    assert got == status and needle in err["error"]["message"] and err["type"] == "error"


async def test_anthropic_version_is_required(api: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    got, err, _ = await post(http, api, {"model": MODEL, "max_tokens": 5, "messages": HI}, {"x-api-key": KEY})
    assert got == 400 and "anthropic-version" in err["error"]["message"]


# -- credential behaviours ----------------------------------------------------------------------------


async def test_api_key_behaviours(api: FakeAnthropic, http: aiohttp.ClientSession, clock: FakeClock) -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": HI}
    api.add_key("limited", "rate_limited", resets_at=int(clock.now) + 90, fail_times=1)
    status, err, headers = await post(http, api, body, key_headers("limited"))
    assert (status, err["error"]["type"], headers["retry-after"]) == (429, "rate_limit_error", "90")
    assert headers["anthropic-ratelimit-requests-reset"].startswith("2025-")
    assert headers["anthropic-ratelimit-unified-reset"] == str(int(clock.now) + 90)
    assert (await post(http, api, body, key_headers("limited")))[0] == 200  # fail_times=1
    cases = {"overloaded": (529, "overloaded_error"), "invalid_key": (401, "authentication_error"),
             "no_credit": (400, "invalid_request_error"), "forbidden": (403, "permission_error")}
    for behaviour, (want, kind) in cases.items():
        api.add_key(behaviour, behaviour)
        status, err, _ = await post(http, api, body, key_headers(behaviour))
        assert (status, err["error"]["type"]) == (want, kind), behaviour
        if behaviour == "no_credit":
            assert "credit balance is too low" in err["error"]["message"]
    api.add_key("short", "long_context_denied")
    assert (await post(http, api, body, key_headers("short")))[0] == 200
    status, err, _ = await post(http, api, body, key_headers("short", **{"anthropic-beta": "context-1m-2025-08-07"}))
    assert (status, err["error"]["message"]) == (400, LONG_CONTEXT_DENIED)
    api.add_key("wobbly", "overloaded_in_stream")
    status, events, _ = await post(http, api, {**body, "stream": True}, key_headers("wobbly"))
    assert status == 200 and [n for n, _ in events] == ["message_start", "error"]
    assert events[1][1]["error"]["type"] == "overloaded_error"
    assert (await post(http, api, {**body, "model": MODEL}, key_headers("nobody")))[0] == 401


async def test_oauth_account_rate_limit(api: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    account = api.add_account("busy", behaviour="rate_limited")
    token = api.issue_tokens("busy").access_token
    status, _, headers = await post(http, api, {"model": MODEL, "max_tokens": 5, "messages": HI,
                                                "system": [billing()]}, oauth_headers(token))
    assert status == 429 and headers["anthropic-ratelimit-unified-reset"] == str(account.resets_at)
    assert "retry-after" not in headers and account.failures == 1


# -- count_tokens, usage, models -------------------------------------------------------------------------


async def test_count_tokens(api: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "foo"}], "tools": []}
    status, got, _ = await post(http, api, body, key_headers(), "v1/messages/count_tokens?beta=true")
    assert (status, got) == (200, {"input_tokens": count_input_tokens(body)})
    status, err, _ = await post(http, api, {**body, "max_tokens": 1}, key_headers(), "v1/messages/count_tokens")
    assert status == 400 and "Extra inputs" in err["error"]["message"]
    api.count_tokens_status = 404
    assert (await post(http, api, body, key_headers(), "v1/messages/count_tokens"))[0] == 404
    api.count_tokens_status = 403
    assert (await post(http, api, body, key_headers(), "v1/messages/count_tokens"))[0] == 403
    assert api.count_tokens_calls == 4 and len(api.requests_to("count_tokens")) == 4


async def test_oauth_usage(api: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    token = api.issue_tokens(COOKIE).access_token
    headers = {"Authorization": f"Bearer {token}", "anthropic-beta": "oauth-2025-04-20", "User-Agent": UA}
    async with http.get(api.url("api/oauth/usage"), headers=headers) as r:
        usage = await r.json()
    assert set(usage) == {"five_hour", "seven_day", "seven_day_sonnet", "seven_day_opus"}
    assert usage["seven_day_opus"] is None and usage["five_hour"]["resets_at"].endswith("Z")
    api.accounts[COOKIE].usage = {"five_hour": {"utilization": 37.0, "resets_at": "2026-01-01T15:00:00Z"}}
    async with http.get(api.url("api/oauth/usage"), headers=headers) as r:
        assert (await r.json())["five_hour"]["utilization"] == 37.0
    async with http.get(api.url("api/oauth/usage"), headers={**headers, "anthropic-beta": ""}) as r:
        assert r.status == 401


async def test_models_page(api: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    async with http.get(api.url("v1/models?limit=2"), headers=key_headers()) as r:
        page = await r.json()
    assert [m["type"] for m in page["data"]] == ["model", "model"] and page["has_more"] is True
    assert page["first_id"] == page["data"][0]["id"] and set(page["data"][0]) == {
        "type", "id", "display_name", "created_at"}


# -- disconnects -------------------------------------------------------------------------------------------


async def test_stall_cut_and_cancel(api: FakeAnthropic, http: aiohttp.ClientSession) -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": HI, "stream": True}
    api.cut_after = 2
    with pytest.raises(aiohttp.ClientPayloadError):
        await post(http, api, body, key_headers())
    assert api.cut_streams == 1
    api.cut_after, api.stall_after = None, 1
    resp = await http.post(api.url("v1/messages"), json=body, headers=key_headers())
    assert resp.status == 200
    await asyncio.wait_for(api.stream_stalled.wait(), 5)
    resp.close()
    await asyncio.wait_for(api.stream_cancelled.wait(), 5)
    assert (api.stalled_streams, api.cancelled_streams) == (1, 1)


# -- the official SDK parses the fake's output ---------------------------------------------------------------


def sdk(api: FakeAnthropic, key: str = KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=api.base_url, api_key=key, max_retries=0)


async def test_sdk_text_stream_and_not(api: FakeAnthropic) -> None:
    api.reply = "one two three four"
    async with sdk(api) as client:
        msg = await client.messages.create(model=MODEL, max_tokens=50, messages=HI)
        async with client.messages.stream(model=MODEL, max_tokens=50, messages=HI) as stream:
            pieces = [t async for t in stream.text_stream]
            final = await stream.get_final_message()
    assert msg.content[0].text == "one two three four" and msg.model == MODEL
    assert "".join(pieces) == "one two three four" and len(pieces) == 5
    assert final.usage.output_tokens == msg.usage.output_tokens and final.usage.input_tokens > 0
    assert api.violations == []


async def test_sdk_tools_and_thinking_round_trip(api: FakeAnthropic) -> None:
    api.reply = Script(text="Checking.", thinking="The user wants weather.",
                       tools=[ToolCall("get_weather", {"city": "Paris", "days": [1, 2]}, pieces=5)])
    tools = [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    async with sdk(api) as client:
        async with client.messages.stream(model=MODEL, max_tokens=2048, messages=HI, tools=tools,
                                          thinking=thinking) as stream:
            final = await stream.get_final_message()
        assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
        use = final.content[2]
        assert use.input == {"city": "Paris", "days": [1, 2]} and final.stop_reason == "tool_use"
        turn = [*HI, {"role": "assistant", "content": final.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}]
        api.reply = "Sunny in Paris."
        answer = await client.messages.create(model=MODEL, max_tokens=2048, messages=turn, tools=tools,
                                              thinking=thinking)
        assert answer.content[-1].text == "Sunny in Paris."
        forged = final.content[0].model_dump()
        forged["thinking"] = "tampered"
        turn[1] = {"role": "assistant", "content": [forged, *final.content[1:]]}
        with pytest.raises(anthropic.BadRequestError, match="Invalid `signature`"):
            await client.messages.create(model=MODEL, max_tokens=2048, messages=turn, tools=tools, thinking=thinking)


async def test_sdk_count_tokens_models_and_errors(api: FakeAnthropic) -> None:
    async with sdk(api) as client:
        counted = await client.messages.count_tokens(model=MODEL, messages=HI, system="Be brief.")
        assert counted.input_tokens == count_input_tokens({"system": "Be brief.", "messages": HI})
        ids = [m.id async for m in client.models.list(limit=3)]
        assert ids == [m[0] for m in api.models]  # the SDK follows has_more/after_id
    api.add_key("busy", "overloaded")
    api.add_key("wobbly", "overloaded_in_stream")
    async with sdk(api, "busy") as client:
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(model=MODEL, max_tokens=5, messages=HI)
    async with sdk(api, "wobbly") as client:
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            async with client.messages.stream(model=MODEL, max_tokens=5, messages=HI) as stream:
                await stream.get_final_message()


async def test_sdk_with_oauth_bearer(api: FakeAnthropic) -> None:
    token = api.issue_tokens(COOKIE).access_token
    headers = {"anthropic-beta": "oauth-2025-04-20", "x-app": "cli", "User-Agent": UA}
    async with anthropic.AsyncAnthropic(base_url=api.base_url, auth_token=token, max_retries=0,
                                        default_headers=headers) as client:
        msg = await client.messages.create(model=MODEL, max_tokens=5, messages=HI, system=[billing()])
    assert msg.content[0].text.startswith("Hello") and api.violations == []
