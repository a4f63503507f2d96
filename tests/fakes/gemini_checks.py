"""How the fake reads a Gemini request body the way Google's JSON parser and validators do."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.fakes.gemini_errors import Rejected, bad_request, plain_bad_request, safety_rejection
from tests.fakes.gemini_wire import SKIP_SIGNATURES, b64decode_any

API = "google.ai.generativelanguage.v1beta"
CATEGORIES = ("HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_SEXUALLY_EXPLICIT",
              "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_CIVIC_INTEGRITY")
THRESHOLDS = ("HARM_BLOCK_THRESHOLD_UNSPECIFIED", "BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH",
              "BLOCK_NONE", "OFF")
DATA_FIELDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
               "codeExecutionResult")
# Subtrees that hold the user's own names (Struct, JSON Schema, maps): never renamed, never checked.
OPAQUE = frozenset({"args", "response", "parameters", "parametersJsonSchema", "responseSchema", "responseJsonSchema",
                    "_responseJsonSchema", "labels"})
# Repeated fields: Google's parser takes a single object where a list is expected (SillyTavern relies on it).
REPEATED = frozenset({"contents", "parts", "safetySettings", "tools", "functionDeclarations"})
# Field names each message type knows (camelCase); None: not checked.
KNOWN: dict[str, frozenset[str]] = {
    "request": frozenset({"model", "contents", "tools", "toolConfig", "safetySettings", "systemInstruction",
                          "generationConfig", "cachedContent", "labels", "serviceTier", "store"}),
    "count": frozenset({"model", "contents", "generateContentRequest"}),
    "vertex_count": frozenset({"model", "contents", "systemInstruction", "tools", "generationConfig"}),
    "content": frozenset({"role", "parts"}),
    "part": frozenset(DATA_FIELDS + ("thought", "thoughtSignature", "videoMetadata", "partMetadata",
                                     "mediaResolution")),
    "safety": frozenset({"category", "threshold", "method"}),
    "generationConfig": frozenset({
        "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "_responseJsonSchema",
        "responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed",
        "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers",
        "speechConfig", "thinkingConfig", "imageConfig", "mediaResolution", "audioTimestamp", "routingConfig"}),
    "thinkingConfig": frozenset({"includeThoughts", "thinkingBudget", "thinkingLevel"}),
}
CHILD = {("request", "contents"): "content", ("request", "systemInstruction"): "content",
         ("request", "safetySettings"): "safety", ("request", "generationConfig"): "generationConfig",
         ("generationConfig", "thinkingConfig"): "thinkingConfig", ("content", "parts"): "part",
         ("count", "contents"): "content", ("count", "generateContentRequest"): "request",
         ("vertex_count", "contents"): "content", ("vertex_count", "systemInstruction"): "content",
         ("vertex_count", "generationConfig"): "generationConfig"}
MISSING_SIGNATURE = ("Function call is missing a thought_signature in functionCall parts. This is required for tools "
                     "to work correctly, and missing thought_signature may lead to degraded model performance. "
                     "Additional data, function call `default_api:{name}` , position {position}. Please refer to "
                     "https://ai.google.dev/gemini-api/docs/thought-signatures for more details.")
_UPPER = re.compile(r"(?<!^)([A-Z])")


def camel(name: str) -> str:
    """The lowerCamelCase JSON name of a proto field name (`safety_settings` → `safetySettings`)."""
    if name.startswith("_") or "_" not in name:
        return name
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def snake(name: str) -> str:
    """The proto field name of a JSON name, as Google's messages print paths."""
    return _UPPER.sub(r"_\1", name).lower()


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def normalise(value: Any, kind: str | None, path: str = "") -> Any:
    """A camelCase copy of a request; raises Rejected on duplicate or unknown fields, as Google's parser does."""
    if isinstance(value, list):
        return [normalise(item, kind, f"{path}[{n}]") for n, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, item in value.items():
        name = camel(key)
        if name in out:
            # Both spellings of one field: the proto parser refuses to set a field twice.
            raise bad_request(f"Invalid JSON payload received. Duplicate field \"{key}\" at '{path or '.'}': "
                              f"\"{spelled[name]}\" already sets field \"{snake(name)}\".", _at(path, snake(name)))
        known = KNOWN.get(kind or "")
        if known is not None and name not in known:
            where = f" at '{path}'" if path else ""
            raise bad_request(f"Invalid JSON payload received. Unknown name \"{key}\"{where}: Cannot find field.",
                              path or None)
        spelled[name] = key
        if name in OPAQUE:
            out[name] = item
            continue
        if name in REPEATED and isinstance(item, dict):
            item = [item]
        out[name] = normalise(item, CHILD.get((kind or "", name)), _at(path, snake(name)))
    return out


def _content_problem(content: Any, path: str) -> Rejected | None:
    if not isinstance(content, dict):
        return bad_request(f"Invalid value at '{path}' (type.googleapis.com/{API}.Content), {content!r}", path)
    role = content.get("role")
    if role is not None and role not in ("user", "model") and not path.startswith("system"):
        return plain_bad_request("Please use a valid role: user, model.")
    parts = content.get("parts")
    if not parts:
        return plain_bad_request(f"* GenerateContentRequest.{path}.parts: contents.parts must not be empty.\n")
    for n, part in enumerate(parts):
        problem = _part_problem(part, f"{path}.parts[{n}]")
        if problem is not None:
            return problem
    return None


def _part_problem(part: Any, path: str) -> Rejected | None:
    if not isinstance(part, dict):
        return bad_request(f"Invalid value at '{path}' (type.googleapis.com/{API}.Part), {part!r}", path)
    # proto3 treats "" as unset: an empty text part has no data at all (unless it only carries a signature).
    empty_text = part.get("text") == "" and "thoughtSignature" not in part
    data = [f for f in DATA_FIELDS if f in part and not (f == "text" and empty_text)]
    if not data:
        return plain_bad_request(f"* GenerateContentRequest.{path}.data: required oneof field 'data' must have one "
                                 f"initialized field\n")
    if len(data) > 1:
        return bad_request(f"Invalid JSON payload received. Oneof field 'data' is already set. Cannot set "
                           f"'{snake(data[1])}'", f"{path}.{snake(data[1])}")
    signature = part.get("thoughtSignature")
    if signature is not None and (not isinstance(signature, str) or b64decode_any(signature) is None):
        return bad_request(f"Invalid value at '{path}.thought_signature' (TYPE_BYTES), Base64 decoding failed for "
                           f"\"{signature}\"", f"{path}.thought_signature")
    inline = part.get("inlineData")
    if isinstance(inline, dict) and b64decode_any(str(inline.get("data", ""))) is None:
        return bad_request(f"Invalid value at '{path}.inline_data.data' (TYPE_BYTES), Base64 decoding failed for "
                           f"\"{str(inline.get('data'))[:40]}\"", f"{path}.inline_data.data")
    for name in ("functionCall", "functionResponse"):
        if name in part and not (isinstance(part[name], dict) and part[name].get("name")):
            return plain_bad_request(f"* GenerateContentRequest.{path}.{snake(name)}.name: Name cannot be empty.\n")
    return None


def _safety_problem(settings: Any) -> Rejected | None:
    for n, setting in enumerate(settings or []):
        path = f"safety_settings[{n}]"
        if not isinstance(setting, dict):
            return bad_request(f"Invalid value at '{path}' (type.googleapis.com/{API}.SafetySetting)", path)
        for name, allowed, enum in (("category", CATEGORIES, "HarmCategory"),
                                    ("threshold", THRESHOLDS, "SafetySetting.HarmBlockThreshold")):
            if setting.get(name) not in allowed:
                return bad_request(f"Invalid value at '{path}.{name}' (type.googleapis.com/{API}.{enum}), "
                                   f"\"{setting.get(name)}\"", f"{path}.{name}")
    return None


def validate_generate(body: dict[str, Any]) -> None:
    """Raise Rejected for a normalised GenerateContentRequest Google would refuse."""
    contents = body.get("contents")
    if not contents:
        raise plain_bad_request("* GenerateContentRequest.contents: contents is not specified\n")
    for n, content in enumerate(contents):
        problem = _content_problem(content, f"contents[{n}]")
        if problem is not None:
            raise problem
    system = body.get("systemInstruction")
    if system is not None:
        problem = _content_problem(system, "system_instruction")
        if problem is not None:
            raise problem
    problem = _safety_problem(body.get("safetySettings"))
    if problem is not None:
        raise problem


def check_signatures(body: dict[str, Any], known: Callable[[bytes], bool]) -> None:
    """Gemini 3 rules: signatures must be genuine, and the current turn's function calls must carry one."""
    contents = body.get("contents") or []
    start = 0  # the current turn begins after the last user content that says something
    for n, content in enumerate(contents):
        if content.get("role", "user") == "user" and any("text" in p for p in content.get("parts", [])):
            start = n + 1
    for n, content in enumerate(contents):
        for part in content.get("parts", []):
            raw = b64decode_any(part["thoughtSignature"]) if "thoughtSignature" in part else None
            skip = part.get("thoughtSignature") in SKIP_SIGNATURES
            if raw is not None and not skip and not known(raw):
                raise plain_bad_request("Corrupted thought signature.")
        if n < start or content.get("role") != "model":
            continue
        calls = [p for p in content.get("parts", []) if "functionCall" in p]
        if calls and "thoughtSignature" not in calls[0]:
            raise plain_bad_request(MISSING_SIGNATURE.format(name=calls[0]["functionCall"]["name"], position=n + 1))


def safety_failure(settings: Any) -> Rejected | None:
    """What a model that takes neither CIVIC_INTEGRITY nor OFF answers, or None when the settings are fine."""
    for n, setting in enumerate(settings or []):
        if isinstance(setting, dict) and setting.get("category") == "HARM_CATEGORY_CIVIC_INTEGRITY":
            return safety_rejection(n, civic=True)
    for n, setting in enumerate(settings or []):
        if isinstance(setting, dict) and setting.get("threshold") == "OFF":
            return safety_rejection(n, civic=False)
    return None


def include_thoughts(body: dict[str, Any]) -> bool:
    """Whether a normalised request asks for thought parts."""
    config = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
    return isinstance(config, dict) and config.get("includeThoughts") is True
