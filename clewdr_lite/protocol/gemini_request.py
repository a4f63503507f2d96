"""Gemini `generateContent` request → hub (Anthropic Messages) request (conversions.md §9.1, §10)."""

from __future__ import annotations

import copy
from typing import Callable, Mapping

from ..errors import BadRequest
from .gemini_contents import Contents
from .gemini_normalize import normalize
from .openai import DEFAULT_MAX_TOKENS, JSON_OBJECT_INSTRUCTION, WEB_SEARCH_TOOL, safe_id

# §10: thinkingLevel → output_config.effort (with adaptive thinking)
_LEVELS = {"MINIMAL": "low", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}
# §3.3: functionCallingConfig.mode → tool_choice type
_MODES = {"AUTO": "auto", "VALIDATED": "auto", "NONE": "none", "ANY": "any"}
# JSON Schema keywords whose values are schemas: a map of them, a list of them, or one
_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SCHEMA_ONE = frozenset({"items", "additionalProperties", "not", "contains", "if", "then", "else"})
_EMPTY_SCHEMA = {"type": "object", "properties": {}}


def _ignore(_message: str) -> None:
    return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------------ schema


def _lower(kind):
    if isinstance(kind, str):
        return kind.lower()
    return [k.lower() if isinstance(k, str) else k for k in kind] if isinstance(kind, list) else kind


def _with_null(kind):
    if isinstance(kind, list):
        return kind if "null" in kind else kind + ["null"]
    return kind if kind == "null" else [kind, "null"]


def json_schema(node):
    """Gemini's OpenAPI schema subset → JSON Schema: types lower-cased, `nullable` → `[t, "null"]`."""
    if not isinstance(node, dict):
        return copy.deepcopy(node)
    out = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: json_schema(sub) for name, sub in value.items()}
        elif (key in _SCHEMA_LISTS or key == "items") and isinstance(value, list):
            out[key] = [json_schema(sub) for sub in value]
        elif key in _SCHEMA_ONE and isinstance(value, dict):
            out[key] = json_schema(value)
        elif key == "type":
            out[key] = _lower(value)
        elif key != "nullable":
            out[key] = copy.deepcopy(value)
    if node.get("nullable") is True and "type" in out:
        out["type"] = _with_null(out["type"])
    return out


# ---------------------------------------------------------------------------------------- request


def to_hub(body: dict, *, model: str, warn: Callable[[str], None] | None = None) -> dict:
    """A hub request for a Gemini request (normalised here too) and the model from the URL path."""
    warn = warn or _ignore
    req = normalize(body, warn)
    contents = req.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("contents must be a non-empty array")
    if req.get("cachedContent"):
        raise BadRequest("cachedContent is supported only when the model is served by Gemini")
    config = _object(req, "generationConfig")
    hub = {"model": model, "max_tokens": _max_tokens(config),
           "messages": Contents(warn).convert(contents)}
    system = _system_blocks(req.get("systemInstruction"))
    _sampling(config, hub)
    _output_format(config, hub, system)
    _thinking(config.get("thinkingConfig"), hub)
    _tools(req, hub, warn)
    if system:
        hub["system"] = system
    return hub


def count_body_to_hub(body: dict, *, model: str) -> dict:
    """The hub request whose input a countTokens body (`contents` or `generateContentRequest`) counts."""
    req = normalize(body)
    inner = req.get("generateContentRequest")
    if isinstance(inner, dict):
        req = inner
    # generation settings change no input token, and must not fail a count (candidateCount …)
    req = {k: v for k, v in req.items() if k not in ("generationConfig", "cachedContent")}
    return to_hub(req, model=model)


def tool_name_map(body: dict) -> dict[str, str]:
    """Sanitised tool name → the client's declared name, for the names sanitising changed."""
    tools = normalize({"tools": body.get("tools")}).get("tools")
    names = []
    for tool in tools if isinstance(tools, list) else ():
        for decl in (tool.get("functionDeclarations") or ()) if isinstance(tool, dict) else ():
            names.append(decl.get("name") if isinstance(decl, dict) else None)
    return {safe_id(n): n for n in names if isinstance(n, str) and safe_id(n) != n}


def _object(req: Mapping, key: str) -> dict:
    value = req.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{key} must be an object")
    return value


def _system_blocks(system) -> list:
    parts = system.get("parts") if isinstance(system, dict) else None
    texts = [p.get("text") for p in parts or () if isinstance(p, dict) and not p.get("thought")]
    return [{"type": "text", "text": t} for t in texts if isinstance(t, str) and t.strip()]


def _max_tokens(config: Mapping) -> int:
    value = config.get("maxOutputTokens")
    if value is None:
        return DEFAULT_MAX_TOKENS
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest("generationConfig.maxOutputTokens must be a positive integer")
    return value


def _number(config: Mapping, key: str):
    value = config.get(key)
    if value is not None and not _is_number(value):
        raise BadRequest(f"generationConfig.{key} must be a number")
    return value


