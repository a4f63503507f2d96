"""Claude Code upstream as values (claude-code.md): the Messages request, its betas and headers.

This module builds the request side of §6 (betas, billing block, system, headers) and re-exports
the rest of the upstream's pure parts, so callers need one import:
OAuth and imported credentials (claude_code_oauth), answers and streams (claude_code_response),
sticky keys (claude_code_sticky) and usage windows (claude_code_usage).
"""

from __future__ import annotations

import hashlib
import struct

from .anthropic import strip_foreign_thinking
from .anthropic_headers import API_VERSION, SESSION_HEADER, merge_betas, upstream_headers
from .claude_code_oauth import (CLIENT_ID, DEFAULT_REDIRECT_URI, DEFAULT_SCOPE,
                                DEFAULT_USER_AGENT, DEFAULT_VERSION, OAUTH_BETA,
                                TOKEN_HEADERS_BASE, TOKEN_URLS, Pkce, authorize_body,
                                code_form, code_from_redirect, is_invalid_grant, make_pkce,
                                parse_imported, refresh_form, token_error, token_expired,
                                token_headers, token_record, token_url_candidates, user_agent)
from .claude_code_response import (UsageTracker, api_key_reset, classify_api_key, classify_oauth,
                                   echo_model_event, header, usage_from_message)
from .claude_code_sticky import count_cache_key, session_id, sticky_keys
from .claude_code_usage import WINDOWS, apply_probe, probe_due, tick_windows
from .model_rules import apply_model_rules, split_model_suffixes

__all__ = [
    "API_VERSION", "BILLING_PREFIX", "CLIENT_ID", "DEFAULT_ENTRYPOINT", "DEFAULT_REDIRECT_URI",
    "DEFAULT_SCOPE", "DEFAULT_USER_AGENT", "DEFAULT_VERSION", "LONG_CONTEXT_BETA", "OAUTH_BETA",
    "PRELUDE", "SESSION_HEADER", "TOKEN_HEADERS_BASE", "TOKEN_URLS", "WINDOWS", "Pkce",
    "UsageTracker", "api_key_reset", "apply_probe", "authorize_body", "billing_block",
    "billing_hash", "classify_api_key", "classify_oauth", "code_form", "code_from_redirect",
    "count_cache_key", "echo_model_event", "first_user_text", "header", "is_claude_code_only_error",
    "is_invalid_grant", "is_long_context_error", "make_pkce", "merge_betas", "parse_imported",
    "prepare_request", "prepare_system", "probe_due", "refresh_form", "session_id",
    "sticky_keys", "tick_windows", "token_error", "token_expired", "token_headers",
    "token_record", "token_url_candidates", "upstream_headers", "usage_from_message",
    "user_agent",
]

LONG_CONTEXT_BETA = "context-1m-2025-08-07"
PRELUDE = "You are Claude Code, Anthropic's official CLI for Claude."
BILLING_PREFIX = "x-anthropic-billing-header:"
DEFAULT_ENTRYPOINT = "cli"
_BILLING_SALT = "59cf53e54c78"
_BILLING_UNITS = (4, 7, 20)  # UTF-16 indices of the first user text that the CLI hashes
# §6.2: the two answers of accounts without long-context access
_LONG_CONTEXT_MESSAGES = ("long context beta is not yet available",
                          "incompatible with the long context beta")
_CODE_ONLY_MESSAGE = "only authorized for use with claude code"


def first_user_text(req: dict) -> str:
    """The first user message's string content or first text block ("" when there is none)."""
    for msg in req.get("messages") or []:
        if not isinstance(msg, dict) or msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return content
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "text":
                text = block.get("text")
                return text if isinstance(text, str) else ""
        return ""
    return ""


