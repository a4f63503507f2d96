"""Claude Code OAuth values (claude-code.md §2–§5): PKCE, forms, stored tokens, imported credentials."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import urlencode

import pytest

from clewdr_lite.protocol import claude_code as cc

NOW = 1_760_000_000.0
VERIFIER_BYTES = bytes(range(32))
STATE_BYTES = bytes(range(100, 132))
ACCESS = "sk-ant-oat01-" + "A" * 80 + "_-x"
REFRESH = "sk-ant-ort01-" + "B" * 80


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---------------------------------------------------------------- PKCE (§3.2)


def test_pkce_matches_an_independent_s256_computation():
    pkce = cc.make_pkce(VERIFIER_BYTES, STATE_BYTES)
    assert b64url_decode(pkce.verifier) == VERIFIER_BYTES
    assert b64url_decode(pkce.state) == STATE_BYTES
    digest = hashlib.sha256(pkce.verifier.encode("ascii")).digest()
    assert b64url_decode(pkce.challenge) == digest
    assert base64.urlsafe_b64encode(digest).decode().rstrip("=") == pkce.challenge


@pytest.mark.parametrize("size", [1, 31, 32, 33, 64])
def test_pkce_values_are_unpadded_base64url(size):
    pkce = cc.make_pkce(b"\xff\xfe" * size, b"\xfb" * size)
    for value in pkce:
        assert "=" not in value and "+" not in value and "/" not in value
    assert len(pkce.challenge) == 43  # 32 bytes of SHA-256
    assert pkce.verifier != pkce.state  # Clove reused the verifier as state; we never do


def test_authorize_body_is_the_spec_shape():
    pkce = cc.make_pkce(VERIFIER_BYTES, STATE_BYTES)
    body = cc.authorize_body(client_id=cc.CLIENT_ID, org_uuid="org-1",
                             redirect_uri=cc.DEFAULT_REDIRECT_URI, scope=cc.DEFAULT_SCOPE, pkce=pkce)
    assert body == {
        "response_type": "code", "client_id": "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
        "organization_uuid": "org-1",
        "redirect_uri": "https://console.anthropic.com/oauth/code/callback",
        "scope": "user:profile user:inference", "state": pkce.state,
        "code_challenge": pkce.challenge, "code_challenge_method": "S256"}


# ---------------------------------------------------------------- the redirect (§3.2)

CALLBACK = "https://console.anthropic.com/oauth/code/callback"


def redirect(**params) -> dict:
    return {"redirect_uri": f"{CALLBACK}?{urlencode(params)}"}


@pytest.mark.parametrize("answer, code", [
    (redirect(code="abc", state="S"), "abc"),
    (redirect(state="S", code="a/b+c"), "a/b+c"),
    ({"redirect_uri": f"{CALLBACK}#code=frag&state=S"}, "frag"),
    (redirect(code="abc#S"), "abc"),
    ({"redirect_uri": f"{CALLBACK}?code=abc&state=S", "other": 1}, "abc"),
], ids=["query", "escaped", "fragment", "code#state", "extra-fields"])
def test_code_from_redirect(answer, code):
    assert cc.code_from_redirect(answer, "S") == code


@pytest.mark.parametrize("answer", [
    {}, {"redirect_uri": ""}, {"redirect_uri": 5}, None, [],
    redirect(state="S"), redirect(code="", state="S"),
    redirect(code="abc"), redirect(code="abc", state="T"), redirect(code="abc", state="S2"),
], ids=["no-uri", "empty-uri", "not-str", "none", "list", "no-code", "empty-code",
        "no-state", "wrong-state", "longer-state"])
def test_code_from_redirect_rejects(answer):
    with pytest.raises(ValueError):
        cc.code_from_redirect(answer, "S")


# ---------------------------------------------------------------- token calls (§3.3, §4)


def test_code_form_fields_in_spec_order():
    pkce = cc.make_pkce(VERIFIER_BYTES, STATE_BYTES)
    form = cc.code_form(code="C", pkce=pkce, client_id="cid", redirect_uri="https://r/cb")
    assert form == [("grant_type", "authorization_code"), ("code", "C"),
                    ("code_verifier", pkce.verifier), ("client_id", "cid"),
                    ("redirect_uri", "https://r/cb"), ("state", pkce.state)]


def test_refresh_form():
    assert cc.refresh_form(refresh_token=REFRESH, client_id="cid") == [
        ("grant_type", "refresh_token"), ("refresh_token", REFRESH), ("client_id", "cid")]


def test_token_headers():
    assert cc.token_headers("claude-cli/2.1.76 (external, cli)") == {
        "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded",
        "anthropic-version": "2023-06-01", "anthropic-beta": "oauth-2025-04-20",
        "User-Agent": "claude-cli/2.1.76 (external, cli)"}
    assert "User-Agent" not in cc.TOKEN_HEADERS_BASE


@pytest.mark.parametrize("template, version, expected", [
    ("claude-cli/{version} (external, cli)", "2.1.76", "claude-cli/2.1.76 (external, cli)"),
    ("claude-code/{version}", "2.0.32", "claude-code/2.0.32"),
    ("claude-code/1.0", "2.1.76", "claude-code/1.0"),
    ("x/{version} {other}", "1", "x/1 {other}"),
    ("", "2.1.76", "claude-cli/2.1.76 (external, cli)"),
])
def test_user_agent(template, version, expected):
    assert cc.user_agent(template, version) == expected


A, C, P = cc.TOKEN_URLS


@pytest.mark.parametrize("configured, expected", [
    (A, [A, C, P]),
    (C, [C, A, P]),
    (P, [P, A, C]),
    (P + "/", [P + "/", A, C]),
    ("http://127.0.0.1:9/token", ["http://127.0.0.1:9/token", A, C, P]),
    ("", [A, C, P]),
])
def test_token_url_candidates(configured, expected):
    assert cc.token_url_candidates(configured) == expected


# ---------------------------------------------------------------- the stored token (§3.4)


@pytest.mark.parametrize("answer, org, previous, expected", [
    ({"access_token": ACCESS, "expires_in": 28800, "refresh_token": REFRESH}, "org-1", None,
     {"access_token": ACCESS, "expires_in": 28800, "refresh_token": REFRESH,
      "expires_at": NOW + 28800, "organization": {"uuid": "org-1"}}),
    ({"access_token": "new", "expires_in": 3600}, None,
     {"access_token": "old", "refresh_token": "r-old", "organization": {"uuid": "org-2"}},
     {"access_token": "new", "expires_in": 3600, "refresh_token": "r-old",
      "expires_at": NOW + 3600, "organization": {"uuid": "org-2"}}),
    ({"access_token": "new", "expires_in": 60, "refresh_token": "r-new"}, "org-1",
     {"refresh_token": "r-old"},
     {"access_token": "new", "expires_in": 60, "refresh_token": "r-new", "expires_at": NOW + 60,
      "organization": {"uuid": "org-1"}}),
    ({"access_token": "t", "refresh_token": "", "organization": {"uuid": "org-a"}}, None, None,
     {"access_token": "t", "expires_in": 28800, "expires_at": NOW + 28800,
      "organization": {"uuid": "org-a"}}),
    ({"access_token": "t", "expires_in": "soon"}, None, None,
     {"access_token": "t", "expires_in": 28800, "expires_at": NOW + 28800}),
], ids=["exchange", "refresh-keeps-old-refresh-token", "refresh-replaces", "answer-org",
        "bad-expires-in"])
def test_token_record(answer, org, previous, expected):
    record = cc.token_record(answer, now=NOW, org_uuid=org, previous=previous)
    assert record == expected
    assert isinstance(record["expires_at"], float)


@pytest.mark.parametrize("answer", [{}, {"access_token": ""}, {"access_token": 5}, None])
def test_token_record_needs_an_access_token(answer):
    with pytest.raises(ValueError):
        cc.token_record(answer, now=NOW, org_uuid="o")


@pytest.mark.parametrize("token, now, expired", [
    (None, NOW, True),
    ({}, NOW, True),
    ({"access_token": "t"}, NOW, True),
    ({"access_token": "t", "expires_at": "garbage"}, NOW, True),
    ({"access_token": "t", "expires_at": True}, NOW, True),
    ({"access_token": "t", "expires_at": float("nan")}, NOW, True),
    ({"expires_at": NOW + 9999}, NOW, True),
    ({"access_token": "t", "expires_at": NOW + 301}, NOW, False),
    ({"access_token": "t", "expires_at": NOW + 300}, NOW, True),
    ({"access_token": "t", "expires_at": NOW + 299.5}, NOW, True),
    ({"access_token": "t", "expires_at": int(NOW) + 3600}, NOW, False),
    ({"access_token": "t", "expires_at": str(NOW + 3600)}, NOW, False),
    ({"access_token": "t", "expires_at": NOW - 1}, NOW, True),
])
def test_token_expired(token, now, expired):
    assert cc.token_expired(token, now) is expired


def err(**fields) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize("status, body, expected", [
    (400, err(error="invalid_grant", error_description="Invalid 'code' in request."), True),
    (400, err(error="invalid_request", error_description="Refresh token not found"), True),
    (400, err(error="x", error_description="Refresh token is invalid"), True),
    (400, err(error="x", error_description="refresh token expired or invalid"), True),
    (400, err(error={"type": "invalid_grant", "message": "bad"}), True),
    (401, err(error={"type": "invalid_request_error",
                     "message": "Refresh token not found or invalid"}), True),
    (400, err(error="invalid_request", error_description="Missing client_id"), False),
    (429, b"<html>blocked</html>", False),
    (500, b"", False),
    (200, err(error="invalid_grant"), False),
    (400, b"[1, 2]", False),
])
def test_is_invalid_grant(status, body, expected):
    assert cc.is_invalid_grant(status, body) is expected


@pytest.mark.parametrize("status, body, expected", [
    (400, err(error="invalid_grant", error_description="Invalid code"),
     "token endpoint answered 400: invalid_grant: Invalid code"),
    (400, err(error="invalid_client"), "token endpoint answered 400: invalid_client"),
    (401, err(error={"type": "authentication_error", "message": "nope"}),
     "token endpoint answered 401: authentication_error: nope"),
    (429, b"x" * 300, "token endpoint answered 429: " + "x" * 200),
    (502, b"", "token endpoint answered 502: empty body"),
    (404, b'{"detail": "not here"}', 'token endpoint answered 404: {"detail": "not here"}'),
])
def test_token_error(status, body, expected):
    assert cc.token_error(status, body) == expected


# ---------------------------------------------------------------- imported credentials (§5)


def credentials(**inner) -> str:
    return json.dumps({"claudeAiOauth": inner})


@pytest.mark.parametrize("text, expected", [
    (credentials(accessToken=ACCESS, refreshToken=REFRESH, expiresAt=int(NOW * 1000) + 3_600_000,
                 scopes=["user:inference"], subscriptionType="max"),
     {"access_token": ACCESS, "refresh_token": REFRESH, "expires_at": NOW + 3600,
      "expires_in": 3600}),
    (credentials(accessToken=ACCESS, expiresAt=int(NOW) + 60),  # seconds, written by hand
     {"access_token": ACCESS, "expires_at": NOW + 60, "expires_in": 60}),
    (credentials(accessToken=ACCESS, refreshToken=REFRESH, expiresAt=int(NOW * 1000) - 1000),
     {"access_token": ACCESS, "refresh_token": REFRESH, "expires_at": NOW - 1, "expires_in": 0}),
    (json.dumps({"accessToken": ACCESS, "refreshToken": REFRESH}),
     {"access_token": ACCESS, "refresh_token": REFRESH, "expires_at": 4102444800.0,
      "expires_in": int(4102444800.0 - NOW)}),
    (f"  {ACCESS}\n", {"access_token": ACCESS, "expires_at": 4102444800.0,
                       "expires_in": int(4102444800.0 - NOW)}),
], ids=["credentials-json", "seconds", "expired", "inner-object", "bare-token"])
def test_parse_imported(text, expected):
    record = cc.parse_imported(text, now=NOW)
    assert record == expected
    assert cc.token_expired(record, NOW) is (expected["expires_at"] - 300 <= NOW)


@pytest.mark.parametrize("text", [
    "", "   ", "sk-ant-api03-abc", "sk-ant-oat01-", "sk-ant-oat01-abc def", "{", "[]",
    credentials(refreshToken=REFRESH), credentials(accessToken="not-a-token"),
    json.dumps({"claudeAiOauth": "x"}), REFRESH,
])
def test_parse_imported_rejects(text):
    with pytest.raises(ValueError) as info:
        cc.parse_imported(text, now=NOW)
    assert REFRESH not in str(info.value)  # secrets never end up in messages


def test_bare_token_is_not_expired_and_has_no_refresh_token():
    record = cc.parse_imported(ACCESS, now=NOW)
    assert "refresh_token" not in record
    assert not cc.token_expired(record, NOW + 365 * 86400)
