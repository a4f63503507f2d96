"""A faithful fake of api.anthropic.com (web account paths, OAuth, Messages) on 127.0.0.1, port 0.

Usage::

    async with FakeAnthropic(clock=clock) as api:
        api.add_account(cookie)                  # Claude Code: cookie → OAuth → Bearer messages
        api.add_key("sk-ant-api03-…")            # API-key upstream: x-api-key messages
        api.reply = Script(text="hi", tools=[ToolCall("get_weather", {"city": "Paris"})])
        ... point the proxy's rproxy / token URL / usage URL / API base at api.base_url ...
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.anthropic_checks import header_violations
from tests.fakes.anthropic_messages import MessagesEndpoints, ReplyHook
from tests.fakes.anthropic_oauth import OAuthEndpoints, reject
from tests.fakes.anthropic_state import (
    DEFAULT_FAIL_ON, ENDPOINTS, WEB_ENDPOINTS, AccessToken, ApiKey, AuthCode, Caller, CodeAccount, Recorded,
    RefreshToken, Tokens,
)
from tests.fakes.anthropic_wire import (
    CLIENT_ID, DEFAULT_MODELS, OAUTH_BETA, OAUTH_EXPIRED, OAUTH_UNSUPPORTED, REDIRECT_URI, Pieces, Script, ToolCall,
    api_error, default_usage, ident, models_page, rfc3339,
)
from tests.fakes.claude_web_state import wire_flags
from tests.fakes.claude_web_wire import behaviour_error, error_json, session_key
from tests.fakes.common import FakeServer

__all__ = ["ApiKey", "CodeAccount", "FakeAnthropic", "Recorded", "Script", "ToolCall", "Tokens"]

PRO_CAPABILITIES = ("chat", "claude_max")
FREE_CAPABILITIES = ("chat",)
ROUTES = (("GET", "api/bootstrap", "bootstrap"), ("GET", "api/organizations", "organizations"),
          ("POST", "v1/oauth/{org}/authorize", "authorize"), ("POST", "v1/oauth/token", "token"),
          ("POST", "v1/messages", "messages"), ("POST", "v1/messages/count_tokens", "count_tokens"),
          ("GET", "api/oauth/usage", "usage"), ("GET", "v1/models", "models"))
V1_ENDPOINTS = ("messages", "count_tokens", "models")


def _mask(secret: str) -> str:
    return secret[:16] + "…"


class FakeAnthropic(OAuthEndpoints, MessagesEndpoints, FakeServer):
    """api.anthropic.com as the Claude Code and API-key upstreams see it."""

    def __init__(self, *, prefix: str = "/", clock: Callable[[], float] = time.time) -> None:
        self.prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
        self.clock = clock
        self.origin = ""  # set by start(): scheme://host:port
        self.base_url = ""  # origin + prefix, with a trailing slash
        self.accounts: dict[str, CodeAccount] = {}
        self.keys: dict[str, ApiKey] = {}
        self.requests: list[Recorded] = []
        self.violations: list[str] = []  # spec rules the client broke (recorded, mostly not rejected)
        self.request_ids: list[str] = []  # the `request-id` of every answer, in order
        # OAuth.
        self.client_id = CLIENT_ID
        self.redirect_uri = REDIRECT_URI
        self.expires_in = 28800
        self.token_waf_block = 0  # answer this many token calls with the WAF's 429 page
        self.refresh_tokens_invalid = False  # every refresh answers invalid_grant
        self.exchanges = 0  # successful code exchanges
        self.refreshes = 0  # successful refreshes
        self.codes: dict[str, AuthCode] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        # Messages.
        self.reply: Script | Pieces = Script(text="Hello from the fake Anthropic API.")
        self.reply_hook: ReplyHook | None = None
        self.thinking_text: Pieces = "Let me think about that."
        self.chunk_chars = 4  # text/thinking delta size when a reply is one string
        self.signatures: dict[str, str] = {}  # thinking signatures issued → the thinking they sign
        self.messages: list[dict[str, Any]] = []  # bodies of messages calls answered with status 200
        self.count_tokens_status: int | None = None  # 404 or 403: accounts without token counting
        self.count_tokens_calls = 0
        self.models: list[tuple[str, str, str]] = list(DEFAULT_MODELS)  # (id, display name, created_at)
        # How streams are written.
        self.stall_before_headers = False
        self.stall_after: int | None = None  # stall once this many events went out
        self.cut_after: int | None = None  # close the connection once this many events went out
        self.stream_stalled = asyncio.Event()
        self.stream_cancelled = asyncio.Event()
        self.stalled_streams = self.cancelled_streams = self.cut_streams = self.completed_streams = 0
        self._release = asyncio.Event()
        self._serial = 0
        self._stack: AsyncExitStack | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The aiohttp application (start() serves it)."""
        app = web.Application()
        for method, path, name in ROUTES:
            app.router.add_route(method, self.prefix + path, self._dispatch, name=name)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)  # everything else: recorded, 404
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.release()

    # -- credentials and queries ------------------------------------------------------------------

    def add_account(self, cookie: str, *, pro: bool = True, capabilities: list[str] | None = None,
                    behaviour: str | None = None, email: str | None = None, **options: Any) -> CodeAccount:
        """Add a claude.ai account; options are CodeAccount fields (oauth_denied, needs_prelude, usage, …)."""
        if behaviour is not None and behaviour not in DEFAULT_FAIL_ON:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        caps = list(capabilities if capabilities is not None else PRO_CAPABILITIES if pro else FREE_CAPABILITIES)
        options.setdefault("resets_at", int(self.clock()) + 3600)
        options.setdefault("flags", wire_flags((), self.clock()))
        account = CodeAccount(cookie=cookie, email=email or f"user{len(self.accounts) + 1}@example.com", pro=pro,
                              capabilities=caps, behaviour=behaviour, **options)
        self.accounts[cookie] = account
        return account

    def add_key(self, key: str, behaviour: str | None = None, **options: Any) -> ApiKey:
        """Register a Console API key; options are ApiKey fields (fail_times, fail_on, resets_at)."""
        if behaviour is not None and behaviour not in DEFAULT_FAIL_ON:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        options.setdefault("resets_at", int(self.clock()) + 60)
        self.keys[key] = ApiKey(key, behaviour, **options)
        return self.keys[key]

    def requests_to(self, endpoint: str) -> list[Recorded]:
        """Recorded requests of one endpoint (a name from anthropic_state.ENDPOINTS)."""
        return [r for r in self.requests if r.endpoint == endpoint]

    def url(self, path: str) -> str:
        """A path joined onto base_url, e.g. url("v1/messages")."""
        return self.base_url + path.lstrip("/")

    def _next(self, kind: str) -> str:
        self._serial += 1
        made = ident(kind, f"{kind}:{self._serial}") if kind.endswith("_011C") else f"{kind}:{self._serial}"
        if kind == "req_011C":
            self.request_ids.append(made)
        return made

    # -- dispatch ----------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        entry = await self._record(request)
        endpoint = entry.endpoint
        if endpoint is None:
            self.violations.append(f"unknown path: {request.method} {request.path}")
            return reject(error_json(404, "not_found_error", "Not Found"))
        if endpoint in WEB_ENDPOINTS:
            account = self._cookie_account(request, endpoint)
            if isinstance(account, web.Response):
                return account
            if endpoint == "authorize":
                return await self._authorize(request, entry, account)
            self._expect_browser_headers(request)
            return web.json_response(account.bootstrap() if endpoint == "bootstrap"
                                     else account.extra_orgs + [account.organization()])
        if endpoint == "token":
            return await self._token(request, entry)
        caller = self._authenticate(request, endpoint, entry)
        if isinstance(caller, web.Response):
            return caller
        if endpoint == "messages":
            return await self._messages(request, entry, caller)
        if endpoint == "count_tokens":
            return await self._count_tokens(request, entry, caller)
        if endpoint == "usage":
            return self._usage(caller)
        return self._models(request, caller)

    async def _record(self, request: web.Request) -> Recorded:
        route = request.match_info.route
        endpoint = route.name if route.name in ENDPOINTS else None
        raw = await request.read() if request.can_read_body else b""
        body: Any = None
        form: dict[str, str] | None = None
        if request.content_type == "application/x-www-form-urlencoded":
            form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        elif raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        path = request.path[len(self.prefix):] if request.path.startswith(self.prefix) else request.path
        entry = Recorded(request.method, path, request.query_string, CIMultiDict(request.headers), body, form,
                         endpoint, raw)
        self.requests.append(entry)
        return entry

    # -- authentication ------------------------------------------------------------------------------

    def _cookie_account(self, request: web.Request, endpoint: str) -> CodeAccount | web.Response:
        key = session_key(request.headers.get("Cookie"))
        if key is None:
            self.violations.append(f"Cookie without one sessionKey on {request.path}")
        account = self.accounts.get(key or "")
        if account is None:
            return reject(error_json(401, "authentication_error", "Invalid authorization"))
        account.calls[endpoint] += 1
        if account.behaviour in ("unauthorized", "null_account") and account.fails(endpoint):
            return reject(behaviour_error(account.behaviour, resets_at=account.resets_at, reset_in_body=True,
                                          reset_header=False, login_path=self.prefix + "login"))
        return account

    def _expect_browser_headers(self, request: web.Request) -> None:
        # claude-code.md §3.1: the bootstrap goes out with Origin and Referer as on web calls.
        if request.headers.get("Origin") != self.origin:
            self.violations.append(f"Origin {request.headers.get('Origin')!r} on {request.path}")
        if request.headers.get("Referer") != self.base_url + "new":
            self.violations.append(f"Referer {request.headers.get('Referer')!r} on {request.path}")

    def _authenticate(self, request: web.Request, endpoint: str, entry: Recorded) -> Caller | web.Response:
        rid = self._next("req_011C")
        if endpoint in V1_ENDPOINTS and "anthropic-version" not in request.headers:
            return reject(api_error(400, "invalid_request_error", "anthropic-version: header is required", rid))
        caller = self._credential(request, endpoint, rid)
        if isinstance(caller, web.Response):
            return caller
        caller.cred.calls[endpoint] += 1
        if endpoint != "usage":
            self.violations += header_violations(request.headers, caller.token is not None and endpoint != "models",
                                                 entry.json)
        if endpoint == "usage" and caller.cred.fails("usage"):
            return reject(api_error(401, "authentication_error", "Invalid bearer token", rid))
        return caller

    def _credential(self, request: web.Request, endpoint: str, rid: str) -> Caller | web.Response:
        key = request.headers.get("x-api-key")
        auth = request.headers.get("Authorization")
        bearer = auth[7:].strip() if auth is not None and auth[:7].lower() == "bearer " else None
        self._note_foreign(key, auth, bearer)
        # Console keys work as x-api-key or as a Bearer token (the 2.x SDKs send api_key as Bearer).
        secret = key if key is not None and endpoint != "usage" else bearer
        if secret in self.keys and endpoint != "usage":
            return Caller("key", key=self.keys[secret])
        if key is not None and endpoint != "usage":
            return reject(api_error(401, "authentication_error", "invalid x-api-key", rid))
        token = self.access_tokens.get(bearer or "")
        if token is None:
            message = "Invalid bearer token" if bearer else "x-api-key header is required"
            return reject(api_error(401, "authentication_error", message, rid))
        if OAUTH_BETA not in [b.strip() for b in request.headers.get("anthropic-beta", "").split(",")]:
            return reject(api_error(401, "authentication_error", OAUTH_UNSUPPORTED, rid))
        if self.clock() >= token.expires_at:
            return reject(api_error(401, "authentication_error", OAUTH_EXPIRED, rid))
        return Caller("oauth", token=token)

    def _note_foreign(self, key: str | None, auth: str | None, bearer: str | None) -> None:
        # The proxy must never forward its client's key (claude-code.md §6.1): anything the fake did
        # not issue is such a key.
        if key is not None and key not in self.keys:
            self.violations.append(f"x-api-key {_mask(key)} is not a credential of this upstream (client key?)")
        if auth is not None and bearer not in self.access_tokens and bearer not in self.keys:
            self.violations.append(f"Authorization {_mask(auth)} is not a credential of this upstream (client key?)")
        if key is not None and auth is not None and bearer != key:
            self.violations.append("x-api-key and Authorization both sent, with different values")

    def _headers(self, caller: Caller, rid: str) -> dict[str, str]:
        """Success headers: request-id, and the rate-limit family of the credential kind."""
        now = self.clock()
        headers = {"request-id": rid}
        if caller.token is None:
            reset = rfc3339(now + 60)
            for family, limit in (("requests", 4000), ("input-tokens", 2_000_000), ("output-tokens", 400_000)):
                headers.update({f"anthropic-ratelimit-{family}-limit": str(limit),
                                f"anthropic-ratelimit-{family}-remaining": str(limit - 1),
                                f"anthropic-ratelimit-{family}-reset": reset})
            return headers
        account = caller.token.account
        usage = account.usage or default_usage(now)
        five = (usage.get("five_hour") or {}).get("utilization", 0.0)
        week = (usage.get("seven_day") or {}).get("utilization", 0.0)
        headers.update({"anthropic-organization-id": account.org_uuid,
                        "anthropic-ratelimit-unified-status": "allowed",
                        "anthropic-ratelimit-unified-reset": str(account.resets_at),
                        "anthropic-ratelimit-unified-representative-claim": "five_hour",
                        "anthropic-ratelimit-unified-5h-status": "allowed",
                        "anthropic-ratelimit-unified-5h-reset": str(account.resets_at),
                        "anthropic-ratelimit-unified-5h-utilization": str(five / 100),
                        "anthropic-ratelimit-unified-7d-status": "allowed",
                        "anthropic-ratelimit-unified-7d-reset": str(int(now) + 7 * 86400),
                        "anthropic-ratelimit-unified-7d-utilization": str(week / 100)})
        return headers

    # -- small endpoints -----------------------------------------------------------------------------

    def _usage(self, caller: Caller) -> web.Response:
        assert caller.token is not None
        account = caller.token.account
        return web.json_response(account.usage if account.usage is not None else default_usage(self.clock()))

    def _models(self, request: web.Request, caller: Caller) -> web.Response:
        rid = self._next("req_011C")
        if caller.cred.fails("models"):
            message = "invalid x-api-key" if caller.key is not None else "Invalid bearer token"
            return reject(api_error(401, "authentication_error", message, rid))
        try:
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return reject(api_error(400, "invalid_request_error", "limit: Input should be between 1 and 1000", rid))
        return web.json_response(models_page(self.models, limit, request.query.get("after_id")),
                                 headers={"request-id": rid})

