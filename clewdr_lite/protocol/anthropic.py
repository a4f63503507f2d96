"""Hub rules: the Anthropic Messages request, response and stream shapes as plain dicts.

`validate` normalises an inbound request; `apply_model_rules` (model_rules.py) rewrites it for
the model it names (claude-code.md §7); `Accumulator` folds a hub event stream into one message
(claude-web.md §10.1).
Ids come in from the caller, so everything here is deterministic.
"""

from __future__ import annotations


from ..errors import BadRequest
from . import lenient
from .model_rules import apply_model_rules, split_model_suffixes, thinking_from_suffix

__all__ = [
    "DEFAULT_MAX_TOKENS", "HI_TEXT", "Accumulator", "apply_model_rules", "hi_message", "is_hi",
    "new_message_id", "prepare_for_api", "split_model_suffixes", "strip_foreign_thinking",
    "thinking_from_suffix", "validate", "without_thinking",
]

DEFAULT_MAX_TOKENS = 8192
ROLES = ("user", "assistant", "system")
HI_TEXT = "Claude Reverse Proxy is working, please send a real message."
# conversions.md §8.3: signatures the proxy invented for thinking from non-Anthropic upstreams
SYNTHETIC_SIGNATURE_PREFIX = "clewdr-lite:"
# blocks whose `input` arrives as input_json_delta fragments
_TOOL_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


def new_message_id(rand_hex: str) -> str:
    """A message id from caller-supplied randomness."""
    return "msg_" + rand_hex


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_message(i: int, msg) -> None:
    if not isinstance(msg, dict):
        raise BadRequest(f"messages.{i}: each message must be an object")
    if msg.get("role") not in ROLES:
        raise BadRequest(f"messages.{i}.role: must be one of user, assistant, system "
                         f"(got {msg.get('role')!r})")
    content = msg.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise BadRequest(f"messages.{i}.content: must be a string or a list of content blocks")
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            raise BadRequest(f"messages.{i}.content.{j}: each content block must be an object")
        kind = block.get("type")
        if not isinstance(kind, str):
            raise BadRequest(f"messages.{i}.content.{j}.type: must be a string")
        if kind == "text" and not isinstance(block.get("text"), str):
            raise BadRequest(f"messages.{i}.content.{j}.text: must be a string")
        if kind == "tool_result" and not isinstance(block.get("content", ""), (str, list)):
            raise BadRequest(f"messages.{i}.content.{j}.content: must be a string or a list of content blocks")


def _normalise_max_tokens(req: dict) -> None:
    value = req.get("max_tokens")
    if value is None:
        req["max_tokens"] = DEFAULT_MAX_TOKENS
        return
    # JavaScript clients occasionally send 4096.0; a whole float means the same number
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value) or value < 1:
        raise BadRequest("max_tokens: must be a positive integer")
    req["max_tokens"] = value


def _check_optional_fields(req: dict) -> None:
    """The optional fields' types (after _drop_absent: no nulls left among NULL_MEANS_ABSENT)."""
    if "stream" in req and not isinstance(req["stream"], bool):
        raise BadRequest("stream: must be a boolean")
    stops = req.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list)
                              or not all(isinstance(s, str) for s in stops)):
        raise BadRequest("stop_sequences: must be a list of strings")
    if "system" in req and not isinstance(req["system"], (str, list)):
        raise BadRequest("system: must be a string or a list of text blocks")
    tools = req.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise BadRequest("tools: must be a list of tool objects")
    for key in ("tool_choice", "thinking", "metadata"):
        if req.get(key) is not None and not isinstance(req[key], dict):
            raise BadRequest(f"{key}: must be an object")


NULL_MEANS_ABSENT = ("stream", "stop_sequences", "system")  # null means "not given" for every client we know


