"""claude.ai completion events → hub stream events (claude-web.md §8, §9 steps 2–6, §12).

`WebEvents` edits `rendering_mode: "messages"` events; `RawEvents` synthesises the same hub events
from `rendering_mode: "raw"` completion objects, so one Accumulator aggregates either mode.
Events are edited as dicts, so fields we do not know survive.
"""

from __future__ import annotations

from .anthropic import event_problem, malformed_event
from .stops import StopMatcher
from .tokens import estimate_text

# §9 step 2: everything else (message_limit and other claude.ai extras) is dropped
STANDARD_EVENTS = frozenset({
    "message_start", "content_block_start", "content_block_delta", "content_block_stop",
    "message_delta", "message_stop", "ping", "error",
})
# §10.2: raw-mode stop reasons. claude.ai's own "stop_sequence" is its end-of-turn marker
# ("\n\nHuman:"), not one of the client's sequences, so it reads as a natural end.
RAW_STOP_REASONS = {"stop_sequence": "end_turn", "end_turn": "end_turn",
                    "max_tokens": "max_tokens", "refusal": "refusal"}


def _stop_events(index: int, seq: str, output_tokens: int) -> list[dict]:
    """§12 step 4: close the text block and the message after a stop-sequence match."""
    return [
        {"type": "content_block_stop", "index": index},
        {"type": "message_delta", "delta": {"stop_reason": "stop_sequence", "stop_sequence": seq},
         "usage": {"output_tokens": output_tokens}},
        {"type": "message_stop"},
    ]


def _text_delta(index: int, text: str) -> dict:
    return {"type": "content_block_delta", "index": index,
            "delta": {"type": "text_delta", "text": text}}


class WebEvents:
    """Edits one claude.ai messages-mode stream into hub events, enforcing stop sequences."""

    def __init__(self, *, model: str, msg_id: str, input_tokens: int, stops: list[str]) -> None:
        self.model, self.msg_id, self.input_tokens = model, msg_id, input_tokens
        self.stops = list(stops or [])
        self.matchers: dict[int, StopMatcher] = {}  # open text blocks by index
        self.output_tokens = 0
        self.done = False  # True once the stream is over for the client: abort the upstream

    def feed(self, event: dict) -> list[dict]:
        """One parsed upstream event → the hub events to forward (possibly none)."""
        kind = event.get("type") if isinstance(event, dict) else None
        if self.done or kind not in STANDARD_EVENTS:
            return []
        problem = event_problem(event)
        if problem is not None:  # what the converters could not read ends the stream here
            self.done = True
            return [malformed_event(problem)]
        handler = _HANDLERS.get(kind)
        if handler is None:
            if kind in ("message_stop", "error"):
                self.done = True  # an upstream error is relayed as is and ends the stream
            return [event]
        return handler(self, event)

    def close(self) -> list[dict]:
        """Upstream ended early: held-back text of open text blocks, so nothing is lost."""
        out = []
        for index, matcher in sorted(self.matchers.items()):
            text, _seq = matcher.flush()
            if text:
                self.output_tokens += estimate_text(text)
                out.append(_text_delta(index, text))
        self.matchers.clear()
        return out

    # the handlers below get events whose objects feed() has checked (anthropic.event_problem)

    def _message_start(self, event: dict) -> list[dict]:
        message = dict(event["message"])
        message["model"] = self.model  # never the upstream's (often empty) name
        if not message.get("id"):
            message["id"] = self.msg_id
        usage = dict(message.get("usage") or {})
        # upstream values win; the SDK needs both keys, so fill whichever is missing
        usage.setdefault("input_tokens", self.input_tokens)
        usage.setdefault("output_tokens", 0)
        message["usage"] = usage
        for key, value in (("type", "message"), ("role", "assistant"), ("content", []),
                           ("stop_reason", None), ("stop_sequence", None)):
            message.setdefault(key, value)
        return [{**event, "message": message}]

    def _block_start(self, event: dict) -> list[dict]:
        if self.stops and event["content_block"].get("type") == "text":
            self.matchers[event.get("index", 0)] = StopMatcher(self.stops)
        return [event]

    def _block_delta(self, event: dict) -> list[dict]:
        delta = event["delta"]
        kind, index = delta.get("type"), event.get("index", 0)
        if kind == "thinking_delta":
            self.output_tokens += estimate_text(str(delta.get("thinking") or ""))
        if kind != "text_delta":
            return [event]
        matcher = self.matchers.get(index)
        text = str(delta.get("text") or "")
        if matcher is None:
            self.output_tokens += estimate_text(text)
            return [event]
        emit, seq = matcher.feed(text)
        return self._emit(event, index, emit, seq)

    def _emit(self, event: dict, index: int, emit: str, seq: str | None) -> list[dict]:
        """One delta for what the matcher released; the stop events if it matched."""
        out = []
        if emit:
            self.output_tokens += estimate_text(emit)
            out.append({**event, "delta": {**event["delta"], "text": emit}})
        if seq is not None:
            self.done = True
            self.matchers.pop(index, None)
            out.extend(_stop_events(index, seq, self.output_tokens))
        return out

    def _block_stop(self, event: dict) -> list[dict]:
        index = event.get("index", 0)
        matcher = self.matchers.pop(index, None)
        if matcher is None:
            return [event]
        text, seq = matcher.flush()  # held-back text goes out before the block closes
        if seq is not None:  # the end of the block decided a waiting match
            return self._emit(_text_delta(index, ""), index, text, seq)
        out = []
        if text:
            self.output_tokens += estimate_text(text)
            out.append(_text_delta(index, text))
        out.append(event)
        return out

    def _message_delta(self, event: dict) -> list[dict]:
        usage = dict(event.get("usage") or {})
        usage.setdefault("output_tokens", self.output_tokens)  # upstream values win when present
        return [{**event, "usage": usage}]


