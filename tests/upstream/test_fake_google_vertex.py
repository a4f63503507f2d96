"""The fake Google token endpoint, Vertex AI and the OpenAI-compatible endpoints behave as spec/gemini.md says."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import aiohttp
import openai
import pytest
from google import genai
from google.genai import types
from google.oauth2 import service_account

from tests.conftest import FakeClock
from tests.fakes.gemini_api import FakeGoogle, FunctionCall, GScript
from tests.fakes.gemini_oauth import CLOUD_PLATFORM, JWT_BEARER, sign_jwt

KEY = "AIzaSy" + "v" * 33
MODEL = "gemini-2.5-flash"
HI = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
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


def assertion(g: FakeGoogle, sa: dict[str, Any], **override: Any) -> str:
    now = int(g.clock())
    header = {"alg": "RS256", "typ": "JWT", "kid": sa["private_key_id"], **override.pop("header", {})}
    claims = {"iss": sa["client_email"], "scope": CLOUD_PLATFORM, "aud": sa["token_uri"], "iat": now,
              "exp": now + 3600, **override}
    return sign_jwt(header, claims, sa["private_key"])


async def exchange(http: aiohttp.ClientSession, g: FakeGoogle, jwt: str) -> tuple[int, dict[str, Any]]:
    async with http.post(g.token_uri, data={"grant_type": JWT_BEARER, "assertion": jwt}) as resp:
        return resp.status, await resp.json()


def vertex_url(g: FakeGoogle, method: str, project: str = "proj-1", model: str = MODEL) -> str:
    return g.url(f"v1/projects/{project}/locations/global/publishers/google/models/{model}:{method}")


# -- the token endpoint ----------------------------------------------------------------------------------------


async def test_service_account_json_looks_downloaded(g):
    sa = g.make_service_account("proj-1")
    assert sa["type"] == "service_account" and sa["project_id"] == "proj-1"
    assert sa["private_key"].startswith("-----BEGIN PRIVATE KEY-----\n") and len(sa["private_key_id"]) == 40
    assert sa["client_email"].endswith("@proj-1.iam.gserviceaccount.com") and sa["token_uri"] == g.token_uri
    assert g.token_uri == g.base_url + "/token" and not g.base_url.endswith("/")
    assert {"client_id", "auth_uri", "auth_provider_x509_cert_url", "client_x509_cert_url"} <= set(sa)


async def test_signed_jwt_is_exchanged_for_a_token(g, http):
    sa = g.make_service_account()
    status, body = await exchange(http, g, assertion(g, sa))
    assert status == 200 and set(body) == {"access_token", "expires_in", "token_type"}
    assert body["access_token"].startswith("ya29.") and body["expires_in"] == 3599 and body["token_type"] == "Bearer"
    assert g.token_exchanges == 1 and g.violations == []
    assert g.access_tokens[body["access_token"]].account.email == sa["client_email"]


async def test_tampered_and_foreign_jwts_are_rejected(g, http):
    sa, other = g.make_service_account(), g.make_service_account("proj-2")
    head, claims, sig = assertion(g, sa).split(".")
    forged_claims = assertion(g, sa, scope="x").split(".")[1]
    assert await exchange(http, g, f"{head}.{forged_claims}.{sig}") == (
        400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    # Signed by another account's key: the signature does not verify under this account's public key.
    signed_elsewhere = sign_jwt({"alg": "RS256", "typ": "JWT", "kid": sa["private_key_id"]},
                                json.loads(base64.urlsafe_b64decode(claims + "==")), other["private_key"])
    assert (await exchange(http, g, signed_elsewhere))[1]["error_description"] == "Invalid JWT Signature."
    assert (await exchange(http, g, assertion(g, sa, header={"kid": other["private_key_id"]})))[0] == 400
    status, body = await exchange(http, g, assertion(g, sa, iss="nobody@proj-1.iam.gserviceaccount.com"))
    assert status == 400 and body["error"] == "invalid_grant"
    assert (await exchange(http, g, "not.a.jwt"))[1]["error"] == "invalid_grant"
    assert g.token_exchanges == 0


@pytest.mark.parametrize("override, needle", [
    ({"aud": "https://example.com/token"}, "Failed audience check"),
    ({"iat": 1_760_000_000 - 600, "exp": 1_760_000_000 + 3000}, "reasonable timeframe"),
    ({"exp": 1_760_000_000 + 7200}, "reasonable timeframe"),
    ({"scope": ""}, "Invalid OAuth scope"),
])
async def test_claims_are_checked(g, http, override, needle):
    sa = g.make_service_account()
    status, body = await exchange(http, g, assertion(g, sa, **override))
    assert status == 400 and needle in body["error_description"]


async def test_token_endpoint_knobs(g, http):
    sa = g.make_service_account(token_error="invalid_client", token_error_times=1)
    status, body = await exchange(http, g, assertion(g, sa))
    assert status == 401 and body["error"] == "invalid_client"
    assert (await exchange(http, g, assertion(g, sa)))[0] == 200
    g.token_error = 500
    assert (await exchange(http, g, assertion(g, sa)))[0] == 500
    g.token_error = None
    async with http.post(g.token_uri, data={"grant_type": "client_credentials"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "unsupported_grant_type"
    assert g.token_calls == 4 and g.token_exchanges == 1 and len(g.requests_to("token")) == 4


async def test_google_auth_library_gets_a_token():
    # The official google-auth signer is a real client of the token endpoint (it checks the wall clock).
    async with FakeGoogle(clock=time.time) as g:
        sa = g.make_service_account()
        creds = service_account.Credentials.from_service_account_info(sa, scopes=[CLOUD_PLATFORM])
        from google.auth.transport.requests import Request
        await asyncio.to_thread(creds.refresh, Request())
        assert creds.token in g.access_tokens and g.token_exchanges == 1
        # google-auth always signs for Google's canonical audience, which Google accepts too.
        assert g.violations == [
            "JWT aud 'https://oauth2.googleapis.com/token' is not the credential's token_uri (gemini.md §5.3)"]


# -- Vertex native ---------------------------------------------------------------------------------------------


async def test_vertex_generate_stream_and_count(g, http):
    sa = g.make_service_account("proj-1")
    token = (await exchange(http, g, assertion(g, sa)))[1]["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    async with http.post(vertex_url(g, "generateContent"), json=HI, headers=auth) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["createTime"].endswith("Z") and body["modelVersion"] == MODEL
    async with http.post(vertex_url(g, "streamGenerateContent") + "?alt=sse", json=HI, headers=auth) as resp:
        text = await resp.text()
    events = [json.loads(e.removeprefix("data: ")) for e in text.split("\r\n\r\n") if e]
    assert len(events) > 1 and events[-1]["candidates"][0]["finishReason"] == "STOP"
    async with http.post(vertex_url(g, "countTokens"), json=HI, headers=auth) as resp:
        counted = await resp.json()
    assert counted["totalTokens"] > 0 and counted["totalBillableCharacters"] == 2
    async with http.post(vertex_url(g, "generateContent", model="gemini-9"), json=HI, headers=auth) as resp:
        assert resp.status == 404 and "Publisher Model" in (await resp.json())["error"]["message"]
    entry = g.requests_to("vertex_generateContent")[0]
    assert (entry.project, entry.location, entry.model) == ("proj-1", "global", MODEL)
    assert g.service_accounts[sa["client_email"]].answered == 2 and g.violations == []


async def test_vertex_auth_rules(g, http, clock):
    sa = g.make_service_account("proj-1")
    token = g.issue_access_token(sa["client_email"])
    async with http.post(vertex_url(g, "generateContent"), json=HI) as resp:
        assert resp.status == 401 and (await resp.json())["error"]["details"][0]["reason"] == "CREDENTIALS_MISSING"
    async with http.post(vertex_url(g, "generateContent", project="proj-9"), json=HI,
                         headers={"Authorization": f"Bearer {token}"}) as resp:
        err = await resp.json()
    assert resp.status == 403 and err["error"]["details"][0]["reason"] == "IAM_PERMISSION_DENIED"
    async with http.post(vertex_url(g, "generateContent"), json=HI, headers={"x-goog-api-key": KEY}) as resp:
        assert resp.status == 401
    assert "API key on the Vertex call" in g.violations[0]
    clock.now += 3600
    async with http.post(vertex_url(g, "generateContent"), json=HI,
                         headers={"Authorization": f"Bearer {token}"}) as resp:
        err = await resp.json()
    assert resp.status == 401 and err["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"


async def test_vertex_behaviours(g, http):
    sa = g.make_service_account("proj-1", behaviour="rate_limited", fail_times=1)
    auth = {"Authorization": f"Bearer {g.issue_access_token(sa['client_email'])}"}
    async with http.post(vertex_url(g, "generateContent"), json=HI, headers=auth) as resp:
        err = await resp.json()
    assert resp.status == 429 and err["error"]["status"] == "RESOURCE_EXHAUSTED" and "details" not in err["error"]
    async with http.post(vertex_url(g, "generateContent"), json=HI, headers=auth) as resp:
        assert resp.status == 200


@SDK_WARNING
async def test_sdk_on_vertex_with_a_service_account():
    async with FakeGoogle(clock=time.time) as g:
        sa = g.make_service_account("proj-1")
        creds = service_account.Credentials.from_service_account_info(sa, scopes=[CLOUD_PLATFORM])
        client = genai.Client(vertexai=True, project="proj-1", location="us-central1", credentials=creds,
                              http_options=types.HttpOptions(base_url=g.base_url)).aio
        async with client:
            resp = await client.models.generate_content(model=MODEL, contents="hello")
            chunks = [c async for c in await client.models.generate_content_stream(model=MODEL, contents="hello")]
        assert resp.text == "Hello from the fake Gemini API." and resp.create_time is not None
        assert "".join(c.text or "" for c in chunks) == resp.text
        assert g.requests_to("vertex_generateContent")[0].location == "us-central1"


# -- OpenAI-compatible endpoints ----------------------------------------------------------------------------------


async def test_studio_openai_compatible_with_the_openai_sdk(g):
    g.reply = GScript(text="compatible hello")
    async with openai.AsyncOpenAI(base_url=g.url("v1beta/openai/"), api_key=KEY, max_retries=0) as client:
        resp = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert resp.object == "chat.completion" and resp.model == MODEL
        assert resp.choices[0].message.content == "compatible hello" and resp.choices[0].finish_reason == "stop"
        assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
        stream = await client.chat.completions.create(model=MODEL, stream=True, stream_options={"include_usage": True},
                                                      messages=[{"role": "user", "content": "hi"}])
        chunks = [c async for c in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "compatible hello"
        assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage.completion_tokens > 0
        models = [m.id async for m in client.models.list()]
        assert "models/gemini-2.5-flash" in models
        g.reply = GScript(calls=[FunctionCall("get_weather", {"city": "Paris"})])
        resp = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "w?"}])
        call = resp.choices[0].message.tool_calls[0]
        assert resp.choices[0].finish_reason == "tool_calls"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert g.requests_to("openai_chat")[0].headers["Authorization"] == f"Bearer {KEY}" and g.violations == []


async def test_openai_compatible_errors_are_wrapped_in_an_array(g, http):
    g.add_key(KEY, behaviour="invalid")
    url = g.url("v1beta/openai/chat/completions")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as resp:
        err = await resp.json()
    assert resp.status == 400 and isinstance(err, list) and err[0]["error"]["status"] == "INVALID_ARGUMENT"
    g.add_key(KEY, behaviour="empty")
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as resp:
        assert (await resp.json())["choices"] == []
    async with http.post(url, json={**body, "model": "gemini-9"}, headers={"Authorization": f"Bearer {KEY}"}) as r:
        assert r.status == 404 and "v1main" in (await r.json())[0]["error"]["message"]


async def test_vertex_openai_compatible(g, http):
    sa = g.make_service_account("proj-1", behaviour="safety_rejected")
    auth = {"Authorization": f"Bearer {g.issue_access_token(sa['client_email'])}"}
    url = g.url("v1beta1/projects/proj-1/locations/global/endpoints/openapi/chat/completions")
    body = {"model": f"google/{MODEL}", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "stream_options": {"include_usage": True}}
    async with http.post(url, json=body, headers=auth) as resp:
        text = await resp.text()
    assert resp.status == 200 and text.endswith("data: [DONE]\n\n")
    chunks = [json.loads(line[6:]) for line in text.split("\n\n") if line.startswith("data: {")]
    assert chunks[0]["model"] == f"google/{MODEL}" and chunks[-1]["usage"]["prompt_tokens"] > 0
    civic = [{"category": "HARM_CATEGORY_CIVIC_INTEGRITY", "threshold": "OFF"}]
    async with http.post(url, json={**body, "frequency_penalty": 0.5, "extra_body": {"google": {
            "safety_settings": civic}}}, headers=auth) as resp:
        err = await resp.json()
    assert resp.status == 400 and "safety_settings[0]" in err[0]["error"]["message"]
    assert [(e["extra_body"], e["frequency_penalty"]) for e in g.openai_extras] == [(False, False), (True, True)]
    async with http.post(url, json={**body, "model": MODEL}, headers=auth) as resp:
        assert resp.status == 400 and "google/" in (await resp.json())[0]["error"]["message"]
