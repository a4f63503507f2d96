"""A faithful fake of the claude.ai web API (spec/claude-web.md) on 127.0.0.1, port 0.

Usage::

    async with FakeClaudeWeb(prefix="/mirror/") as fake:
        fake.add_account("sk-ant-sid01-…")
        ... point the proxy's rproxy at fake.base_url ...
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, Union

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.claude_web_state import Account, Conversation, FlagSpec, Recorded, Upload, wire_flags
from tests.fakes.claude_web_wire import (
    DEFAULT_FAIL_ON, SSE_HEADERS, Pieces, Reply, StreamPlan, WireError, behaviour_error, completion_violations,
    echo_last_line, encode_event, error_json, is_uuid4, messages_events, now_iso, raw_events, session_key,
    split_text,
)
from tests.fakes.common import FakeServer

__all__ = ["Account", "Conversation", "FakeClaudeWeb", "Recorded", "Reply", "Upload", "echo_last_line",
           "session_key"]

ReplyHook = Callable[[dict[str, Any]], Union[Reply, Pieces, None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PRO_CAPABILITIES = ("chat", "claude_pro")
FREE_CAPABILITIES = ("chat",)
DEFAULT_MODEL = "claude-sonnet-4-20250514"
JSON_ENDPOINTS = ("create", "settings", "completion")


def _reject(err: WireError) -> web.Response:
    return web.Response(status=err.status, headers=err.headers, text=err.body)


class FakeClaudeWeb(FakeServer):
    """The claude.ai web upstream: accounts, conversations, uploads and completion streams."""

    def __init__(self, *, prefix: str = "/") -> None:
        self.prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
        self.origin = ""  # set by start(): scheme://host:port, what the Origin header must be
        self.base_url = ""  # origin + prefix, with a trailing slash: the proxy's rproxy
        self.accounts: dict[str, Account] = {}
        self.conversations: dict[str, Conversation] = {}
        self.uploads: list[Upload] = []
        self.completions: list[dict[str, Any]] = []
        self.requests: list[Recorded] = []
        self.violations: list[str] = []  # spec rules the client broke (recorded, mostly not rejected)
        # What completions answer.
        self.reply: Reply | Pieces = "Hello from the fake claude.ai."
        self.reply_hook: ReplyHook | None = None
        self.thinking_text: Pieces = "Let me think about that."
        self.chunk_chars = 4  # text_delta size when a reply is one string
        # How streams are written.
        self.newline = "\n"
        self.write_chunk_bytes: int | None = None  # None: one write per event
        self.raw_event_lines = True  # raw mode writes `event: completion` lines
        self.stall_before_headers = False
        self.stall_after: int | None = None  # stall once this many events went out
        self.cut_after: int | None = None  # close the connection once this many events went out
        self.stream_stalled = asyncio.Event()
        self.stream_cancelled = asyncio.Event()
        self.stalled_streams = 0
        self.cancelled_streams = 0
        self.cut_streams = 0
        self.completed_streams = 0
        self._release = asyncio.Event()
        self._stack: AsyncExitStack | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        """The aiohttp application (start() serves it; tests may mount it themselves)."""
        app = web.Application(middlewares=[self._middleware])
        p = self.prefix
        app.router.add_get(p + "api/bootstrap", self._bootstrap, name="bootstrap")
        app.router.add_get(p + "api/organizations", self._organizations, name="organizations")
        conv = p + "api/organizations/{org}/chat_conversations"
        app.router.add_post(conv, self._create, name="create")
        app.router.add_put(conv + "/{conv}", self._settings, name="settings")
        app.router.add_delete(conv + "/{conv}", self._delete, name="delete")
        app.router.add_post(conv + "/{conv}/completion", self._completion, name="completion")
        app.router.add_post(p + "api/{org}/upload", self._upload, name="upload")
        app.on_shutdown.append(self._on_shutdown)
        app.on_response_prepare.append(self._set_session_cookies)
        return app

    async def _set_session_cookies(self, request: web.Request, response: web.StreamResponse) -> None:
        """As claude.ai's answers do: cookies of the visit (the account's last organization, an
        activity id), which a client must not send with another account's calls."""
        account = self.accounts.get(session_key(request.headers.get("Cookie")) or "")
        if account is not None:
            # headers, not set_cookie(): aiohttp has turned its cookies into headers by now
            response.headers.add("Set-Cookie", f"lastActiveOrg={account.org_uuid}; Path=/")
            response.headers.add("Set-Cookie", f"activitySessionId={uuid.uuid4()}; Path=/")

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.release()

    # -- accounts and queries ---------------------------------------------------------------

    def add_account(self, cookie: str, *, pro: bool = True, capabilities: list[str] | None = None,
                    flags: tuple[FlagSpec, ...] | list[FlagSpec] | None = (), behaviour: str | None = None,
                    email: str | None = None, **options: Any) -> Account:
        """Add an account; `flags=None` drops the active_flags key; options are Account fields."""
        if behaviour is not None and behaviour not in DEFAULT_FAIL_ON:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        caps = list(capabilities if capabilities is not None else PRO_CAPABILITIES if pro else FREE_CAPABILITIES)
        options.setdefault("resets_at", int(time.time()) + 3600)
        account = Account(cookie=cookie, email=email or f"user{len(self.accounts) + 1}@example.com", pro=pro,
                          capabilities=caps, flags=wire_flags(flags, time.time()), behaviour=behaviour, **options)
        self.accounts[cookie] = account
        return account

    def requests_to(self, endpoint: str) -> list[Recorded]:
        """Recorded requests of one endpoint (a name from ENDPOINTS)."""
        return [r for r in self.requests if r.endpoint == endpoint]

    def url(self, path: str) -> str:
        """A path joined onto base_url, e.g. url("api/bootstrap")."""
        return self.base_url + path.lstrip("/")

    # -- checks common to every call ---------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        entry = await self._record(request)
        if entry.endpoint is None:
            self.violations.append(f"unknown path: {request.method} {request.path}")
            return _reject(error_json(404, "not_found_error", "Not found"))
        rejected = self._check_origin(request) or self._check_account(request, entry.endpoint)
        if rejected is None and entry.endpoint in JSON_ENDPOINTS and not isinstance(entry.json, dict):
            self.violations.append(f"{entry.endpoint} body is not a JSON object")
            rejected = _reject(error_json(400, "invalid_request_error", "Expected a JSON object"))
        return rejected or await handler(request)

    async def _record(self, request: web.Request) -> Recorded:
        route = request.match_info.route
        endpoint = None if request.match_info.http_exception is not None else route.name
        body = None
        if request.content_type != "multipart/form-data" and request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = None
        path = request.path[len(self.prefix):] if request.path.startswith(self.prefix) else request.path
        entry = Recorded(request.method, path, request.query_string, CIMultiDict(request.headers), body, endpoint)
        self.requests.append(entry)
        return entry

    def _check_origin(self, request: web.Request) -> web.Response | None:
        origin = request.headers.get("Origin")
        if origin == self.origin:
            return None
        self.violations.append(f"bad Origin {origin!r} on {request.path}, expected {self.origin!r}")
        return _reject(error_json(400, "invalid_request_error", "fake claude.ai: bad Origin header"))

    def _check_account(self, request: web.Request, endpoint: str) -> web.Response | None:
        key = session_key(request.headers.get("Cookie"))
        if key is None:
            self.violations.append(f"Cookie without one sessionKey on {request.path}")
        account = self.accounts.get(key or "")
        if account is None:
            return _reject(error_json(401, "authentication_error", "Invalid authorization"))
        account.calls[endpoint] += 1
        if not account.fails(endpoint):
            return None
        err = behaviour_error(account.behaviour or "", resets_at=account.resets_at,
                              reset_in_body=account.reset_in_body, reset_header=account.reset_header,
                              login_path=self.prefix + "login")
        return _reject(err)

    def _account(self, request: web.Request) -> Account:
        return self.accounts[session_key(request.headers.get("Cookie")) or ""]

    def _expect_referer(self, request: web.Request, page: str) -> None:
        # Spec §3: Referer is E + "new", E + "new?incognito" or E + "chat/<conv>".
        got = request.headers.get("Referer")
        if got != self.base_url + page:
            self.violations.append(f"Referer {got!r} on {request.path}, expected {self.base_url + page!r}")

    def _expect_json(self, request: web.Request) -> None:
        if request.content_type != "application/json":
            self.violations.append(f"Content-Type {request.content_type!r} on {request.path}")

    # -- account and conversation endpoints -----------------------------------------------------

    async def _bootstrap(self, request: web.Request) -> web.Response:
        self._expect_referer(request, "new")
        return web.json_response(self._account(request).bootstrap())

    async def _organizations(self, request: web.Request) -> web.Response:
        self._expect_referer(request, "new")
        account = self._account(request)
        return web.json_response(account.extra_orgs + [account.organization()])

    def _check_org(self, request: web.Request) -> web.Response | None:
        if request.match_info["org"] == self._account(request).org_uuid:
            return None
        return _reject(error_json(404, "not_found_error", "Organization not found"))

    def _conversation(self, request: web.Request) -> Conversation | web.Response:
        rejected = self._check_org(request)
        if rejected is not None:
            return rejected
        conv = self.conversations.get(request.match_info["conv"])
        if conv is None or conv.deleted or conv.org != request.match_info["org"]:
            return _reject(error_json(404, "not_found_error", "Conversation not found"))
        return conv

    async def _create(self, request: web.Request) -> web.Response:
        rejected = self._check_org(request)
        if rejected is not None:
            return rejected
        self._expect_json(request)
        body = await request.json()
        conv_id, temporary = str(body.get("uuid", "")), body.get("is_temporary")
        self._expect_referer(request, "new?incognito" if temporary else "new")
        if not is_uuid4(conv_id) or not isinstance(temporary, bool) or not isinstance(body.get("name"), str):
            self.violations.append(f"create body {body!r}")
            return _reject(error_json(400, "invalid_request_error", "Invalid conversation"))
        if conv_id in self.conversations:
            return _reject(error_json(409, "conflict_error", "Conversation already exists"))
        account = self._account(request)
        conv = Conversation(conv_id, account.org_uuid, account.cookie, body["name"], temporary,
                            {"paprika_mode": account.paprika_mode})
        self.conversations[conv_id] = conv
        return web.json_response(conv.wire(), status=201)

    async def _settings(self, request: web.Request) -> web.Response:
        conv = self._conversation(request)
        if isinstance(conv, web.Response):
            return conv
        self._expect_json(request)
        self._expect_referer(request, "chat/" + conv.uuid)
        settings = (await request.json()).get("settings")
        if not isinstance(settings, dict) or settings.get("paprika_mode") not in (None, "extended"):
            self.violations.append(f"settings body {settings!r}")
            return _reject(error_json(400, "invalid_request_error", "Invalid settings"))
        if settings.get("paprika_mode") == "extended" and not self._account(request).pro:
            self.violations.append("paprika_mode extended set on a free account")
        conv.settings.update(settings)
        conv.settings_calls += 1
        return web.json_response(conv.wire())

    async def _delete(self, request: web.Request) -> web.Response:
        conv = self._conversation(request)
        if isinstance(conv, web.Response):
            return conv
        if conv.is_temporary:
            self.violations.append(f"temporary conversation {conv.uuid} deleted")
        conv.deleted = True
        return web.Response(status=204)

    async def _upload(self, request: web.Request) -> web.Response:
        rejected = self._check_org(request)
        if rejected is not None:
            return rejected
        if not self._referer_is_chat(request):
            self.violations.append(f"Referer {request.headers.get('Referer')!r} on upload")
        parts = []
        async for part in await request.multipart():
            data = await part.read()  # type: ignore[union-attr]
            parts.append((part.name, part.filename, part.headers.get("Content-Type"), bytes(data)))
        if [p[0] for p in parts] != ["file"]:
            self.violations.append(f"upload parts {[p[0] for p in parts]!r}, expected ['file']")
            return _reject(error_json(400, "invalid_request_error", "Expected one part named file"))
        _, filename, content_type, data = parts[0]
        upload = Upload(str(uuid.uuid4()), request.match_info["org"], filename, content_type, len(data), data)
        self.uploads.append(upload)
        return web.json_response({"file_uuid": upload.file_uuid, "file_name": filename,
                                  "size_bytes": upload.size, "created_at": now_iso()})

    def _referer_is_chat(self, request: web.Request) -> bool:
        referer = request.headers.get("Referer", "")
        page = referer[len(self.base_url):] if referer.startswith(self.base_url) else ""
        return page.startswith("chat/") and page[5:] in self.conversations

    # -- completion ------------------------------------------------------------------------------

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        conv = self._conversation(request)
        if isinstance(conv, web.Response):
            return conv
        self._expect_json(request)
        self._expect_referer(request, "chat/" + conv.uuid)
        if "text/event-stream" not in request.headers.get("Accept", ""):
            self.violations.append(f"completion Accept {request.headers.get('Accept')!r}")
        body = await request.json()
        account = self._account(request)
        self.violations += completion_violations(body, account.pro, {u.file_uuid for u in self.uploads})
        mode = body.get("rendering_mode")
        if mode not in ("messages", "raw"):
            return _reject(error_json(400, "invalid_request_error", f"Invalid rendering_mode {mode!r}"))
        reply = self._reply_for(body)
        chunks = self._raw_chunks(body, reply) if mode == "raw" else self._messages_chunks(body, conv, reply)
        conv.completions.append(body)
        self.completions.append(body)
        account.completions += 1
        return await self._stream(request, chunks, SSE_HEADERS)

    def _reply_for(self, body: dict[str, Any]) -> Reply:
        answer = self.reply_hook(body) if self.reply_hook is not None else None
        answer = self.reply if answer is None else answer
        return answer if isinstance(answer, Reply) else Reply(text=answer)

    def _messages_chunks(self, body: dict[str, Any], conv: Conversation, reply: Reply) -> list[bytes]:
        thinking = None
        if conv.settings.get("paprika_mode") == "extended":
            thinking = split_text(self.thinking_text if reply.thinking is None else reply.thinking,
                                  self.chunk_chars)
        searching = any(t.get("name") == "web_search" for t in body.get("tools") or [])
        plan = StreamPlan(text=split_text(reply.text, self.chunk_chars), thinking=thinking,
                          search_query=reply.search_query if searching else None,
                          stop_reason=reply.stop_reason, error=reply.error,
                          message_id="chatcompl_" + uuid.uuid4().hex[:24],
                          tool_id="srvtoolu_" + uuid.uuid4().hex[:24], timestamp=now_iso())
        return [encode_event(e["type"], e, self.newline) for e in messages_events(plan)]

    def _raw_chunks(self, body: dict[str, Any], reply: Reply) -> list[bytes]:
        name = "completion" if self.raw_event_lines else None
        events = raw_events(split_text(reply.text, self.chunk_chars), body.get("model") or DEFAULT_MODEL,
                            reply.error)
        return [encode_event(name, e, self.newline) for e in events]

    async def _write(self, resp: web.StreamResponse, chunk: bytes) -> None:
        size = self.write_chunk_bytes or len(chunk)
        for i in range(0, len(chunk), size):
            await resp.write(chunk[i:i + size])
            # Yield between writes so events leave as separate sends, not one buffered burst.
            await asyncio.sleep(0)
