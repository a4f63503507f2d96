"""Pure request checks of the fake api.anthropic.com: body validation, Claude Code gate, soft breaches."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from tests.fakes.anthropic_wire import BILLING_PREFIX, PRELUDE, billing_hash

# (status, error type, message) of a rejected request.
Rejection = tuple[int, str, str]

DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
THINKING_TYPES = ("enabled", "disabled", "adaptive")
ROLES = ("user", "assistant", "system")
_VERSION = re.compile(r"cc_version=([^;\s]+)")


def _bad(message: str) -> Rejection:
    return (400, "invalid_request_error", message)


def check_model(model: Any) -> Rejection | None:
    """Unknown models are 404 `model: X`; the proxy's own suffixes must never reach the API."""
    if not isinstance(model, str):
        return _bad("model: Input should be a valid string")
    if not model.startswith("claude-") or model.lower().endswith(("-thinking", "-1m")):
        return (404, "not_found_error", f"model: {model}")
    return None


def validate_body(body: Any, *, count: bool, signature_ok: Callable[[str, str], bool]) -> Rejection | None:
    """The real API's first complaint about a Messages (or count_tokens) body, or None."""
    if not isinstance(body, dict):
        return _bad("Expected a JSON object body")
    for name in ("model", "messages") if count else ("model", "max_tokens", "messages"):
        if name not in body:
            return _bad(f"{name}: Field required")
    max_tokens = body.get("max_tokens")
    if not count and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        return _bad("max_tokens: Input should be a valid integer greater than or equal to 1")
    if "stream" in body and not isinstance(body["stream"], bool):
        return _bad("stream: Input should be a valid boolean")
    temperature = body.get("temperature")
    if temperature is not None and not (isinstance(temperature, (int, float)) and 0 <= temperature <= 1):
        return _bad("temperature: Input should be less than or equal to 1")
    return (_check_thinking(body, count) or _check_messages(body.get("messages"), signature_ok)
            or _check_thinking_first(body) or check_model(body.get("model")))


