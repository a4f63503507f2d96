"""Gemini `contents` → hub messages: roles, parts, media and function-call pairing (conversions.md §9.1)."""

from __future__ import annotations

import copy
from typing import Callable

from ..errors import BadRequest
# §3.1 item 7's consistency fixes are shared with the OpenAI converter rather than copied
from .openai import _pair_tools, _trim_prefill, safe_id
from .sse import dumps

# Gemini role -> hub role; "function" is the v1 API's role for function responses
_ROLES = {"user": "user", "model": "assistant", "function": "user", "tool": "user",
          "assistant": "assistant"}
# which key makes a part what it is, in the order they are looked for
_PART_KINDS = ("text", "functionCall", "functionResponse", "inlineData", "fileData",
               "executableCode", "codeExecutionResult")
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_MEDIA_ALIASES = {"image/jpg": "image/jpeg"}
_PDF = "application/pdf"
# File API URIs are https but need Google credentials: Anthropic cannot fetch them
_GOOGLE_FILES = "https://generativelanguage.googleapis.com/"


def _media(mime, data) -> tuple[str, str]:
    mime = mime.lower() if isinstance(mime, str) else ""
    return _MEDIA_ALIASES.get(mime, mime), data if isinstance(data, str) else ""


def _response_content(response) -> tuple[str, bool]:
    """(tool_result text, is_error): Gemini CLI's `{"output": s}` / `{"error": s}` unwrapped."""
    if isinstance(response, dict) and len(response) == 1:
        (key, value), = response.items()
        if key in ("output", "error") and isinstance(value, str):
            return value, key == "error"
    return ("" if response is None else dumps(response)), False


class Contents:
    """One conversion of `contents` (§9.1); holds the tool-call bookkeeping."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.counters: dict[tuple[str, str], int] = {}
        self.pending: list[tuple[str, str]] = []  # (id, name) of calls not answered yet, in order

    def convert(self, contents: list) -> list:
        """Hub messages: same-role turns merged, unpaired tool blocks made text (§3.1 item 7)."""
        turns: list[tuple[str, list]] = []
        for i, content in enumerate(contents):
            role = self._role(content, i)
            if role == "assistant" and (not turns or turns[-1][0] != "assistant"):
                self.pending = []  # results answer the calls of the model turn right before them
            blocks = [b for j, part in enumerate(content["parts"]) if (b := self._part(part, i, j))]
            if not blocks:
                continue
            if turns and turns[-1][0] == role:
                turns[-1][1].extend(blocks)
            else:
                turns.append((role, blocks))
        _pair_tools(turns)
        _trim_prefill(turns)
        if not turns:
            raise BadRequest("contents has no text, media or function parts")
        return [{"role": role, "content": blocks} for role, blocks in turns]

    def _role(self, content, i: int) -> str:
        role = content.get("role") if isinstance(content, dict) else None
        if not isinstance(role, str) or role not in _ROLES or not isinstance(content.get("parts"), list):
            raise BadRequest(f"contents[{i}] must be an object with role user or model and parts")
        return _ROLES[role]

    def _generated(self, kind: str, name: str) -> str:
        """`toolu_<name>_<n>`: the n-th call and the n-th result of a name get the same id."""
        n = self.counters.get((kind, name), 0)
        self.counters[(kind, name)] = n + 1
        return f"toolu_{name}_{n}"

    def _part(self, part, i: int, j: int) -> dict | None:
        kind = next((k for k in _PART_KINDS if k in part), None) if isinstance(part, dict) else None
        if kind is None:
            if not (isinstance(part, dict) and set(part) <= {"thoughtSignature", "thought"}):
                self.warn(f"contents[{i}].parts[{j}]: dropped an unsupported part")
            return None
        return getattr(self, "_" + kind)(part, i, j)

    def _text(self, part: dict, _i: int, _j: int) -> dict | None:
        text = part["text"]
        if part.get("thought") or not isinstance(text, str) or not text.strip():
            return None  # thoughts cannot be signed for Anthropic; blank text is refused
        return {"type": "text", "text": text}

    def _functionCall(self, part: dict, i: int, j: int) -> dict:
        call = part["functionCall"] if isinstance(part["functionCall"], dict) else {}
        name = call.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"contents[{i}].parts[{j}].functionCall.name must be a non-empty string")
        name = safe_id(name)
        raw_id = call.get("id")
        call_id = safe_id(raw_id) if isinstance(raw_id, str) and raw_id else self._generated("call", name)
        self.pending.append((call_id, name))
        args = call.get("args")
        return {"type": "tool_use", "id": call_id, "name": name,
                "input": copy.deepcopy(args) if isinstance(args, dict) else {}}

    def _functionResponse(self, part: dict, i: int, j: int) -> dict:
        response = part["functionResponse"] if isinstance(part["functionResponse"], dict) else {}
        name = safe_id(response.get("name") or "") if isinstance(response.get("name"), str) else ""
        raw_id = response.get("id")
        call_id = self._match(safe_id(raw_id) if isinstance(raw_id, str) and raw_id else None, name)
        block = {"type": "tool_result", "tool_use_id": call_id}
        text, is_error = _response_content(response.get("response"))
        if text:
            block["content"] = text
        if is_error:
            block["is_error"] = True
        return block

    def _match(self, call_id: str | None, name: str) -> str:
        """The pending call a response answers: by id, else the oldest of that name (§9.1)."""
        if call_id:
            for k, (pending_id, _) in enumerate(self.pending):
                if pending_id == call_id:
                    return self.pending.pop(k)[0]
        for k, (_, pending_name) in enumerate(self.pending):
            if pending_name == name:
                return self.pending.pop(k)[0]
        return call_id or self._generated("result", name)  # an orphan: _pair_tools makes it text

    def _inlineData(self, part: dict, i: int, j: int) -> dict | None:
        blob = part["inlineData"] if isinstance(part["inlineData"], dict) else {}
        mime, data = _media(blob.get("mimeType"), blob.get("data"))
        source = {"type": "base64", "media_type": mime, "data": data}
        if mime in _IMAGE_TYPES and data:
            return {"type": "image", "source": source}
        if mime == _PDF and data:
            return {"type": "document", "source": source}
        self.warn(f"contents[{i}].parts[{j}]: dropped inline data of type {mime or 'unknown'}")
        return None

    def _fileData(self, part: dict, i: int, j: int) -> dict | None:
        ref = part["fileData"] if isinstance(part["fileData"], dict) else {}
        mime, uri = _media(ref.get("mimeType"), ref.get("fileUri"))
        if not uri.lower().startswith(("http://", "https://")) or uri.startswith(_GOOGLE_FILES):
            self.warn(f"contents[{i}].parts[{j}]: dropped file {uri!r} (Anthropic cannot fetch it)")
            return None
        if mime == _PDF:
            return {"type": "document", "source": {"type": "url", "url": uri}}
        return {"type": "image", "source": {"type": "url", "url": uri}}

    def _executableCode(self, part: dict, _i: int, _j: int) -> dict | None:
        code = part["executableCode"] if isinstance(part["executableCode"], dict) else {}
        language = str(code.get("language") or "").lower()
        if language == "language_unspecified":
            language = ""
        text = code.get("code")
        return {"type": "text", "text": f"```{language}\n{text}\n```"} if isinstance(text, str) else None

    def _codeExecutionResult(self, part: dict, _i: int, _j: int) -> dict | None:
        result = part["codeExecutionResult"] if isinstance(part["codeExecutionResult"], dict) else {}
        output = result.get("output")
        return {"type": "text", "text": output} if isinstance(output, str) and output.strip() else None
