"""Gemini upstream answers → hub: stream chunks to hub events, a whole response to a hub message (conversions.md §9.3).

Blocks open and close as in §8.2: a thought part continues or opens a thinking block, text
continues or opens a text block, and each functionCall is a complete tool_use block (start, one
input_json_delta holding the whole args JSON, stop). The non-streaming converter is the stream
converter fed one chunk, folded by the hub Accumulator, so both paths agree block for block.
"""

from __future__ import annotations

from ..errors import UpstreamError, anthropic_type
from .anthropic import Accumulator
from .gemini_response import hub_usage, stop_reason
from .openai import safe_id
from .sse import dumps
from .tokens import estimate_output

EMPTY_MESSAGE = "Gemini ended the stream without a response"


def blocked_text(reason: str, message: str | None = None) -> str:
    """What a client reads when Gemini blocked the prompt (no candidates, promptFeedback)."""
    return f"Gemini blocked the prompt ({reason})" + (f": {message}" if message else "")


class GeminiToHub:
    """Translates parsed Gemini stream chunks into hub events: `feed(chunk)` each, `close()` once."""

    def __init__(self, *, model: str, msg_id: str, signature: str, input_tokens: int) -> None:
        self._model, self._msg_id, self._signature = model, msg_id, signature
        self._input_tokens = input_tokens
        self._next = 0  # next hub block index
        self._open: tuple[str, int] | None = None  # ("text" | "thinking", index) of the open block
        self._calls = 0
        self._emitted: list[str] = []  # text and thinking, for the estimate when usage is missing
        self._finish: str | None = None
        self._meta: dict | None = None
        self._blocked = False
        self._started = self._done = False

    def feed(self, chunk: dict) -> list[dict]:
        """Hub events for one parsed Gemini chunk; nothing after an error chunk."""
        if self._done:
            return []
        error = chunk.get("error")
        if isinstance(error, dict):
            self._done = True
            return [_error_event(error)]
        out = [] if self._started else self._start(chunk)
        if isinstance(chunk.get("usageMetadata"), dict):
            self._meta = chunk["usageMetadata"]  # each chunk's counts are totals so far
        candidates = chunk.get("candidates")
        candidate = candidates[0] if isinstance(candidates, list) and candidates else None
        if isinstance(candidate, dict):
            content = candidate.get("content")
            for part in (content.get("parts") or ()) if isinstance(content, dict) else ():
                if isinstance(part, dict):
                    out += self._part(part)
            self._finish = candidate.get("finishReason") or self._finish
        else:
            out += self._prompt_feedback(chunk.get("promptFeedback"))
        return out

    def close(self) -> list[dict]:
        """Close open blocks; message_delta with stop_reason and usage; message_stop."""
        if self._done:
            return []
        self._done = True
        if not self._started:
            return [{"type": "error", "error": {"type": "api_error", "message": EMPTY_MESSAGE}}]
        out = self._close_open()
        reason = "refusal" if self._blocked else stop_reason(self._finish, self._calls > 0)
        if self._meta is not None:
            usage = hub_usage(self._meta)
        else:  # no usage from Gemini: the local estimate (conversions.md §13)
            usage = {"input_tokens": self._input_tokens,
                     "output_tokens": estimate_output("".join(self._emitted))}
        out.append({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                    "usage": usage})
        out.append({"type": "message_stop"})
        return out

    # ------------------------------------------------------------------------------------ blocks

    def _start(self, chunk: dict) -> list[dict]:
        self._started = True
        meta = chunk.get("usageMetadata")
        usage = hub_usage(meta) if isinstance(meta, dict) else {"input_tokens": self._input_tokens}
        usage["output_tokens"] = 1  # as Anthropic's own message_start
        message = {"id": self._msg_id, "type": "message", "role": "assistant", "content": [],
                   "model": self._model, "stop_reason": None, "stop_sequence": None, "usage": usage}
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _part(self, part: dict) -> list[dict]:
        call = part.get("functionCall")
        if isinstance(call, dict):
            return self._tool_use(call)
        text = part.get("text")
        if isinstance(part.get("executableCode"), dict):
            code = part["executableCode"]
            text = f"```{str(code.get('language') or '').lower()}\n{code.get('code') or ''}\n```"
        elif isinstance(part.get("codeExecutionResult"), dict):
            text = part["codeExecutionResult"].get("output")
        if not isinstance(text, str) or not text:
            return []  # empty text parts carry only a thoughtSignature
        return self._append("thinking" if part.get("thought") is True else "text", text)

    def _append(self, kind: str, text: str) -> list[dict]:
        out = []
        if self._open is None or self._open[0] != kind:
            out += self._close_open()
            index = self._open_block(kind)
            block = ({"type": "thinking", "thinking": "", "signature": ""} if kind == "thinking"
                     else {"type": "text", "text": ""})
            out.append({"type": "content_block_start", "index": index, "content_block": block})
        self._emitted.append(text)
        delta = ({"type": "thinking_delta", "thinking": text} if kind == "thinking"
                 else {"type": "text_delta", "text": text})
        out.append({"type": "content_block_delta", "index": self._open[1], "delta": delta})
        return out

    def _open_block(self, kind: str) -> int:
        index = self._next
        self._next += 1
        self._open = (kind, index)
        return index

    def _close_open(self) -> list[dict]:
        if self._open is None:
            return []
        kind, index = self._open
        self._open = None
        out = []
        if kind == "thinking":  # Gemini thoughts carry no Anthropic signature: the synthetic one
            out.append({"type": "content_block_delta", "index": index,
                        "delta": {"type": "signature_delta", "signature": self._signature}})
        out.append({"type": "content_block_stop", "index": index})
        return out

    def _tool_use(self, call: dict) -> list[dict]:
        out = self._close_open()
        index = self._next
        self._next += 1
        raw_id = call.get("id")
        call_id = (safe_id(raw_id) if isinstance(raw_id, str) and raw_id
                   else f"toolu_{safe_id(self._msg_id.removeprefix('msg_'))}_{self._calls}")
        self._calls += 1
        args = call.get("args") if isinstance(call.get("args"), dict) else {}
        start = {"type": "tool_use", "id": call_id, "name": str(call.get("name") or ""), "input": {}}
        return out + [
            {"type": "content_block_start", "index": index, "content_block": start},
            {"type": "content_block_delta", "index": index,
             "delta": {"type": "input_json_delta", "partial_json": dumps(args)}},
            {"type": "content_block_stop", "index": index},
        ]

    def _prompt_feedback(self, feedback) -> list[dict]:
        reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
        if not reason or self._blocked:
            return []
        self._blocked = True
        return self._append("text", blocked_text(str(reason), feedback.get("blockReasonMessage")))


def _error_event(error: dict) -> dict:
    code = error.get("code")
    kind = anthropic_type(code) if isinstance(code, int) else "api_error"
    return {"type": "error", "error": {"type": kind, "message": str(error.get("message") or "Gemini error")}}


def gemini_to_hub_message(resp: dict, *, model: str, msg_id: str, signature: str) -> dict:
    """A hub message for a non-streaming Gemini response (§9.3); blocked prompts become refusals.

    An `{"error": …}` body raises UpstreamError with its code.
    """
    error = resp.get("error")
    if isinstance(error, dict):  # an error body that came with a 2xx status
        code = error.get("code")
        status = code if isinstance(code, int) and code >= 400 else 502
        raise UpstreamError(str(error.get("message") or "Gemini error"), status=status,
                            type=anthropic_type(status))
    converter = GeminiToHub(model=model, msg_id=msg_id, signature=signature, input_tokens=0)
    acc = Accumulator()
    for event in converter.feed(resp) + converter.close():
        acc.feed(event)
    return acc.result()
