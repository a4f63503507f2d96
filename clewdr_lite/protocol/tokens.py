"""Dependency-free token estimates that err high (claude-web.md §16.1).

ceil(UTF-8 bytes / 3) per text, +4 per message, +1600 per image or document, tool definitions as
their compact JSON. Real tokenizers average 3.5-4 bytes per token on English and code, so dividing
by 3 over-counts a little; that is the safe side for usage windows and budgets. Odd shapes never
raise: anything unrecognised is counted as its JSON text.
"""

from __future__ import annotations

import json
import math

PER_MESSAGE = 4
PER_ATTACHMENT = 1600  # an image or a document block, whatever its size

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
_ATTACHMENTS = frozenset({"image", "document"})
# Block types whose whole cost is one string field.
_TEXT_FIELD = {"text": "text", "thinking": "thinking", "redacted_thinking": "data"}


def token_count(value) -> int | None:
    """A token count as an upstream reports it; None for anything else (a string, a bool, NaN)."""
    if type(value) is int:  # the usual case, first (every request's usage passes here)
        return value if value > 0 else 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return max(0, int(value))


def estimate_text(text: str) -> int:
    """ceil(UTF-8 byte length / 3); 0 for the empty string."""
    n = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return (n + 2) // 3


def estimate_output(text_and_thinking: str) -> int:
    """Output tokens of the text and thinking actually emitted."""
    return estimate_text(text_and_thinking)


def _estimate_json(value: object) -> int:
    """Tokens of `value` as compact JSON; 0 for the rare value even that cannot render."""
    try:
        return estimate_text(_dumps(value))
    except (ValueError, TypeError, RecursionError):  # circular or absurdly deep: not from a JSON body
        return 0


def estimate_block(block: object) -> int:
    """Tokens of one hub content block (text, image, tool_use, tool_result, thinking, or other)."""
    if not isinstance(block, dict):
        return estimate_text(block) if isinstance(block, str) else _estimate_json(block)
    kind = block.get("type")
    if not isinstance(kind, str):
        return _estimate_json(block)
    field = _TEXT_FIELD.get(kind)
    if field is not None:
        value = block.get(field)
        return estimate_text(value) if isinstance(value, str) else _estimate_json(value)
    if kind in _ATTACHMENTS:
        return PER_ATTACHMENT
    if kind == "tool_use":
        name = block.get("name")
        return _estimate_json(block.get("input", {})) + (estimate_text(name) if isinstance(name, str) else 0)
    if kind == "tool_result":
        return estimate_content(block.get("content"))
    return _estimate_json(block)


def estimate_content(content: object) -> int:
    """Tokens of a `content` or `system` value: a string, a list of blocks, or nothing."""
    if isinstance(content, str):
        return estimate_text(content)
    if isinstance(content, list):
        return sum(estimate_block(b) for b in content)
    if content is None:
        return 0
    return estimate_block(content)


def estimate_messages(messages: object) -> int:
    """Tokens of a hub `messages` list: each message's content plus PER_MESSAGE."""
    if not isinstance(messages, list):
        return _estimate_json(messages) if messages is not None else 0
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else message
        total += PER_MESSAGE + estimate_content(content)
    return total


def estimate_request(req: dict) -> int:
    """Input tokens of an Anthropic Messages request: system, messages and tool definitions."""
    if not isinstance(req, dict):
        return _estimate_json(req)
    total = estimate_content(req.get("system")) + estimate_messages(req.get("messages"))
    tools = req.get("tools")
    if tools:
        total += _estimate_json(tools)
    return total
