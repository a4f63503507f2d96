"""The fake claude.ai behaves as spec/claude-web.md says the real one does."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import aiohttp
import pytest

from tests.fakes.claude_web import FakeClaudeWeb, echo_last_line, session_key
from tests.fakes.claude_web_wire import DISABLED_MESSAGE, Reply

PROMPT = "SYS\n\n\x08Human: hi\n\n\x08Assistant: hello\n\n\x08Human: say ünïcode"


@pytest.fixture(params=["/", "/mirror/"])
async def fake(request: pytest.FixtureRequest):
    async with FakeClaudeWeb(prefix=request.param) as f:
        yield f


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def hdrs(fake: FakeClaudeWeb, cookie: str, page: str = "new", **extra: str) -> dict[str, str]:
    return {"Cookie": f"sessionKey={cookie}", "Origin": fake.origin, "Referer": fake.url(page), **extra}


def conv_url(fake: FakeClaudeWeb, org: str, conv: str = "", tail: str = "") -> str:
    return fake.url(f"api/organizations/{org}/chat_conversations" + (f"/{conv}" if conv else "") + tail)


def completion_body(*, pro: bool = True, mode: str = "messages", tools: list | None = None,
                    files: list | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "max_tokens_to_sample": 8192, "files": files or [], "rendering_mode": mode, "prompt": "",
        "timezone": "America/New_York", "tools": tools or [],
        "attachments": [{"extracted_content": PROMPT, "file_name": "paste.txt", "file_type": "txt",
                         "file_size": len(PROMPT.encode())}],
    }
    if pro:
        body["model"] = "claude-sonnet-4-5"
    return body


async def create(http: aiohttp.ClientSession, fake: FakeClaudeWeb, cookie: str, *, temporary: bool = True) -> str:
    account, conv = fake.accounts[cookie], str(uuid.uuid4())
    page = "new?incognito" if temporary else "new"
    body = {"uuid": conv, "name": "" if temporary else "clewdr-lite-x", "is_temporary": temporary}
    async with http.post(conv_url(fake, account.org_uuid), json=body, headers=hdrs(fake, cookie, page)) as r:
        assert r.status == 201, await r.text()
    return conv


def parse_sse(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    events = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if line)
        if lines:
            events.append((lines.get("event"), json.loads(lines["data"])))
    return events


async def complete(http: aiohttp.ClientSession, fake: FakeClaudeWeb, cookie: str, conv: str,
                   body: dict[str, Any]) -> tuple[int, bytes]:
    url = conv_url(fake, fake.accounts[cookie].org_uuid, conv, "/completion")
    headers = hdrs(fake, cookie, "chat/" + conv, Accept="text/event-stream")
    async with http.post(url, json=body, headers=headers) as r:
        return r.status, await r.read()


def text_of(events: list[tuple[str | None, dict[str, Any]]]) -> str:
    return "".join(d["delta"].get("text", "") for _, d in events if d["type"] == "content_block_delta")


async def test_bootstrap_and_organizations(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    account = fake.add_account("c1", email="a@example.com")
    async with http.get(fake.url("api/bootstrap"), headers=hdrs(fake, "c1")) as r:
        boot = await r.json()
    assert boot["account"]["email_address"] == "a@example.com"
    orgs = [m["organization"] for m in boot["account"]["memberships"]]
    assert orgs[0]["capabilities"] == ["api"]  # the API-only org comes first
    assert orgs[1] == {"uuid": account.org_uuid, "name": orgs[1]["name"], "capabilities": ["chat", "claude_pro"]}
    async with http.get(fake.url("api/organizations"), headers=hdrs(fake, "c1")) as r:
        listed = await r.json()
    assert [o["uuid"] for o in listed][1] == account.org_uuid and listed[1]["active_flags"] == []
    assert fake.violations == []
    assert [(r.method, r.path, r.endpoint) for r in fake.requests] == [
        ("GET", "api/bootstrap", "bootstrap"), ("GET", "api/organizations", "organizations")]
    assert fake.requests[0].headers["cookie"] == "sessionKey=c1"


async def test_free_account_flags_and_absent_key(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    fake.add_account("free", pro=False, flags=("restricted", ("banned_x", 2_000_000_000)))
    fake.add_account("bare", flags=None)
    async with http.get(fake.url("api/organizations"), headers=hdrs(fake, "free")) as r:
        org = (await r.json())[-1]
    assert org["capabilities"] == ["chat"]
    assert [f["type"] for f in org["active_flags"]] == ["restricted", "banned_x"]
    expiry = dt.datetime.fromisoformat(org["active_flags"][1]["expires_at"])
    assert expiry.timestamp() == 2_000_000_000
    assert dt.datetime.fromisoformat(org["active_flags"][0]["expires_at"]) > dt.datetime.now(dt.timezone.utc)
    async with http.get(fake.url("api/organizations"), headers=hdrs(fake, "bare")) as r:
        assert "active_flags" not in (await r.json())[-1]


async def test_auth_origin_and_unknown_paths(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    fake.add_account("c1")
    async with http.get(fake.url("api/bootstrap"), headers=hdrs(fake, "nope")) as r:
        assert r.status == 401 and fake.violations == []
    async with http.get(fake.url("api/bootstrap"), headers={"Origin": fake.origin}) as r:
        assert r.status == 401 and "Cookie" in fake.violations[-1]
    both = {"Cookie": "sessionKey=c1; __cf_bm=x", "Origin": fake.origin, "Referer": fake.url("new")}
    async with http.get(fake.url("api/bootstrap"), headers=both) as r:
        assert r.status == 200  # a browser-style jar's extra cookies are fine
    for origin in (fake.origin + "/", None):
        headers = {k: v for k, v in hdrs(fake, "c1").items() if k != "Origin"}
        if origin:
            headers["Origin"] = origin
        async with http.get(fake.url("api/bootstrap"), headers=headers) as r:
            assert r.status == 400 and "Origin" in fake.violations[-1]
    async with http.get(fake.origin + "/api/nothing", headers=hdrs(fake, "c1")) as r:
        assert r.status == 404 and "unknown path" in fake.violations[-1]
    assert session_key("a=b; sessionKey=k") == "k" and session_key("sessionKey=a; sessionKey=b") is None
    url = conv_url(fake, fake.accounts["c1"].org_uuid)
    async with http.post(url, data=b"{nope", headers=hdrs(fake, "c1", "new?incognito")) as r:
        assert r.status == 400 and "not a JSON object" in fake.violations[-1]


async def test_prefix_is_required() -> None:
    async with FakeClaudeWeb(prefix="mirror") as fake, aiohttp.ClientSession() as http:
        fake.add_account("c1")
        assert fake.base_url == fake.origin + "/mirror/"
        async with http.get(fake.origin + "/api/bootstrap", headers=hdrs(fake, "c1")) as r:
            assert r.status == 404  # ClewdR's URL-join quirk lands here


async def test_conversation_lifecycle(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    account = fake.add_account("c1", paprika_mode="extended")
    conv = str(uuid.uuid4())
    body = {"uuid": conv, "name": "", "is_temporary": True}
    url = conv_url(fake, account.org_uuid)
    async with http.post(url, json=body, headers=hdrs(fake, "c1", "new?incognito")) as r:
        assert r.status == 201 and (await r.json())["settings"] == {"paprika_mode": "extended"}
    async with http.post(url, json=body, headers=hdrs(fake, "c1", "new?incognito")) as r:
        assert r.status == 409
    async with http.post(url, json=dict(body, uuid="x"), headers=hdrs(fake, "c1", "new?incognito")) as r:
        assert r.status == 400
    settings = {"settings": {"paprika_mode": None}}
    chat = hdrs(fake, "c1", "chat/" + conv)
    async with http.put(conv_url(fake, account.org_uuid, conv), json=settings, headers=chat) as r:
        assert r.status == 200 and (await r.json())["settings"]["paprika_mode"] is None
    async with http.put(conv_url(fake, account.org_uuid, str(uuid.uuid4())), json=settings, headers=chat) as r:
        assert r.status == 404
    async with http.put(conv_url(fake, str(uuid.uuid4()), conv), json=settings, headers=chat) as r:
        assert r.status == 404  # another org
    record = fake.conversations[conv]
    assert (record.is_temporary, record.settings_calls, record.cookie) == (True, 1, "c1")
    assert len(fake.violations) == 1 and "create body" in fake.violations[0]
    async with http.delete(conv_url(fake, account.org_uuid, conv), headers=chat) as r:
        assert r.status == 204 and record.deleted
    assert "temporary conversation" in fake.violations[-1]
    assert (await complete(http, fake, "c1", conv, completion_body()))[0] == 404


async def test_referer_rules_are_recorded(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    account = fake.add_account("c1")
    body = {"uuid": str(uuid.uuid4()), "name": "", "is_temporary": True}
    async with http.post(conv_url(fake, account.org_uuid), json=body, headers=hdrs(fake, "c1", "new")) as r:
        assert r.status == 201
    assert "new?incognito" in fake.violations[-1]


async def test_upload(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    account = fake.add_account("c1")
    conv = await create(http, fake, "c1")
    form = aiohttp.FormData()
    form.add_field("file", b"\x89PNG....", filename="image.png", content_type="image/png")
    url = fake.url(f"api/{account.org_uuid}/upload")
    async with http.post(url, data=form, headers=hdrs(fake, "c1", "chat/" + conv)) as r:
        file_uuid = (await r.json())["file_uuid"]
    upload = fake.uploads[0]
    assert (upload.file_uuid, upload.filename, upload.content_type, upload.size) == (file_uuid, "image.png",
                                                                                    "image/png", 8)
    bad = aiohttp.FormData()
    bad.add_field("document", b"x", filename="file")
    async with http.post(url, data=bad, headers=hdrs(fake, "c1", "chat/" + conv)) as r:
        assert r.status == 400
    status, _ = await complete(http, fake, "c1", conv, completion_body(files=[file_uuid]))
    assert status == 200 and len(fake.violations) == 1 and "upload parts" in fake.violations[0]


async def test_messages_stream(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    account = fake.add_account("c1")
    conv = await create(http, fake, "c1")
    status, raw = await complete(http, fake, "c1", conv, completion_body())
    events = parse_sse(raw)
    assert status == 200 and all(name == data["type"] for name, data in events)
    kinds = [d["type"] for _, d in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-4:] == ["content_block_stop", "message_delta", "message_limit", "message_stop"]
    start, delta = events[0][1]["message"], events[-3][1]
    assert start["model"] == "" and "usage" not in start and "usage" not in delta
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert text_of(events) == fake.reply and kinds.count("content_block_delta") > 3
    assert fake.completions[0]["attachments"][0]["extracted_content"] == PROMPT
    assert account.completions == 1 and fake.conversations[conv].completions == fake.completions
    assert fake.completed_streams == 1 and fake.violations == []


async def test_thinking_search_crlf_and_byte_writes(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    fake.add_account("c1", paprika_mode="extended")
    fake.newline, fake.write_chunk_bytes = "\r\n", 1
    fake.reply = Reply(text=["Al", "pha"], thinking="hmm…")
    conv = await create(http, fake, "c1")
    body = completion_body(tools=[{"name": "web_search", "type": "web_search_v0"}])
    _, raw = await complete(http, fake, "c1", conv, body)
    assert b"\r\n\r\n" in raw and b"\n\n" not in raw.replace(b"\r\n", b"")
    events = parse_sse(raw)
    starts = [d["content_block"]["type"] for _, d in events if d["type"] == "content_block_start"]
    assert starts == ["thinking", "server_tool_use", "web_search_tool_result", "text"]
    deltas = [d["delta"] for _, d in events if d["type"] == "content_block_delta"]
    assert "".join(d.get("thinking", "") for d in deltas) == "hmm…"
    assert any(d["type"] == "signature_delta" for d in deltas)
    partial = "".join(d.get("partial_json", "") for d in deltas)
    assert json.loads(partial) == {"query": "fake search"}
    assert [d["text"] for d in deltas if d["type"] == "text_delta"] == ["Al", "pha"]


async def test_raw_mode_and_echo_hook(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    fake.add_account("free", pro=False)
    fake.reply_hook = echo_last_line
    conv = await create(http, fake, "free")
    _, raw = await complete(http, fake, "free", conv, completion_body(pro=False, mode="raw"))
    events = parse_sse(raw)
    assert {name for name, _ in events} == {"completion"}
    assert "".join(d["completion"] for _, d in events) == "\x08Human: say ünïcode"
    assert [d["stop_reason"] for _, d in events][-2:] == [None, "stop_sequence"]
    assert fake.violations == []
    assert (await complete(http, fake, "free", conv, completion_body(pro=True)))[0] == 200
    assert "model key" in fake.violations[-1]
    assert (await complete(http, fake, "free", conv, completion_body(pro=False, mode="html")))[0] == 400


async def test_mid_stream_error_and_refusal(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    fake.add_account("c1")
    conv = await create(http, fake, "c1")
    fake.reply_hook = lambda body: Reply(text="part", error={"type": "overloaded_error", "message": "Overloaded"})
    events = parse_sse((await complete(http, fake, "c1", conv, completion_body()))[1])
    assert events[-1] == ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    fake.reply_hook = lambda body: Reply(text="", stop_reason="refusal")
    events = parse_sse((await complete(http, fake, "c1", conv, completion_body()))[1])
    assert [d["type"] for _, d in events] == ["message_start", "message_delta", "message_limit", "message_stop"]
    assert events[1][1]["delta"]["stop_reason"] == "refusal"


ERRORS = [
    ("unauthorized", "bootstrap", 401, "authentication_error"),
    ("invalid_authorization", "organizations", 403, "permission_error"),
    ("overloaded", "completion", 529, "overloaded_error"),
]


@pytest.mark.parametrize(("behaviour", "where", "status", "err_type"), ERRORS)
async def test_json_error_behaviours(fake: FakeClaudeWeb, http: aiohttp.ClientSession, behaviour: str,
                                     where: str, status: int, err_type: str) -> None:
    fake.add_account("c1")
    conv = await create(http, fake, "c1")
    fake.accounts["c1"].behaviour = behaviour
    if where == "completion":
        got, raw = await complete(http, fake, "c1", conv, completion_body())
    else:
        async with http.get(fake.url("api/" + where), headers=hdrs(fake, "c1")) as r:
            got, raw = r.status, await r.read()
    assert got == status and json.loads(raw)["error"]["type"] == err_type
    assert fake.accounts["c1"].completions == 0 and fake.accounts["c1"].failures == 1


async def test_rate_limited(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    fake.add_account("c1", behaviour="rate_limited", resets_at=1_760_000_000, reset_header=True)
    conv = await create(http, fake, "c1")  # only the completion is limited
    url = conv_url(fake, fake.accounts["c1"].org_uuid, conv, "/completion")
    async with http.post(url, json=completion_body(), headers=hdrs(fake, "c1", "chat/" + conv)) as r:
        body, reset = await r.json(), r.headers["anthropic-ratelimit-unified-reset"]
    assert r.status == 429 and body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    inner = json.loads(body["error"]["message"])
    assert inner["type"] == "exceeded_limit" and inner["resetsAt"] == 1_760_000_000 and reset == "1760000000"


async def test_disabled_cloudflare_redirect_null(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    fake.add_account("dis", behaviour="disabled", fail_on=("bootstrap",))
    fake.add_account("cf", behaviour="cloudflare")
    fake.add_account("302", behaviour="redirect")
    fake.add_account("null", behaviour="null_account")
    url = fake.url("api/bootstrap")
    async with http.get(url, headers=hdrs(fake, "dis")) as r:
        assert r.status == 400 and await r.json() == {
            "error": {"message": DISABLED_MESSAGE, "type": "invalid_request_error"}}
    async with http.get(url, headers=hdrs(fake, "cf")) as r:
        assert r.status == 403 and r.headers["cf-mitigated"] == "challenge"
        assert r.content_type == "text/html" and "<html" in await r.text()
    async with http.get(url, headers=hdrs(fake, "302"), allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == fake.prefix + "login"
    async with http.get(url, headers=hdrs(fake, "null")) as r:
        assert r.status == 200 and await r.json() == {"account": None}


async def test_fail_times_then_recover(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    fake.add_account("c1", behaviour="overloaded", fail_times=1)
    conv = await create(http, fake, "c1")
    statuses = [(await complete(http, fake, "c1", conv, completion_body()))[0] for _ in range(2)]
    assert statuses == [529, 200] and fake.accounts["c1"].calls["completion"] == 2


async def open_stream(http: aiohttp.ClientSession, fake: FakeClaudeWeb) -> aiohttp.ClientResponse:
    fake.add_account("c1")
    conv = await create(http, fake, "c1")
    url = conv_url(fake, fake.accounts["c1"].org_uuid, conv, "/completion")
    return await http.post(url, json=completion_body(), headers=hdrs(fake, "c1", "chat/" + conv))


async def test_stall_then_client_disconnects(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    fake.stall_after = 2
    resp = await open_stream(http, fake)
    assert resp.status == 200
    await asyncio.wait_for(fake.stream_stalled.wait(), 5)
    resp.close()
    await asyncio.wait_for(fake.stream_cancelled.wait(), 5)
    assert (fake.stalled_streams, fake.cancelled_streams, fake.completed_streams) == (1, 1, 0)


async def test_stall_then_release(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    fake.stall_after = 0
    resp = await open_stream(http, fake)
    assert resp.status == 200  # headers went out before the stall
    await asyncio.wait_for(fake.stream_stalled.wait(), 5)
    fake.release()
    assert text_of(parse_sse(await resp.read())) == fake.reply
    assert fake.completed_streams == 1 and fake.cancelled_streams == 0


async def test_stall_before_headers_is_released_on_stop(http: aiohttp.ClientSession) -> None:
    async with FakeClaudeWeb() as fake:
        fake.stall_before_headers = True
        task = asyncio.ensure_future(open_stream(http, fake))
        await asyncio.wait_for(fake.stream_stalled.wait(), 5)
        assert not task.done()
    resp = await task  # stop() released the stall, so the stream finished
    assert resp.status == 200
    resp.close()


async def test_cut_mid_stream(fake: FakeClaudeWeb, http: aiohttp.ClientSession) -> None:
    fake.cut_after = 3
    resp = await open_stream(http, fake)
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    assert fake.cut_streams == 1 and fake.completed_streams == 0
