"""Cache-affinity keys (claude-code.md §9) and the count_tokens cache key (§10), from request values.

Anthropic prompt caching works per account, so one conversation should keep one cookie.
"""

from __future__ import annotations

import hashlib
import json
from typing import Mapping

from .anthropic_headers import SESSION_HEADER
from .claude_code_response import header

SESSION_KEY, PREFIX_KEY, SYSTEM_KEY = "s:", "p:", "h:"
MAX_SESSION_ID = 200  # longer ids are hashed, so the sticky map's memory stays bounded
MAX_CHECKPOINTS = 8  # the API takes 4 cache breakpoints; more only bloat the map


def canonical(value) -> bytes:
    """Canonical JSON: sorted keys, no spaces; ASCII escapes, so lone surrogates cannot break it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("ascii")


def count_cache_key(req: dict) -> str:
    """The count_tokens cache key: SHA-256 of the request's canonical JSON (§10)."""
    return hashlib.sha256(canonical(req)).hexdigest()


def session_id(req: dict, headers: Mapping[str, str]) -> str | None:
    """The Claude Code session: the header, else `metadata.user_id` (JSON or legacy form)."""
    value = header(headers, SESSION_HEADER).strip()
    if value:
        return value
    metadata = req.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str):
        return None
    if user_id.lstrip().startswith("{"):  # Claude Code 2.1.x: a JSON document in a string
        try:
            data = json.loads(user_id)
        except (ValueError, RecursionError):
            data = None
        found = data.get("session_id") if isinstance(data, dict) else None
        return (found.strip() or None) if isinstance(found, str) else None
    # older: user_<hash>_account_<uuid>_session_<uuid>
    _, marker, tail = user_id.rpartition("_session_")
    return (tail.strip() or None) if marker else None


def _blocks(content) -> list:
    # a string is the same prompt as one text block, and caches the same upstream
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content if isinstance(content, list) else []


def _cached(block) -> bool:
    return isinstance(block, dict) and block.get("cache_control") is not None


def _hashable(block):
    # clients move cache_control to the newest turn, so it must not change a prefix's hash
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def prefix_checkpoints(req: dict) -> list[str]:
    """Rolling SHA-256 over model, system and message blocks at each cache_control; longest first."""
    rolling = hashlib.sha256(canonical(req.get("model")) + b"\n")
    found = []
    for block in _blocks(req.get("system")):
        rolling.update(canonical(_hashable(block)) + b"\n")
        if _cached(block):
            found.append(rolling.hexdigest())
    for msg in req.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        for block in _blocks(msg.get("content")):
            rolling.update(canonical([role, _hashable(block)]) + b"\n")
            if _cached(block):
                found.append(rolling.hexdigest())
    return found[::-1][:MAX_CHECKPOINTS]


def system_hash(req: dict) -> str | None:
    """ClewdR's key: a hash of the system blocks that carry cache_control (none → None)."""
    cached = [_hashable(b) for b in _blocks(req.get("system")) if _cached(b)]
    return hashlib.sha256(canonical(cached)).hexdigest() if cached else None


def sticky_keys(req: dict, headers: Mapping[str, str]) -> list[str]:
    """The §9 keys in lookup order: session, prefix checkpoints (longest first), system hash."""
    keys = []
    session = session_id(req, headers)
    if session:
        if len(session) > MAX_SESSION_ID:
            session = hashlib.sha256(session.encode("utf-8", "surrogatepass")).hexdigest()
        keys.append(SESSION_KEY + session)
    keys += [PREFIX_KEY + digest for digest in prefix_checkpoints(req)]
    digest = system_hash(req)
    if digest:
        keys.append(SYSTEM_KEY + digest)
    return keys
