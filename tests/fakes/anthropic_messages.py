"""The inference half of the fake api.anthropic.com: v1/messages (JSON and SSE) and count_tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Union

from aiohttp import web

from tests.fakes.anthropic_checks import (
    Rejection, billing_violations, looks_like_claude_code, thinking_on, validate_body,
)
from tests.fakes.anthropic_oauth import reject
from tests.fakes.anthropic_state import Caller, Recorded
from tests.fakes.anthropic_wire import (
    CLAUDE_CODE_ONLY, ERROR_STATUS, LONG_CONTEXT_BETA, LONG_CONTEXT_DENIED, NO_CREDIT, RATE_LIMITED, SSE_HEADERS,
    Pieces, Script, WireError, api_error, count_input_tokens, encode, message_json, plan_reply, rfc3339,
    stream_events,
)

ReplyHook = Callable[[dict[str, Any]], Union[Script, Pieces, None]]
OVERLOADED = {"type": "overloaded_error", "message": "Overloaded"}
FORBIDDEN = "Your API key does not have permission to use the specified resource."
NOT_FOUND = "Not Found"


class MessagesEndpoints:
    """Mixin of FakeAnthropic: scripted Messages answers, count_tokens, and the stream knobs."""

    # Set by FakeAnthropic.__init__; declared here for readers and type checkers.
    reply: Script | Pieces
    reply_hook: ReplyHook | None
    thinking_text: Pieces
    chunk_chars: int
    signatures: dict[str, str]
    messages: list[dict[str, Any]]
    count_tokens_status: int | None
    count_tokens_calls: int
    violations: list[str]
    stall_before_headers: bool
    stall_after: int | None
    cut_after: int | None
    stream_stalled: asyncio.Event
    stream_cancelled: asyncio.Event
    stalled_streams: int
    cancelled_streams: int
    cut_streams: int
    completed_streams: int
    _release: asyncio.Event
    clock: Callable[[], float]
    _next: Callable[[str], str]
    _headers: Callable[[Caller, str], dict[str, str]]

    # -- v1/messages -----------------------------------------------------------------------------

    async def _messages(self, request: web.Request, entry: Recorded, caller: Caller) -> web.StreamResponse:
        body = entry.json
        rid = self._next("req_011C")
        if caller.token is not None and isinstance(body, dict):
            self.violations += billing_violations(body, request.headers.get("User-Agent", ""))
            # The OAuth gate is keyed on the system prompt (claude-code.md §6.3).
            if not looks_like_claude_code(body.get("system"), caller.token.account.needs_prelude):
                return reject(api_error(400, "invalid_request_error", CLAUDE_CODE_ONLY, rid))
        rejected = validate_body(body, count=False, signature_ok=self._signature_ok)
        if rejected is not None:
            return reject(api_error(*rejected, rid))
        stream = bool(body.get("stream"))
        failure = self._failure(request, caller, "messages", rid, stream)
        if isinstance(failure, WireError):
            return reject(failure)
        script = Script(error=OVERLOADED) if failure == "in_stream" else self._script_for(body)
        plan = plan_reply(script, model=body["model"], input_tokens=count_input_tokens(body),
                          thinking_on=thinking_on(body) and failure is None, thinking_text=self.thinking_text,
                          chunk_chars=self.chunk_chars, seed=self._next("msg"))
        if plan.thinking is not None:
            self.signatures[plan.signature] = "".join(plan.thinking)
        if not stream and plan.error is not None:
            err_type = plan.error.get("type", "api_error")
            return reject(api_error(ERROR_STATUS.get(err_type, 500), err_type, plan.error.get("message", ""), rid))
        self.messages.append(body)
        caller.cred.messages += 1
        headers = self._headers(caller, rid)
        if not stream:
            return web.json_response(message_json(plan), headers=headers)
        return await self._stream(request, [encode(e) for e in stream_events(plan)], {**SSE_HEADERS, **headers})

    def _signature_ok(self, signature: str, thinking: str) -> bool:
        # Signatures bind the thinking text: only the fake's own, on the text it signed, pass.
        return self.signatures.get(signature) == thinking

    def _script_for(self, body: dict[str, Any]) -> Script:
        answer = self.reply_hook(body) if self.reply_hook is not None else None
        answer = self.reply if answer is None else answer
        return answer if isinstance(answer, Script) else Script(text=answer)

    def _failure(self, request: web.Request, caller: Caller, endpoint: str, rid: str,
                 stream: bool) -> WireError | str | None:
        """The credential's behaviour answer for this call, "in_stream", or None."""
        cred = caller.cred
        if cred.behaviour == "long_context_denied" and LONG_CONTEXT_BETA not in request.headers.get(
                "anthropic-beta", ""):
            return None
        if not cred.fails(endpoint):
            return None
        kind = cred.behaviour
        if kind == "overloaded_in_stream" and stream:
            return "in_stream"
        if kind in ("overloaded", "overloaded_in_stream"):
            return api_error(529, "overloaded_error", "Overloaded", rid)
        if kind == "rate_limited":
            return self._rate_limited(caller, rid)
        if kind == "invalid_key":
            message = "invalid x-api-key" if caller.key is not None else "Invalid bearer token"
            return api_error(401, "authentication_error", message, rid)
        simple = {"long_context_denied": (400, "invalid_request_error", LONG_CONTEXT_DENIED),
                  "no_credit": (400, "invalid_request_error", NO_CREDIT),
                  "forbidden": (403, "permission_error", FORBIDDEN)}
        return api_error(*simple.get(kind or "", (500, "api_error", "Internal server error")), rid)

    def _rate_limited(self, caller: Caller, rid: str) -> WireError:
        now = self.clock()
        resets_at = caller.cred.resets_at or int(now) + 60
        err = api_error(429, "rate_limit_error", RATE_LIMITED, rid)
        err.headers["anthropic-ratelimit-unified-status"] = "rejected"
        err.headers["anthropic-ratelimit-unified-reset"] = str(resets_at)
        if caller.key is not None:
            err.headers["retry-after"] = str(max(1, int(resets_at - now)))
            err.headers["anthropic-ratelimit-requests-remaining"] = "0"
            err.headers["anthropic-ratelimit-requests-reset"] = rfc3339(resets_at)
        return err

    # -- v1/messages/count_tokens ------------------------------------------------------------------

    async def _count_tokens(self, request: web.Request, entry: Recorded, caller: Caller) -> web.Response:
        self.count_tokens_calls += 1
        rid = self._next("req_011C")
        if self.count_tokens_status == 404:
            return reject(api_error(404, "not_found_error", NOT_FOUND, rid))
        if self.count_tokens_status is not None:
            return reject(api_error(self.count_tokens_status, "permission_error",
                                    "This account does not have access to token counting.", rid))
        body = entry.json
        rejected: Rejection | None = None
        if isinstance(body, dict):
            extra = [name for name in ("max_tokens", "stream") if name in body]
            if extra:
                rejected = (400, "invalid_request_error", f"{extra[0]}: Extra inputs are not permitted")
        rejected = rejected or validate_body(body, count=True, signature_ok=self._signature_ok)
        if rejected is not None:
            return reject(api_error(*rejected, rid))
        failure = self._failure(request, caller, "count_tokens", rid, False)
        if isinstance(failure, WireError):
            return reject(failure)
        return web.json_response({"input_tokens": count_input_tokens(body)}, headers={"request-id": rid})
