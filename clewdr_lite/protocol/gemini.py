"""The Gemini dialect: clients ⇄ hub and hub ⇄ Gemini upstreams (gemini.md §7, §9–§11; conversions.md §9).

Client side (a Gemini client on any provider):
    normalize → to_hub → (provider) → from_hub / GeminiStream; count_body_to_hub, is_hi.
Upstream side (any client on a Gemini provider):
    hub_to_gemini → apply_safety → (Google) → gemini_to_hub_message / GeminiToHub.
The converters live in gemini_*.py by direction; this module gathers them and keeps the small
rules that belong to no direction: safety settings, the "Hi" test, countTokens, errors.
"""

from __future__ import annotations

import re

from ..errors import BadRequest
from .anthropic import hi_message
from .gemini_normalize import normalize
from .gemini_request import count_body_to_hub, json_schema, to_hub, tool_name_map
from .gemini_response import (finish_reason, from_hub, google_error, hub_error, hub_usage,
                              stop_reason, usage_metadata)
from .gemini_stream import GeminiStream
from .gemini_upstream import SKIP_SIGNATURE, hub_to_gemini, thinking_config
from .gemini_upstream_stream import GeminiToHub, gemini_to_hub_message

__all__ = [
    "SAFETY_CATEGORIES", "SAFETY_MODES", "SKIP_SIGNATURE", "GeminiStream", "GeminiToHub",
    "apply_safety", "count_body_to_hub", "count_response", "finish_reason", "from_hub",
    "gemini_to_hub_message", "google_error", "hi_response", "hub_error", "hub_to_gemini",
    "hub_usage", "is_hi", "json_schema", "names_safety_setting", "normalize", "relaxed_safety",
    "stop_reason", "thinking_config", "to_hub", "tool_name_map", "usage_metadata",
]

# gemini.md §7: every category the API knows; CIVIC_INTEGRITY is the one some models reject
SAFETY_CATEGORIES = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
)
_CIVIC = "HARM_CATEGORY_CIVIC_INTEGRITY"
# setting gemini_safety -> the threshold written ("client" writes nothing)
_THRESHOLDS = {"off": "OFF", "block_none": "BLOCK_NONE"}
SAFETY_MODES = (*_THRESHOLDS, "client")
# a 400 that complains about a safety setting (field path, category or threshold names)
_SAFETY_ERROR = re.compile(r"safety_?settings|harm_?category|harm_?block_?threshold|block_none"
                           r"|\bthreshold\b", re.IGNORECASE)


def _with_safety(body: dict, threshold: str, categories) -> dict:
    # both spellings go, so the upstream never sees the field twice
    out = {k: v for k, v in body.items() if k not in ("safetySettings", "safety_settings")}
    out["safetySettings"] = [{"category": c, "threshold": threshold} for c in categories]
    return out


def apply_safety(body: dict, mode: str) -> dict:
    """The body with the safety settings of `gemini_safety` (§7); "client" returns it untouched."""
    if mode == "client":
        return body
    if mode not in _THRESHOLDS:
        raise ValueError(f"gemini_safety must be one of {', '.join(SAFETY_MODES)}, not {mode!r}")
    return _with_safety(body, _THRESHOLDS[mode], SAFETY_CATEGORIES)


def relaxed_safety(body: dict) -> dict:
    """The one-shot retry's body: BLOCK_NONE without CIVIC_INTEGRITY (§7)."""
    return _with_safety(body, "BLOCK_NONE", [c for c in SAFETY_CATEGORIES if c != _CIVIC])


def names_safety_setting(message: str) -> bool:
    """Whether an upstream 400 message names a safety setting, so the relaxed retry may help."""
    return bool(message) and _SAFETY_ERROR.search(message) is not None


def is_hi(body) -> bool:
    """SillyTavern's connection test: one user content with one text part "Hi" (any spelling)."""
    if not isinstance(body, dict):
        return False
    try:  # only contents matters: normalising the rest of a large body would be wasted work
        contents = normalize({"contents": body.get("contents")}).get("contents")
    except BadRequest:
        return False
    if not isinstance(contents, list) or len(contents) != 1 or not isinstance(contents[0], dict):
        return False
    content = contents[0]
    parts = content.get("parts")
    return (content.get("role") == "user" and isinstance(parts, list) and len(parts) == 1
            and isinstance(parts[0], dict) and parts[0].get("text") == "Hi")


def hi_response(model: str, response_id: str) -> dict:
    """The local answer to the "Hi" test, as a GenerateContentResponse."""
    return from_hub(hi_message(model, response_id), model=model, include_thoughts=False)


def count_response(n: int) -> dict:
    """A countTokens answer (§10.3)."""
    return {"totalTokens": n}