def _needs_normalising(body: dict) -> bool:
    """Whether validate() would change a top-level field (else the body itself is the request)."""
    value = body.get("max_tokens")
    # a missing key reads as False, never None: only a null given makes a test true
    return (type(value) is not int or body.get("top_k") == 0 or body.get("stream", False) is None
            or body.get("stop_sequences", False) is None or body.get("system", False) is None)


def _drop_absent(req: dict) -> None:
    """Fields whose value means "not given": nulls, and SillyTavern's top_k 0 (clients.md §6.1)."""
    for key in NULL_MEANS_ABSENT:
        if key in req and req[key] is None:
            del req[key]
    if req.get("top_k") == 0:
        del req["top_k"]


def validate(body) -> dict:
    """An inbound Messages request, normalised; BadRequest names the bad field.

    Only top-level fields are ever normalised, so the body itself comes back when it needs no change
    (a pass-through can then forward the client's bytes) and a shallow copy otherwise. Request
    rewriting elsewhere is copy-on-write: nothing mutates a message in place.
    """
    _check_body(body, count=False)
    if _needs_normalising(body):
        req = dict(body)
        _normalise_max_tokens(req)
        _drop_absent(req)
    else:  # max_tokens is an int already
        req = body
        if body["max_tokens"] < 1:
            raise BadRequest("max_tokens: must be a positive integer")
    _check_optional_fields(req)
    return req


def _check_body(body, *, count: bool) -> None:
    """The object, its model and its messages; a count may have no messages, not an empty model."""
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")
    if not isinstance(body.get("model"), str) or (count and not body["model"]):
        raise BadRequest("model: required, must be a string")
    messages = body.get("messages")
    if not isinstance(messages, list) or not (messages or count):
        raise BadRequest("messages: required, must be a list" if count else
                         "messages: required, must be a non-empty list")
    for i, msg in enumerate(messages):
        _check_message(i, msg)


def validate_count(body) -> dict:
    """An inbound count_tokens request: validate()'s checks of the messages and the optional
    fields, no max_tokens (a count takes none); a shallow copy."""
    _check_body(body, count=True)
    req = dict(body)
    _drop_absent(req)
    _check_optional_fields(req)
    return req


def is_hi(req: dict) -> bool:
    """SillyTavern's connection test: one user message saying exactly "Hi" (claude-web.md §17)."""
    messages = req.get("messages")
    if not isinstance(messages, list) or len(messages) != 1:
        return False
    msg = messages[0]
    if not isinstance(msg, dict) or msg.get("role") != "user":
        return False
    content = msg.get("content")
    if isinstance(content, list) and len(content) == 1 and isinstance(content[0], dict):
        block = content[0]
        return block.get("type") == "text" and block.get("text") == "Hi"
    return content == "Hi"


