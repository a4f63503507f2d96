"""Model-specific request rewriting (claude-code.md §7), applied to every Claude-family upstream.

Anthropic removes request parameters as generations ship and answers 400 to a parameter the model
no longer knows, so the request is rewritten to the nearest shape the model accepts.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

THINKING_SUFFIX = "-thinking"
ONE_M_SUFFIX = "-1M"
MIN_BUDGET = 1024
DEFAULT_BUDGET = 4096
ADAPTIVE = {"type": "adaptive", "display": "summarized"}
EXTENDED = {"type": "enabled", "budget_tokens": DEFAULT_BUDGET}
EFFORT_ORDER = ("low", "medium", "high", "xhigh", "max")
SAMPLING = ("temperature", "top_p", "top_k")
_THINKING_TYPES = ("enabled", "disabled", "adaptive")

# line by substring, first hit wins, so Fable/Mythos beat any other word in the name
_LINES = (("fable", "fable"), ("mythos", "fable"), ("opus", "opus"), ("sonnet", "sonnet"),
          ("haiku", "haiku"))


class Traits(NamedTuple):
    """What a model accepts: thinking mode, sampling parameters, effort rungs (§7.2)."""

    thinking: str  # "always" | "adaptive" (adaptive only) | "both" | "extended" (extended only)
    sampling: bool
    efforts: tuple[str, ...]


_FULL = EFFORT_ORDER
_TRAITS = {
    "fable": Traits("always", False, _FULL),
    "4.7+": Traits("adaptive", False, _FULL),
    "4.6": Traits("both", True, ("low", "medium", "high", "max")),
    "opus-4.5": Traits("extended", True, ("low", "medium", "high")),
    "other": Traits("extended", True, ()),
}


class ModelInfo(NamedTuple):
    """A parsed model string: product line and (major, minor) generation."""

    line: str
    generation: tuple[int, int]


def split_model_suffixes(model: str) -> tuple[str, bool, bool]:
    """`model` → (name without suffixes, had `-thinking`, had `-1M`), in either order."""
    thinking = one_m = False
    while True:
        if model.endswith(THINKING_SUFFIX):
            model, thinking = model[: -len(THINKING_SUFFIX)], True
        elif model.endswith(ONE_M_SUFFIX):
            model, one_m = model[: -len(ONE_M_SUFFIX)], True
        else:
            return model, thinking, one_m


def _generation(name: str) -> tuple[int, int] | None:
    # one- or two-digit dash-separated numbers only: eight-digit dates are not versions
    numbers = [int(p) for p in name.split("-") if 1 <= len(p) <= 2 and p.isdigit()]
    if numbers:
        return numbers[0], (numbers[1] if len(numbers) > 1 else 0)
    for part in name.split("-"):  # dotted spelling, e.g. OpenRouter's "claude-opus-4.5"
        major, dot, minor = part.partition(".")
        if dot and major.isdigit() and minor.isdigit() and len(major) <= 2 and len(minor) <= 2:
            return int(major), int(minor)
    return None


@lru_cache(maxsize=512)  # pure, and read for every Claude-family request
def parse_model(model: str) -> ModelInfo | None:
    """Line and generation of a model string (suffixes ignored); None for unknown models."""
    name = split_model_suffixes(model)[0].lower()
    line = next((ln for needle, ln in _LINES if needle in name), None)
    if line is None:
        line = "other" if name.startswith("claude") else None
    generation = _generation(name)
    # like ClewdR, a name without a generation ("claude-opus") cannot be placed: untouched
    if line is None or generation is None:
        return None
    return ModelInfo(line, generation)


def traits(info: ModelInfo) -> Traits:
    """The §7.2 traits row for a parsed model."""
    if info.line == "fable":
        return _TRAITS["fable"]
    if info.generation >= (4, 7):
        return _TRAITS["4.7+"]
    if info.generation == (4, 6):
        return _TRAITS["4.6"]
    if info.line == "opus" and info.generation == (4, 5):
        return _TRAITS["opus-4.5"]
    return _TRAITS["other"]


def parse_thinking(value) -> dict | None:
    """A usable `thinking` object, or None when absent or unparseable (absent, never a 4xx)."""
    if not isinstance(value, dict) or value.get("type") not in _THINKING_TYPES:
        return None
    if value["type"] == "enabled":
        budget = value.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            return None
    return value


def thinking_from_suffix(original_req: dict) -> bool:
    """True when the `-thinking` suffix, not the request's own `thinking`, turned thinking on."""
    model = original_req.get("model")
    if not isinstance(model, str) or not split_model_suffixes(model)[1]:
        return False
    return parse_model(model) is not None and parse_thinking(original_req.get("thinking")) is None