def billing_hash(text: str, version: str) -> str:
    """The 3 hex digits after `cc_version=<version>.` (§6.3), as the JavaScript CLI computes them."""
    head = text[: max(_BILLING_UNITS) + 1].encode("utf-16-le", "surrogatepass")
    units = struct.unpack(f"<{len(head) // 2}H", head)
    picked = [units[i] if i < len(units) else ord("0") for i in _BILLING_UNITS]
    # JS concatenates the three code units and hashes the UTF-8 form: an unpaired surrogate
    # becomes U+FFFD, while two neighbouring halves that happen to pair form one character
    middle = struct.pack("<3H", *picked).decode("utf-16-le", "replace")
    key = (_BILLING_SALT + middle + version).encode("utf-8")
    return hashlib.sha256(key).hexdigest()[:3]


def billing_block(req: dict, *, version: str, entrypoint: str) -> dict:
    """The billing text block that opens `system` (§6.3)."""
    suffix = billing_hash(first_user_text(req), version)
    entry = entrypoint.strip() or DEFAULT_ENTRYPOINT
    return {"type": "text", "text": f"{BILLING_PREFIX} cc_version={version}.{suffix}; "
                                    f"cc_entrypoint={entry}; cch=00000;"}


def _text(block) -> str | None:
    if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
        return block["text"]
    return None


def _client_system(system) -> list:
    if isinstance(system, str):
        system = [{"type": "text", "text": system}] if system.strip() else []
    if not isinstance(system, list):
        return []
    # the client's own billing block (Claude Code sends one) would leave two, with another version
    return [b for b in system if not (_text(b) or "").lstrip().startswith(BILLING_PREFIX)]


def _without_scope(block):
    """§6.3 step 4: the API rejects `scope` in cache_control on this route."""
    control = block.get("cache_control") if isinstance(block, dict) else None
    if not isinstance(control, dict):
        return block
    control = dict(control)
    if control.get("type") == "ephemeral":
        control.pop("scope", None)
    nested = control.get("ephemeral")
    if isinstance(nested, dict) and "scope" in nested:
        control["ephemeral"] = {k: v for k, v in nested.items() if k != "scope"}
    return {**block, "cache_control": control}


def prepare_system(req: dict, *, version: str, entrypoint: str, custom_system: str | None,
                   prelude: bool) -> dict:
    """A copy of `req` whose `system` is billing block, prelude, custom system, client blocks (§6.3)."""
    client = _client_system(req.get("system"))
    prefix = [billing_block(req, version=version, entrypoint=entrypoint)]
    if prelude:
        # Claude Code sends the prelude itself as its first block: move it up, do not repeat it
        if client and (_text(client[0]) or "").strip() == PRELUDE:
            prefix.append(client.pop(0))
        else:
            prefix.append({"type": "text", "text": PRELUDE})
    if custom_system and custom_system.strip():
        prefix.append({"type": "text", "text": custom_system})
    return {**req, "system": [_without_scope(b) for b in prefix + client]}


def prepare_request(req: dict, *, version: str, entrypoint: str, custom_system: str | None,
                    prelude: bool, want_1m: bool) -> tuple[dict, list[str]]:
    """The body for `POST /v1/messages` and the extra betas it needs (§6.2–§6.4).

    Model rules (suffixes removed), thinking hygiene, then the system of §6.3. The `-1M` suffix
    asks for LONG_CONTEXT_BETA, granted only when `want_1m` (the cookie is not known to lack it).
    """
    _name, _thinking, one_m = split_model_suffixes(str(req.get("model", "")))
    out = strip_foreign_thinking(apply_model_rules(req))
    out = prepare_system(out, version=version, entrypoint=entrypoint,
                         custom_system=custom_system, prelude=prelude)
    return out, [LONG_CONTEXT_BETA] if one_m and want_1m else []


def is_long_context_error(status: int, message: str | None) -> bool:
    """The 400/403 of an account without 1M-context access (§6.2): retry without the beta."""
    lower = (message or "").lower()
    return status in (400, 403) and any(m in lower for m in _LONG_CONTEXT_MESSAGES)


def is_claude_code_only_error(status: int, message: str | None) -> bool:
    """The 400 "only authorized for use with Claude Code" (§6.3): retry with the prelude."""
    return status == 400 and _CODE_ONLY_MESSAGE in (message or "").lower()
