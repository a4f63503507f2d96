"""The native half of the fake Google APIs: generateContent, streamGenerateContent, countTokens, models."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Union

from aiohttp import web

from tests.fakes.claude_web_wire import WireError
from tests.fakes.gemini_checks import (
    check_signatures, include_thoughts, normalise, safety_failure, validate_generate,
)
from tests.fakes.gemini_errors import (
    Rejected, bad_request, behaviour_error, error_body, native_error, not_found, plain_bad_request, vertex_not_found,
)
from tests.fakes.gemini_state import KEY_LEVEL, Cred, GoogleKey, Recorded
from tests.fakes.gemini_wire import (
    GOOGLE_HEADERS, JSON_TYPE, SSE_HEADERS, GScript, Pieces, Plan, array_chunks, b64decode_any, blocked_feedback,
    count_tokens, finish_other, models_page, no_candidates, plan_reply, pretty, response_json, rfc3339_micro,
    sse_chunk, stream_objects,
)

ReplyHook = Callable[[dict[str, Any], str], Union[GScript, Pieces, None]]
MAX_PAGE = 1000
DEFAULT_PAGE = 50


def reject(err: WireError) -> web.Response:
    """An aiohttp response for a wire error."""
    return web.Response(status=err.status, headers=err.headers, text=err.body)


class NativeEndpoints:
    """Mixin of FakeGoogle: scripted native answers, token counts, the model list and the stream knobs."""

    # Set by FakeGoogle.__init__; declared here for readers and type checkers.
    reply: GScript | Pieces
    reply_hook: ReplyHook | None
    thought_text: Pieces
    chunk_chars: int
    usage_every_chunk: bool
    signature_models: tuple[str, ...]
    signatures: set[bytes]
    models: list[Any]
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
    _serial: int
    clock: Callable[[], float]

    # -- shared by native and OpenAI-compatible calls ---------------------------------------------

    def model_known(self, model: str) -> bool:
        """Whether `model` is in the fake's model list."""
        return any(m[0] == model for m in self.models)

    def _key_level(self, cred: Cred, endpoint: str, model: str, vertex: bool) -> None:
        """Raise the credential's own failure (before the body is read, as Google's frontend does)."""
        if cred.strikes(endpoint, KEY_LEVEL):
            key = cred.key if isinstance(cred, GoogleKey) else ""
            raise behaviour_error(cred.behaviour or "", key=key, model=model, retry_delay=cred.retry_delay,
                                  vertex=vertex)

    def _model_level(self, cred: Cred, endpoint: str, safety: Any, stream: bool, vertex: bool) -> str | None:
        """The request-level behaviour: raises errors, returns "empty", "in_stream", … or None."""
        if cred.behaviour == "safety_rejected":
            failure = safety_failure(safety)
            if failure is not None and cred.strikes(endpoint):
                raise failure
            return None
        if not cred.strikes(endpoint):
            return None
        kind = cred.behaviour or ""
        if kind == "unavailable_in_stream" and stream:
            return "in_stream"
        if kind in ("internal", "unavailable", "unavailable_in_stream"):
            raise behaviour_error("internal" if kind == "internal" else "unavailable", key="", model="",
                                  retry_delay="", vertex=vertex)
        return kind

    def _script_for(self, body: dict[str, Any], model: str) -> GScript:
        answer = self.reply_hook(body, model) if self.reply_hook is not None else None
        answer = self.reply if answer is None else answer
        return answer if isinstance(answer, GScript) else GScript(text=answer)

    def _plan(self, body: dict[str, Any], model: str, prompt: dict[str, Any], vertex: bool, thoughts: bool) -> Plan:
        self._serial += 1
        plan = plan_reply(self._script_for(body, model), model=model, prompt_tokens=count_tokens(prompt),
                          include_thoughts=thoughts, thought_text=self.thought_text, chunk_chars=self.chunk_chars,
                          seed=f"response:{self._serial}", create_time=rfc3339_micro(self.clock()) if vertex else None)
        if plan.signature is not None:
            self.signatures.add(b64decode_any(plan.signature) or b"")
        return plan

    def _known_signature(self, raw: bytes) -> bool:
        return raw in self.signatures

    # -- native generate / stream / count ---------------------------------------------------------

    async def _native(self, request: web.Request, entry: Recorded, cred: Cred, *, vertex: bool) -> web.StreamResponse:
        endpoint = entry.endpoint or ""
        method = endpoint.removeprefix("vertex_")
        model = entry.model or ""
        body = entry.json
        try:
            self._key_level(cred, endpoint, model, vertex)
            if not self.model_known(model):
                raise (vertex_not_found(entry.project or "", entry.location or "", model) if vertex
                       else not_found(model, request.match_info["version"], method))
            if not isinstance(body, dict):
                raise bad_request("Invalid JSON payload received. Unexpected token.")
            if method == "countTokens":
                return self._count(body, vertex)
            norm = normalise(body, "request")
            validate_generate(norm)
            if model.startswith(self.signature_models):
                check_signatures(norm, self._known_signature)
            stream = method == "streamGenerateContent"
            outcome = self._model_level(cred, endpoint, norm.get("safetySettings"), stream, vertex)
        except Rejected as err:
            return reject(native_error(err))
        plan = self._plan(norm, model, norm, vertex, include_thoughts(norm))
        cred.answered += 1
        if outcome in ("empty", "blocked_prompt", "finish_other"):
            objs = [finish_other(plan) if outcome == "finish_other"
                    else no_candidates(plan, blocked_feedback() if outcome == "blocked_prompt" else None)]
        else:
            objs = stream_objects(plan, usage_every_chunk=self.usage_every_chunk) if stream else [response_json(plan)]
        if not stream:
            return web.Response(text=pretty(objs[0]) + "\n", headers={**GOOGLE_HEADERS, "Content-Type": JSON_TYPE})
        if outcome == "in_stream":
            # Google cuts a failing stream with one error element after what was already sent.
            objs = objs[:max(1, len(objs) // 2)] + [error_body(behaviour_error("unavailable", key="", model="",
                                                                               retry_delay="", vertex=vertex))]
        if request.query.get("alt") == "sse":
            return await self._stream(request, [sse_chunk(o) for o in objs], SSE_HEADERS)
        return await self._stream(request, array_chunks(objs), {**GOOGLE_HEADERS, "Content-Type": JSON_TYPE})

    def _count(self, body: dict[str, Any], vertex: bool) -> web.Response:
        norm = normalise(body, "vertex_count" if vertex else "count")
        inner = norm.get("generateContentRequest")
        if inner is not None:
            if "contents" in norm:
                raise plain_bad_request("* CountTokensRequest: only one of contents and generate_content_request "
                                        "may be set\n")
            if not str(inner.get("model", "")).startswith("models/"):
                raise plain_bad_request("* CountTokensRequest.generate_content_request.model: unexpected model name "
                                        "format\n")
            norm = inner
        validate_generate(norm)
        total = count_tokens(norm)
        answer: dict[str, Any] = {"totalTokens": total}
        if vertex:
            texts = [p.get("text", "") for c in norm["contents"] for p in c.get("parts", [])]
            answer["totalBillableCharacters"] = sum(len(t.replace(" ", "")) for t in texts)
        answer["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": total}]
        return web.Response(text=pretty(answer) + "\n", headers={**GOOGLE_HEADERS, "Content-Type": JSON_TYPE})

    # -- models -----------------------------------------------------------------------------------

    def _models(self, request: web.Request, entry: Recorded, cred: Cred) -> web.Response:
        try:
            self._key_level(cred, "models", entry.model or "", False)
            if entry.model is not None:  # GET models/{model}
                if not self.model_known(entry.model):
                    raise not_found(entry.model, request.match_info["version"], "get")
                page = models_page([m for m in self.models if m[0] == entry.model], 1, None)
                return web.Response(text=pretty(page["models"][0]), headers={**GOOGLE_HEADERS,
                                                                             "Content-Type": JSON_TYPE})
            size = request.query.get("pageSize", str(DEFAULT_PAGE))
            if not size.isdigit():
                raise bad_request(f"Invalid value at 'page_size' (TYPE_INT32), \"{size}\"", "page_size")
            page_size = min(int(size) or DEFAULT_PAGE, MAX_PAGE)
        except Rejected as err:
            return reject(native_error(err))
        page = models_page(self.models, page_size, request.query.get("pageToken"))
        return web.Response(text=pretty(page), headers={**GOOGLE_HEADERS, "Content-Type": JSON_TYPE})
