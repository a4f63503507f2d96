"""Hub (Anthropic Messages) request → Gemini `generateContent` body, for Gemini upstreams (conversions.md §9.2, §10).

The body carries no model and no stream flag: both travel in the upstream URL. Safety settings are
the upstream layer's edit (gemini.md §7, `apply_safety`).
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

# Gemini CLI's own placeholder; newer Gemini models reject function-call history without a signature
SKIP_SIGNATURE = "skip_thought_signature_validator"
MAX_STOP_SEQUENCES = 5  # Gemini refuses more
# §10: thinking budget ranges per model family
PRO_BUDGET = (128, 32768)
OTHER_BUDGET = (0, 24576)
LEVEL_HIGH_FROM = 8192  # 3.x models: budgets below this ask for thinkingLevel LOW
# §3.3: hub tool_choice type -> functionCallingConfig.mode
_MODES = {"auto": "AUTO", "any": "ANY", "none": "NONE", "tool": "ANY"}
# an image URL's extension -> the mimeType fileData needs
_URL_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
              "webp": "image/webp", "pdf": "application/pdf"}
_GENERATION = re.compile(r"gemini-(\d+)")
_EXTENSION = re.compile(r"\.([A-Za-z0-9]+)(?:[?#]|$)")
_SILENT_DROPS = frozenset({"thinking", "redacted_thinking"})  # unsigned for Gemini: dropped


def _ignore(_message: str) -> None:
    return None


def _generation(model: str) -> int:
    match = _GENERATION.search(model)
    return int(match.group(1)) if match else 0


def _url_type(url: str, default: str) -> str:
    match = _EXTENSION.search(url.split("://", 1)[-1].split("/", 1)[-1])
    return _URL_TYPES.get(match.group(1).lower(), default) if match else default


def _texts(content) -> list[str]:
    """The non-empty texts of a `system` value or a message's content."""
    if isinstance(content, str):
        return [content] if content.strip() else []
    return [b["text"] for b in content or () if isinstance(b, dict) and b.get("type") == "text"
            and isinstance(b.get("text"), str) and b["text"].strip()]


def _call_names(messages) -> dict:
    """tool_use id -> tool name, so each functionResponse can name its call."""
    names = {}
    for msg in messages:
        content = msg.get("content") if isinstance(msg, dict) else None
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict) and block.get("type") == "tool_use":
                names[block.get("id")] = block.get("name") or ""
    return names


def hub_to_gemini(req: dict, *, warn: Callable[[str], None] | None = None) -> dict:
    """A Gemini request body for a hub request; the model named in `req` picks the thinking form."""
    warn = warn or _ignore
    messages = [m for m in req.get("messages") or () if isinstance(m, dict)]
    names = _call_names(messages)
    system = _texts(req.get("system"))
    contents: list[dict] = []
    for msg in messages:
        if msg.get("role") == "system":  # mid-conversation system messages join the instruction
            system += _texts(msg.get("content"))
            continue
        role = "model" if msg.get("role") == "assistant" else "user"
        parts = _parts(msg.get("content"), names, warn)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    body: dict = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": t} for t in system]}
    config = _generation_config(req)
    if config:
        body["generationConfig"] = config
    _tools(req, body, warn)
    return body


# ------------------------------------------------------------------------------------------- parts


def _parts(content, names: Mapping, warn: Callable[[str], None]) -> list:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for block in content or ():
        kind = block.get("type") if isinstance(block, dict) else None
        convert = _BLOCKS.get(kind)
        if convert is not None:
            parts += convert(block, names)
        elif kind not in _SILENT_DROPS:
            warn(f"dropped a {kind} block (Gemini has no equivalent)")
    return parts


def _text(block: dict, _names) -> list:
    return [{"text": block["text"]}] if isinstance(block.get("text"), str) and block["text"] else []


def _media(block: dict, _names) -> list:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    kind = source.get("type")
    is_image = block.get("type") == "image"
    if kind == "base64":
        default = "image/jpeg" if is_image else "application/pdf"
        return [{"inlineData": {"mimeType": source.get("media_type") or default,
                                "data": source.get("data") or ""}}]
    if kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]
        mime = _url_type(url, "image/jpeg" if is_image else "application/pdf")
        return [{"fileData": {"mimeType": mime, "fileUri": url}}]
    if kind == "text" and isinstance(source.get("data"), str):  # a plain-text document
        return [{"text": source["data"]}] if source["data"] else []
    if kind == "content":
        return [{"text": t} for t in _texts(source.get("content"))]
    return []  # file ids refer to Anthropic's Files API: nothing to send


