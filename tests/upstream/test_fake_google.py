"""The fake AI Studio behaves as spec/gemini.md says the real one does; the official google-genai SDK agrees."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import FakeClock
from tests.fakes.gemini_api import FakeGoogle, FunctionCall, GScript
from tests.fakes.gemini_errors import TYPE

KEY = "AIzaSy" + "k" * 33
MODEL = "gemini-2.5-flash"
HI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
CALL = FunctionCall("get_weather", {"city": "Paris"})
# google-genai subclasses aiohttp.ClientSession, which aiohttp warns about; the warning is the SDK's, not ours.
SDK_WARNING = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged:DeprecationWarning")


@pytest.fixture
async def g(clock: FakeClock):
    async with FakeGoogle(clock=clock) as fake:
        fake.add_key(KEY)
        yield fake


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, g: FakeGoogle, method: str, body: Any, *, model: str = MODEL,
               key: str | None = KEY, alt: str | None = None,
               **headers: str) -> tuple[int, Any, aiohttp.ClientResponse]:
    url = g.url(f"v1beta/models/{model}:{method}") + (f"?alt={alt}" if alt else "")
    if key is not None:
        headers["x-goog-api-key"] = key
    async with http.post(url, json=body, headers=headers) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if resp.content_type == "application/json" else text), resp


def sse_objects(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\r\n\r\n") and "[DONE]" not in text
    return [json.loads(event.removeprefix("data: ")) for event in text.split("\r\n\r\n") if event]


def sdk(g: FakeGoogle, key: str = KEY) -> genai.client.AsyncClient:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=g.base_url, api_version="v1beta")).aio


# -- native generate, stream, count, models ------------------------------------------------------------


async def test_generate_content_shape(g, http):
    status, body, resp = await post(http, g, "generateContent", HI)
    assert status == 200 and resp.content_type == "application/json"
    cand = body["candidates"][0]
    assert cand == {"content": {"parts": [{"text": "Hello from the fake Gemini API."}], "role": "model"},
                    "finishReason": "STOP", "index": 0}
    usage = body["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
    assert body["modelVersion"] == MODEL and len(body["responseId"]) >= 20 and "createTime" not in body
    entry = g.requests_to("generateContent")[0]
    assert entry.model == MODEL and entry.json == HI and entry.headers["x-goog-api-key"] == KEY
    assert g.keys[KEY].answered == 1 and g.violations == []


async def test_sse_stream_chunks(g, http):
    g.reply = GScript(text=["Hel", "lo ", "world"])
    status, text, resp = await post(http, g, "streamGenerateContent", HI, alt="sse")
    assert status == 200 and resp.content_type == "text/event-stream"
    objs = sse_objects(text)
    assert [o["candidates"][0]["content"]["parts"][0]["text"] for o in objs] == ["Hel", "lo ", "world"]
    assert [o["candidates"][0].get("finishReason") for o in objs] == [None, None, "STOP"]
    assert all(o["responseId"] == objs[0]["responseId"] and o["modelVersion"] == MODEL for o in objs)
    # Intermediate chunks carry running usage; the last one is the total a proxy must keep (not a sum).
    final = objs[-1]["usageMetadata"]
    assert final["candidatesTokenCount"] == 3 and objs[0]["usageMetadata"]["candidatesTokenCount"] == 1
    g.usage_every_chunk = False
    _, text, _ = await post(http, g, "streamGenerateContent", HI, alt="sse")
    assert ["usageMetadata" in o for o in sse_objects(text)] == [False, False, True]


async def test_stream_without_alt_is_one_json_array(g, http):
    g.reply = GScript(text="a longer answer in pieces")
    url = g.url(f"v1beta/models/{MODEL}:streamGenerateContent")
    async with http.post(url, json=HI, headers={"x-goog-api-key": KEY}) as resp:
        assert resp.content_type == "application/json"
        pieces = [chunk async for chunk in resp.content.iter_any()]
    raw = b"".join(pieces).decode()
    assert raw.startswith("[{") and raw.endswith("}\n]") and "\n,\r\n{" in raw
    objs = json.loads(raw)
    assert "".join(o["candidates"][0]["content"]["parts"][0]["text"] for o in objs) == "a longer answer in pieces"
    assert objs[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_count_tokens_both_shapes(g, http):
    _, answer, _ = await post(http, g, "generateContent", HI)
    status, counted, _ = await post(http, g, "countTokens", HI)
    assert status == 200 and counted["totalTokens"] == answer["usageMetadata"]["promptTokenCount"]
    wrapped = {"generateContentRequest": {"model": f"models/{MODEL}", **HI}}
    assert (await post(http, g, "countTokens", wrapped))[1]["totalTokens"] == counted["totalTokens"]
    status, err, _ = await post(http, g, "countTokens", {"generateContentRequest": HI})
    assert status == 400 and "model name format" in err["error"]["message"]
    assert (await post(http, g, "countTokens", {**HI, **wrapped}))[0] == 400
    status, err, _ = await post(http, g, "countTokens", {**HI, "systemInstruction": {"parts": [{"text": "x"}]}})
    assert status == 400 and 'Unknown name "systemInstruction"' in err["error"]["message"]


async def test_models_list_paging_and_get(g, http):
    headers = {"x-goog-api-key": KEY}
    async with http.get(g.url("v1beta/models?pageSize=4"), headers=headers) as resp:
        first = await resp.json()
    assert [m["name"] for m in first["models"]][:2] == ["models/gemini-2.5-flash", "models/gemini-2.5-pro"]
    assert "generateContent" in first["models"][0]["supportedGenerationMethods"] and first["nextPageToken"]
    async with http.get(g.url(f"v1beta/models?pageSize=4&pageToken={first['nextPageToken']}"), headers=headers) as r:
        second = await r.json()
    assert second["models"][0]["name"] == "models/gemini-3-pro-preview"
    async with http.get(g.url("v1beta/models/gemini-2.5-pro"), headers=headers) as resp:
        assert (await resp.json())["displayName"] == "Gemini 2.5 Pro"
    async with http.get(g.url("v1beta/models/gemini-9"), headers=headers) as resp:
        assert resp.status == 404 and (await resp.json())["error"]["status"] == "NOT_FOUND"
    status, err, _ = await post(http, g, "generateContent", HI, model="gemini-9")
    assert status == 404 and "models/gemini-9 is not found for API version v1beta" in err["error"]["message"]


# -- authentication -----------------------------------------------------------------------------------------


async def test_auth_rules(g, http):
    status, err, _ = await post(http, g, "generateContent", HI, key=None)
    assert status == 403 and err["error"]["status"] == "PERMISSION_DENIED"
    assert "unregistered callers" in err["error"]["message"]
    status, err, _ = await post(http, g, "generateContent", HI, key=None, Authorization=f"Bearer {KEY}")
    assert status == 401 and err["error"]["details"][0]["reason"] == "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    assert g.violations and "Authorization" in g.violations[-1]
    g.violations.clear()
    status, err, _ = await post(http, g, "generateContent", HI, key="AIzaSy" + "x" * 33)
    assert status == 400 and err["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert "not a key of this upstream" in g.violations[-1]
    g.violations.clear()
    async with http.post(g.url(f"v1beta/models/{MODEL}:generateContent?key={KEY}"), json=HI) as resp:
        assert resp.status == 200  # Google takes ?key=, but the proxy must not put keys in URLs
    assert len(g.violations) == 1 and "?key=" in g.violations[0]


async def test_unknown_path_is_googles_html_404(g, http):
    async with http.get(g.url("v1beta/nothing/here")) as resp:
        assert resp.status == 404 and resp.content_type == "text/html" and "That’s an error." in await resp.text()
    assert g.violations == ["unknown path: GET /v1beta/nothing/here"]


# -- request validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("body, status, needle", [
    ({}, 400, "contents is not specified"),
    ({"contents": [{"role": "user", "parts": []}]}, 400, "contents.parts must not be empty"),
    ({"contents": [{"role": "user", "parts": [{"text": "a", "inlineData": {"mimeType": "image/png",
                                                                              "data": "QQ=="}}]}]},
     400, "Oneof field 'data' is already set"),
    ({"contents": [{"role": "user", "parts": [{"thought": True}]}]}, 400, "required oneof field 'data'"),
    ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, 400, "required oneof field 'data'"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "a"}]}]}, 400, "valid role: user, model"),
    ({**HI, "stream": True}, 400, 'Unknown name "stream": Cannot find field.'),
    ({"contents": [{"role": "user", "parts": [{"txt": "a"}]}]}, 400, "Unknown name \"txt\" at 'contents[0].parts[0]'"),
    ({**HI, "safetySettings": [{"category": "HARM_CATEGORY_TOXICITY", "threshold": "OFF"}]}, 400,
     "Invalid value at 'safety_settings[0].category'"),
    ({"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}]}]},
     400, "Base64 decoding failed"),
    ({"contents": [{"role": "model", "parts": [{"functionCall": {"args": {}}}]}]}, 400, "Name cannot be empty"),
    ({**HI, "systemInstruction": "be nice"}, 400, "Invalid value at 'system_instruction'"),
])
async def test_rejects_what_google_rejects(g, http, body, status, needle):
    got, err, _ = await post(http, g, "generateContent", body)
    assert got == status and needle in err["error"]["message"] and err["error"]["status"] == "INVALID_ARGUMENT"


async def test_accepts_snake_case_and_sillytavern_shapes(g, http):
    body = {"contents": [{"role": "model", "parts": [{"text": "Hi!"}]},
                         {"role": "user", "parts": {"inline_data": {"mime_type": "image/png", "data": "iVBORw0K"}}}],
            "system_instruction": {"parts": {"text": "Be brief."}},
            "safety_settings": [{"category": "HARM_CATEGORY_CIVIC_INTEGRITY", "threshold": "BLOCK_NONE"}],
            "generation_config": {"stop_sequences": ["x"], "candidateCount": 1, "max_output_tokens": 5,
                                  "thinking_config": {"include_thoughts": False, "thinking_budget": 128}},
            "tools": [{"function_declarations": [{"name": "f", "parameters": {
                "type": "OBJECT", "properties": {"a_b": {"type": "STRING"}}}}]}]}
    status, answer, _ = await post(http, g, "generateContent", body)
    assert status == 200 and answer["candidates"][0]["finishReason"] == "STOP"


async def test_duplicate_field_spellings_are_rejected(g, http):
    settings = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}]
    status, err, _ = await post(http, g, "generateContent", {**HI, "safetySettings": settings,
                                                             "safety_settings": settings})
    assert status == 400 and "Invalid JSON payload received. Duplicate field" in err["error"]["message"]
    assert err["error"]["details"][0]["@type"] == TYPE + "BadRequest"
    body = {**HI, "generationConfig": {"thinkingConfig": {"includeThoughts": True, "include_thoughts": True}}}
    assert (await post(http, g, "generateContent", body))[0] == 400
    # Inside user data (function args, schemas) both spellings are just the user's names.
    call = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a_b": 1, "aB": 2}}}]}
    assert (await post(http, g, "generateContent", {"contents": [HI["contents"][0], call]}))[0] == 200


# -- thoughts and function calls --------------------------------------------------------------------------------


async def test_thought_parts_only_with_include_thoughts(g, http):
    g.reply = GScript(text="answer", thoughts="deep thought")
    _, plain, _ = await post(http, g, "generateContent", HI)
    assert plain["candidates"][0]["content"]["parts"] == [{"text": "answer"}]
    assert plain["usageMetadata"]["thoughtsTokenCount"] == 3
    body = {**HI, "generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
    _, shown, _ = await post(http, g, "generateContent", body)
    assert shown["candidates"][0]["content"]["parts"] == [{"text": "deep thought", "thought": True}, {"text": "answer"}]
    usage = shown["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"] + 3
    _, text, _ = await post(http, g, "streamGenerateContent", body, alt="sse")
    assert sse_objects(text)[0]["candidates"][0]["content"]["parts"][0]["thought"] is True
    g.reply = "no script thoughts"
    _, default, _ = await post(http, g, "generateContent", body)
    assert default["candidates"][0]["content"]["parts"][0]["thought"] is True


async def test_function_call_parts_carry_a_signature(g, http):
    g.reply = GScript(calls=[CALL, FunctionCall("get_time", {}, id="get_time_1")])
    _, answer, _ = await post(http, g, "generateContent", HI)
    first, second = answer["candidates"][0]["content"]["parts"]
    assert first["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}} and first["thoughtSignature"]
    assert second == {"functionCall": {"name": "get_time", "args": {}, "id": "get_time_1"}}
    _, text, _ = await post(http, g, "streamGenerateContent", HI, alt="sse")
    assert sse_objects(text)[-1]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"] == "get_weather"


async def test_gemini_3_enforces_thought_signatures(g, http):
    g.reply = GScript(calls=[CALL])
    _, answer, _ = await post(http, g, "generateContent", HI, model="gemini-3-pro-preview")
    model_turn = answer["candidates"][0]["content"]
    result = {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"t": 20}}}]}
    history = [HI["contents"][0], model_turn, result]
    assert (await post(http, g, "generateContent", {"contents": history}, model="gemini-3-pro-preview"))[0] == 200
    unsigned = {"role": "model", "parts": [{"functionCall": model_turn["parts"][0]["functionCall"]}]}
    status, err, _ = await post(http, g, "generateContent", {"contents": [HI["contents"][0], unsigned, result]},
                                model="gemini-3-pro-preview")
    assert status == 400 and "missing a thought_signature" in err["error"]["message"]
    assert "default_api:get_weather" in err["error"]["message"]
    assert (await post(http, g, "generateContent", {"contents": [HI["contents"][0], unsigned, result]}))[0] == 200
    skip = {"role": "model",
            "parts": [{**unsigned["parts"][0], "thoughtSignature": "skip_thought_signature_validator"}]}
    assert (await post(http, g, "generateContent", {"contents": [HI["contents"][0], skip, result]},
                       model="gemini-3-pro-preview"))[0] == 200
    forged = {"role": "model", "parts": [{**unsigned["parts"][0], "thoughtSignature": "Zm9yZ2Vk"}]}
    status, err, _ = await post(http, g, "generateContent", {"contents": [HI["contents"][0], forged, result]},
                                model="gemini-3-pro-preview")
    assert status == 400 and err["error"]["message"] == "Corrupted thought signature."


# -- behaviours (gemini.md §4.3) -------------------------------------------------------------------------------


def detail(err: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(d for d in err["error"]["details"] if d["@type"] == TYPE + kind)


@pytest.mark.parametrize("behaviour, status, google_status, reason", [
    ("invalid", 400, "INVALID_ARGUMENT", "API_KEY_INVALID"),
    ("suspended", 403, "PERMISSION_DENIED", "CONSUMER_SUSPENDED"),
    ("api_disabled", 403, "PERMISSION_DENIED", "SERVICE_DISABLED"),
    ("forbidden", 403, "PERMISSION_DENIED", None),
    ("region_blocked", 400, "FAILED_PRECONDITION", None),
    ("internal", 500, "INTERNAL", None),
    ("unavailable", 503, "UNAVAILABLE", None),
])
async def test_error_behaviours(g, http, behaviour, status, google_status, reason):
    g.add_key(KEY, behaviour=behaviour)
    got, err, _ = await post(http, g, "generateContent", HI)
    assert got == status and err["error"]["code"] == status and err["error"]["status"] == google_status
    if reason is not None:
        assert detail(err, "ErrorInfo")["reason"] == reason
    if behaviour == "region_blocked":
        assert err["error"]["message"] == "User location is not supported for the API use."
    if behaviour == "suspended":
        assert "has been suspended" in err["error"]["message"]


async def test_rate_limits_and_daily_quota(g, http):
    g.add_key(KEY, behaviour="rate_limited", retry_delay="12s")
    status, err, _ = await post(http, g, "generateContent", HI)
    assert status == 429 and err["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert detail(err, "RetryInfo")["retryDelay"] == "12s"
    assert "PerMinute" in detail(err, "QuotaFailure")["violations"][0]["quotaId"]
    assert (await post(http, g, "countTokens", HI))[0] == 200  # per-minute generate quota only
    g.add_key(KEY, behaviour="daily_quota")
    status, err, _ = await post(http, g, "streamGenerateContent", HI, alt="sse")
    assert status == 429 and "PerDay" in detail(err, "QuotaFailure")["violations"][0]["quotaId"]
    assert detail(err, "RetryInfo")["retryDelay"]  # Google sends one with daily quotas too


async def test_fail_times_then_healthy(g, http):
    g.add_key(KEY, behaviour="unavailable", fail_times=2)
    assert [(await post(http, g, "generateContent", HI))[0] for _ in range(3)] == [503, 503, 200]
    assert g.keys[KEY].failures == 2 and g.keys[KEY].calls["generateContent"] == 3


async def test_empty_other_and_blocked_answers(g, http):
    g.add_key(KEY, behaviour="empty")
    status, body, _ = await post(http, g, "generateContent", HI)
    assert status == 200 and "candidates" not in body and body["usageMetadata"]["promptTokenCount"] > 0
    g.add_key(KEY, behaviour="finish_other")
    _, body, _ = await post(http, g, "generateContent", HI)
    assert body["candidates"] == [{"finishReason": "OTHER", "index": 0}]
    g.add_key(KEY, behaviour="blocked_prompt")
    _, text, _ = await post(http, g, "streamGenerateContent", HI, alt="sse")
    (only,) = sse_objects(text)
    assert only["promptFeedback"]["blockReason"] == "SAFETY" and "candidates" not in only


async def test_safety_rejected_until_block_none_without_civic(g, http):
    g.add_key(KEY, behaviour="safety_rejected")
    cats = ["HARASSMENT", "HATE_SPEECH", "SEXUALLY_EXPLICIT", "DANGEROUS_CONTENT", "CIVIC_INTEGRITY"]
    off = [{"category": f"HARM_CATEGORY_{c}", "threshold": "OFF"} for c in cats]
    status, err, _ = await post(http, g, "generateContent", {**HI, "safetySettings": off})
    assert status == 400 and "safety_settings[4]" in err["error"]["message"]
    status, err, _ = await post(http, g, "generateContent", {**HI, "safetySettings": off[:4]})
    assert status == 400 and "safety_settings[0].threshold" in err["error"]["message"]
    retry = [{**s, "threshold": "BLOCK_NONE"} for s in off[:4]]
    assert (await post(http, g, "generateContent", {**HI, "safetySettings": retry}))[0] == 200


async def test_unavailable_in_stream(g, http):
    g.add_key(KEY, behaviour="unavailable_in_stream")
    g.reply = GScript(text=["one ", "two ", "three ", "four"])
    status, text, _ = await post(http, g, "streamGenerateContent", HI, alt="sse")
    objs = sse_objects(text)
    assert status == 200 and objs[-1]["error"]["code"] == 503 and "candidates" in objs[0]
    assert (await post(http, g, "generateContent", HI))[0] == 503


# -- stream knobs ------------------------------------------------------------------------------------------------


async def test_stream_stall_release_and_cut(g, http):
    g.reply = GScript(text=["a", "b", "c"])
    g.stall_after = 1
    url = g.url(f"v1beta/models/{MODEL}:streamGenerateContent?alt=sse")
    async with http.post(url, json=HI, headers={"x-goog-api-key": KEY}) as resp:
        first = await resp.content.readuntil(b"\r\n\r\n")
        await g.stream_stalled.wait()
        g.release()
        rest = await resp.content.read()
    assert len(sse_objects((first + rest).decode())) == 3 and g.completed_streams == 1
    g.stall_after, g.cut_after = None, 2
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(url, json=HI, headers={"x-goog-api-key": KEY}) as resp:
            await resp.read()
    assert g.cut_streams == 1


async def test_stream_cancelled_when_client_leaves(g, http):
    g.stall_after = 1
    url = g.url(f"v1beta/models/{MODEL}:streamGenerateContent?alt=sse")
    async with http.post(url, json=HI, headers={"x-goog-api-key": KEY}) as resp:
        await resp.content.readuntil(b"\r\n\r\n")
        await g.stream_stalled.wait()
        resp.close()
    await asyncio.wait_for(g.stream_cancelled.wait(), 5)
    assert g.cancelled_streams == 1


# -- the official google-genai SDK against the fake ---------------------------------------------------------------


@SDK_WARNING
async def test_sdk_generate_stream_count_and_list(g):
    g.reply = GScript(text="SDK says hi", thoughts="pondering")
    async with sdk(g) as client:
        resp = await client.models.generate_content(
            model=MODEL, contents="hello", config=types.GenerateContentConfig(
                system_instruction="Be brief.", thinking_config=types.ThinkingConfig(include_thoughts=True)))
        assert resp.text == "SDK says hi" and resp.candidates[0].content.parts[0].thought is True
        assert resp.usage_metadata.thoughts_token_count == 3 and resp.model_version == MODEL
        chunks = [c async for c in await client.models.generate_content_stream(model=MODEL, contents="hello")]
        assert len(chunks) > 1 and "".join(c.text or "" for c in chunks) == "SDK says hi"
        assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
        count = await client.models.count_tokens(model=MODEL, contents="hello")
        assert count.total_tokens > 0
        names = [m.name async for m in await client.models.list(config={"page_size": 3})]
        assert len(names) == len(g.models) and names[0] == "models/gemini-2.5-flash"
    sent = g.requests_to("generateContent")[0]
    assert sent.json["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert len(g.requests_to("models")) == 4 and g.violations == []


@SDK_WARNING
async def test_sdk_function_call_round_trip(g):
    model = "gemini-3-pro-preview"  # enforces thought signatures: the SDK must echo ours back intact

    def hook(body: dict[str, Any], _model: str) -> GScript | None:
        last = body["contents"][-1]["parts"][0]
        if "functionResponse" in last:
            return GScript(text=f"It is {last['functionResponse']['response']['temp']} degrees.")
        return GScript(calls=[CALL])
    g.reply_hook = hook
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(
        name="get_weather", description="Weather", parameters=types.Schema(
            type="OBJECT", properties={"city": types.Schema(type="STRING")}))])
    config = types.GenerateContentConfig(tools=[tool], automatic_function_calling={"disable": True})
    async with sdk(g) as client:
        first = await client.models.generate_content(model=model, contents="Weather in Paris?", config=config)
        (call,) = first.function_calls
        assert call.name == "get_weather" and call.args == {"city": "Paris"}
        history = [types.Content(role="user", parts=[types.Part(text="Weather in Paris?")]),
                   first.candidates[0].content,
                   types.Content(role="user", parts=[types.Part.from_function_response(
                       name="get_weather", response={"temp": 21})])]
        second = await client.models.generate_content(model=model, contents=history, config=config)
    assert second.text == "It is 21 degrees."
    echoed = g.requests_to("generateContent")[1].json["contents"][1]["parts"][0]
    assert "thoughtSignature" in echoed and g.violations == []


@SDK_WARNING
async def test_sdk_sees_google_errors(g):
    g.add_key(KEY, behaviour="rate_limited")
    async with sdk(g) as client:
        with pytest.raises(genai_errors.ClientError) as caught:
            await client.models.generate_content(model=MODEL, contents="hello")
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
