"""Pure wire shapes of the fake Google APIs: scripted replies, GenerateContentResponse bodies, streams, models."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Union

from tests.fakes.claude_web_wire import split_text

Pieces = Union[str, list[str]]

JSON_TYPE = "application/json; charset=UTF-8"
# Headers every Google frontend answer carries (ESF / scaffolding); a proxy must not depend on them.
GOOGLE_HEADERS = {"Server": "scaffolding on HTTPServer2", "Vary": "Origin, X-Origin, Referer",
                  "X-XSS-Protection": "0", "X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff"}
SSE_HEADERS = {**GOOGLE_HEADERS, "Content-Type": "text/event-stream"}
# Signatures Google documents as "skip validation" placeholders (Gemini CLI sends the first).
SKIP_SIGNATURES = ("skip_thought_signature_validator", "context_engineering_is_the_way_to_go")
DEFAULT_THOUGHT = "**Considering the request**\n\nThe user wants a short answer; I will give one."

# (id, display name, input limit, output limit, methods, thinking)
_GEN = ("generateContent", "countTokens", "createCachedContent", "batchGenerateContent")
DEFAULT_MODELS: tuple[tuple[str, str, int, int, tuple[str, ...], bool], ...] = (
    ("gemini-2.5-flash", "Gemini 2.5 Flash", 1048576, 65536, _GEN, True),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", 1048576, 65536, _GEN, True),
    ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1048576, 65536, _GEN, True),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", 1048576, 8192, _GEN, False),
    ("gemini-3-pro-preview", "Gemini 3 Pro Preview", 1048576, 65536, _GEN, True),
    ("gemini-3.1-pro-preview", "Gemini 3.1 Pro Preview", 1048576, 65536, _GEN, True),
    ("gemini-3.5-flash-lite", "Gemini 3.5 Flash-Lite", 1048576, 65536, _GEN, True),
    ("gemini-3.8-flash", "Gemini 3.8 Flash", 1048576, 65536, _GEN, True),
    ("gemini-flash-latest", "Gemini Flash Latest", 1048576, 65536, _GEN, True),
    ("gemini-embedding-001", "Gemini Embedding 001", 2048, 1, ("embedContent", "countTextTokens", "countTokens",
                                                               "asyncBatchEmbedContent"), False),
)


@dataclass
class FunctionCall:
    """One function call the scripted model makes."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str | None = None  # AI Studio sends no id unless the model made one; Gemini CLI's come back with ids


@dataclass
class GScript:
    """What one generate call answers: thoughts, text, then function calls, in that order."""

    text: Pieces = ""
    thoughts: Pieces | None = None  # None: the fake's thought text, shown only when includeThoughts is on
    calls: list[FunctionCall] = field(default_factory=list)
    finish_reason: str = "STOP"
    usage: dict[str, Any] | None = None  # None: the fake's count rule; else the whole usageMetadata


@dataclass(frozen=True)
class Plan:
    """A script resolved against one request: pieces, signature, usage and ids fixed."""

    model: str
    response_id: str
    thoughts: list[str]  # shown thought pieces ([] when not shown)
    text: list[str]
    calls: list[dict[str, Any]]  # functionCall objects
    signature: str | None  # thoughtSignature carried by the first function call part
    finish_reason: str
    usage: dict[str, Any]
    create_time: str | None  # Vertex answers carry createTime; AI Studio does not
    prompt_tokens: int


def dumps(value: Any) -> str:
    """Compact JSON, as the SSE lines are written."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def google_dumps(value: Any) -> str:
    """JSON as Google's SSE printer writes it: a space after colons, none after commas."""
    return json.dumps(value, separators=(",", ": "), ensure_ascii=False)


def pretty(value: Any) -> str:
    """JSON as Google's non-streaming answers are written: two-space indented."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def response_id(seed: str) -> str:
    """A responseId shaped like Google's (about 22 URL-safe characters)."""
    return base64.urlsafe_b64encode(hashlib.sha256(seed.encode()).digest()[:17]).decode().rstrip("=")


