"""The OAuth half of the fake api.anthropic.com: authorize (cookie → code) and token (code/refresh → tokens)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from tests.fakes.anthropic_state import AccessToken, AuthCode, CodeAccount, Recorded, RefreshToken, Tokens
from tests.fakes.anthropic_wire import (
    OAUTH_BETA, OAUTH_DENIED, REFRESH_INVALID, SCOPES, WireError, api_error, ident, oauth_error, pkce_challenge,
    token_string, waf_block,
)

CODE_TTL = 600  # seconds an authorization code stays usable
EXCHANGE_FIELDS = ["grant_type", "code", "code_verifier", "client_id", "redirect_uri", "state"]
REFRESH_FIELDS = ["grant_type", "refresh_token", "client_id"]
BROWSER_MARKS = ("mozilla/", "chrome/", "safari/", "applewebkit")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def reject(err: WireError) -> web.Response:
    """An aiohttp response for a wire error."""
    return web.Response(status=err.status, headers=err.headers, text=err.body)


class OAuthEndpoints:
    """Mixin of FakeAnthropic: the authorize and token endpoints and the token store."""

    # Set by FakeAnthropic.__init__; declared here for readers and type checkers.
    client_id: str
    redirect_uri: str
    expires_in: int
    token_waf_block: int
    refresh_tokens_invalid: bool
    exchanges: int
    refreshes: int
    codes: dict[str, AuthCode]
    access_tokens: dict[str, AccessToken]
    refresh_tokens: dict[str, RefreshToken]
    accounts: dict[str, CodeAccount]
    violations: list[str]
    clock: Callable[[], float]
    _next: Callable[[str], str]

    # -- knobs ---------------------------------------------------------------------------------

    def issue_tokens(self, cookie: str, *, expires_in: int | None = None,
                     scope: str = "user:profile user:inference") -> Tokens:
        """Mint a token pair for an account directly (imported CLI credentials, tests that skip the flow)."""
        body = self._mint(self.accounts[cookie], scope, expires_in)
        return Tokens(body["access_token"], body["refresh_token"], self.access_tokens[body["access_token"]].expires_at)

    def revoke_refresh(self, token: str) -> None:
        """Make one refresh token invalid (a later refresh answers invalid_grant)."""
        self.refresh_tokens[token].valid = False

    def expire_all_tokens(self) -> None:
        """Every access token issued so far is expired from now on."""
        now = self.clock()
        for token in self.access_tokens.values():
            token.expires_at = min(token.expires_at, now)

    # -- authorize -----------------------------------------------------------------------------

    async def _authorize(self, request: web.Request, entry: Recorded, account: CodeAccount) -> web.Response:
        body = entry.json if isinstance(entry.json, dict) else {}
        if request.content_type != "application/json":
            self.violations.append(f"authorize Content-Type {request.content_type!r}")
        org = request.match_info["org"]
        expected = {"response_type": "code", "client_id": self.client_id, "organization_uuid": org,
                    "redirect_uri": self.redirect_uri, "code_challenge_method": "S256"}
        for name, value in expected.items():
            if body.get(name) != value:
                return self._bad_authorize(f"Invalid {name}: {body.get(name)!r}")
        if org != account.org_uuid:
            return self._bad_authorize("organization_uuid is not an organization of this account")
        scope = body.get("scope")
        scopes = scope.split() if isinstance(scope, str) else []
        if "user:inference" not in scopes or not set(scopes) <= SCOPES:
            return self._bad_authorize(f"Invalid scope: {scope!r}")
        state, challenge = body.get("state"), body.get("code_challenge")
        if not isinstance(state, str) or not state:
            return self._bad_authorize("Invalid state")
        if not isinstance(challenge, str) or not _CHALLENGE.match(challenge):
            return self._bad_authorize("Invalid code_challenge")
        if challenge == state:
            self.violations.append("authorize state equals the code challenge (use independent values)")
        if not account.pro:
            self.violations.append("authorize for a free account (claude-code.md §3.1: no Claude Code)")
        if account.oauth_denied:
            return reject(api_error(403, "permission_error", OAUTH_DENIED, self._next("req_011C")))
        code = ident("", self._next("code")) + ident("", self._next("code"))
        self.codes[code] = AuthCode(code, account, self.client_id, self.redirect_uri, scope, state, challenge,
                                    self.clock())
        query = urlencode({"code": code, "state": state})
        return web.json_response({"redirect_uri": f"{self.redirect_uri}?{query}"})

    def _bad_authorize(self, message: str) -> web.Response:
        return reject(api_error(400, "invalid_request_error", message, self._next("req_011C")))

    # -- token ---------------------------------------------------------------------------------

    async def _token(self, request: web.Request, entry: Recorded) -> web.Response:
        if self.token_waf_block > 0:
            self.token_waf_block -= 1
            return reject(waf_block())
        ua = request.headers.get("User-Agent", "")
        if any(mark in ua.lower() for mark in BROWSER_MARKS):
            # The WAF blocks browser-like clients on this endpoint (claude-code.md §3.3).
            self.violations.append(f"browser-like User-Agent {ua!r} on the token endpoint")
            return reject(waf_block())
        if not ua.startswith("claude-cli/"):
            self.violations.append(f"User-Agent {ua!r} on the token endpoint, expected claude-cli/…")
        if OAUTH_BETA not in request.headers.get("anthropic-beta", ""):
            self.violations.append("token call without anthropic-beta: oauth-2025-04-20")
        if request.content_type != "application/x-www-form-urlencoded" or entry.form is None:
            return reject(oauth_error(400, "invalid_request",
                                      "Content-Type must be application/x-www-form-urlencoded"))
        grant = entry.form.get("grant_type")
        if grant == "authorization_code":
            return self._exchange(entry.form)
        if grant == "refresh_token":
            return self._refresh(entry.form)
        return reject(oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type {grant!r}"))

    def _form_problem(self, form: dict[str, str], fields: list[str]) -> web.Response | None:
        missing = [f for f in fields if not form.get(f)]
        if missing:
            return reject(oauth_error(400, "invalid_request", f"Missing required parameter: {missing[0]}"))
        if list(form) != fields:
            self.violations.append(f"token form fields {list(form)!r}, expected {fields!r}")
        if form["client_id"] != self.client_id:
            return reject(oauth_error(400, "invalid_client", "Invalid client_id"))
        return None

    def _exchange(self, form: dict[str, str]) -> web.Response:
        problem = self._form_problem(form, EXCHANGE_FIELDS)
        if problem is not None:
            return problem
        code = self.codes.get(form["code"])
        if code is None or code.used or self.clock() - code.issued_at > CODE_TTL:
            return reject(oauth_error(400, "invalid_grant", "Invalid 'code' in request."))
        if form["redirect_uri"] != code.redirect_uri:
            return reject(oauth_error(400, "invalid_grant", "Invalid 'redirect_uri' in request."))
        if form["state"] != code.state:
            return reject(oauth_error(400, "invalid_grant", "Invalid 'state' in request."))
        if pkce_challenge(form["code_verifier"]) != code.challenge:
            return reject(oauth_error(400, "invalid_grant", "Invalid code verifier"))
        code.used = True
        self.exchanges += 1
        return web.json_response(self._mint(code.account, code.scope, None))

    def _refresh(self, form: dict[str, str]) -> web.Response:
        problem = self._form_problem(form, REFRESH_FIELDS)
        if problem is not None:
            return problem
        old = self.refresh_tokens.get(form["refresh_token"])
        if old is None or not old.valid or self.refresh_tokens_invalid:
            return reject(oauth_error(400, "invalid_grant", REFRESH_INVALID))
        old.valid = False  # refresh tokens rotate: each one works once
        self.refreshes += 1
        return web.json_response(self._mint(old.account, old.scope, None))

    def _mint(self, account: CodeAccount, scope: str, expires_in: int | None) -> dict[str, Any]:
        seed = self._next("token") + account.uuid
        access, refresh = token_string("oat", seed + ":a"), token_string("ort", seed + ":r")
        lifetime = self.expires_in if expires_in is None else expires_in
        self.access_tokens[access] = AccessToken(access, account, self.clock() + lifetime, scope)
        self.refresh_tokens[refresh] = RefreshToken(refresh, account, scope)
        return {"token_type": "Bearer", "access_token": access, "expires_in": lifetime, "refresh_token": refresh,
                "scope": scope, "organization": {"uuid": account.org_uuid, "name": account.organization()["name"]},
                "account": {"uuid": account.uuid, "email_address": account.email}}