def _suffix_thinking(info: ModelInfo) -> dict:
    # rule 1: adaptive for Fable and generation ≥ 4.6, a budget below that
    if info.line == "fable" or info.generation >= (4, 6):
        return dict(ADAPTIVE)
    return dict(EXTENDED)


def _coerce_thinking(thinking: dict | None, tr: Traits) -> dict | None:
    # rule 2: map the requested mode onto one the model implements
    if thinking is None:
        return None
    kind = thinking["type"]
    if tr.thinking == "always" and kind == "disabled":
        return None
    if tr.thinking in ("always", "adaptive") and kind == "enabled":
        return dict(ADAPTIVE)
    if tr.thinking == "extended" and kind == "adaptive":
        return dict(EXTENDED)
    return thinking


def _clamp_budget(thinking: dict | None, max_tokens: int) -> dict | None:
    # rule 3: budget_tokens in [1024, max_tokens - 1]; no room at all → no thinking
    if thinking is None or thinking["type"] != "enabled":
        return thinking
    ceiling = max_tokens - 1
    if ceiling < MIN_BUDGET:
        return None
    return {**thinking, "budget_tokens": min(max(thinking["budget_tokens"], MIN_BUDGET), ceiling)}


def _clamp_effort(req: dict, info: ModelInfo, tr: Traits) -> None:
    # rule 4: highest supported rung ≤ the requested one; Opus 5+ cannot disable thinking
    # above `high`
    config = req.get("output_config")
    if not isinstance(config, dict):
        return
    config = dict(config)
    effort = config.get("effort")
    if effort in EFFORT_ORDER:
        ceiling = EFFORT_ORDER.index(effort)
        thinking = req.get("thinking")
        if info.generation >= (5, 0) and thinking is not None and thinking["type"] == "disabled":
            ceiling = min(ceiling, EFFORT_ORDER.index("high"))
        allowed = [e for e in tr.efforts if EFFORT_ORDER.index(e) <= ceiling]
        config["effort"] = allowed[-1] if allowed else None
    elif effort is not None and not tr.efforts:
        config["effort"] = None  # a rung name we do not know, on a model without effort at all
    if config.get("effort") is None:
        config.pop("effort", None)
    # nothing meaningful left (no effort, no format): drop it; future keys keep it alive
    if all(value is None for value in config.values()):
        req.pop("output_config", None)
    else:
        req["output_config"] = config


def _strip_sampling(req: dict, info: ModelInfo, tr: Traits) -> None:
    # rule 5: sampling parameters the model (or its active thinking mode) rejects
    kind = req["thinking"]["type"] if req.get("thinking") is not None else None
    blocked = (not tr.sampling
               or (info.generation == (4, 6) and kind in ("adaptive", "enabled"))
               or (info.generation <= (4, 5) and kind == "enabled"))
    if blocked:
        for key in SAMPLING:
            req.pop(key, None)
    elif req.get("temperature") is not None and info.generation >= (4, 1):
        req.pop("top_p", None)  # temperature and top_p are mutually exclusive from 4.1 on


def _blank_system(system) -> bool:
    # rule 6: null, blank string, empty list, or only blank text blocks
    if system is None:
        return True
    if isinstance(system, str):
        return not system.strip()
    if isinstance(system, list):
        return all(isinstance(b, dict) and b.get("type") == "text"
                   and not str(b.get("text") or "").strip() for b in system)
    return False


def apply_model_rules(req: dict) -> dict:
    """Rewrite a normalised request for the model it names (claude-code.md §7.3, rules 1–6)."""
    out = dict(req)
    model, suffix, _one_m = split_model_suffixes(str(req.get("model", "")))
    out["model"] = model
    info = parse_model(model)
    if info is None:
        return out  # unknown models are forwarded untouched, suffixes stripped
    tr = traits(info)
    thinking = parse_thinking(out.pop("thinking", None))
    if suffix and thinking is None:
        thinking = _suffix_thinking(info)
    thinking = _clamp_budget(_coerce_thinking(thinking, tr), out.get("max_tokens", 8192))
    if thinking is not None:
        out["thinking"] = thinking
    _clamp_effort(out, info, tr)
    _strip_sampling(out, info, tr)
    if "system" in out and _blank_system(out["system"]):
        del out["system"]
    return out
