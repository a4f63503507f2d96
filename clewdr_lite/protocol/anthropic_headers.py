"""Headers of an upstream Messages call (claude-code.md §6.1), shared by API keys and Claude Code.

Kept apart from the Claude Code request code so an API-key gateway does not load the OAuth,
billing, sticky-key and usage-window modules it never uses.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator, Mapping

from .claude_code_response import header

API_VERSION = "2023-06-01"
SESSION_HEADER = "X-Claude-Code-Session-Id"
# header values we copy from the client: printable ASCII, no line ends (no header injection)
_SAFE_VALUE = re.compile(r"[\x20-\x7e]{1,200}")


def _tokens(value) -> Iterator[str]:
    if value is None:
        return
    for item in (value,) if isinstance(value, str) else value:
        for token in str(item).split(","):
            if token.strip():
                yield token.strip()


def merge_betas(client: str | None, extra: Iterable[str] = (), *, drop: Iterable[str] = (),
                base: str | None) -> str:
    """`anthropic-beta`: base, the client's tokens, then extra; trimmed, deduplicated, minus `drop`."""
    if client is None and base is None and not extra:  # an API-key call from a client without betas
        return ""
    dropped = set(_tokens(drop))
    merged: dict[str, None] = {}  # insertion-ordered set: the first occurrence keeps its place
    for source in (base, client, extra):
        for token in _tokens(source):
            if token not in dropped:
                merged.setdefault(token)
    return ",".join(merged)


def upstream_headers(client_headers: Mapping[str, str], *, auth: dict, betas: str,
                     user_agent: str | None, oauth: bool) -> dict:
    """Headers of an upstream Messages call (§6.1), built from an allow-list, never copied whole."""
    version = header(client_headers, "anthropic-version").strip()
    headers = {**auth,
               "anthropic-version": version if _SAFE_VALUE.fullmatch(version) else API_VERSION,
               "Content-Type": "application/json"}
    if betas:
        headers["anthropic-beta"] = betas
    if user_agent:
        headers["User-Agent"] = user_agent
    if oauth:
        headers["x-app"] = "cli"  # the CLI sends it; part of looking like Claude Code
    session = header(client_headers, SESSION_HEADER).strip()
    if _SAFE_VALUE.fullmatch(session):
        headers[SESSION_HEADER] = session
    return headers
