"""A faithful fake of Google's Gemini surfaces on one server: AI Studio, Vertex AI and the OAuth token endpoint.

Usage::

    async with FakeGoogle(clock=clock) as g:
        g.add_key("AIzaSy…")                              # AI Studio: x-goog-api-key
        g.add_key("AIzaSy…", behaviour="rate_limited")    # gemini.md §4.3 behaviours
        sa = g.make_service_account("proj-1")             # Vertex: JWT bearer → ya29 token → Bearer
        g.reply = GScript(text="hi", calls=[FunctionCall("get_weather", {"city": "Paris"})])
        ... point gemini_base and vertex_base at g.base_url; sa["token_uri"] is g.token_uri ...
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
from multidict import CIMultiDict, MultiDict

from tests.fakes.claude_web_wire import WireError
from tests.fakes.common import FakeServer
from tests.fakes.gemini_errors import (
    INSUFFICIENT_SCOPES, MISSING_CREDENTIALS, STUDIO, UNREGISTERED, VERTEX, Rejected, behaviour_error, error_info,
    iam_denied, native_error, openai_error, unauthenticated,
)
from tests.fakes.gemini_native import ReplyHook, reject
from tests.fakes.gemini_oauth import CLOUD_PLATFORM, TokenEndpoint
from tests.fakes.gemini_openai import OpenAIEndpoints
from tests.fakes.gemini_state import (
    DEFAULT_FAIL_ON, NATIVE_METHODS, AccessToken, Cred, GoogleKey, Recorded, ServiceAccount,
)
from tests.fakes.gemini_wire import DEFAULT_MODELS, DEFAULT_THOUGHT, FunctionCall, GScript, Pieces

__all__ = ["FakeGoogle", "FunctionCall", "GScript", "GoogleKey", "Recorded", "ServiceAccount"]

VERTEX_MODEL = "/{version:v1|v1beta1}/projects/{project}/locations/{location}/publishers/google/models/{target}"
VERTEX_OPENAI = "/{version:v1beta1|v1}/projects/{project}/locations/{location}/endpoints/openapi/chat/completions"
ROUTES = (("POST", "/{version:v1beta|v1}/models/{target}", "studio_native"),
          ("GET", "/{version:v1beta|v1}/models", "studio_models"),
          ("GET", "/{version:v1beta|v1}/models/{target}", "studio_model"),
          ("POST", "/v1beta/openai/chat/completions", "openai_chat"),
          ("GET", "/v1beta/openai/models", "openai_models"),
          ("POST", "/token", "token"),
          ("POST", VERTEX_MODEL, "vertex_native"),
          ("POST", VERTEX_OPENAI, "vertex_openai_chat"))
# Google's frontend answers unknown paths with this page, not JSON.
NOT_FOUND_HTML = ("<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 404 (Not Found)!!1</title>\n"
                  "  <p><b>404.</b> <ins>That’s an error.</ins>\n  <p>The requested URL <code>{path}</code> was not "
                  "found on this server.  <ins>That’s all we know.</ins>\n")


def _mask(secret: str) -> str:
    return secret[:10] + "…"


def _bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization")
    return auth[7:].strip() if auth is not None and auth[:7].lower() == "bearer " else None


class FakeGoogle(TokenEndpoint, OpenAIEndpoints, FakeServer):
    """generativelanguage.googleapis.com, aiplatform.googleapis.com and oauth2.googleapis.com/token in one."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.base_url = ""  # set by start(): http://127.0.0.1:PORT, no trailing slash
        self.token_uri = ""  # base_url + "/token"
        self.keys: dict[str, GoogleKey] = {}
        self.service_accounts: dict[str, ServiceAccount] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.requests: list[Recorded] = []
        self.violations: list[str] = []  # spec rules the client broke (recorded, mostly not rejected)
        # Replies.
        self.reply: GScript | Pieces = GScript(text="Hello from the fake Gemini API.")
        # (body, model) → GScript | text | None (None: self.reply). Native calls hand the hook the camelCase
        # normalised body; OpenAI-compatible calls the body as sent.
        self.reply_hook: ReplyHook | None = None
        self.thought_text: Pieces = DEFAULT_THOUGHT  # shown when includeThoughts is on and the script has none
        self.chunk_chars = 8  # stream piece size when a reply is one string
        self.usage_every_chunk = True  # intermediate chunks carry running usageMetadata, as Google's do
        self.signature_models: tuple[str, ...] = ("gemini-3",)  # models that enforce thought signatures
        self.signatures: set[bytes] = set()  # thought signatures issued
        self.models: list[Any] = list(DEFAULT_MODELS)
        self.openai_extras: list[dict[str, Any]] = []  # per compatible call: extra_body / frequency_penalty seen
        # Token endpoint.
        self.token_error: str | int | None = None  # every exchange: "invalid_client", "invalid_grant" or a status
        self.token_calls = 0
        # How streams are written.
        self.stall_before_headers = False
        self.stall_after: int | None = None  # stall once this many chunks went out
        self.cut_after: int | None = None  # close the connection once this many chunks went out
        self.stream_stalled = asyncio.Event()
        self.stream_cancelled = asyncio.Event()
        self.stalled_streams = self.cancelled_streams = self.cut_streams = self.completed_streams = 0
        self._release = asyncio.Event()
        self._serial = 0
        self._stack: AsyncExitStack | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def _base_for(self, origin: str) -> str:
        """Google's bases have no path; the service accounts' token_uri is the fake's."""
        self.token_uri = origin + "/token"
        return origin

    def make_app(self) -> web.Application:
        """The aiohttp application (start() serves it)."""
        app = web.Application()
        for method, path, name in ROUTES:
            app.router.add_route(method, path, self._dispatch, name=name)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)  # everything else: recorded, 404
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.release()

    # -- credentials and queries ------------------------------------------------------------------

    def add_key(self, key: str, behaviour: str | None = None, **options: Any) -> GoogleKey:
        """Register an AI Studio key; options are GoogleKey fields (fail_on, fail_times, retry_delay)."""
        if behaviour is not None and behaviour not in DEFAULT_FAIL_ON:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        self.keys[key] = GoogleKey(behaviour=behaviour, key=key, **options)
        return self.keys[key]

    def make_service_account(self, project_id: str = "proj-1", email: str | None = None, *,
                             behaviour: str | None = None, **options: Any) -> dict[str, Any]:
        """A downloaded service-account JSON with a fresh RSA key, registered (see TokenEndpoint)."""
        if not self.token_uri:
            raise RuntimeError("start the fake first: the service account's token_uri is the fake's")
        if behaviour is not None and behaviour not in DEFAULT_FAIL_ON:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        return super().make_service_account(project_id, email, behaviour=behaviour, **options)

    def add_model(self, model: str, display_name: str | None = None, *, thinking: bool = True) -> None:
        """Add a generate-capable model to the list (unknown models answer 404, as Google's do)."""
        methods = ("generateContent", "countTokens", "createCachedContent", "batchGenerateContent")
        self.models.append((model, display_name or model, 1048576, 65536, methods, thinking))

    def requests_to(self, endpoint: str) -> list[Recorded]:
        """Recorded requests of one endpoint (a name from gemini_state.ENDPOINTS)."""
        return [r for r in self.requests if r.endpoint == endpoint]

    def url(self, path: str) -> str:
        """A path joined onto base_url, e.g. url("v1beta/models")."""
        return self.base_url + "/" + path.lstrip("/")

    # -- dispatch ----------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        entry = await self._record(request)
        route = request.match_info.route.name
        if entry.endpoint is None:
            self.violations.append(f"unknown path: {request.method} {request.path}")
            if route in ("studio_native", "vertex_native"):
                return reject(native_error(Rejected(404, "Method not found.")))
            return web.Response(status=404, content_type="text/html", charset="utf-8",
                                text=NOT_FOUND_HTML.format(path=request.path))
        if entry.endpoint == "token":
            return await self._token(request, entry)
        if request.method == "POST" and request.content_type != "application/json":
            self.violations.append(f"Content-Type {request.content_type!r} on {request.path}")
        vertex = entry.endpoint.startswith("vertex_")
        render: Callable[[Rejected], WireError] = openai_error if "openai" in entry.endpoint else native_error
        try:
            cred: Cred = self._vertex_cred(request, entry) if vertex else self._studio_cred(request, entry)
        except Rejected as err:
            return reject(render(err))
        if entry.endpoint.endswith("openai_chat"):
            return await self._openai_chat(request, entry, cred, vertex=vertex)
        if entry.endpoint == "openai_models":
            return self._openai_models(entry, cred)
        if entry.endpoint == "models":
            return self._models(request, entry, cred)
        return await self._native(request, entry, cred, vertex=vertex)

    async def _record(self, request: web.Request) -> Recorded:
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
        info = request.match_info
        route = info.route.name if info.http_exception is None else None
        endpoint, model = _endpoint(route, info.get("target"))
        entry = Recorded(request.method, request.path, MultiDict(request.query), CIMultiDict(request.headers), body,
                         form, endpoint, model, info.get("project"), info.get("location"))
        self.requests.append(entry)
        return entry

    # -- authentication ------------------------------------------------------------------------------

    def _studio_cred(self, request: web.Request, entry: Recorded) -> GoogleKey:
        """The AI Studio key of a call: x-goog-api-key (native) or Bearer (compatible); ?key= as Google allows."""
        compatible = (entry.endpoint or "").startswith("openai")
        header, query, bearer = request.headers.get("x-goog-api-key"), request.query.get("key"), _bearer(request)
        if query is not None:
            self.violations.append(f"API key in the URL (?key=) on {request.path}: gemini.md §3.1 wants the "
                                   "x-goog-api-key header")
        if compatible:
            key = bearer if bearer is not None else header if header is not None else query
        else:
            if bearer is not None:
                self.violations.append(f"Authorization {_mask(bearer)} on an AI Studio native call (client key?)")
            if header is not None and query is not None and header != query:
                self.violations.append("x-goog-api-key and ?key= both sent, with different values")
            key = header if header is not None else query
            if key is None and bearer is not None:
                raise unauthenticated("ACCESS_TOKEN_TYPE_UNSUPPORTED", STUDIO)
        if key is None:
            raise Rejected(403, UNREGISTERED)
        cred = self.keys.get(key)
        if cred is None:
            self.violations.append(f"key {_mask(key)} is not a key of this upstream (client key?)")
            raise behaviour_error("invalid", key=key, model="", retry_delay="", vertex=False)
        cred.calls[entry.endpoint or ""] += 1
        return cred

    def _vertex_cred(self, request: web.Request, entry: Recorded) -> ServiceAccount:
        """The service account behind a Vertex call's Bearer access token."""
        if "x-goog-api-key" in request.headers or "key" in request.query:
            self.violations.append(f"an API key on the Vertex call {request.path} (client key?)")
        bearer = _bearer(request)
        if bearer is None:
            raise unauthenticated("CREDENTIALS_MISSING", VERTEX, MISSING_CREDENTIALS)
        token = self.access_tokens.get(bearer)
        if token is None:
            self.violations.append(f"Bearer {_mask(bearer)} was not issued by the token endpoint (client key?)")
            raise unauthenticated("ACCESS_TOKEN_TYPE_UNSUPPORTED", VERTEX)
        if self.clock() >= token.expires_at:
            raise unauthenticated("ACCESS_TOKEN_EXPIRED", VERTEX)
        if CLOUD_PLATFORM not in token.scope.split():
            raise Rejected(403, INSUFFICIENT_SCOPES, [error_info("ACCESS_TOKEN_SCOPE_INSUFFICIENT", VERTEX)])
        account = token.account
        if entry.project != account.project_id:
            model = entry.model or _json_model(entry.json)
            raise iam_denied(entry.project or "", entry.location or "", model)
        account.calls[entry.endpoint or ""] += 1
        return account


def _endpoint(route: str | None, target: str | None) -> tuple[str | None, str | None]:
    """(endpoint name, model) of a matched route."""
    if route in ("studio_native", "vertex_native"):
        model, _, method = (target or "").partition(":")
        if method not in NATIVE_METHODS:
            return None, model or None
        return (method if route == "studio_native" else "vertex_" + method), model
    if route == "studio_models":
        return "models", None
    if route == "studio_model":
        return ("models", target) if target and ":" not in target else (None, None)
    return route, None


def _json_model(body: Any) -> str:
    model = body.get("model") if isinstance(body, dict) else None
    return str(model).removeprefix("google/") if model else ""