def hi_message(model: str, msg_id: str, text: str = HI_TEXT) -> dict:
    """A full Anthropic message answered locally (the "Hi" test, the expression classifier)."""
    return {
        "id": msg_id, "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }


# SillyTavern's Character Expressions classifier prompt (claude-web.md §17); Clewd answered it locally
EXPRESSIONS_PROMPT = ("From the list below, choose a word that best represents a character's "
                      "outfit description, action, or emotion")


def is_expressions_classifier(req: dict) -> bool:
    """Whether the last message is SillyTavern's expression classifier prompt."""
    messages = req.get("messages") or []
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    content = last.get("content")
    if isinstance(content, list):
        content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return isinstance(content, str) and EXPRESSIONS_PROMPT in content


def message_events(message: dict) -> list[dict]:
    """A complete message as the stream events that carry it (text blocks only)."""
    start = {k: v for k, v in message.items() if k != "content"}
    start.update(content=[], stop_reason=None, stop_sequence=None)
    events = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message["content"]):
        events += [{"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                   {"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": block.get("text", "")}},
                   {"type": "content_block_stop", "index": index}]
    events += [{"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]}},
               {"type": "message_stop"}]
    return events


def _is_foreign_thinking(block) -> bool:
    if not isinstance(block, dict) or block.get("type") != "thinking":
        return False
    signature = block.get("signature")
    return not signature or (isinstance(signature, str)
                             and signature.startswith(SYNTHETIC_SIGNATURE_PREFIX))


def strip_foreign_thinking(req: dict) -> dict:
    """Drop thinking blocks Anthropic rejects: empty or proxy-made signature (conversions §8.3);
    `req` itself when it holds none."""
    original = req.get("messages")
    messages, changed = [], not isinstance(original, list)
    for msg in original or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            messages.append(msg)
            continue
        kept = [b for b in content if not _is_foreign_thinking(b)]
        if len(kept) == len(content):
            messages.append(msg)
            continue
        changed = True
        if kept:  # a message that held only such blocks is dropped rather than sent empty
            messages.append({**msg, "content": kept})
    return {**req, "messages": messages} if changed else req


def _as_blocks(content) -> list:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    return list(content) if isinstance(content, list) else []


def prepare_for_api(req: dict, placeholder: str = "(continue)") -> dict:
    """Hoist `role: system` messages into `system` and make the first message a user turn; `req`
    itself when it needs neither."""
    hoisted, messages = [], []
    original = req.get("messages")
    for msg in original or []:
        if isinstance(msg, dict) and msg.get("role") == "system":
            hoisted.extend(_as_blocks(msg.get("content")))
        else:
            messages.append(msg)
    # the Messages API requires the conversation to open with a user turn
    opens_with_user = bool(messages) and messages[0].get("role") == "user"
    if isinstance(original, list) and opens_with_user and len(messages) == len(original):
        return req
    out = dict(req)
    if hoisted:
        out["system"] = _as_blocks(req.get("system")) + hoisted
    if not opens_with_user:
        messages.insert(0, {"role": "user", "content": placeholder})
    out["messages"] = messages
    return out


def without_thinking(message: dict) -> dict:
    """The message minus thinking blocks (SillyTavern reads only content[0]; clients.md §6.1)."""
    content = [b for b in message.get("content") or []
               if b.get("type") not in ("thinking", "redacted_thinking")]
    return {**message, "content": content}


# the objects each stream event type carries, which the converters and the aggregator read
_EVENT_OBJECT = {"message_start": "message", "content_block_start": "content_block",
                 "content_block_delta": "delta", "message_delta": "delta"}  # the object each carries
_USAGE_IN = {"message_start": "message", "message_delta": "event"}  # where an event's usage sits


def answer_problem(message) -> str | None:
    """Why an upstream Messages answer cannot be read (None when it can): an object whose
    `content` is a list of block objects and whose `usage`, if any (null counts as none), is an object."""
    if not isinstance(message, dict):
        return "not a JSON object"
    content = message.get("content")
    if type(content) is not list:
        return "content is not a list of blocks"
    for block in content:  # a loop, not all(generator): this runs on every non-streaming answer
        if not isinstance(block, dict):
            return "content is not a list of blocks"
    if not isinstance(message.get("usage") or {}, dict):
        return "usage is not an object"
    return None


def event_problem(event: dict) -> str | None:
    """Why an upstream stream event cannot be read (None when it can), as answer_problem."""
    kind = event.get("type")
    field = _EVENT_OBJECT.get(kind)
    if field is None:  # no object to read: nothing to check
        return None
    value = event.get(field)
    if not isinstance(value, dict):
        return f"{kind} without a {field} object"
    where = _USAGE_IN.get(kind)
    if where is not None and not isinstance((value if where == "message" else event).get("usage") or {}, dict):
        return f"{kind} usage is not an object"  # (null counts as absent)
    return None


def malformed_event(problem: str) -> dict:
    """The error event that stands for an upstream event event_problem() rejects."""
    return {"type": "error", "error": {"type": "api_error", "message": f"the upstream sent a malformed event: {problem}"}}


class Answer(dict):
    """A response message parsed from `raw`, bytes that may be sent on as they are (pass-through)."""

    __slots__ = ("raw",)

    def __init__(self, data: dict, raw: bytes) -> None:
        super().__init__(data)
        self.raw = raw


class _Block:
    """One content block being accumulated: the start payload plus its delta fragments."""

    __slots__ = ("data", "parts", "json_parts", "signature")

    def __init__(self, data: dict) -> None:
        self.data = dict(data)
        self.parts: list[str] = []
        self.json_parts: list[str] = []
        self.signature: list[str] = []

    def add(self, delta: dict) -> None:
        """Append one delta's fragment."""
        kind = delta.get("type")
        if kind == "text_delta":
            self.parts.append(delta.get("text") or "")
        elif kind == "thinking_delta":
            self.parts.append(delta.get("thinking") or "")
        elif kind == "signature_delta":
            self.signature.append(delta.get("signature") or "")
        elif kind == "input_json_delta":
            self.json_parts.append(delta.get("partial_json") or "")
        elif kind == "citations_delta" and delta.get("citation") is not None:
            self.data["citations"] = list(self.data.get("citations") or []) + [delta["citation"]]

    def build(self) -> dict:
        """The finished block: start payload plus the joined fragments."""
        block, kind = dict(self.data), self.data.get("type")
        if kind == "text":
            block["text"] = (block.get("text") or "") + "".join(self.parts)
        elif kind == "thinking":
            block["thinking"] = (block.get("thinking") or "") + "".join(self.parts)
            block["signature"] = (block.get("signature") or "") + "".join(self.signature)
        if self.json_parts or (kind in _TOOL_BLOCKS and not isinstance(block.get("input"), dict)):
            block["input"] = lenient.tool_input("".join(self.json_parts))
        return block


class Accumulator:
    """Folds hub stream events into one non-streaming message (claude-web.md §10.1)."""

    def __init__(self) -> None:
        self.message: dict = {}
        self.blocks: dict[int, _Block] = {}
        self.stop_reason: str | None = None
        self.stop_sequence: str | None = None
        self.usage: dict = {}
        self.error: dict | None = None

    def feed(self, event: dict) -> None:
        """Take one hub stream event."""
        kind = event.get("type")
        if kind == "content_block_delta":  # the most of a stream's events, first
            index = event.get("index", 0)
            block = self.blocks.get(index)
            if block is None:  # a delta without its start: a text block
                block = self.blocks[index] = _Block({"type": "text", "text": ""})
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta":  # the usual delta, without a call
                block.parts.append(delta.get("text") or "")
            else:
                block.add(delta)
        elif kind == "message_start":
            self.message = dict(event.get("message") or {})
            self.usage = dict(self.message.get("usage") or {})
        elif kind == "content_block_start":
            index = event.get("index", len(self.blocks))
            self.blocks[index] = _Block(event.get("content_block") or {})
        elif kind == "message_delta":
            self._message_delta(event)
        elif kind == "error":
            self.error = event

    def _message_delta(self, event: dict) -> None:
        delta = dict(event.get("delta") or {})
        if "stop_reason" in delta:
            self.stop_reason = delta.pop("stop_reason")
            self.stop_sequence = delta.pop("stop_sequence", None)
        self.message.update(delta)  # other fields (container …) survive
        # message_delta usage is cumulative: the last value wins, never a sum
        self.usage.update(event.get("usage") or {})

    def result(self) -> dict:
        """The aggregated Anthropic message."""
        message = dict(self.message)
        message.setdefault("type", "message")
        message.setdefault("role", "assistant")
        message["content"] = [self.blocks[i].build() for i in sorted(self.blocks)]
        message["stop_reason"] = self.stop_reason or "end_turn"
        message["stop_sequence"] = self.stop_sequence
        usage = dict(self.usage)
        usage.setdefault("input_tokens", 0)
        usage.setdefault("output_tokens", 0)
        message["usage"] = usage
        return message
