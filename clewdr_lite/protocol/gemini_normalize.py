"""Gemini request normalisation: one spelling and one shape for every client variant (gemini.md §9.2).

Google's parser accepts the proto snake_case names as well as the REST lowerCamelCase ones, and
clients mix both, sometimes inside one object (google-genai's `inlineData: {"mime_type": …}`).
Every snake_case key outside user data is renamed, not only the ones §9.2 rule 1 lists, so fields
Google adds later are read the same way. `normalize` is idempotent and never edits its input.
"""

from __future__ import annotations

import copy
import re
from typing import Callable

from ..errors import BadRequest

_SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")
# §9.2 rule 2: the values under these keys belong to the user (call arguments, function results,
# JSON Schemas whose property names are the user's, label maps); nothing in them is renamed.
USER_DATA = frozenset({"args", "response", "parameters", "parametersJsonSchema", "responseSchema",
                       "responseJsonSchema", "labels"})


def _ignore(_message: str) -> None:
    return None


def camel(key: str) -> str:
    """`max_output_tokens` → `maxOutputTokens`."""
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _keys(value, warn: Callable[[str], None], path: str):
    """A copy of `value` with protocol keys in lowerCamelCase (§9.2 rules 1–3)."""
    if isinstance(value, list):
        return [_keys(item, warn, path) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        name = camel(key) if isinstance(key, str) and _SNAKE.match(key) else key
        if name != key and name in value:  # rule 3: both spellings given, camelCase wins
            warn(f"{path}{key}: both {key} and {name} given; kept {name}")
            continue
        out[name] = copy.deepcopy(item) if name in USER_DATA else _keys(item, warn, f"{path}{name}.")
    return out


def _parts(value) -> list:
    """Rule 5: one part object → a one-element list; bare strings → text parts."""
    if value is None:
        return []
    if not isinstance(value, list):
        value = [value]
    return [{"text": part} if isinstance(part, str) else part for part in value]


def _system(value) -> dict:
    """Rule 4: a string, a Content, `{"parts": {…}}`, a part or a list of parts → `{"parts": [...]}`."""
    if isinstance(value, dict):
        parts = value["parts"] if "parts" in value else value if "text" in value else None
    else:
        parts = value  # a string or a list of parts
    return {"parts": _parts(parts)}


def _content(value):
    if isinstance(value, str):  # the SDKs' shorthand for one user text turn
        return {"role": "user", "parts": [{"text": value}]}
    if not isinstance(value, dict):
        return value  # to_hub reports it with its position
    content = dict(value)
    if not content.get("role"):  # rule 6: no role means user
        content["role"] = "user"
    content["parts"] = _parts(content.get("parts"))
    return content


def _shape(req: dict) -> None:
    """Rules 4–6 on a GenerateContentRequest, in place."""
    if "systemInstruction" in req:
        if req["systemInstruction"] is None:
            del req["systemInstruction"]
        else:
            req["systemInstruction"] = _system(req["systemInstruction"])
    contents = req.get("contents")
    if isinstance(contents, (dict, str)):  # rule 5: one content → a list
        contents = [contents]
    if isinstance(contents, list):
        req["contents"] = [_content(content) for content in contents]


def normalize(body: dict, warn: Callable[[str], None] | None = None) -> dict:
    """A new Gemini request with one spelling and one shape (§9.2); `warn` hears about conflicts."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    out = _keys(body, warn or _ignore, "")
    _shape(out)
    inner = out.get("generateContentRequest")  # countTokens' wrapped form (§10.3)
    if isinstance(inner, dict):
        _shape(inner)
    return out