_HANDLERS = {
    "message_start": WebEvents._message_start,
    "content_block_start": WebEvents._block_start,
    "content_block_delta": WebEvents._block_delta,
    "content_block_stop": WebEvents._block_stop,
    "message_delta": WebEvents._message_delta,
}


class RawEvents:
    """Synthesises hub events from raw-mode `{"completion": …}` objects (§8.2, §10.2)."""

    def __init__(self, *, model: str, msg_id: str, input_tokens: int, stops: list[str]) -> None:
        self.model, self.msg_id, self.input_tokens = model, msg_id, input_tokens
        self.matcher = StopMatcher(list(stops or []))
        self.started = False
        self.stop_reason: str | None = None
        self.output_tokens = 0
        self.done = False

    def _start(self) -> list[dict]:
        if self.started:
            return []
        self.started = True
        message = {"id": self.msg_id, "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": self.input_tokens, "output_tokens": 0}}
        return [{"type": "message_start", "message": message},
                {"type": "content_block_start", "index": 0,
                 "content_block": {"type": "text", "text": ""}}]

    def feed(self, obj: dict) -> list[dict]:
        """One parsed raw-mode object → hub events; a stop reason ends the message."""
        if self.done or not isinstance(obj, dict):
            return []
        error = obj.get("error")
        if error:
            self.done = True
            error = error if isinstance(error, dict) else {"message": str(error)}
            return [{"type": "error", "error": {"type": error.get("type") or "api_error",
                                                "message": str(error.get("message") or "")}}]
        out = self._start()
        text = obj.get("completion")
        if isinstance(text, str) and text:
            emit, seq = self.matcher.feed(text) if self.matcher else (text, None)
            out.extend(self._text(emit, seq))
        if obj.get("stop_reason") and not self.done:
            self.stop_reason = RAW_STOP_REASONS.get(obj["stop_reason"], "end_turn")
            out.extend(self.close())
        return out

    def _text(self, emit: str, seq: str | None) -> list[dict]:
        out = []
        if emit:
            self.output_tokens += estimate_text(emit)
            out.append(_text_delta(0, emit))
        if seq is not None:
            self.done = True
            out.extend(_stop_events(0, seq, self.output_tokens))
        return out

    def close(self) -> list[dict]:
        """End of the raw stream: flush held text, close the block and the message."""
        if self.done:
            return []
        out = self._start()
        text, seq = self.matcher.flush() if self.matcher else ("", None)
        out.extend(self._text(text, seq))
        if self.done:
            return out
        self.done = True
        out.append({"type": "content_block_stop", "index": 0})
        out.append({"type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": self.output_tokens}})
        out.append({"type": "message_stop"})
        return out
