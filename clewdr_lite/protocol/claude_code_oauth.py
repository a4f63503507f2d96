"""Claude Code OAuth as values: PKCE, authorize and token bodies, stored tokens (claude-code.md §2–§5).

Randomness and the clock come in as arguments; the I/O module sends what these functions build.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

from .anthropic_headers import API_VERSION

CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
OAUTH_BETA = "oauth-2025-04-20"
DEFAULT_VERSION = "2.1.76"
DEFAULT_USER_AGENT = "claude-cli/{version} (external, cli)"
DEFAULT_SCOPE = "user:profile user:inference"
DEFAULT_REDIRECT_URI = "https://console.anthropic.com/oauth/code/callback"
# §2: ClewdR's endpoint, Clove's, and the one newer CLIs use; tried in turn on a 429 or 404
TOKEN_URLS = ("https://api.anthropic.com/v1/oauth/token",
              "https://console.anthropic.com/v1/oauth/token",
              "https://platform.claude.com/v1/oauth/token")
EXPIRY_MARGIN_S = 300  # §4: a token counts as expired 5 minutes early
DEFAULT_EXPIRES_IN = 28800  # what the token endpoint grants; used when an answer omits it
# 2100-01-01: "expiry unknown" for imported tokens that came without one (setup-token)
FAR_FUTURE = 4102444800.0

TOKEN_HEADERS_BASE = {
    "Accept": "application/json",
    "Content-Type": "application/x-www-form-urlencoded",
    "anthropic-version": API_VERSION,
    "anthropic-beta": OAUTH_BETA,
}
_INVALID_GRANT_DESCRIPTIONS = (re.compile(r"refresh token not found"),
                               re.compile(r"refresh token\b.*\binvalid"))
_ACCESS_TOKEN = re.compile(r"sk-ant-oat\d*-[A-Za-z0-9_\-]+")


class Pkce(NamedTuple):
    """One authorization attempt's PKCE verifier, S256 challenge and state."""

    verifier: str
    challenge: str
    state: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_pkce(verifier_bytes: bytes, state_bytes: bytes) -> Pkce:
    """PKCE values from caller-supplied random bytes (32 each; §3.2: state independent of verifier)."""
    verifier = _b64url(verifier_bytes)
    challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
    return Pkce(verifier, challenge, _b64url(state_bytes))


def authorize_body(*, client_id: str, org_uuid: str, redirect_uri: str, scope: str,
                   pkce: Pkce) -> dict:
    """The JSON body of `POST E/v1/oauth/{org_uuid}/authorize` (§3.2)."""
    return {"response_type": "code", "client_id": client_id, "organization_uuid": org_uuid,
            "redirect_uri": redirect_uri, "scope": scope, "state": pkce.state,
            "code_challenge": pkce.challenge, "code_challenge_method": "S256"}