def thinking_on(body: dict[str, Any]) -> bool:
    """Whether the request asks for thinking."""
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _check_thinking(body: dict[str, Any], count: bool) -> Rejection | None:
    thinking = body.get("thinking")
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or thinking.get("type") not in THINKING_TYPES:
        return _bad("thinking: Input tag found using 'type' does not match any of the expected tags: "
                    "'enabled', 'disabled', 'adaptive'")
    if thinking["type"] == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return _bad("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        if not count and body["max_tokens"] <= budget:
            return _bad("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                        f"documentation at {DOCS}#max-tokens-and-context-window-size")
    if thinking["type"] != "disabled":
        if body.get("temperature") not in (None, 1, 1.0):
            return _bad(f"`temperature` may only be set to 1 when thinking is enabled. Please consult our "
                        f"documentation at {DOCS}#feature-compatibility")
        if body.get("top_k") is not None:
            return _bad(f"`top_k` must be unset when thinking is enabled. Please consult our documentation "
                        f"at {DOCS}#feature-compatibility")
    return None


def _check_thinking_first(body: dict[str, Any]) -> Rejection | None:
    # With thinking on, the assistant turn of an open tool loop must keep its thinking block: a proxy
    # that drops it (or a converter that never had one) gets this 400 from the real API.
    messages = body["messages"]
    last = messages[-1]
    if not thinking_on(body) or last.get("role") != "user" or not _ids(last, "tool_result", "tool_use_id"):
        return None
    i = len(messages) - 2
    blocks = _blocks(messages[i]) if i >= 0 and messages[i].get("role") == "assistant" else []
    first = blocks[0].get("type") if blocks else "text"
    if first in ("thinking", "redacted_thinking"):
        return None
    return _bad(f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. "
                "When `thinking` is enabled, a final `assistant` message must start with a thinking block "
                "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include "
                "thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please "
                f"consult our documentation at {DOCS}")


def _blocks(message: dict[str, Any]) -> list[Any]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _ids(message: dict[str, Any] | None, kind: str, key: str) -> list[str]:
    if message is None:
        return []
    return [b.get(key) for b in _blocks(message) if isinstance(b, dict) and b.get("type") == kind]


def _check_messages(messages: Any, signature_ok: Callable[[str, str], bool]) -> Rejection | None:
    if not isinstance(messages, list):
        return _bad("messages: Input should be a valid list")
    if not messages:
        return _bad("messages: at least one message is required")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return _bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if not isinstance(message.get("content"), (str, list)):
            return _bad(f"messages.{i}.content: Input should be a valid list")
        rejected = _check_blocks(i, message, signature_ok) or _check_tool_pairs(i, messages)
        if rejected:
            return rejected
    return None


def _check_blocks(i: int, message: dict[str, Any], signature_ok: Callable[[str, str], bool]) -> Rejection | None:
    for j, block in enumerate(_blocks(message)):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            return _bad(f"messages.{i}.content.{j}: Input should be a valid dictionary or object")
        if block["type"] != "thinking":
            continue
        signature, text = block.get("signature"), block.get("thinking")
        if not (isinstance(signature, str) and isinstance(text, str) and signature_ok(signature, text)):
            return _bad(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
    return None


def _check_tool_pairs(i: int, messages: list[Any]) -> Rejection | None:
    message = messages[i]
    previous = messages[i - 1] if i > 0 and isinstance(messages[i - 1], dict) else None
    known = set(_ids(previous, "tool_use", "id")) if previous and previous.get("role") == "assistant" else set()
    for j, block in enumerate(_blocks(message)):
        if isinstance(block, dict) and block.get("type") == "tool_result" and block.get("tool_use_id") not in known:
            return _bad(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message.")
    following = messages[i + 1] if i + 1 < len(messages) and isinstance(messages[i + 1], dict) else None
    if message.get("role") == "assistant" and following is not None:
        missing = [t for t in _ids(message, "tool_use", "id") if t not in _ids(following, "tool_result", "tool_use_id")]
        if missing:
            return _bad(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                        f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                        "`tool_result` block in the next message.")
    return None


def system_texts(system: Any) -> list[str | None]:
    """The text of every system block (None for non-text blocks); a string is one block."""
    if isinstance(system, str):
        return [system]
    if not isinstance(system, list):
        return []
    return [b.get("text") if isinstance(b, dict) and b.get("type") == "text" else None for b in system]


def looks_like_claude_code(system: Any, needs_prelude: bool) -> bool:
    """The OAuth gate: a billing block first (then the identity prelude, for accounts that need it)."""
    texts = system_texts(system)
    if not texts or not isinstance(texts[0], str) or not texts[0].startswith(BILLING_PREFIX):
        return False
    return not needs_prelude or (len(texts) > 1 and texts[1] == PRELUDE)


def first_user_text(messages: Any) -> str:
    """The first text of the first user message, as the billing hash reads it."""
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [b.get("text") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]
        return str(texts[0]) if texts else ""
    return ""


def billing_violations(body: dict[str, Any], user_agent: str) -> list[str]:
    """Soft breaches of claude-code.md §6.3: one billing block, its version and hash right."""
    billing = [t for t in system_texts(body.get("system")) if isinstance(t, str) and t.startswith(BILLING_PREFIX)]
    found = []
    if len(billing) > 1:
        found.append(f"{len(billing)} billing blocks in system (the client's own was kept)")
    match = _VERSION.search(billing[0]) if billing else None
    if match is None:
        return found
    version, _, digest = match.group(1).rpartition(".")
    ua = re.match(r"claude-(?:cli|code)/([^\s(]+)", user_agent)
    if ua is None or ua.group(1) != version:
        found.append(f"billing cc_version {version!r} does not match User-Agent {user_agent!r}")
    expected = billing_hash(first_user_text(body.get("messages")), version)
    if digest != expected:
        found.append(f"billing hash {digest!r}, expected {expected!r} for version {version!r}")
    return found


def header_violations(headers: Mapping[str, str], oauth: bool, body: Any) -> list[str]:
    """Soft breaches of the v1 headers: what the proxy must add or never forward (claude-code.md §6.1)."""
    found = [f"{name} forwarded to the upstream" for name in ("Cookie", "X-Forwarded-For", "X-Forwarded-Host",
                                                               "X-Forwarded-Proto") if name in headers]
    if oauth and headers.get("x-app") != "cli":
        found.append(f"x-app {headers.get('x-app')!r} on an OAuth call, expected 'cli'")
    if not oauth and isinstance(body, dict):
        if any(isinstance(t, str) and t.startswith(BILLING_PREFIX) for t in system_texts(body.get("system"))):
            found.append("billing block sent with an API key (gateway.md §2.3: none)")
    return found
