"""Lenient JSON for tool arguments: claude.ai and some OpenAI-compatible servers emit non-strict JSON."""

from __future__ import annotations

import json
import re

_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _single_to_double(text: str) -> str:
    """Swap single-quoted strings for double-quoted ones, outside double-quoted strings."""
    out, quote, i = [], None, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                out.append("'" if (quote == "'" and nxt == "'") else ch + nxt)
                i += 2
                continue
            if ch == quote:
                out.append('"')
                quote = None
            elif ch == '"' and quote == "'":
                out.append('\\"')
            else:
                out.append(ch)
        elif ch in "\"'":
            quote = ch
            out.append('"')
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def loads(text: str):
    """Parse JSON; on failure repair trailing commas and single quotes; raise ValueError if still bad."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    repaired = _TRAILING_COMMA.sub(r"\1", _single_to_double(text.strip()))
    return json.loads(repaired)


def tool_input(text: str) -> dict:
    """Tool `input` from argument text: parsed, repaired, `{}` when empty, else `{"_raw_arguments": text}`."""
    if not text or not text.strip():
        return {}
    try:
        value = loads(text)
    except ValueError:
        return {"_raw_arguments": text}
    return value if isinstance(value, dict) else {"_raw_arguments": text}