def _tool_use(block: dict, _names) -> list:
    call = {"id": block.get("id"), "name": block.get("name") or "",
            "args": block.get("input") if isinstance(block.get("input"), dict) else {}}
    return [{"functionCall": call, "thoughtSignature": SKIP_SIGNATURE}]


def _tool_result(block: dict, names: Mapping) -> list:
    call_id = block.get("tool_use_id")
    content = block.get("content")
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
    text = "\n".join(_texts(blocks))
    key = "error" if block.get("is_error") else "output"  # the mirror of to_hub's unwrapping
    part = {"functionResponse": {"id": call_id, "name": names.get(call_id) or str(call_id or ""),
                                 "response": {key: text}}}
    # images in a result cannot sit inside functionResponse.response: they follow it
    media = [p for b in blocks if isinstance(b, dict) and b.get("type") in ("image", "document")
             for p in _media(b, names)]
    return [part] + media


_BLOCKS = {"text": _text, "image": _media, "document": _media, "tool_use": _tool_use,
           "tool_result": _tool_result}


# ------------------------------------------------------------------------------ generation config


def _generation_config(req: Mapping) -> dict:
    config = {}
    for hub_key, key in (("max_tokens", "maxOutputTokens"), ("temperature", "temperature"),
                         ("top_p", "topP"), ("top_k", "topK")):
        if req.get(hub_key) is not None:
            config[key] = req[hub_key]
    stops = req.get("stop_sequences")
    if isinstance(stops, list) and stops:
        config["stopSequences"] = stops[:MAX_STOP_SEQUENCES]
    output = req.get("output_config") if isinstance(req.get("output_config"), dict) else {}
    fmt = output.get("format") or req.get("output_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = fmt["schema"]
    thinking = thinking_config(req.get("thinking"), output.get("effort"), str(req.get("model") or ""))
    if thinking:
        config["thinkingConfig"] = thinking
    return config


def thinking_config(thinking, effort, model: str) -> dict | None:
    """§10: hub thinking (+ effort) → Gemini thinkingConfig for `model`; None for no setting."""
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    level_based = _generation(model) >= 3
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        budget = budget if isinstance(budget, int) and not isinstance(budget, bool) else 0
        if level_based:
            return {"includeThoughts": True,
                    "thinkingLevel": "LOW" if budget < LEVEL_HIGH_FROM else "HIGH"}
        low, high = PRO_BUDGET if "-pro" in model else OTHER_BUDGET
        return {"includeThoughts": True, "thinkingBudget": min(max(budget, low), high)}
    if kind == "adaptive":
        if level_based:
            return {"includeThoughts": True, "thinkingLevel": "LOW" if effort == "low" else "HIGH"}
        return {"includeThoughts": True, "thinkingBudget": -1}
    if "2.5-flash" in model:  # 2.5 Flash thinks unless told not to
        return {"thinkingBudget": 0}
    return None


# ------------------------------------------------------------------------------------------- tools


def _tools(req: Mapping, body: dict, warn: Callable[[str], None]) -> None:
    declarations, search = [], False
    for tool in req.get("tools") or ():
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind.startswith("web_search"):
            search = True
        elif isinstance(tool, dict) and kind in (None, "custom") and tool.get("name"):
            decl = {"name": tool["name"]}
            if tool.get("description"):
                decl["description"] = tool["description"]
            decl["parametersJsonSchema"] = tool.get("input_schema") or {"type": "object",
                                                                        "properties": {}}
            declarations.append(decl)
        else:
            warn(f"dropped the {kind} tool (Gemini has no equivalent)")
    tools = [{"functionDeclarations": declarations}] if declarations else []
    if search:
        tools.append({"googleSearch": {}})
    if not tools:
        return
    body["tools"] = tools
    choice = req.get("tool_choice")
    mode = _MODES.get(choice.get("type")) if isinstance(choice, dict) else None
    if declarations and mode:
        calling = {"mode": mode}
        if choice["type"] == "tool" and choice.get("name"):
            calling["allowedFunctionNames"] = [choice["name"]]
        body["toolConfig"] = {"functionCallingConfig": calling}
