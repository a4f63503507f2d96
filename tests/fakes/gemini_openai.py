"""The OpenAI-compatible half of the fake Google APIs: AI Studio `v1beta/openai` and Vertex `endpoints/openapi`."""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from tests.fakes.gemini_errors import Rejected, bad_request, not_found, openai_error
from tests.fakes.gemini_native import NativeEndpoints, reject
from tests.fakes.gemini_state import Cred, Recorded
from tests.fakes.gemini_wire import GOOGLE_HEADERS, Plan, dumps

FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
          "PROHIBITED_CONTENT": "content_filter", "BLOCKLIST": "content_filter", "SPII": "content_filter"}
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
OPENAI_SSE = {**GOOGLE_HEADERS, "Content-Type": "text/event-stream"}


def _tool_calls(plan: Plan, *, stream: bool) -> list[dict[str, Any]]:
    calls = []
    for n, call in enumerate(plan.calls):
        digits = int(hashlib.sha256(f"{plan.response_id}:{n}".encode()).hexdigest()[:15], 16)
        item: dict[str, Any] = {"function": {"arguments": dumps(call["args"]), "name": call["name"]},
                                "id": call.get("id") or f"function-call-{digits}", "type": "function"}
        if stream:
            item["index"] = n
        calls.append(item)
    return calls


def _finish(plan: Plan) -> str:
    return "tool_calls" if plan.calls else FINISH.get(plan.finish_reason, plan.finish_reason.lower())


def _usage(plan: Plan) -> dict[str, int]:
    # Google's total counts thought tokens that completion_tokens leaves out.
    usage = plan.usage
    return {"completion_tokens": usage.get("candidatesTokenCount", 0),
            "prompt_tokens": usage.get("promptTokenCount", 0), "total_tokens": usage.get("totalTokenCount", 0)}


def completion(plan: Plan, model: str, created: int, *, empty: bool) -> dict[str, Any]:
    """A chat.completion body as Google's compatibility layer writes it."""
    message: dict[str, Any] = {"content": "".join(plan.text) or None, "role": "assistant"}
    if plan.calls:
        message["tool_calls"] = _tool_calls(plan, stream=False)
    choices = [] if empty else [{"finish_reason": _finish(plan), "index": 0, "message": message}]
    return {"choices": choices, "created": created, "id": plan.response_id, "model": model,
            "object": "chat.completion", "usage": _usage(plan)}


def completion_chunks(plan: Plan, model: str, created: int, *, empty: bool, usage: bool) -> list[dict[str, Any]]:
    """The chat.completion.chunk objects of a stream; usage rides on the last one when asked for."""
    deltas: list[dict[str, Any]] = [{"content": p, "role": "assistant"} for p in plan.text]
    if plan.calls:
        deltas.append({"role": "assistant", "tool_calls": _tool_calls(plan, stream=True)})
    if not deltas:
        deltas.append({"content": "", "role": "assistant"})
    chunks = []
    for n, delta in enumerate(deltas):
        choice: dict[str, Any] = {"delta": delta, "index": 0}
        if n == len(deltas) - 1:
            choice["finish_reason"] = _finish(plan)
        chunks.append({"choices": [] if empty else [choice], "created": created, "id": plan.response_id,
                       "model": model, "object": "chat.completion.chunk"})
    if usage:
        chunks[-1]["usage"] = _usage(plan)
    return chunks


class OpenAIEndpoints(NativeEndpoints):
    """Mixin of FakeGoogle: the OpenAI-compatible chat completions and model list."""

    openai_extras: list[dict[str, Any]]

    async def _openai_chat(self, request: web.Request, entry: Recorded, cred: Cred, *,
                           vertex: bool) -> web.StreamResponse:
        endpoint = entry.endpoint or ""
        body = entry.json
        try:
            model = self._openai_model(entry, cred, vertex)
            assert isinstance(body, dict)
            self.openai_extras.append({"endpoint": endpoint, "extra_body": "extra_body" in body,
                                       "frequency_penalty": "frequency_penalty" in body,
                                       "safety_settings": _safety_of(body)})
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise bad_request("messages: at least one message is required", "messages")
            for n, message in enumerate(messages):
                if not isinstance(message, dict) or message.get("role") not in ROLES:
                    raise bad_request(f"Invalid role in messages[{n}]", f"messages[{n}].role")
            stream = body.get("stream") is True
            outcome = self._model_level(cred, endpoint, _safety_of(body), stream, vertex)
        except Rejected as err:
            return reject(openai_error(err))
        plan = self._plan(body, model, {"contents": messages, "tools": body.get("tools")}, vertex, False)
        cred.answered += 1
        shown = f"google/{model}" if vertex else model
        created = int(self.clock())
        if not stream:
            return web.json_response(completion(plan, shown, created, empty=outcome == "empty"),
                                     headers=GOOGLE_HEADERS)
        usage = (body.get("stream_options") or {}).get("include_usage") is True
        chunks = completion_chunks(plan, shown, created, empty=outcome == "empty", usage=usage)
        sse = [f"data: {dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]
        return await self._stream(request, sse, OPENAI_SSE)

    def _openai_model(self, entry: Recorded, cred: Cred, vertex: bool) -> str:
        """The model id a compatible call names; raises Rejected as Google would."""
        body = entry.json
        raw = body.get("model") if isinstance(body, dict) else None
        raw = raw if isinstance(raw, str) else ""
        model = raw.removeprefix("google/") if vertex else raw.removeprefix("models/")
        entry.model = model or None
        self._key_level(cred, entry.endpoint or "", model, vertex)
        if not isinstance(body, dict):
            raise bad_request("Invalid JSON payload received. Unexpected token.")
        if not raw:
            raise bad_request("model: a model is required", "model")
        if vertex and not raw.startswith("google/"):
            raise bad_request(f"Invalid model name {raw!r}: publisher models are named google/<model>", "model")
        if not self.model_known(model):
            raise not_found(model, "v1main")  # the compatibility layer's internal API version shows through
        return model

    def _openai_models(self, entry: Recorded, cred: Cred) -> web.Response:
        try:
            self._key_level(cred, "openai_models", "", False)
        except Rejected as err:
            return reject(openai_error(err))
        data = [{"id": f"models/{m[0]}", "object": "model", "created": 0, "owned_by": "google"} for m in self.models]
        return web.json_response({"object": "list", "data": data}, headers=GOOGLE_HEADERS)


def _safety_of(body: dict[str, Any]) -> Any:
    extra = body.get("extra_body")
    google = extra.get("google") if isinstance(extra, dict) else None
    return google.get("safety_settings") if isinstance(google, dict) else None