def _sampling(config: Mapping, hub: dict) -> None:
    count = _number(config, "candidateCount")
    if count is not None and count > 1:
        raise BadRequest("candidateCount > 1 is not supported for this model")
    temperature = _number(config, "temperature")
    if temperature is not None:
        hub["temperature"] = min(max(temperature, 0), 1)  # Gemini allows 0–2, Anthropic 0–1
    if _number(config, "topP") is not None:
        hub["top_p"] = config["topP"]
    if _number(config, "topK"):  # 0 means unset for the clients that send it
        hub["top_k"] = int(config["topK"])
    stops = config.get("stopSequences")
    if isinstance(stops, str):
        stops = [stops]
    if stops is None:
        return
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise BadRequest("generationConfig.stopSequences must be an array of strings")
    if any(stops):
        hub["stop_sequences"] = [s for s in stops if s]


def _output_format(config: Mapping, hub: dict, system: list) -> None:
    if config.get("responseMimeType") != "application/json":
        return
    schema = config.get("responseJsonSchema")
    if not isinstance(schema, dict):
        schema = config.get("responseSchema")
    if isinstance(schema, dict):
        # Gemini CLI sends OpenAPI-style upper-case types even in responseJsonSchema
        hub.setdefault("output_config", {})["format"] = {"type": "json_schema",
                                                         "schema": json_schema(schema)}
    else:  # JSON without a schema: the same instruction as OpenAI's json_object
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})


def _thinking(config, hub: dict) -> None:
    """§10: thinkingLevel / thinkingBudget → hub thinking (+ effort)."""
    if not isinstance(config, dict):
        return
    level, budget = config.get("thinkingLevel"), config.get("thinkingBudget")
    if isinstance(level, str) and level.upper() in _LEVELS:
        hub["thinking"] = {"type": "adaptive"}
        hub.setdefault("output_config", {})["effort"] = _LEVELS[level.upper()]
    elif _is_number(budget):
        if budget > 0:
            hub["thinking"] = {"type": "enabled", "budget_tokens": max(1024, int(budget))}
        elif budget < 0:  # -1: dynamic
            hub["thinking"] = {"type": "adaptive"}
    elif config.get("includeThoughts") is True:
        # thoughts asked for without a budget: Gemini thinks dynamically by default
        hub["thinking"] = {"type": "adaptive"}


# ------------------------------------------------------------------------------------------- tools


def _tools(req: Mapping, hub: dict, warn: Callable[[str], None]) -> None:
    source = req.get("tools")
    if source is None:
        return
    if isinstance(source, dict):
        source = [source]
    if not isinstance(source, list):
        raise BadRequest("tools must be an array")
    tools, search = [], False
    for j, tool in enumerate(source):
        if not isinstance(tool, dict):
            raise BadRequest(f"tools[{j}] must be an object")
        for key, value in tool.items():
            if key == "functionDeclarations":
                decls = value if isinstance(value, list) else [value]
                tools += [_declaration(d, j, k) for k, d in enumerate(decls)]
            elif key in ("googleSearch", "googleSearchRetrieval"):
                search = True
            else:  # codeExecution, urlContext … have no hub equivalent
                warn(f"tools[{j}]: dropped {key}")
    if search and all(t["name"] != WEB_SEARCH_TOOL["name"] for t in tools):
        tools.append(dict(WEB_SEARCH_TOOL))
    if tools:  # Anthropic refuses tool_choice without tools
        hub["tools"] = tools
        choice = _tool_choice(req.get("toolConfig"))
        if choice:
            hub["tool_choice"] = choice


def _declaration(decl, j: int, k: int) -> dict:
    name = decl.get("name") if isinstance(decl, dict) else None
    if not isinstance(name, str) or not name:
        raise BadRequest(f"tools[{j}].functionDeclarations[{k}].name must be a non-empty string")
    if isinstance(decl.get("parametersJsonSchema"), dict):  # already JSON Schema (Gemini CLI)
        schema = copy.deepcopy(decl["parametersJsonSchema"])
    elif isinstance(decl.get("parameters"), dict):
        schema = json_schema(decl["parameters"])
    else:
        schema = copy.deepcopy(_EMPTY_SCHEMA)
    schema.setdefault("type", "object")
    tool = {"name": safe_id(name)}
    if isinstance(decl.get("description"), str) and decl["description"]:
        tool["description"] = decl["description"]
    tool["input_schema"] = schema
    return tool


def _tool_choice(config) -> dict | None:
    calling = config.get("functionCallingConfig") if isinstance(config, dict) else None
    mode = calling.get("mode") if isinstance(calling, dict) else None
    kind = _MODES.get(mode.upper()) if isinstance(mode, str) else None
    if kind is None:
        return None
    names = calling.get("allowedFunctionNames")
    if kind == "any" and isinstance(names, list) and len(names) == 1 and isinstance(names[0], str):
        return {"type": "tool", "name": safe_id(names[0])}
    return {"type": kind}  # several allowed names cannot be expressed: any of the tools
