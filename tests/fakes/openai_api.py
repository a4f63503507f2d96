"""A faithful fake OpenAI-compatible chat server (OpenAI, DeepSeek, OpenRouter flavours) on 127.0.0.1, port 0.

Usage::

    async with FakeOpenAI(clock=clock) as o:        # o.base_url ends in /v1
        o.add_key("sk-proj-…")                      # or o.open_access = True (local servers)
        o.flavour = "deepseek"                      # where reasoning goes, error shapes, limits
        o.reply = OScript(text="hi", reasoning="hmm", tool_calls=[OToolCall("f", '{"a":1}')])
        ... point the provider's base_url at o.base_url; then read o.requests_to("chat"), o.violations ...
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, Union

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.anthropic_oauth import reject
from tests.fakes.claude_web_wire import WireError
from tests.fakes.common import FakeServer
from tests.fakes.openai_checks import check_body
from tests.fakes.openai_errors import (
    BEHAVIOURS, Bad, behaviour_error, from_bad, invalid_key, mask, missing_key, stream_error_chunk, wire,
)
from tests.fakes.openai_state import ENDPOINTS, OKey, Recorded
from tests.fakes.openai_wire import (
    DEFAULT_MODELS, DONE, FLAVOURS, OPENROUTER_COMMENT, SSE_HEADERS, OScript, OToolCall, Pieces, Plan, completion_json,
    count_prompt_tokens, models_list, plan_reply, sse, stream_chunks,
)

__all__ = ["FakeOpenAI", "OKey", "OScript", "OToolCall", "Recorded"]

ReplyHook = Callable[[dict[str, Any]], Union[OScript, Pieces, None]]
# Headers of other dialects: a proxy that forwards them to an OpenAI-compatible server leaks its client's request.
FOREIGN_HEADERS = ("x-api-key", "anthropic-version", "anthropic-beta", "x-goog-api-key")


class FakeOpenAI(FakeServer):
    """An OpenAI-compatible `/v1/chat/completions` and `/v1/models` server, scripted and recording."""

    def __init__(self, *, flavour: str = "openai", prefix: str = "/v1", clock: Callable[[], float] = time.time) -> None:
        self.flavour = flavour  # "openai" | "deepseek" | "openrouter"
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.clock = clock
        self.origin = ""  # set by start(): scheme://host:port
        self.base_url = ""  # origin + prefix, no trailing slash (e.g. http://127.0.0.1:4321/v1)
        self.keys: dict[str, OKey] = {}
        self.open_access = False  # a local server: requests without a registered key are served
        self.reject_stream_options = False  # answer 400 to any request carrying stream_options
        self.interleave_tools = True  # stream parallel tool calls' fragments alternating (False: one after another)
        self.models: list[str] | None = None  # None: the flavour's DEFAULT_MODELS
        self.accept_any_model = False  # serve any model name (local servers load what they are asked for)
        self.reply: OScript | Pieces = OScript(text="Hello from the fake OpenAI API.")
        self.reply_hook: ReplyHook | None = None  # body → script (None: use reply)
        self.chunk_chars = 4  # delta size when text or reasoning is one string
        self.requests: list[Recorded] = []
        self.violations: list[str] = []  # rules the client broke (recorded whether or not refused)
        self.completions: list[dict[str, Any]] = []  # bodies of chat calls answered with status 200
        # How streams are written: counts are of SSE blocks (OpenRouter's leading comment is one).
        self.stall_before_headers = False
        self.stall_after: int | None = None  # stall once this many blocks went out
        self.cut_after: int | None = None  # close the connection once this many blocks went out
        self.stream_stalled = asyncio.Event()
        self.stream_cancelled = asyncio.Event()
        self.stalled_streams = self.cancelled_streams = self.cut_streams = self.completed_streams = 0
        self._release = asyncio.Event()
        self._serial = 0
        self._stack: AsyncExitStack | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> str:
        """Listen on 127.0.0.1 at a free port; return base_url."""
        if self.flavour not in FLAVOURS:
            raise ValueError(f"unknown flavour {self.flavour!r}")
        return await super().start()

    def make_app(self) -> web.Application:
        """The aiohttp application (start() serves it)."""
        app = web.Application()
        app.router.add_route("POST", self.prefix + "/chat/completions", self._dispatch, name="chat")
        app.router.add_route("GET", self.prefix + "/models", self._dispatch, name="models")
        app.router.add_route("*", "/{tail:.*}", self._dispatch)  # everything else: recorded, 404
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.release()

    # -- credentials and queries ---------------------------------------------------------------------------

    def add_key(self, key: str, behaviour: str | None = None, *, fail_times: int | None = None,
                retry_after: float | None = 20, reset_after: float | None = None) -> OKey:
        """Register an API key; `behaviour` is one of openai_errors.BEHAVIOURS."""
        if behaviour is not None and behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        self.keys[key] = OKey(key, behaviour, fail_times, retry_after, reset_after)
        return self.keys[key]

    def requests_to(self, endpoint: str) -> list[Recorded]:
        """Recorded requests of one endpoint: "chat" or "models"."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        return [r for r in self.requests if r.endpoint == endpoint]

    def url(self, path: str) -> str:
        """A path joined onto base_url, e.g. url("chat/completions")."""
        return self.base_url + "/" + path.lstrip("/")

    def model_ids(self) -> list[str]:
        """The models this server lists and serves."""
        return list(self.models) if self.models is not None else list(DEFAULT_MODELS[self.flavour])

    def _request_id(self) -> str:
        self._serial += 1
        return f"req_{self._serial:032x}"

    # -- dispatch ------------------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        entry = await self._record(request)
        resp = await self._answer(request, entry)
        entry.status = resp.status
        return resp

    async def _answer(self, request: web.Request, entry: Recorded) -> web.StreamResponse:
        rid = self._request_id()
        if entry.endpoint is None:
            self.violations.append(f"unknown path: {request.method} {request.path}")
            return reject(wire(self.flavour, 404, f"Invalid URL ({request.method} {request.path})",
                               err_type="invalid_request_error"))
        key = self._authenticate(request, entry)
        if isinstance(key, WireError):
            return reject(key)
        if entry.endpoint == "models":
            return web.json_response(models_list(self.flavour, self.model_ids(), int(self.clock()) - 86400),
                                     headers={"x-request-id": rid})
        return await self._chat(request, entry, key, rid)

    async def _record(self, request: web.Request) -> Recorded:
        route = request.match_info.route
        endpoint = route.name if route.name in ENDPOINTS else None
        raw = await request.read() if request.can_read_body else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        entry = Recorded(request.method, request.path, request.query_string, CIMultiDict(request.headers), raw, body,
                         endpoint)
        self.requests.append(entry)
        return entry

    def _authenticate(self, request: web.Request, entry: Recorded) -> OKey | None | WireError:
        """The caller's key (None: anonymous on an open server), or the 401 to answer."""
        for name in FOREIGN_HEADERS:
            if name in request.headers:
                self.violations.append(f"{name} header sent to an OpenAI-compatible server")
        auth = request.headers.get("Authorization")
        bearer = auth[7:].strip() if auth is not None and auth[:7].lower() == "bearer " else None
        entry.key = bearer
        okey = self.keys.get(bearer or "")
        # The proxy must never forward its client's key: anything this server did not issue is such a key.
        if auth is not None and okey is None:
            self.violations.append(f"Authorization {mask(auth)} is not a credential of this upstream (client key?)")
        if okey is None:
            if self.open_access:
                return None
            return missing_key(self.flavour) if not bearer else invalid_key(self.flavour, bearer)
        okey.calls[entry.endpoint or ""] += 1
        if okey.behaviour == "invalid" and okey.strikes(entry.endpoint or ""):
            return invalid_key(self.flavour, okey.key)
        return okey

    # -- chat completions ------------------------------------------------------------------------------------

    async def _chat(self, request: web.Request, entry: Recorded, okey: OKey | None, rid: str) -> web.StreamResponse:
        body = entry.json
        notes: list[str] = []
        try:
            check_body(body, notes, flavour=self.flavour, reject_stream_options=self.reject_stream_options)
            self._check_model(body["model"])
        except Bad as bad:
            return reject(from_bad(self.flavour, bad, rid))
        finally:
            self.violations += notes
        stream = body.get("stream") is True
        failing = False
        if okey is not None and okey.behaviour != "invalid" and okey.strikes("chat"):
            if not (okey.behaviour == "stream_error" and stream):
                assert okey.behaviour is not None
                return reject(behaviour_error(self.flavour, okey.behaviour, model=body["model"],
                                              retry_after=okey.retry_after, reset_after=okey.reset_after,
                                              now=self.clock()))
            failing = True
        plan = plan_reply(self._script_for(body), flavour=self.flavour, model=body["model"],
                          created=int(self.clock()), prompt_tokens=count_prompt_tokens(body),
                          chunk_chars=self.chunk_chars, seed=rid)
        self.completions.append(body)
        if okey is not None:
            okey.answered += 1
        headers = self._headers(rid)
        if not stream:
            # OpenAI pretty-prints its JSON answers; the others write compact JSON.
            indent = 2 if self.flavour == "openai" else None
            text = json.dumps(completion_json(plan), indent=indent, ensure_ascii=False)
            return web.Response(text=text, content_type="application/json", headers=headers)
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True
        return await self._stream(request, self._sse_blocks(plan, include_usage, failing), {**SSE_HEADERS, **headers})

    def _sse_blocks(self, plan: Plan, include_usage: bool, failing: bool) -> list[bytes]:
        """The SSE blocks of a stream: chunks and [DONE], or half the chunks and an error chunk."""
        chunks = stream_chunks(plan, include_usage=include_usage and not failing, interleave=self.interleave_tools)
        data = [sse(c) for c in chunks]
        if failing:
            envelope = {k: v for k, v in chunks[0].items() if k not in ("choices", "usage", "obfuscation")}
            data = data[:max(2, (len(chunks) - 1) // 2)] + [sse(stream_error_chunk(self.flavour, envelope))]
        else:
            data.append(DONE)
        if self.flavour == "openrouter":
            data.insert(0, OPENROUTER_COMMENT)
        return data

    def _check_model(self, model: str) -> None:
        if self.accept_any_model or model in self.model_ids():
            return
        if self.flavour == "openai":
            raise Bad(f"The model `{model}` does not exist or you do not have access to it.", status=404,
                      code="model_not_found")
        raise Bad("Model Not Exist" if self.flavour == "deepseek" else f"{model} is not a valid model ID")

    def _script_for(self, body: dict[str, Any]) -> OScript:
        answer = self.reply_hook(body) if self.reply_hook is not None else None
        answer = self.reply if answer is None else answer
        return answer if isinstance(answer, OScript) else OScript(text=answer)

    def _headers(self, rid: str) -> dict[str, str]:
        headers = {"x-request-id": rid}
        if self.flavour == "openai":
            headers.update({"openai-organization": "org-c1ewdrlitefake", "openai-processing-ms": "42",
                            "openai-version": "2020-10-01", "x-ratelimit-limit-requests": "500",
                            "x-ratelimit-remaining-requests": "499", "x-ratelimit-reset-requests": "120ms",
                            "x-ratelimit-limit-tokens": "30000", "x-ratelimit-remaining-tokens": "29000",
                            "x-ratelimit-reset-tokens": "2ms"})
        return headers

    # -- streaming -------------------------------------------------------------------------------------------
