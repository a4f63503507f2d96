"""The fake OpenAI-compatible server behaves as conversions.md §4–§8 and gateway.md §2.4, §5.1 say servers do."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from tests.conftest import FakeClock
from tests.fakes.openai_api import FakeOpenAI, OScript, OToolCall
from tests.fakes.openai_wire import count_prompt_tokens, go_duration

KEY = "sk-proj-" + "k" * 40 + "AbCd"
MODEL = "gpt-4o"
HI = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
PARALLEL = OScript(text="Checking.", tool_calls=[OToolCall("get_weather", '{"city":"Paris","unit":"c"}'),
                                                 OToolCall("get_time", '{"tz":"Europe/Paris"}')])


@pytest.fixture
async def o(clock: FakeClock):
    async with FakeOpenAI(clock=clock) as fake:
        fake.add_key(KEY)
        yield fake


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def sdk(fake: FakeOpenAI, key: str = KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=fake.base_url, max_retries=0)


async def post(http: aiohttp.ClientSession, fake: FakeOpenAI, body: dict[str, Any], key: str | None = KEY,
               **headers: str) -> tuple[int, Any, Any]:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with http.post(fake.url("chat/completions"), json=body, headers=headers) as r:
        raw = (await r.read()).decode()
        return r.status, raw if r.content_type == "text/event-stream" else json.loads(raw), r.headers


def chunks(raw: str) -> list[Any]:
    """The data payloads of an SSE body ("[DONE]" kept as a string); comment blocks dropped."""
    out = []
    for block in raw.split("\n\n"):
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            out.append(data[0] if data[0] == "[DONE]" else json.loads(data[0]))
    return out


def body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": HI, **extra}


# -- non-streaming -------------------------------------------------------------------------------------------


async def test_completion_shape_with_sdk(o, clock):
    o.reply = OScript(text="Hello, world")
    async with sdk(o) as client:
        resp = await client.chat.completions.create(model=MODEL, messages=HI)
    assert resp.id.startswith("chatcmpl-") and resp.object == "chat.completion" and resp.created == int(clock.now)
    assert resp.model == MODEL and resp.choices[0].message.content == "Hello, world"
    assert resp.choices[0].finish_reason == "stop" and resp.choices[0].message.tool_calls is None
    usage = resp.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens == count_prompt_tokens(body()) + 3
    record = o.requests_to("chat")[0]
    assert record.key == KEY and record.status == 200 and record.json["messages"] == HI and o.violations == []


async def test_completion_tool_calls_and_overrides(o, http):
    o.reply = OScript(tool_calls=PARALLEL.tool_calls, usage={"prompt_tokens": 7, "completion_tokens": 5})
    status, data, headers = await post(http, o, body(tools=[WEATHER]))
    message = data["choices"][0]["message"]
    assert status == 200 and message["content"] is None and data["choices"][0]["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_weather", "get_time"]
    assert message["tool_calls"][0]["function"]["arguments"] == '{"city":"Paris","unit":"c"}'
    assert message["tool_calls"][0]["id"].startswith("call_") and data["usage"]["total_tokens"] == 12
    assert headers["x-request-id"].startswith("req_") and "reasoning_content" not in message
    o.reply = OScript(text="cut", finish_reason="length", usage=False)
    _, data, _ = await post(http, o, body())
    assert data["choices"][0]["finish_reason"] == "length" and "usage" not in data


# -- streaming -----------------------------------------------------------------------------------------------


async def test_stream_with_usage_and_done(o, http):
    o.reply = OScript(text=["Hel", "lo"])
    status, raw, headers = await post(http, o, body(stream=True, stream_options={"include_usage": True}))
    objs = chunks(raw)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream") and objs[-1] == "[DONE]"
    first, *middle, finish, usage, _ = objs
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert [m["choices"][0]["delta"]["content"] for m in middle] == ["Hel", "lo"]
    assert finish["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 2
    assert all(c["usage"] is None and c["object"] == "chat.completion.chunk" for c in objs[:-2])
    assert len({c["id"] for c in objs[:-1]}) == 1
    _, raw, _ = await post(http, o, body(stream=True))
    objs = chunks(raw)
    assert objs[-2]["choices"][0]["finish_reason"] == "stop" and all("usage" not in c for c in objs[:-1])


async def test_stream_parallel_tool_calls_interleaved(o, http):
    o.reply = PARALLEL
    _, raw, _ = await post(http, o, body(stream=True, tools=[WEATHER]))
    items = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks(raw)[:-1] if c["choices"][0]["delta"].get(
        "tool_calls")]
    assert [i["index"] for i in items] == [0, 1, 0, 1, 0, 1, 0, 1]  # the classic converter trap
    assert [("id" in i, "name" in i["function"]) for i in items[:2]] == [(True, True)] * 2
    assert all("id" not in i and "name" not in i["function"] and "type" not in i for i in items[2:])
    assert "".join(i["function"]["arguments"] for i in items if i["index"] == 0) == '{"city":"Paris","unit":"c"}'
    o.interleave_tools = False
    _, raw, _ = await post(http, o, body(stream=True))
    items = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks(raw)[:-1] if c["choices"][0]["delta"].get(
        "tool_calls")]
    assert [i["index"] for i in items] == [0, 0, 0, 0, 1, 1, 1, 1]


async def test_sdk_stream_helper_reassembles_parallel_calls(o):
    o.reply = PARALLEL
    async with sdk(o) as client:
        async with client.chat.completions.stream(model=MODEL, messages=HI, tools=[WEATHER],
                                                  stream_options={"include_usage": True}) as stream:
            final = await stream.get_final_completion()
        calls = final.choices[0].message.tool_calls
        assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
            ("get_weather", {"city": "Paris", "unit": "c"}), ("get_time", {"tz": "Europe/Paris"})]
        assert final.choices[0].message.content == "Checking." and final.usage.prompt_tokens > 0
        state = ChatCompletionStreamState()
        async for chunk in await client.chat.completions.create(model=MODEL, messages=HI, stream=True):
            state.handle_chunk(chunk)
        snapshot = state.get_final_completion()
    again = snapshot.choices[0].message.tool_calls
    assert [(c.function.name, c.function.arguments) for c in again] == [(c.function.name, c.function.arguments)
                                                                        for c in calls]
    assert len({c.id for c in again + calls}) == 4 and snapshot.choices[0].finish_reason == "tool_calls"


async def test_tool_only_first_chunk_and_id_styles(o, http):
    o.reply = OScript(tool_calls=[OToolCall("f", '{"a":1}', pieces=1)], id_style="numeric")
    objs = chunks((await post(http, o, body(stream=True)))[1])
    first = objs[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    assert isinstance(first["tool_calls"][0]["id"], int) and first["tool_calls"][0]["function"]["name"] == "f"
    _, data, _ = await post(http, o, body())
    assert isinstance(data["choices"][0]["message"]["tool_calls"][0]["id"], int)
    o.reply = OScript(tool_calls=[OToolCall("f", "{}")], id_style="none")
    _, data, _ = await post(http, o, body())
    assert "id" not in data["choices"][0]["message"]["tool_calls"][0]


async def test_deepseek_reasoning_content(o, http):
    o.flavour = "deepseek"
    o.models = ["deepseek-reasoner"]
    o.reply = OScript(text="42", reasoning=["Let ", "me think"])
    objs = chunks((await post(http, o, {"model": "deepseek-reasoner", "messages": HI, "stream": True}))[1])
    deltas = [c["choices"][0]["delta"] for c in objs[:-1]]
    assert deltas[0] == {"role": "assistant", "content": None, "reasoning_content": ""}
    assert deltas[1:4] == [{"content": None, "reasoning_content": "Let "},
                           {"content": None, "reasoning_content": "me think"},
                           {"content": "42", "reasoning_content": None}]
    _, data, _ = await post(http, o, {"model": "deepseek-reasoner", "messages": HI})
    assert data["choices"][0]["message"]["reasoning_content"] == "Let me think"
    assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] == 3 and "service_tier" not in data
    history = HI + [{"role": "assistant", "content": "42", "reasoning_content": "Let me think"},
                    {"role": "user", "content": "why?"}]
    status, data, _ = await post(http, o, {"model": "deepseek-reasoner", "messages": history})
    assert status == 400 and "reasoning_content" in data["error"]["message"]
    assert o.violations == ["messages[1] carries reasoning_content back to DeepSeek"]
    status, data, _ = await post(http, o, {"model": "deepseek-reasoner", "messages": HI, "max_tokens": 70000})
    assert status == 400 and "[1, 65536]" in data["error"]["message"]


async def test_openrouter_reasoning_field(o, http):
    o.flavour = "openrouter"
    o.reply = OScript(text="ok", reasoning="hmm")
    status, raw, _ = await post(http, o, {"model": "openai/gpt-4o", "messages": HI, "stream": True})
    assert status == 200 and raw.startswith(": OPENROUTER PROCESSING\n\n")
    objs = chunks(raw)
    deltas = [c["choices"][0]["delta"] for c in objs[:-1]]
    assert objs[0]["id"].startswith("gen-") and deltas[1]["reasoning"] == "hmm" and deltas[1]["content"] == ""
    assert deltas[2]["content"] == "ok" and "reasoning_content" not in str(deltas)
    _, data, _ = await post(http, o, {"model": "openai/gpt-4o", "messages": HI})
    assert data["choices"][0]["message"]["reasoning"] == "hmm" and data["provider"] == "OpenAI"


# -- errors per key ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("behaviour, exc, status, code", [
    ("invalid", openai.AuthenticationError, 401, "invalid_api_key"),
    ("no_credit", openai.RateLimitError, 429, "insufficient_quota"),
    ("rate_limited", openai.RateLimitError, 429, "rate_limit_exceeded"),
    ("server_error", openai.InternalServerError, 500, None),
    ("unavailable", openai.InternalServerError, 503, None),
    ("overloaded", openai.InternalServerError, 529, None),
])
async def test_key_behaviours_raise_sdk_errors(o, behaviour, exc, status, code):
    bad = "sk-proj-" + behaviour
    o.add_key(bad, behaviour, fail_times=1)
    async with sdk(o, bad) as client:
        with pytest.raises(exc) as err:
            await client.chat.completions.create(model=MODEL, messages=HI)
        assert err.value.status_code == status and err.value.code == code
        ok = await client.chat.completions.create(model=MODEL, messages=HI)  # fail_times=1: then it works
    assert ok.choices[0].message.content and o.keys[bad].failures == 1 and o.keys[bad].answered == 1


async def test_rate_limit_headers(o, http):
    o.add_key("sk-rl", "rate_limited", retry_after=360)
    status, data, headers = await post(http, o, body(), key="sk-rl")
    assert status == 429 and headers["retry-after"] == "360" and headers["x-ratelimit-reset-requests"] == "6m0s"
    assert "Please try again in 6m0s" in data["error"]["message"] and data["error"]["type"] == "requests"
    o.add_key("sk-rl2", "rate_limited", retry_after=None, reset_after=1.5)
    status, _, headers = await post(http, o, body(), key="sk-rl2")
    assert status == 429 and "retry-after" not in headers and headers["x-ratelimit-reset-tokens"] == "1.5s"
    assert [go_duration(s) for s in (0.012, 20, 3725)] == ["12ms", "20s", "1h2m5s"]


async def test_no_credit_per_flavour(o, http):
    o.add_key("sk-broke", "no_credit")
    for flavour, status, model in (("openrouter", 402, "openai/gpt-4o"), ("deepseek", 402, "deepseek-chat")):
        o.flavour = flavour
        got, data, _ = await post(http, o, {"model": model, "messages": HI}, key="sk-broke")
        assert got == status, data
    assert data == {"error": {"message": "Insufficient Balance", "type": "unknown_error", "param": None,
                              "code": "invalid_request_error"}}
    o.flavour = "openrouter"
    async with sdk(o, "sk-broke") as client:
        with pytest.raises(openai.APIStatusError) as err:
            await client.chat.completions.create(model="openai/gpt-4o", messages=HI)
    assert err.value.status_code == 402 and err.value.body["code"] == 402


async def test_stream_error_mid_way(o, http):
    o.add_key("sk-flaky", "stream_error")
    o.reply = OScript(text=["one ", "two ", "three ", "four"])
    status, raw, _ = await post(http, o, body(stream=True, stream_options={"include_usage": True}), key="sk-flaky")
    objs = chunks(raw)
    assert status == 200 and objs[1]["choices"][0]["delta"]["content"] == "one "
    assert objs[-1]["error"]["type"] == "server_error" and "[DONE]" not in objs
    async with sdk(o, "sk-flaky") as client:
        seen = []
        with pytest.raises(openai.APIError, match="had an error"):
            async for chunk in await client.chat.completions.create(model=MODEL, messages=HI, stream=True):
                seen.append(chunk.choices[0].delta.content)
        assert "one " in seen
        with pytest.raises(openai.InternalServerError):  # the same key without a stream: a plain 500
            await client.chat.completions.create(model=MODEL, messages=HI)


# -- authentication and violations ------------------------------------------------------------------------------


async def test_auth_and_client_key_violations(o, http):
    status, data, _ = await post(http, o, body(), key=None)
    assert status == 401 and "didn't provide an API key" in data["error"]["message"] and o.violations == []
    status, data, _ = await post(http, o, body(), key="sk-client-own-key-123456")
    assert status == 401 and data["error"]["code"] == "invalid_api_key" and "sk-clien" in data["error"]["message"]
    assert "client key?" in o.violations[0]
    o.open_access = True
    assert (await post(http, o, body(), key=None))[0] == 200
    assert (await post(http, o, body(), key="sk-client-own-key-123456"))[0] == 200 and len(o.violations) == 2
    await post(http, o, body(), **{"x-api-key": "sk-ant-x", "anthropic-version": "2023-06-01"})
    assert o.violations[2:] == ["x-api-key header sent to an OpenAI-compatible server",
                                "anthropic-version header sent to an OpenAI-compatible server"]


async def test_stream_options_rejected_when_asked(o, http):
    o.reject_stream_options = True
    status, data, _ = await post(http, o, body(stream=True, stream_options={"include_usage": True}))
    assert status == 400 and data["error"]["message"] == "Unrecognized request argument supplied: stream_options"
    assert o.violations == ["stream_options sent to a server that rejects it"]
    assert (await post(http, o, body(stream=True)))[0] == 200


TOOL_TURN = [{"role": "user", "content": "weather?"},
             {"role": "assistant", "content": None, "tool_calls": [
                 {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}]


@pytest.mark.parametrize("patch, status, needle", [
    ({"model": None}, 400, "you must provide a model parameter"),
    ({"messages": None}, 400, "Missing required parameter: 'messages'."),
    ({"messages": []}, 400, "empty array"),
    ({"messages": [{"role": "bot", "content": "x"}]}, 400, "Invalid value: 'bot'."),
    ({"messages": [{"role": "tool", "tool_call_id": "call_1", "content": "x"}]}, 400, "preceeding message"),
    ({"messages": TOOL_TURN + [{"role": "tool", "tool_call_id": "call_9", "content": "x"}]}, 400,
     "'call_9' not found"),
    ({"messages": TOOL_TURN + [{"role": "user", "content": "x"}]}, 400, "did not have response messages: call_1"),
    ({"messages": [TOOL_TURN[0], {**TOOL_TURN[1], "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {}}}]}]}, 400,
     "expected a string, but got an object instead"),
    ({"messages": [TOOL_TURN[0], {**TOOL_TURN[1], "tool_calls": [
        {"id": 7, "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}, 400,
     "tool_calls[0].id': expected a string, but got an integer"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, 400, "Invalid value: 'image'."),
    ({"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400,
     "Supported values are: 'text'."),
    ({"top_k": 5}, 400, "Unrecognized request argument supplied: top_k"),
    ({"stream_options": {"include_usage": True}}, 400, "only allowed when 'stream' is enabled"),
    ({"stop": list("abcde")}, 400, "array too long"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, 400, "'web_search_20250305'"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, 400, "does not match pattern"),
    ({"model": "o3-mini", "max_tokens": 100}, 400, "Use 'max_completion_tokens' instead."),
    ({"model": "gpt-5", "temperature": 0.2}, 400, "does not support 0.2"),
    ({"reasoning_effort": "high"}, 400, "'reasoning_effort' is not supported"),
    ({"model": "gpt-9"}, 404, "The model `gpt-9` does not exist"),
])
async def test_request_validation(o, http, patch, status, needle):
    request = body(**patch)
    request = {k: v for k, v in request.items() if v is not None}
    got, data, _ = await post(http, o, request)
    assert got == status and needle in data["error"]["message"], data
    assert not o.completions and o.requests_to("chat")[0].status == status


async def test_valid_history_passes_and_sdk_maps_400(o, http):
    history = TOOL_TURN + [{"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "9C"}]},
                           {"role": "user", "content": [{"type": "text", "text": "and?", "cache_control": {}},
                                                        {"type": "image_url", "image_url": {"url": "data:x"}}]}]
    status, _, _ = await post(http, o, body(messages=history, tools=[WEATHER], max_completion_tokens=50))
    assert status == 200 and o.violations == ["cache_control sent to a server that does not take it"]
    async with sdk(o) as client:
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(model=MODEL, messages=[{"role": "bot", "content": "x"}])
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nope", messages=HI)
        o.accept_any_model = True
        assert (await client.chat.completions.create(model="nope", messages=HI)).model == "nope"


async def test_models_and_unknown_paths(o, http):
    async with sdk(o) as client:
        ids = [m.id async for m in client.models.list()]
    assert ids[:2] == ["gpt-4o", "gpt-4o-mini"] and o.requests_to("models")[0].key == KEY
    async with http.get(o.origin + "/v1/engines", headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.status == 404 and "Invalid URL" in (await r.json())["error"]["message"]
    assert o.violations == ["unknown path: GET /v1/engines"]


async def test_prefix_and_reply_hook(clock, http):
    async with FakeOpenAI(clock=clock, prefix="/api/v1", flavour="openrouter") as fake:
        fake.open_access = True
        fake.reply_hook = lambda b: OScript(text=f"echo {b['messages'][-1]['content']}")
        assert fake.base_url.endswith("/api/v1")
        _, data, _ = await post(http, fake, {"model": "openai/gpt-4o", "messages": HI}, key=None)
    assert data["choices"][0]["message"]["content"] == "echo hi"


# -- stream knobs ------------------------------------------------------------------------------------------------


async def test_stream_stall_release_and_cut(o, http):
    o.reply = OScript(text=["a", "b", "c"])
    o.stall_after = 1
    headers = {"Authorization": f"Bearer {KEY}"}
    async with http.post(o.url("chat/completions"), json=body(stream=True), headers=headers) as resp:
        first = await resp.content.readuntil(b"\n\n")
        await o.stream_stalled.wait()
        o.release()
        rest = await resp.content.read()
    assert chunks((first + rest).decode())[-1] == "[DONE]" and o.completed_streams == 1
    o.stall_after, o.cut_after = None, 2
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(o.url("chat/completions"), json=body(stream=True), headers=headers) as resp:
            await resp.read()
    assert o.cut_streams == 1


async def test_stall_before_headers_then_client_leaves(o, http):
    o.stall_before_headers = True
    task = asyncio.ensure_future(post(http, o, body(stream=True)))
    await o.stream_stalled.wait()
    task.cancel()  # a proxy failing over now has received nothing, not even the status
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(o.stream_cancelled.wait(), 5)
    assert o.cancelled_streams == 1 and o.completed_streams == 0
