"""Hub message → Gemini `GenerateContentResponse`, and the tables both directions share.

conversions.md §9.4 (response), §12 (stop reasons), §13 (usage), §14 (errors); gemini.md §10.1, §11.
"""

from __future__ import annotations

from typing import Mapping

from ..errors import GEMINI, ProxyError, render
from .tokens import token_count

# §12: hub stop_reason -> Gemini finishReason
FINISH_REASONS = {
    "end_turn": "STOP",
    "stop_sequence": "STOP",
    "max_tokens": "MAX_TOKENS",
    "model_context_window_exceeded": "MAX_TOKENS",
    "tool_use": "STOP",
    "pause_turn": "STOP",
    "refusal": "SAFETY",
}
# §12 reverse: Gemini finishReason -> hub stop_reason; anything unlisted (OTHER,
# MALFORMED_FUNCTION_CALL, values Google adds later) ends the turn normally
STOP_REASONS = {
    "STOP": "end_turn",
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "refusal",
    "RECITATION": "refusal",
    "BLOCKLIST": "refusal",
    "PROHIBITED_CONTENT": "refusal",
    "SPII": "refusal",
    "LANGUAGE": "refusal",
    "IMAGE_SAFETY": "refusal",
    "IMAGE_PROHIBITED_CONTENT": "refusal",
}
# §14: hub (Anthropic) error type -> the HTTP status a Gemini client is told
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 503,
}


def finish_reason(stop_reason: str | None) -> str:
    """Gemini `finishReason` for a hub `stop_reason` (§12)."""
    return FINISH_REASONS.get(stop_reason, "STOP")


def stop_reason(finish: str | None, has_calls: bool) -> str:
    """Hub `stop_reason` for a Gemini `finishReason`; `tool_use` when a normal end made calls (§12)."""
    reason = STOP_REASONS.get(finish, "end_turn")
    return "tool_use" if has_calls and reason == "end_turn" else reason


def usage_metadata(usage: Mapping | None) -> dict:
    """Gemini `usageMetadata` for hub usage (§13); the thinking share is unknown, so all candidates."""
    usage = usage or {}
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cached + (usage.get("cache_creation_input_tokens") or 0)
    output = usage.get("output_tokens") or 0
    meta = {"promptTokenCount": prompt, "candidatesTokenCount": output,
            "totalTokenCount": prompt + output}
    if cached:
        meta["cachedContentTokenCount"] = cached
    return meta


def hub_usage(meta: Mapping) -> dict:
    """Hub usage for a Gemini `usageMetadata` (§13 reverse): cached tokens split off the prompt."""
    prompt = token_count(meta.get("promptTokenCount")) or 0
    cached = token_count(meta.get("cachedContentTokenCount")) or 0
    output = (token_count(meta.get("candidatesTokenCount")) or 0) + (token_count(meta.get("thoughtsTokenCount")) or 0)
    return {"input_tokens": max(prompt - cached, 0), "output_tokens": output,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def google_error(status: int, message: str) -> dict:
    """Google's error body `{"error": {"code", "message", "status"}}` (gemini.md §11, §14)."""
    return render(ProxyError(message, status=status), GEMINI)


def hub_error(error: Mapping | None) -> dict:
    """Google's error body for a hub `error` event's `error` object."""
    error = error or {}
    status = ERROR_STATUS.get(error.get("type"), 500)
    return google_error(status, str(error.get("message") or "upstream error"))


def from_hub(msg: dict, *, model: str, include_thoughts: bool,
             tool_names: Mapping[str, str] | None = None) -> dict:
    """A GenerateContentResponse for a hub message (§9.4); `model` is the name the client sent."""
    names = tool_names or {}
    parts = []
    for block in msg.get("content") or ():
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            parts.append({"text": block["text"]})
        elif kind == "thinking" and include_thoughts and block.get("thinking"):
            parts.append({"text": block["thinking"], "thought": True})
        elif kind == "tool_use":  # Gemini CLI needs the id back; server tools are dropped
            name = block.get("name") or ""
            call = {"id": block.get("id"), "name": names.get(name, name), "args": block.get("input") or {}}
            if call["id"] is None:
                del call["id"]
            parts.append({"functionCall": call})
    if not parts:  # SillyTavern reads candidates[0].content.parts[0].text
        parts.append({"text": ""})
    candidate = {"content": {"role": "model", "parts": parts},
                 "finishReason": finish_reason(msg.get("stop_reason")), "index": 0}
    return {"candidates": [candidate], "usageMetadata": usage_metadata(msg.get("usage")),
            "modelVersion": model, "responseId": msg.get("id")}