def signature_bytes(seed: str) -> bytes:
    """The raw bytes of a thought signature the fake issues."""
    return b"\x12\x8a\x03\n\x87\x03" + b"".join(hashlib.sha512(f"{seed}:{i}".encode()).digest() for i in range(3))


def b64decode_any(value: str) -> bytes | None:
    """Decode standard or URL-safe base64, padded or not, as Google's bytes fields accept; None if invalid."""
    text = value.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


def rfc3339_micro(epoch: float) -> str:
    """Epoch seconds as RFC 3339 UTC with microseconds, as Vertex writes createTime."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def count_tokens(body: dict[str, Any]) -> int:
    """The fake's token rule on a normalised request: canonical JSON of its prompt fields // 4, at least 1."""
    prompt = {k: body[k] for k in ("contents", "systemInstruction", "tools") if body.get(k) is not None}
    canon = json.dumps(prompt, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return max(1, len(canon) // 4)


def _tokens(chars: int) -> int:
    return math.ceil(chars / 4)


def plan_reply(script: GScript, *, model: str, prompt_tokens: int, include_thoughts: bool, thought_text: Pieces,
               chunk_chars: int, seed: str, create_time: str | None) -> Plan:
    """Resolve a script for one request: thoughts show only when the request asks includeThoughts."""
    source = thought_text if script.thoughts is None and include_thoughts else script.thoughts
    thought_pieces = split_text(source or "", chunk_chars)
    text = split_text(script.text, chunk_chars)
    calls = []
    for call in script.calls:
        obj: dict[str, Any] = {"name": call.name, "args": call.args}
        if call.id is not None:
            obj["id"] = call.id
        calls.append(obj)
    signature = base64.b64encode(signature_bytes(seed)).decode() if calls else None
    out_chars = len("".join(text)) + sum(len(dumps(c["args"])) + len(c["name"]) for c in calls)
    thoughts = _tokens(len("".join(thought_pieces)))
    usage = script.usage if script.usage is not None else _usage(prompt_tokens, _tokens(out_chars), thoughts)
    return Plan(model, response_id(seed), thought_pieces if include_thoughts else [], text, calls, signature,
                script.finish_reason, usage, create_time, prompt_tokens)


def _usage(prompt: int, candidates: int, thoughts: int) -> dict[str, Any]:
    # Google leaves zero counts out (proto3 JSON omits default values).
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    if candidates:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = prompt + candidates + thoughts
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _parts(plan: Plan) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if plan.thoughts:
        parts.append({"text": "".join(plan.thoughts), "thought": True})
    if plan.text:
        parts.append({"text": "".join(plan.text)})
    parts += _call_parts(plan)
    return parts


def _call_parts(plan: Plan) -> list[dict[str, Any]]:
    # Only the first function call of a step carries the signature (Google's thought-signature docs).
    parts = [{"functionCall": call} for call in plan.calls]
    if parts and plan.signature is not None:
        parts[0]["thoughtSignature"] = plan.signature
    return parts


def _envelope(plan: Plan, candidates: list[dict[str, Any]] | None, usage: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if candidates is not None:
        body["candidates"] = candidates
    if usage is not None:
        body["usageMetadata"] = usage
    body["modelVersion"] = plan.model
    if plan.create_time is not None:
        body["createTime"] = plan.create_time
    body["responseId"] = plan.response_id
    return body


def _candidate(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    cand: dict[str, Any] = {}
    if parts:
        cand["content"] = {"parts": parts, "role": "model"}
    if finish is not None:
        cand["finishReason"] = finish
    cand["index"] = 0
    return cand


def response_json(plan: Plan) -> dict[str, Any]:
    """The non-streaming GenerateContentResponse."""
    return _envelope(plan, [_candidate(_parts(plan), plan.finish_reason)], plan.usage)


def stream_objects(plan: Plan, *, usage_every_chunk: bool) -> list[dict[str, Any]]:
    """The chunks of a stream: one per thought or text piece, the calls together, finishReason on the last."""
    steps: list[tuple[list[dict[str, Any]], int, int]] = []  # (parts, output chars so far, thought chars so far)
    out = thought = 0
    for piece in plan.thoughts:
        thought += len(piece)
        steps.append(([{"text": piece, "thought": True}], out, thought))
    for piece in plan.text:
        out += len(piece)
        steps.append(([{"text": piece}], out, thought))
    if plan.calls:
        steps.append((_call_parts(plan), out, thought))
    if not steps:
        steps.append(([], 0, 0))
    chunks = []
    for n, (parts, out_chars, thought_chars) in enumerate(steps):
        last = n == len(steps) - 1
        usage = plan.usage if last else _running_usage(plan, out_chars, thought_chars) if usage_every_chunk else None
        chunks.append(_envelope(plan, [_candidate(parts, plan.finish_reason if last else None)], usage))
    return chunks


def _running_usage(plan: Plan, out_chars: int, thought_chars: int) -> dict[str, Any]:
    # Real intermediate chunks repeat the prompt count and give running totals; the last chunk is the truth.
    final = plan.usage
    cand = min(_tokens(out_chars), final.get("candidatesTokenCount", 0))
    thoughts = min(_tokens(thought_chars), final.get("thoughtsTokenCount", 0))
    return _usage(final.get("promptTokenCount", plan.prompt_tokens), cand, thoughts)


def no_candidates(plan: Plan, prompt_feedback: dict[str, Any] | None) -> dict[str, Any]:
    """An answer without candidates: empty, or a blocked prompt when `prompt_feedback` is given."""
    body = _envelope(plan, None, _usage(plan.prompt_tokens, 0, 0))
    if prompt_feedback is not None:
        body = {"promptFeedback": prompt_feedback, **body}
    return body


def finish_other(plan: Plan) -> dict[str, Any]:
    """A candidate that stopped for OTHER with no content."""
    return _envelope(plan, [_candidate([], "OTHER")], _usage(plan.prompt_tokens, 0, 0))


def blocked_feedback() -> dict[str, Any]:
    """promptFeedback of a prompt blocked for SAFETY."""
    ratings = [{"category": f"HARM_CATEGORY_{c}", "probability": "HIGH" if c == "SEXUALLY_EXPLICIT" else "NEGLIGIBLE"}
               for c in ("SEXUALLY_EXPLICIT", "HATE_SPEECH", "HARASSMENT", "DANGEROUS_CONTENT")]
    return {"blockReason": "SAFETY", "safetyRatings": ratings}


def sse_chunk(obj: dict[str, Any]) -> bytes:
    """One SSE event as Google frames it: `data: …` and a CRLF blank line; there is no [DONE]."""
    return f"data: {google_dumps(obj)}\r\n\r\n".encode()


def array_chunks(objs: list[dict[str, Any]]) -> list[bytes]:
    """A stream without alt=sse: one JSON array written piece by piece, each element pretty-printed."""
    if not objs:
        return [b"[]"]
    out = [("[" + pretty(objs[0])).encode()]
    out += [("\n,\r\n" + pretty(o)).encode() for o in objs[1:]]
    out.append(b"\n]")
    return out


def model_entry(model: tuple[str, str, int, int, tuple[str, ...], bool]) -> dict[str, Any]:
    """One entry of the native model list."""
    ident, display, input_limit, output_limit, methods, thinking = model
    entry: dict[str, Any] = {"name": f"models/{ident}", "version": "001", "displayName": display,
                             "description": f"{display} (fake)", "inputTokenLimit": input_limit,
                             "outputTokenLimit": output_limit, "supportedGenerationMethods": list(methods)}
    if "generateContent" in methods:
        entry.update(temperature=1, topP=0.95, topK=64, maxTemperature=2)
    if thinking:
        entry["thinking"] = True
    return entry


def models_page(models: list[Any], page_size: int, page_token: str | None) -> dict[str, Any]:
    """A `GET v1beta/models` page; the page token is the offset, opaque to clients."""
    start = 0
    if page_token:
        decoded = b64decode_any(page_token)
        start = int(decoded.decode()) if decoded and decoded.isdigit() else 0
    page = {"models": [model_entry(m) for m in models[start:start + page_size]]}
    if start + page_size < len(models):
        page["nextPageToken"] = base64.urlsafe_b64encode(str(start + page_size).encode()).decode().rstrip("=")
    return page