def _redirect_params(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    params = {k: v[0] for k, v in parse_qs(parts.query).items() if v}
    # the manual console flow puts them in the fragment instead; accept either
    for key, values in parse_qs(parts.fragment).items():
        params.setdefault(key, values[0])
    return params


def code_from_redirect(answer: dict, expected_state: str) -> str:
    """The authorization code in the authorize answer's `redirect_uri`; ValueError if absent or forged."""
    url = answer.get("redirect_uri") if isinstance(answer, dict) else None
    if not isinstance(url, str) or not url:
        raise ValueError("authorize answer has no redirect_uri")
    params = _redirect_params(url)
    code = params.get("code", "")
    if "#" in code:  # `code#state`, as the console displays it for pasting
        code, _, state = code.partition("#")
        params.setdefault("state", state)
    if not code:
        raise ValueError("authorize answer has no code")
    state = params.get("state", "")
    if not hmac.compare_digest(state.encode(), expected_state.encode()):
        raise ValueError("authorize answer has a state that does not match")
    return code


def code_form(*, code: str, pkce: Pkce, client_id: str, redirect_uri: str) -> list[tuple[str, str]]:
    """The token-exchange form, fields in the §3.3 order."""
    return [("grant_type", "authorization_code"), ("code", code), ("code_verifier", pkce.verifier),
            ("client_id", client_id), ("redirect_uri", redirect_uri), ("state", pkce.state)]


def refresh_form(*, refresh_token: str, client_id: str) -> list[tuple[str, str]]:
    """The refresh form (§4)."""
    return [("grant_type", "refresh_token"), ("refresh_token", refresh_token),
            ("client_id", client_id)]


def token_headers(user_agent: str) -> dict:
    """Headers of token calls; a `claude-cli/…` agent, since the endpoint blocks browser-like ones."""
    return {**TOKEN_HEADERS_BASE, "User-Agent": user_agent}


def user_agent(template: str, version: str) -> str:
    """The Claude Code User-Agent: `{version}` in the template replaced (no other brace handling)."""
    return (template.strip() or DEFAULT_USER_AGENT).replace("{version}", version)


def token_url_candidates(configured: str) -> list[str]:
    """The configured token URL first, then the other known ones (§2), without duplicates."""
    seen, out = set(), []
    for url in (configured, *TOKEN_URLS):
        key = url.strip().rstrip("/")
        if key and key not in seen:
            seen.add(key)
            out.append(url.strip())
    return out


def _int_seconds(value) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if value > 0 else None


def _org_uuid(answer: dict, org_uuid: str | None, previous: dict | None) -> str | None:
    if org_uuid:
        return org_uuid
    for source in (answer, previous or {}):
        org = source.get("organization")
        if isinstance(org, dict) and isinstance(org.get("uuid"), str) and org["uuid"]:
            return org["uuid"]
    return None


def token_record(answer: dict, *, now: float, org_uuid: str | None,
                 previous: dict | None = None) -> dict:
    """The stored `token` table (§3.4) from a token-endpoint answer; ValueError without a token."""
    access = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(access, str) or not access:
        raise ValueError("token answer has no access_token")
    expires_in = _int_seconds(answer.get("expires_in")) or DEFAULT_EXPIRES_IN
    record = {"access_token": access, "expires_in": expires_in}
    refresh = answer.get("refresh_token")
    if not (isinstance(refresh, str) and refresh):
        # §4: a refresh answer may omit it; the old refresh token then stays valid
        refresh = (previous or {}).get("refresh_token")
    if isinstance(refresh, str) and refresh:
        record["refresh_token"] = refresh
    record["expires_at"] = float(now) + expires_in
    org = _org_uuid(answer, org_uuid, previous)
    if org:
        record["organization"] = {"uuid": org}
    return record


def _expires_at(token: dict) -> float | None:
    value = token.get("expires_at")
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def token_expired(token: dict | None, now: float) -> bool:
    """True when there is no usable token or it expires within 300 s (§4)."""
    if not isinstance(token, dict) or not token.get("access_token"):
        return True
    expires_at = _expires_at(token)
    return expires_at is None or math.isnan(expires_at) or now >= expires_at - EXPIRY_MARGIN_S


def _error_fields(body: bytes) -> tuple[str, str] | None:
    """(`error`, `error_description`) of an OAuth error body, or of an Anthropic-style one."""
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):  # {"error": {"type", "message"}} from the API front door
        return str(error.get("type") or ""), str(error.get("message") or "")
    if error is None and data.get("error_description") is None:
        return None
    return str(error or ""), str(data.get("error_description") or "")


def is_invalid_grant(status: int, body: bytes) -> bool:
    """Whether a token answer means the grant is dead and section 3 must run again (§4)."""
    if 200 <= status < 300:
        return False
    fields = _error_fields(body)
    if fields is None:
        return False
    error, description = fields[0].lower(), fields[1].lower()
    return "invalid_grant" in error or any(p.search(description) for p in _INVALID_GRANT_DESCRIPTIONS)


def token_error(status: int, body: bytes) -> str:
    """A short message for a failed token call: `error: description`, else the body's start (§3.3)."""
    fields = _error_fields(body)
    if fields is not None and any(fields):
        detail = ": ".join(part for part in fields if part)
    else:
        detail = body.decode("utf-8", "replace").strip()[:200] or "empty body"
    return f"token endpoint answered {status}: {detail}"


# ---------------------------------------------------------------- imported credentials (§5)


def _bare_token(text: str, now: float) -> dict:
    return {"access_token": text, "expires_in": max(0, int(FAR_FUTURE - now)),
            "expires_at": FAR_FUTURE}


def _expires_at_ms(value, now: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return FAR_FUTURE  # no expiry given: use it until a 401 says otherwise
    # credentials.json holds milliseconds; a value in seconds range was written by hand
    return value / 1000.0 if value > 1e11 else float(value)


def _from_credentials(data: dict, now: float) -> dict:
    inner = data.get("claudeAiOauth", data)
    access = inner.get("accessToken") if isinstance(inner, dict) else None
    if not isinstance(access, str) or not _ACCESS_TOKEN.fullmatch(access.strip()):
        # never quote the input: it is a secret
        raise ValueError("credentials JSON has no claudeAiOauth.accessToken")
    expires_at = _expires_at_ms(inner.get("expiresAt"), now)
    record = {"access_token": access.strip(), "expires_in": max(0, int(expires_at - now))}
    refresh = inner.get("refreshToken")
    if isinstance(refresh, str) and refresh.strip():
        record["refresh_token"] = refresh.strip()
    record["expires_at"] = expires_at
    return record


def parse_imported(text: str, *, now: float) -> dict:
    """A token table from `.credentials.json` content or a bare `sk-ant-oat01-…` token (§5)."""
    text = (text or "").strip()
    if _ACCESS_TOKEN.fullmatch(text):
        return _bare_token(text, now)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise ValueError("expected Claude Code credentials JSON or an sk-ant-oat01- access token")
    return _from_credentials(data, now)
